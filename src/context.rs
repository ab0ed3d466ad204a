//! What every operation is given: the config, the store, the homeserver client, the
//! queues' wake-ups, live state, and the per-board locks.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use tokio::sync::Notify;

use crate::{
    config::Settings,
    domain::{live::LiveState, op::Actor},
    matrix::{HomeserverClient, Intent},
    store::Store,
};

/// What processing needs.
#[derive(Debug)]
pub struct Context {
    /// The validated config.
    pub settings: Arc<Settings>,
    /// The database.
    pub store: Store,
    /// Woken when the outbox has new entries.
    pub outbox_notify: Arc<Notify>,
    /// Woken when the inbound queue has new entries.
    pub inbound_notify: Arc<Notify>,
    /// Typing and presence.
    pub live: Arc<LiveState>,
    /// The appservice's homeserver client (retries transient failures until shutdown).
    pub client: HomeserverClient,
    /// The homeserver's default room version, asked once.
    pub room_version: Arc<tokio::sync::OnceCell<ruma::RoomVersionId>>,
    /// Per-board locks for task numbers and task records.
    pub task_locks: Arc<BoardLocks>,
    /// The live streams being served.
    pub streams: Arc<Streams>,
    /// The bot's device (`[encryption]`), once the start-up has made it.
    pub crypto: Arc<tokio::sync::OnceCell<crate::crypto::Crypto>>,
    /// The device's last one-time-key counts stored from a transaction.
    pub device_counts: Arc<Mutex<Option<std::collections::BTreeMap<String, u64>>>>,
    /// The request rates callers are held to.
    pub limits: Arc<crate::ratelimit::Limits>,
    /// What `GET /metrics` shows.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Entries stored and not yet processed.
    pub backlog: Arc<Backlog>,
}

/// How many inbound entries are stored and not yet processed: what `inbound_queue_depth`
/// shows, and what holds a transaction's answer back while processing is behind
/// (`[appservice] max_backlog`).
#[derive(Debug)]
pub struct Backlog {
    /// Signed: an entry can be processed (and counted out) before the ingest that stored
    /// it counts it in; the count is right again once both have.
    waiting: tokio::sync::watch::Sender<i64>,
    gauge: prometheus_client::metrics::gauge::Gauge<i64, std::sync::atomic::AtomicI64>,
    /// Of those, the entries whose handling can make a room a board's (signed, as
    /// `waiting`): while any waits, ingest stores every message.
    may_change_rooms: std::sync::atomic::AtomicI64,
    /// Of those, the entries in rooms' own lanes, where one can wait on the homeserver
    /// (a command, and what its room sent after it).
    pub(crate) own_lanes: Arc<crate::matrix::lanes::OwnLanes>,
}

impl Backlog {
    /// `waiting` entries to start with (those left pending at the last stop), shown on
    /// `gauge`, `may_change_rooms` of them able to make a room a board's.
    pub fn new(
        (waiting, may_change_rooms): (u64, u64),
        gauge: prometheus_client::metrics::gauge::Gauge<i64, std::sync::atomic::AtomicI64>,
    ) -> Self {
        let waiting = i64::try_from(waiting).unwrap_or(i64::MAX);
        gauge.set(waiting);
        Self {
            waiting: tokio::sync::watch::Sender::new(waiting),
            gauge,
            may_change_rooms: i64::try_from(may_change_rooms).unwrap_or(i64::MAX).into(),
            own_lanes: Arc::default(),
        }
    }

    /// `n` entries that can make a room a board's were stored (`true`) or processed.
    pub fn rooms_may_change(&self, stored: bool, n: u64) {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        let by = if stored { n } else { -n };
        self.may_change_rooms.fetch_add(by, std::sync::atomic::Ordering::AcqRel);
    }

    /// Whether no entry waits whose handling can make a room a board's, and no board or
    /// room is being created: then a room that is no board's stays so until the next such
    /// entry is stored.
    pub fn rooms_settled(&self) -> bool {
        self.may_change_rooms.load(std::sync::atomic::Ordering::Acquire) <= 0
    }

