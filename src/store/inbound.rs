//! Inbound events: deduplicated and made durable before the transaction is acknowledged,
//! then processed and removed. Maps: `txnid_digest`, `eventid_seq`, `seq_pending`.
//!
//! Transaction ids and event ids are remembered for [`SEEN_RETENTION`]: each value ends
//! with the time it was written, and a compaction filter drops what is older, so these two
//! maps stop growing once a deployment is older than the retention.

use std::{
    collections::HashSet,
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use rocksdb::{DB, Direction, IteratorMode, WriteBatch, WriteOptions};

use super::{Store, codec, maps};
use crate::{
    domain::now_ms,
    error::{Error, Result},
};

/// What an inbound entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum EntryKind {
    /// A timeline event (`events` in the transaction).
    Timeline = 1,
    /// A read receipt (`m.receipt` ephemeral event), kept for the notification inbox.
    Receipt = 2,
    /// What a transaction brought for the bot's device (`[encryption]`): to-device
    /// messages, device-list changes, one-time-key counts. Its lane is [`DEVICE_LANE`].
    Device = 3,
}

/// The lane (the room id field) of [`EntryKind::Device`] entries: not a room id, so no
/// room's entries share it; they are handled in arrival order.
pub const DEVICE_LANE: &str = "!device";

impl EntryKind {
    fn from_byte(b: u8) -> Result<Self> {
        match b {
            1 => Ok(Self::Timeline),
            2 => Ok(Self::Receipt),
            3 => Ok(Self::Device),
            other => Err(Error::Store(format!("unknown inbound entry kind {other}"))),
        }
    }
}

/// An entry to ingest.
#[derive(Debug, Clone, Copy)]
pub struct NewEntry<'a> {
    /// Timeline event or receipt.
    pub kind: EntryKind,
    /// The room it belongs to: the processing lane.
    pub room_id: &'a str,
    /// The event id, for deduplication (timeline events only).
    pub event_id: Option<&'a str>,
    /// The event as the homeserver sent it.
    pub json: &'a [u8],
    /// Whether handling it can make a room a board's: kept with the entry, and counted in
    /// [`IngestOutcome::may_change_rooms`] and [`Store::pending_counts`].
    pub may_change_rooms: bool,
    /// Whether ingest's first pass found a message that cannot be a command, in the room
    /// `room_id` names ([`crate::inbound::peek::Peek::cannot_be_a_command`]): kept with
    /// the entry, so that processing need not read the event for it again.
    pub plain: bool,
}

/// An entry for [`Store::ingest_entries`]: what it writes, and how it becomes the
/// [`PendingEntry`] kept in memory for the dispatcher once written. An entry that owns its
/// bytes moves them there; a borrowed one ([`NewEntry`]) is copied.
pub(crate) trait Incoming {
    /// The entry, as it is written.
    fn entry(&self) -> NewEntry<'_>;
    /// The entry, stored as `seq`, for the dispatcher.
    fn into_pending(self, seq: u64) -> PendingEntry;
}

impl Incoming for NewEntry<'_> {
    fn entry(&self) -> NewEntry<'_> {
        *self
    }

    fn into_pending(self, seq: u64) -> PendingEntry {
        PendingEntry {
            seq,
            kind: self.kind,
            room_id: self.room_id.to_owned(),
            json: self.json.to_vec(),
            may_change_rooms: self.may_change_rooms,
            plain: self.plain,
        }
    }
}

/// An entry waiting to be processed.
#[derive(Debug, Clone)]
pub struct PendingEntry {
    /// Its place in the inbound order.
    pub seq: u64,
    /// Timeline event or receipt.
    pub kind: EntryKind,
    /// The room it belongs to.
    pub room_id: String,
    /// The event as the homeserver sent it.
    pub json: Vec<u8>,
    /// Whether handling it can make a room a board's (as ingest said).
    pub may_change_rooms: bool,
    /// A message that cannot be a command, in the room `room_id` names (as ingest said;
    /// `false` when it did not say, as for entries stored before it did).
    pub plain: bool,
}

/// What became of a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IngestOutcome {
    /// Entries stored for processing.
    pub accepted: usize,
    /// Timeline events seen before (in an earlier transaction or twice in this one).
    pub duplicates: usize,
    /// The same transaction id with the same body was stored before: nothing was done.
    pub replayed: bool,
    /// Of the entries stored, those whose handling can make a room a board's.
    pub may_change_rooms: usize,
}

const NEXT_SEQ_KEY: &[u8] = b"inbound_next_seq";
/// When the last transaction was stored (ms since the epoch): where a catch-up after a
/// restart starts reading.
const LAST_INGEST_KEY: &[u8] = b"inbound_last_ingest_ms";

