//! Drains the durable inbound queue: in order within a room, in parallel across lanes (a
//! room's own, or its board's; see [`route`]). Each entry is handled ([`handler`]) into
//! outbound actions, which are queued in the outbox in the same atomic write that marks
//! the entry processed.

pub(crate) mod handler;
pub(crate) mod peek;
#[cfg(test)]
mod trust_tests;
#[cfg(test)]
mod turn_tests;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{
    context::Context,
    matrix::{Backoff, RetryPolicy, lanes},
    store::{inbound::PendingEntry, inbox::Message},
};

/// Entries read from the queue and not yet processed, at most: a long backlog (after a
/// restart, or one busy room) is read as lanes make room, not into memory at once.
const MAX_IN_FLIGHT: usize = 4096;

/// Runs until `shutdown`: hands pending entries to lanes ([`crate::matrix::lanes`], by
/// [`route`]), and waits for the lanes before it returns.
pub(crate) async fn run_dispatcher(ctx: Arc<Context>, shutdown: CancellationToken) {
    let store = ctx.store.clone();
    let notify = ctx.inbound_notify.clone();
    // What ingest stores from now on comes from memory; what was stored before, and what
    // does not fit there, from the database.
    store.hand_arrivals_over();
    let read = |from: u64, limit: usize| {
        Ok(store
            .arrived_from(from, limit)?
            .into_iter()
            .map(|e| (e.seq, route(&store, &e), e))
            .collect())
    };
    let completions = Arc::new(Completions::default());
    // What waits in rooms' own lanes, for the hold on the homeserver's answers.
    let own = ctx.backlog.own_lanes.clone();
    let writer = tokio::spawn(write_completions(ctx.clone(), completions.clone()));
    let handler: lanes::Handler<PendingEntry> = {
        let (shutdown, completions) = (shutdown.clone(), completions.clone());
        Arc::new(move |turn| {
            let (ctx, shutdown, completions) = (ctx.clone(), shutdown.clone(), completions.clone());
            Box::pin(async move { process_turn(&ctx, turn, &shutdown, &completions).await })
        })
    };
    lanes::drain("inbound", read, &notify, &shutdown, MAX_IN_FLIGHT, handler, own).await;
    // Every lane has ended: what they completed is written before the store is let go.
    completions.close();
    if let Err(e) = writer.await {
        tracing::error!(error = %e, "the completion writer ended abnormally");
    }
}

/// Where an entry is handled: in its room's lane, in order with the room's other entries.
/// A board room's timeline events that cannot change rooms (messages that are not
/// commands, other users' memberships, redactions) share their board's lanes
/// ([`BOARD_LANES`], by room), so that what one transaction brings a board is handled in a
/// few turns and written in a few writes rather than room by room. Commands, state that
/// may change rooms and encrypted events ask for their room's own lane, where one waiting
/// on the homeserver holds up only its room (a room stays in the lane its last entry went
/// to while that lane is busy, but an entry asking for its own lane waits there for the
/// room's entries in a board's lane rather than following them: `matrix::lanes`).
fn route(store: &crate::store::Store, entry: &PendingEntry) -> lanes::Route {
    let board = match (entry.kind, entry.may_change_rooms) {
        (crate::store::inbound::EntryKind::Timeline, false) => {
            <&ruma::RoomId>::try_from(entry.room_id.as_str())
                .ok()
                .and_then(|room| store.room(room).ok().flatten())
                .map(|record| {
                    // Spread over the board's lanes, by room.
                    let part = fnv1a(entry.room_id.as_bytes()) % *BOARD_LANES;
                    format!("board {part} {}", record.board)
                })
        }
        _ => None,
    };
    lanes::Route { key: entry.room_id.clone(), shared: board }
}

/// Lanes a board's rooms share: [`board_lanes`] of the runtime's async workers (one per
/// core unless `[runtime] worker_threads` says otherwise), read on first use, on the
/// runtime; the machine's cores when there is none.
static BOARD_LANES: std::sync::LazyLock<u64> = std::sync::LazyLock::new(board_lanes_here);

/// [`board_lanes`] of the current runtime's async workers, or of the machine's cores
/// outside a runtime.
fn board_lanes_here() -> u64 {
    let workers = tokio::runtime::Handle::try_current()
        .map(|h| h.metrics().num_workers())
        .unwrap_or_else(|_| std::thread::available_parallelism().map_or(1, |n| n.get()));
    board_lanes(workers as u64)
}

