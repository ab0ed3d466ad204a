//! What a queue's writer just made durable, kept in memory for the queue's one in-order
//! reader (the dispatcher for the inbound queue, the outbox worker for the outbox), so
//! that it takes new entries from here rather than reading them back from RocksDB. The
//! database stays the record: what was written before the reader asked, and what does not
//! fit, the reader reads from it (see [`Arrived::take_from`]).

use std::{
    collections::VecDeque,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

/// What each queue keeps, at most, in bytes of entries: past it, new ones are read from
/// the database (a backlog is read as the reader makes room).
pub(super) const MAX_BYTES: usize = 1 << 20;

/// Entries by seq, oldest first, and the seq after the last one written.
#[derive(Debug)]
pub(crate) struct Arrived<T> {
    kept: Mutex<Kept<T>>,
    /// The seq after the last entry written: none is at or past it.
    written_up_to: AtomicU64,
    max_bytes: usize,
}

#[derive(Debug)]
struct Kept<T> {
    /// Whether the reader takes them ([`Arrived::want`]); until then nothing is kept.
    wanted: bool,
    /// Each with its size.
    entries: VecDeque<(u64, T, usize)>,
    bytes: usize,
}

impl<T> Arrived<T> {
    /// Nothing kept; `next` is the seq after the last one in the database.
    pub(crate) fn new(next: u64, max_bytes: usize) -> Self {
        Self {
            kept: Mutex::new(Kept { wanted: false, entries: VecDeque::new(), bytes: 0 }),
            written_up_to: AtomicU64::new(next),
            max_bytes,
        }
    }

    fn kept(&self) -> std::sync::MutexGuard<'_, Kept<T>> {
        self.kept.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// From now on, what is written is kept until taken.
    pub(crate) fn want(&self) {
        self.kept().wanted = true;
    }

    /// After a write (under the writer's lock, so that seqs come in order): keeps the
    /// entries it wrote, each a seq, its size and how to make it, while the reader wants
    /// them and they fit (past that, the rest of this write is read from the database);
    /// `next` is the seq after the write's last.
    pub(crate) fn written(
        &self,
        entries: impl IntoIterator<Item = (u64, usize, impl FnOnce() -> T)>,
        next: u64,
    ) {
        let mut kept = self.kept();
        if kept.wanted {
            for (seq, size, make) in entries {
                if kept.bytes + size > self.max_bytes {
                    break;
                }
                kept.bytes += size;
                kept.entries.push_back((seq, make(), size));
            }
        }
        drop(kept);
        self.written_up_to.fetch_max(next, Ordering::AcqRel);
    }

    /// After the database was reopened: what it holds is read from it.
    pub(crate) fn reset(&self, next: u64) {
        let mut kept = self.kept();
        kept.entries.clear();
        kept.bytes = 0;
        drop(kept);
        self.written_up_to.fetch_max(next, Ordering::AcqRel);
    }

    /// Up to `limit` entries from `from` on, in order: those kept when they start at
    /// `from`; none when nothing was written at or past `from` (the writer wakes the reader
    /// after its write); `None` when they are to be read from the database. Entries kept
    /// before `from` were read already (from the database) and are let go.
    pub(crate) fn take_from(&self, from: u64, limit: usize) -> Option<Vec<(u64, T)>> {
        let mut kept = self.kept();
        while kept.entries.front().is_some_and(|(seq, ..)| *seq < from) {
            kept.pop();
        }
        if kept.entries.front().is_some_and(|(seq, ..)| *seq == from) {
            let mut out = Vec::with_capacity(limit.min(kept.entries.len()));
            while out.len() < limit
                && kept.entries.front().is_some_and(|(seq, ..)| *seq == from + out.len() as u64)
                && let Some(e) = kept.pop()
            {
                out.push(e);
            }
            return Some(out);
        }
        drop(kept);
        (from >= self.written_up_to.load(Ordering::Acquire)).then(Vec::new)
    }

    #[cfg(test)]
    pub(crate) fn kept_len(&self) -> usize {
        self.kept().entries.len()
    }
}

impl<T> Kept<T> {
    fn pop(&mut self) -> Option<(u64, T)> {
        let (seq, value, size) = self.entries.pop_front()?;
        self.bytes -= size;
        Some((seq, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(a: &Arrived<String>, first: u64, values: &[&str]) {
        let entries = values.iter().enumerate().map(|(i, v)| {
            let v = (*v).to_owned();
            (first + i as u64, v.len(), move || v)
        });
        a.written(entries, first + values.len() as u64);
    }

    #[test]
    fn kept_only_once_wanted_taken_in_order_and_bounded() {
        let a = Arrived::<String>::new(1, 10);
        write(&a, 1, &["a"]);
        assert_eq!(a.kept_len(), 0, "nothing kept before the reader wants it");
        a.want();
        write(&a, 2, &["bb", "cc"]);
        assert_eq!(a.take_from(1, 10), None, "seq 1 is read from the database");
        // Read from the database up to 2: the kept 2 is let go, 3 is taken from memory.
        assert_eq!(a.take_from(3, 10), Some(vec![(3, "cc".to_owned())]));
        assert_eq!(a.take_from(4, 10), Some(vec![]), "nothing written past 3");
        // The bound: 4 + 4 bytes fit, the third does not; the next write is kept after
        // the gap, which the database fills.
        write(&a, 4, &["dddd", "eeee", "fff"]);
        write(&a, 7, &["g"]);
        assert_eq!(a.take_from(4, 1), Some(vec![(4, "dddd".to_owned())]));
        assert_eq!(a.take_from(5, 10), Some(vec![(5, "eeee".to_owned())]));
        assert_eq!(a.take_from(6, 10), None);
        assert_eq!(a.take_from(8, 10), Some(vec![]));
        assert_eq!(a.kept_len(), 0);
        // After a reopen nothing kept is trusted.
        write(&a, 8, &["h"]);
        a.reset(9);
        assert_eq!(a.take_from(8, 10), None);
    }
}
