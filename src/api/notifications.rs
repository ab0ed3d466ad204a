//! The caller's own inbox: list (newest first, cursor pagination), unread count, mark one
//! read, mark all read.

use axum::{
    Json,
    extract::{Path, State},
};
use ruma::{OwnedEventId, owned_event_id, owned_room_id, owned_user_id};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::{
    ApiQuery, ApiState,
    auth::Caller,
    route::{Documented, serialized},
};
use crate::{
    domain::inbox::{Kind, Notification},
    error::Error,
    notifications::inbox,
};

/// `?from=&limit=`
#[derive(Debug, Deserialize, IntoParams)]
pub(crate) struct Page {
    /// The `next_batch` of the previous page.
    #[param(nullable = false)]
    pub from: Option<String>,
    /// At most this many (1 to 100, default 20).
    #[param(minimum = 1, maximum = 100, default = 20, nullable = false)]
    pub limit: Option<usize>,
}

/// A page of the inbox.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct NotificationsPage {
    /// Newest first.
    pub notifications: Vec<Notification>,
    /// Pass as `from` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub next_batch: Option<String>,
}

/// `GET /notifications`
pub(crate) async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    ApiQuery(page): ApiQuery<Page>,
) -> Result<Json<NotificationsPage>, Error> {
    let before = page
        .from
        .map(|f| {
            f.parse::<u64>()
                .map_err(|_| Error::InvalidParam(format!("`{f}` is not a next_batch token")))
        })
        .transpose()?;
    let (notifications, next) =
        inbox::page(&state.ctx, &caller.actor(), before, page.limit.unwrap_or(20))?;
    Ok(Json(NotificationsPage { notifications, next_batch: next.map(|id| id.to_string()) }))
}

impl Documented for NotificationsPage {
    fn examples() -> Vec<Value> {
        let entry = |id: u64, kind: Kind, thread_root: Option<OwnedEventId>| Notification {
            id,
            user_id: owned_user_id!("@alice:example.org"),
            kind,
            board: "launch".into(),
            room_id: owned_room_id!("!tasks:example.org"),
            thread_root,
            event_id: owned_event_id!("$comment:example.org"),
            sender: owned_user_id!("@bob:example.org"),
            excerpt: "@alice can you look at the release notes?".into(),
            ts: 1_767_225_600_000,
            read: false,
            seq: id,
        };
        serialized(&[
            NotificationsPage {
                notifications: vec![
                    entry(42, Kind::Mention, None),
                    entry(41, Kind::Comment, Some(owned_event_id!("$task:example.org"))),
                    entry(40, Kind::Assignment, Some(owned_event_id!("$task:example.org"))),
                ],
                next_batch: Some("40".into()),
            },
            NotificationsPage { notifications: Vec::new(), next_batch: None },
        ])
    }
}

/// The unread count.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Unread {
    /// Unread entries.
    pub unread: u64,
}

/// `GET /notifications/unread_count`
pub(crate) async fn unread_count(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Json<Unread>, Error> {
    Ok(Json(Unread { unread: inbox::unread(&state.ctx, &caller.actor())? }))
}

impl Documented for Unread {
    fn examples() -> Vec<Value> {
        serialized(&[Unread { unread: 3 }])
    }
}

/// How many were marked.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Marked {
    /// Entries marked read by this request.
    pub marked: u64,
}

impl Documented for Marked {
    fn examples() -> Vec<Value> {
        serialized(&[Marked { marked: 1 }])
    }
}

/// `POST /notifications/{id}/read`
pub(crate) async fn read_one(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Marked>, Error> {
    let id: u64 =
        id.parse().map_err(|_| Error::InvalidParam(format!("`{id}` is not a notification id")))?;
    let changed = inbox::mark_read(&state.ctx, &caller.actor(), id)?;
    Ok(Json(Marked { marked: u64::from(changed) }))
}

/// `POST /notifications/read_all`
pub(crate) async fn read_all(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Json<Marked>, Error> {
    Ok(Json(Marked { marked: inbox::mark_all_read(&state.ctx, &caller.actor())? }))
}
