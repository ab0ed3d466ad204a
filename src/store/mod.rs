//! RocksDB: the column-family catalog ([`maps`]), the key codec ([`codec`]), the schema
//! version with its migrations, and one repository per aggregate ([`inbound`], [`outbox`],
//! [`boards`], [`tasks`], [`inbox`], [`virtual_users`], [`webhooks`]), and backups of
//! Boardroom's own state ([`backup`]). Nothing outside this module touches a raw column
//! family.

mod arrived;
pub mod backup;
pub mod boards;
mod cache;
pub mod codec;
mod crc32c;
pub mod inbound;
pub mod inbox;
pub mod live;
pub mod maps;
pub mod outbox;
pub use outbox::OutboxCounts;
pub mod tasks;
pub mod virtual_users;
pub mod webhooks;

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc, RwLock, Weak,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use rocksdb::{ColumnFamily, ColumnFamilyDescriptor, DB, Options, WriteOptions};

use crate::error::{Error, Result};

/// The schema this binary writes. Bump it with a migration in `MIGRATIONS`.
pub const SCHEMA_VERSION: u64 = 19;

const SCHEMA_KEY: &[u8] = b"schema_version";

/// A named step from `version - 1` to `version`.
struct Migration {
    version: u64,
    name: &'static str,
    run: fn(&Store) -> Result<()>,
}

/// Migrations in order. Version 1 is the first schema: nothing to migrate from.
const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "initial schema", run: |_| Ok(()) },
    // The board index's column families are created at open; they start empty and
    // `boardroom reindex` fills them from the homeserver.
    Migration { version: 2, name: "board index", run: |_| Ok(()) },
    Migration { version: 3, name: "task and comment index", run: |_| Ok(()) },
    Migration { version: 4, name: "notification inbox", run: |_| Ok(()) },
    // Tasks created before it have no creating command recorded; none is needed for them.
    Migration { version: 5, name: "task creation commands", run: |_| Ok(()) },
    // Values of `eventid_seq` and `txnid_digest` now end with their write time, which an
    // older Boardroom cannot read. Values from before have no time and are kept.
    Migration { version: 6, name: "remembered ids expire", run: |_| Ok(()) },
    Migration { version: 7, name: "task commenters", run: Store::index_commenters },
    Migration { version: 8, name: "member names", run: Store::index_member_names },
    Migration { version: 9, name: "column counts", run: Store::count_columns },
    // Virtual users registered before it have no owner recorded: the first API client to
    // use one afterwards claims it (`virtual_users`). Nothing to rewrite.
    Migration { version: 10, name: "virtual-user owners", run: |_| Ok(()) },
    // Two new column families, created empty at open: task numbers reserved by unfinished
    // `!task new` commands, and when outbox messages were first sent. A `!task new` left
    // unfinished by an older Boardroom reserves its number when it runs again.
    Migration { version: 11, name: "reserved task numbers and sent marks", run: |_| Ok(()) },
    // Two new column families, created empty at open: the signed webhook deliveries
    // applied, by delivery id and by signed message. Nothing to fill.
    Migration { version: 12, name: "webhook deliveries", run: |_| Ok(()) },
    // The facet index of tasks (by column, assignee and label), filled from the tasks.
    Migration { version: 13, name: "task facets", run: Store::index_task_facets },
    // Two new column families, created empty at open: the boards' live-stream logs and
    // their floors. The logs start with the events after the upgrade.
    Migration { version: 14, name: "live-stream logs", run: |_| Ok(()) },
    // A new column family, created empty at open: what the bot told rooms once.
    Migration { version: 15, name: "notices told once", run: |_| Ok(()) },
    // Every task's comment count, kept with each comment since (`slugnum_commentcount`).
    Migration { version: 16, name: "comment counts", run: Store::keep_comment_counts },
    // How many inbox entries there are, kept with each entry since (for the metrics).
    Migration { version: 17, name: "inbox entry count", run: Store::keep_inbox_count },
    // Inbound entries may carry a mark in their kind byte (`0x80`: their handling can make
    // a room a board's), which an older Boardroom would not read. Those stored before have
    // none; nothing to rewrite.
    Migration { version: 18, name: "room-changing inbound entries", run: |_| Ok(()) },
    // And `0x40`: a message that cannot be a command, as ingest's first pass read it (so
    // that processing need not read it again to know). An older Boardroom would not read
    // it; entries stored before have none, and are read in full.
    Migration { version: 19, name: "plain inbound messages", run: |_| Ok(()) },
];

