//! Each board's event log, the durable half of its live stream, and the live tail that
//! subscribers follow.
//!
//! An event is appended **in the same write** as the change it tells of (a task record, a
//! comment, a membership, an inbox entry, or the end of an inbound entry's processing), so
//! after a crash the log and the index never disagree. Ids are per board, grow by one per
//! logged event, and are never reused: the next id is read back from the log (and the
//! floor below which it was trimmed) when a board is first written after a start.
//!
//! A board's writers take turns on its log lock, which is held from the id's choice
//! through the write to the publication on the board's broadcast channel: subscribers see
//! ids in order, one more each time. Typing and presence are published with the id of the
//! board's last logged event and are not logged.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{Arc, Mutex, MutexGuard, OnceLock, atomic::AtomicUsize, atomic::Ordering},
};

use bytes::Bytes;
use rocksdb::{DB, WriteBatch, WriteOptions};
use ruma::{OwnedUserId, events::room::member::MembershipState};
use tokio::sync::broadcast;

use super::{Store, codec::KeyBuf, codec::KeyReader, decode, encode, maps, scan};
use crate::{
    domain::stream::{NotificationEvent, StreamData, StreamEvent},
    error::{Error, Result},
};

/// How many events a subscriber may fall behind the newest before it is disconnected, by
/// default (`[live] buffer_events`).
pub const DEFAULT_BUFFER_EVENTS: usize = 1024;

/// Events to append to boards' logs: (board slug, event).
pub type LogAppend = Vec<(String, StreamEvent)>;

/// How a message is kept from being logged twice ([`Store::log_once_and_notify`]).
#[derive(Debug, Clone, Copy)]
pub enum Once<'a> {
    /// By a mark under its event id, written with it: a replay finds the mark.
    Event(&'a ruma::EventId),
    /// By the inbound entry (its seq) that brought it: the write takes the entry off the
    /// queue, so it is never handled again, and writes nothing once it is gone. No mark.
    Entry(u64),
    /// [`Once::Entry`] of an entry handled for the first time in this run, as the
    /// dispatcher handed it over: it is on the queue (only its own handling takes it off,
    /// and the dispatcher hands each entry over once), so the write takes it off without
    /// first reading whether it is there.
    FirstEntry(u64),
}

/// One event as subscribers receive it.
#[derive(Debug)]
pub struct LiveEntry {
    /// Its id in the board's log; for typing and presence (not logged), the id of the last
    /// logged event before it.
    pub id: u64,
    /// What happened and who may see it.
    pub event: StreamEvent,
    /// For an event of a private room: the room's joined members when it was published.
    pub audience: Option<HashSet<OwnedUserId>>,
    /// The bytes subscribers are sent, rendered once by the first who sends it.
    pub frame: OnceLock<Bytes>,
}

impl LiveEntry {
    /// An entry with no audience worked out (a logged event read back, a snapshot).
    pub fn new(id: u64, event: StreamEvent) -> Self {
        Self { id, event, audience: None, frame: OnceLock::new() }
    }

    /// Whether `user` may see it, as far as the entry itself knows (a private room's
    /// audience, a notification's owner). Board membership is the subscriber's.
    pub fn visible_to(&self, user: &ruma::UserId) -> bool {
        if self.event.only.as_ref().is_some_and(|o| o != user) {
            return false;
        }
        match (&self.event.private_room, &self.audience) {
            (None, _) => true,
            (Some(_), Some(members)) => members.contains(user),
            (Some(_), None) => false,
        }
    }
}

/// One board's log lock and live tail.
#[derive(Debug)]
struct BoardLog {
    /// The next id, once read from the database.
    next: Mutex<Option<u64>>,
    tail: broadcast::Sender<Arc<LiveEntry>>,
}

/// The boards' logs in memory.
#[derive(Debug, Default)]
pub(crate) struct LiveLogs {
    boards: Mutex<HashMap<String, Arc<BoardLog>>>,
    buffer: AtomicUsize,
}

impl LiveLogs {
    fn board(&self, slug: &str) -> Result<Arc<BoardLog>> {
        let mut boards =
            self.boards.lock().map_err(|_| Error::Internal("live log lock poisoned".into()))?;
        if let Some(b) = boards.get(slug) {
            return Ok(b.clone());
        }
        let buffer = match self.buffer.load(Ordering::Relaxed) {
            0 => DEFAULT_BUFFER_EVENTS,
            n => n,
        };
        let (tail, _) = broadcast::channel(buffer);
        let b = Arc::new(BoardLog { next: Mutex::new(None), tail });
        boards.insert(slug.to_owned(), b.clone());
        Ok(b)
    }
}

