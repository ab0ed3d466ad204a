//! The HTTP API for bots and task apps, under `/_boardroom/api/v1`, described by the
//! OpenAPI document it serves (`openapi`).
//!
//! Two kinds of caller ([`auth`]): a Matrix user with their access token (checked with the
//! homeserver's `whoami`, cached for [`auth::WHOAMI_TTL`]), acting as themselves; or a bot
//! or task app with a client token from the config, acting as the virtual user named in
//! `X-Boardroom-User`. A caller sees only boards it belongs to.

pub mod auth;
pub(crate) mod boards;
pub(crate) mod chat;
pub(crate) mod comments;
pub(crate) mod events;
pub(crate) mod members;
pub(crate) mod notifications;
pub(crate) mod openapi;
pub(crate) mod rooms;
pub(crate) mod route;
pub(crate) mod tasks;

use std::{marker::PhantomData, sync::Arc};

use axum::{
    Router,
    body::Bytes,
    extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Query, Request},
    http::{StatusCode, request::Parts},
    routing::MethodRouter,
};
use route::Route;
use serde::de::DeserializeOwned;
use serde_json::json;

use sha2::Digest;

use crate::{
    context::Context,
    domain::op::{Actor, Request as OpRequest},
    error::Error,
};

/// The API's path prefix.
pub const PREFIX: &str = "/_boardroom/api/v1";