/// How long a transaction id and the ids of the events it carried are remembered. The
/// homeserver redelivers a transaction until it is acknowledged, so a duplicate comes
/// within minutes of the original; a read receipt for an event older than this is placed
/// by its time instead of its arrival order.
pub const SEEN_RETENTION: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// Where the write time sits in the values of `eventid_seq` (after the seq) and
/// `txnid_digest` (after the digest).
const SEQ_LEN: usize = 8;
const DIGEST_LEN: usize = 32;

/// `value` followed by the time it was written.
fn stamped(value: &[u8], now_ms: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(value.len() + 8);
    v.extend_from_slice(value);
    v.extend_from_slice(&now_ms.to_be_bytes());
    v
}

/// Whether a value with its write time at `at` is older than [`SEEN_RETENTION`] at `now_ms`.
/// A value without a time (written before times were kept) is kept.
fn expired(value: &[u8], at: usize, now_ms: u64) -> bool {
    value
        .get(at..at + 8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_be_bytes)
        .is_some_and(|written| {
            u128::from(now_ms.saturating_sub(written)) > SEEN_RETENTION.as_millis()
        })
}

/// Adds to the column family options of `txnid_digest` and `eventid_seq` (and of the webhook
/// deliveries, `sourcedelivery_answer` and `sourcesigned_delivery`, and of
/// `eventid_logged`, whose values start with their write time): a compaction filter that
/// drops entries older than [`SEEN_RETENTION`]. And to `eventid_seq`'s, a bloom filter on
/// its write buffers' keys: every event of every transaction is looked up there, nearly
/// always one not there, which the filter answers without a search of the buffer.
pub(crate) fn seen_options(name: &str, opts: &mut rocksdb::Options) {
    if name == maps::EVENTID_SEQ {
        // A twentieth of the buffer: about 10 bits per key of an event id's size.
        opts.set_memtable_prefix_bloom_ratio(0.05);
        opts.set_memtable_whole_key_filtering(true);
    }
    let at = match name {
        maps::EVENTID_SEQ => SEQ_LEN,
        maps::TXNID_DIGEST => DIGEST_LEN,
        maps::SOURCEDELIVERY_ANSWER | maps::SOURCESIGNED_DELIVERY | maps::EVENTID_LOGGED => 0,
        _ => return,
    };
    opts.set_compaction_filter("boardroom_seen_retention", move |_level, _key, value: &[u8]| {
        if expired(value, at, now_ms()) {
            rocksdb::compaction_filter::Decision::Remove
        } else {
            rocksdb::compaction_filter::Decision::Keep
        }
    });
}

/// The inbound seq of an accepted timeline event: its place in arrival order, while it
/// is remembered ([`SEEN_RETENTION`]).
pub fn seq_of_event(store: &Store, event_id: &str) -> Result<Option<u64>> {
    let db = store.db()?;
    db.get_pinned_cf(super::cf(&db, maps::EVENTID_SEQ)?, event_id.as_bytes())?
        .map(|v| codec::decode_u64(v.get(..SEQ_LEN).unwrap_or(&v)))
        .transpose()
}

/// Serializes ingest so that sequence numbers are written in order.
#[derive(Debug)]
pub(crate) struct InboundState {
    next_seq: Mutex<u64>,
    /// When entries arrived: the first seq of each transaction stored since the store
    /// was opened, with its time (ms since the epoch), oldest first; entries stored
    /// before the store was opened count from the time it was opened. Kept in memory
    /// only, for the age of the oldest entry waiting.
    arrivals: Mutex<std::collections::VecDeque<(u64, u64)>>,
    /// Entries this process stored and the dispatcher has not read yet, once it asked for
    /// them ([`Store::hand_arrivals_over`]): it takes them from here rather than reading
    /// them back from the database.
    arrived: super::arrived::Arrived<PendingEntry>,
    /// Whether an ingest runs on an async worker now ([`Store::claim_quick_ingest`]).
    quick_claimed: AtomicBool,
    /// How long the last synced ingest write took, in µs.
    last_sync_us: AtomicU64,
}

/// A synced write that took less than this may run on an async worker: a fast disk's (or
/// tmpfs's) is tens of µs, less than the two thread hand-offs the blocking pool costs.
const QUICK_SYNC: Duration = Duration::from_millis(1);

/// The place [`Store::claim_quick_ingest`] hands out, given back when dropped.
pub(crate) struct QuickIngest<'a>(&'a AtomicBool);