    /// Keeps [`Backlog::rooms_settled`] false while the guard lives, counting `n`: held by
    /// a board's or a room's creation (from a command or over the API: its rooms exist on
    /// the homeserver before Boardroom records them, `n` = 1), and by an ingest for the
    /// entries it is about to store that can make a room a board's (so that none is left
    /// uncounted meanwhile; [`RoomsChanging::stored`] hands those stored over to
    /// processing, which counts each out).
    pub fn changing_rooms(&self, n: u64) -> RoomsChanging<'_> {
        self.rooms_may_change(true, n);
        RoomsChanging { backlog: self, held: n }
    }

    /// `n` more entries were stored.
    pub fn stored(&self, n: u64) {
        self.change(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// `n` entries were processed.
    pub fn processed(&self, n: u64) {
        self.change(-i64::try_from(n).unwrap_or(i64::MAX));
    }

    fn change(&self, by: i64) {
        self.waiting.send_modify(|w| {
            *w = w.saturating_add(by);
            self.gauge.set(*w);
        });
    }

    /// Entries waiting now.
    pub fn waiting(&self) -> u64 {
        u64::try_from(*self.waiting.borrow()).unwrap_or(0)
    }

    /// Entries waiting on processing alone: those waiting but the ones in rooms' own
    /// lanes (read, and waiting in boards' lanes, or not read yet).
    pub fn ready(&self) -> u64 {
        self.waiting().saturating_sub(self.own_lanes.items() as u64)
    }

    /// Whether at most `all` entries wait, and at most `ready` of them on processing alone
    /// ([`Backlog::ready`]); `None`: no bound.
    pub fn within(&self, all: Option<u64>, ready: Option<u64>) -> bool {
        all.is_none_or(|all| self.waiting() <= all)
            && ready.is_none_or(|ready| self.ready() <= ready)
    }

    /// Returns once [`Backlog::within`] `all` and `ready`.
    pub async fn down_to(&self, all: Option<u64>, ready: Option<u64>) {
        loop {
            let mut waiting = self.waiting.subscribe();
            let lanes = self.own_lanes.changed();
            tokio::pin!(lanes);
            // Listening before looking: a change in between still wakes this.
            lanes.as_mut().enable();
            if self.within(all, ready) {
                return;
            }
            // The sender lives in `self`: `changed` cannot fail while this waits.
            tokio::select! {
                _ = waiting.changed() => {}
                () = lanes => {}
            }
        }
    }
}

/// Room changes in progress ([`Backlog::changing_rooms`]): counted out when dropped,
/// however the work ends, but those handed over as stored.
#[derive(Debug)]
pub struct RoomsChanging<'a> {
    backlog: &'a Backlog,
    held: u64,
}

impl RoomsChanging<'_> {
    /// `n` of them are stored entries now: counted out when each is processed.
    pub fn stored(mut self, n: u64) {
        self.held = self.held.saturating_sub(n);
    }
}

impl Drop for RoomsChanging<'_> {
    fn drop(&mut self) {
        self.backlog.rooms_may_change(false, self.held);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The dispatcher can count an entry out before the ingest that stored it counts it
    /// in; the count must come back to what waits, or holds would start from nothing.
    #[tokio::test]
    async fn the_backlog_counts_right_whatever_order_ingest_and_processing_report_in() {
        let gauge =
            prometheus_client::metrics::gauge::Gauge::<i64, std::sync::atomic::AtomicI64>::default(
            );
        let backlog = Backlog::new((3, 0), gauge.clone());
        backlog.processed(5);
        assert_eq!(backlog.waiting(), 0);
        backlog.stored(2);
        assert_eq!((backlog.waiting(), gauge.get()), (0, 0));
        backlog.stored(4);
        assert_eq!((backlog.waiting(), gauge.get()), (4, 4));
        let short = std::time::Duration::from_millis(20);
        let three = Some(3);
        assert!(tokio::time::timeout(short, backlog.down_to(three, None)).await.is_err(), "4");
        let waiter =
            tokio::time::timeout(std::time::Duration::from_secs(10), backlog.down_to(three, None));
        let (reached, ()) = tokio::join!(waiter, async { backlog.processed(1) });
        assert!(reached.is_ok());
    }

    /// Rooms are settled only when no entry that can change them waits (counted from
    /// start-up, from before each is stored until it is processed) and no creation runs.
    #[test]
    fn rooms_are_settled_only_with_no_room_change_waiting_or_running() {
        let gauge =
            prometheus_client::metrics::gauge::Gauge::<i64, std::sync::atomic::AtomicI64>::default(
            );
        let backlog = Backlog::new((5, 2), gauge);
        assert!(!backlog.rooms_settled(), "two left waiting at the last stop");
        backlog.rooms_may_change(false, 2);
        assert!(backlog.rooms_settled());
        // An ingest of three such entries, two of them stored (one a duplicate):
        // those two wait for processing, the third is counted out at once.
        let ingest = backlog.changing_rooms(3);
        assert!(!backlog.rooms_settled());
        ingest.stored(2);
        assert!(!backlog.rooms_settled());
        backlog.rooms_may_change(false, 2);
        assert!(backlog.rooms_settled(), "both processed");
        // A failed ingest counts all of its own out.
        drop(backlog.changing_rooms(4));
        assert!(backlog.rooms_settled());
        let creating = backlog.changing_rooms(1);
        let another = backlog.changing_rooms(1);
        assert!(!backlog.rooms_settled());
        drop(creating);
        assert!(!backlog.rooms_settled(), "one creation still runs");
        drop(another);
        assert!(backlog.rooms_settled());
    }
}