/// Largest request body the API reads.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Every route, declared once: the router and the OpenAPI document are built from it.
/// What a route takes and answers is read from its handler's signature ([`route`]).
pub(crate) fn routes() -> Vec<Route> {
    let slug = || json!({ "type": "string" });
    let room = || json!({ "type": "string" });
    vec![
        Route::get("/_boardroom/api/v1/openapi.json", openapi::handle)
            .summary("This document", "OpenAPI 3.1"),
        Route::get("/_boardroom/api/v1/notifications", notifications::list)
            .summary("The caller's inbox, newest first", "A page"),
        Route::get("/_boardroom/api/v1/notifications/unread_count", notifications::unread_count)
            .summary("The caller's unread count", "Count"),
        Route::post("/_boardroom/api/v1/notifications/read_all", notifications::read_all)
            .summary("Mark every entry of the caller's inbox read", "Marked"),
        Route::post("/_boardroom/api/v1/notifications/{id}/read", notifications::read_one)
            .summary("Mark one entry read", "Marked (0 if it was read already)")
            .path_param("id", json!({ "type": "integer" }))
            .not_found("M_NOT_FOUND: not in the caller's inbox, or (for a client) of a board outside its scope"),
        Route::get("/_boardroom/api/v1/boards", boards::list)
            .summary("The caller's boards", "By slug"),
        Route::post("/_boardroom/api/v1/boards", boards::create)
            .summary(
                "Create a board, as !board create (clients with create_boards, as their virtual user)",
                "The board, created",
            )
            .header("Idempotency-Key", json!({ "type": "string", "maxLength": 128 }))
            .conflict("M_UNKNOWN: the slug is in use"),
        Route::get("/_boardroom/api/v1/boards/{slug}", boards::get)
            .summary("A board: its rooms, columns with task counts, the caller's role", "The board")
            .path_param("slug", slug())
            .not_found("M_NOT_FOUND: no such board (within a client's scope)"),
        Route::get("/_boardroom/api/v1/boards/{slug}/members", members::list)
            .summary(
                "Every member page by page, or with q, mention autocomplete (members whose localpart or display name starts with q)",
                "Members",
            )
            .path_param("slug", slug())
            .not_found("M_NOT_FOUND: no such board (within a client's scope)"),
        Route::put("/_boardroom/api/v1/boards/{slug}/members/{user_id}", members::invite)
            .summary("Invite a user to the board, as !board invite (board admins)", "Invited")
            .path_param("slug", slug())
            .path_param("user_id", json!({ "type": "string" }))
            .not_found("M_NOT_FOUND: no such board (within a client's scope)")
            .conflict("M_UNKNOWN: already a member, or banned"),
        Route::delete("/_boardroom/api/v1/boards/{slug}/members/{user_id}", members::remove)
            .summary("Remove a member from the board and its private rooms, as !board remove", "Removed")
            .path_param("slug", slug())
            .path_param("user_id", json!({ "type": "string" }))
            .not_found("M_NOT_FOUND: no such board (within a client's scope), or not a member"),
        Route::get("/_boardroom/api/v1/boards/{slug}/tasks", tasks::list)
            .summary(
                "The board's tasks by number, filtered by status, assignee, label, due date",
                "A page",
            )
            .path_param("slug", slug())
            .not_found("M_NOT_FOUND: no such board (within a client's scope)"),
        Route::post("/_boardroom/api/v1/boards/{slug}/tasks", tasks::create)
            .summary("Create a task, as !task new does", "The task, created")
            .path_param("slug", slug())
            .header("Idempotency-Key", json!({ "type": "string", "maxLength": 128 }))
            .not_found("M_NOT_FOUND: no such board (within a client's scope)")
            .conflict(TASKS_ROOM_CONFLICT),
        Route::get("/_boardroom/api/v1/boards/{slug}/tasks/{number}", tasks::get)
            .summary("One task", "The task")
            .path_param("slug", slug())
            .path_param("number", json!({ "type": "integer" }))
            .not_found("M_NOT_FOUND: no such board or task"),
        Route::patch("/_boardroom/api/v1/boards/{slug}/tasks/{number}", tasks::patch)
            .summary(
                "Change any of a task's fields in one request, as the !task commands do",
                "The task, changed",
            )
            .path_param("slug", slug())
            .path_param("number", json!({ "type": "integer" }))
            .header("Idempotency-Key", json!({ "type": "string", "maxLength": 128 }))
            .not_found("M_NOT_FOUND: no such board or task")
            .conflict(TASKS_ROOM_CONFLICT),
        Route::delete("/_boardroom/api/v1/boards/{slug}/tasks/{number}", tasks::delete)
            .summary("Delete a task (its creator or a board admin)", "The task, deleted")
            .path_param("slug", slug())
            .path_param("number", json!({ "type": "integer" }))
            .header("Idempotency-Key", json!({ "type": "string", "maxLength": 128 }))
            .not_found("M_NOT_FOUND: no such board or task")
            .conflict(TASKS_ROOM_CONFLICT),
        Route::get("/_boardroom/api/v1/boards/{slug}/tasks/{number}/comments", tasks::comments)
            .summary("A task's comments, oldest first", "A page")
            .path_param("slug", slug())
            .path_param("number", json!({ "type": "integer" }))
            .not_found("M_NOT_FOUND: no such board or task"),
        Route::post("/_boardroom/api/v1/boards/{slug}/tasks/{number}/comments", comments::add)
            .summary(
                "Add a comment to a task as the client's virtual user (client tokens only)",
                "Sent",
            )
            .path_param("slug", slug())
            .path_param("number", json!({ "type": "integer" }))
            .header("Idempotency-Key", json!({ "type": "string", "maxLength": 128 }))
            .not_found("M_NOT_FOUND: no such board or task")
            .conflict(TASKS_ROOM_CONFLICT),
        Route::get("/_boardroom/api/v1/boards/{slug}/rooms", rooms::list)
            .summary("The board's rooms (private ones only for those in them)", "The rooms")
            .path_param("slug", slug())
            .not_found("M_NOT_FOUND: no such board (within a client's scope)"),
        Route::post("/_boardroom/api/v1/boards/{slug}/rooms", rooms::create)
            .summary("Add a chat room to the board, as `!board room`", "Created")
            .path_param("slug", slug())
            .not_found("M_NOT_FOUND: no such board (within a client's scope)")
            .conflict("M_UNKNOWN: the board has a room of that name, or its alias is taken"),
        Route::get("/_boardroom/api/v1/boards/{slug}/rooms/{room}/messages", chat::history)
            .summary(
                "A room's history, newest first, read as the caller (what the homeserver shows them)",
                "A page",
            )
            .path_param("slug", slug())
            .path_param("room", room())
            .not_found("M_NOT_FOUND: no such board, or no room of that name the caller may see (a private room it is not in)"),
        Route::post("/_boardroom/api/v1/boards/{slug}/rooms/{room}/messages", chat::post)
            .summary("Send a message as the caller, mentions resolved", "Sent")
            .path_param("slug", slug())
            .path_param("room", room())
            .header("Idempotency-Key", json!({ "type": "string", "maxLength": 128 }))
            .not_found("M_NOT_FOUND: no such board, or no room of that name the caller may see (a private room it is not in)"),
        Route::put("/_boardroom/api/v1/boards/{slug}/rooms/{room}/typing", chat::set_typing)
            .summary("The caller types in a room, or stops (Matrix typing)", "Set")
            .path_param("slug", slug())
            .path_param("room", room())
            .not_found("M_NOT_FOUND: no such board, or no room of that name the caller may see (a private room it is not in)"),
        Route::get("/_boardroom/api/v1/boards/{slug}/presence", chat::board_presence)
            .summary("Who is online on the board, and who types in which room", "Presence")
            .path_param("slug", slug())
            .not_found("M_NOT_FOUND: no such board (within a client's scope)"),
        Route::get("/_boardroom/api/v1/boards/{slug}/events", events::follow)
            .summary(
                "The board's live stream (Server-Sent Events): messages, comments, tasks, membership, typing, presence and the caller's notifications; resumes after Last-Event-ID",
                "A text/event-stream that lasts until the caller disconnects, leaves the board, falls behind, or Boardroom stops",
            )
            .path_param("slug", slug())
            .header("Last-Event-ID", json!({ "type": "string", "pattern": "^[0-9]+$" }))
            .not_found("M_NOT_FOUND: no such board (within a client's scope)"),
        Route::put("/_boardroom/api/v1/presence", chat::set_presence)
            .summary(
                "Set a client's virtual user's Matrix presence (client tokens only; holds 30 s unless set again)",
                "Set",
            ),
    ]
}

