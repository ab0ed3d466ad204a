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

// ---- Chat: a history page and a board's presence ------------------------------------------

/// Messages in a history page the stand-in homeserver answers.
const PAGE: usize = 20;
/// Users whose presence the homeserver reported, all members of the board.
const ONLINE: u64 = 1_000;

/// `PAGE` messages as Synapse's `/messages` sends them (with `unsigned`, a thread reply and
/// an edit bundled in), and an `end` token.
fn messages_page() -> String {
    let chunk: Vec<serde_json::Value> = (0..PAGE)
        .map(|i| {
            let mut content = serde_json::json!({
                "msgtype": "m.text",
                "body": format!("message {i}: a line of chat about as long as people write them, @user12"),
                "format": "org.matrix.custom.html",
                "formatted_body": format!("message {i}: a line of chat about as long as people write them, <a href=\"https://matrix.to/#/@user12:localhost\">User 12</a>"),
                "m.mentions": { "user_ids": ["@user12:localhost"] },
            });
            if i % 5 == 0 {
                content["m.relates_to"] = serde_json::json!({
                    "rel_type": "m.thread", "event_id": "$root:localhost", "is_falling_back": true,
                    "m.in_reply_to": { "event_id": "$root:localhost" },
                });
            }
            let mut event = serde_json::json!({
                "type": "m.room.message",
                "room_id": "!general:localhost",
                "sender": format!("@user{}:localhost", i % 7),
                "event_id": format!("$event{i}:localhost"),
                "origin_server_ts": 1_700_000_000_000u64 + i as u64,
                "content": content,
                "unsigned": { "age": 1234 },
            });
            if i == 3 {
                event["unsigned"]["m.relations"] = serde_json::json!({ "m.replace": {
                    "type": "m.room.message", "room_id": "!general:localhost",
                    "sender": "@user3:localhost", "event_id": "$edit:localhost",
                    "origin_server_ts": 1_700_000_100_000u64,
                    "content": { "msgtype": "m.text", "body": "* edited", "m.new_content": { "msgtype": "m.text", "body": "edited" },
                        "m.relates_to": { "rel_type": "m.replace", "event_id": "$event3:localhost" } },
                }});
            }
            event
        })
        .collect();
    serde_json::json!({ "start": "t100-200_0_0", "end": "t80-180_0_0", "chunk": chunk }).to_string()
}

struct ChatFixture {
    _dir: tempfile::TempDir,
    runtime: tokio::runtime::Runtime,
    router: Router,
    stand_in: String,
    live: Arc<boardroom::domain::live::LiveState>,
}

/// A board of 10,000 members with a `general` room the virtual user has joined, `ONLINE`
/// members reported online, one typing; the homeserver is a stand-in on loopback that
/// answers `/messages` with [`messages_page`] from memory.
fn chat_fixture() -> ChatFixture {
    let dir = tempfile::tempdir_in("/dev/shm").or_else(|_| tempfile::tempdir()).expect("tempdir");
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let page = messages_page();
    let stand_in = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let app = Router::new().route(
            "/_matrix/client/v3/rooms/{room}/messages",
            axum::routing::get(move || {
                let page = page.clone();
                async move { ([(http::header::CONTENT_TYPE, "application/json")], page) }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await.expect("stand-in") });
        url
    });
    let config = Config::offline(
        &dir.path().join("db"),
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
    let mut settings = config.validate().expect("valid");
    settings.homeserver_url = stand_in.clone();
    let app = runtime.block_on(async { App::new(settings) }).expect("app");
    let store = &app.ctx.store;
    let space: ruma::OwnedRoomId = "!space:localhost".try_into().expect("room");
    let general: ruma::OwnedRoomId = "!general:localhost".try_into().expect("room");
    store
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
    store
        .put_room(
            &general,
            &boardroom::domain::board::RoomRecord {
                board: "launch".into(),
                name: "general".into(),
                kind: boardroom::domain::board::RoomKind::Chat,
                private: false,
                pending_move_from: None,
            },
        )
        .expect("room");
    for i in 0..MEMBERS {
        let member: ruma::OwnedUserId = format!("@user{i}:localhost").try_into().expect("user");
        let name = format!("User {i}");
        store
            .set_membership(&space, &member, &MembershipState::Join, Some(&name), Some("launch"))
            .expect("member");
        if i < 100 {
            store
                .set_membership(&general, &member, &MembershipState::Join, Some(&name), None)
                .expect("member");
        }
        if i < ONLINE {
            app.ctx.live.set_presence(member, ruma::presence::PresenceState::Online);
        }
    }
    let typing: ruma::OwnedUserId = "@user1:localhost".try_into().expect("user");
    app.ctx.live.set_typing(general.clone(), vec![typing]);
    let user: ruma::OwnedUserId = "@boardroom_reader:localhost".try_into().expect("user");
    app.ctx.store.claim_virtual_user(&user, "bench", 10).expect("claim");
    app.ctx.store.set_virtual_user_registered(&user, "bench").expect("registered");
    for room in [&space, &general] {
        let space_of = (room == &space).then_some("launch");
        store.set_membership(room, &user, &MembershipState::Join, None, space_of).expect("joined");
    }
    let router = api::router_with(app.ctx.clone(), Arc::new(AuthCache::default()));
    ChatFixture { _dir: dir, runtime, router, stand_in, live: app.ctx.live.clone() }
}

fn chat_get(f: &ChatFixture, path: &str) {
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

/// A page of 20 messages through the API: Boardroom's work plus one loopback request to
/// the stand-in homeserver (measured alone by `history_page_stand_in_alone`).
#[divan::bench(sample_count = 200)]
fn history_page_of_20(bencher: Bencher) {
    let f = chat_fixture();
    bencher.bench_local(|| {
        chat_get(&f, "/_boardroom/api/v1/boards/launch/rooms/general/messages?limit=20")
    });
}

/// The same `/messages` request straight to the stand-in, through the same HTTP client
/// library: what to subtract from `history_page_of_20` for Boardroom's own time.
#[divan::bench(sample_count = 200)]
fn history_page_stand_in_alone(bencher: Bencher) {
    let f = chat_fixture();
    let http = reqwest::Client::new();
    let url = format!(
        "{}/_matrix/client/v3/rooms/!general:localhost/messages?dir=b&limit=20",
        f.stand_in
    );
    bencher.bench_local(|| {
        let body = f.runtime.block_on(async {
            http.get(&url)
                .bearer_auth("as")
                .send()
                .await
                .expect("send")
                .bytes()
                .await
                .expect("body")
        });
        divan::black_box(body);
    });
}

/// Who is online on a board of 10,000 members, 1,000 of them reported online: the list
/// of online members as reused within its second.
#[divan::bench(sample_count = 200)]
fn presence_of_10000_members_1000_online(bencher: Bencher) {
    let f = chat_fixture();
    bencher.bench_local(|| chat_get(&f, "/_boardroom/api/v1/boards/launch/presence"));
}

/// The same, the list worked out anew for every request (an API caller set a presence
/// just before): once a second per board at most, or after such a change.
#[divan::bench(sample_count = 100)]
fn presence_of_10000_members_1000_online_worked_out(bencher: Bencher) {
    let f = chat_fixture();
    let user: ruma::OwnedUserId = "@user1:localhost".try_into().expect("user");
    bencher.bench_local(|| {
        f.live.set_presence_by_api(user.clone(), ruma::presence::PresenceState::Online);
        chat_get(&f, "/_boardroom/api/v1/boards/launch/presence")
    });
}
