//! Signed webhooks: `POST /_boardroom/webhooks/v1/{source}` lets a task app or CI push task
//! changes into a board without a token. Each `[[webhooks.sources]]` entry has an ed25519
//! public key; a delivery carries `X-Boardroom-Timestamp`, `X-Boardroom-Delivery` and
//! `X-Boardroom-Signature` (over `timestamp + "." + body`, [`signature`]), and a body
//! `{board, actor, action, …}` ([`body`]). The change is made as the virtual user `actor`
//! (owned by the source's name, [`crate::actors`]) through the same operations as the chat
//! commands and the HTTP API.
//!
//! Refusals change nothing: unknown source 404, missing or wrong signature or a timestamp
//! more than five minutes off 401 `M_UNAUTHORIZED`, a board outside the source's list 403,
//! a bad body 400; all before any virtual user is claimed.
//!
//! A delivery is applied once: its id is recorded with the answer in the synced write that
//! queues its messages (`store::webhooks`), and a delivery id (or the same signed message
//! under another id) seen before is answered 200 with the first answer, `"duplicate":
//! true`, changing nothing. Every id a delivery's operations send with derives from the
//! source and the delivery id, so a delivery applied but not recorded (a crash between the
//! two) does the same thing once when the sender delivers it again.

pub(crate) mod body;
pub mod signature;

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
};

use axum::{
    Json, Router,
    body::Body,
    extract::{DefaultBodyLimit, Path, Request, State},
    http::HeaderMap,
    routing::post,
};
use ruma::OwnedEventId;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use self::body::{Delivery, Fields};
use crate::{
    actors::{self, Owner},
    boards::access,
    config::WebhookSource,
    context::Context,
    domain::{
        Action,
        action::derived_txn_id,
        now_ms,
        op::{Actor, BoardRef, ClientScope, OpSpec, Request as OpRequest},
        task::Change,
    },
    error::{Error, RuleKind},
    tasks::{
        change::{self, CHANGE, TaskRef, TaskUpdate},
        comments::{self, COMMENT},
        create::{self, NEW, NewTask},
    },
};

/// The path, with the source's name last.
pub const PATH: &str = "/_boardroom/webhooks/v1/{source}";

/// The header with the delivery's unique id.
pub const DELIVERY_HEADER: &str = "x-boardroom-delivery";

/// The longest delivery id, in bytes.
pub const MAX_DELIVERY_ID_BYTES: usize = 128;

/// The largest body read.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Shared by the handler.
#[derive(Debug, Clone)]
struct WebhookState {
    ctx: Arc<Context>,
    /// Deliveries being applied now (source, delivery id): the same delivery arriving
    /// meanwhile is answered 409 rather than applied alongside.
    in_flight: Arc<Mutex<HashSet<(String, String)>>>,
}

/// The webhook route.
pub fn router(ctx: Arc<Context>) -> Router {
    let state = WebhookState { ctx, in_flight: Arc::default() };
    Router::new()
        .route(PATH, post(handle).fallback(|| async { Error::MethodNotAllowed }))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Takes a delivery out of [`WebhookState::in_flight`] when its handling ends.
struct InFlight {
    set: Arc<Mutex<HashSet<(String, String)>>>,
    key: (String, String),
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Ok(mut set) = self.set.lock() {
            set.remove(&self.key);
        }
    }
}

/// Handles a delivery ([`deliver`]), counting it by outcome: `applied`, `duplicate`,
/// `unauthorized` (a bad or missing signature), `rate_limited`, `refused` (any other
/// 4xx) or `failed` (5xx).
async fn handle(
    State(state): State<WebhookState>,
    Path(source): Path<String>,
    headers: HeaderMap,
    request: Request<Body>,
) -> Result<Json<Value>, Error> {
    let metrics = state.ctx.metrics.clone();
    let result = deliver(state, source, headers, request).await;
    let outcome = match &result {
        Ok(Json(answer)) if answer.get("duplicate") == Some(&Value::Bool(true)) => "duplicate",
        Ok(_) => "applied",
        Err(e) => match e.status_and_kind().0.as_u16() {
            401 => "unauthorized",
            429 => "rate_limited",
            400..=499 => "refused",
            _ => "failed",
        },
    };
    metrics.webhook_delivery(outcome);
    result
}

