//! Outbound requests not yet accepted by the homeserver. Maps: `seq_outbox`,
//! `seq_outboxdead`, `seq_outboxsent`. A request leaves the outbox only when the homeserver
//! accepted it or refused it for good (then it is kept in `seq_outboxdead` for the admin).
//! A message is marked in `seq_outboxsent` before it is first sent: after a crash or a
//! broken connection it may have landed, and is looked for before it is sent again.

use std::sync::{
    Mutex,
    atomic::{AtomicU64, Ordering},
};

use rocksdb::{DB, Direction, IteratorMode, WriteBatch, WriteOptions};

use super::{Store, codec, maps};
use crate::error::{Error, Result};

/// Allocates outbox sequence numbers in write order, and keeps how many entries each
/// map holds (for the metrics: read without a scan).
#[derive(Debug)]
pub(crate) struct OutboxState {
    next_seq: Mutex<u64>,
    /// Entries in `seq_outbox`.
    queued: AtomicU64,
    /// Entries in `seq_outboxsent`.
    sent: AtomicU64,
    /// Entries in `seq_outboxdead`.
    dead: AtomicU64,
    /// Entries written and not yet read by the outbox worker, once it asked for them
    /// ([`Store::hand_outbox_over`]).
    arrived: super::arrived::Arrived<Vec<u8>>,
}

/// How many outbox entries are in each state ([`Store::outbox_counts`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutboxCounts {
    /// Queued and not yet sent (messages not yet sent, and every other request not yet
    /// accepted).
    pub waiting: u64,
    /// Messages sent whose acceptance is not yet recorded.
    pub sent: u64,
    /// Requests set aside (dead letters).
    pub dead: u64,
}

/// The number of entries in map `name` (a scan: at open and after a reopen only).
fn count(db: &DB, name: &str) -> Result<u64> {
    let mut n = 0;
    for item in db.iterator_cf(super::cf(db, name)?, IteratorMode::Start) {
        item?;
        n += 1;
    }
    Ok(n)
}

impl OutboxState {
    pub(crate) fn load(db: &DB) -> Result<Self> {
        // Dead entries keep their seq: never hand it out again.
        let next =
            super::next_seq(db, maps::SEQ_OUTBOX)?.max(super::next_seq(db, maps::SEQ_OUTBOXDEAD)?);
        Ok(Self {
            next_seq: Mutex::new(next),
            arrived: super::arrived::Arrived::new(next, super::arrived::MAX_BYTES),
            queued: AtomicU64::new(count(db, maps::SEQ_OUTBOX)?),
            sent: AtomicU64::new(count(db, maps::SEQ_OUTBOXSENT)?),
            dead: AtomicU64::new(count(db, maps::SEQ_OUTBOXDEAD)?),
        })
    }
}

/// Subtracts one from `n` when `present` (never below zero).
fn take_one(n: &AtomicU64, present: bool) {
    if present {
        let _ = n.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| Some(v.saturating_sub(1)));
    }
}

impl OutboxState {
    /// Reads the counter again from `db`, after the database was reopened: a write whose
    /// outcome was an error may have landed. It never moves back: numbers handed out and
    /// since removed (a sent outbox entry) are not on disk, and the workers have read past
    /// them.
    pub(crate) fn reload(&self, db: &DB) -> Result<()> {
        let fresh = Self::load(db)?;
        let mut current =
            self.next_seq.lock().map_err(|_| Error::Internal("outbox lock poisoned".into()))?;
        *current = (*current).max(fresh.next_seq.into_inner().unwrap_or_else(|p| p.into_inner()));
        self.arrived.reset(*current);
        for (kept, read) in
            [(&self.queued, fresh.queued), (&self.sent, fresh.sent), (&self.dead, fresh.dead)]
        {
            kept.store(read.into_inner(), Ordering::Release);
        }
        Ok(())
    }
}