fn lock(log: &BoardLog) -> Result<MutexGuard<'_, Option<u64>>> {
    log.next.lock().map_err(|_| Error::Internal("live log lock poisoned".into()))
}

/// `event` as the log stores it: a `notification` event's new inbox entry, which its
/// owner's inbox holds in full, by its id alone (about two thirds of the bytes, and their
/// encoding, per entry).
fn encode_logged(event: &StreamEvent) -> Result<Vec<u8>> {
    let StreamData::Notification(n) = &event.data else { return encode(event) };
    let Some(entry) = &n.notification else { return encode(event) };
    encode(&StreamEvent {
        ts: event.ts,
        private_room: event.private_room.clone(),
        only: event.only.clone(),
        data: StreamData::Notification(NotificationEvent {
            notification: None,
            read: n.read.clone(),
            unread_count: n.unread_count,
            entry: Some(entry.id),
        }),
    })
}

pub(super) fn entry_key(slug: &str, id: u64) -> Vec<u8> {
    KeyBuf::new().str(slug).u64(id).build()
}

/// Where a resume stands against a board's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resume {
    /// The events after the given id are all in the log (or none happened).
    FromLog,
    /// Some of them are gone (trimmed, or the index was rebuilt), or the id was never
    /// handed out: the subscriber must refetch its state.
    Reset,
}

impl Store {
    /// Sets how many events a subscriber may fall behind (`[live] buffer_events`) for the
    /// boards' channels made from now on.
    pub fn set_live_buffer(&self, events: usize) {
        self.inner.live.buffer.store(events.max(1), Ordering::Relaxed);
    }

    /// Follows board `slug`'s live tail: every entry published from now on.
    pub fn live_subscribe(&self, slug: &str) -> Result<broadcast::Receiver<Arc<LiveEntry>>> {
        Ok(self.inner.live.board(slug)?.tail.subscribe())
    }

    /// How many follow board `slug`'s live tail.
    pub fn live_subscribers(&self, slug: &str) -> Result<usize> {
        Ok(self.inner.live.board(slug)?.tail.receiver_count())
    }

    /// The id of board `slug`'s last logged event (0 before the first).
    pub fn live_head(&self, slug: &str) -> Result<u64> {
        let db = self.db()?;
        let log = self.inner.live.board(slug)?;
        let mut next = lock(&log)?;
        Ok(self.loaded_next(&db, slug, &mut next)? - 1)
    }

    /// Whether a subscriber that saw board `slug`'s events up to `after` can resume from
    /// the log: not when events after it were trimmed or given up by a reindex, nor when
    /// `after` was never handed out.
    pub fn live_resume(&self, slug: &str, after: u64) -> Result<Resume> {
        let floor = self.live_floor(slug)?;
        let head = self.live_head(slug)?;
        Ok(if after < floor || after > head { Resume::Reset } else { Resume::FromLog })
    }

    /// The highest id of board `slug` no longer in its log (0: none trimmed).
    pub fn live_floor(&self, slug: &str) -> Result<u64> {
        let db = self.db()?;
        match db.get_pinned_cf(super::cf(&db, maps::SLUG_LIVEFLOOR)?, slug.as_bytes())? {
            Some(v) => super::codec::decode_u64(&v),
            None => Ok(0),
        }
    }

    /// Board `slug`'s logged events after id `after`, oldest first, at most `limit`.
    pub fn live_read(
        &self,
        slug: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, StreamEvent)>> {
        let db = self.db()?;
        let cf = super::cf(&db, maps::SLUGID_LIVE)?;
        let prefix = KeyBuf::new().str(slug).prefix();
        let start = entry_key(slug, after.saturating_add(1));
        let mut out = Vec::new();
        for item in
            db.iterator_cf(cf, rocksdb::IteratorMode::From(&start, rocksdb::Direction::Forward))
        {
            let (k, v) = item?;
            if !k.starts_with(&prefix) || out.len() >= limit {
                break;
            }
            let mut r = KeyReader::new(&k);
            r.str()?;
            let mut event: StreamEvent = decode(&v)?;
            self.with_inbox_entry(&mut event)?;
            out.push((r.u64()?, event));
        }
        Ok(out)
    }

