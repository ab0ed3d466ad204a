//! `GET /boards/{slug}/events`: a board's live stream as Server-Sent Events.
//!
//! The stream opens with `retry:` advice, replays what the caller missed after
//! `Last-Event-ID` (or `?last_event_id=`), sends who types and who is online now, then
//! `ready`, then follows live. Each event's `id:` is the board's log id: a client that
//! reconnects with the last one it saw gets exactly what came after. A stream ends when
//! Boardroom stops, when the caller leaves the board (after an `end` event), or when it
//! falls behind by more than `[live] buffer_events` (it resumes by id). It holds a place
//! under `[live] max_subscribers`, not under the listener's `max_connections`, and its
//! connection closes with it.

use std::{sync::Arc, time::Duration};

use axum::{
    Extension,
    body::{Body, Bytes},
    extract::{Path, State},
    http::HeaderMap,
};
use serde::{Deserialize, Serialize};
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use utoipa::IntoParams;

use super::{ApiQuery, ApiState, auth::Caller, route::EventStream, tasks::Task};
use crate::{
    context::Context,
    domain::{
        op::{Actor, BoardRef, Request},
        stream::{StreamData, TaskChange},
    },
    error::Error,
    listener::ConnectionSlot,
    store::live::LiveEntry,
    stream::{self, Ended, Next, Subscription},
};

/// How long a client waits before it reconnects (`retry:`), in ms.
pub(crate) const RETRY_MS: u64 = 2_000;

/// The cause operations see for a stream's reads.
const CAUSE: &str = "$api.events";

/// `GET /boards/{slug}/events`'s query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct EventsQuery {
    /// Resume after this event id, as the `Last-Event-ID` header does (the header wins).
    last_event_id: Option<String>,
    /// The access token, for clients that cannot set `Authorization` (a browser's
    /// `EventSource`). Never logged.
    #[allow(dead_code)]
    access_token: Option<String>,
    /// With a client token: the virtual user to act as (its name, or its whole user id),
    /// for clients that cannot set `X-Boardroom-User`.
    #[allow(dead_code)]
    user_id: Option<String>,
}

/// `GET /boards/{slug}/events`
pub(crate) async fn follow(
    State(state): State<ApiState>,
    caller: Caller,
    Path(slug): Path<String>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<EventsQuery>,
    slot: Option<Extension<ConnectionSlot>>,
) -> Result<EventStream, Error> {
    let header = headers.get("last-event-id").map(|v| {
        v.to_str().map(str::to_owned).map_err(|_| Error::InvalidParam("Last-Event-ID".into()))
    });
    let last_event_id = match header.transpose()?.or(query.last_event_id) {
        Some(id) if id.trim().is_empty() => None,
        Some(id) => Some(id.trim().parse::<u64>().map_err(|_| {
            Error::InvalidParam(format!("Last-Event-ID `{id}` is not an event id of this stream"))
        })?),
        None => None,
    };
    let ctx = state.ctx.clone();
    let actor = caller.actor();
    let cause = <&ruma::EventId>::try_from(CAUSE).map_err(|e| Error::Internal(e.to_string()))?;
    let req = Request { actor: &actor, cause, seq: 0, room: None, thread: None };
    let sub = stream::subscribe(&ctx, &req, BoardRef::Slug(&slug), last_event_id)?;
    let mine = ctx.streams.open_for(&actor.user_id).ok_or_else(|| {
        Error::LimitExceeded(format!(
            "{} has as many live streams open as one user may ({}); close one first",
            actor.user_id, ctx.settings.raw.live.max_streams_per_user
        ))
    })?;
    let permit = ctx.streams.slots.clone().try_acquire_owned().map_err(|_| {
        Error::LimitExceeded("Boardroom serves as many live streams as it may; retry later".into())
    })?;
    if let Some(Extension(slot)) = slot {
        slot.release();
    }
    tracing::info!(board = %sub.slug, user_id = %actor.user_id, resume = last_event_id, "live stream opened");
    let idle = Duration::from_secs(ctx.settings.raw.http.idle_timeout_secs.max(2));
    let keepalive = Duration::from_secs(ctx.settings.raw.live.keepalive_secs).min(idle / 2);
    // A client's stream ends when a reload changes the clients (its token may be gone).
    let clients_changed = actor.client.as_ref().map(|_| ctx.streams.clients_changed.subscribe());
    let subscribed = Subscribed::new(ctx.metrics.clone());
    let follower = Follower {
        stopping: ctx.streams.stopping.clone(),
        clients_changed,
        _subscribed: subscribed,
        ctx,
        actor,
        sub,
        keepalive,
        _permit: permit,
        _mine: mine,
        started: false,
        done: false,
    };
    let frames = futures_util::stream::unfold(follower, |mut f| async move {
        let frame = f.step().await?;
        Some((Ok::<Bytes, std::convert::Infallible>(frame), f))
    });
    Ok(EventStream(Body::from_stream(frames)))
}

