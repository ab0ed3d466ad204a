//! Issue 16, "Scale": what members and API callers ask of a board, at 1,000 tasks (10,000
//! comments) and at 1,000,000 tasks (10,000,000 comments), to see that each stays within
//! twice its cost on the small board:
//! - `!task list` and `!task list review` (a column with one task in a thousand), and
//!   `!board info`, run as the chat command dispatcher runs them (the reply is rendered,
//!   not sent);
//! - `GET /boards/launch/tasks` through the API router: the first page, a page from the
//!   middle, by column from the middle, by assignee, by label, by a rare label;
//! - autocomplete in a space of 10,000 members (`GET /boards/launch/members?q=`);
//! - who watches a task (`Store::watchers`): task 1, which holds a tenth of all comments
//!   (1,000 or 1,000,000, by 50 authors), and a task of ordinary size (about 9 comments);
//! - the inbox of a user with one entry per task (1,000 or 1,000,000): the newest page, a
//!   page from the middle, the unread count.
//!
//! The board is written straight into the store (`Store::seed_task_index`: the index's
//! keys in large batches) on `/dev/shm`. The large database takes minutes to make, so it is
//! kept in `/dev/shm/boardroom-scale-v<fixture>-s<schema>-<tasks>` and used again by later
//! runs; remove those directories to start from nothing (`BOARDROOM_SCALE_FRESH=1` does it
//! too). Everything is in-process: no network, no homeserver.
//!
//! Run: `cargo bench --bench scale`. Figures go in docs/PERFORMANCE.md.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, OnceLock},
    time::Instant,
};

use axum::{Router, body::Body};
use boardroom::{
    Config,
    api::{self, auth::AuthCache},
    app::App,
    context::Context,
    domain::board::{BoardRecord, RoomKind, RoomRecord},
    domain::inbox::{Kind, Notification},
    domain::task::{Comment, TaskRecord},
    store::Store,
};
use divan::Bencher;
use http::Request;
use ruma::{OwnedRoomId, OwnedUserId, events::room::member::MembershipState};
use tower::ServiceExt;

fn main() {
    divan::main();
}

/// Bump when the data written changes: a kept database of another version is made again.
const FIXTURE_VERSION: u32 = 2;
/// Members of the board's space (the same at both sizes).
const MEMBERS: u64 = 10_000;
/// Authors of the comments on task 1.
const HOT_AUTHORS: u64 = 50;
/// Tasks written per batch (with their comments).
const TASKS_PER_BATCH: u64 = 10_000;
/// The board sizes compared.
const SIZES: [u64; 2] = [1_000, 1_000_000];

struct Fixture {
    tasks: u64,
    runtime: tokio::runtime::Runtime,
    router: Router,
    ctx: Arc<Context>,
}

fn fixture(tasks: u64) -> &'static Fixture {
    static SMALL: OnceLock<Fixture> = OnceLock::new();
    static LARGE: OnceLock<Fixture> = OnceLock::new();
    let cell = if tasks == SIZES[0] { &SMALL } else { &LARGE };
    cell.get_or_init(|| open_fixture(tasks))
}

fn user(s: &str) -> OwnedUserId {
    s.try_into().expect("user id")
}

fn space() -> OwnedRoomId {
    "!space:localhost".try_into().expect("room id")
}

fn tasks_room() -> OwnedRoomId {
    "!tasks:localhost".try_into().expect("room id")
}

/// The database of a board of `tasks` tasks: the kept one if it is complete, else made now.
fn database(tasks: u64) -> PathBuf {
    let base = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let dir = base.join(format!(
        "boardroom-scale-v{FIXTURE_VERSION}-s{}-{tasks}",
        boardroom::store::SCHEMA_VERSION
    ));
    let done = dir.join("complete");
    let fresh = std::env::var_os("BOARDROOM_SCALE_FRESH").is_some_and(|v| v == "1");
    if done.exists() && !fresh {
        return dir.join("db");
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir).expect("remove an incomplete database");
    }
    std::fs::create_dir_all(&dir).expect("database directory");
    let started = Instant::now();
    seed(&dir.join("db"), tasks);
    eprintln!(
        "scale: made the database of {tasks} tasks, {} comments in {:.1} s ({})",
        tasks * 10,
        started.elapsed().as_secs_f64(),
        dir.display()
    );
    std::fs::write(&done, b"").expect("mark complete");
    dir.join("db")
}

