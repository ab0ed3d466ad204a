//! `PUT /_matrix/app/v1/transactions/{txnId}` ([spec])
//!
//! Answered 200 only once the transaction's events are durable. Deduplicated by event id
//! (the homeserver redelivers, and restarts its transaction ids at 1), with a fast path for
//! a byte-identical retry of the same transaction id. Ephemeral data is read from both
//! `ephemeral` and the older `de.sorunome.msc2409.ephemeral`.
//!
//! [spec]: https://spec.matrix.org/v1.11/application-service-api/#put_matrixappv1transactionstxnid

use axum::{extract::State, response::Response};
use ruma::{
    OwnedRoomId,
    api::{
        OutgoingResponseExt,
        appservice::event::push_events::v1::{EphemeralData, Request, Response as PushResponse},
    },
    events::AnyTimelineEvent,
    serde::Raw,
};
use serde::Deserialize;
use tracing::Instrument;

use super::{AppState, extract::Ruma};
use crate::{
    crypto::DeviceUpdates,
    error::{Error, Result},
    inbound::peek::{Peek, calls_for_nothing},
    store::inbound::{DEVICE_LANE, EntryKind, Incoming, NewEntry, PendingEntry},
};

/// The older key some homeservers use for ephemeral data (MSC2409 before it was merged).
const UNSTABLE_KEY: &[u8] = b"de.sorunome.msc2409.ephemeral";

/// The older key's ephemeral data.
#[derive(Deserialize)]
struct UnstableEphemeral {
    #[serde(rename = "de.sorunome.msc2409.ephemeral", default)]
    ephemeral: Vec<Raw<EphemeralData>>,
}

struct Owned {
    kind: EntryKind,
    room_id: String,
    event_id: Option<String>,
    json: Box<serde_json::value::RawValue>,
    may_change_rooms: bool,
    /// A message that cannot be a command, as the first pass read it.
    plain: bool,
}

impl Incoming for Owned {
    fn entry(&self) -> NewEntry<'_> {
        NewEntry {
            kind: self.kind,
            room_id: &self.room_id,
            event_id: self.event_id.as_deref(),
            json: self.json.get().as_bytes(),
            may_change_rooms: self.may_change_rooms,
            plain: self.plain,
        }
    }

    /// The event's bytes move to the dispatcher's entry, uncopied.
    fn into_pending(self, seq: u64) -> PendingEntry {
        let json: Box<str> = self.json.into();
        PendingEntry {
            seq,
            kind: self.kind,
            room_id: self.room_id,
            json: json.into_boxed_bytes().into_vec(),
            may_change_rooms: self.may_change_rooms,
            plain: self.plain,
        }
    }
}

/// What ingest does with a timeline event.
enum Timeline {
    /// Stores it for processing.
    Store(Owned),
    /// Leaves it: a message in a room that is no board's that cannot be a command.
    CallsForNothing,
    /// Skips it: it has no event id or room id.
    Malformed,
}