    /// Puts a logged `notification` event's new inbox entry back in it, read from its
    /// owner's inbox ([`encode_logged`] left it out). An entry removed since (its message
    /// redacted) is not there: the event is left without it, and no one is shown it.
    fn with_inbox_entry(&self, event: &mut StreamEvent) -> Result<()> {
        if let (StreamData::Notification(n), Some(owner)) = (&mut event.data, &event.only)
            && let Some(id) = n.entry
            && let Some(entry) = self.notification(owner, id)?
        {
            n.notification = Some(entry);
            n.entry = None;
        }
        Ok(())
    }

    /// Publishes a live-only event (typing, presence) on board `slug`'s tail, with the id
    /// of its last logged event.
    pub fn live_publish(&self, slug: &str, event: StreamEvent) -> Result<()> {
        let db = self.db()?;
        let log = self.inner.live.board(slug)?;
        if log.tail.receiver_count() == 0 {
            return Ok(());
        }
        let mut next = lock(&log)?;
        let id = self.loaded_next(&db, slug, &mut next)? - 1;
        let entry = self.with_audience(LiveEntry::new(id, event))?;
        let _ = log.tail.send(Arc::new(entry));
        Ok(())
    }

    /// Appends the events of the Matrix event `event_id` (a message, a redaction: they
    /// change no index to be logged with) to their boards' logs, once: the event is
    /// marked in the same write, and a replay after a crash finds it and writes nothing.
    pub fn log_once(&self, event_id: &ruma::EventId, log: LogAppend) -> Result<()> {
        self.log_once_and_notify(Some((Once::Event(event_id), log)), Vec::new()).map(|_| ())
    }

    /// Writes `batch` (and `outbound` to the outbox) and appends `log` to the boards'
    /// logs, in one atomic write; then publishes the new entries, in id order, on their
    /// boards' tails. Nothing is published if the write fails.
    pub(crate) fn commit(
        &self,
        db: &DB,
        mut batch: WriteBatch,
        opts: &WriteOptions,
        outbound: &[Vec<u8>],
        log: LogAppend,
    ) -> Result<()> {
        let mut by_board: BTreeMap<String, Vec<StreamEvent>> = BTreeMap::new();
        for (slug, event) in log {
            if event.is_logged() {
                by_board.entry(slug).or_default().push(event);
            }
        }
        let mut logs: Vec<(String, Arc<BoardLog>)> = Vec::with_capacity(by_board.len());
        let mut batches: Vec<Vec<StreamEvent>> = Vec::with_capacity(by_board.len());
        for (slug, events) in by_board {
            logs.push((slug.clone(), self.inner.live.board(&slug)?));
            batches.push(events);
        }
        // In slug order, so that writers of several boards never wait on each other in a
        // circle.
        let mut guards = Vec::with_capacity(logs.len());
        for (_, log) in &logs {
            guards.push(lock(log)?);
        }
        let cf = super::cf(db, maps::SLUGID_LIVE)?;
        let mut firsts = Vec::with_capacity(logs.len());
        for (((slug, _), events), next) in logs.iter().zip(&batches).zip(guards.iter_mut()) {
            let first = self.loaded_next(db, slug, next)?;
            for (i, event) in events.iter().enumerate() {
                batch.put_cf(cf, entry_key(slug, first + i as u64), encode_logged(event)?);
            }
            firsts.push(first);
        }
        if outbound.is_empty() {
            self.checked(db.write_opt(batch, opts))?;
        } else {
            self.write_with_outbox_opt(batch, outbound, opts)?;
        }
        for ((((_, log), events), next), first) in
            logs.iter().zip(batches).zip(guards.iter_mut()).zip(firsts)
        {
            **next = Some(first + events.len() as u64);
            if log.tail.receiver_count() == 0 {
                continue;
            }
            for (i, event) in events.into_iter().enumerate() {
                match self.with_audience(LiveEntry::new(first + i as u64, event)) {
                    Ok(entry) => {
                        let _ = log.tail.send(Arc::new(entry));
                    }
                    // The entry is logged: subscribers that miss it here read it from the
                    // log, where they find a gap in the ids.
                    Err(e) => tracing::warn!(error = %e, "cannot publish a live event"),
                }
            }
        }
        Ok(())
    }

    /// Fills a private room's event's audience: the room's joined members now.
    fn with_audience(&self, mut entry: LiveEntry) -> Result<LiveEntry> {
        if let Some(room) = &entry.event.private_room {
            let members = self.members(room)?;
            entry.audience = Some(
                members
                    .into_iter()
                    .filter(|(_, m)| *m == MembershipState::Join)
                    .map(|(u, _)| u)
                    .collect(),
            );
        }
        Ok(entry)
    }

