//! RocksDB: the column-family catalog ([`maps`]), the key codec ([`codec`]), the schema
//! version with its migrations, and one repository per aggregate ([`inbound`], [`outbox`],
//! [`boards`], [`tasks`], [`inbox`], [`virtual_users`]).
//! Nothing outside this module touches a raw column family.

pub mod boards;
pub mod codec;
pub mod inbound;
pub mod inbox;
pub mod maps;
pub mod outbox;
pub mod tasks;
pub mod virtual_users;

use std::{path::Path, sync::Arc};

use rocksdb::{ColumnFamily, ColumnFamilyDescriptor, DB, Options, WriteOptions};

use crate::error::{Error, Result};

/// The schema this binary writes. Bump it with a migration in [`MIGRATIONS`].
pub const SCHEMA_VERSION: u64 = 11;

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
];

/// The database: shared, cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: Arc<DB>,
    inbound: Arc<inbound::InboundState>,
    outbox: Arc<outbox::OutboxState>,
    inbox: Arc<inbox::InboxState>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.db.path()).finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (or creates) the database at `path`, creating every column family in the
    /// catalog, and brings the schema up to date. Refuses a database written by a newer
    /// Boardroom.
    pub fn open(path: &Path) -> Result<Self> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_keep_log_file_num(4);
        opts.increase_parallelism(2);
        let cfs = maps::MAPS.iter().map(|m| {
            ColumnFamilyDescriptor::new(m.name, inbound::seen_options(m.name).unwrap_or_default())
        });
        let db = DB::open_cf_descriptors(&opts, path, cfs).map_err(|e| {
            Error::Store(format!("cannot open the database at {}: {}", path.display(), e))
        })?;
        let db = Arc::new(db);
        let store = Store {
            inbound: Arc::new(inbound::InboundState::load(&db)?),
            outbox: Arc::new(outbox::OutboxState::load(&db)?),
            inbox: Arc::new(inbox::InboxState::load(&db)?),
            db,
        };
        store.migrate()?;
        Ok(store)
    }

    /// The schema version written in the database.
    pub fn schema_version(&self) -> Result<Option<u64>> {
        self.db
            .get_cf(self.cf(maps::GLOBAL)?, SCHEMA_KEY)?
            .map(|v| codec::decode_u64(&v))
            .transpose()
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
            self.db.put_cf_opt(self.cf(maps::GLOBAL)?, SCHEMA_KEY, m.version.to_be_bytes(), &wo)?;
        }
        Ok(())
    }

    pub(crate) fn cf(&self, name: &str) -> Result<&ColumnFamily> {
        cf(&self.db, name)
    }

    #[cfg(test)]
    pub(crate) fn set_schema_version_for_test(&self, v: u64) -> Result<()> {
        self.db.put_cf(self.cf(maps::GLOBAL)?, SCHEMA_KEY, v.to_be_bytes())?;
        Ok(())
    }
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

impl Store {
    /// The entries of `cf` whose keys start with `prefix`, in key order.
    pub(crate) fn scan<'a>(
        &'a self,
        cf: &'a ColumnFamily,
        prefix: &'a [u8],
    ) -> impl Iterator<Item = Result<KeyValue>> + 'a {
        self.db
            .iterator_cf(cf, rocksdb::IteratorMode::From(prefix, rocksdb::Direction::Forward))
            .map(|item| item.map_err(Error::from))
            .take_while(move |item| item.as_ref().map_or(true, |(k, _)| k.starts_with(prefix)))
    }
}

fn cf<'a>(db: &'a DB, name: &str) -> Result<&'a ColumnFamily> {
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

    #[test]
    fn every_map_exists() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        for m in maps::MAPS {
            store.cf(m.name).expect("column family");
        }
    }
}