/// Handles a transaction.
pub(crate) async fn handle(
    State(state): State<AppState>,
    Ruma { request, body }: Ruma<Request>,
) -> Result<Response> {
    let span =
        tracing::info_span!("transaction", txn_id = %request.txn_id, events = request.events.len());
    async move {
        let ctx = &state.ctx;
        let started = std::time::Instant::now();
        ctx.metrics.transactions.inc();
        // BLAKE3, not SHA-256: less than half the time on a 40 KB body (docs/PERFORMANCE.md).
        // A retry that spans the change from SHA-256 finds no equal digest and is stored as a
        // new transaction, whose events are then skipped as duplicates by their ids.
        let digest: [u8; 32] = blake3::hash(&body).into();
        // The body was parsed once for the request; a second pass only when it holds the
        // older key.
        let unstable: UnstableEphemeral = match memchr::memmem::find(&body, UNSTABLE_KEY) {
            Some(_) => serde_json::from_slice(&body).map_err(|e| Error::BadJson(e.to_string()))?,
            None => UnstableEphemeral { ephemeral: Vec::new() },
        };

        // An event that calls for nothing (`peek::calls_for_nothing`) is not stored, unless
        // an entry waits that can make a room a board's (one stored before, or one earlier
        // in this transaction).
        let mut rooms_settled = ctx.backlog.rooms_settled();
        let Request { txn_id, events, ephemeral, .. } = request;
        let mut owned = Vec::with_capacity(events.len());
        let mut ignored = 0u64;
        for raw in events {
            match timeline_entry(ctx, raw, rooms_settled) {
                Timeline::Store(o) => {
                    rooms_settled &= !o.may_change_rooms;
                    owned.push(o);
                }
                Timeline::CallsForNothing => ignored += 1,
                Timeline::Malformed => {
                    tracing::warn!("skipping an event without event_id or room_id")
                }
            }
        }
        for raw in ephemeral.iter().chain(&unstable.ephemeral) {
            match raw.deserialize() {
                Ok(EphemeralData::Typing(t)) => {
                    let users = t
                        .content
                        .user_ids
                        .into_iter()
                        .filter(|u| !ctx.settings.is_ours(u))
                        .collect();
                    ctx.live.set_typing(t.room_id.clone(), users);
                    crate::stream::events::typing(ctx, &t.room_id);
                }
                Ok(EphemeralData::Presence(p)) => {
                    if !ctx.settings.is_ours(&p.sender) {
                        let changed = ctx.live.presence(&p.sender).map(|was| was.state)
                            != Some(p.content.presence.clone());
                        ctx.live.set_presence(p.sender.clone(), p.content.presence.clone());
                        if changed {
                            crate::stream::events::presence(ctx, &p.sender, &p.content.presence);
                        }
                    }
                }
                Ok(EphemeralData::Receipt(r)) => owned.push(Owned {
                    kind: EntryKind::Receipt,
                    room_id: r.room_id.to_string(),
                    event_id: None,
                    json: raw.json().to_owned(),
                    may_change_rooms: false,
                    plain: false,
                }),
                Ok(other) => tracing::debug!(kind = other.data_type(), "ignoring ephemeral data"),
                Err(e) => tracing::warn!(error = %e, "skipping ephemeral data that does not parse"),
            }
        }

        if ctx.settings.raw.encryption.enabled
            && let Some(o) = device_entry(ctx, &body)?
        {
            owned.push(o);
        }

        // Counted before they are stored, so that no message is left out meanwhile; what
        // was not stored (a duplicate, a failed write) is counted out after.
        let changing =
            ctx.backlog.changing_rooms(owned.iter().filter(|o| o.may_change_rooms).count() as u64);
        let store = ctx.store.clone();
        let txn = txn_id.to_string();
        let ingest = move || store.ingest_entries(&txn, digest, owned);
        // On this worker when the disk is quick and no other ingest is on one; else on the
        // blocking pool.
        let outcome = match ctx.store.claim_quick_ingest() {
            Some(_place) => ingest()?,
            None => tokio::task::spawn_blocking(ingest)
                .await
                .map_err(|e| Error::Internal(format!("ingest task: {e}")))??,
        };
        changing.stored(outcome.may_change_rooms as u64);
        let m = &ctx.metrics;
        m.events_ignored.inc_by(ignored);
        m.ingest_seconds.observe(started.elapsed().as_secs_f64());
        m.events_accepted.inc_by(outcome.accepted as u64);
        m.events_duplicate.inc_by(outcome.duplicates as u64);
        if outcome.replayed {
            m.transactions_replayed.inc();
        }
        if outcome.accepted > 0 {
            ctx.backlog.stored(outcome.accepted as u64);
            // The dispatcher, woken into this worker's next slot, starts on the entries
            // once this task has sent the answer: the answer does not wait on another
            // worker waking up to send it (docs/PERFORMANCE.md, "The answer first").
            ctx.inbound_notify.notify_one();
        }
        state.restarts.saw(txn_id.as_str());
        tracing::debug!(
            accepted = outcome.accepted,
            duplicates = outcome.duplicates,
            replayed = outcome.replayed,
            ignored,
            "transaction stored"
        );
        hold_while_behind(ctx).await;
        PushResponse::new()
            .try_into_http_response::<Vec<u8>>()
            .map(|r| r.map(axum::body::Body::from))
            .map_err(|e| Error::Internal(e.to_string()))
    }
    .instrument(span)
    .await
}