async fn deliver(
    state: WebhookState,
    source: String,
    headers: HeaderMap,
    request: Request<Body>,
) -> Result<Json<Value>, Error> {
    let access = state.ctx.settings.access();
    let Some(src) = access.webhook_sources.iter().find(|s| s.name == source) else {
        return Err(Error::NotFound(format!("there is no webhook source `{source}`")));
    };
    let raw = axum::body::to_bytes(request.into_body(), MAX_BODY_BYTES)
        .await
        .map_err(|_| Error::TooLarge)?;
    let signed = signature::verify(&src.public_key, &headers, &raw, now_ms()).inspect_err(|e| {
        tracing::warn!(source = %src.name, error = %e, "webhook delivery refused");
    })?;
    state.ctx.limits.webhooks.check(&src.name).map_err(|wait| {
        tracing::warn!(source = %src.name, retry_after_ms = wait.as_millis() as u64, "webhook source over its rate");
        Error::RateLimited(wait)
    })?;
    let delivery = delivery_id(&headers)?;
    let store = &state.ctx.store;
    if let Some(seen) = store.webhook_delivery(&src.name, delivery)? {
        tracing::info!(source = %src.name, delivery, "webhook delivery seen before; not applied again");
        return Ok(Json(duplicate(seen.answer)));
    }
    if let Some(seen) = store.webhook_delivery_signed(&src.name, &signed.digest)? {
        tracing::warn!(source = %src.name, delivery, first = %seen.delivery, "a signed webhook delivery sent again under another delivery id; not applied again");
        return Ok(Json(duplicate(seen.answer)));
    }
    let parsed = Delivery::parse(&raw)?;
    let key = (src.name.clone(), delivery.to_owned());
    let _in_flight = {
        let mut set =
            state.in_flight.lock().map_err(|_| Error::Internal("webhook lock poisoned".into()))?;
        if !set.insert(key.clone()) {
            return Err(Error::Refused {
                kind: RuleKind::Conflict,
                sentence: format!(
                    "the delivery `{delivery}` is being applied; send it again later"
                ),
            });
        }
        InFlight { set: state.in_flight.clone(), key }
    };
    // Recorded meanwhile by a request that finished just before this one took the slot.
    if let Some(seen) = store.webhook_delivery(&src.name, delivery)? {
        return Ok(Json(duplicate(seen.answer)));
    }
    let ctx = state.ctx.for_requests();
    let cause = cause_of(&src.name, delivery)?;
    let (answer, actions) = apply(&ctx, src, &cause, &parsed).await.inspect_err(|e| {
        tracing::info!(source = %src.name, delivery, action = parsed.action(), error = %e, "webhook delivery refused");
    })?;
    let mut answer = answer;
    if let Value::Object(map) = &mut answer {
        map.insert("delivery".into(), json!(delivery));
        map.insert("action".into(), json!(parsed.action()));
        map.insert("board".into(), json!(parsed.board()));
    }
    let mut encoded = Vec::with_capacity(actions.len());
    for a in &actions {
        encoded.push(serde_json::to_vec(a).map_err(|e| Error::Internal(e.to_string()))?);
    }
    store.record_webhook_delivery(&src.name, delivery, &signed.digest, &answer, &encoded)?;
    if !encoded.is_empty() {
        ctx.outbox_notify.notify_one();
    }
    tracing::info!(source = %src.name, delivery, action = parsed.action(), board = parsed.board(), "webhook delivery applied");
    if let Value::Object(map) = &mut answer {
        map.insert("duplicate".into(), json!(false));
    }
    Ok(Json(answer))
}

fn duplicate(mut answer: Value) -> Value {
    if let Value::Object(map) = &mut answer {
        map.insert("duplicate".into(), json!(true));
    }
    answer
}

/// `X-Boardroom-Delivery`: 1 to 128 visible ASCII characters.
fn delivery_id(headers: &HeaderMap) -> Result<&str, Error> {
    let id = headers
        .get(DELIVERY_HEADER)
        .ok_or_else(|| Error::MissingParam(format!("the header {DELIVERY_HEADER} is missing")))?
        .to_str()
        .ok()
        .filter(|id| {
            !id.is_empty()
                && id.len() <= MAX_DELIVERY_ID_BYTES
                && id.bytes().all(|b| b.is_ascii_graphic())
        })
        .ok_or_else(|| {
            Error::InvalidParam(format!(
                "{DELIVERY_HEADER} must be 1 to {MAX_DELIVERY_ID_BYTES} visible ASCII characters"
            ))
        })?;
    Ok(id)
}

/// The cause every id of a delivery derives from: the source and the delivery id, hashed
/// (a delivery id may hold any visible character).
fn cause_of(source: &str, delivery: &str) -> Result<OwnedEventId, Error> {
    let mut h = Sha256::new();
    h.update(source.as_bytes());
    h.update([0]);
    h.update(delivery.as_bytes());
    let hex: String = h.finalize().iter().take(16).map(|b| format!("{b:02x}")).collect();
    OwnedEventId::try_from(format!("$webhook.{hex}")).map_err(|e| Error::Internal(e.to_string()))
}

