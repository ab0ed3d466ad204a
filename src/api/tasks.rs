//! A board's tasks over HTTP: list with filters, create, read, change, delete, and a
//! task's comments. Each handler parses, calls the same operation as the chat commands
//! (`tasks::…`), and renders JSON; the feed entries and root edits an operation asks for
//! go to the durable outbox before the answer.

use axum::{
    Json,
    extract::{Path, State},
    http::HeaderMap,
};
use ruma::{OwnedEventId, OwnedUserId};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use super::{
    ApiBody, ApiQuery, ApiState, Cause,
    auth::Caller,
    route::{Created, Documented, serialized},
};
use crate::{
    domain::{
        op::{BoardRef, Request},
        task::{Change, Comment, TaskRecord},
    },
    error::Error,
    tasks::{
        change::{self, TaskRef, TaskUpdate},
        create::{self, NewTask},
        list::{self, TaskFilter},
    },
};

/// A task, as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Task {
    /// Its number on the board (`<slug>#<number>`).
    pub number: u64,
    /// Its title.
    pub title: String,
    /// Its column.
    pub status: String,
    /// Who it is assigned to.
    #[schema(value_type = Vec<String>)]
    pub assignees: Vec<OwnedUserId>,
    /// Its labels.
    pub labels: Vec<String>,
    /// Its due date, `YYYY-MM-DD`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub due: Option<String>,
    /// Its thread's root in the board's tasks room.
    #[schema(value_type = String)]
    pub root_event_id: OwnedEventId,
    /// Who created it.
    #[schema(value_type = String)]
    pub created_by: OwnedUserId,
    /// When, in ms since the epoch.
    pub created_at: u64,
    /// Deleted (only an answer to `DELETE` shows a deleted task).
    pub deleted: bool,
    /// How many comments its thread has.
    pub comment_count: u64,
}

impl Task {
    pub(crate) fn of(t: &TaskRecord, comment_count: u64) -> Self {
        let f = &t.fields;
        Task {
            number: f.number,
            title: f.title.clone(),
            status: f.status.clone(),
            assignees: f.assignees.clone(),
            labels: f.labels.clone(),
            due: f.due.clone(),
            root_event_id: f.root_event_id.clone(),
            created_by: f.created_by.clone(),
            created_at: f.created_at,
            deleted: f.deleted,
            comment_count,
        }
    }

    fn example(number: u64, status: &str, due: Option<&str>) -> Self {
        Task {
            number,
            title: "Write the release notes".into(),
            status: status.into(),
            assignees: vec![ruma::owned_user_id!("@bob:example.org")],
            labels: vec!["docs".into()],
            due: due.map(str::to_owned),
            root_event_id: ruma::owned_event_id!("$Rqnc-F-dvnEYJTyHq_iKxU2bZ1CI92-kuZq3a5lr5Zg"),
            created_by: ruma::owned_user_id!("@alice:example.org"),
            created_at: 1_767_225_600_000,
            deleted: false,
            comment_count: 2,
        }
    }
}

impl Documented for Task {
    fn examples() -> Vec<Value> {
        serialized(&[Task::example(7, "doing", Some("2026-12-24")), Task::example(8, "todo", None)])
    }
}

/// `?status=&assignee=&label=&due_before=&from=&limit=`
#[derive(Debug, Deserialize, IntoParams)]
pub(crate) struct TaskQuery {
    /// Only tasks in this column.
    #[param(nullable = false)]
    pub status: Option<String>,
    /// Only tasks assigned to this user.
    #[param(nullable = false)]
    pub assignee: Option<String>,
    /// Only tasks with this label.
    #[param(nullable = false)]
    pub label: Option<String>,
    /// Only tasks due before this day (`YYYY-MM-DD`).
    #[param(nullable = false)]
    pub due_before: Option<String>,
    /// The `next_batch` of the previous page.
    #[param(nullable = false)]
    pub from: Option<String>,
    /// At most this many (1 to 100, default 20).
    #[param(minimum = 1, maximum = 100, default = 20, nullable = false)]
    pub limit: Option<usize>,
}

/// A page of tasks, by number.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TasksPage {
    /// The tasks.
    pub tasks: Vec<Task>,
    /// Pass as `from` for the next page; absent on the last. A page may hold fewer than
    /// `limit` tasks (even none) and still have a next one, when the filters skipped many.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub next_batch: Option<String>,
}

impl Documented for TasksPage {
    fn examples() -> Vec<Value> {
        serialized(&[
            TasksPage {
                tasks: vec![Task::example(7, "doing", Some("2026-12-24"))],
                next_batch: Some("7".into()),
            },
            TasksPage { tasks: Vec::new(), next_batch: None },
        ])
    }
}