/// What `boardroom status` shows ([`Store::status`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The schema version the database is at.
    pub schema_version: Option<u64>,
    /// Inbound entries waiting to be processed.
    pub pending: u64,
    /// The oldest of them.
    pub oldest_pending: Option<OldestPending>,
    /// Requests waiting to be sent to the homeserver.
    pub outbox: u64,
    /// Requests set aside (`boardroom dead-letters`).
    pub dead_letters: u64,
    /// Boards.
    pub boards: u64,
    /// Tasks on every board.
    pub tasks: u64,
    /// Notification inbox entries, every user's.
    pub inbox_entries: u64,
    /// The database's files, in bytes.
    pub size_bytes: u64,
}

/// The oldest inbound entry waiting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OldestPending {
    /// Its place in the queue.
    pub seq: u64,
    /// Its room.
    pub room_id: String,
    /// When its event was sent (`origin_server_ts`), if it says.
    pub sent_ms: Option<u64>,
}

/// The database: shared, cheap to clone.
///
/// The RocksDB handle sits behind a lock so that it can be replaced: when a write fails
/// because the disk is full (or another I/O error), RocksDB keeps refusing every write
/// until the database is reopened, so the store reopens it in place once there is room
/// again (see `recover` below), and the same process carries on without a restart.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    /// The open database; `None` while it is being reopened.
    db: RwLock<Option<Arc<DB>>>,
    inbound: inbound::InboundState,
    outbox: outbox::OutboxState,
    inbox: inbox::InboxState,
    /// The boards' event logs: next ids, log locks, live tails.
    live: live::LiveLogs,
    /// Board room records by room id, as read (`None`: not a board room).
    rooms: cache::Cached<crate::domain::board::RoomRecord>,
    /// Memberships in board spaces and rooms by (room, user), as read (`None`: none).
    members: cache::Cached<boards::Membership>,
    /// The slug of the board whose space each room is, as read (`None`: no board's).
    spaces: cache::Cached<String>,
    /// Writes refused because the database could not write (see [`Store::write_failures`]).
    write_failures: AtomicU64,
    /// A recovery thread is running.
    recovering: AtomicBool,
    /// Woken when recovery made the database write again.
    recovered: tokio::sync::Notify,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.inner.path).finish_non_exhaustive()
    }
}

/// How often recovery looks at the disk while it waits for room.
const RECOVERY_POLL: Duration = Duration::from_secs(1);

/// Free space recovery waits for before it reopens, besides twice the write-ahead log
/// (which reopening flushes into tables): room for the files a reopen writes (the options
/// file, a new manifest and log) and some writes after it.
pub const RECOVERY_MIN_FREE_BYTES: u64 = 8 * 1024 * 1024;

/// How long recovery waits for the store's current readers and writers to finish with
/// the old handle before it tries again later.
const RECOVERY_DRAIN: Duration = Duration::from_secs(30);