/// Holds a stored transaction's answer while processing is behind, until it catches up,
/// at most `backlog_hold_secs`, or until Boardroom stops. Behind means more entries wait
/// on processing alone than `[appservice] max_ready_backlog` (those in rooms' own lanes
/// left out: a command there can wait on the homeserver, and what its room sent after it
/// with it), or more in all than `max_backlog`. The homeserver sends its next transaction
/// only after this one's answer, so a homeserver pushing faster than Boardroom processes
/// slows to its pace rather than growing the queue without end. The events are stored
/// already: a hold delays only the answer.
async fn hold_while_behind(ctx: &crate::context::Context) {
    let a = &ctx.settings.raw.appservice;
    let bound = |n: u64| (n != 0).then_some(n);
    let (all, ready) = (bound(a.max_backlog), bound(a.max_ready_backlog));
    let backlog = &ctx.backlog;
    if backlog.within(all, ready) {
        return;
    }
    let held = std::time::Instant::now();
    let longest = std::time::Duration::from_secs(a.backlog_hold_secs);
    let caught_up = tokio::select! {
        c = tokio::time::timeout(longest, backlog.down_to(all, ready)) => c.is_ok(),
        () = ctx.streams.stopping.cancelled() => true,
    };
    ctx.metrics.transaction_hold_seconds.observe(held.elapsed().as_secs_f64());
    if caught_up {
        tracing::debug!(
            held_ms = held.elapsed().as_millis() as u64,
            "answer held while processing caught up"
        );
    } else {
        tracing::warn!(
            waiting = backlog.waiting(),
            max_backlog = a.max_backlog,
            ready = backlog.ready(),
            max_ready_backlog = a.max_ready_backlog,
            held_secs = a.backlog_hold_secs,
            "processing is behind: answering a transaction after holding it the longest allowed"
        );
    }
}

/// What the transaction brought for the bot's device, as an entry, when there is news for
/// it (a one-time-key count comes in every transaction: it is kept only when it changed).
fn device_entry(ctx: &crate::context::Context, body: &[u8]) -> Result<Option<Owned>> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| Error::BadJson(e.to_string()))?;
    let bot = ctx.settings.bot_user_id.as_str();
    let updates = DeviceUpdates::of(&value, bot, &ctx.settings.raw.encryption.device_id);
    let mut last = ctx.device_counts.lock().unwrap_or_else(|p| p.into_inner());
    if !updates.is_news(last.as_ref()) {
        return Ok(None);
    }
    if updates.one_time_keys.is_some() {
        last.clone_from(&updates.one_time_keys);
    }
    let json = serde_json::value::to_raw_value(&updates)
        .map_err(|e| Error::Internal(format!("device updates: {e}")))?;
    Ok(Some(Owned {
        kind: EntryKind::Device,
        room_id: DEVICE_LANE.to_owned(),
        event_id: None,
        json,
        may_change_rooms: false,
        plain: false,
    }))
}