/// Returns when `rx` sees a change; never without one.
async fn changed(rx: &mut Option<tokio::sync::watch::Receiver<u64>>) {
    if let Some(rx) = rx
        && rx.changed().await.is_ok()
    {
        return;
    }
    std::future::pending().await
}

/// One live stream open, in the metrics' count until it is dropped (the stream ended or
/// its connection closed).
struct Subscribed(Arc<crate::metrics::Metrics>);

impl Subscribed {
    fn new(metrics: Arc<crate::metrics::Metrics>) -> Self {
        metrics.live_subscribers.inc();
        Self(metrics)
    }
}

impl Drop for Subscribed {
    fn drop(&mut self) {
        self.0.live_subscribers.dec();
    }
}

/// One subscriber's stream.
struct Follower {
    _subscribed: Subscribed,
    ctx: Arc<Context>,
    actor: Actor,
    sub: Subscription,
    keepalive: Duration,
    stopping: CancellationToken,
    clients_changed: Option<tokio::sync::watch::Receiver<u64>>,
    _permit: OwnedSemaphorePermit,
    _mine: crate::context::UserStream,
    started: bool,
    done: bool,
}

impl Follower {
    /// The next bytes to send; `None` once the stream is over.
    async fn step(&mut self) -> Option<Bytes> {
        if self.done {
            return None;
        }
        if !self.started {
            self.started = true;
            return Some(Bytes::from(format!("retry: {RETRY_MS}\n\n")));
        }
        let cause = <&ruma::EventId>::try_from(CAUSE).ok()?;
        loop {
            let req = Request { actor: &self.actor, cause, seq: 0, room: None, thread: None };
            let next = tokio::select! {
                biased;
                () = self.stopping.cancelled() => {
                    self.done = true;
                    return Some(Bytes::from_static(b": Boardroom is stopping; reconnect with Last-Event-ID\n\n"));
                }
                () = changed(&mut self.clients_changed) => {
                    self.done = true;
                    tracing::info!(board = %self.sub.slug, user_id = %self.actor.user_id, "live stream ended: the API clients were reloaded");
                    return Some(Bytes::from_static(b": the API clients were reloaded; reconnect with Last-Event-ID\n\n"));
                }
                next = self.sub.next(&self.ctx, &req) => next,
                () = tokio::time::sleep(self.keepalive) => {
                    return Some(Bytes::from_static(b": keep-alive\n\n"));
                }
            };
            match next {
                Next::Entry(entry) => {
                    if let Some(frame) = self.frame(&entry) {
                        return Some(frame);
                    }
                }
                Next::Reset { id } => {
                    let data = serde_json::json!({ "reason": "events after your last id are no longer kept: fetch the board's state again" });
                    return Some(Bytes::from(format!("id: {id}\nevent: reset\ndata: {data}\n\n")));
                }
                Next::Ready { id } => {
                    let data = serde_json::json!({ "board": self.sub.slug, "last_event_id": id });
                    return Some(Bytes::from(format!("id: {id}\nevent: ready\ndata: {data}\n\n")));
                }
                Next::End(why) => {
                    self.done = true;
                    if matches!(why, Ended::Behind) {
                        self.ctx.metrics.live_dropped_slow.inc();
                    }
                    tracing::info!(board = %self.sub.slug, user_id = %self.actor.user_id, reason = ?why, "live stream ended");
                    return match why {
                        Ended::Removed => Some(Bytes::from_static(
                            b"event: end\ndata: {\"reason\":\"no longer a member of the board\"}\n\n",
                        )),
                        Ended::Behind => None,
                    };
                }
            }
        }
    }