/// Why a change to a board's tasks can be refused with 409.
const TASKS_ROOM_CONFLICT: &str = "M_UNKNOWN: the task is deleted, the change changes nothing (DELETE of a deleted task), or the board's tasks room was upgraded and waits for an admin to give Boardroom power there";

/// Shared by the handlers.
#[derive(Clone, Debug)]
pub struct ApiState {
    /// Processing context: config, store, homeserver client.
    pub ctx: Arc<Context>,
    /// Callers already identified.
    pub auth: Arc<auth::AuthCache>,
}

impl ApiState {
    /// The homeserver client for request paths: a few quick retries, then the caller gets
    /// 502 rather than a request that hangs while the homeserver is away.
    pub fn hs(&self) -> crate::matrix::HomeserverClient {
        self.ctx.client.clone().with_retry(crate::matrix::RetryPolicy::SHORT)
    }

    /// The context for operations run on a request path: its homeserver client gives up
    /// after a few quick retries ([`Context::for_requests`]).
    pub fn request_ctx(&self) -> Context {
        self.ctx.for_requests()
    }
}

/// What caused an API request that changes something: the transaction id its messages
/// go out with and the cause its operation derives ids from. With an `Idempotency-Key`
/// header, both come from the caller, the request's target and the key, so a retry does
/// what the first attempt did, once; without one, they are new.
#[derive(Debug, Clone)]
pub(crate) struct Cause {
    /// The Matrix transaction id.
    pub(crate) txn_id: ruma::OwnedTransactionId,
    /// The cause, as the operations take it.
    pub(crate) event_id: ruma::OwnedEventId,
}

