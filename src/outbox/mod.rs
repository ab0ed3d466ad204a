//! The outbox worker: sends queued actions, in order within a room and for several rooms
//! at once (`matrix::lanes`), and removes each only once the homeserver accepted it.
//! Transient failures are retried with backoff: 429s, connection failures and a refused
//! `as_token` (the homeserver has not loaded the registration) for as long as they last,
//! because they hold for every request alike; a server error (5xx) that one request keeps
//! getting, up to [`RetryPolicy::max_server_errors`] times in a row, so that it cannot hold
//! back its room's requests forever; a [`Backoff`] keeps the count and the delays.
//! Permanent failures, and a request given up on, are moved aside (`seq_outboxdead`) with
//! the homeserver's error, and logged. A request being retried holds back only the
//! requests of its own room.
//!
//! A message is marked as sent (`seq_outboxsent`, with the time) before its first attempt.
//! When an attempt's outcome is unknown (the connection broke after the request went out,
//! or a gateway answered 502/504), or the entry was marked by an earlier run (a crash
//! during the attempt), the message may have landed: before it is sent again it is looked
//! for in the room's latest messages by its transaction id, which the homeserver shows its
//! sender (`unsigned.transaction_id`), and not sent if it is there. A homeserver that
//! restarts forgets transaction ids, so resending alone would post it twice.

use std::sync::Arc;

use ruma::api::client::{
    membership::{join_room_by_id, kick_user, leave_room},
    message::send_message_event,
};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use ruma::serde::Raw;

use crate::{
    crypto::Crypto,
    domain::Action,
    matrix::{
        HomeserverClient, HsError, RetryKind, RetryPolicy,
        backoff::{Backoff, sleep_or_cancelled},
        lanes,
    },
    store::Store,
};

/// How the worker retries.
#[derive(Clone, Copy, Debug)]
pub struct OutboxPolicy {
    /// Delays between attempts, and how many server errors in a row move a request aside.
    pub backoff: RetryPolicy,
    /// Requests sent at once (each for a different room).
    pub parallel: usize,
}

impl OutboxPolicy {
    /// [`RetryPolicy::BACKGROUND`]: backoff from 250 ms doubling to 30 s, and a request
    /// that gets 5xx 12 times in a row (about 2.5 minutes) is moved aside; up to 8
    /// requests at once.
    pub const DEFAULT: Self = Self { backoff: RetryPolicy::BACKGROUND, parallel: 8 };
}

/// Outbox entries read and not yet sent, at most.
const MAX_QUEUED: usize = 4096;

/// Runs until `shutdown`, with [`OutboxPolicy::DEFAULT`].
pub async fn run(
    store: Store,
    client: HomeserverClient,
    notify: Arc<Notify>,
    shutdown: CancellationToken,
) {
    run_with(store, client, notify, shutdown, OutboxPolicy::DEFAULT).await;
}

/// An outbox entry on its way: its seq, its stored bytes and what they decode to.
struct Queued {
    seq: u64,
    value: Vec<u8>,
    action: Result<Action, String>,
}

/// Runs until `shutdown`.
pub async fn run_with(
    store: Store,
    client: HomeserverClient,
    notify: Arc<Notify>,
    shutdown: CancellationToken,
    policy: OutboxPolicy,
) {
    run_inner(store, client, notify, shutdown, policy, None).await;
}

/// [`run`], with the bot's end-to-end encryption device: its messages to encrypted rooms
/// go out encrypted (once the device is made; until then they wait).
pub async fn run_with_device(
    store: Store,
    client: HomeserverClient,
    notify: Arc<Notify>,
    shutdown: CancellationToken,
    device: Arc<tokio::sync::OnceCell<Crypto>>,
) {
    run_inner(store, client, notify, shutdown, OutboxPolicy::DEFAULT, Some(device)).await;
}

async fn run_inner(
    store: Store,
    client: HomeserverClient,
    notify: Arc<Notify>,
    shutdown: CancellationToken,
    policy: OutboxPolicy,
    device: Option<Arc<tokio::sync::OnceCell<Crypto>>>,
) {
    let reader = store.clone();
    // What is queued from now on comes from memory; what was queued before, from the
    // database.
    reader.hand_outbox_over();
    let read = |from: u64, limit: usize| {
        Ok(reader
            .outbox_arrived_from(from, limit)?
            .into_iter()
            .map(|(seq, value)| {
                let action = serde_json::from_slice::<Action>(&value).map_err(|e| e.to_string());
                // An entry that does not decode has a lane of its own: it is only moved aside.
                let room =
                    action.as_ref().map_or_else(|_| String::new(), |a| a.room_id().to_string());
                (seq, lanes::Route::own(room), Queued { seq, value, action })
            })
            .collect())
    };
    let client = match device {
        Some(d) => client.with_device(d),
        None => client,
    };
    let worker = Arc::new(Worker {
        store,
        client: client.with_retry(RetryPolicy::NONE),
        sending: Semaphore::new(policy.parallel.max(1)),
        policy,
        shutdown: shutdown.clone(),
    });
    let handler: lanes::Handler<Queued> = Arc::new(move |turn| {
        let worker = worker.clone();
        Box::pin(async move {
            for q in turn {
                worker.deliver(q).await;
            }
        })
    });
    lanes::drain("outbox", read, &notify, &shutdown, MAX_QUEUED, handler, Arc::default()).await;
}

