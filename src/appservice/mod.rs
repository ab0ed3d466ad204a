//! What the homeserver sends us: the appservice API. Every request carries the `hs_token`
//! (`auth`); bodies parse into ruma's request types (`extract`); one file per endpoint.

pub(crate) mod auth;
pub mod catch_up;
pub(crate) mod extract;
pub(crate) mod ping;
pub(crate) mod push_events;
pub(crate) mod query_room_alias;
pub(crate) mod query_user_id;

use std::sync::Arc;

use axum::{Router, middleware, routing::MethodRouter};
use ruma::api::{Metadata, path_builder::PathBuilder};

use crate::{context::Context, error::Error};

/// Bodies larger than this are refused with `M_TOO_LARGE`: room for 100 events of 64 KiB
/// (the largest event Matrix allows) plus ephemeral data and JSON overhead.
pub const MAX_BODY_BYTES: usize = 100 * 65_536 + 1024 * 1024;

/// Shared by the handlers.
#[derive(Clone, Debug)]
pub struct AppState {
    /// Processing context: config, store, queues.
    pub ctx: Arc<Context>,
    /// Watches transaction ids for a homeserver restart.
    pub restarts: Arc<catch_up::Restarts>,
}

/// The appservice routes, token-checked, with Matrix-style 404 and 405 answers.
pub fn router(state: AppState) -> Router {
    let mut r = Router::new();
    r = route::<ruma::api::appservice::event::push_events::v1::Request>(
        r,
        axum::routing::put(push_events::handle),
    );
    r = route::<ruma::api::appservice::query::query_user_id::v1::Request>(
        r,
        axum::routing::get(query_user_id::handle),
    );
    r = route::<ruma::api::appservice::query::query_room_alias::v1::Request>(
        r,
        axum::routing::get(query_room_alias::handle),
    );
    r = route::<ruma::api::appservice::ping::send_ping::v1::Request>(
        r,
        axum::routing::post(ping::handle),
    );
    r.route_layer(middleware::from_fn_with_state(state.clone(), auth::require_hs_token))
        .with_state(state)
}

fn route<R: Metadata>(
    router: Router<AppState>,
    method: MethodRouter<AppState>,
) -> Router<AppState> {
    let method = method.fallback(|| async { Error::MethodNotAllowed });
    R::PATH_BUILDER.all_paths().fold(router, |r, path| r.route(path, method.clone()))
}
