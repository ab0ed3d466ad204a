//! The HTTP API for bots and task apps, under `/_boardroom/api/v1`, described by the
//! OpenAPI document it serves ([`openapi`]).
//!
//! Two kinds of caller ([`auth`]): a Matrix user with their access token (checked with the
//! homeserver's `whoami`, cached for [`auth::WHOAMI_TTL`]), acting as themselves; or a bot
//! or task app with a client token from the config, acting as the virtual user named in
//! `X-Boardroom-User`. A caller sees only boards it belongs to.

pub mod auth;
pub mod comments;
pub mod members;
pub mod notifications;
pub mod openapi;

use std::sync::Arc;

use axum::{
    Router,
    body::Bytes,
    routing::{get, post},
};
use serde::de::DeserializeOwned;

use crate::{error::Error, process::Context};

/// The API's path prefix.
pub const PREFIX: &str = "/_boardroom/api/v1";

/// Largest request body the API reads.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Every route: method and path (axum syntax), for the router and the OpenAPI test.
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/_boardroom/api/v1/openapi.json"),
    ("get", "/_boardroom/api/v1/notifications"),
    ("get", "/_boardroom/api/v1/notifications/unread_count"),
    ("post", "/_boardroom/api/v1/notifications/read_all"),
    ("post", "/_boardroom/api/v1/notifications/{id}/read"),
    ("get", "/_boardroom/api/v1/boards/{slug}/members"),
    ("post", "/_boardroom/api/v1/boards/{slug}/tasks/{number}/comments"),
];

/// Shared by the handlers.
#[derive(Clone, Debug)]
pub struct ApiState {
    /// Processing context: config, store, homeserver client.
    pub ctx: Arc<Context>,
    /// Callers already identified.
    pub auth: Arc<auth::AuthCache>,
}

/// The API routes.
pub fn router(ctx: Arc<Context>) -> Router {
    router_with(ctx, Arc::new(auth::AuthCache::default()))
}

/// The API routes with a given cache of identified callers (benchmarks seed it).
pub fn router_with(ctx: Arc<Context>, cache: Arc<auth::AuthCache>) -> Router {
    let state = ApiState { ctx, auth: cache };
    let not_allowed = || async { Error::MethodNotAllowed };
    Router::new()
        .route(ROUTES[0].1, get(openapi::handle).fallback(not_allowed))
        .route(ROUTES[1].1, get(notifications::list).fallback(not_allowed))
        .route(ROUTES[2].1, get(notifications::unread_count).fallback(not_allowed))
        .route(ROUTES[3].1, post(notifications::read_all).fallback(not_allowed))
        .route(ROUTES[4].1, post(notifications::read_one).fallback(not_allowed))
        .route(ROUTES[5].1, get(members::autocomplete).fallback(not_allowed))
        .route(ROUTES[6].1, post(comments::add).fallback(not_allowed))
        .with_state(state)
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