/// What a delivery's action needs of its actor, checked before its virtual user is
/// claimed (so a refused delivery claims nothing).
fn spec_of(d: &Delivery) -> &'static OpSpec {
    match d {
        Delivery::Create { .. } => &NEW,
        Delivery::Update { .. } | Delivery::Delete { .. } => &CHANGE,
        Delivery::Comment { .. } => &COMMENT,
    }
}

/// Runs the delivery's action as its actor; the answer and the messages to queue.
async fn apply(
    ctx: &Context,
    src: &WebhookSource,
    cause: &OwnedEventId,
    d: &Delivery,
) -> Result<(Value, Vec<Action>), Error> {
    // A webhook source creates no boards.
    let scope =
        ClientScope { name: src.name.clone(), boards: src.boards.clone(), create_boards: false };
    let slug = d.board();
    // The rights check first, as the actor will be: a board outside the source's list is
    // 403, an unknown one 404, before a virtual user is claimed.
    let user_id = actors::user_id_of(ctx, d.actor())?;
    let actor = Actor::virtual_user(user_id, scope.clone());
    access::board(ctx, &actor, BoardRef::Slug(slug), spec_of(d))?;
    let owner =
        Owner { kind: "webhook source", name: &src.name, max_virtual_users: src.max_virtual_users };
    let user_id = actors::virtual_user(ctx, owner, d.actor()).await?;
    let actor = Actor::virtual_user(user_id, scope);
    let req = OpRequest { actor: &actor, cause, seq: 0, room: None, thread: None };
    let at = BoardRef::Slug(slug);
    match d {
        Delivery::Create { title, .. } => {
            let Fields { status, assignees, labels, due } = d.fields();
            let input = NewTask {
                title: title.clone(),
                status,
                assignees: assignees.unwrap_or_default(),
                labels: labels.unwrap_or_default(),
                due: due.flatten(),
            };
            let done = create::create(ctx, &req, at, &input).await?;
            let fields = &done.value.fields;
            let answer = json!({ "number": fields.number, "root_event_id": fields.root_event_id });
            Ok((answer, done.actions))
        }
        Delivery::Update { number, title, .. } => {
            let Fields { status, assignees, labels, due } = d.fields();
            let update = TaskUpdate { title: title.clone(), status, assignees, labels, due };
            let which = TaskRef::Number { at, number: *number };
            let done = change::update(ctx, &req, which, &update).await?;
            Ok((json!({ "number": number }), done.actions))
        }
        Delivery::Delete { number, .. } => {
            let which = TaskRef::Number { at, number: *number };
            let done = change::change(ctx, &req, which, &Change::Delete).await?;
            Ok((json!({ "number": number }), done.actions))
        }
        Delivery::Comment { number, body, .. } => {
            let txn_id = derived_txn_id(cause.as_str(), 0);
            let event_id = comments::comment(ctx, &req, at, *number, body, &txn_id).await?;
            Ok((json!({ "number": number, "event_id": event_id }), Vec::new()))
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use http::Request;
    use serde_json::Value;
    use tower::ServiceExt;

    use crate::{Config, app::App};

    async fn post(router: &axum::Router, path: &str) -> (u16, Value) {
        let req = Request::post(path).body(Body::from("{}")).expect("request");
        let resp = router.clone().oneshot(req).await.expect("answer");
        let status = resp.status().as_u16();
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX).await.expect("body");
        (status, serde_json::from_slice(&body).expect("json"))
    }

    /// Webhooks are served where the HTTP API is: with the appservice API when they share
    /// a listener, and on the API's own listener (`api.listen`) but not the appservice's.
    #[tokio::test]
    async fn webhooks_are_served_with_the_http_api_and_unsigned_deliveries_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let extra = "[[webhooks.sources]]\nname = \"ci\"\n\
                     public_key = \"psyHm9YaYkK9HSj1+eVJvMABSPyog2xuaRLZoAqklWs=\"\n\
                     boards = [\"demo\"]\n";
        let config = Config::offline(&dir.path().join("db"), extra).expect("config");
        let app = App::new(config.validate().expect("valid")).expect("app");
        for router in [app.router(), app.api_router()] {
            let (status, body) = post(&router, "/_boardroom/webhooks/v1/ci").await;
            assert_eq!((status, body["errcode"].as_str()), (401, Some("M_UNAUTHORIZED")), "{body}");
            let (status, body) = post(&router, "/_boardroom/webhooks/v1/nope").await;
            assert_eq!((status, body["errcode"].as_str()), (404, Some("M_NOT_FOUND")), "{body}");
        }
        let (status, body) = post(&app.appservice_router(), "/_boardroom/webhooks/v1/ci").await;
        assert_eq!((status, body["errcode"].as_str()), (404, Some("M_UNRECOGNIZED")), "{body}");
    }
}