    /// The next id of board `slug`, read from the database on first use.
    fn loaded_next(&self, db: &DB, slug: &str, next: &mut Option<u64>) -> Result<u64> {
        if let Some(n) = *next {
            return Ok(n);
        }
        let cf = super::cf(db, maps::SLUGID_LIVE)?;
        let prefix = KeyBuf::new().str(slug).prefix();
        let mut it = db.raw_iterator_cf(cf);
        it.seek_for_prev(entry_key(slug, u64::MAX));
        it.status()?;
        let last = match it.key() {
            Some(k) if k.starts_with(&prefix) => {
                let mut r = KeyReader::new(k);
                r.str()?;
                r.u64()?
            }
            _ => 0,
        };
        let floor = match db.get_pinned_cf(super::cf(db, maps::SLUG_LIVEFLOOR)?, slug.as_bytes())? {
            Some(v) => super::codec::decode_u64(&v)?,
            None => 0,
        };
        let n = last.max(floor) + 1;
        *next = Some(n);
        Ok(n)
    }

    /// Drops board `slug`'s oldest events: those logged before `oldest_ms`, and all but
    /// the newest `keep`. The floor moves past what is dropped. Returns how many went.
    pub fn live_trim(&self, slug: &str, oldest_ms: u64, keep: u64) -> Result<u64> {
        let db = self.db()?;
        let log = self.inner.live.board(slug)?;
        let mut next = lock(&log)?;
        let head = self.loaded_next(&db, slug, &mut next)? - 1;
        let floor = self.live_floor(slug)?;
        let cf = super::cf(&db, maps::SLUGID_LIVE)?;
        let prefix = KeyBuf::new().str(slug).prefix();
        // Everything up to `through` goes: by count, then as far as the old ones reach.
        let mut through = head.saturating_sub(keep).max(floor);
        let mut dropped = 0;
        for item in scan(&db, cf, &prefix) {
            let (k, v) = item?;
            let mut r = KeyReader::new(&k);
            r.str()?;
            let id = r.u64()?;
            if id <= through {
                dropped += 1;
                continue;
            }
            let event: StreamEvent = decode(&v)?;
            if event.ts >= oldest_ms {
                break;
            }
            through = id;
            dropped += 1;
        }
        if through <= floor {
            return Ok(0);
        }
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(cf, entry_key(slug, 0), entry_key(slug, through + 1));
        batch.put_cf(super::cf(&db, maps::SLUG_LIVEFLOOR)?, slug.as_bytes(), through.to_be_bytes());
        self.checked(db.write(batch))?;
        Ok(dropped)
    }

    /// Gives up every board's log up to now (after `boardroom reindex` rebuilt the index
    /// without it): a subscriber resuming from before gets a reset. The ids go on.
    pub fn live_reset_all(&self) -> Result<()> {
        let db = self.db()?;
        let mut slugs: std::collections::BTreeSet<String> =
            self.boards()?.into_iter().map(|b| b.slug).collect();
        slugs.extend(self.logged_slugs(&db)?);
        for slug in slugs {
            let log = self.inner.live.board(&slug)?;
            let mut next = lock(&log)?;
            let n = self.loaded_next(&db, &slug, &mut next)?;
            // `n` is never handed out: every id before it is below the floor.
            let mut batch = WriteBatch::default();
            let cf = super::cf(&db, maps::SLUGID_LIVE)?;
            batch.delete_range_cf(cf, entry_key(&slug, 0), entry_key(&slug, n + 1));
            batch.put_cf(super::cf(&db, maps::SLUG_LIVEFLOOR)?, slug.as_bytes(), n.to_be_bytes());
            self.checked(db.write(batch))?;
            *next = Some(n + 1);
        }
        Ok(())
    }