/// All column families' write buffers (memtables) together, at most: past it RocksDB
/// flushes the map with the oldest buffer (a write buffer manager). Without it each of the
/// dozens of maps could hold 64 MiB.
const WRITE_BUFFERS_BYTES: usize = 24 << 20;
/// One column family's write buffer, before it is flushed to a table file. RocksDB also
/// reserves each new write-ahead log at this size (and a tenth), and starts a new log at
/// every flush: on a tmpfs `/dev/shm` the reservation is zeroed memory, so a 16 MiB buffer
/// made each flush cost a 17.6 MiB `fallocate` and its `ftruncate` (12 % of the CPU of a
/// busy pipeline; docs/PERFORMANCE.md, "WAL reservations and flushes").
const CF_WRITE_BUFFER_BYTES: usize = 4 << 20;
/// The blocks a write buffer takes its memory in (RocksDB's default: an eighth of the
/// buffer). At 1 MiB they are allocated with `mmap` (the allocator's threshold, set in
/// `main`), so a flushed buffer's memory goes back to the system; smaller blocks stay in
/// the allocator's heap after a flush.
const ARENA_BLOCK_BYTES: usize = 1 << 20;
/// The blocks of the maps written now and then ([`maps::Writes::Rare`]): the write
/// buffer manager counts each block against [`WRITE_BUFFERS_BYTES`], so with 1 MiB blocks
/// a map holding a few kilobytes counted a mebibyte, and once two dozen maps held
/// something the manager flushed one from inside the next write (a command's transaction
/// answered 1 to 2 ms late; docs/PERFORMANCE.md, "The write buffers' block size").
const RARE_ARENA_BLOCK_BYTES: usize = 64 << 10;
/// The write-ahead log, at most, before the maps it holds back are flushed.
const MAX_WAL_BYTES: u64 = 64 << 20;
/// Blocks read from table files (and their indexes and filters), shared by every map.
/// RocksDB's default is 8 MiB for each column family.
const BLOCK_CACHE_BYTES: usize = 8 << 20;

/// The block size of a map's write buffers: [`ARENA_BLOCK_BYTES`] for the maps written
/// with every event or board message, whose buffers fill.
fn arena_block_bytes(writes: maps::Writes) -> usize {
    match writes {
        maps::Writes::Busy => ARENA_BLOCK_BYTES,
        maps::Writes::Rare => RARE_ARENA_BLOCK_BYTES,
    }
}

/// Opens (or creates) the RocksDB database at `path` with every column family.
fn open_db(path: &Path) -> Result<DB> {
    crc32c::keep_linked();
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    opts.set_keep_log_file_num(4);
    opts.increase_parallelism(2);
    // RocksDB's own text log (`LOG`) is written to the database's disk. Debian's
    // librocksdb is built with assertions on, and a second line written to that log after
    // one write to it failed (a full disk) aborts the process; errors that matter come
    // back to Boardroom, which logs them, so only fatal ones go there.
    opts.set_log_level(rocksdb::LogLevel::Fatal);
    // Memory: every column family shares one block cache and one budget for write
    // buffers, so that the process stays small however many maps there are
    // (docs/PERFORMANCE.md, "Memory").
    opts.set_db_write_buffer_size(WRITE_BUFFERS_BYTES);
    opts.set_max_total_wal_size(MAX_WAL_BYTES);
    let cache = rocksdb::Cache::new_lru_cache(BLOCK_CACHE_BYTES)
        .map_err(|e| Error::Store(format!("cannot make the block cache: {e}")))?;
    let mut table = rocksdb::BlockBasedOptions::default();
    table.set_block_cache(&cache);
    table.set_cache_index_and_filter_blocks(true);
    table.set_pin_l0_filter_and_index_blocks_in_cache(true);
    // Most point reads look for a key that is not there (an event id seen before? a
    // notification already made?): a bloom filter answers them without reading a block.
    table.set_bloom_filter(10.0, false);
    let cfs = maps::MAPS.iter().map(|m| {
        let mut cf = Options::default();
        cf.set_block_based_table_factory(&table);
        cf.set_write_buffer_size(CF_WRITE_BUFFER_BYTES);
        cf.set_max_write_buffer_number(2);
        cf.set_arena_block_size(arena_block_bytes(m.writes));
        inbound::seen_options(m.name, &mut cf);
        ColumnFamilyDescriptor::new(m.name, cf)
    });
    DB::open_cf_descriptors(&opts, path, cfs).map_err(|e| {
        let text = e.to_string();
        // Another process holds RocksDB's lock file: say so, not RocksDB's raw words.
        if text.contains("LOCK")
            && (text.contains("temporarily unavailable") || text.contains("lock hold"))
        {
            return Error::Store(format!(
                "the database at {} is in use by another process (is `boardroom serve` running?): \
                 stop it first",
                path.display()
            ));
        }
        Error::Store(format!("cannot open the database at {}: {text}", path.display()))
    })
}