impl Store {
    /// Writes `batch` plus the given outbox entries atomically.
    pub(crate) fn write_with_outbox(&self, batch: WriteBatch, outbound: &[Vec<u8>]) -> Result<()> {
        self.write_with_outbox_opt(batch, outbound, &WriteOptions::default())
    }

    /// [`Store::write_with_outbox`], synced (`fsync` of the write-ahead log): for writes
    /// acknowledged to a caller that will not send them again (a webhook delivery).
    pub(crate) fn write_with_outbox_synced(
        &self,
        batch: WriteBatch,
        outbound: &[Vec<u8>],
    ) -> Result<()> {
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.write_with_outbox_opt(batch, outbound, &wo)
    }

    pub(super) fn write_with_outbox_opt(
        &self,
        mut batch: WriteBatch,
        outbound: &[Vec<u8>],
        opts: &WriteOptions,
    ) -> Result<()> {
        let db = self.db()?;
        let cf = super::cf(&db, maps::SEQ_OUTBOX)?;
        let mut next = self
            .inner
            .outbox
            .next_seq
            .lock()
            .map_err(|_| Error::Internal("outbox lock poisoned".into()))?;
        let mut seq = *next;
        for value in outbound {
            batch.put_cf(cf, seq.to_be_bytes(), value);
            seq += 1;
        }
        self.checked(db.write_opt(batch, opts))?;
        let kept = (*next..).zip(outbound).map(|(at, v)| (at, v.len(), || v.clone()));
        self.inner.outbox.arrived.written(kept, seq);
        *next = seq;
        self.inner.outbox.queued.fetch_add(outbound.len() as u64, Ordering::AcqRel);
        Ok(())
    }

    /// From now on the entries written to the outbox are also kept in memory until
    /// [`Store::outbox_arrived_from`] takes them: for the outbox worker, the only reader of
    /// the outbox in order.
    pub(crate) fn hand_outbox_over(&self) {
        self.inner.outbox.arrived.want();
    }

