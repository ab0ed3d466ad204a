//! `boardroom export` and `boardroom import`: Boardroom's own state — the maps marked
//! [`Backup::Export`] in [`maps::MAPS`] — as versioned JSON lines.
//!
//! The file: a header line (format, format version, schema version, the maps, the
//! Boardroom that wrote it, when), then one line per record in map order (the header's)
//! and key order, then a closing line with the records of each map, so that a truncated
//! file is told from a whole one. A record is
//! `{"map": …, "key": [parts…] | "key_base64": …, "value": <JSON> | "value_base64": …}`:
//! the key as its parts where it reads back byte for byte as the map's key layout, the
//! value as JSON where the stored bytes are one line of JSON, else base64. Import writes
//! back exactly the bytes exported, so export → import → export gives the same file.
//! docs/operations.md ("Backup and restore") is the operator's side.

use std::{
    collections::BTreeMap,
    io::{BufRead, Write},
    path::{Path, PathBuf},
};

use base64::Engine as _;
use rocksdb::{DB, IteratorMode, WriteBatch, WriteOptions};
use serde::{Deserialize, Serialize};
use serde_json::{Value, value::RawValue};

use super::{
    SCHEMA_KEY, SCHEMA_VERSION, Store,
    codec::{KeyBuf, KeyReader, decode_u64},
    maps::{self, Backup, KeyPart, MAPS},
};
use crate::error::{Error, Result};

/// The header's `format`.
pub const FORMAT: &str = "boardroom-export";
/// The format this Boardroom writes and reads.
pub const FORMAT_VERSION: u64 = 1;

/// Records written in one batch on import, at most.
const BATCH_RECORDS: usize = 10_000;
/// Bytes written in one batch on import, about, at most.
const BATCH_BYTES: usize = 8 << 20;
/// Progress is told every so many records (and at the end of each map).
const PROGRESS_EVERY: u64 = 1000;

/// The first line of an export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Always [`FORMAT`].
    pub format: String,
    /// The layout of the file; this Boardroom reads [`FORMAT_VERSION`].
    pub format_version: u64,
    /// The database's schema version when it was exported.
    pub schema_version: u64,
    /// The maps in the file, in the order their records come.
    pub maps: Vec<String>,
    /// The Boardroom that wrote it: version and commit.
    pub boardroom: String,
    /// When it was written (ms since the epoch; `SOURCE_DATE_EPOCH` overrides it).
    pub created_ms: u64,
}

/// The last line: `{"end": {"maps": {name: records}, "records": n}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct End {
    maps: BTreeMap<String, u64>,
    records: u64,
}

/// One line after the header: a record, or the closing line.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line<'a> {
    #[serde(default, skip_serializing_if = "Option::is_none", borrow)]
    map: Option<&'a str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key_base64: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", borrow)]
    value: Option<&'a RawValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    value_base64: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    end: Option<End>,
}

/// Where an export or an import is, for a progress bar.
#[derive(Debug, Clone, Copy)]
pub struct Progress<'a> {
    /// The map being read or written.
    pub map: &'a str,
    /// Its records so far.
    pub map_records: u64,
    /// Whether it is finished.
    pub map_done: bool,
    /// Records so far, every map.
    pub records: u64,
    /// Every record, when known (import knows it after checking the file).
    pub total: Option<u64>,
}

impl<'a> Progress<'a> {
    /// Where a run stands: `map` with `map_records` so far (all of them when `map_done`),
    /// `records` in all, out of `total` when known.
    fn at(
        map: &'a str,
        map_records: u64,
        map_done: bool,
        records: u64,
        total: Option<u64>,
    ) -> Self {
        Self { map, map_records, map_done, records, total }
    }
}

/// What an export wrote, or an import read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The schema version of the export.
    pub schema_version: u64,
    /// Each map and its records.
    pub maps: Vec<(String, u64)>,
    /// Every record.
    pub records: u64,
    /// Import: the schema version the database is at afterwards (past the export's when
    /// migrations ran).
    pub schema_version_after: u64,
}