impl Store {
    /// Opens (or creates) the database at `path`, creating every column family in the
    /// catalog, and brings the schema up to date. Refuses a database written by a newer
    /// Boardroom.
    pub fn open(path: &Path) -> Result<Self> {
        let store = Self::with_db(path, open_db(path)?, true)?;
        store.migrate()?;
        Ok(store)
    }

    /// A store around `db`, open at `path`, with the counters kept in memory read from it;
    /// `cached`: records may be kept in memory (not for a secondary, whose database
    /// another process writes).
    fn with_db(path: &Path, db: DB, cached: bool) -> Result<Self> {
        Ok(Store {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                inbound: inbound::InboundState::load(&db)?,
                outbox: outbox::OutboxState::load(&db)?,
                inbox: inbox::InboxState::load(&db)?,
                live: live::LiveLogs::default(),
                rooms: cache::Cached::new(cached, cache::MAX_KEPT),
                members: cache::Cached::new(cached, cache::MAX_KEPT),
                spaces: cache::Cached::new(cached, cache::MAX_KEPT),
                db: RwLock::new(Some(Arc::new(db))),
                write_failures: AtomicU64::new(0),
                recovering: AtomicBool::new(false),
                recovered: tokio::sync::Notify::new(),
            }),
        })
    }

    /// Opens the database at `path` to read it beside the process that has it open
    /// (`boardroom serve`): a RocksDB secondary instance, which keeps its own small files
    /// in `scratch` and writes nothing at `path`. Nothing is migrated; use it for reading.
    pub fn open_secondary(path: &Path, scratch: &Path) -> Result<Self> {
        // RocksDB would create the directory, and leave it empty, before failing.
        if !path.join("CURRENT").is_file() {
            return Err(Error::Store(format!(
                "there is no database at {} (check [database] path)",
                path.display()
            )));
        }
        let mut opts = Options::default();
        opts.set_max_open_files(-1);
        opts.set_log_level(rocksdb::LogLevel::Fatal);
        let names = maps::MAPS.iter().map(|m| m.name);
        let db = DB::open_cf_as_secondary(&opts, path, scratch, names).map_err(|e| {
            Error::Store(format!("cannot read the database at {}: {e}", path.display()))
        })?;
        Self::with_db(path, db, false)
    }

    /// What `boardroom status` shows: queue depths, the oldest entry waiting, dead
    /// letters, boards, tasks, inbox entries, the database's size and schema version.
    /// Counting reads every key of the queues and of the inbox.
    pub fn status(&self) -> Result<Status> {
        let db = self.db()?;
        let count = |map: &str| -> Result<u64> {
            let mut n = 0;
            for item in db.iterator_cf(cf(&db, map)?, rocksdb::IteratorMode::Start) {
                item?;
                n += 1;
            }
            Ok(n)
        };
        let oldest_pending = match db
            .iterator_cf(cf(&db, maps::SEQ_PENDING)?, rocksdb::IteratorMode::Start)
            .next()
        {
            None => None,
            Some(item) => {
                let (key, value) = item?;
                let seq = codec::decode_u64(&key)?;
                let entry = inbound::PendingEntry::decode(seq, &value)?;
                let sent_ms = serde_json::from_slice::<serde_json::Value>(&entry.json)
                    .ok()
                    .and_then(|v| v.get("origin_server_ts").and_then(serde_json::Value::as_u64));
                Some(OldestPending { seq, room_id: entry.room_id, sent_ms })
            }
        };
        let boards = self.boards()?;
        let mut tasks = 0;
        for b in &boards {
            tasks += self.column_counts(&b.slug)?.iter().map(|(_, n)| n).sum::<u64>();
        }
        let mut size_bytes = 0;
        for file in std::fs::read_dir(&self.inner.path)? {
            size_bytes += file?.metadata()?.len();
        }
        let schema_version = self.schema_version()?;
        // Kept with every inbox write since version 17: one read, however many entries;
        // a database not migrated yet is counted.
        let inbox_entries = match schema_version {
            Some(v) if v >= 17 => self.inbox_entry_count(),
            _ => count(maps::USERIDID_NOTIFICATION)?,
        };
        Ok(Status {
            schema_version,
            pending: count(maps::SEQ_PENDING)?,
            oldest_pending,
            outbox: count(maps::SEQ_OUTBOX)?,
            dead_letters: count(maps::SEQ_OUTBOXDEAD)?,
            boards: boards.len() as u64,
            tasks,
            inbox_entries,
            size_bytes,
        })
    }

    /// The database's data in bytes, as RocksDB keeps it (no file is read): every map's
    /// table files plus its write buffers. The write-ahead log is not counted.
    pub fn size_bytes(&self) -> Result<u64> {
        let db = self.db()?;
        let mut total = 0u64;
        for m in maps::MAPS {
            let cf = cf(&db, m.name)?;
            for property in [
                rocksdb::properties::TOTAL_SST_FILES_SIZE,
                rocksdb::properties::CUR_SIZE_ALL_MEM_TABLES,
            ] {
                total = total.saturating_add(db.property_int_value_cf(cf, property)?.unwrap_or(0));
            }
        }
        Ok(total)
    }

    /// Bytes held in write buffers (memtables), over every map.
    pub fn memtable_bytes(&self) -> Result<u64> {
        let db = self.db()?;
        let mut total = 0u64;
        for m in maps::MAPS {
            let cf = cf(&db, m.name)?;
            let bytes =
                db.property_int_value_cf(cf, rocksdb::properties::CUR_SIZE_ALL_MEM_TABLES)?;
            total = total.saturating_add(bytes.unwrap_or(0));
        }
        Ok(total)
    }

    /// RocksDB's last sequence number: it moves with every write, and only then.
    pub fn last_sequence(&self) -> Result<u64> {
        Ok(self.db()?.latest_sequence_number())
    }

    /// Writes every map's write buffers to table files and waits for it: what they held
    /// is then read from the files (and the block cache), and their memory is given back.
    /// Blocking: call it off the async threads.
    pub fn flush_write_buffers(&self) -> Result<()> {
        let db = self.db()?;
        let mut opts = rocksdb::FlushOptions::default();
        opts.set_wait(true);
        for m in maps::MAPS {
            let cf = cf(&db, m.name)?;
            self.checked(db.flush_cf_opt(cf, &opts))?;
        }
        Ok(())
    }

    /// The open database. [`Error::Unavailable`] while it is being reopened.
    pub(crate) fn db(&self) -> Result<Arc<DB>> {
        self.inner
            .db
            .read()
            .map_err(|_| Error::Internal("store lock poisoned".into()))?
            .clone()
            .ok_or_else(|| Error::Unavailable("the database is being reopened".into()))
    }

    /// The outcome of a write. A write RocksDB could not make (the disk is full, or
    /// another I/O error) is [`Error::Unavailable`]: it is counted, and recovery starts.
    pub(crate) fn checked<T>(&self, r: std::result::Result<T, rocksdb::Error>) -> Result<T> {
        r.map_err(|e| {
            let err = Error::from(e);
            if matches!(err, Error::Unavailable(_)) {
                self.inner.write_failures.fetch_add(1, Ordering::AcqRel);
                self.recover(&err);
            }
            err
        })
    }

    /// Writes refused so far because the database could not write. Workers compare it
    /// before and after handling an entry: when it moved, the entry's writes may be
    /// incomplete, and the entry is handled again once the store writes again.
    pub fn write_failures(&self) -> u64 {
        self.inner.write_failures.load(Ordering::Acquire)
    }

    /// Returns once recovery (started after a failed write) has made the database write
    /// again; only recoveries that end while this is awaited count.
    pub async fn recovered(&self) {
        self.inner.recovered.notified().await;
    }

    /// Whether the database takes writes: open, and no recovery under way.
    pub fn is_writable(&self) -> bool {
        !self.inner.recovering.load(Ordering::Acquire)
            && self.inner.db.read().is_ok_and(|db| db.is_some())
    }

    /// Starts recovery in a thread of its own, unless it is already running. Recovery
    /// first tries a write: if RocksDB recovered by itself, nothing more is done.
    /// Otherwise it waits until the disk has room ([`RECOVERY_MIN_FREE_BYTES`] plus twice
    /// the write-ahead log), takes the handle away (callers get [`Error::Unavailable`]),
    /// waits for the calls still using it, closes it, reopens the database in place
    /// (RocksDB replays its write-ahead log: every write that was acknowledged is there)
    /// and reloads the counters kept in memory from what is on disk.
    fn recover(&self, cause: &Error) {
        if self.inner.recovering.swap(true, Ordering::AcqRel) {
            return;
        }
        tracing::error!(error = %cause, "the database cannot write; recovering");
        let weak = Arc::downgrade(&self.inner);
        let spawned = std::thread::Builder::new()
            .name("boardroom-store-recovery".into())
            .spawn(move || recovery_loop(&weak));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the database's recovery");
            self.inner.recovering.store(false, Ordering::Release);
        }
    }

    /// The schema version written in the database.
    pub fn schema_version(&self) -> Result<Option<u64>> {
        let db = self.db()?;
        db.get_cf(cf(&db, maps::GLOBAL)?, SCHEMA_KEY)?.map(|v| codec::decode_u64(&v)).transpose()
    }

    fn migrate(&self) -> Result<()> {
        let found = self.schema_version()?.unwrap_or(0);
        if found > SCHEMA_VERSION {
            return Err(Error::Store(format!(
                "the database has schema version {found}, newer than this Boardroom's \
                 {SCHEMA_VERSION}: run a newer Boardroom, or restore a backup"
            )));
        }
        for m in MIGRATIONS.iter().filter(|m| m.version > found) {
            tracing::info!(version = m.version, name = m.name, "applying database migration");
            (m.run)(self)?;
            let mut wo = WriteOptions::default();
            wo.set_sync(true);
            let db = self.db()?;
            self.checked(db.put_cf_opt(
                cf(&db, maps::GLOBAL)?,
                SCHEMA_KEY,
                m.version.to_be_bytes(),
                &wo,
            ))?;
        }
        Ok(())
    }

    #[cfg(test)]
    pub(crate) fn set_schema_version_for_test(&self, v: u64) -> Result<()> {
        let db = self.db()?;
        db.put_cf(cf(&db, maps::GLOBAL)?, SCHEMA_KEY, v.to_be_bytes())?;
        Ok(())
    }
}

