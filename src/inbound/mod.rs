//! Drains the durable inbound queue: in order within a room (one lane per room), in
//! parallel across rooms. Each entry is handled ([`handler`]) into outbound actions, which
//! are queued in the outbox in the same atomic write that marks the entry processed.

pub(crate) mod handler;
#[cfg(test)]
mod trust_tests;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{
    context::Context,
    matrix::{Backoff, RetryPolicy, lanes},
    store::inbound::PendingEntry,
};

/// Entries read from the queue and not yet processed, at most: a long backlog (after a
/// restart, or one busy room) is read as lanes make room, not into memory at once.
const MAX_IN_FLIGHT: usize = 4096;

/// Runs until `shutdown`: hands pending entries to per-room lanes ([`crate::matrix::lanes`]), and
/// waits for the lanes before it returns.
pub(crate) async fn run_dispatcher(ctx: Arc<Context>, shutdown: CancellationToken) {
    let store = ctx.store.clone();
    let notify = ctx.inbound_notify.clone();
    let read = |from: u64, limit: usize| {
        Ok(store
            .pending_from(from, limit)?
            .into_iter()
            .map(|e| (e.seq, e.room_id.clone(), e))
            .collect())
    };
    let handler: lanes::Handler<PendingEntry> = {
        let shutdown = shutdown.clone();
        Arc::new(move |entry| {
            let (ctx, shutdown) = (ctx.clone(), shutdown.clone());
            Box::pin(async move { process_entry(&ctx, entry, &shutdown).await })
        })
    };
    lanes::drain("inbound", read, &notify, &shutdown, MAX_IN_FLIGHT, handler).await;
}

async fn process_entry(ctx: &Arc<Context>, entry: PendingEntry, shutdown: &CancellationToken) {
    let span = tracing::info_span!("process", seq = entry.seq, room_id = %entry.room_id);
    async move {
        // A handler waiting on the homeserver stops at shutdown; its entry stays pending and
        // is handled again at the next start.
        let started = std::time::Instant::now();
        let mut backoff = Backoff::new(RetryPolicy::STORE_WRITE);
        let actions = loop {
            let failures = ctx.store.write_failures();
            let Some(actions) = handle_caught(ctx, &entry, shutdown).await else { return };
            if ctx.store.write_failures() == failures {
                break actions;
            }
            // The database could not write while the entry was handled (its disk is full):
            // some of its writes may be missing. It stays pending, and is handled again, as
            // after a crash, once the store writes again.
            tracing::warn!("the database could not write while handling this entry; will retry");
            loop {
                if backoff.pause_or_cancelled(shutdown).await {
                    return;
                }
                if ctx.store.is_writable() {
                    break;
                }
            }
        };
        let mut encoded = Vec::with_capacity(actions.len());
        for a in &actions {
            match serde_json::to_vec(a) {
                Ok(v) => encoded.push(v),
                Err(e) => tracing::error!(error = %e, "cannot encode an action; dropped"),
            }
        }
        // The write that marks the entry done also queues its actions: retry until it lands.
        let mut backoff = Backoff::new(RetryPolicy::STORE_WRITE);
        loop {
            match ctx.store.complete_pending(entry.seq, &encoded) {
                Ok(()) => {
                    ctx.metrics.inbound_depth.dec();
                    ctx.metrics.events_processed.inc();
                    ctx.metrics.processing_seconds.observe(started.elapsed().as_secs_f64());
                    break;
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot record the processed entry; retrying");
                    if backoff.pause_or_cancelled(shutdown).await {
                        return;
                    }
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