/// Task `n`: every fourth in `doing`, one in a thousand in `review` (labelled `rare`), the
/// rest in `todo` and `done`; one in twenty assigned to @user1, one in 25 labelled `bug`.
fn task(n: u64) -> TaskRecord {
    let root = format!("$root{n}_abcdefghijklmnopqrstuvwxyz0123456789");
    let mut t = TaskRecord::example("launch", n, root.try_into().expect("event id"));
    t.fields.status = match n % 4 {
        0 => "doing",
        1 | 2 => "todo",
        _ => "done",
    }
    .into();
    if n % 1000 == 500 {
        t.fields.status = "review".into();
        t.fields.labels.push("rare".into());
    }
    if n % 20 == 1 {
        t.fields.assignees.push(user("@user1:localhost"));
    }
    if n.is_multiple_of(25) {
        t.fields.labels.push("bug".into());
    }
    t.fields.created_by = user(&format!("@user{}:localhost", n % 100));
    t
}

fn comment(j: u64, author: u64) -> Comment {
    Comment {
        event_id: format!("$comment{j:010}_abcdefghijklmnopqrstuvwxyz012345")
            .try_into()
            .expect("event id"),
        author: user(&format!("@user{author}:localhost")),
        body: "a comment of about the usual length, with a few words in it".into(),
        ts: 1_700_000_000_000 + j,
    }
}

/// Writes the board: `tasks` tasks, ten comments per task (a tenth of them on task 1, by
/// [`HOT_AUTHORS`] authors; the rest spread evenly, by 20 authors), [`MEMBERS`] members,
/// and one inbox entry per task for `@boardroom_reader`, the API client's virtual user.
fn seed(db: &Path, tasks: u64) {
    let store = Store::open(db).expect("store");
    store
        .put_board(&BoardRecord {
            slug: "launch".into(),
            space_id: space(),
            name: "Launch".into(),
            created_by: user("@user0:localhost"),
            created_by_event: "$create".try_into().expect("event"),
            creators: vec![],
            power_users: Default::default(),
            users_default: 0,
            columns: vec!["todo".into(), "doing".into(), "review".into(), "done".into()],
        })
        .expect("board");
    let room = RoomRecord {
        board: "launch".into(),
        name: "tasks".into(),
        kind: RoomKind::Tasks,
        private: false,
        pending_move_from: None,
    };
    store.put_room(&tasks_room(), &room).expect("room");
    for i in 0..MEMBERS {
        store
            .set_membership(
                &space(),
                &user(&format!("@user{i}:localhost")),
                &MembershipState::Join,
                Some(&format!("User {i}")),
                Some("launch"),
            )
            .expect("member");
    }
    let reader = user("@boardroom_reader:localhost");
    store.claim_virtual_user(&reader, "bench", 10).expect("claim");
    store.set_virtual_user_registered(&reader, "bench").expect("registered");

    let comments = tasks * 10;
    let hot = comments / 10;
    let rest = comments - hot;
    let mut j = 0u64;
    // Task 1's comments, then batches of tasks with theirs.
    for chunk_start in (0..hot).step_by(100_000) {
        let batch: Vec<(u64, Comment)> = (chunk_start..(chunk_start + 100_000).min(hot))
            .map(|i| (1, comment(i, i % HOT_AUTHORS)))
            .collect();
        store.seed_task_index("launch", &[], &batch).expect("seed");
    }
    j += hot;
    let mut first = 1;
    while first <= tasks {
        let last = (first + TASKS_PER_BATCH - 1).min(tasks);
        let batch_tasks: Vec<TaskRecord> = (first..=last).map(task).collect();
        let mut batch_comments = Vec::new();
        for n in first.max(2)..=last {
            // Spread `rest` over tasks 2..=tasks: the first `rest % (tasks - 1)` get one more.
            let k = n - 2;
            let each = rest / (tasks - 1) + u64::from(k < rest % (tasks - 1));
            for _ in 0..each {
                batch_comments.push((n, comment(j, 100 + j % 20)));
                j += 1;
            }
        }
        store.seed_task_index("launch", &batch_tasks, &batch_comments).expect("seed");
        first = last + 1;
    }
    assert_eq!(j, comments);

    let entries = tasks;
    let mut id = 0;
    while id < entries {
        let chunk: Vec<Notification> = (id..(id + 1000).min(entries))
            .map(|i| Notification {
                id: 0,
                user_id: reader.clone(),
                kind: if i % 3 == 0 { Kind::Mention } else { Kind::Comment },
                board: "launch".into(),
                room_id: tasks_room(),
                thread_root: Some(
                    format!("$root{}_abcdefghijklmnopqrstuvwxyz0123456789", i + 1)
                        .try_into()
                        .expect("event"),
                ),
                event_id: format!("$event{i}").try_into().expect("event"),
                sender: user("@user2:localhost"),
                excerpt: "a comment of ordinary length, about as long as people write them".into(),
                ts: 1_700_000_000_000 + i,
                read: false,
                seq: i + 1,
            })
            .collect();
        store.add_notifications(chunk).expect("inbox");
        id += 1000;
    }
    let started = Instant::now();
    store.seed_done(true).expect("flush and compact");
    eprintln!("scale: flushed and compacted in {:.1} s", started.elapsed().as_secs_f64());
}

