//! Drains the durable inbound queue: in order within a room (one lane per room), in
//! parallel across rooms. Each entry is handled ([`handler`]) into outbound actions, which
//! are queued in the outbox in the same atomic write that marks the entry processed.

pub mod boards;
pub mod handler;
pub mod index;
pub mod notify;
pub mod tasks;

use std::{
    collections::HashMap,
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
use tracing::Instrument;

use crate::{
    config::Settings,
    domain::live::LiveState,
    homeserver::HomeserverClient,
    store::{Store, inbound::PendingEntry},
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
    pub room_version: tokio::sync::OnceCell<ruma::RoomVersionId>,
    /// Per-board locks for task numbers and task records.
    pub task_locks: tasks::BoardLocks,
}

/// Runs until `shutdown`: routes pending entries to per-room lanes.
pub async fn run_dispatcher(ctx: Arc<Context>, shutdown: CancellationToken) {
    let mut lane_tasks = JoinSet::new();
    dispatch(&ctx, &shutdown, &mut lane_tasks).await;
    // Every lane holds the store: wait for them, so the database is closed when we return.
    while lane_tasks.join_next().await.is_some() {}
}

/// Entries read from the queue and not yet processed, at most: a long backlog (after a
/// restart, or one busy room) is read as lanes make room, not into memory at once.
const MAX_IN_FLIGHT: usize = 4096;

async fn dispatch(ctx: &Arc<Context>, shutdown: &CancellationToken, lane_tasks: &mut JoinSet<()>) {
    let mut next = 0u64;
    let mut lanes = Lanes::default();
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        let batch =
            match ctx.store.pending_from(next, 1024.min(in_flight.available_permits().max(1))) {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the inbound queue; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                        () = shutdown.cancelled() => return,
                    }
                }
            };
        if batch.is_empty() {
            // Idle: rooms with nothing in flight give their lanes back.
            lanes.prune(lane_tasks);
            tokio::select! {
                () = ctx.inbound_notify.notified() => continue,
                () = shutdown.cancelled() => return,
            }
        }
        for entry in batch {
            let permit = tokio::select! {
                p = in_flight.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => return,
                },
                () = shutdown.cancelled() => return,
            };
            next = entry.seq + 1;
            lanes.send(ctx, shutdown, lane_tasks, entry, permit);
        }
        if lanes.len() > Lanes::PRUNE_ABOVE {
            lanes.prune(lane_tasks);
        }
    }
}

/// One lane per room with entries in flight. A lane whose entries are all processed can
/// be dropped: its task ends, and the room's next entry starts a new lane. Only the
/// dispatcher sends, so once a lane's in-flight count is zero nothing of that room is
/// left in it, and the old lane and a new one never run at once.
#[derive(Default)]
pub(crate) struct Lanes {
    lanes: HashMap<String, Lane>,
}

struct Lane {
    /// Each entry travels with its place among the entries in flight, given back once
    /// it is processed.
    tx: mpsc::UnboundedSender<(PendingEntry, OwnedSemaphorePermit)>,
    /// Entries sent and not yet processed.
    in_flight: Arc<AtomicUsize>,
}

impl Lanes {
    /// Lanes kept before idle ones are dropped even while the queue is busy.
    const PRUNE_ABOVE: usize = 4096;

    /// Hands `entry` to its room's lane, starting one if needed.
    pub(crate) fn send(
        &mut self,
        ctx: &Arc<Context>,
        shutdown: &CancellationToken,
        tasks: &mut JoinSet<()>,
        entry: PendingEntry,
        permit: OwnedSemaphorePermit,
    ) {
        let lane = self
            .lanes
            .entry(entry.room_id.clone())
            .or_insert_with(|| spawn_lane(ctx.clone(), shutdown.clone(), tasks));
        lane.in_flight.fetch_add(1, Ordering::AcqRel);
        if let Err(mpsc::error::SendError((entry, _))) = lane.tx.send((entry, permit)) {
            // The lane ended (shutdown): the entry stays pending for the next start.
            lane.in_flight.fetch_sub(1, Ordering::AcqRel);
            tracing::debug!(seq = entry.seq, "lane closed");
        }
    }

    /// Drops the lanes with nothing in flight, and reaps the tasks of lanes that ended.
    pub(crate) fn prune(&mut self, tasks: &mut JoinSet<()>) {
        self.lanes.retain(|_, lane| lane.in_flight.load(Ordering::Acquire) > 0);
        while tasks.try_join_next().is_some() {}
    }

    /// Lanes open.
    pub(crate) fn len(&self) -> usize {
        self.lanes.len()
    }
}

