//! Decoded records kept in memory beside the map they come from, so that what every event
//! looks up (its room's record) is not read and decoded from the database each time.
//!
//! Read through and dropped on write: a miss reads the map and keeps what it found
//! (absence too); every write to the map forgets the keys it wrote, after its write. A
//! read that raced with a write (it read before the write, and would keep the old record
//! after the write forgot it) keeps nothing: each write moves a generation on, and a read
//! keeps what it read only when the generation did not move while it read.

use std::{
    collections::HashMap,
    sync::{
        RwLock,
        atomic::{AtomicU64, Ordering},
    },
};

use crate::error::Result;

/// Records kept at most by default; past that the cache starts again empty. About 2 MiB
/// of memberships (the largest records kept) when full.
pub(super) const MAX_KEPT: usize = 16_384;

pub(super) struct Cached<V> {
    /// Off for a store that reads a database another process writes (a secondary).
    enabled: bool,
    max: usize,
    kept: RwLock<HashMap<Box<[u8]>, Option<V>>>,
    generation: AtomicU64,
}

impl<V: Clone> Cached<V> {
    pub(super) fn new(enabled: bool, max: usize) -> Self {
        Self { enabled, max, kept: RwLock::new(HashMap::new()), generation: AtomicU64::new(0) }
    }

    /// The record of `key`, kept or else `read` (and kept).
    pub(super) fn get_or(
        &self,
        key: &[u8],
        read: impl FnOnce() -> Result<Option<V>>,
    ) -> Result<Option<V>> {
        if !self.enabled {
            return read();
        }
        if let Some(kept) = self.kept.read().unwrap_or_else(|p| p.into_inner()).get(key) {
            return Ok(kept.clone());
        }
        let generation = self.generation.load(Ordering::Acquire);
        let value = read()?;
        let mut kept = self.kept.write().unwrap_or_else(|p| p.into_inner());
        if self.generation.load(Ordering::Acquire) == generation {
            if kept.len() >= self.max {
                kept.clear();
            }
            kept.insert(key.into(), value.clone());
        }
        Ok(value)
    }

    /// After a write of `key` (landed or not): its next read goes to the map.
    pub(super) fn forget(&self, key: &[u8]) {
        let mut kept = self.kept.write().unwrap_or_else(|p| p.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        kept.remove(key);
    }

    /// After a write of many keys (a map cleared).
    pub(super) fn forget_all(&self) {
        let mut kept = self.kept.write().unwrap_or_else(|p| p.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        kept.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_racing_a_write_keeps_nothing_and_writes_are_seen_at_once() {
        let cache = Cached::<u32>::new(true, MAX_KEPT);
        assert_eq!(cache.get_or(b"a", || Ok(Some(1))).expect("read"), Some(1));
        // Kept: the map is not read again.
        assert_eq!(cache.get_or(b"a", || panic!("read again")).expect("read"), Some(1));
        cache.forget(b"a");
        assert_eq!(cache.get_or(b"a", || Ok(None)).expect("read"), None);
        assert_eq!(cache.get_or(b"a", || panic!("read again")).expect("read"), None);
        // A write lands while a miss reads the old record: the old record is not kept.
        cache.forget(b"a");
        let old = cache
            .get_or(b"a", || {
                cache.forget(b"a");
                Ok(Some(1))
            })
            .expect("read");
        assert_eq!(old, Some(1), "the read answers what it read");
        assert_eq!(cache.get_or(b"a", || Ok(Some(2))).expect("read"), Some(2));
        cache.forget_all();
        assert_eq!(cache.get_or(b"a", || Ok(Some(3))).expect("read"), Some(3));
        // A failed read keeps nothing.
        cache.forget_all();
        assert!(cache.get_or(b"a", || Err(crate::Error::Store("down".into()))).is_err());
        assert_eq!(cache.get_or(b"a", || Ok(Some(4))).expect("read"), Some(4));
    }

    #[test]
    fn a_full_cache_starts_again_empty() {
        let cache = Cached::<u32>::new(true, 2);
        for key in [b"a", b"b"] {
            cache.get_or(key, || Ok(Some(1))).expect("read");
        }
        assert_eq!(cache.get_or(b"a", || panic!("read again")).expect("read"), Some(1));
        cache.get_or(b"c", || Ok(Some(3))).expect("read");
        assert_eq!(cache.get_or(b"a", || Ok(Some(2))).expect("read"), Some(2), "forgotten");
    }

    #[test]
    fn a_secondary_always_reads_the_map() {
        let cache = Cached::<u32>::new(false, MAX_KEPT);
        assert_eq!(cache.get_or(b"a", || Ok(Some(1))).expect("read"), Some(1));
        assert_eq!(cache.get_or(b"a", || Ok(Some(2))).expect("read"), Some(2));
    }
}