fn open_fixture(tasks: u64) -> Fixture {
    let db = database(tasks);
    let config = Config::offline(
        &db,
        r#"
        [api]
        # Measured without the per-caller rate (a benchmark is one caller, flat out).
        requests_per_second = 0
        [[api.clients]]
        name = "bench"
        token = "client"
        boards = ["*"]
        "#,
    )
    .expect("config");
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let app = runtime.block_on(async { App::new(config.validate().expect("valid")) }).expect("app");
    let router = api::router_with(app.ctx.clone(), Arc::new(AuthCache::default()));
    Fixture { tasks, runtime, router, ctx: app.ctx.clone() }
}

fn get(f: &Fixture, path: &str) -> usize {
    let req = Request::get(path)
        .header("authorization", "Bearer client")
        .header("x-boardroom-user", "reader")
        .body(Body::empty())
        .expect("request");
    let resp = f.runtime.block_on(f.router.clone().oneshot(req)).expect("infallible");
    assert!(resp.status().is_success(), "{path}: {}", resp.status());
    let body =
        f.runtime.block_on(axum::body::to_bytes(resp.into_body(), usize::MAX)).expect("body");
    divan::black_box(body).len()
}

fn say(f: &Fixture, text: &str) -> (String, String) {
    f.runtime
        .block_on(boardroom::testing::chat_command(
            &f.ctx,
            &user("@user1:localhost"),
            &space(),
            text,
        ))
        .expect("a reply")
}

// ---- Chat commands ------------------------------------------------------------------------

#[divan::bench(args = SIZES, sample_count = 50)]
fn chat_task_list(bencher: Bencher, tasks: u64) {
    let f = fixture(tasks);
    let (plain, _) = say(f, "!task list");
    assert!(plain.contains("#1 "), "{plain}");
    bencher.bench_local(|| say(f, "!task list"));
}

/// One task in a thousand is in `review`.
#[divan::bench(args = SIZES, sample_count = 20)]
fn chat_task_list_rare_column(bencher: Bencher, tasks: u64) {
    let f = fixture(tasks);
    let (plain, _) = say(f, "!task list review");
    assert!(plain.contains("#500 "), "{plain}");
    bencher.bench_local(|| say(f, "!task list review"));
}

#[divan::bench(args = SIZES, sample_count = 50)]
fn chat_board_info(bencher: Bencher, tasks: u64) {
    let f = fixture(tasks);
    let (plain, _) = say(f, "!board info");
    assert!(plain.contains(&format!("{}", tasks / 4)), "{plain}");
    bencher.bench_local(|| say(f, "!board info"));
}

/// The counts `!board info` shows, alone.
#[divan::bench(args = SIZES, sample_count = 100)]
fn board_column_counts(bencher: Bencher, tasks: u64) {
    let f = fixture(tasks);
    bencher.bench_local(|| {
        let counts = f.ctx.store.column_counts("launch").expect("counts");
        assert_eq!(counts.iter().map(|(_, n)| n).sum::<u64>(), f.tasks);
    });
}

// ---- API: tasks ---------------------------------------------------------------------------