impl Drop for QuickIngest<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl InboundState {
    pub(crate) fn load(db: &DB) -> Result<Self> {
        // The counter is also written with every ingest: seqs keep growing even when the
        // queue is empty at start-up, so they order events across restarts.
        let stored = match db.get_cf(super::cf(db, maps::GLOBAL)?, NEXT_SEQ_KEY)? {
            Some(v) => codec::decode_u64(&v)?,
            // A new database, or one from before the counter was kept: start past every
            // seq handed out, as remembered in `eventid_seq`.
            None => {
                let mut max = 0;
                for item in db.iterator_cf(super::cf(db, maps::EVENTID_SEQ)?, IteratorMode::Start) {
                    let (_, v) = item?;
                    max = max.max(codec::decode_u64(v.get(..SEQ_LEN).unwrap_or(&v))?);
                }
                max + 1
            }
        };
        let next = super::next_seq(db, maps::SEQ_PENDING)?.max(stored);
        Ok(Self {
            next_seq: Mutex::new(next),
            arrivals: Mutex::new(std::collections::VecDeque::from([(0, now_ms())])),
            arrived: super::arrived::Arrived::new(next, super::arrived::MAX_BYTES),
            quick_claimed: AtomicBool::new(false),
            last_sync_us: AtomicU64::new(0),
        })
    }
}

impl InboundState {
    /// Reads the counter again from `db`, after the database was reopened: a write whose
    /// outcome was an error may have landed. It never moves back: numbers handed out and
    /// since removed (a sent outbox entry) are not on disk, and the workers have read past
    /// them.
    pub(crate) fn reload(&self, db: &DB) -> Result<()> {
        let fresh = Self::load(db)?.next_seq.into_inner().unwrap_or_else(|p| p.into_inner());
        let mut current =
            self.next_seq.lock().map_err(|_| Error::Internal("inbound lock poisoned".into()))?;
        *current = (*current).max(fresh);
        self.arrived.reset(*current);
        Ok(())
    }
}

/// The bit of an entry's first byte (after its kind) that says its handling can make a room
/// a board's. Entries stored before it was kept do not have it.
const MAY_CHANGE_ROOMS: u8 = 0x80;
/// The bit that says the entry is a message that cannot be a command
/// ([`PendingEntry::plain`]). Entries stored before it was kept do not have it.
const PLAIN: u8 = 0x40;

fn encode_value(e: &NewEntry<'_>) -> Vec<u8> {
    let (room_id, json) = (e.room_id, e.json);
    let mut v = Vec::with_capacity(2 + room_id.len() + json.len());
    let flags =
        if e.may_change_rooms { MAY_CHANGE_ROOMS } else { 0 } | if e.plain { PLAIN } else { 0 };
    v.push(e.kind as u8 | flags);
    v.extend_from_slice(room_id.as_bytes());
    v.push(codec::SEP);
    v.extend_from_slice(json);
    v
}

impl PendingEntry {
    /// The entry stored at `seq` as `value`.
    pub(crate) fn decode(seq: u64, value: &[u8]) -> Result<Self> {
        decode_value(seq, value)
    }
}

fn decode_value(seq: u64, v: &[u8]) -> Result<PendingEntry> {
    let (&kind, rest) = v.split_first().ok_or_else(|| Error::Store("empty pending".into()))?;
    let sep = rest
        .iter()
        .position(|&b| b == codec::SEP)
        .ok_or_else(|| Error::Store("pending entry without room id".into()))?;
    let room_id = std::str::from_utf8(&rest[..sep])
        .map_err(|_| Error::Store("pending room id is not UTF-8".into()))?;
    Ok(PendingEntry {
        seq,
        kind: EntryKind::from_byte(kind & !(MAY_CHANGE_ROOMS | PLAIN))?,
        room_id: room_id.to_owned(),
        json: rest[sep + 1..].to_vec(),
        may_change_rooms: kind & MAY_CHANGE_ROOMS != 0,
        plain: kind & PLAIN != 0,
    })
}