/// One pass over the event (borrowed from the body) for its ids and what it can call for.
fn timeline_entry(
    ctx: &crate::context::Context,
    raw: Raw<AnyTimelineEvent>,
    rooms_settled: bool,
) -> Timeline {
    let json = raw.into_json();
    let peeked = Peek::of_str(json.get()).map(|peek| {
        let (Some(event_id), Some(room)) = (peek.event_id.as_deref(), peek.room()) else {
            return Err(Timeline::Malformed);
        };
        if rooms_settled && calls_for_nothing(&ctx.store, &ctx.settings, &peek) {
            return Err(Timeline::CallsForNothing);
        }
        let plain = peek.cannot_be_a_command();
        Ok((event_id.to_owned(), room.to_string(), peek.may_change_rooms(&ctx.settings), plain))
    });
    let (event_id, room_id, may_change_rooms, plain) = match peeked {
        Some(Ok(read)) => read,
        Some(Err(leave)) => return leave,
        // Not read by the first pass: stored, and read in full (with its errors) by the
        // handler.
        None => {
            let raw = Raw::<AnyTimelineEvent>::from_json(json);
            let event_id = raw.get_field::<String>("event_id").ok().flatten();
            let room_id = raw.get_field::<OwnedRoomId>("room_id").ok().flatten();
            let (Some(event_id), Some(room_id)) = (event_id, room_id) else {
                return Timeline::Malformed;
            };
            return Timeline::Store(Owned {
                kind: EntryKind::Timeline,
                room_id: room_id.to_string(),
                event_id: Some(event_id),
                json: raw.into_json(),
                may_change_rooms: true,
                plain: false,
            });
        }
    };
    Timeline::Store(Owned {
        kind: EntryKind::Timeline,
        room_id,
        event_id: Some(event_id),
        json,
        may_change_rooms,
        plain,
    })
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Duration};

    use tokio::{
        sync::{Semaphore, watch},
        task::JoinSet,
    };
    use tokio_util::sync::CancellationToken;

    use crate::matrix::lanes::{Handler, Lanes, Route};

    /// A transaction's entries reach the dispatcher from memory with their bytes moved
    /// there, not copied: each as the database holds it (seq, kind, room, bytes, flags), a
    /// duplicate left out, and one past what memory keeps read back from the database.
    #[test]
    fn a_transaction_s_entries_reach_the_dispatcher_as_the_database_holds_them() {
        use super::{EntryKind, Owned};
        use crate::store::{Store, inbound::PendingEntry};
        let owned = |id: &str, room: &str, json: &str, plain: bool| Owned {
            kind: EntryKind::Timeline,
            room_id: room.to_owned(),
            event_id: Some(id.to_owned()),
            json: serde_json::value::RawValue::from_string(json.to_owned()).expect("json"),
            may_change_rooms: !plain,
            plain,
        };
        let seen = |e: &PendingEntry| {
            (e.seq, e.kind, e.room_id.clone(), e.json.clone(), e.may_change_rooms, e.plain)
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        store.hand_arrivals_over();
        let first = vec![
            owned("$a", "!r:x", r#"{"n":"a \u00e9"}"#, true),
            owned("$b", "!s:x", r#"{"n":"b"}"#, false),
        ];
        let bytes_at: Vec<*const u8> = first.iter().map(|o| o.json.get().as_ptr()).collect();
        let done = store.ingest_entries("1", [1; 32], first).expect("ingest");
        assert_eq!((done.accepted, done.duplicates), (2, 0));
        let second = vec![
            owned("$a", "!r:x", r#"{"n":"again"}"#, true),
            owned("$c", "!r:x", r#"{"n":"c"}"#, true),
        ];
        let done = store.ingest_entries("2", [2; 32], second).expect("ingest");
        assert_eq!((done.accepted, done.duplicates), (1, 1));
        let arrived = store.arrived_from(1, 10).expect("arrived");
        let moved: Vec<*const u8> = arrived.iter().take(2).map(|e| e.json.as_ptr()).collect();
        assert_eq!(moved, bytes_at, "the dispatcher gets the request's own bytes, not a copy");
        let from_memory: Vec<_> = arrived.iter().map(seen).collect();
        let from_disk: Vec<_> =
            store.pending_from(1, 10).expect("pending").iter().map(seen).collect();
        assert_eq!(from_memory, from_disk);
        assert_eq!(
            from_memory,
            [
                (
                    1,
                    EntryKind::Timeline,
                    "!r:x".into(),
                    br#"{"n":"a \u00e9"}"#.to_vec(),
                    false,
                    true
                ),
                (2, EntryKind::Timeline, "!s:x".into(), br#"{"n":"b"}"#.to_vec(), true, false),
                (3, EntryKind::Timeline, "!r:x".into(), br#"{"n":"c"}"#.to_vec(), false, true),
            ]
        );
    }

    /// A stored transaction is answered before the processing it wakes runs, on one worker
    /// and on two: on one nothing else could send the answer meanwhile, and on two a
    /// hand-over would cost the answer the other worker's wake-up (docs/PERFORMANCE.md,
    /// "The answer first").
    #[test]
    fn a_transaction_is_answered_before_the_processing_it_wakes() {
        use std::sync::atomic::{AtomicUsize, Ordering};

        use axum::body::Body;
        use tower::ServiceExt;

        for workers in [1, 2] {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(workers)
                .enable_all()
                .build()
                .expect("runtime");
            let dir = tempfile::tempdir().expect("tempdir");
            let config =
                crate::config::Config::offline(&dir.path().join("db"), "").expect("config");
            let app = crate::app::App::new(config.validate().expect("valid")).expect("app");
            let (ctx, router) = (app.ctx.clone(), app.router());
            let steps = Arc::new(AtomicUsize::new(0));
            // Stands for the dispatcher: woken by the stored transaction. It says when it waits.
            let (waiting, waits) = tokio::sync::oneshot::channel();
            let processed = rt.spawn({
                let (ctx, steps) = (ctx.clone(), steps.clone());
                async move {
                    let woken = ctx.inbound_notify.notified();
                    tokio::pin!(woken);
                    woken.as_mut().enable();
                    let _ = waiting.send(());
                    woken.await;
                    steps.fetch_add(1, Ordering::SeqCst)
                }
            });
            let answered = rt.block_on(async {
                waits.await.expect("the stand-in waits");
                let body = serde_json::json!({"events": [{
                    "type": "m.room.message", "event_id": "$a", "room_id": "!r:localhost",
                    "sender": "@alice:localhost", "origin_server_ts": 1,
                    "content": {"msgtype": "m.text", "body": "!help"}
                }]});
                let req = axum::http::Request::put("/_matrix/app/v1/transactions/1")
                    .header("authorization", "Bearer hs")
                    .header("content-type", "application/json")
                    .body(Body::from(body.to_string()))
                    .expect("request");
                let steps = steps.clone();
                rt.spawn(async move {
                    let resp = router.oneshot(req).await.expect("response");
                    (resp.status(), steps.fetch_add(1, Ordering::SeqCst))
                })
                .await
                .expect("request task")
            });
            let processed = rt.block_on(processed).expect("processing task");
            assert_eq!(answered.0, axum::http::StatusCode::OK);
            assert_eq!(ctx.store.pending_counts().map(|c| c.0).ok(), Some(1), "stored");
            assert!(
                answered.1 < processed,
                "{workers} worker(s): answered at step {}, processing started at step {processed}",
                answered.1
            );
        }
    }

    /// Entries waiting in rooms' own lanes (behind a command that waits on the homeserver)
    /// hold no answer under `max_backlog`; past `max_ready_backlog`, the entries in a
    /// board's lane and those not read yet do, until processing takes them.
    #[tokio::test]
    async fn answers_are_held_on_what_waits_on_processing_not_on_the_homeserver() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config =
            crate::config::Config::offline(&dir.path().join("db"), "").expect("config");
        config.appservice.max_backlog = 10;
        config.appservice.max_ready_backlog = 2;
        config.appservice.backlog_hold_secs = 30;
        let app = crate::app::App::new(config.validate().expect("valid")).expect("app");
        let ctx = app.ctx.clone();
        // Every turn waits until the gate opens (processing, or the homeserver, is slow),
        // then counts its entries processed, as the inbound handler does.
        let (open, gate) = watch::channel(false);
        let handler: Handler<u64> = {
            let backlog = ctx.backlog.clone();
            Arc::new(move |turn| {
                let (mut gate, backlog) = (gate.clone(), backlog.clone());
                Box::pin(async move {
                    let _ = gate.wait_for(|open| *open).await;
                    backlog.processed(turn.len() as u64);
                })
            })
        };
        let (shutdown, mut tasks) = (CancellationToken::new(), JoinSet::new());
        let mut lanes = Lanes::new(handler, ctx.backlog.own_lanes.clone());
        let places = Arc::new(Semaphore::new(64));
        let mut send = |route: Route, n: u64| {
            let place = places.clone().try_acquire_owned().expect("a place");
            lanes.send(&route, &shutdown, &mut tasks, n, place);
        };
        for (n, room) in ["!a:localhost", "!b:localhost", "!c:localhost"].iter().enumerate() {
            for i in 0..2 {
                send(Route::own((*room).to_owned()), (n * 2 + i) as u64);
            }
        }
        ctx.backlog.stored(6);
        let quick = Duration::from_secs(5);
        tokio::time::timeout(quick, super::hold_while_behind(&ctx))
            .await
            .expect("six waiting in rooms' own lanes, under max_backlog: answered at once");
        assert_eq!((ctx.backlog.waiting(), ctx.backlog.ready()), (6, 0));

        let board = |room: &str| Route { key: room.to_owned(), shared: Some("board 0 b".into()) };
        for (n, room) in ["!d:localhost", "!e:localhost", "!d:localhost"].iter().enumerate() {
            send(board(room), 10 + n as u64);
        }
        ctx.backlog.stored(3);
        assert_eq!(ctx.backlog.ready(), 3);
        let hold = || {
            let ctx = ctx.clone();
            tokio::spawn(async move { super::hold_while_behind(&ctx).await })
        };
        let held = hold();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!held.is_finished(), "three waiting in the board's lane, past 2: held");
        open.send_replace(true);
        tokio::time::timeout(quick, held)
            .await
            .expect("answered once the board's lane was processed")
            .expect("task");

        // Three stored and not read yet wait on processing alone too.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while ctx.backlog.waiting() > 0 {
            assert!(std::time::Instant::now() < deadline, "the lanes did not finish");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        ctx.backlog.stored(3);
        let held = hold();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!held.is_finished(), "three not read yet, past 2: held");
        ctx.backlog.processed(1);
        tokio::time::timeout(quick, held).await.expect("answered at 2").expect("task");
        let text = ctx.metrics.render();
        assert!(
            text.contains("boardroom_appservice_transaction_hold_seconds_count 2"),
            "two held answers counted: {text}"
        );
        shutdown.cancel();
        while tasks.join_next().await.is_some() {}
    }
}