#[divan::bench(args = SIZES, sample_count = 100)]
fn api_tasks_first_page(bencher: Bencher, tasks: u64) {
    let f = fixture(tasks);
    bencher.bench_local(|| get(f, "/_boardroom/api/v1/boards/launch/tasks?limit=20"));
}

#[divan::bench(args = SIZES, sample_count = 100)]
fn api_tasks_page_from_the_middle(bencher: Bencher, tasks: u64) {
    let f = fixture(tasks);
    let path = format!("/_boardroom/api/v1/boards/launch/tasks?limit=20&from={}", tasks / 2);
    bencher.bench_local(|| get(f, &path));
}

#[divan::bench(args = SIZES, sample_count = 100)]
fn api_tasks_by_status_from_the_middle(bencher: Bencher, tasks: u64) {
    let f = fixture(tasks);
    let path =
        format!("/_boardroom/api/v1/boards/launch/tasks?status=doing&limit=20&from={}", tasks / 2);
    bencher.bench_local(|| get(f, &path));
}

#[divan::bench(args = SIZES, sample_count = 100)]
fn api_tasks_by_assignee(bencher: Bencher, tasks: u64) {
    let f = fixture(tasks);
    bencher.bench_local(|| {
        get(f, "/_boardroom/api/v1/boards/launch/tasks?assignee=@user1:localhost&limit=20")
    });
}

#[divan::bench(args = SIZES, sample_count = 100)]
fn api_tasks_by_label(bencher: Bencher, tasks: u64) {
    let f = fixture(tasks);
    bencher.bench_local(|| get(f, "/_boardroom/api/v1/boards/launch/tasks?label=bug&limit=20"));
}

/// One task in a thousand: 1 task on the small board, a full page of 20 on the large.
#[divan::bench(args = SIZES, sample_count = 100)]
fn api_tasks_by_rare_label(bencher: Bencher, tasks: u64) {
    let f = fixture(tasks);
    bencher.bench_local(|| get(f, "/_boardroom/api/v1/boards/launch/tasks?label=rare&limit=20"));
}

// ---- API: members -------------------------------------------------------------------------

#[divan::bench(args = SIZES, sample_count = 100)]
fn api_autocomplete(bencher: Bencher, tasks: u64) {
    let f = fixture(tasks);
    bencher.bench_local(|| get(f, "/_boardroom/api/v1/boards/launch/members?q=user12"));
}

// ---- Watchers -----------------------------------------------------------------------------

/// Task 1 holds a tenth of the board's comments, by 50 authors (its creator and assignee,
/// @user1, among them).
#[divan::bench(args = SIZES, sample_count = 100)]
fn watchers_of_the_busiest_task(bencher: Bencher, tasks: u64) {
    let f = fixture(tasks);
    bencher.bench_local(|| {
        let w = f.ctx.store.watchers("launch", 1).expect("watchers");
        assert_eq!(w.len(), HOT_AUTHORS as usize);
    });
}

/// A task of about nine comments.
#[divan::bench(args = SIZES, sample_count = 100)]
fn watchers_of_an_ordinary_task(bencher: Bencher, tasks: u64) {
    let f = fixture(tasks);
    bencher.bench_local(|| {
        let w = f.ctx.store.watchers("launch", tasks / 2 + 1).expect("watchers");
        assert!(w.len() > 2);
    });
}

// ---- API: the inbox -----------------------------------------------------------------------

#[divan::bench(args = SIZES, sample_count = 100)]
fn api_inbox_newest(bencher: Bencher, tasks: u64) {
    let f = fixture(tasks);
    bencher.bench_local(|| get(f, "/_boardroom/api/v1/notifications?limit=20"));
}

#[divan::bench(args = SIZES, sample_count = 100)]
fn api_inbox_page_from_the_middle(bencher: Bencher, tasks: u64) {
    let f = fixture(tasks);
    let path = format!("/_boardroom/api/v1/notifications?limit=20&from={}", tasks / 2);
    bencher.bench_local(|| get(f, &path));
}

#[divan::bench(args = SIZES, sample_count = 100)]
fn api_inbox_unread_count(bencher: Bencher, tasks: u64) {
    let f = fixture(tasks);
    bencher.bench_local(|| get(f, "/_boardroom/api/v1/notifications/unread_count"));
}