    /// The boards that have a log or a floor: one seek per board.
    fn logged_slugs(&self, db: &DB) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut it = db.raw_iterator_cf(super::cf(db, maps::SLUGID_LIVE)?);
        it.seek_to_first();
        while let Some(k) = it.key() {
            let slug = KeyReader::new(k).str()?.to_owned();
            // Just past the slug's last possible key.
            let mut past = entry_key(&slug, u64::MAX);
            past.push(0);
            it.seek(past);
            out.push(slug);
        }
        it.status()?;
        for item in
            db.iterator_cf(super::cf(db, maps::SLUG_LIVEFLOOR)?, rocksdb::IteratorMode::Start)
        {
            let (k, _) = item?;
            out.push(String::from_utf8_lossy(&k).into_owned());
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use ruma::{owned_room_id, owned_user_id};

    use super::*;
    use crate::domain::stream::{StreamData, TypingEvent};

    fn typing(n: usize) -> StreamEvent {
        StreamEvent::public(StreamData::Typing(TypingEvent {
            room: format!("r{n}"),
            room_id: owned_room_id!("!r:localhost"),
            user_ids: Vec::new(),
        }))
    }

    fn message(body: &str) -> StreamEvent {
        StreamEvent::public(StreamData::Message(crate::domain::stream::MessageEvent {
            room: "general".into(),
            room_id: owned_room_id!("!g:localhost"),
            event_id: ruma::owned_event_id!("$e"),
            sender: owned_user_id!("@a:localhost"),
            display_name: None,
            msgtype: Some("m.text".into()),
            body: Some(body.into()),
            formatted_body: None,
            ts: 1,
            thread_root: None,
            replaces: None,
            redacts: None,
        }))
    }

    fn body(e: &StreamEvent) -> String {
        match &e.data {
            StreamData::Message(m) => m.body.clone().unwrap_or_default(),
            _ => String::new(),
        }
    }

    fn append(store: &Store, slug: &str, bodies: &[&str]) {
        let db = store.db().expect("db");
        let log = bodies.iter().map(|b| (slug.to_owned(), message(b))).collect();
        store
            .commit(&db, WriteBatch::default(), &WriteOptions::default(), &[], log)
            .expect("commit");
    }

    #[tokio::test]
    async fn ids_grow_per_board_in_order_and_survive_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = Store::open(dir.path()).expect("open");
            let mut rx = store.live_subscribe("a").expect("subscribe");
            append(&store, "a", &["one", "two"]);
            append(&store, "b", &["other board"]);
            append(&store, "a", &["three"]);
            let mut seen = Vec::new();
            while let Ok(e) = rx.try_recv() {
                seen.push((e.id, body(&e.event)));
            }
            assert_eq!(seen, [(1, "one".into()), (2, "two".into()), (3, "three".into())]);
            assert_eq!(store.live_head("b").expect("head"), 1);
            // Typing is not logged: it carries the last logged id.
            let mut rx = store.live_subscribe("a").expect("subscribe");
            store.live_publish("a", typing(1)).expect("publish");
            assert_eq!(rx.try_recv().expect("typing").id, 3);
            assert_eq!(store.live_read("a", 0, 10).expect("read").len(), 3);
        }
        let store = Store::open(dir.path()).expect("reopen");
        append(&store, "a", &["four"]);
        let read = store.live_read("a", 2, 10).expect("read");
        let ids: Vec<_> = read.iter().map(|(id, e)| (*id, body(e))).collect();
        assert_eq!(ids, [(3, "three".into()), (4, "four".into())]);
    }

    #[test]
    fn a_trimmed_or_reset_log_asks_for_a_reset_and_never_reuses_an_id() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        append(&store, "a", &["1", "2", "3", "4", "5"]);
        assert_eq!(store.live_trim("a", 0, 2).expect("trim"), 3);
        assert_eq!(store.live_floor("a").expect("floor"), 3);
        assert_eq!(store.live_resume("a", 2).expect("resume"), Resume::Reset);
        assert_eq!(store.live_resume("a", 3).expect("resume"), Resume::FromLog);
        assert_eq!(store.live_resume("a", 9).expect("resume"), Resume::Reset);
        // By age: everything logged before now + 1 s goes, the floor with it.
        store.live_trim("a", crate::domain::now_ms() + 1000, 100).expect("trim");
        assert_eq!(store.live_floor("a").expect("floor"), 5);
        assert!(store.live_read("a", 0, 10).expect("read").is_empty());
        drop(store);
        let store = Store::open(dir.path()).expect("reopen");
        append(&store, "a", &["6"]);
        assert_eq!(store.live_read("a", 5, 10).expect("read")[0].0, 6);
        // A reindex gives the log up: even a subscriber at the head resets.
        store.live_reset_all().expect("reset");
        assert_eq!(store.live_resume("a", 6).expect("resume"), Resume::Reset);
        append(&store, "a", &["8"]);
        assert_eq!(store.live_read("a", 0, 10).expect("read")[0].0, 8);
    }
}
