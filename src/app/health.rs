//! `GET /_boardroom/health` and `GET /_boardroom/ready`, for a supervisor or a load
//! balancer: unauthenticated, cheap, and saying nothing else (`/metrics` says why).

use std::sync::Arc;

use axum::{Json, Router, routing::get};
use http::StatusCode;
use serde_json::json;

use crate::context::Context;

/// The two routes, on every listener but the metrics one.
pub(super) fn router(ctx: Arc<Context>) -> Router {
    Router::new()
        .route("/_boardroom/health", get(|| async { Json(json!({ "status": "ok" })) }))
        .route(
            "/_boardroom/ready",
            get(move || {
                let ctx = ctx.clone();
                async move {
                    match why_not_ready(&ctx) {
                        None => (StatusCode::OK, Json(json!({ "ready": true }))),
                        Some(why) => {
                            tracing::debug!(why, "not ready");
                            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "ready": false })))
                        }
                    }
                }
            }),
        )
}

/// Why Boardroom is not ready, or `None`: the database takes writes, the homeserver
/// answered within `[health] max_homeserver_silence_secs`, and no event has waited to be
/// processed longer than `max_queue_age_secs`.
fn why_not_ready(ctx: &Context) -> Option<&'static str> {
    let health = &ctx.settings.raw.health;
    if !ctx.store.is_writable() {
        return Some("the database does not take writes");
    }
    let answered = ctx.metrics.homeserver_last_answer.get();
    let now = crate::domain::now_ms() / 1000;
    if answered == 0 || now.saturating_sub(answered) > health.max_homeserver_silence_secs {
        return Some("the homeserver has not answered recently");
    }
    match ctx.store.oldest_pending_age_ms() {
        Ok(Some(age)) if age / 1000 > health.max_queue_age_secs => {
            Some("an event has waited too long to be processed")
        }
        Ok(_) => None,
        Err(_) => Some("the database cannot be read"),
    }
}
