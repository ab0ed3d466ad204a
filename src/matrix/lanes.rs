//! Draining a durable queue in lanes: items with the same key (a room) are handled one
//! after another in queue order, in one lane; items in different lanes run in parallel.
//! An item goes to its key's own lane, or to a lane it shares with other keys (a board's
//! rooms share one, so that their items are handled, and written, together). A key stays
//! in the lane its last item went to while that lane has items in flight, so that its
//! items are handled in order; but an item that asks for its key's own lane does not
//! follow it into a busy shared lane (it may wait on the homeserver, and would hold every
//! key there): it goes to its own lane and is handled only once its key's items in the
//! shared lane are. Both the inbound queue (`inbound`) and the outbox (`outbox`) run on
//! it.
//!
//! The queue stays the record: an item leaves it only when its handler removes it, so a
//! stop at any point leaves the unhandled items there for the next start, which reads the
//! queue from its beginning.

use std::{
    collections::HashMap,
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::{
    sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc},
    task::JoinSet,
};
use tokio_util::sync::CancellationToken;

/// An item read from a queue: its seq (queue order), where it goes, the item.
pub(crate) type Item<T> = (u64, Route, T);

/// Where an item goes: its key (one key's items are handled in queue order), and the lane
/// it may share with other keys (`None`: its key's own). A shared lane's name must be no
/// key's.
pub(crate) struct Route {
    pub(crate) key: String,
    pub(crate) shared: Option<String>,
}

impl Route {
    /// The key's own lane.
    pub(crate) fn own(key: String) -> Self {
        Self { key, shared: None }
    }
}

/// What a handler returns.
pub(crate) type HandlerFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Handles a lane's turn: the items of one key that were waiting when the lane took the
/// first (at most [`TURN`]), to handle in order; the lane waits for it before its next turn.
pub(crate) type Handler<T> = Arc<dyn Fn(Vec<T>) -> HandlerFuture + Send + Sync>;

/// Items read at most at once.
const BATCH: usize = 1024;

/// Items a lane takes in one turn, at most.
pub(crate) const TURN: usize = 64;

/// How many items are in keys' own lanes (sent to one and not yet handled), with a
/// wake-up at each change. A key's own lane may wait on something outside (the inbound
/// queue's: a command waiting on the homeserver, and what its room sent after it); what
/// waits in shared lanes, or is not read yet, waits on processing alone.
#[derive(Debug, Default)]
pub(crate) struct OwnLanes {
    items: AtomicUsize,
    changed: Notify,
}

impl OwnLanes {
    /// Items in keys' own lanes now.
    pub(crate) fn items(&self) -> usize {
        self.items.load(Ordering::Acquire)
    }

    /// A wake-up at the next change (enable it before looking, so that none is missed).
    pub(crate) fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.changed.notified()
    }

    fn added(&self) {
        self.items.fetch_add(1, Ordering::AcqRel);
        self.changed.notify_waiters();
    }

    fn handled(&self, n: usize) {
        self.items.fetch_sub(n, Ordering::AcqRel);
        self.changed.notify_waiters();
    }
}

/// A key's items in shared lanes (sent, not yet handled), with a wake-up when the last
/// is: an item of the key sent to its own lane meanwhile waits for them.
#[derive(Debug, Default)]
struct KeyGate {
    items: AtomicUsize,
    open: Notify,
}

impl KeyGate {
    fn counted(&self) {
        self.items.fetch_add(1, Ordering::AcqRel);
    }

    fn handled(&self) {
        if self.items.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.open.notify_waiters();
        }
    }

    /// Returns once none of the key's items is left in a shared lane.
    async fn opened(&self) {
        loop {
            let open = self.open.notified();
            tokio::pin!(open);
            open.as_mut().enable();
            if self.items.load(Ordering::Acquire) == 0 {
                return;
            }
            open.await;
        }
    }
}