struct Worker {
    store: Store,
    client: HomeserverClient,
    /// Places for requests on the wire.
    sending: Semaphore,
    policy: OutboxPolicy,
    shutdown: CancellationToken,
}

impl Worker {
    /// Sends `action`; the bot's message to an encrypted room is encrypted first.
    async fn execute(&self, action: &Action) -> Result<(), HsError> {
        let Action::SendMessage { room_id, as_user: None, txn_id, content } = action else {
            return execute(&self.client, action).await;
        };
        // No bidi control in what Boardroom writes (docs/SECURITY.md, "Hostile content").
        let clean = crate::matrix::html::without_bidi_controls(content);
        let Some(sealed) = self.client.sealed(room_id, &clean, None).await? else {
            return execute(&self.client, action).await;
        };
        let req = send_message_event::v3::Request::new_raw(
            room_id.clone(),
            txn_id.clone(),
            "m.room.encrypted".into(),
            Raw::from_json(sealed),
        );
        self.client.send(req, None).await?;
        Ok(())
    }

    /// Sends one entry until the homeserver accepts it, refuses it for good, or keeps
    /// failing it; or until shutdown, when it stays in the outbox.
    async fn deliver(&self, q: Queued) {
        let Queued { seq, value, action } = q;
        let action = match action {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(seq, error = %e, "outbox entry does not decode; moved aside");
                self.count(|m| m.dead_letter("undecodable"));
                let why = format!("undecodable: {e}");
                self.record(seq, "move an undecodable outbox entry aside", || {
                    self.store.outbox_dead(seq, &value, &why)
                })
                .await;
                return;
            }
        };
        let mut backoff = Backoff::new(self.policy.backoff);
        // A message sent before (by this run before its connection broke, or by an earlier
        // run) may have landed without an answer: look for it before sending it again.
        let mut first_sent = match &action {
            Action::SendMessage { .. } => self.store.outbox_sent_at(seq).unwrap_or_else(|e| {
                tracing::error!(seq, error = %e, "cannot read whether an outbox message was sent; looking for it");
                Some(0)
            }),
            _ => None,
        };
        let mut unknown = first_sent.is_some();
        loop {
            let sent = {
                let _place = tokio::select! {
                    p = self.sending.acquire() => match p { Ok(p) => p, Err(_) => return },
                    () = self.shutdown.cancelled() => return,
                };
                self.send_once(seq, &action, &mut unknown, &mut first_sent).await
            };
            let e = match sent {
                Ok(()) => {
                    self.record(seq, "remove a sent outbox entry", || self.store.outbox_done(seq))
                        .await;
                    self.count(|m| m.outbox_sent.inc());
                    return;
                }
                Err(e) => e,
            };
            let why = match e.retry_kind() {
                RetryKind::Permanent => {
                    tracing::error!(seq, room_id = %action.room_id(), error = %e, "homeserver refused an outbound request for good");
                    self.count(|m| m.dead_letter("refused"));
                    e.to_string()
                }
                RetryKind::Transient(asked) => {
                    let next = backoff.next_delay(asked, e.is_server_error());
                    match next {
                        Ok(delay) => {
                            tracing::warn!(seq, room_id = %action.room_id(), attempt = backoff.attempts(), delay_ms = delay.as_millis() as u64, error = %e, "outbound request failed; will retry");
                            self.count(|m| m.outbox_retries.inc());
                            if sleep_or_cancelled(self.client.wait_or_back(delay), &self.shutdown)
                                .await
                            {
                                return;
                            }
                            continue;
                        }
                        Err(gave_up) => {
                            tracing::error!(seq, room_id = %action.room_id(), error = %e, "homeserver kept failing an outbound request; moved aside");
                            self.count(|m| m.dead_letter("gave_up"));
                            format!("{gave_up}: {e}")
                        }
                    }
                }
            };
            self.record(seq, "move an outbox entry aside", || {
                self.store.outbox_dead(seq, &value, &why)
            })
            .await;
            if matches!(e.retry_kind(), RetryKind::Permanent) {
                self.tell_refused(&action, &e).await;
            }
            return;
        }
    }

    /// The homeserver refused `action` for good: tells its room, once, what Boardroom could
    /// not do there and what to do about it (best effort: a room the bot cannot post in
    /// is only logged), and `!board info` flags the room.
    async fn tell_refused(&self, action: &Action, e: &HsError) {
        let room = action.room_id();
        match self.store.note_once(room, crate::store::boards::REFUSED_NOTE) {
            Ok(true) => {}
            Ok(false) => return,
            Err(err) => {
                tracing::error!(room_id = %room, error = %err, "cannot record a refusal notice");
                return;
            }
        }
        let what = match action {
            Action::JoinRoom { .. } => "join this room",
            Action::LeaveRoom { .. } => "leave this room",
            Action::Kick { .. } => "remove someone from this room",
            Action::SendMessage { as_user: Some(_), .. } => "post a message here for an API client",
            Action::SendMessage { .. } => "post a message here",
        };
        let code = e.kind().map_or_else(|| "no error code".to_owned(), |k| k.errcode().to_string());
        let text = format!(
            "I could not {what}: the homeserver refused it ({code}). Make sure Boardroom is \
             still in this room and has the power to act here (power level 100 in the room's \
             settings), then ask the admin to run `boardroom dead-letters` to see the refused \
             request and send it again with `--requeue`. `!board info` lists the rooms where \
             this happened."
        );
        tracing::warn!(room_id = %room, errcode = %code, error = %e, "the homeserver refused Boardroom for good; telling the room");
        let mut content = ruma::events::room::message::RoomMessageEventContent::notice_plain(text);
        content.mentions = Some(ruma::events::Mentions::new());
        let txn_id = crate::domain::action::derived_txn_id(&format!("notice.refused.{room}"), 0);
        let notice = Action::SendMessage {
            room_id: room.clone(),
            as_user: None,
            txn_id,
            content: Box::new(content),
        };
        if let Err(err) = self.execute(&notice).await {
            tracing::warn!(room_id = %room, error = %err, "could not tell the room either");
        }
    }

    /// One attempt at entry `seq`. A message whose earlier attempt may have landed
    /// (`unknown`) is looked for in its room first, and not sent again if it is there. A
    /// message is marked as sent (durably, with the time) before its first attempt.
    async fn send_once(
        &self,
        seq: u64,
        action: &Action,
        unknown: &mut bool,
        first_sent: &mut Option<u64>,
    ) -> Result<(), HsError> {
        let Action::SendMessage { room_id, as_user, txn_id, .. } = action else {
            return self.execute(action).await;
        };
        if *unknown {
            // 0: the time is not known.
            let since = first_sent.filter(|t| *t > 0);
            match self.client.find_sent_message(room_id, txn_id, as_user.as_deref(), since).await {
                Ok(Some(event_id)) => {
                    tracing::info!(seq, room_id = %room_id, event_id = %event_id, "the message had landed; not sent again");
                    return Ok(());
                }
                Ok(None) => {}
                Err(e) if e.retry_kind() == RetryKind::Permanent => {
                    tracing::warn!(seq, room_id = %room_id, error = %e, "cannot look for a message that may have landed; sending it");
                }
                Err(e) => return Err(e),
            }
            *unknown = false;
        }
        if first_sent.is_none() {
            let now = crate::domain::now_ms();
            if let Err(e) = self.store.outbox_mark_sent(seq, now) {
                tracing::error!(seq, error = %e, "cannot mark an outbox message as sent");
            }
            *first_sent = Some(now);
        }
        let result = self.execute(action).await;
        if let Err(e) = &result
            && e.outcome_unknown()
        {
            tracing::warn!(seq, room_id = %room_id, error = %e, "the message may have landed; it will be looked for before it is sent again");
            *unknown = true;
        }
        result
    }
}

impl Worker {
    /// Counts in the client's metrics, if it keeps any.
    fn count<T>(&self, f: impl FnOnce(&crate::metrics::Metrics) -> T) {
        if let Some(m) = self.client.metrics() {
            f(m);
        }
    }

    /// Makes a store write that records an entry's fate. While the database cannot write
    /// (its disk is full) it is retried until it lands, so that the lane does not move past
    /// an entry the outbox still holds; any other store error is logged, and the entry is
    /// read again at the next start.
    async fn record(&self, seq: u64, what: &str, write: impl Fn() -> crate::Result<()>) {
        let mut backoff = Backoff::new(RetryPolicy::STORE_WRITE);
        loop {
            match write() {
                Ok(()) => return,
                Err(e @ crate::Error::Unavailable(_)) => {
                    tracing::warn!(seq, error = %e, "cannot {what} yet; retrying");
                }
                Err(e) => {
                    tracing::error!(seq, error = %e, "cannot {what}");
                    return;
                }
            }
            if backoff.pause_or_cancelled(&self.shutdown).await {
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
                &*crate::matrix::html::without_bidi_controls(content),
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