/// One lane per worker but one (at least one, at most 16): the worker left over is
/// ingest's and the HTTP server's. A board's lanes write one after another (each holds the board
/// log's lock, and the inbox's, for its write), so a second lane adds little but a
/// third busy thread on two cores: there one lane processed a busy board faster than two,
/// with less CPU per event, while `[appservice] max_ready_backlog` keeps ingest at its
/// pace (docs/PERFORMANCE.md, "One lane per board, held on what waits on processing").
fn board_lanes(workers: u64) -> u64 {
    workers.saturating_sub(1).clamp(1, 16)
}

/// FNV-1a: a hash that is the same in every process (a room's lane does not matter across
/// restarts, but a stable spread is easier to reason about).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

/// Entries handled and not yet marked processed, with the actions each queues: written
/// together, in the order they were handled, in one write (a group commit), so that a
/// busy queue costs one write per group rather than one per entry. Until that write an
/// entry stays pending: a crash before it handles the entry again, as before any
/// completing write. An entry its own write took off the queue (a message) is only
/// counted.
#[derive(Default)]
struct Completions {
    waiting: std::sync::Mutex<Vec<Completion>>,
    /// Held by whoever writes a group: taking the group and writing it happen under it, so
    /// that groups are written in the order they were handled.
    writing: std::sync::Mutex<()>,
    wake: tokio::sync::Notify,
    closed: std::sync::atomic::AtomicBool,
}

impl Completions {
    /// Hands `done` to the completion writer. Those with nothing left to write (their own
    /// write took them off the queue and queued their actions) are only counted, here,
    /// without waking it.
    fn push_all(&self, ctx: &Context, done: impl IntoIterator<Item = Completion>) {
        let mut counted = 0u64;
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        let before = waiting.len();
        for c in done {
            if c.off_the_queue && c.actions.is_empty() {
                counted += 1;
            } else {
                waiting.push(c);
            }
        }
        let added = waiting.len() > before;
        drop(waiting);
        if added {
            self.wake.notify_one();
        }
        if counted > 0 {
            count_processed(ctx, counted);
        }
    }

    /// [`Completions::push_all`], but when `done` queues actions (a command's reply) and
    /// no group is being written, written here, at once, with what waits before it: the
    /// reply does not wait for the completion writer to be woken and scheduled. Written or
    /// not, nothing is lost: a group that fails goes back to the front of the queue, for
    /// the completion writer's retries.
    fn write_or_push(&self, ctx: &Context, done: Vec<Completion>) {
        if done.iter().all(|c| c.actions.is_empty()) {
            return self.push_all(ctx, done);
        }
        let Some(writing) = self.try_writing() else { return self.push_all(ctx, done) };
        let mut group = self.take();
        group.extend(done);
        if !write_group(ctx, &group) {
            self.put_back(group);
        }
        self.let_go(writing);
    }