    /// [`Store::outbox_from`], from the entries just written when they start at `from`,
    /// else from the database.
    pub(crate) fn outbox_arrived_from(
        &self,
        from: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>> {
        match self.inner.outbox.arrived.take_from(from, limit) {
            Some(kept) => Ok(kept),
            None => self.outbox_from(from, limit),
        }
    }

    /// How many outbox entries wait, were sent unconfirmed, and were set aside: counts kept
    /// in memory, read without touching the database.
    pub fn outbox_counts(&self) -> OutboxCounts {
        let state = &self.inner.outbox;
        let (queued, sent) =
            (state.queued.load(Ordering::Acquire), state.sent.load(Ordering::Acquire));
        OutboxCounts {
            waiting: queued.saturating_sub(sent),
            sent,
            dead: state.dead.load(Ordering::Acquire),
        }
    }

    /// Whether `map` holds `seq` (a point read, for the kept counts).
    fn holds(db: &DB, map: &str, seq: u64) -> Result<bool> {
        Ok(db.get_pinned_cf(super::cf(db, map)?, seq.to_be_bytes())?.is_some())
    }

    /// Queues outbound requests on their own.
    pub fn enqueue_outbound(&self, outbound: &[Vec<u8>]) -> Result<()> {
        self.write_with_outbox(WriteBatch::default(), outbound)
    }

    /// Up to `limit` outbox entries with `seq >= from`, in order.
    pub fn outbox_from(&self, from: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>> {
        let db = self.db()?;
        let cf = super::cf(&db, maps::SEQ_OUTBOX)?;
        let start = from.to_be_bytes();
        let mut out = Vec::new();
        for item in db.iterator_cf(cf, IteratorMode::From(&start, Direction::Forward)) {
            let (k, v) = item?;
            out.push((codec::decode_u64(&k)?, v.to_vec()));
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// The homeserver accepted entry `seq`.
    pub fn outbox_done(&self, seq: u64) -> Result<()> {
        let db = self.db()?;
        let (queued, sent) = (
            Self::holds(&db, maps::SEQ_OUTBOX, seq)?,
            Self::holds(&db, maps::SEQ_OUTBOXSENT, seq)?,
        );
        let mut batch = WriteBatch::default();
        batch.delete_cf(super::cf(&db, maps::SEQ_OUTBOX)?, seq.to_be_bytes());
        batch.delete_cf(super::cf(&db, maps::SEQ_OUTBOXSENT)?, seq.to_be_bytes());
        self.checked(db.write(batch))?;
        take_one(&self.inner.outbox.queued, queued);
        take_one(&self.inner.outbox.sent, sent);
        Ok(())
    }

    /// Marks entry `seq` as sent for the first time at `at_ms` (ms since the epoch), before
    /// it is: from then on it may have landed, whatever becomes of this process or the
    /// connection.
    pub fn outbox_mark_sent(&self, seq: u64, at_ms: u64) -> Result<()> {
        let db = self.db()?;
        let marked = Self::holds(&db, maps::SEQ_OUTBOXSENT, seq)?;
        self.checked(db.put_cf(
            super::cf(&db, maps::SEQ_OUTBOXSENT)?,
            seq.to_be_bytes(),
            at_ms.to_be_bytes(),
        ))?;
        if !marked {
            self.inner.outbox.sent.fetch_add(1, Ordering::AcqRel);
        }
        Ok(())
    }

    /// When entry `seq` was first sent (ms since the epoch), if it was.
    pub fn outbox_sent_at(&self, seq: u64) -> Result<Option<u64>> {
        let db = self.db()?;
        db.get_pinned_cf(super::cf(&db, maps::SEQ_OUTBOXSENT)?, seq.to_be_bytes())?
            .map(|v| codec::decode_u64(&v))
            .transpose()
    }

    /// The homeserver refused entry `seq` for good: keep it, with the error, for the admin.
    pub fn outbox_dead(&self, seq: u64, value: &[u8], error: &str) -> Result<()> {
        let db = self.db()?;
        let (queued, sent, dead) = (
            Self::holds(&db, maps::SEQ_OUTBOX, seq)?,
            Self::holds(&db, maps::SEQ_OUTBOXSENT, seq)?,
            Self::holds(&db, maps::SEQ_OUTBOXDEAD, seq)?,
        );
        let mut batch = WriteBatch::default();
        let record = serde_json::json!({
            "request": String::from_utf8_lossy(value),
            "error": error,
        });
        batch.put_cf(super::cf(&db, maps::SEQ_OUTBOXDEAD)?, seq.to_be_bytes(), record.to_string());
        batch.delete_cf(super::cf(&db, maps::SEQ_OUTBOX)?, seq.to_be_bytes());
        batch.delete_cf(super::cf(&db, maps::SEQ_OUTBOXSENT)?, seq.to_be_bytes());
        self.checked(db.write(batch))?;
        take_one(&self.inner.outbox.queued, queued);
        take_one(&self.inner.outbox.sent, sent);
        if !dead {
            self.inner.outbox.dead.fetch_add(1, Ordering::AcqRel);
        }
        Ok(())
    }

    /// Puts every request set aside back in the outbox, under new sequence numbers after
    /// everything queued, in one atomic write. Returns how many.
    pub fn requeue_dead(&self) -> Result<usize> {
        let db = self.db()?;
        let dead = super::cf(&db, maps::SEQ_OUTBOXDEAD)?;
        let mut batch = WriteBatch::default();
        let mut requests = Vec::new();
        for item in db.iterator_cf(dead, IteratorMode::Start) {
            let (k, v) = item?;
            let record: serde_json::Value = super::decode(&v)?;
            let request = record
                .get("request")
                .and_then(|r| r.as_str())
                .ok_or_else(|| Error::Store("a dead outbox entry without its request".into()))?;
            requests.push(request.as_bytes().to_vec());
            batch.delete_cf(dead, k);
        }
        let n = requests.len();
        self.write_with_outbox(batch, &requests)?;
        for _ in 0..n {
            take_one(&self.inner.outbox.dead, true);
        }
        Ok(n)
    }

    /// Requests refused for good, oldest first.
    pub fn outbox_dead_entries(&self, limit: usize) -> Result<Vec<(u64, String)>> {
        let db = self.db()?;
        let cf = super::cf(&db, maps::SEQ_OUTBOXDEAD)?;
        let mut out = Vec::new();
        for item in db.iterator_cf(cf, IteratorMode::Start).take(limit) {
            let (k, v) = item?;
            out.push((codec::decode_u64(&k)?, String::from_utf8_lossy(&v).into_owned()));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_leave_only_when_done_or_dead() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        store.enqueue_outbound(&[b"a".to_vec(), b"b".to_vec()]).expect("enqueue");
        assert_eq!(
            store.outbox_from(0, 10).expect("list"),
            vec![(1, b"a".to_vec()), (2, b"b".to_vec())]
        );
        // Marked as sent, then accepted or refused: the marks go with the entries.
        store.outbox_mark_sent(1, 7).expect("mark");
        store.outbox_mark_sent(2, 8).expect("mark");
        assert_eq!(store.outbox_sent_at(1).expect("read"), Some(7));
        store.outbox_done(1).expect("done");
        store.outbox_dead(2, b"b", "M_FORBIDDEN").expect("dead");
        assert_eq!(store.outbox_sent_at(1).expect("read"), None);
        assert_eq!(store.outbox_sent_at(2).expect("read"), None);
        assert!(store.outbox_from(0, 10).expect("list").is_empty());
        let dead = store.outbox_dead_entries(10).expect("dead");
        assert_eq!(dead.len(), 1);
        assert!(dead[0].1.contains("M_FORBIDDEN"));
        store.enqueue_outbound(&[b"c".to_vec()]).expect("enqueue");
        assert_eq!(store.outbox_from(0, 10).expect("list"), vec![(3, b"c".to_vec())]);
        // Put back, they go after what is queued, and the dead list is empty.
        assert_eq!(store.requeue_dead().expect("requeue"), 1);
        assert_eq!(
            store.outbox_from(0, 10).expect("list"),
            vec![(3, b"c".to_vec()), (4, b"b".to_vec())]
        );
        assert!(store.outbox_dead_entries(10).expect("dead").is_empty());
    }

    #[test]
    fn counts_follow_each_entry_and_survive_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let counts = |store: &Store| {
            let c = store.outbox_counts();
            (c.waiting, c.sent, c.dead)
        };
        assert_eq!(counts(&store), (0, 0, 0));
        store.enqueue_outbound(&[b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]).expect("enqueue");
        assert_eq!(counts(&store), (3, 0, 0));
        store.outbox_mark_sent(1, 7).expect("mark");
        store.outbox_mark_sent(1, 8).expect("marked again");
        store.outbox_mark_sent(2, 8).expect("mark");
        assert_eq!(counts(&store), (1, 2, 0));
        store.outbox_done(1).expect("done");
        store.outbox_done(1).expect("done again: nothing to count");
        assert_eq!(counts(&store), (1, 1, 0));
        store.outbox_dead(2, b"b", "M_FORBIDDEN").expect("dead");
        assert_eq!(counts(&store), (1, 0, 1));
        drop(store);
        let store = Store::open(dir.path()).expect("reopen");
        assert_eq!(counts(&store), (1, 0, 1));
        assert_eq!(store.requeue_dead().expect("requeue"), 1);
        assert_eq!(counts(&store), (2, 0, 0));
        let db = store.db().expect("db");
        store.inner.outbox.reload(&db).expect("reload");
        assert_eq!(counts(&store), (2, 0, 0));
    }
}
