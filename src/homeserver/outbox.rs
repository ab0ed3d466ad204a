//! The outbox worker: sends queued actions in order and removes each only once the
//! homeserver accepted it. Transient failures are retried with backoff: 429s, connection
//! failures and a refused `as_token` (the homeserver has not loaded the registration) for
//! as long as they last, because they hold for every request alike; a server error (5xx)
//! that one request keeps getting, up to [`OutboxPolicy::server_error_attempts`] times, so
//! that it cannot hold back the requests behind it forever. Permanent failures, and a
//! request given up on, are moved aside (`seq_outboxdead`) with the homeserver's error,
//! and logged.

use std::{sync::Arc, time::Duration};

use ruma::api::client::{
    membership::{join_room_by_id, kick_user, leave_room},
    message::send_message_event,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{HomeserverClient, HsError, RetryKind, RetryPolicy};
use crate::{domain::Action, store::Store};

/// How the worker retries.
#[derive(Clone, Copy, Debug)]
pub struct OutboxPolicy {
    /// Delays between attempts.
    pub backoff: RetryPolicy,
    /// Attempts a request gets while the homeserver answers it with 5xx, before it is
    /// moved aside.
    pub server_error_attempts: u32,
}

impl OutboxPolicy {
    /// Backoff from 250 ms doubling to 30 s; a request that gets 5xx 12 times in a row
    /// (about 4 minutes) is moved aside.
    pub const DEFAULT: Self = Self { backoff: RetryPolicy::FOREVER, server_error_attempts: 12 };
}

/// Runs until `shutdown`, with [`OutboxPolicy::DEFAULT`].
pub async fn run(
    store: Store,
    client: HomeserverClient,
    notify: Arc<Notify>,
    shutdown: CancellationToken,
) {
    run_with(store, client, notify, shutdown, OutboxPolicy::DEFAULT).await;
}

/// Runs until `shutdown`.
pub async fn run_with(
    store: Store,
    client: HomeserverClient,
    notify: Arc<Notify>,
    shutdown: CancellationToken,
    policy: OutboxPolicy,
) {
    let client = client.with_retry(RetryPolicy::NONE);
    let backoff = policy.backoff;
    loop {
        let batch = match store.outbox_from(0, 64) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the outbox; retrying");
                if sleep_or_shutdown(Duration::from_secs(1), &shutdown).await {
                    return;
                }
                continue;
            }
        };
        if batch.is_empty() {
            tokio::select! {
                () = notify.notified() => continue,
                () = shutdown.cancelled() => return,
            }
        }
        for (seq, value) in batch {
            let action: Action = match serde_json::from_slice(&value) {
                Ok(a) => a,
                Err(e) => {
                    tracing::error!(seq, error = %e, "outbox entry does not decode; moved aside");
                    let _ = store.outbox_dead(seq, &value, &format!("undecodable: {e}"));
                    continue;
                }
            };
            let mut attempt = 0u32;
            let mut server_errors = 0u32;
            loop {
                match execute(&client, &action).await {
                    Ok(()) => {
                        if let Err(e) = store.outbox_done(seq) {
                            tracing::error!(seq, error = %e, "cannot remove a sent outbox entry");
                        }
                        break;
                    }
                    Err(e) => match e.retry_kind() {
                        RetryKind::Permanent => {
                            tracing::error!(seq, room_id = %action.room_id(), error = %e, "homeserver refused an outbound request for good");
                            if let Err(se) = store.outbox_dead(seq, &value, &e.to_string()) {
                                tracing::error!(seq, error = %se, "cannot move a refused outbox entry aside");
                            }
                            break;
                        }
                        RetryKind::Transient(_)
                            if e.status().is_some_and(|s| s >= 500)
                                && server_errors + 1 >= policy.server_error_attempts =>
                        {
                            let why = format!(
                                "gave up after {} server errors in a row: {e}",
                                server_errors + 1
                            );
                            tracing::error!(seq, room_id = %action.room_id(), error = %e, "homeserver kept failing an outbound request; moved aside");
                            if let Err(se) = store.outbox_dead(seq, &value, &why) {
                                tracing::error!(seq, error = %se, "cannot move a failing outbox entry aside");
                            }
                            break;
                        }
                        RetryKind::Transient(asked) => {
                            if e.status().is_some_and(|s| s >= 500) {
                                server_errors += 1;
                            } else {
                                server_errors = 0;
                            }
                            let delay = backoff.delay(attempt, asked);
                            attempt = attempt.saturating_add(1);
                            tracing::warn!(seq, attempt, delay_ms = delay.as_millis() as u64, error = %e, "outbound request failed; will retry");
                            if sleep_or_shutdown(delay, &shutdown).await {
                                return;
                            }
                        }
                    },
                }
            }
            if shutdown.is_cancelled() {
                return;
            }
        }
    }
}

/// Sends one action.
pub async fn execute(client: &HomeserverClient, action: &Action) -> Result<(), HsError> {
    match action {
        Action::JoinRoom { room_id, as_user } => {
            client
                .send(join_room_by_id::v3::Request::new(room_id.clone()), as_user.as_deref())
                .await?;
        }
        Action::LeaveRoom { room_id, as_user, reason } => {
            let mut req = leave_room::v3::Request::new(room_id.clone());
            req.reason.clone_from(reason);
            client.send(req, as_user.as_deref()).await?;
        }
        Action::Kick { room_id, user_id, reason } => {
            let mut req = kick_user::v3::Request::new(room_id.clone(), user_id.clone());
            req.reason.clone_from(reason);
            client.send(req, None).await?;
        }
        Action::SendMessage { room_id, as_user, txn_id, content } => {
            let req = send_message_event::v3::Request::new(
                room_id.clone(),
                txn_id.clone(),
                content.as_ref(),
            )
            .map_err(|e| HsError::Protocol {
                endpoint: "send_message_event",
                message: e.to_string(),
            })?;
            client.send(req, as_user.as_deref()).await?;
        }
    }
    Ok(())
}

async fn sleep_or_shutdown(d: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        () = tokio::time::sleep(d) => false,
        () = shutdown.cancelled() => true,
    }
}