    /// The lock that orders groups' writes, unless someone holds it (a poisoned lock is
    /// taken over: the group it guarded went back to the queue or was written).
    fn try_writing(&self) -> Option<std::sync::MutexGuard<'_, ()>> {
        match self.writing.try_lock() {
            Ok(guard) => Some(guard),
            Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    /// Lets go of the lock a lane took to write a group. The completion writer does not
    /// wait on it ([`Completions::write_waiting`]): what was queued while the group was
    /// written is its to write, now that the lock is free.
    fn let_go(&self, writing: std::sync::MutexGuard<'_, ()>) {
        drop(writing);
        if !self.waiting.lock().unwrap_or_else(|p| p.into_inner()).is_empty() {
            self.wake.notify_one();
        }
    }

    /// Writes what waits, unless a lane is writing (the completion writer's turn: it does
    /// not wait on the lock, which would hold a worker thread for a write that can wait on
    /// the disk).
    fn write_waiting(&self, ctx: &Context) -> Pass {
        let Some(_writing) = self.try_writing() else { return Pass::Busy };
        let group = self.take();
        if group.is_empty() {
            Pass::Empty
        } else if write_group(ctx, &group) {
            Pass::Written
        } else {
            self.put_back(group);
            Pass::Failed
        }
    }

    fn take(&self) -> Vec<Completion> {
        std::mem::take(&mut *self.waiting.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Puts a group that could not be written back at the front of the queue, in its
    /// order, and wakes the completion writer to retry it.
    fn put_back(&self, mut group: Vec<Completion>) {
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        group.append(&mut waiting);
        *waiting = group;
        drop(waiting);
        self.wake.notify_one();
    }

    fn close(&self) {
        self.closed.store(true, std::sync::atomic::Ordering::Release);
        self.wake.notify_one();
    }

    fn is_closed(&self) -> bool {
        self.closed.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// What one pass of the completion writer did.
enum Pass {
    /// A lane held the lock: nothing was taken.
    Busy,
    /// Nothing waited.
    Empty,
    Written,
    /// The write failed: the group went back to the front of the queue.
    Failed,
}

/// Writes what the lanes completed, as it comes, until the dispatcher closes
/// `completions` (after its lanes ended): then writes what is left and returns.
async fn write_completions(ctx: Arc<Context>, completions: Arc<Completions>) {
    let mut backoff = Backoff::new(RetryPolicy::STORE_WRITE);
    loop {
        let closed = completions.is_closed();
        let written = match completions.write_waiting(&ctx) {
            // A lane is writing a group of its own: it wakes this writer when it lets go of
            // the lock with more waiting.
            Pass::Busy => {
                completions.wake.notified().await;
                continue;
            }
            Pass::Empty => None,
            Pass::Written => Some(true),
            Pass::Failed => Some(false),
        };
        match written {
            Some(true) => backoff = Backoff::new(RetryPolicy::STORE_WRITE),
            None if closed => return,
            None => completions.wake.notified().await,
            Some(false) => {
                // After shutdown the entries stay pending and are handled again.
                if completions.is_closed() && backoff.attempts() >= 3 {
                    return;
                }
                tokio::time::sleep(backoff.pause()).await;
            }
        }
    }
}

/// Writes `group` (what is left of each completion: its removal from the queue, its
/// actions) in one write, then counts it processed and wakes the outbox; `false` when the
/// write failed (nothing of it landed).
fn write_group(ctx: &Context, group: &[Completion]) -> bool {
    let seqs: Vec<u64> = group.iter().filter(|c| !c.off_the_queue).map(|c| c.seq).collect();
    let outbound: Vec<Vec<u8>> = group.iter().flat_map(|c| c.actions.iter().cloned()).collect();
    if (!seqs.is_empty() || !outbound.is_empty())
        && let Err(e) = ctx.store.complete_pending_group(&seqs, &outbound)
    {
        tracing::error!(error = %e, entries = seqs.len(), "cannot record processed entries; retrying");
        return false;
    }
    count_processed(ctx, group.len() as u64);
    if !outbound.is_empty() {
        ctx.outbox_notify.notify_one();
    }
    true
}

/// `n` entries handled and written: fewer wait.
fn count_processed(ctx: &Context, n: u64) {
    ctx.backlog.processed(n);
    ctx.metrics.events_processed.inc_by(n);
}

/// An entry handled: its actions, encoded for the outbox.
struct Completion {
    seq: u64,
    actions: Vec<Vec<u8>>,
    /// Its own write took it off the queue already.
    off_the_queue: bool,
}

/// A lane's turn, in order: the messages that are not commands in board rooms are made
/// ready and written together, in one write with their removal from the queue
/// ([`handler::prepare_in_turn`]); any other entry is handled on its own
/// ([`process_entry`]), after what was made ready before it is written, so that it sees
/// it.
async fn process_turn(
    ctx: &Arc<Context>,
    turn: Vec<PendingEntry>,
    shutdown: &CancellationToken,
    completions: &Completions,
) {
    use futures_util::FutureExt;
    let mut held = Held::default();
    for entry in turn {
        // At shutdown what is left stays pending, and is handled again at the next start.
        if shutdown.is_cancelled() {
            completions.push_all(ctx, std::mem::take(&mut held.done));
            return;
        }
        let started = std::time::Instant::now();
        if held.entries.is_empty() {
            held.failures = ctx.store.write_failures();
        }
        let span = tracing::debug_span!("prepare", seq = entry.seq, room_id = %entry.room_id);
        let prepared = std::panic::AssertUnwindSafe(handler::prepare_in_turn(ctx, &entry))
            .catch_unwind()
            .instrument(span)
            .await;
        match prepared {
            Ok(Some(message)) => held.entries.push((entry, message, started)),
            // Handled on its own (a panic is caught and logged there).
            Ok(None) | Err(_) => {
                write_held(ctx, &mut held, shutdown, completions).await;
                held.done.extend(process_entry(ctx, entry, shutdown).await);
            }
        }
    }
    write_held(ctx, &mut held, shutdown, completions).await;
    // Completions no message came after: written here when they queue a reply, else by
    // the completion writer.
    completions.write_or_push(ctx, held.done);
}

/// Messages of a turn made ready and not yet written, with when each was started, and the
/// store's write failures before the first; and the completions of entries handled on
/// their own since the last write, which go in the next one.
#[derive(Default)]
struct Held {
    entries: Vec<(PendingEntry, Message<'static>, std::time::Instant)>,
    failures: u64,
    done: Vec<Completion>,
}

/// Writes the messages `held`, in one write, with the completions of the entries handled
/// on their own before them (their removal from the queue and the actions they queue).
/// When it fails, or a write failed while they were made ready (their comment index),
/// each message is handled again on its own, with [`process_entry`]'s retries: nothing of
/// the failed write landed, and a comment is indexed once whatever the replays.
async fn write_held(
    ctx: &Arc<Context>,
    held: &mut Held,
    shutdown: &CancellationToken,
    completions: &Completions,
) {
    if held.entries.is_empty() {
        return;
    }
    let mut entries = std::mem::take(&mut held.entries);
    let messages = entries.iter_mut().map(|(_, m, _)| std::mem::take(m)).collect();
    let mut before = std::mem::take(&mut held.done);
    let seqs: Vec<u64> = before.iter().filter(|c| !c.off_the_queue).map(|c| c.seq).collect();
    let outbound: Vec<Vec<u8>> = before.iter().flat_map(|c| c.actions.iter().cloned()).collect();
    let written = ctx.store.log_messages_and_complete(messages, &seqs, &outbound);
    if written.is_ok() {
        // Written: what is left is counting them. (Not written, the completion writer
        // writes them.)
        for c in &mut before {
            c.off_the_queue = true;
            c.actions.clear();
        }
        if !outbound.is_empty() {
            ctx.outbox_notify.notify_one();
        }
    }
    completions.push_all(ctx, before);
    let logged = match written {
        Ok(logged) if ctx.store.write_failures() == held.failures => logged,
        other => {
            if let Err(e) = other {
                tracing::warn!(error = %e, entries = entries.len(), "cannot write a turn's messages; handling each on its own");
            }
            for (entry, ..) in entries {
                completions.push_all(ctx, process_entry(ctx, entry, shutdown).await);
            }
            return;
        }
    };
    let mut done = Vec::with_capacity(entries.len());
    for ((entry, _, started), logged) in entries.into_iter().zip(logged) {
        ctx.metrics.processing_seconds.observe(started.elapsed().as_secs_f64());
        if entry.may_change_rooms {
            ctx.backlog.rooms_may_change(false, 1);
        }
        done.push(Completion {
            seq: entry.seq,
            actions: Vec::new(),
            off_the_queue: logged.off_the_queue,
        });
    }
    completions.push_all(ctx, done);
}

/// Handles `entry` on its own; its completion, to write (`None` at shutdown: it stays
/// pending).
async fn process_entry(
    ctx: &Arc<Context>,
    entry: PendingEntry,
    shutdown: &CancellationToken,
) -> Option<Completion> {
    let span = tracing::info_span!("process", seq = entry.seq, room_id = %entry.room_id);
    async move {
        // A handler waiting on the homeserver stops at shutdown; its entry stays pending and
        // is handled again at the next start.
        let started = std::time::Instant::now();
        let mut backoff = Backoff::new(RetryPolicy::STORE_WRITE);
        let handled = loop {
            let failures = ctx.store.write_failures();
            let handled = handle_caught(ctx, &entry, shutdown).await?;
            if ctx.store.write_failures() == failures {
                break handled;
            }
            // The database could not write while the entry was handled (its disk is full):
            // some of its writes may be missing. It stays pending, and is handled again, as
            // after a crash, once the store writes again.
            tracing::warn!("the database could not write while handling this entry; will retry");
            loop {
                if backoff.pause_or_cancelled(shutdown).await {
                    return None;
                }
                if ctx.store.is_writable() {
                    break;
                }
            }
        };
        if entry.may_change_rooms {
            ctx.backlog.rooms_may_change(false, 1);
        }
        let mut encoded = Vec::with_capacity(handled.actions.len());
        for a in &handled.actions {
            match serde_json::to_vec(a) {
                Ok(v) => encoded.push(v),
                Err(e) => tracing::error!(error = %e, "cannot encode an action; dropped"),
            }
        }
        // The write that marks the entry done also queues its actions (with others
        // completed about the same time).
        ctx.metrics.processing_seconds.observe(started.elapsed().as_secs_f64());
        Some(Completion { seq: entry.seq, actions: encoded, off_the_queue: handled.off_the_queue })
    }
    .instrument(span)
    .await
}

/// Runs the handler so that a panic on one bad event is logged and the event skipped,
/// never blocking its room's lane. `None` at shutdown: the handler was stopped, and the
/// entry stays pending for the next start.
async fn handle_caught(
    ctx: &Arc<Context>,
    entry: &PendingEntry,
    shutdown: &CancellationToken,
) -> Option<handler::Handled> {
    use futures_util::FutureExt;
    let handled = std::panic::AssertUnwindSafe(handler::handle_queued(ctx, entry)).catch_unwind();
    tokio::select! {
        r = handled => match r {
            Ok(handled) => Some(handled),
            Err(_) => {
                tracing::error!("the handler panicked on this entry; skipped");
                Some(handler::Handled::default())
            }
        },
        () = shutdown.cancelled() => None,
    }
}
