//! Inbound events: deduplicated and made durable before the transaction is acknowledged,
//! then processed and removed. Maps: `txnid_digest`, `eventid_seq`, `seq_pending`.

use std::{collections::HashSet, sync::Mutex};

use rocksdb::{DB, Direction, IteratorMode, WriteBatch, WriteOptions};

use super::{Store, codec, maps};
use crate::error::{Error, Result};

/// What an inbound entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum EntryKind {
    /// A timeline event (`events` in the transaction).
    Timeline = 1,
    /// A read receipt (`m.receipt` ephemeral event), kept for the notification inbox.
    Receipt = 2,
}

impl EntryKind {
    fn from_byte(b: u8) -> Result<Self> {
        match b {
            1 => Ok(Self::Timeline),
            2 => Ok(Self::Receipt),
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
}

const NEXT_SEQ_KEY: &[u8] = b"inbound_next_seq";

/// The inbound seq of an accepted timeline event: its place in arrival order.
pub fn seq_of_event(store: &Store, event_id: &str) -> Result<Option<u64>> {
    store
        .db
        .get_pinned_cf(store.cf(maps::EVENTID_SEQ)?, event_id.as_bytes())?
        .map(|v| codec::decode_u64(&v))
        .transpose()
}

/// Serializes ingest so that sequence numbers are written in order.
#[derive(Debug)]
pub(crate) struct InboundState {
    next_seq: Mutex<u64>,
}

impl InboundState {
    pub(crate) fn load(db: &DB) -> Result<Self> {
        // The counter is also written with every ingest: seqs keep growing even when the
        // queue is empty at start-up, so they order events across restarts.
        let stored = db
            .get_cf(super::cf(db, maps::GLOBAL)?, NEXT_SEQ_KEY)?
            .map(|v| codec::decode_u64(&v))
            .transpose()?
            .unwrap_or(1);
        Ok(Self { next_seq: Mutex::new(super::next_seq(db, maps::SEQ_PENDING)?.max(stored)) })
    }
}

fn encode_value(kind: EntryKind, room_id: &str, json: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(2 + room_id.len() + json.len());
    v.push(kind as u8);
    v.extend_from_slice(room_id.as_bytes());
    v.push(codec::SEP);
    v.extend_from_slice(json);
    v
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
        kind: EntryKind::from_byte(kind)?,
        room_id: room_id.to_owned(),
        json: rest[sep + 1..].to_vec(),
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
        let mut next = self
            .inbound
            .next_seq
            .lock()
            .map_err(|_| Error::Internal("inbound lock poisoned".into()))?;
        let txn_cf = self.cf(maps::TXNID_DIGEST)?;
        if self.db.get_pinned_cf(txn_cf, txn_id.as_bytes())?.is_some_and(|d| *d == digest) {
            return Ok(IngestOutcome { replayed: true, ..Default::default() });
        }

        let seen_cf = self.cf(maps::EVENTID_SEQ)?;
        let ids: Vec<&str> = entries.iter().filter_map(|e| e.event_id).collect();
        let found = self.db.multi_get_cf(ids.iter().map(|id| (seen_cf, id.as_bytes())));
        let mut already: HashSet<&str> = HashSet::with_capacity(ids.len());
        for (id, got) in ids.iter().zip(found) {
            if got?.is_some() {
                already.insert(id);
            }
        }

        let pending_cf = self.cf(maps::SEQ_PENDING)?;
        let mut batch = WriteBatch::default();
        let mut outcome = IngestOutcome::default();
        let mut seq = *next;
        for e in entries {
            if let Some(id) = e.event_id {
                if !already.insert(id) {
                    outcome.duplicates += 1;
                    continue;
                }
                batch.put_cf(seen_cf, id.as_bytes(), seq.to_be_bytes());
            }
            batch.put_cf(pending_cf, seq.to_be_bytes(), encode_value(e.kind, e.room_id, e.json));
            seq += 1;
            outcome.accepted += 1;
        }
        batch.put_cf(txn_cf, txn_id.as_bytes(), digest);
        batch.put_cf(self.cf(maps::GLOBAL)?, NEXT_SEQ_KEY, seq.to_be_bytes());
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db.write_opt(batch, &wo)?;
        *next = seq;
        Ok(outcome)
    }

    /// Up to `limit` pending entries with `seq >= from`, in order.
    pub fn pending_from(&self, from: u64, limit: usize) -> Result<Vec<PendingEntry>> {
        let cf = self.cf(maps::SEQ_PENDING)?;
        let start = from.to_be_bytes();
        let mut out = Vec::new();
        for item in self.db.iterator_cf(cf, IteratorMode::From(&start, Direction::Forward)) {
            let (k, v) = item?;
            out.push(decode_value(codec::decode_u64(&k)?, &v)?);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Marks entry `seq` processed and, in the same atomic write, queues the outbound
    /// requests it produced. A crash before this write replays the entry; after it, the
    /// requests are in the outbox.
    pub fn complete_pending(&self, seq: u64, outbound: &[Vec<u8>]) -> Result<()> {
        let mut batch = WriteBatch::default();
        batch.delete_cf(self.cf(maps::SEQ_PENDING)?, seq.to_be_bytes());
        self.write_with_outbox(batch, outbound)
    }

    /// Whether a timeline event has been accepted before.
    pub fn is_event_seen(&self, event_id: &str) -> Result<bool> {
        Ok(self.db.get_pinned_cf(self.cf(maps::EVENTID_SEQ)?, event_id.as_bytes())?.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry<'a>(id: &'a str, json: &'a [u8]) -> NewEntry<'a> {
        NewEntry { kind: EntryKind::Timeline, room_id: "!r", event_id: Some(id), json }
    }

    #[test]
    fn duplicates_are_skipped_and_replays_do_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let a = [entry("$a", b"{}"), entry("$b", b"{}"), entry("$a", b"{}")];
        let out = store.ingest("1", [1; 32], &a).expect("ingest");
        assert_eq!(out, IngestOutcome { accepted: 2, duplicates: 1, replayed: false });
        let out = store.ingest("1", [1; 32], &a).expect("ingest");
        assert!(out.replayed);
        // Same events, new transaction id: nothing new.
        let out = store.ingest("2", [2; 32], &a[..2]).expect("ingest");
        assert_eq!(out, IngestOutcome { accepted: 0, duplicates: 2, replayed: false });
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
}