fn spawn_lane(ctx: Arc<Context>, shutdown: CancellationToken, tasks: &mut JoinSet<()>) -> Lane {
    let (tx, mut rx) = mpsc::unbounded_channel::<(PendingEntry, OwnedSemaphorePermit)>();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let counter = in_flight.clone();
    tasks.spawn(async move {
        loop {
            let (entry, permit) = tokio::select! {
                e = rx.recv() => match e { Some(e) => e, None => return },
                () = shutdown.cancelled() => return,
            };
            process_entry(&ctx, entry, &shutdown).await;
            counter.fetch_sub(1, Ordering::AcqRel);
            drop(permit);
        }
    });
    Lane { tx, in_flight }
}

async fn process_entry(ctx: &Arc<Context>, entry: PendingEntry, shutdown: &CancellationToken) {
    let span = tracing::info_span!("process", seq = entry.seq, room_id = %entry.room_id);
    async move {
        // A handler waiting on the homeserver stops at shutdown; its entry stays pending and
        // is handled again at the next start.
        let Some(actions) = handle_caught(ctx, &entry, shutdown).await else { return };
        let mut encoded = Vec::with_capacity(actions.len());
        for a in &actions {
            match serde_json::to_vec(a) {
                Ok(v) => encoded.push(v),
                Err(e) => tracing::error!(error = %e, "cannot encode an action; dropped"),
            }
        }
        // The write that marks the entry done also queues its actions: retry until it lands.
        let mut delay = Duration::from_millis(100);
        loop {
            match ctx.store.complete_pending(entry.seq, &encoded) {
                Ok(()) => break,
                Err(e) => {
                    tracing::error!(error = %e, "cannot record the processed entry; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {},
                        () = shutdown.cancelled() => return,
                    }
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
            }
        }
        if !encoded.is_empty() {
            ctx.outbox_notify.notify_one();
        }
    }
    .instrument(span)
    .await
}

/// Runs the handler in its own task so that a panic on one bad event is logged and the
/// event skipped, never blocking its room's lane. `None` at shutdown: the handler was
/// stopped (and has finished stopping), and the entry stays pending for the next start.
async fn handle_caught(
    ctx: &Arc<Context>,
    entry: &PendingEntry,
    shutdown: &CancellationToken,
) -> Option<Vec<crate::domain::Action>> {
    let ctx = ctx.clone();
    let owned = entry.clone();
    let mut task =
        tokio::spawn(async move { handler::handle(&ctx, &owned).await }.in_current_span());
    let joined = tokio::select! {
        r = &mut task => r,
        () = shutdown.cancelled() => {
            task.abort();
            let _ = task.await;
            return None;
        }
    };
    match joined {
        Ok(actions) => Some(actions),
        Err(e) if e.is_panic() => {
            tracing::error!("the handler panicked on this entry; skipped");
            Some(Vec::new())
        }
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Config, server::App, store::inbound::EntryKind};

    #[tokio::test]
    async fn idle_lanes_are_dropped_and_started_again_and_places_are_given_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = Config::offline(&dir.path().join("db"), "").expect("config");
        let app = App::new(config.validate().expect("valid")).expect("app");
        let shutdown = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let mut lanes = Lanes::default();
        // Receipts that do not parse: handled at once, touching nothing outside.
        let entry = |seq: u64, room: &str| PendingEntry {
            seq,
            kind: EntryKind::Receipt,
            room_id: room.to_owned(),
            json: b"{}".to_vec(),
        };
        // Each entry holds a place among those in flight until it is processed.
        let places = Arc::new(Semaphore::new(3));
        let place = || places.clone().try_acquire_owned().expect("a free place");
        for (seq, room) in [(1, "!a:x"), (2, "!b:x"), (3, "!a:x")] {
            lanes.send(&app.ctx, &shutdown, &mut tasks, entry(seq, room), place());
        }
        assert_eq!(lanes.len(), 2);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while lanes.len() > 0 {
            assert!(std::time::Instant::now() < deadline, "lanes were not dropped");
            tokio::time::sleep(Duration::from_millis(10)).await;
            lanes.prune(&mut tasks);
        }
        assert_eq!(places.available_permits(), 3, "processed entries give their places back");
        // Their tasks end once their senders are gone.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !tasks.is_empty() {
            assert!(std::time::Instant::now() < deadline, "lane tasks did not end");
            tokio::time::sleep(Duration::from_millis(10)).await;
            while tasks.try_join_next().is_some() {}
        }
        lanes.send(&app.ctx, &shutdown, &mut tasks, entry(4, "!a:x"), place());
        assert_eq!((lanes.len(), tasks.len()), (1, 1));
        shutdown.cancel();
        while tasks.join_next().await.is_some() {}
    }
}
