//! The HTTP API's own time: requests through the router (client-token auth, RocksDB reads)
//! with no network, against an inbox of 10,000 entries, a board of 10,000 members and a
//! board of 100,000 tasks.
//!
//! Run: `cargo bench --bench api`. Figures go in docs/PERFORMANCE.md.

use std::sync::Arc;

use axum::{Router, body::Body};
use boardroom::{
    Config,
    api::{self, auth::AuthCache},
    app::App,
    domain::board::{BoardRecord, RoomKind, RoomRecord},
    domain::inbox::{Kind, Notification},
    domain::task::TaskRecord,
};
use divan::Bencher;
use http::Request;
use ruma::events::room::member::MembershipState;
use tower::ServiceExt;

fn main() {
    divan::main();
}

const ENTRIES: u64 = 10_000;
const MEMBERS: u64 = 10_000;

struct Fixture {
    _dir: tempfile::TempDir,
    runtime: tokio::runtime::Runtime,
    router: Router,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir_in("/dev/shm").or_else(|_| tempfile::tempdir()).expect("tempdir");
    let config = Config::offline(
        &dir.path().join("db"),
        r#"
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
    let user: ruma::OwnedUserId = "@boardroom_reader:localhost".try_into().expect("user");
    let entries: Vec<Notification> = (0..ENTRIES)
        .map(|i| Notification {
            id: 0,
            user_id: user.clone(),
            kind: if i % 3 == 0 { Kind::Mention } else { Kind::Comment },
            board: "launch".into(),
            room_id: "!tasks:localhost".try_into().expect("room"),
            thread_root: Some("$root".try_into().expect("event")),
            event_id: format!("$event{i}").try_into().expect("event"),
            sender: "@bob:localhost".try_into().expect("user"),
            excerpt: "a comment of ordinary length, about as long as people write them".into(),
            ts: 1_700_000_000_000 + i,
            read: false,
            seq: i + 1,
        })
        .collect();
    for chunk in entries.chunks(1000) {
        app.ctx.store.add_notifications(chunk.to_vec()).expect("seed");
    }
    // A board whose space has 10,000 members, for autocomplete.
    let space: ruma::OwnedRoomId = "!space:localhost".try_into().expect("room");
    app.ctx
        .store
        .put_board(&BoardRecord {
            slug: "launch".into(),
            space_id: space.clone(),
            name: "Launch".into(),
            created_by: "@alice:localhost".try_into().expect("user"),
            created_by_event: "$create".try_into().expect("event"),
            creators: vec![],
            power_users: Default::default(),
            users_default: 0,
            columns: vec!["todo".into(), "done".into()],
        })
        .expect("board");
    for i in 0..MEMBERS {
        let member: ruma::OwnedUserId = format!("@user{i}:localhost").try_into().expect("user");
        app.ctx
            .store
            .set_membership(
                &space,
                &member,
                &MembershipState::Join,
                Some(&format!("User {i}")),
                Some("launch"),
            )
            .expect("member");
    }
    // The client owns its virtual user, registered already: no homeserver needed.
    app.ctx.store.claim_virtual_user(&user, "bench", 10).expect("claim");
    app.ctx.store.set_virtual_user_registered(&user, "bench").expect("registered");
    let router = api::router_with(app.ctx.clone(), Arc::new(AuthCache::default()));
    Fixture { _dir: dir, runtime, router }
}

fn get(f: &Fixture, path: &str) {
    let req = Request::get(path)
        .header("authorization", "Bearer client")
        .header("x-boardroom-user", "reader")
        .body(Body::empty())
        .expect("request");
    let resp = f.runtime.block_on(f.router.clone().oneshot(req)).expect("infallible");
    assert!(resp.status().is_success(), "{}", resp.status());
    let body =
        f.runtime.block_on(axum::body::to_bytes(resp.into_body(), usize::MAX)).expect("body");
    divan::black_box(body);
}

#[divan::bench(sample_count = 200)]
fn unread_count(bencher: Bencher) {
    let f = fixture();
    bencher.bench_local(|| get(&f, "/_boardroom/api/v1/notifications/unread_count"));
}

#[divan::bench(sample_count = 200)]
fn list_newest_20_of_10000(bencher: Bencher) {
    let f = fixture();
    bencher.bench_local(|| get(&f, "/_boardroom/api/v1/notifications?limit=20"));
}

#[divan::bench(sample_count = 200)]
fn list_page_deep_in_10000(bencher: Bencher) {
    let f = fixture();
    bencher.bench_local(|| get(&f, "/_boardroom/api/v1/notifications?limit=20&from=5000"));
}

#[divan::bench(sample_count = 200)]
fn autocomplete_in_10000_members(bencher: Bencher) {
    let f = fixture();
    bencher.bench_local(|| get(&f, "/_boardroom/api/v1/boards/launch/members?q=user12"));
}

const TASKS: u64 = 100_000;

/// A board of 100,000 tasks: every fourth in `doing`, one in a thousand labelled `rare`,
/// one in ten due in 2026; a client that may act on every board.
fn task_fixture() -> Fixture {
    let dir = tempfile::tempdir_in("/dev/shm").or_else(|_| tempfile::tempdir()).expect("tempdir");
    let config = Config::offline(
        &dir.path().join("db"),
        r#"
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
    let store = &app.ctx.store;
    store
        .put_board(&BoardRecord {
            slug: "launch".into(),
            space_id: "!space:localhost".try_into().expect("room"),
            name: "Launch".into(),
            created_by: "@alice:localhost".try_into().expect("user"),
            created_by_event: "$create".try_into().expect("event"),
            creators: vec![],
            power_users: Default::default(),
            users_default: 0,
            columns: vec!["todo".into(), "doing".into(), "done".into()],
        })
        .expect("board");
    let room = RoomRecord {
        board: "launch".into(),
        name: "tasks".into(),
        kind: RoomKind::Tasks,
        private: false,
        pending_move_from: None,
    };
    let tasks_room: ruma::OwnedRoomId = "!tasks:localhost".try_into().expect("room");
    store.put_room(&tasks_room, &room).expect("room");
    for n in 1..=TASKS {
        let root = format!("$root{n}_abcdefghijklmnopqrstuvwxyz0123456789");
        let mut task = TaskRecord::example("launch", n, root.try_into().expect("event id"));
        if n % 4 == 0 {
            task.fields.status = "doing".into();
        }
        if n % 1000 == 0 {
            task.fields.labels.push("rare".into());
        }
        if n % 10 == 0 {
            task.fields.due = Some(format!("2026-{:02}-15", n % 12 + 1));
        }
        store.put_task(&task).expect("task");
    }
    let user: ruma::OwnedUserId = "@boardroom_reader:localhost".try_into().expect("user");
    store.claim_virtual_user(&user, "bench", 10).expect("claim");
    store.set_virtual_user_registered(&user, "bench").expect("registered");
    let router = api::router_with(app.ctx.clone(), Arc::new(AuthCache::default()));
    Fixture { _dir: dir, runtime, router }
}

/// The first page of a board of 100,000 tasks, with each task's comment count.
#[divan::bench(sample_count = 200)]
fn tasks_first_20_of_100000(bencher: Bencher) {
    let f = task_fixture();
    bencher.bench_local(|| get(&f, "/_boardroom/api/v1/boards/launch/tasks?limit=20"));
}

/// A page deep in the board, filtered by column (one task in four matches).
#[divan::bench(sample_count = 200)]
fn tasks_in_a_column_from_the_middle(bencher: Bencher) {
    let f = task_fixture();
    bencher.bench_local(|| {
        get(&f, "/_boardroom/api/v1/boards/launch/tasks?status=doing&from=50000&limit=20")
    });
}

/// A rare label (one task in a thousand): a page reads its budget of 1,000 tasks.
#[divan::bench(sample_count = 200)]
fn tasks_with_a_rare_label(bencher: Bencher) {
    let f = task_fixture();
    bencher.bench_local(|| get(&f, "/_boardroom/api/v1/boards/launch/tasks?label=rare&limit=20"));
}

/// One task of 100,000.
#[divan::bench(sample_count = 200)]
fn one_task_of_100000(bencher: Bencher) {
    let f = task_fixture();
    bencher.bench_local(|| get(&f, "/_boardroom/api/v1/boards/launch/tasks/50000"));
}