/// What travels with an item about its key's items in shared lanes.
enum Gate {
    None,
    /// In a shared lane: counted in its key's gate until handled.
    Counted(Arc<KeyGate>),
    /// In its key's own lane: handled only once the key's items in shared lanes are.
    After(Arc<KeyGate>),
}

/// An item in a lane, with its place among the items in flight (given back once it is
/// handled) and its gate.
type Sent<T> = (T, OwnedSemaphorePermit, Gate);

/// Lanes kept before idle ones are dropped even while the queue is busy.
const PRUNE_ABOVE: usize = 4096;

/// Reads `queue` from its start, and keeps reading as `notify` says it grew, handing each
/// item to its key's lane, until `shutdown`; then waits for every lane to end. At most
/// `max_in_flight` items are read and not yet handled, so a long backlog is read as lanes
/// make room rather than into memory at once. `own` counts the items in keys' own lanes.
pub(crate) async fn drain<T: Send + 'static>(
    queue: &'static str,
    mut read: impl FnMut(u64, usize) -> crate::Result<Vec<Item<T>>>,
    notify: &Notify,
    shutdown: &CancellationToken,
    max_in_flight: usize,
    handler: Handler<T>,
    own: Arc<OwnLanes>,
) {
    let mut tasks = JoinSet::new();
    let mut lanes = Lanes::new(handler, own);
    let places = Arc::new(Semaphore::new(max_in_flight.max(1)));
    let mut next = 0u64;
    'read: loop {
        if shutdown.is_cancelled() {
            break;
        }
        let batch = match read(next, BATCH.min(places.available_permits().max(1))) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(queue, error = %e, "cannot read the queue; retrying");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    () = shutdown.cancelled() => break,
                }
            }
        };
        if batch.is_empty() {
            // Idle: keys with nothing in flight give their lanes back.
            lanes.prune(&mut tasks);
            tokio::select! {
                () = notify.notified() => continue,
                () = shutdown.cancelled() => break,
            }
        }
        for (seq, route, item) in batch {
            let place = tokio::select! {
                p = places.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break 'read,
                },
                () = shutdown.cancelled() => break 'read,
            };
            next = seq + 1;
            lanes.send(&route, shutdown, &mut tasks, item, place);
        }
        if lanes.len() > PRUNE_ABOVE {
            lanes.prune(&mut tasks);
        }
    }
    // Every lane may hold the store: wait for them, so it is closed when the caller is done.
    drop(lanes);
    while tasks.join_next().await.is_some() {}
}

/// One lane per key with items in flight. A lane whose items are all handled can be
/// dropped: its task ends, and the key's next item starts a new lane. Only the reader
/// sends, so once a lane's in-flight count is zero nothing of its key is left in it, and
/// an old and a new lane of one key never run at once.
///
/// A key's items go where its last one went while that lane is busy, so that they stay in
/// order; but an item that asks for its key's own lane (one that may wait on something
/// outside, such as the homeserver) never follows its key into a busy shared lane, where
/// its wait would hold every other key's items: it goes to its own lane and is handled
/// only once its key's items in the shared lane are (a [`KeyGate`]).
pub(crate) struct Lanes<T> {
    lanes: HashMap<String, Lane<T>>,
    /// Keys whose last item went to a lane not their own, and that lane.
    placed: HashMap<String, String>,
    /// Keys with items in shared lanes, and their count.
    gates: HashMap<String, Arc<KeyGate>>,
    handler: Handler<T>,
    own: Arc<OwnLanes>,
}

struct Lane<T> {
    tx: mpsc::UnboundedSender<Sent<T>>,
    /// Items sent and not yet handled.
    in_flight: Arc<AtomicUsize>,
    /// Its key's own lane (its items count in [`OwnLanes`]), not one keys share.
    own: bool,
}