fn parse_u64(value: &str, what: &str) -> Result<u64, Error> {
    value.parse().map_err(|_| Error::InvalidParam(format!("`{value}` is not {what}")))
}

fn number(n: &str) -> Result<u64, Error> {
    parse_u64(n, "a task number")
}

fn user(u: &str) -> Result<OwnedUserId, Error> {
    OwnedUserId::try_from(u).map_err(|_| {
        Error::InvalidParam(format!("`{u}` is not a user id such as @alice:example.org"))
    })
}

/// `GET /boards/{slug}/tasks`
pub(crate) async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    Path(slug): Path<String>,
    ApiQuery(q): ApiQuery<TaskQuery>,
) -> Result<Json<TasksPage>, Error> {
    let after = q.from.as_deref().map(|f| parse_u64(f, "a next_batch token")).transpose()?;
    let filter = TaskFilter {
        status: q.status,
        assignee: q.assignee.as_deref().map(user).transpose()?,
        label: q.label,
        due_before: q.due_before,
    };
    let actor = caller.actor();
    let req = Request::read(&actor);
    let page = list::query(
        &state.ctx,
        &req,
        BoardRef::Slug(&slug),
        &filter,
        after.unwrap_or(0),
        q.limit.unwrap_or(20),
    )?;
    Ok(Json(TasksPage {
        tasks: page.tasks.iter().map(|(t, c)| Task::of(t, *c)).collect(),
        next_batch: page.next.map(|n| n.to_string()),
    }))
}

/// A task to create (the request body).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewTaskBody {
    /// Its title: not blank, at most 256 characters.
    #[schema(min_length = 1)]
    pub title: String,
    /// Its column; the board's first when absent.
    #[serde(default)]
    #[schema(nullable = false)]
    pub status: Option<String>,
    /// Who it is assigned to: board members, notified.
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub assignees: Vec<OwnedUserId>,
    /// Its labels: 1 to 32 characters each, no spaces or commas.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Its due date, `YYYY-MM-DD`.
    #[serde(default)]
    #[schema(nullable = false)]
    pub due: Option<String>,
}

impl Documented for NewTaskBody {
    fn examples() -> Vec<Value> {
        vec![
            json!({ "title": "Write the release notes" }),
            json!({ "title": "Fix the login page", "status": "doing",
                    "assignees": ["@bob:example.org"], "labels": ["bug"], "due": "2026-12-24" }),
        ]
    }
}

/// `POST /boards/{slug}/tasks`
pub(crate) async fn create(
    State(state): State<ApiState>,
    caller: Caller,
    Path(slug): Path<String>,
    headers: HeaderMap,
    body: ApiBody<NewTaskBody>,
) -> Result<Created<Task>, Error> {
    let b = body.parse()?;
    let input = NewTask {
        title: b.title,
        status: b.status,
        assignees: b.assignees,
        labels: b.labels,
        due: b.due,
    };
    let actor = caller.actor();
    let cause = Cause::of(&headers, &actor, &format!("{slug}.new"))?;
    let req = cause.request(&actor);
    let ctx = state.request_ctx();
    let done = create::create(&ctx, &req, BoardRef::Slug(&slug), &input).await?;
    ctx.send_later(&done.actions)?;
    let task = TaskRecord { board: slug, fields: done.value.fields, last_command: None };
    Ok(Created(Task::of(&task, 0)))
}

/// `GET /boards/{slug}/tasks/{number}`
pub(crate) async fn get(
    State(state): State<ApiState>,
    caller: Caller,
    Path((slug, n)): Path<(String, String)>,
) -> Result<Json<Task>, Error> {
    let n = number(&n)?;
    let actor = caller.actor();
    let (task, comments) = list::get(&state.ctx, &Request::read(&actor), BoardRef::Slug(&slug), n)?;
    Ok(Json(Task::of(&task, comments)))
}

/// `None` when the field is absent, `Some(None)` when it is `null`.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// What to change (the request body): any of the fields; `assignees` and `labels` are the
/// full new sets; `due: null` clears the due date.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TaskPatch {
    /// The new title.
    #[serde(default)]
    #[schema(nullable = false)]
    pub title: Option<String>,
    /// The new column.
    #[serde(default)]
    #[schema(nullable = false)]
    pub status: Option<String>,
    /// Every assignee.
    #[serde(default)]
    #[schema(value_type = Option<Vec<String>>, nullable = false)]
    pub assignees: Option<Vec<OwnedUserId>>,
    /// Every label.
    #[serde(default)]
    #[schema(nullable = false)]
    pub labels: Option<Vec<String>>,
    /// The new due date; `null` clears it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub due: Option<Option<String>>,
}

impl Documented for TaskPatch {
    fn examples() -> Vec<Value> {
        vec![
            json!({ "status": "review" }),
            json!({ "title": "Fix the login page", "assignees": ["@bob:example.org"],
                    "labels": ["bug", "urgent"], "due": null }),
        ]
    }
}