impl Cause {
    /// The cause of a request by `actor` to `what` (its target, such as `launch.7`).
    pub(crate) fn of(headers: &http::HeaderMap, actor: &Actor, what: &str) -> Result<Self, Error> {
        // Synapse keeps an appservice's transaction ids per appservice, not per user: the
        // sender is part of the id, so two virtual users' requests with one key differ.
        let who = match &actor.client {
            Some(c) => format!("{}.{}", c.name, actor.user_id),
            None => actor.user_id.to_string(),
        };
        let txn_id: ruma::OwnedTransactionId = headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .filter(|k| !k.is_empty() && k.len() <= 128)
            .map(|k| format!("api.{who}.{what}.{k}").into())
            .unwrap_or_else(ruma::TransactionId::new);
        let digest = sha2::Sha256::digest(txn_id.as_str().as_bytes());
        let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
        let event_id = ruma::OwnedEventId::try_from(format!("$api.{hex}"))
            .map_err(|e| Error::Internal(format!("cause: {e}")))?;
        Ok(Self { txn_id, event_id })
    }

    /// The operations' request for `actor`.
    pub(crate) fn request<'a>(&'a self, actor: &'a Actor) -> OpRequest<'a> {
        OpRequest { actor, cause: &self.event_id, seq: 0, room: None, thread: None }
    }
}

/// The API routes.
pub fn router(ctx: Arc<Context>) -> Router {
    router_with(ctx, Arc::new(auth::AuthCache::default()))
}

/// The API routes with a given cache of identified callers (benchmarks seed it).
pub fn router_with(ctx: Arc<Context>, cache: Arc<auth::AuthCache>) -> Router {
    let state = ApiState { ctx, auth: cache };
    // One method router a path, each method bound to its own handler; another method is
    // M_UNRECOGNIZED in Matrix JSON.
    let mut paths: Vec<(&str, MethodRouter<ApiState>)> = Vec::new();
    for route in routes() {
        match paths.iter_mut().find(|(path, _)| *path == route.path) {
            Some((_, methods)) => *methods = std::mem::take(methods).merge(route.handler),
            None => paths.push((route.path, route.handler)),
        }
    }
    let not_allowed = || async { Error::MethodNotAllowed };
    paths
        .into_iter()
        .fold(Router::new(), |router, (path, methods)| {
            router.route(path, methods.fallback(not_allowed))
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// The query string, parsed into `T`; a bad one is `M_INVALID_PARAM` in Matrix JSON, not
/// the framework's plain text.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::try_from_uri(&parts.uri)
            .map(|Query(q)| ApiQuery(q))
            .map_err(|e| Error::InvalidParam(e.body_text()))
    }
}

/// The request body, at most [`MAX_BODY_BYTES`]; past that `M_TOO_LARGE` in Matrix JSON.
/// It is read here and parsed as a `T` when the handler asks ([`ApiBody::parse`]), after
/// its own checks; the OpenAPI document shows `T`'s schema.
pub struct ApiBody<T> {
    bytes: Bytes,
    parses_as: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for ApiBody<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiBody").field("bytes", &self.bytes.len()).finish()
    }
}

impl<T: DeserializeOwned> ApiBody<T> {
    /// The body as a `T`: see [`json_body`].
    pub fn parse(&self) -> Result<T, Error> {
        json_body(&self.bytes)
    }
}

impl<T, S: Send + Sync> FromRequest<S> for ApiBody<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let body = |bytes| ApiBody { bytes, parses_as: PhantomData };
        Bytes::from_request(req, state).await.map(body).map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Error::TooLarge
            } else {
                Error::BadJson(e.body_text())
            }
        })
    }
}