/// The live streams being served: their cap, and the signal that ends them all.
#[derive(Debug)]
pub struct Streams {
    /// Cancelled when Boardroom stops: every stream ends, and clients resume by id after
    /// the restart.
    pub stopping: tokio_util::sync::CancellationToken,
    /// One permit per stream served (`[live] max_subscribers`).
    pub slots: Arc<tokio::sync::Semaphore>,
    /// Moved on by a reload that changed the API clients: every client's stream ends, and
    /// the client resumes by id with its token checked against the new config.
    pub clients_changed: tokio::sync::watch::Sender<u64>,
    /// Streams open per user, and the most one may hold (`[live] max_streams_per_user`).
    per_user: Mutex<std::collections::HashMap<ruma::OwnedUserId, usize>>,
    max_per_user: usize,
}

impl Streams {
    /// Room for `max` streams at once, `max_per_user` of them for one user.
    pub fn new(max: usize, max_per_user: usize) -> Self {
        Self {
            stopping: tokio_util::sync::CancellationToken::new(),
            slots: Arc::new(tokio::sync::Semaphore::new(max)),
            clients_changed: tokio::sync::watch::Sender::new(0),
            per_user: Mutex::default(),
            max_per_user,
        }
    }

    /// A place for one more stream of `user`, held until the [`UserStream`] is dropped;
    /// `None` when they hold as many as they may.
    pub fn open_for(self: &Arc<Self>, user: &ruma::UserId) -> Option<UserStream> {
        let mut open = self.per_user.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(user.to_owned()).or_insert(0);
        if *n >= self.max_per_user {
            return None;
        }
        *n += 1;
        Some(UserStream { streams: self.clone(), user: user.to_owned() })
    }
}

/// One of a user's open streams ([`Streams::open_for`]); its place is given back on drop.
#[derive(Debug)]
pub struct UserStream {
    streams: Arc<Streams>,
    user: ruma::OwnedUserId,
}

impl Drop for UserStream {
    fn drop(&mut self) {
        let mut open = self.streams.per_user.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.user);
            }
        }
    }
}

impl Context {
    /// Queues `actions` in the durable outbox (one write) and wakes its worker: for
    /// operations run outside the inbound queue (an API request, a webhook), whose
    /// caller is answered once this returns.
    pub fn send_later(&self, actions: &[crate::domain::Action]) -> crate::Result<()> {
        if actions.is_empty() {
            return Ok(());
        }
        let mut encoded = Vec::with_capacity(actions.len());
        for a in actions {
            encoded.push(
                serde_json::to_vec(a)
                    .map_err(|e| crate::Error::Internal(format!("action: {e}")))?,
            );
        }
        self.store.enqueue_outbound(&encoded)?;
        self.outbox_notify.notify_one();
        Ok(())
    }

    /// Whether `room` is end-to-end encrypted, with `[encryption]` on (asked of the
    /// homeserver once, then remembered); `false` without it.
    pub async fn room_encrypted(&self, room: &ruma::RoomId) -> crate::Result<bool> {
        match self.crypto.get() {
            Some(c) => c.room_encrypted(room.as_str()).await,
            None => Ok(false),
        }
    }

    /// How Boardroom speaks for `actor` to the homeserver: a virtual user through the
    /// appservice (identity assertion), a Matrix user with their own token. `None` for a
    /// Matrix user without one (a chat command's sender): Boardroom cannot act as them.
    pub fn intent_of(&self, actor: &Actor) -> Option<Intent> {
        match (&actor.client, &actor.token) {
            (Some(_), _) => Some(Intent::user(self.client.clone(), actor.user_id.clone())),
            (None, Some(token)) => Some(Intent::with_token(self.client.clone(), token.clone())),
            (None, None) => None,
        }
    }

    /// The same context whose homeserver client gives up after a few quick retries: for
    /// operations a caller waits for (an API request), which answer 502 rather than hang
    /// while the homeserver is away.
    pub fn for_requests(&self) -> Self {
        Self {
            settings: self.settings.clone(),
            store: self.store.clone(),
            outbox_notify: self.outbox_notify.clone(),
            inbound_notify: self.inbound_notify.clone(),
            live: self.live.clone(),
            client: self.client.clone().with_retry(crate::matrix::RetryPolicy::SHORT),
            room_version: self.room_version.clone(),
            task_locks: self.task_locks.clone(),
            streams: self.streams.clone(),
            crypto: self.crypto.clone(),
            device_counts: self.device_counts.clone(),
            limits: self.limits.clone(),
            metrics: self.metrics.clone(),
            backlog: self.backlog.clone(),
        }
    }
}

/// One lock per board: task numbers and read-modify-write of task records.
#[derive(Debug, Default)]
pub struct BoardLocks(Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

impl BoardLocks {
    /// The lock of board `slug`.
    pub fn get(&self, slug: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = match self.0.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        map.entry(slug.to_owned()).or_default().clone()
    }
}