impl Store {
    /// Makes a transaction's new entries durable (one synced write), skipping timeline
    /// events already seen. A transaction id alone never drops anything: the same id with
    /// a different body (the homeserver restarted its counter) is processed.
    pub fn ingest(
        &self,
        txn_id: &str,
        digest: [u8; 32],
        entries: &[NewEntry<'_>],
    ) -> Result<IngestOutcome> {
        self.ingest_entries(txn_id, digest, entries.to_vec())
    }

    /// [`Store::ingest`], taking the entries: those that own their bytes hand them to the
    /// dispatcher rather than a copy (a transaction's body is not copied again).
    pub(crate) fn ingest_entries<E: Incoming>(
        &self,
        txn_id: &str,
        digest: [u8; 32],
        entries: Vec<E>,
    ) -> Result<IngestOutcome> {
        let db = self.db()?;
        let mut next = self
            .inner
            .inbound
            .next_seq
            .lock()
            .map_err(|_| Error::Internal("inbound lock poisoned".into()))?;
        let txn_cf = super::cf(&db, maps::TXNID_DIGEST)?;
        if db
            .get_pinned_cf(txn_cf, txn_id.as_bytes())?
            .is_some_and(|d| d.get(..DIGEST_LEN) == Some(&digest[..]))
        {
            return Ok(IngestOutcome { replayed: true, ..Default::default() });
        }

        let seen_cf = super::cf(&db, maps::EVENTID_SEQ)?;
        let views: Vec<NewEntry<'_>> = entries.iter().map(Incoming::entry).collect();
        let ids: Vec<&str> = views.iter().filter_map(|e| e.event_id).collect();
        // One lookup for all of them, batched by RocksDB (sorted, one pass per table file).
        let found = db.batched_multi_get_cf(seen_cf, ids.iter().map(|id| id.as_bytes()), false);
        let mut already: HashSet<&str> = HashSet::with_capacity(ids.len());
        for (id, got) in ids.iter().zip(found) {
            if got?.is_some() {
                already.insert(id);
            }
        }

        let pending_cf = super::cf(&db, maps::SEQ_PENDING)?;
        let mut batch = WriteBatch::default();
        let mut outcome = IngestOutcome::default();
        let mut seq = *next;
        let now = now_ms();
        // Whether each entry is stored (not a duplicate).
        let mut stored = Vec::with_capacity(views.len());
        for e in &views {
            if let Some(id) = e.event_id {
                if !already.insert(id) {
                    outcome.duplicates += 1;
                    stored.push(false);
                    continue;
                }
                batch.put_cf(seen_cf, id.as_bytes(), stamped(&seq.to_be_bytes(), now));
            }
            batch.put_cf(pending_cf, seq.to_be_bytes(), encode_value(e));
            seq += 1;
            stored.push(true);
            outcome.accepted += 1;
            outcome.may_change_rooms += usize::from(e.may_change_rooms);
        }
        drop(already);
        drop(views);
        batch.put_cf(txn_cf, txn_id.as_bytes(), stamped(&digest, now));
        batch.put_cf(super::cf(&db, maps::GLOBAL)?, NEXT_SEQ_KEY, seq.to_be_bytes());
        batch.put_cf(super::cf(&db, maps::GLOBAL)?, LAST_INGEST_KEY, now.to_be_bytes());
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        let syncing = Instant::now();
        let written = self.checked(db.write_opt(batch, &wo));
        let took = u64::try_from(syncing.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.inner.inbound.last_sync_us.store(took, Ordering::Relaxed);
        written?;
        if outcome.accepted > 0 {
            let mut arrivals =
                self.inner.inbound.arrivals.lock().unwrap_or_else(|p| p.into_inner());
            arrivals.push_back((*next, now));
        }
        let kept =
            entries.into_iter().zip(stored).filter(|(_, s)| *s).zip(*next..).map(|((e, _), at)| {
                let size = e.entry().json.len();
                (at, size, move || e.into_pending(at))
            });
        self.inner.inbound.arrived.written(kept, seq);
        *next = seq;
        Ok(outcome)
    }

    /// Whether the caller, an async worker, may run the next [`Store::ingest`] itself
    /// rather than hand it to the blocking pool (two thread hand-offs, each a wake-up):
    /// granted while no other ingest holds the place and the last synced write took less
    /// than [`QUICK_SYNC`], so that at most one worker waits on the disk at a time, and
    /// none on a slow one (whose writes then go to the pool, and are still timed: a disk
    /// that speeds up gets the place back).
    pub(crate) fn claim_quick_ingest(&self) -> Option<QuickIngest<'_>> {
        let state = &self.inner.inbound;
        let quick = state.last_sync_us.load(Ordering::Relaxed) < QUICK_SYNC.as_micros() as u64;
        (quick
            && state
                .quick_claimed
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_ok())
        .then(|| QuickIngest(&state.quick_claimed))
    }

    /// From now on the entries this process stores are also kept in memory until
    /// [`Store::arrived_from`] takes them: for the dispatcher, the only reader of the queue
    /// in order (another reader would find them missing and read the database).
    pub(crate) fn hand_arrivals_over(&self) {
        self.inner.inbound.arrived.want();
    }

    /// [`Store::pending_from`], from the entries this process just stored when they start
    /// at `from` (each is durable: it was kept after its write), else from the database.
    pub(crate) fn arrived_from(&self, from: u64, limit: usize) -> Result<Vec<PendingEntry>> {
        if let Some(kept) = self.inner.inbound.arrived.take_from(from, limit) {
            return Ok(kept.into_iter().map(|(_, e)| e).collect());
        }
        self.pending_from(from, limit)
    }

    /// Up to `limit` pending entries with `seq >= from`, in order.
    pub fn pending_from(&self, from: u64, limit: usize) -> Result<Vec<PendingEntry>> {
        let db = self.db()?;
        let cf = super::cf(&db, maps::SEQ_PENDING)?;
        let start = from.to_be_bytes();
        let mut out = Vec::new();
        for item in db.iterator_cf(cf, IteratorMode::From(&start, Direction::Forward)) {
            let (k, v) = item?;
            out.push(decode_value(codec::decode_u64(&k)?, &v)?);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// How long the oldest entry still waiting has waited (ms), or `None` when none
    /// waits. One seek; arrivals older than that entry are forgotten.
    pub fn oldest_pending_age_ms(&self) -> Result<Option<u64>> {
        let db = self.db()?;
        let cf = super::cf(&db, maps::SEQ_PENDING)?;
        let Some(item) = db.iterator_cf(cf, IteratorMode::Start).next() else {
            return Ok(None);
        };
        let (key, _) = item?;
        let oldest = codec::decode_u64(&key)?;
        let mut arrivals = self.inner.inbound.arrivals.lock().unwrap_or_else(|p| p.into_inner());
        // The transaction that brought `oldest` is the last one starting at or before it.
        while arrivals.get(1).is_some_and(|&(first, _)| first <= oldest) {
            arrivals.pop_front();
        }
        let since = arrivals.front().map_or_else(now_ms, |&(_, at)| at);
        Ok(Some(now_ms().saturating_sub(since)))
    }

    /// How many entries wait to be processed, and how many of them may make a room a
    /// board's (read at start-up: it reads every entry).
    pub fn pending_counts(&self) -> Result<(u64, u64)> {
        let db = self.db()?;
        let cf = super::cf(&db, maps::SEQ_PENDING)?;
        let (mut n, mut changing) = (0, 0);
        for item in db.iterator_cf(cf, IteratorMode::Start) {
            let (_, v) = item?;
            n += 1;
            changing += u64::from(v.first().is_some_and(|b| b & MAY_CHANGE_ROOMS != 0));
        }
        Ok((n, changing))
    }

    /// Marks entry `seq` processed and, in the same atomic write, queues the outbound
    /// requests it produced. A crash before this write replays the entry; after it, the
    /// requests are in the outbox.
    pub fn complete_pending(&self, seq: u64, outbound: &[Vec<u8>]) -> Result<()> {
        let db = self.db()?;
        let mut batch = WriteBatch::default();
        batch.delete_cf(super::cf(&db, maps::SEQ_PENDING)?, seq.to_be_bytes());
        self.write_with_outbox(batch, outbound)
    }

    /// [`Store::complete_pending`] for a group of entries, in one write: each marked
    /// processed, and the requests they produced queued, in order.
    pub fn complete_pending_group(&self, seqs: &[u64], outbound: &[Vec<u8>]) -> Result<()> {
        let db = self.db()?;
        let cf = super::cf(&db, maps::SEQ_PENDING)?;
        let mut batch = WriteBatch::default();
        delete_pending(&mut batch, cf, seqs.to_vec());
        self.write_with_outbox(batch, outbound)
    }

    /// When the last transaction was stored (ms since the epoch), if ever.
    pub fn last_ingest_ms(&self) -> Result<Option<u64>> {
        let db = self.db()?;
        let v = db.get_pinned_cf(super::cf(&db, maps::GLOBAL)?, LAST_INGEST_KEY)?;
        Ok(v.and_then(|v| <[u8; 8]>::try_from(&v[..]).ok()).map(u64::from_be_bytes))
    }

    /// Whether a timeline event has been accepted before.
    pub fn is_event_seen(&self, event_id: &str) -> Result<bool> {
        let db = self.db()?;
        Ok(db.get_pinned_cf(super::cf(&db, maps::EVENTID_SEQ)?, event_id.as_bytes())?.is_some())
    }
}

/// Consecutive seqs removed from the queue in one write past which they go as one range
/// deletion rather than one deletion each.
const RANGE_FROM: usize = 4;

/// Removes the entries `seqs` from the inbound queue in `batch`: each run of at least
/// [`RANGE_FROM`] consecutive seqs (what a busy board's turn handled) as one range
/// deletion, one tombstone instead of one per entry; the others one by one. The queue's
/// keys are its seqs alone, so a range of consecutive seqs holds those entries and no
/// other.
pub(super) fn delete_pending(
    batch: &mut WriteBatch,
    cf: &rocksdb::ColumnFamily,
    mut seqs: Vec<u64>,
) {
    seqs.sort_unstable();
    seqs.dedup();
    let mut rest = seqs.as_slice();
    while let Some(&first) = rest.first() {
        let run = rest.iter().zip(first..).take_while(|(seq, expected)| **seq == *expected).count();
        let last = rest[run - 1];
        match last.checked_add(1) {
            Some(end) if run >= RANGE_FROM => {
                batch.delete_range_cf(cf, first.to_be_bytes(), end.to_be_bytes());
            }
            _ => {
                for seq in &rest[..run] {
                    batch.delete_cf(cf, seq.to_be_bytes());
                }
            }
        }
        rest = &rest[run..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry<'a>(id: &'a str, json: &'a [u8]) -> NewEntry<'a> {
        NewEntry {
            kind: EntryKind::Timeline,
            room_id: "!r",
            event_id: Some(id),
            json,
            may_change_rooms: false,
            plain: false,
        }
    }

    #[test]
    fn duplicates_are_skipped_and_replays_do_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let a = [entry("$a", b"{}"), entry("$b", b"{}"), entry("$a", b"{}")];
        let out = store.ingest("1", [1; 32], &a).expect("ingest");
        assert_eq!(out, IngestOutcome { accepted: 2, duplicates: 1, ..Default::default() });
        let out = store.ingest("1", [1; 32], &a).expect("ingest");
        assert!(out.replayed);
        // Same events, new transaction id: nothing new.
        let out = store.ingest("2", [2; 32], &a[..2]).expect("ingest");
        assert_eq!(out, IngestOutcome { accepted: 0, duplicates: 2, ..Default::default() });
        // Reused transaction id, new body: processed.
        let out = store.ingest("1", [3; 32], &[entry("$c", b"{\"x\":1}")]).expect("ingest");
        assert_eq!(out.accepted, 1);
        let pending = store.pending_from(0, 10).expect("pending");
        let rooms: Vec<_> = pending.iter().map(|p| (p.seq, p.json.clone())).collect();
        assert_eq!(
            rooms,
            vec![(1, b"{}".to_vec()), (2, b"{}".to_vec()), (3, b"{\"x\":1}".to_vec())]
        );
    }

    /// Runs of consecutive seqs are taken off the queue as ranges, the rest one by one:
    /// exactly the entries named go, in any order and with repeats, and across a reopen.
    #[test]
    fn completed_entries_leave_the_queue_by_ranges_and_one_by_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ids: Vec<String> = (1..=14).map(|i| format!("$e{i}")).collect();
        {
            let store = Store::open(dir.path()).expect("open");
            let all: Vec<NewEntry<'_>> = ids.iter().map(|id| entry(id, b"{}")).collect();
            assert_eq!(store.ingest("1", [1; 32], &all).expect("ingest").accepted, 14);
            // 2 to 6 a range; 8 and 9 one by one; 11 to 14, given out of order, a range.
            store
                .complete_pending_group(&[5, 2, 3, 4, 6, 8, 9, 14, 12, 11, 13, 3], &[])
                .expect("complete");
            let left: Vec<u64> =
                store.pending_from(0, 20).expect("pending").iter().map(|e| e.seq).collect();
            assert_eq!(left, [1, 7, 10]);
        }
        let store = Store::open(dir.path()).expect("reopen");
        let left: Vec<u64> =
            store.pending_from(0, 20).expect("pending").iter().map(|e| e.seq).collect();
        assert_eq!(left, [1, 7, 10], "the same after a reopen");
        let status = store.status().expect("status");
        assert_eq!((status.pending, status.oldest_pending.map(|o| o.seq)), (3, Some(1)));
    }

    /// (seq, json) of entries.
    fn seqs(entries: &[PendingEntry]) -> Vec<(u64, String)> {
        entries.iter().map(|e| (e.seq, String::from_utf8_lossy(&e.json).into_owned())).collect()
    }

    #[test]
    fn one_ingest_at_a_time_runs_on_a_worker_and_none_after_a_slow_sync() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let first = store.claim_quick_ingest();
        assert!(first.is_some(), "a fresh store's first ingest may run on its worker");
        assert!(store.claim_quick_ingest().is_none(), "a second at the same time may not");
        drop(first);
        let again = store.claim_quick_ingest();
        assert!(again.is_some(), "the place is given back when the ingest ends");
        drop(again);
        // Each ingest times its synced write (on a temporary directory, well under a
        // minute).
        store.inner.inbound.last_sync_us.store(u64::MAX, Ordering::Relaxed);
        store.ingest("1", [1; 32], &[entry("$a", b"1")]).expect("ingest");
        let took = store.inner.inbound.last_sync_us.load(Ordering::Relaxed);
        assert!(took < 60_000_000, "the write's time is kept, in µs: {took}");
        // After a slow synced write no ingest runs on a worker, until a quick one.
        let slow = QUICK_SYNC.as_micros() as u64;
        store.inner.inbound.last_sync_us.store(slow, Ordering::Relaxed);
        assert!(store.claim_quick_ingest().is_none(), "a slow disk keeps ingest off the workers");
        store.inner.inbound.last_sync_us.store(slow - 1, Ordering::Relaxed);
        assert!(store.claim_quick_ingest().is_some(), "a quick disk gets the place back");
    }

    #[test]
    fn the_dispatcher_takes_what_was_just_stored_from_memory_and_the_rest_from_the_database() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        // Stored before the dispatcher asked: only in the database.
        store.ingest("1", [1; 32], &[entry("$a", b"1")]).expect("ingest");
        store.hand_arrivals_over();
        // A duplicate in the middle takes no seq.
        let b = [entry("$b", b"2"), entry("$a", b"dup"), entry("$c", b"3")];
        store.ingest("2", [2; 32], &b).expect("ingest");
        let kept = |s: &Store| s.inner.inbound.arrived.kept_len();
        assert_eq!(kept(&store), 2);

        // From the start: the database has them all (and the kept ones are let go once read).
        let first = store.arrived_from(0, 2).expect("read");
        assert_eq!(seqs(&first), [(1, "1".into()), (2, "2".into())]);
        let rest = store.arrived_from(3, 10).expect("read");
        assert_eq!(seqs(&rest), [(3, "3".into())]);
        assert_eq!(kept(&store), 0);
        // Nothing past the last stored: nothing, without a read.
        assert!(store.arrived_from(4, 10).expect("read").is_empty());

        // Kept in memory, taken from there, in order, `limit` at a time; the database still
        // holds them until they are processed.
        let d = [entry("$d", b"4"), entry("$e", b"5"), entry("$f", b"6")];
        store.ingest("3", [3; 32], &d).expect("ingest");
        assert_eq!(
            seqs(&store.arrived_from(4, 2).expect("read")),
            [(4, "4".into()), (5, "5".into())]
        );
        assert_eq!(kept(&store), 1);
        assert_eq!(seqs(&store.arrived_from(6, 10).expect("read")), [(6, "6".into())]);
        assert_eq!(store.pending_from(4, 10).expect("pending").len(), 3);

        // Past the bound, the rest is read from the database, after what is kept.
        let big = vec![b'x'; super::super::arrived::MAX_BYTES];
        let over = [entry("$g", &big), entry("$h", b"8"), entry("$i", b"9")];
        store.ingest("4", [4; 32], &over).expect("ingest");
        store.ingest("5", [5; 32], &[entry("$j", b"10")]).expect("ingest");
        assert_eq!(store.arrived_from(7, 10).expect("read").len(), 1, "only $g was kept");
        let read = store.arrived_from(8, 10).expect("read");
        assert_eq!(seqs(&read), [(8, "8".into()), (9, "9".into()), (10, "10".into())]);
        assert_eq!(kept(&store), 0, "$j, kept after the gap, was read from the database");
    }

    #[test]
    fn pending_survives_reopen_and_sequence_continues() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = Store::open(dir.path()).expect("open");
            store.ingest("1", [0; 32], &[entry("$a", b"1"), entry("$b", b"2")]).expect("ingest");
            store.complete_pending(1, &[b"out".to_vec()]).expect("complete");
        }
        let store = Store::open(dir.path()).expect("reopen");
        let pending = store.pending_from(0, 10).expect("pending");
        assert_eq!(pending.len(), 1);
        assert_eq!((pending[0].seq, pending[0].room_id.as_str()), (2, "!r"));
        store.ingest("2", [0; 32], &[entry("$c", b"3")]).expect("ingest");
        assert_eq!(store.pending_from(0, 10).expect("pending").last().map(|p| p.seq), Some(3));
        store.complete_pending(2, &[]).expect("complete");
        store.complete_pending(3, &[]).expect("complete");
        drop(store);
        // An empty queue at start-up does not restart the numbering.
        let store = Store::open(dir.path()).expect("reopen");
        store.ingest("3", [0; 32], &[entry("$d", b"4")]).expect("ingest");
        assert_eq!(store.pending_from(0, 10).expect("pending").last().map(|p| p.seq), Some(4));
        assert_eq!(seq_of_event(&store, "$d").expect("seq"), Some(4));
        assert_eq!(store.outbox_from(0, 10).expect("outbox").len(), 1);
    }

    /// Whether an entry can make a room a board's is kept with it: read back with the
    /// entry, and counted again when the store is opened; so is whether it is a message
    /// that cannot be a command.
    #[test]
    fn an_entry_that_may_change_rooms_is_known_after_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = Store::open(dir.path()).expect("open");
            let changing = NewEntry { may_change_rooms: true, ..entry("$tomb", b"{}") };
            let plain = NewEntry { plain: true, ..entry("$b", b"{}") };
            let out =
                store.ingest("1", [0; 32], &[entry("$a", b"{}"), changing, plain]).expect("ingest");
            assert_eq!((out.accepted, out.may_change_rooms), (3, 1));
            // Seen again: not stored, not counted.
            let out = store.ingest("2", [1; 32], &[changing]).expect("ingest");
            assert_eq!((out.accepted, out.may_change_rooms), (0, 0));
        }
        let store = Store::open(dir.path()).expect("reopen");
        assert_eq!(store.pending_counts().expect("counts"), (3, 1));
        let flags: Vec<(EntryKind, bool, bool)> = store
            .pending_from(0, 10)
            .expect("pending")
            .iter()
            .map(|e| (e.kind, e.may_change_rooms, e.plain))
            .collect();
        assert_eq!(
            flags,
            [
                (EntryKind::Timeline, false, false),
                (EntryKind::Timeline, true, false),
                (EntryKind::Timeline, false, true)
            ]
        );
    }

    #[test]
    fn the_oldest_waiting_entry_has_the_age_of_its_transaction() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        assert_eq!(store.oldest_pending_age_ms().expect("age"), None);
        store.ingest("1", [1; 32], &[entry("$a", b"{}"), entry("$b", b"{}")]).expect("ingest");
        // As if the first transaction came a minute ago, the second now.
        store.inner.inbound.arrivals.lock().expect("lock").back_mut().expect("arrival").1 -= 60_000;
        store.ingest("2", [2; 32], &[entry("$c", b"{}")]).expect("ingest");
        let age = store.oldest_pending_age_ms().expect("age").expect("waiting");
        assert!((60_000..70_000).contains(&age), "{age}");
        // The first transaction's entries done: the age is the second's.
        store.complete_pending_group(&[1, 2], &[]).expect("complete");
        let age = store.oldest_pending_age_ms().expect("age").expect("waiting");
        assert!(age < 10_000, "{age}");
        store.complete_pending(3, &[]).expect("complete");
        assert_eq!(store.oldest_pending_age_ms().expect("age"), None);
    }

    #[test]
    fn remembered_ids_expire_at_compaction() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        store.ingest("new", [1; 32], &[entry("$new", b"{}")]).expect("ingest");
        // Written as ingest writes them, but older than the retention; and one from
        // before write times were kept.
        let long_ago = now_ms() - u64::try_from(SEEN_RETENTION.as_millis()).expect("ms") - 1000;
        let db = store.db().expect("db");
        let seen = crate::store::cf(&db, maps::EVENTID_SEQ).expect("cf");
        let txns = crate::store::cf(&db, maps::TXNID_DIGEST).expect("cf");
        db.put_cf(seen, "$old", stamped(&7u64.to_be_bytes(), long_ago)).expect("put");
        db.put_cf(txns, "old", stamped(&[2; 32], long_ago)).expect("put");
        db.put_cf(seen, "$legacy", 8u64.to_be_bytes()).expect("put");
        assert_eq!(seq_of_event(&store, "$old").expect("seq"), Some(7));
        assert_eq!(seq_of_event(&store, "$legacy").expect("seq"), Some(8));

        for cf in [seen, txns] {
            db.flush_cf(cf).expect("flush");
            db.compact_range_cf(cf, None::<&[u8]>, None::<&[u8]>);
        }
        assert!(!store.is_event_seen("$old").expect("read"), "an expired event id is dropped");
        assert!(db.get_cf(txns, "old").expect("read").is_none());
        assert!(store.is_event_seen("$new").expect("read"));
        assert!(store.is_event_seen("$legacy").expect("read"));
        assert_eq!(seq_of_event(&store, "$new").expect("seq"), Some(1));
        // The fresh transaction is still recognised as a replay.
        assert!(store.ingest("new", [1; 32], &[entry("$new", b"{}")]).expect("ingest").replayed);
    }

    #[test]
    fn a_database_without_the_counter_starts_past_every_remembered_seq() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = Store::open(dir.path()).expect("open");
            store.ingest("1", [0; 32], &[entry("$a", b"1"), entry("$b", b"2")]).expect("ingest");
            store.complete_pending(1, &[]).expect("complete");
            store.complete_pending(2, &[]).expect("complete");
            // As a database from before the counter was kept.
            let db = store.db().expect("db");
            let global = crate::store::cf(&db, maps::GLOBAL).expect("cf");
            db.delete_cf(global, NEXT_SEQ_KEY).expect("delete");
        }
        let store = Store::open(dir.path()).expect("reopen");
        store.ingest("2", [0; 32], &[entry("$c", b"3")]).expect("ingest");
        assert_eq!(seq_of_event(&store, "$c").expect("seq"), Some(3));
    }
}