    /// An entry's frame: rendered once for every subscriber when it is logged; typing and
    /// presence carry this subscriber's last id.
    fn frame(&self, entry: &LiveEntry) -> Option<Bytes> {
        if entry.event.is_logged() {
            if let Some(f) = entry.frame.get() {
                return Some(f.clone());
            }
            let rendered = render(&self.ctx, entry, entry.id)?;
            return Some(entry.frame.get_or_init(|| rendered).clone());
        }
        render(&self.ctx, entry, self.sub.cursor())
    }
}

/// `task`'s data: the task as the API shows it.
#[derive(Serialize)]
struct TaskData {
    change: TaskChange,
    task: Task,
}

/// The Server-Sent Events frame of `entry` with the id `id`.
fn render(ctx: &Context, entry: &LiveEntry, id: u64) -> Option<Bytes> {
    let data = match &entry.event.data {
        StreamData::Message(m) => serde_json::to_string(m),
        StreamData::Comment(c) => serde_json::to_string(c),
        StreamData::Task(t) => {
            let n = t.task.fields.number;
            let comments = ctx.store.comment_count(&t.task.board, n).unwrap_or(0);
            serde_json::to_string(&TaskData { change: t.change, task: Task::of(&t.task, comments) })
        }
        StreamData::Membership(m) => serde_json::to_string(m),
        StreamData::Notification(n) => serde_json::to_string(n),
        StreamData::Typing(t) => serde_json::to_string(t),
        StreamData::Presence(p) => serde_json::to_string(p),
    };
    match data {
        Ok(data) => {
            Some(Bytes::from(format!("id: {id}\nevent: {}\ndata: {data}\n\n", entry.event.kind())))
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot render a live event");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use ruma::{RoomId, events::room::member::MembershipState, owned_user_id};

    use super::*;
    use crate::{
        Config,
        app::App,
        domain::{board::BoardRecord, task::TaskRecord},
    };

    /// The value of the sample `name` (no labels) in `text`.
    fn sample(text: &str, name: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
    }

    /// A stream counts as a subscriber while it is served; one that falls behind is ended
    /// and counted as dropped.
    #[tokio::test]
    async fn subscribers_are_counted_and_a_slow_one_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config =
            Config::offline(&dir.path().join("db"), "[live]\nbuffer_events = 4\n").expect("config");
        let app = App::new(config.validate().expect("valid")).expect("app");
        let ctx = app.ctx.clone();
        let space = RoomId::parse("!space:localhost").expect("room id");
        let alice = owned_user_id!("@alice:localhost");
        ctx.store.put_board(&BoardRecord::example("launch", &space, &alice)).expect("board");
        ctx.store
            .set_membership(&space, &alice, &MembershipState::Join, None, Some("launch"))
            .expect("member");
        let actor = Actor { user_id: alice.clone(), client: None, token: None };
        let cause = <&ruma::EventId>::try_from(CAUSE).expect("cause");
        let req = Request { actor: &actor, cause, seq: 0, room: None, thread: None };
        let sub = stream::subscribe(&ctx, &req, BoardRef::Slug("launch"), None).expect("sub");
        let metrics = ctx.metrics.clone();
        let mut follower = Follower {
            _subscribed: Subscribed::new(metrics.clone()),
            stopping: ctx.streams.stopping.clone(),
            clients_changed: None,
            _permit: ctx.streams.slots.clone().try_acquire_owned().expect("permit"),
            _mine: ctx.streams.open_for(&alice).expect("place"),
            ctx: ctx.clone(),
            actor,
            sub,
            keepalive: Duration::from_secs(60),
            started: false,
            done: false,
        };
        let gauge = || sample(&metrics.render(), "boardroom_live_subscribers");
        let dropped = || sample(&metrics.render(), "boardroom_live_slow_subscribers_dropped_total");
        assert_eq!((gauge(), dropped()), (Some(1.0), Some(0.0)));
        loop {
            let frame = follower.step().await.expect("a frame");
            if String::from_utf8_lossy(&frame).contains("event: ready") {
                break;
            }
        }
        // Ten changes while the subscriber reads nothing: past its buffer of four.
        for n in 1..=10 {
            let root = ruma::OwnedEventId::try_from(format!("$root{n}")).expect("event id");
            ctx.store.put_task(&TaskRecord::example("launch", n, root)).expect("task");
        }
        while follower.step().await.is_some() {}
        assert_eq!((gauge(), dropped()), (Some(1.0), Some(1.0)));
        drop(follower);
        assert_eq!((gauge(), dropped()), (Some(0.0), Some(1.0)));
    }
}