/// `PATCH /boards/{slug}/tasks/{number}`
pub(crate) async fn patch(
    State(state): State<ApiState>,
    caller: Caller,
    Path((slug, n)): Path<(String, String)>,
    headers: HeaderMap,
    body: ApiBody<TaskPatch>,
) -> Result<Json<Task>, Error> {
    let n = number(&n)?;
    let p = body.parse()?;
    let update = TaskUpdate {
        title: p.title,
        status: p.status,
        assignees: p.assignees,
        labels: p.labels,
        due: p.due,
    };
    let actor = caller.actor();
    let cause = Cause::of(&headers, &actor, &format!("{slug}.{n}.patch"))?;
    let req = cause.request(&actor);
    let ctx = state.request_ctx();
    let which = TaskRef::Number { at: BoardRef::Slug(&slug), number: n };
    let done = change::update(&ctx, &req, which, &update).await?;
    ctx.send_later(&done.actions)?;
    let comments = ctx.store.comment_count(&slug, n)?;
    let task = TaskRecord { board: slug, fields: done.value.fields, last_command: None };
    Ok(Json(Task::of(&task, comments)))
}

/// `DELETE /boards/{slug}/tasks/{number}`
pub(crate) async fn delete(
    State(state): State<ApiState>,
    caller: Caller,
    Path((slug, n)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<Task>, Error> {
    let n = number(&n)?;
    let actor = caller.actor();
    let cause = Cause::of(&headers, &actor, &format!("{slug}.{n}.delete"))?;
    let req = cause.request(&actor);
    let ctx = state.request_ctx();
    let which = TaskRef::Number { at: BoardRef::Slug(&slug), number: n };
    let done = change::change(&ctx, &req, which, &Change::Delete).await?;
    ctx.send_later(&done.actions)?;
    let comments = ctx.store.comment_count(&slug, n)?;
    let task = TaskRecord { board: slug, fields: done.value.fields, last_command: None };
    Ok(Json(Task::of(&task, comments)))
}

/// `?from=&limit=`
#[derive(Debug, Deserialize, IntoParams)]
pub(crate) struct CommentQuery {
    /// The `next_batch` of the previous page.
    #[param(nullable = false)]
    pub from: Option<String>,
    /// At most this many (1 to 100, default 20).
    #[param(minimum = 1, maximum = 100, default = 20, nullable = false)]
    pub limit: Option<usize>,
}

/// A comment, as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CommentJson {
    /// Its event id.
    #[schema(value_type = String)]
    pub event_id: OwnedEventId,
    /// Who wrote it.
    #[schema(value_type = String)]
    pub author: OwnedUserId,
    /// Its text (its latest edit).
    pub body: String,
    /// When, in ms since the epoch (the homeserver's time).
    pub ts: u64,
}

impl From<Comment> for CommentJson {
    fn from(c: Comment) -> Self {
        Self { event_id: c.event_id, author: c.author, body: c.body, ts: c.ts }
    }
}

/// A page of a task's comments, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CommentsPage {
    /// The comments.
    pub comments: Vec<CommentJson>,
    /// Pass as `from` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub next_batch: Option<String>,
}

impl Documented for CommentsPage {
    fn examples() -> Vec<Value> {
        serialized(&[CommentsPage {
            comments: vec![CommentJson {
                event_id: ruma::owned_event_id!("$Rqnc-F-dvnEYJTyHq_iKxU2bZ1CI92-kuZq3a5lr5Zg"),
                author: ruma::owned_user_id!("@bob:example.org"),
                body: "Shipped in 1.4, thanks @alice".into(),
                ts: 1_767_225_600_000,
            }],
            next_batch: Some("1".into()),
        }])
    }
}

/// `GET /boards/{slug}/tasks/{number}/comments`
pub(crate) async fn comments(
    State(state): State<ApiState>,
    caller: Caller,
    Path((slug, n)): Path<(String, String)>,
    ApiQuery(q): ApiQuery<CommentQuery>,
) -> Result<Json<CommentsPage>, Error> {
    let n = number(&n)?;
    let skip = q.from.as_deref().map(|f| parse_u64(f, "a next_batch token")).transpose()?;
    let skip = usize::try_from(skip.unwrap_or(0))
        .map_err(|_| Error::InvalidParam("from is out of range".into()))?;
    let limit = q.limit.unwrap_or(20);
    let actor = caller.actor();
    let (page, next) =
        list::comments(&state.ctx, &Request::read(&actor), BoardRef::Slug(&slug), n, skip, limit)?;
    Ok(Json(CommentsPage {
        comments: page.into_iter().map(CommentJson::from).collect(),
        next_batch: next.map(|s| s.to_string()),
    }))
}