/// The maps an export holds, in catalog order, with their key layouts.
pub fn exported_maps() -> impl Iterator<Item = (&'static str, &'static [KeyPart])> {
    MAPS.iter().filter_map(|m| match m.backup {
        Backup::Export(parts) => Some((m.name, parts)),
        Backup::Reindex => None,
    })
}

/// The key layout of an exported map; `None` for a map this Boardroom does not export.
fn layout_of(name: &str) -> Option<&'static [KeyPart]> {
    exported_maps().find(|(n, _)| *n == name).map(|(_, parts)| parts)
}

/// `name (commit …)`: the Boardroom writing an export.
fn boardroom_version() -> String {
    format!("{} (commit {})", env!("CARGO_PKG_VERSION"), env!("BOARDROOM_COMMIT"))
}

/// When an export is made: `SOURCE_DATE_EPOCH` (seconds) when it is set, for exports that
/// compare equal byte for byte; else now.
pub fn export_time_ms() -> u64 {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map_or_else(crate::domain::now_ms, |s| s.saturating_mul(1000))
}

// ---- export -------------------------------------------------------------------------

/// Exports the database at `path` to `out`. The database is opened as a RocksDB secondary
/// instance (its small files in a scratch directory, removed after), so it may be in use
/// by `boardroom serve`: the export is the state at the moment it was opened, every write
/// batch wholly in or out.
pub fn export_database(
    path: &Path,
    out: &mut dyn Write,
    created_ms: u64,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<Summary> {
    let scratch = scratch_dir("export");
    // Opening replays the primary's write-ahead log, which `serve` may rotate and delete
    // meanwhile: a failed open is tried again, a few times.
    let mut attempt = 1;
    let store = loop {
        match Store::open_secondary(path, &scratch) {
            Ok(store) => break Ok(store),
            Err(e) if attempt < OPEN_ATTEMPTS && path.join("CURRENT").exists() => {
                tracing::warn!(error = %e, attempt, "cannot open the database to export it; trying again");
                let _ = std::fs::remove_dir_all(&scratch);
                std::thread::sleep(std::time::Duration::from_millis(200));
                attempt += 1;
            }
            Err(e) => break Err(e),
        }
    };
    let result = store.and_then(|store| store.export_to(out, created_ms, progress));
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

/// How often an export tries to open the database.
const OPEN_ATTEMPTS: u32 = 3;

/// Exports the database at `path` into the file `output`: written beside it under a
/// temporary name, synced, then renamed over `output`, so a failed export leaves no half
/// file (and an older export of the same name is kept).
pub fn export_database_to_file(
    path: &Path,
    output: &Path,
    created_ms: u64,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<Summary> {
    let tmp = temp_beside(output)?;
    let written = (|| {
        let file = std::fs::File::create(&tmp)
            .map_err(|e| Error::Backup(format!("cannot write {}: {e}", tmp.display())))?;
        let mut w = std::io::BufWriter::new(file);
        let summary = export_database(path, &mut w, created_ms, progress)?;
        let file = w.into_inner().map_err(|e| Error::Io(e.into_error()))?;
        file.sync_all()?;
        std::fs::rename(&tmp, output).map_err(|e| {
            Error::Backup(format!("cannot rename {} to {}: {e}", tmp.display(), output.display()))
        })?;
        // The rename itself, on disk (best effort: not every system opens a directory).
        let dir = output.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if let Ok(dir) = std::fs::File::open(dir) {
            let _ = dir.sync_all();
        }
        Ok(summary)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

impl Store {
    /// Writes this store's own state as an export to `out`. The store is a secondary
    /// instance ([`export_database`]): see [`View`].
    fn export_to(
        &self,
        out: &mut dyn Write,
        created_ms: u64,
        progress: &mut dyn FnMut(Progress<'_>),
    ) -> Result<Summary> {
        let db = self.db()?;
        let view = View::new(&db);
        let schema_version = view
            .get(maps::GLOBAL, SCHEMA_KEY)?
            .map(|v| decode_u64(&v))
            .transpose()?
            .ok_or_else(|| {
                Error::Backup("the database has no schema version: not a Boardroom database".into())
            })?;
        let names: Vec<String> = exported_maps().map(|(n, _)| n.to_owned()).collect();
        let header = Header {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            schema_version,
            maps: names,
            boardroom: boardroom_version(),
            created_ms,
        };
        write_line(out, &header)?;
        let mut counts = BTreeMap::new();
        let mut maps_out = Vec::new();
        let mut records = 0u64;
        for (name, layout) in exported_maps() {
            let mut n = 0u64;
            for item in view.iter(name)? {
                let (k, v) = item?;
                write_line(out, &encode_record(name, layout, &k, &v))?;
                n += 1;
                records += 1;
                if n.is_multiple_of(PROGRESS_EVERY) {
                    progress(Progress::at(name, n, false, records, None));
                }
            }
            progress(Progress::at(name, n, true, records, None));
            counts.insert(name.to_owned(), n);
            maps_out.push((name.to_owned(), n));
        }
        write_line(
            out,
            &Line {
                map: None,
                key: None,
                key_base64: None,
                value: None,
                value_base64: None,
                end: Some(End { maps: counts, records }),
            },
        )?;
        out.flush()?;
        Ok(Summary {
            schema_version,
            maps: maps_out,
            records,
            schema_version_after: schema_version,
        })
    }
}

/// What an export reads through: a secondary instance's view of the database, which
/// moves only when it is told to catch up with the primary (never done while exporting):
/// every map is read as of the same moment, each write batch wholly in or out.
struct View<'a> {
    db: &'a DB,
}

impl<'a> View<'a> {
    fn new(db: &'a DB) -> Self {
        Self { db }
    }

    fn get(&self, map: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.db.get_cf(super::cf(self.db, map)?, key)?)
    }

    fn iter(&self, map: &str) -> Result<impl Iterator<Item = Result<super::KeyValue>> + '_> {
        let cf = super::cf(self.db, map)?;
        Ok(self.db.iterator_cf(cf, IteratorMode::Start).map(|item| item.map_err(Error::from)))
    }
}

fn write_line<T: Serialize>(out: &mut dyn Write, line: &T) -> Result<()> {
    serde_json::to_writer(&mut *out, line)
        .map_err(|e| Error::Backup(format!("cannot write the export: {e}")))?;
    out.write_all(b"\n")?;
    Ok(())
}

/// A record's line.
fn encode_record<'a>(map: &'a str, layout: &[KeyPart], key: &[u8], value: &'a [u8]) -> Line<'a> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let readable = readable_key(layout, key);
    let json = json_value(value);
    Line {
        map: Some(map),
        key_base64: readable.is_none().then(|| b64.encode(key)),
        key: readable,
        value_base64: json.is_none().then(|| b64.encode(value)),
        value: json,
        end: None,
    }
}

/// The stored bytes as JSON, when they are one line of JSON exactly (nothing around it).
fn json_value(bytes: &[u8]) -> Option<&RawValue> {
    if bytes.contains(&b'\n') || bytes.contains(&b'\r') {
        return None;
    }
    let text = std::str::from_utf8(bytes).ok()?;
    let raw: &RawValue = serde_json::from_str(text).ok()?;
    (raw.get().len() == text.len()).then_some(raw)
}

/// The key as its parts, when it reads as `layout` and builds back to the same bytes.
fn readable_key(layout: &[KeyPart], key: &[u8]) -> Option<Vec<Value>> {
    let mut r = KeyReader::new(key);
    let mut parts = Vec::with_capacity(layout.len());
    for part in layout {
        parts.push(match part {
            KeyPart::Str => Value::String(r.str().ok()?.to_owned()),
            KeyPart::U64 => Value::from(r.u64().ok()?),
            KeyPart::Bytes => Value::String(hex(r.rest().ok()?)),
        });
    }
    if !r.is_done() {
        return None;
    }
    (build_key(layout, &parts).ok()?.as_slice() == key).then_some(parts)
}

/// The key of `parts` read as `layout`.
fn build_key(layout: &[KeyPart], parts: &[Value]) -> std::result::Result<Vec<u8>, String> {
    if layout.len() != parts.len() {
        return Err(format!("the key has {} parts, the map's keys {}", parts.len(), layout.len()));
    }
    let mut key = KeyBuf::new();
    for (i, (want, part)) in layout.iter().zip(parts).enumerate() {
        match (want, part) {
            (KeyPart::Str, Value::String(s)) => key = key.str(s),
            (KeyPart::U64, Value::Number(n)) => {
                key = key.u64(n.as_u64().ok_or_else(|| format!("key part {i} is not a u64"))?)
            }
            (KeyPart::Bytes, Value::String(h)) if i > 0 && i + 1 == layout.len() => {
                let bytes = unhex(h).ok_or_else(|| format!("key part {i} is not hex"))?;
                let mut built = key.prefix();
                built.extend_from_slice(&bytes);
                return Ok(built);
            }
            _ => return Err(format!("key part {i} is not a {want:?}")),
        }
    }
    Ok(key.build())
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || s.bytes().any(|c| c.is_ascii_uppercase()) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

// ---- import -------------------------------------------------------------------------

/// Where an import reads from.
#[derive(Debug, Clone)]
pub enum Input {
    /// A file, read twice: checked whole, then written.
    File(PathBuf),
    /// Standard input: copied to a file beside the database first, then as a file.
    Stdin,
}

/// Imports an export into the database at `path` (created when missing). The whole input
/// is checked first: a truncated or corrupt file, another format, or a schema newer than
/// this Boardroom's is refused with its line number, and nothing is written. The database
/// must be empty of records (a fresh one holds only its schema version) unless `force`,
/// which first clears every map the export holds (the index is left: `boardroom reindex`
/// rebuilds it). The records are written as they were exported, the schema version set to
/// the export's, and the database opened again, which runs the migrations from there.
pub fn import(
    path: &Path,
    input: &Input,
    force: bool,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<Summary> {
    match input {
        Input::File(file) => import_file(path, file, force, progress),
        Input::Stdin => {
            let spool = temp_beside(path)?;
            let copied = (|| {
                let mut f = std::fs::File::create(&spool).map_err(|e| {
                    Error::Backup(format!("cannot copy standard input to {}: {e}", spool.display()))
                })?;
                std::io::copy(&mut std::io::stdin().lock(), &mut f)?;
                f.sync_all()?;
                import_file(path, &spool, force, progress)
            })();
            let _ = std::fs::remove_file(&spool);
            copied
        }
    }
}

/// [`import`] from a file.
pub fn import_file(
    path: &Path,
    file: &Path,
    force: bool,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<Summary> {
    let open = || {
        std::fs::File::open(file)
            .map(std::io::BufReader::new)
            .map_err(|e| Error::Backup(format!("cannot read the export {}: {e}", file.display())))
    };
    // First the whole file, writing nothing.
    let checked = read_export(open()?, &mut |_, _, _| Ok(()))?;
    let total = checked.records;
    let store = Store::open(path)?;
    let db = store.db()?;
    let found = records_in(&db)?;
    if !found.is_empty() && !force {
        let what: Vec<String> = found.iter().map(|(m, n)| format!("{m} ({n})")).collect();
        return Err(Error::Backup(format!(
            "the database at {} is not empty: it holds records in {}; import into a new \
             database, or pass --force to replace the state it holds",
            path.display(),
            what.join(", ")
        )));
    }
    if force {
        let names: Vec<&str> = exported_maps().map(|(n, _)| n).collect();
        store.clear_maps(&names)?;
    }
    let mut batch = WriteBatch::default();
    let mut records = 0u64;
    let mut map_records = 0u64;
    let mut current = String::new();
    let summary = read_export(open()?, &mut |map, key, value| {
        if map != current {
            if !current.is_empty() {
                progress(Progress::at(&current, map_records, true, records, Some(total)));
            }
            current = map.to_owned();
            map_records = 0;
        }
        batch.put_cf(super::cf(&db, map)?, key, value);
        records += 1;
        map_records += 1;
        if batch.len() >= BATCH_RECORDS || batch.size_in_bytes() >= BATCH_BYTES {
            store.checked(db.write(std::mem::take(&mut batch)))?;
        }
        if records.is_multiple_of(PROGRESS_EVERY) {
            progress(Progress::at(&current, map_records, false, records, Some(total)));
        }
        Ok(())
    });
    // Past the check, only a failed write (a full disk) or a file changed since stops it.
    let partway = |e: Error| {
        Error::Backup(format!(
            "the import stopped part-way, the database at {} holds part of the export: {e}; \
             once that is fixed, import again with --force",
            path.display()
        ))
    };
    let summary = summary.map_err(partway)?;
    if !current.is_empty() {
        progress(Progress::at(&current, map_records, true, records, Some(total)));
    }
    // The export's schema version, and everything before it on disk.
    batch.put_cf(super::cf(&db, maps::GLOBAL)?, SCHEMA_KEY, summary.schema_version.to_be_bytes());
    let mut wo = WriteOptions::default();
    wo.set_sync(true);
    store.checked(db.write_opt(batch, &wo)).map_err(partway)?;
    drop(db);
    drop(store);
    // Opened again: counters kept in memory read from the records, migrations run.
    let store = Store::open(path)?;
    let after = store.schema_version()?.unwrap_or(summary.schema_version);
    tracing::info!(
        records = summary.records,
        schema_version = summary.schema_version,
        schema_version_after = after,
        "imported"
    );
    Ok(Summary { schema_version_after: after, ..summary })
}

/// The maps holding records, and how many (reading a map stops at 1000). `global`'s
/// schema version, which a fresh database holds, does not count.
fn records_in(db: &DB) -> Result<Vec<(&'static str, String)>> {
    let mut out = Vec::new();
    for m in MAPS {
        let mut n = 0u64;
        for item in db.iterator_cf(super::cf(db, m.name)?, IteratorMode::Start) {
            let (k, _) = item?;
            if m.name == maps::GLOBAL && &*k == SCHEMA_KEY {
                continue;
            }
            n += 1;
            if n >= 1000 {
                break;
            }
        }
        if n > 0 {
            out.push((m.name, if n >= 1000 { "1000 or more".into() } else { n.to_string() }));
        }
    }
    Ok(out)
}

/// Where [`read_export`] hands each record: map, key, value.
type Sink<'s> = dyn FnMut(&str, &[u8], &[u8]) -> Result<()> + 's;

/// Reads an export, checking everything, and hands each record (map, key, value) to
/// `sink` in order. Errors name the line.
fn read_export(mut input: impl BufRead, sink: &mut Sink<'_>) -> Result<Summary> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut text = String::new();
    let mut line_no = 0u64;
    let mut next_line = |text: &mut String, line_no: &mut u64| -> Result<bool> {
        text.clear();
        *line_no += 1;
        let n = input
            .read_line(text)
            .map_err(|e| Error::Backup(format!("line {line_no}: cannot read the export: {e}")))?;
        if n > 0 && !text.ends_with('\n') {
            return Err(Error::Backup(format!(
                "line {line_no}: the line does not end: the export is truncated"
            )));
        }
        Ok(n > 0)
    };
    let bad = |line_no: u64, what: String| Error::Backup(format!("line {line_no}: {what}"));

    if !next_line(&mut text, &mut line_no)? {
        return Err(bad(1, "the export is empty".into()));
    }
    let header: Header = serde_json::from_str(&text)
        .map_err(|e| bad(1, format!("not the header of a Boardroom export ({FORMAT}): {e}")))?;
    if header.format != FORMAT {
        return Err(bad(1, format!("format {:?}, not {FORMAT:?}", header.format)));
    }
    if header.format_version != FORMAT_VERSION {
        return Err(bad(
            1,
            format!(
                "format version {}; this Boardroom reads version {FORMAT_VERSION}",
                header.format_version
            ),
        ));
    }
    if header.schema_version > SCHEMA_VERSION {
        return Err(bad(
            1,
            format!(
                "the export has schema version {}, newer than this Boardroom's {SCHEMA_VERSION}: \
                 import it with the Boardroom that wrote it ({}) or a newer one",
                header.schema_version, header.boardroom
            ),
        ));
    }
    if header.schema_version == 0 {
        return Err(bad(1, "schema version 0".into()));
    }
    let mut layouts = Vec::with_capacity(header.maps.len());
    for name in &header.maps {
        let layout = layout_of(name)
            .ok_or_else(|| bad(1, format!("map {name:?} is not one this Boardroom restores")))?;
        if layouts.iter().any(|(n, _)| n == name) {
            return Err(bad(1, format!("map {name:?} is listed twice")));
        }
        layouts.push((name.clone(), layout));
    }

    let mut at = 0usize; // index in `layouts` of the current map
    let mut last_key: Option<Vec<u8>> = None;
    let mut counts: Vec<u64> = vec![0; layouts.len()];
    let mut records = 0u64;
    let mut end = None;
    while next_line(&mut text, &mut line_no)? {
        if end.is_some() {
            return Err(bad(line_no, "a line after the closing line".into()));
        }
        let line: Line<'_> = serde_json::from_str(&text)
            .map_err(|e| bad(line_no, format!("not a record of the export: {e}")))?;
        if let Some(e) = line.end {
            if line.map.is_some() || line.key.is_some() || line.key_base64.is_some() {
                return Err(bad(line_no, "a record and the closing line at once".into()));
            }
            end = Some(e);
            continue;
        }
        let map = line.map.ok_or_else(|| bad(line_no, "a record without its map".into()))?;
        let idx = layouts
            .iter()
            .position(|(n, _)| n == map)
            .ok_or_else(|| bad(line_no, format!("map {map:?} is not in the header")))?;
        if idx < at {
            return Err(bad(line_no, format!("map {map:?} again, after a later map")));
        }
        if idx > at {
            at = idx;
            last_key = None;
        }
        let layout = layouts[idx].1;
        let key = match (line.key, line.key_base64) {
            (Some(parts), None) => {
                build_key(layout, &parts).map_err(|e| bad(line_no, format!("key: {e}")))?
            }
            (None, Some(k)) => {
                b64.decode(k).map_err(|e| bad(line_no, format!("key_base64: {e}")))?
            }
            _ => return Err(bad(line_no, "a record needs one of key and key_base64".into())),
        };
        let value = match (line.value, line.value_base64) {
            (Some(raw), None) => raw.get().as_bytes().to_vec(),
            (None, Some(v)) => {
                b64.decode(v).map_err(|e| bad(line_no, format!("value_base64: {e}")))?
            }
            _ => return Err(bad(line_no, "a record needs one of value and value_base64".into())),
        };
        if last_key.as_ref().is_some_and(|last| *last >= key) {
            return Err(bad(line_no, "keys out of order (or twice)".into()));
        }
        if map == maps::GLOBAL
            && key == SCHEMA_KEY
            && decode_u64(&value).ok() != Some(header.schema_version)
        {
            return Err(bad(line_no, "the schema version differs from the header's".into()));
        }
        sink(map, &key, &value).map_err(|e| match e {
            Error::Backup(m) => bad(line_no, m),
            other => other,
        })?;
        last_key = Some(key);
        counts[idx] += 1;
        records += 1;
    }
    let Some(end) = end else {
        return Err(bad(
            line_no,
            "the export ends without its closing line: it is truncated".into(),
        ));
    };
    let maps: Vec<(String, u64)> =
        layouts.iter().zip(&counts).map(|((n, _), c)| (n.clone(), *c)).collect();
    let expected: BTreeMap<String, u64> = maps.iter().cloned().collect();
    if end.records != records || end.maps != expected {
        return Err(bad(
            line_no - 1,
            format!(
                "the closing line counts {} records, the file holds {records}: records are \
                 missing or added",
                end.records
            ),
        ));
    }
    Ok(Summary {
        schema_version: header.schema_version,
        maps,
        records,
        schema_version_after: header.schema_version,
    })
}

/// A scratch directory of this process for a secondary instance.
fn scratch_dir(what: &str) -> PathBuf {
    std::env::temp_dir().join(format!("boardroom-{what}-{}", std::process::id()))
}

/// A temporary name beside `path` (same directory, so a rename is atomic).
fn temp_beside(path: &Path) -> Result<PathBuf> {
    let name = path
        .file_name()
        .ok_or_else(|| Error::Backup(format!("{} names no file", path.display())))?;
    let mut tmp = name.to_owned();
    tmp.push(format!(".tmp-{}", std::process::id()));
    Ok(path.with_file_name(tmp))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// Every map is either exported or rebuilt by `reindex`, and what is left out of
    /// exports is exactly what `reindex` clears and fills again.
    #[test]
    fn every_map_is_classified_and_only_the_index_is_left_out() {
        let rebuilt: BTreeSet<&str> =
            MAPS.iter().filter(|m| m.backup == Backup::Reindex).map(|m| m.name).collect();
        let cleared: BTreeSet<&str> = super::super::boards::BOARD_MAPS
            .iter()
            .chain(&super::super::tasks::TASK_MAPS)
            .copied()
            .collect();
        assert_eq!(rebuilt, cleared, "maps left out of exports must be rebuilt by reindex");
        let exported: Vec<&str> = exported_maps().map(|(n, _)| n).collect();
        assert_eq!(exported.len() + rebuilt.len(), MAPS.len());
        for must in [
            maps::GLOBAL,
            maps::SEQ_PENDING,
            maps::SEQ_OUTBOX,
            maps::SEQ_OUTBOXDEAD,
            maps::USERIDID_NOTIFICATION,
            maps::SLUGID_LIVE,
            maps::SOURCEDELIVERY_ANSWER,
            maps::USERID_VIRTUALUSER,
            maps::CMDEVENT_RESERVEDNUM,
        ] {
            assert!(exported.contains(&must), "{must} is not exported");
        }
        // A raw part can only end a key, after a string.
        for (name, layout) in exported_maps() {
            assert!(!layout.is_empty(), "{name}");
            for (i, p) in layout.iter().enumerate() {
                if *p == KeyPart::Bytes {
                    assert!(i > 0 && i + 1 == layout.len(), "{name}");
                }
            }
        }
    }

    #[test]
    fn keys_are_readable_where_they_read_back_the_same() {
        let key = KeyBuf::new().str("@a:x").u64(3).build();
        let parts = readable_key(&[KeyPart::Str, KeyPart::U64], &key).expect("readable");
        assert_eq!(serde_json::to_string(&parts).expect("json"), r#"["@a:x",3]"#);
        assert_eq!(build_key(&[KeyPart::Str, KeyPart::U64], &parts).expect("key"), key);
        // A u64 with the separator's byte in it still reads as one part.
        let key = KeyBuf::new().str("s").u64(u64::MAX).build();
        assert!(readable_key(&[KeyPart::Str, KeyPart::U64], &key).is_some());
        // A digest after a string, as hex.
        let mut key = KeyBuf::new().str("src").prefix();
        key.extend_from_slice(&[0xFF, 0, 0x10]);
        let parts = readable_key(&[KeyPart::Str, KeyPart::Bytes], &key).expect("readable");
        assert_eq!(parts, vec![Value::from("src"), Value::from("ff0010")]);
        assert_eq!(build_key(&[KeyPart::Str, KeyPart::Bytes], &parts).expect("key"), key);
        // Keys that do not fit the layout are left to base64.
        assert!(readable_key(&[KeyPart::Str], b"a\xFFb").is_none());
        assert!(readable_key(&[KeyPart::Str], b"\xC3").is_none());
        assert!(readable_key(&[KeyPart::U64], b"short").is_none());
        assert!(build_key(&[KeyPart::U64], &[Value::from("x")]).is_err());
        assert!(build_key(&[KeyPart::Str], &[]).is_err());
    }

    #[test]
    fn values_are_json_only_when_they_are_one_line_of_json_exactly() {
        assert_eq!(json_value(br#"{"a":1}"#).map(RawValue::get), Some(r#"{"a":1}"#));
        assert_eq!(json_value(b"12").map(RawValue::get), Some("12"));
        for not in [&b" 1"[..], b"1 ", b"{\n}", b"", b"\x00\x00\x00\x00\x00\x00\x00\x01", b"{"] {
            assert!(json_value(not).is_none(), "{not:?}");
        }
    }

    /// Every line a record encodes to reads back to the same map, key and value.
    #[test]
    fn records_round_trip_byte_for_byte() {
        let layout = [KeyPart::Str, KeyPart::U64];
        let cases: Vec<(Vec<u8>, Vec<u8>)> = vec![
            (KeyBuf::new().str("@u:x").u64(7).build(), br#"{"x": [1, 2.50]}"#.to_vec()),
            (KeyBuf::new().str("@u:x").u64(8).build(), vec![0xFF, 0, 1]),
            (b"\xFF\xFE".to_vec(), Vec::new()),
        ];
        let mut file = Vec::new();
        let header = Header {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            schema_version: SCHEMA_VERSION,
            maps: vec![maps::USERIDID_NOTIFICATION.into()],
            boardroom: boardroom_version(),
            created_ms: 1,
        };
        write_line(&mut file, &header).expect("header");
        let mut sorted = cases.clone();
        sorted.sort();
        for (k, v) in &sorted {
            write_line(&mut file, &encode_record(maps::USERIDID_NOTIFICATION, &layout, k, v))
                .expect("record");
        }
        let end = End {
            maps: [(maps::USERIDID_NOTIFICATION.to_owned(), 3)].into_iter().collect(),
            records: 3,
        };
        write_line(
            &mut file,
            &Line {
                map: None,
                key: None,
                key_base64: None,
                value: None,
                value_base64: None,
                end: Some(end),
            },
        )
        .expect("end");
        let mut read = Vec::new();
        let summary = read_export(&file[..], &mut |m, k, v| {
            read.push((m.to_owned(), k.to_vec(), v.to_vec()));
            Ok(())
        })
        .expect("read");
        assert_eq!(summary.records, 3);
        let want: Vec<_> = sorted
            .iter()
            .map(|(k, v)| (maps::USERIDID_NOTIFICATION.to_owned(), k.clone(), v.clone()))
            .collect();
        assert_eq!(read, want);
        let text = String::from_utf8(file.clone()).expect("utf-8");
        assert!(
            text.contains(
                r#"{"map":"useridid_notification","key":["@u:x",7],"value":{"x": [1, 2.50]}}"#
            ),
            "{text}"
        );
        assert!(text.contains(r#""value_base64":"/wAB""#), "{text}");

        // Cut anywhere, it is refused.
        for cut in [file.len() - 1, file.len() - 20, 40] {
            let err = read_export(&file[..cut], &mut |_, _, _| Ok(())).expect_err("truncated");
            assert!(err.to_string().contains("line "), "{err}");
        }
        // A record dropped: the closing line's counts say so.
        let lines: Vec<&str> = text.lines().collect();
        let dropped = [lines[0], lines[1], lines[3], lines[4]].join("\n") + "\n";
        let err = read_export(dropped.as_bytes(), &mut |_, _, _| Ok(())).expect_err("dropped");
        assert!(err.to_string().contains("line 4"), "{err}");
        // Out of order.
        let swapped = [lines[0], lines[2], lines[1], lines[3], lines[4]].join("\n") + "\n";
        let err = read_export(swapped.as_bytes(), &mut |_, _, _| Ok(())).expect_err("order");
        assert!(err.to_string().contains("line 3: keys out of order"), "{err}");
    }

    #[test]
    fn a_newer_schema_or_format_is_refused_at_line_one() {
        let header = |schema: u64, format_version: u64| {
            let h = Header {
                format: FORMAT.into(),
                format_version,
                schema_version: schema,
                maps: vec![],
                boardroom: "x".into(),
                created_ms: 0,
            };
            format!(
                "{}\n{{\"end\":{{\"maps\":{{}},\"records\":0}}}}\n",
                serde_json::to_string(&h).expect("json")
            )
        };
        let ok = read_export(header(SCHEMA_VERSION, 1).as_bytes(), &mut |_, _, _| Ok(()));
        assert_eq!(ok.expect("empty export").records, 0);
        let err = read_export(header(SCHEMA_VERSION + 1, 1).as_bytes(), &mut |_, _, _| Ok(()))
            .expect_err("newer");
        assert!(
            err.to_string().starts_with("line 1: ") && err.to_string().contains("newer"),
            "{err}"
        );
        let err = read_export(header(1, 2).as_bytes(), &mut |_, _, _| Ok(())).expect_err("format");
        assert!(err.to_string().contains("format version 2"), "{err}");
        let err = read_export(&b"{}\n"[..], &mut |_, _, _| Ok(())).expect_err("no header");
        assert!(err.to_string().starts_with("line 1: "), "{err}");
    }
}
