//! The caller's own inbox: list (newest first, cursor pagination), unread count, mark one
//! read, mark all read.

use axum::{
    Json,
    extract::{Path, State},
};
use serde::{Deserialize, Serialize};

use super::{ApiQuery, ApiState, auth::Caller};
use crate::{domain::inbox::Notification, error::Error};

/// `?from=&limit=`
#[derive(Debug, Deserialize)]
pub struct Page {
    /// The `next_batch` of the previous page.
    pub from: Option<String>,
    /// At most this many (1 to 100, default 20).
    pub limit: Option<usize>,
}

/// A page of the inbox.
#[derive(Debug, Serialize)]
pub struct NotificationsPage {
    /// Newest first.
    pub notifications: Vec<Notification>,
    /// Pass as `from` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_batch: Option<String>,
}

/// `GET /notifications`
pub async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    ApiQuery(page): ApiQuery<Page>,
) -> Result<Json<NotificationsPage>, Error> {
    let limit = page.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(Error::InvalidParam("limit is 1 to 100".into()));
    }
    let before = page
        .from
        .map(|f| {
            f.parse::<u64>()
                .map_err(|_| Error::InvalidParam(format!("`{f}` is not a next_batch token")))
        })
        .transpose()?;
    let mut notifications = state.ctx.store.notifications(&caller.user_id, before, limit + 1)?;
    let next_batch = (notifications.len() > limit).then(|| {
        notifications.truncate(limit);
        notifications.last().map(|n| n.id.to_string()).unwrap_or_default()
    });
    Ok(Json(NotificationsPage { notifications, next_batch }))
}

/// The unread count.
#[derive(Debug, Serialize)]
pub struct Unread {
    /// Unread entries.
    pub unread: u64,
}

/// `GET /notifications/unread_count`
pub async fn unread_count(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Json<Unread>, Error> {
    Ok(Json(Unread { unread: state.ctx.store.unread_count(&caller.user_id)? }))
}

/// How many were marked.
#[derive(Debug, Serialize)]
pub struct Marked {
    /// Entries marked read by this request.
    pub marked: u64,
}

/// `POST /notifications/{id}/read`
pub async fn read_one(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Marked>, Error> {
    let id: u64 =
        id.parse().map_err(|_| Error::InvalidParam(format!("`{id}` is not a notification id")))?;
    match state.ctx.store.mark_read(&caller.user_id, id)? {
        Some(changed) => Ok(Json(Marked { marked: u64::from(changed) })),
        None => Err(Error::NotFound(format!("no notification {id} in your inbox"))),
    }
}

/// `POST /notifications/read_all`
pub async fn read_all(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Json<Marked>, Error> {
    Ok(Json(Marked { marked: state.ctx.store.mark_all_read(&caller.user_id)? }))
}