/// Parses a JSON body: `M_NOT_JSON` when it is not JSON, `M_BAD_JSON` when the shape is
/// wrong, `M_TOO_LARGE` past [`MAX_BODY_BYTES`].
pub fn json_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, Error> {
    if body.len() > MAX_BODY_BYTES {
        return Err(Error::TooLarge);
    }
    serde_json::from_slice(body).map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            Error::NotJson(e.to_string())
        } else {
            Error::BadJson(e.to_string())
        }
    })
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use http::Request;
    use serde_json::Value;
    use tower::ServiceExt;

    use super::*;
    use crate::{Config, app::App};

    /// An API whose homeserver is unreachable (port 9 on loopback refuses), with one
    /// client token and its virtual user already claimed and registered.
    fn app(dir: &std::path::Path) -> (App, Router) {
        let config = Config::offline(
            &dir.join("db"),
            r#"
            [[api.clients]]
            name = "tracker"
            token = "client"
            boards = ["launch"]
            "#,
        )
        .expect("config");
        let app = App::new(config.validate().expect("valid")).expect("app");
        let reader: ruma::OwnedUserId = "@boardroom_reader:localhost".try_into().expect("user");
        app.ctx.store.claim_virtual_user(&reader, "tracker", 10).expect("claim");
        app.ctx.store.set_virtual_user_registered(&reader, "tracker").expect("registered");
        let router = router_with(app.ctx.clone(), Arc::new(auth::AuthCache::default()));
        (app, router)
    }

    async fn call(router: &Router, req: Request<Body>) -> (u16, Value) {
        let resp = router.clone().oneshot(req).await.expect("infallible");
        let status = resp.status().as_u16();
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX).await.expect("body");
        let json = serde_json::from_slice(&body)
            .unwrap_or_else(|_| panic!("not JSON ({status}): {}", String::from_utf8_lossy(&body)));
        (status, json)
    }

    fn as_client(method: &str, path: &str, body: Body) -> Request<Body> {
        Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", "Bearer client")
            .header("x-boardroom-user", "reader")
            .body(body)
            .expect("request")
    }

    #[tokio::test]
    async fn bad_query_and_huge_bodies_get_matrix_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_app, router) = app(dir.path());
        let (status, body) = call(
            &router,
            as_client("GET", "/_boardroom/api/v1/notifications?limit=abc", Body::empty()),
        )
        .await;
        assert_eq!((status, body["errcode"].as_str()), (400, Some("M_INVALID_PARAM")), "{body}");
        assert!(body["error"].as_str().is_some_and(|e| e.contains("limit")), "{body}");

        let huge = vec![b'a'; 3 * 1024 * 1024];
        let (status, body) = call(
            &router,
            as_client(
                "POST",
                "/_boardroom/api/v1/boards/launch/tasks/1/comments",
                Body::from(huge),
            ),
        )
        .await;
        assert_eq!((status, body["errcode"].as_str()), (413, Some("M_TOO_LARGE")), "{body}");

        // Within the body limit, but too long a comment for one Matrix event.
        let text = "é".repeat(crate::boards::messages::MAX_TEXT_BYTES / 2 + 1);
        let (status, body) = call(
            &router,
            as_client(
                "POST",
                "/_boardroom/api/v1/boards/launch/tasks/1/comments",
                Body::from(serde_json::json!({ "body": text }).to_string()),
            ),
        )
        .await;
        assert_eq!((status, body["errcode"].as_str()), (400, Some("M_INVALID_PARAM")), "{body}");
        assert!(body["error"].as_str().is_some_and(|e| e.contains("at most 16000")), "{body}");
    }

    #[tokio::test]
    async fn a_refusal_says_why() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_app, router) = app(dir.path());
        let (status, body) = call(
            &router,
            as_client("GET", "/_boardroom/api/v1/boards/elsewhere/members?q=a", Body::empty()),
        )
        .await;
        assert_eq!((status, body["errcode"].as_str()), (403, Some("M_FORBIDDEN")), "{body}");
        assert_eq!(body["error"], "The API client tracker may not act on the board elsewhere.");
    }

    #[tokio::test]
    async fn an_unreachable_homeserver_is_a_502_not_a_hang() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_app, router) = app(dir.path());
        let req = Request::get("/_boardroom/api/v1/notifications/unread_count")
            .header("authorization", "Bearer some-matrix-token")
            .body(Body::empty())
            .expect("request");
        // Bounded: a hang (retrying forever) fails the test instead of stalling the suite.
        let (status, body) =
            tokio::time::timeout(std::time::Duration::from_secs(60), call(&router, req))
                .await
                .expect("the request ends");
        assert_eq!((status, body["errcode"].as_str()), (502, Some("M_UNKNOWN")), "{body}");
    }
}