impl<T: Send + 'static> Lanes<T> {
    pub(crate) fn new(handler: Handler<T>, own: Arc<OwnLanes>) -> Self {
        Self { lanes: HashMap::new(), placed: HashMap::new(), gates: HashMap::new(), handler, own }
    }

    /// Hands `item` to its lane, starting one if needed: the lane the key's last item went
    /// to while that lane has items in flight (they may be the key's), unless that is a
    /// shared lane and `route` asks for the key's own; else the one `route` asks for.
    pub(crate) fn send(
        &mut self,
        route: &Route,
        shutdown: &CancellationToken,
        tasks: &mut JoinSet<()>,
        item: T,
        place: OwnedSemaphorePermit,
    ) {
        let key = route.key.as_str();
        let last = self.placed.get(key).map_or(key, String::as_str);
        let busy = self.lanes.get(last).is_some_and(|l| l.in_flight.load(Ordering::Acquire) > 0);
        let mut after = None;
        if busy && last != key && route.shared.is_none() {
            // Its own lane, after its key's items in the shared one.
            after = self.gates.get(key).cloned();
            self.placed.remove(key);
        } else if !busy {
            match route.shared.as_deref() {
                Some(shared) if shared != key => {
                    if self.placed.get(key).is_none_or(|l| l != shared) {
                        self.placed.insert(key.to_owned(), shared.to_owned());
                    }
                }
                _ => {
                    self.placed.remove(key);
                }
            }
        }
        let to = self.placed.get(key).map_or(key, String::as_str);
        if !self.lanes.contains_key(to) {
            // A shared lane's name is no key's.
            let own = (to == key).then(|| self.own.clone());
            let lane = spawn_lane(self.handler.clone(), shutdown.clone(), tasks, own);
            self.lanes.insert(to.to_owned(), lane);
        }
        let Some(lane) = self.lanes.get(to) else { return };
        lane.in_flight.fetch_add(1, Ordering::AcqRel);
        let gate = if lane.own {
            self.own.added();
            after.map_or(Gate::None, Gate::After)
        } else {
            let gate = match self.gates.get(key) {
                Some(gate) => gate.clone(),
                None => {
                    let gate = Arc::<KeyGate>::default();
                    self.gates.insert(key.to_owned(), gate.clone());
                    gate
                }
            };
            gate.counted();
            Gate::Counted(gate)
        };
        if let Err(mpsc::error::SendError((_, _, gate))) = lane.tx.send((item, place, gate)) {
            // The lane ended (shutdown): the item stays in the queue for the next start.
            lane.in_flight.fetch_sub(1, Ordering::AcqRel);
            if lane.own {
                self.own.handled(1);
            }
            if let Gate::Counted(gate) = gate {
                gate.handled();
            }
            tracing::debug!(key, lane = to, "lane closed");
        }
    }

    /// Drops the lanes with nothing in flight, and reaps the tasks of lanes that ended.
    pub(crate) fn prune(&mut self, tasks: &mut JoinSet<()>) {
        self.lanes.retain(|_, lane| lane.in_flight.load(Ordering::Acquire) > 0);
        let lanes = &self.lanes;
        self.placed.retain(|_, lane| lanes.contains_key(lane));
        self.gates.retain(|_, gate| gate.items.load(Ordering::Acquire) > 0);
        while tasks.try_join_next().is_some() {}
    }

    /// Lanes open.
    pub(crate) fn len(&self) -> usize {
        self.lanes.len()
    }
}