/// Runs recovery until the database writes again, or the store is dropped.
fn recovery_loop(weak: &Weak<Inner>) {
    let mut logged_wait = false;
    loop {
        let Some(inner) = weak.upgrade() else { return };
        match try_recover(&inner) {
            Ok(true) => {
                inner.recovering.store(false, Ordering::Release);
                inner.recovered.notify_waiters();
                return;
            }
            Ok(false) => {
                if !logged_wait {
                    tracing::warn!(
                        path = %inner.path.display(),
                        "the database's disk has too little free space; waiting for room"
                    );
                    logged_wait = true;
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot recover the database yet; retrying"),
        }
        drop(inner);
        std::thread::sleep(RECOVERY_POLL);
    }
}

/// One attempt. `Ok(false)`: not enough room yet.
fn try_recover(inner: &Inner) -> Result<bool> {
    let current =
        inner.db.read().map_err(|_| Error::Internal("store lock poisoned".into()))?.clone();
    if let Some(db) = &current {
        // RocksDB may have recovered by itself (it does for some background errors).
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        if db.put_cf_opt(cf(db, maps::GLOBAL)?, PROBE_KEY, [], &wo).is_ok() {
            tracing::info!("the database writes again");
            return Ok(true);
        }
    }
    drop(current);
    let (free, needed) = free_and_needed(&inner.path)?;
    if free < needed {
        return Ok(false);
    }
    tracing::info!(free, needed, "reopening the database");
    let old = inner.db.write().map_err(|_| Error::Internal("store lock poisoned".into()))?.take();
    if let Some(mut old) = old {
        // Wait for the calls that still hold the old handle: RocksDB locks the database
        // for one handle at a time.
        let deadline = Instant::now() + RECOVERY_DRAIN;
        loop {
            match Arc::try_unwrap(old) {
                Ok(db) => {
                    drop(db);
                    break;
                }
                Err(still) if Instant::now() < deadline => {
                    old = still;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(still) => {
                    *inner
                        .db
                        .write()
                        .map_err(|_| Error::Internal("store lock poisoned".into()))? = Some(still);
                    return Err(Error::Internal(
                        "the database handle is still in use; will try again".into(),
                    ));
                }
            }
        }
    }
    let db = open_db(&inner.path)?;
    inner.inbound.reload(&db)?;
    inner.outbox.reload(&db)?;
    inner.inbox.reload(&db)?;
    *inner.db.write().map_err(|_| Error::Internal("store lock poisoned".into()))? =
        Some(Arc::new(db));
    tracing::info!(path = %inner.path.display(), "the database was reopened and writes again");
    Ok(true)
}

/// A key recovery writes to see whether the database takes writes.
const PROBE_KEY: &[u8] = b"write_probe";

/// The free space on the database's disk, and what recovery waits for.
fn free_and_needed(path: &Path) -> Result<(u64, u64)> {
    let st = rustix::fs::statvfs(path)
        .map_err(|e| Error::Io(std::io::Error::from_raw_os_error(e.raw_os_error())))?;
    let free = st.f_bavail.saturating_mul(st.f_frsize);
    let mut wal = 0u64;
    for entry in std::fs::read_dir(path)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().ends_with(".log") {
            wal = wal.saturating_add(entry.metadata()?.len());
        }
    }
    Ok((free, RECOVERY_MIN_FREE_BYTES.saturating_add(wal.saturating_mul(2))))
}

/// A key and its value, as RocksDB returns them.
pub(crate) type KeyValue = (Box<[u8]>, Box<[u8]>);

/// Decodes a JSON record.
pub(crate) fn decode<T: serde::de::DeserializeOwned>(v: &[u8]) -> Result<T> {
    serde_json::from_slice(v).map_err(|e| Error::Store(format!("corrupt record: {e}")))
}

/// Encodes a JSON record.
pub(crate) fn encode<T: serde::Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| Error::Store(format!("cannot encode a record: {e}")))
}