fn spawn_lane<T: Send + 'static>(
    handler: Handler<T>,
    shutdown: CancellationToken,
    tasks: &mut JoinSet<()>,
    own: Option<Arc<OwnLanes>>,
) -> Lane<T> {
    let is_own = own.is_some();
    let (tx, mut rx) = mpsc::unbounded_channel::<Sent<T>>();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let counter = in_flight.clone();
    tasks.spawn(async move {
        let (mut places, mut gates) = (Vec::new(), Vec::new());
        loop {
            let first = tokio::select! {
                e = rx.recv() => match e { Some(e) => e, None => return },
                () = shutdown.cancelled() => return,
            };
            let mut items = Vec::with_capacity(1);
            for (item, place, gate) in std::iter::once(first)
                .chain(std::iter::from_fn(|| rx.try_recv().ok()).take(TURN - 1))
            {
                items.push(item);
                places.push(place);
                gates.push(gate);
            }
            for gate in &gates {
                if let Gate::After(gate) = gate {
                    tokio::select! {
                        () = gate.opened() => {}
                        () = shutdown.cancelled() => return,
                    }
                }
            }
            let n = items.len();
            handler(items).await;
            counter.fetch_sub(n, Ordering::AcqRel);
            if let Some(own) = &own {
                own.handled(n);
            }
            for gate in gates.drain(..) {
                if let Gate::Counted(gate) = gate {
                    gate.handled();
                }
            }
            places.clear();
        }
    });
    Lane { tx, in_flight, own: is_own }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[tokio::test]
    async fn one_key_in_order_keys_in_parallel_idle_lanes_dropped_places_given_back() {
        let shutdown = CancellationToken::new();
        let mut tasks = JoinSet::new();
        // Key "a" waits for a gate the handler of key "b" opens: with lanes one after
        // another this would never finish.
        let gate = Arc::new(Notify::new());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let handler: Handler<(String, u64)> = {
            let (gate, seen) = (gate.clone(), seen.clone());
            Arc::new(move |turn: Vec<(String, u64)>| {
                let (gate, seen) = (gate.clone(), seen.clone());
                Box::pin(async move {
                    for (key, n) in turn {
                        if key == "a" && n == 1 {
                            gate.notified().await;
                        }
                        if key == "b" {
                            gate.notify_one();
                        }
                        seen.lock().expect("lock").push((key, n));
                    }
                })
            })
        };
        let mut lanes = Lanes::new(handler, Arc::default());
        let places = Arc::new(Semaphore::new(3));
        let place = || places.clone().try_acquire_owned().expect("a free place");
        for (key, n) in [("a", 1), ("a", 2), ("b", 1)] {
            lanes.send(
                &Route::own(key.into()),
                &shutdown,
                &mut tasks,
                (key.to_owned(), n),
                place(),
            );
        }
        assert_eq!(lanes.len(), 2);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while lanes.len() > 0 {
            assert!(std::time::Instant::now() < deadline, "lanes were not dropped");
            tokio::time::sleep(Duration::from_millis(10)).await;
            lanes.prune(&mut tasks);
        }
        let seen = seen.lock().expect("lock").clone();
        let a: Vec<u64> = seen.iter().filter(|(k, _)| k == "a").map(|(_, n)| *n).collect();
        assert_eq!(a, [1, 2], "one key's items in order");
        assert_eq!(seen.first(), Some(&("b".to_owned(), 1)), "b ran while a waited");
        assert_eq!(places.available_permits(), 3, "handled items give their places back");
        // Their tasks end once their senders are gone; a key's next item starts a new lane.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !tasks.is_empty() {
            assert!(std::time::Instant::now() < deadline, "lane tasks did not end");
            tokio::time::sleep(Duration::from_millis(10)).await;
            while tasks.try_join_next().is_some() {}
        }
        lanes.send(&Route::own("a".into()), &shutdown, &mut tasks, ("a".to_owned(), 3), place());
        assert_eq!((lanes.len(), tasks.len()), (1, 1));
        shutdown.cancel();
        while tasks.join_next().await.is_some() {}
    }

    /// Keys that share a lane are handled in that lane's turns, together. A key's items
    /// that ask for a shared lane follow it while its last lane is busy; one that asks for
    /// its own goes there, and waits for its key's items in the shared lane, without
    /// holding the shared lane while it is handled.
    #[tokio::test]
    async fn keys_share_a_lane_and_one_asking_for_its_own_lane_waits_there_for_its_key() {
        let shutdown = CancellationToken::new();
        let mut tasks = JoinSet::new();
        // a1 waits for the board to open; a2, a command, for the homeserver.
        let (board, homeserver) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let turns = Arc::new(Mutex::new(Vec::new()));
        let handler: Handler<(&'static str, u64)> = {
            let (board, homeserver, turns) = (board.clone(), homeserver.clone(), turns.clone());
            Arc::new(move |turn: Vec<(&'static str, u64)>| {
                let (board, homeserver, turns) = (board.clone(), homeserver.clone(), turns.clone());
                Box::pin(async move {
                    if turn.contains(&("a", 1)) {
                        board.notified().await;
                    }
                    if turn.first() == Some(&("a", 2)) {
                        homeserver.notified().await;
                    }
                    turns.lock().expect("lock").push(turn);
                })
            })
        };
        let own = Arc::new(OwnLanes::default());
        let mut lanes = Lanes::new(handler, own.clone());
        let places = Arc::new(Semaphore::new(8));
        let place = || places.clone().try_acquire_owned().expect("a free place");
        let shared = |key: &str| Route { key: key.into(), shared: Some("board".into()) };
        let mut sent = Vec::new();
        let mut send = |lanes: &mut Lanes<_>, route: Route, item: (&'static str, u64)| {
            lanes.send(&route, &shutdown, &mut tasks, item, place());
            sent.push(item);
        };
        // Sent before the lane's task first runs: one turn.
        send(&mut lanes, shared("a"), ("a", 1));
        send(&mut lanes, shared("b"), ("b", 1));
        // a2 asks for its own lane while a1 waits in the shared one: it goes there, and a3
        // follows it (a's last lane is busy); b2 follows b into the shared lane.
        send(&mut lanes, Route::own("a".into()), ("a", 2));
        send(&mut lanes, shared("a"), ("a", 3));
        send(&mut lanes, shared("b"), ("b", 2));
        send(&mut lanes, Route::own("c".into()), ("c", 1));
        assert_eq!(lanes.len(), 3, "the board's lane, a's and c's");
        assert!(["board", "a", "c"].iter().all(|l| lanes.lanes.contains_key(*l)));
        assert_eq!(own.items(), 3, "a2, a3 and c1 are in own lanes");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let wait_for = |n: usize| {
            let turns = turns.clone();
            async move {
                while turns.lock().expect("lock").len() < n {
                    assert!(std::time::Instant::now() < deadline, "turns: {turns:?}");
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        };
        wait_for(1).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(*turns.lock().expect("lock"), [vec![("c", 1)]], "a2 waits for a1");
        board.notify_one();
        wait_for(2).await;
        assert_eq!(
            turns.lock().expect("lock")[1],
            [("a", 1), ("b", 1), ("b", 2)],
            "the board's lane: a and b in one turn, in order"
        );
        // a2 now waits for the homeserver in its own lane: the board's lane goes on.
        send(&mut lanes, shared("b"), ("b", 3));
        wait_for(3).await;
        assert_eq!(turns.lock().expect("lock")[2], [("b", 3)], "b3 while a2 waits");
        homeserver.notify_one();
        wait_for(4).await;
        while lanes.len() > 0 {
            assert!(std::time::Instant::now() < deadline, "lanes were not dropped");
            tokio::time::sleep(Duration::from_millis(5)).await;
            lanes.prune(&mut tasks);
        }
        let turns = turns.lock().expect("lock").clone();
        let a: Vec<u64> =
            turns.iter().flatten().filter(|(k, _)| *k == "a").map(|(_, n)| *n).collect();
        assert_eq!(a, [1, 2, 3], "a's items in order");
        assert_eq!(turns.iter().flatten().count(), sent.len(), "each item once: {turns:?}");
        assert!(lanes.placed.is_empty(), "nothing placed once the lanes are gone");
        assert!(lanes.gates.is_empty(), "no key left with items in a shared lane");
        assert_eq!(own.items(), 0, "the own lanes' items were counted out once handled");
        // Idle now: "a" goes where it asks.
        lanes.send(&Route::own("a".into()), &shutdown, &mut tasks, ("a", 4), place());
        assert!(lanes.lanes.contains_key("a"));
        shutdown.cancel();
        while tasks.join_next().await.is_some() {}
    }
}