/// The entries of `cf` whose keys start with `prefix`, in key order.
pub(crate) fn scan<'a>(
    db: &'a DB,
    cf: &'a ColumnFamily,
    prefix: &'a [u8],
) -> impl Iterator<Item = Result<KeyValue>> + 'a {
    db.iterator_cf(cf, rocksdb::IteratorMode::From(prefix, rocksdb::Direction::Forward))
        .map(|item| item.map_err(Error::from))
        .take_while(move |item| item.as_ref().map_or(true, |(k, _)| k.starts_with(prefix)))
}

/// A column family of `db`.
pub(crate) fn cf<'a>(db: &'a DB, name: &str) -> Result<&'a ColumnFamily> {
    db.cf_handle(name).ok_or_else(|| Error::Store(format!("column family {name} is missing")))
}

/// The last key of a column family whose keys are big-endian `u64`s, plus one.
fn next_seq(db: &DB, name: &str) -> Result<u64> {
    let mut it = db.raw_iterator_cf(cf(db, name)?);
    it.seek_to_last();
    it.status()?;
    match it.key() {
        Some(k) => Ok(codec::decode_u64(k)? + 1),
        None => Ok(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 80 KB written to every map leaves the write buffers within their budget, so the
    /// write buffer manager flushes nothing from inside a write: with every map's buffer
    /// in 1 MiB blocks, each map written counted a mebibyte, and the 37 maps' buffers were
    /// flushed 38 times.
    #[test]
    fn a_little_in_every_map_flushes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let db = store.db().expect("db");
        let mut wo = WriteOptions::default();
        wo.set_sync(false);
        for round in 0..40u8 {
            for m in maps::MAPS {
                db.put_cf_opt(cf(&db, m.name).expect("cf"), [b'~', round], [7u8; 2000], &wo)
                    .expect("write");
            }
        }
        let flushed = |db: &DB| {
            maps::MAPS
                .iter()
                .map(|m| {
                    let cf = cf(db, m.name).expect("cf");
                    db.property_int_value_cf(cf, "rocksdb.num-immutable-mem-table")
                        .expect("property")
                        .unwrap_or(0)
                        + db.property_int_value_cf(cf, "rocksdb.num-files-at-level0")
                            .expect("property")
                            .unwrap_or(0)
                })
                .sum::<u64>()
        };
        assert_eq!(flushed(&db), 0, "no write buffer was flushed");
        let bytes = store.memtable_bytes().expect("bytes");
        assert!(bytes < WRITE_BUFFERS_BYTES as u64, "{bytes} bytes of write buffers");
    }

    #[test]
    fn fresh_database_gets_the_current_schema_and_reopens() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        assert_eq!(store.schema_version().expect("read"), Some(SCHEMA_VERSION));
        drop(store);
        let store = Store::open(dir.path()).expect("reopen");
        assert_eq!(store.schema_version().expect("read"), Some(SCHEMA_VERSION));
    }

    #[test]
    fn a_newer_database_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        store.set_schema_version_for_test(SCHEMA_VERSION + 1).expect("write");
        drop(store);
        let err = Store::open(dir.path()).expect_err("must refuse");
        assert!(err.to_string().contains("newer than this Boardroom"), "{err}");
    }

    /// The outbox worker reads on from the last seq it saw; after a reopen (a full disk) an
    /// outbox whose entries were all sent is empty on disk, and a counter read from it alone
    /// would hand out seqs the worker has read past.
    #[test]
    fn reloaded_counters_never_move_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        store.enqueue_outbound(&[b"a".to_vec(), b"b".to_vec()]).expect("enqueue");
        store.outbox_done(1).expect("done");
        store.outbox_done(2).expect("done");
        let db = store.db().expect("db");
        store.inner.inbound.reload(&db).expect("reload");
        store.inner.outbox.reload(&db).expect("reload");
        store.inner.inbox.reload(&db).expect("reload");
        drop(db);
        store.enqueue_outbound(&[b"c".to_vec()]).expect("enqueue");
        assert_eq!(store.outbox_from(0, 10).expect("list"), vec![(3, b"c".to_vec())]);
    }

    #[test]
    fn every_map_exists() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let db = store.db().expect("db");
        for m in maps::MAPS {
            cf(&db, m.name).expect("column family");
        }
    }
}
