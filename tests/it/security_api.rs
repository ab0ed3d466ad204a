//! End-to-end, against a real Synapse: what an API client token may do and what an API
//! caller may see. Virtual users belong to the client that used them first; inbox entries
//! are read within the client's `boards` scope; the appservice's tokens are refused;
//! registrations survive a restart; known Matrix tokens read through a homeserver outage.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use axum::body::Body;
use boardroom::api::{self, auth::AuthCache};
use http::Request;
use ruma::{OwnedEventId, OwnedRoomId, events::room::member::MembershipState};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::harness::{Stack, User};

const CONFIG: &str = r#"
[permissions]
board_creators = ["@alice:localhost"]
[[api.clients]]
name = "alpha"
token = "alpha-client-token"
boards = ["demo"]
[[api.clients]]
name = "beta"
token = "beta-client-token"
boards = ["secret"]
[[api.clients]]
name = "gamma"
token = "gamma-client-token"
boards = ["demo", "secret"]
"#;

const ALPHA: &str = "alpha-client-token";
const BETA: &str = "beta-client-token";
const GAMMA: &str = "gamma-client-token";

/// A board's tasks room and the root of its task #1.
struct Board {
    tasks: OwnedRoomId,
    root: OwnedEventId,
}

struct Setup {
    stack: Stack,
    alice: User,
    demo: Board,
    secret: Board,
    api: String,
}

async fn board(stack: &Stack, alice: &User, dm: &OwnedRoomId, slug: &str) -> Board {
    let bot = stack.boardroom.bot().to_owned();
    alice.command(dm, &bot, &format!("!board create {slug} {slug}")).await;
    alice.join(&format!("#boardroom_{slug}:localhost")).await.expect("space");
    let general =
        alice.join(&format!("#boardroom_{slug}-general:localhost")).await.expect("general");
    let tasks = alice.join(&format!("#boardroom_{slug}-tasks:localhost")).await.expect("tasks");
    alice.command(&general, &bot, "!task new First").await;
    let state = alice.state(&tasks, "dev.boardroom.task", "1").await.expect("task");
    let root = state["root_event_id"].as_str().expect("root").try_into().expect("event id");
    Board { tasks, root }
}

async fn setup() -> Setup {
    let stack = Stack::start(CONFIG).await;
    let bot = stack.boardroom.bot().to_owned();
    let alice = stack.synapse.register("alice").await;
    let dm = alice.create_room(&[&bot]).await;
    alice.wait_for_membership(&dm, &bot, MembershipState::Join).await;
    let demo = board(&stack, &alice, &dm, "demo").await;
    let secret = board(&stack, &alice, &dm, "secret").await;
    let api = format!("http://{}/_boardroom/api/v1", stack.boardroom.settings.listen);
    Setup { stack, alice, demo, secret, api }
}

async fn call(
    method: &str,
    url: &str,
    token: &str,
    user: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let http = reqwest::Client::new();
    let mut req = match method {
        "POST" => http.post(url),
        _ => http.get(url),
    };
    req = req.bearer_auth(token);
    if let Some(u) = user {
        req = req.header("X-Boardroom-User", u);
    }
    if let Some(b) = body {
        req = req.json(&b);
    } else if method == "POST" {
        req = req.json(&json!({}));
    }
    let resp = req.send().await.expect("api request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

impl Setup {
    async fn comment(&self, token: &str, user: &str, slug: &str, text: &str) -> (u16, Value) {
        let url = format!("{}/boards/{slug}/tasks/1/comments", self.api);
        call("POST", &url, token, Some(user), Some(json!({ "body": text }))).await
    }

    async fn inbox(&self, token: &str, user: &str) -> (u16, Value) {
        call("GET", &format!("{}/notifications", self.api), token, Some(user), None).await
    }

    async fn unread(&self, token: &str, user: &str) -> (u16, Value) {
        let url = format!("{}/notifications/unread_count", self.api);
        call("GET", &url, token, Some(user), None).await
    }

    /// Waits until `user`'s inbox (through `token`) holds `event`; returns the entry.
    async fn entry(&self, token: &str, user: &str, event: &OwnedEventId) -> Value {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let (status, page) = self.inbox(token, user).await;
            assert_eq!(status, 200, "{page}");
            if let Some(n) = page["notifications"]
                .as_array()
                .and_then(|a| a.iter().find(|n| n["event_id"] == event.as_str()))
            {
                return n.clone();
            }
            assert!(Instant::now() < deadline, "timed out waiting for {event} in {user}'s inbox");
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }
}

fn refused_as_another_clients(status: u16, body: &Value, secret: &str) {
    assert_eq!((status, body["errcode"].as_str()), (403, Some("M_FORBIDDEN")), "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains("belongs to another API client")),
        "{body}"
    );
    assert!(!body.to_string().contains(secret), "the refusal leaks the excerpt: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_token_cannot_read_another_clients_board_through_a_shared_virtual_user() {
    let s = setup().await;
    let alice = &s.alice;

    // Client beta (scope `secret`) comments as `ci`: `ci` is beta's now, and watches the task.
    let (status, body) = s.comment(BETA, "ci", "secret", "ci is watching").await;
    assert_eq!(status, 200, "{body}");
    let line = alice.say_in_thread(&s.secret.tasks, &s.secret.root, "launch code 7781").await;
    let entry = s.entry(BETA, "ci", &line).await;
    assert_eq!(entry["excerpt"], "launch code 7781");
    assert_eq!(entry["board"], "secret");
    assert_eq!(entry["read"], false);
    let id = entry["id"].as_u64().expect("id");
    let (status, body) = s.unread(BETA, "ci").await;
    assert_eq!((status, body["unread"].as_u64()), (200, Some(1)), "{body}");

    // Client alpha (scope `demo`) naming `ci` is refused on every endpoint, and learns nothing.
    let (status, body) = s.inbox(ALPHA, "ci").await;
    refused_as_another_clients(status, &body, "7781");
    let (status, body) = s.unread(ALPHA, "ci").await;
    refused_as_another_clients(status, &body, "7781");
    let url = format!("{}/notifications/{id}/read", s.api);
    let (status, body) = call("POST", &url, ALPHA, Some("ci"), None).await;
    refused_as_another_clients(status, &body, "7781");
    let url = format!("{}/notifications/read_all", s.api);
    let (status, body) = call("POST", &url, ALPHA, Some("ci"), None).await;
    refused_as_another_clients(status, &body, "7781");
    let url = format!("{}/boards/demo/members?q=", s.api);
    let (status, body) = call("GET", &url, ALPHA, Some("ci"), None).await;
    refused_as_another_clients(status, &body, "7781");
    let (status, body) = s.comment(ALPHA, "ci", "demo", "I am ci too").await;
    refused_as_another_clients(status, &body, "7781");
    // Gamma's scope covers `secret` too, but `ci` is still not gamma's.
    let (status, body) = s.inbox(GAMMA, "ci").await;
    refused_as_another_clients(status, &body, "7781");

    // Beta's own reads and writes still work, and alpha changed nothing.
    let entry = s.entry(BETA, "ci", &line).await;
    assert_eq!(entry["read"], false, "{entry}");
    let url = format!("{}/notifications/{id}/read", s.api);
    let (status, body) = call("POST", &url, BETA, Some("ci"), None).await;
    assert_eq!((status, body["marked"].as_u64()), (200, Some(1)), "{body}");
    let (status, body) = s.unread(BETA, "ci").await;
    assert_eq!((status, body["unread"].as_u64()), (200, Some(0)), "{body}");

    // The other direction: alpha's own virtual user on `demo` is alpha's alone.
    let (status, body) = s.comment(ALPHA, "app", "demo", "app is watching").await;
    assert_eq!(status, 200, "{body}");
    let note = alice.say_in_thread(&s.demo.tasks, &s.demo.root, "demo note 4242").await;
    let entry = s.entry(ALPHA, "app", &note).await;
    assert_eq!(entry["excerpt"], "demo note 4242");
    for other in [BETA, GAMMA] {
        let (status, body) = s.inbox(other, "app").await;
        refused_as_another_clients(status, &body, "4242");
        let (status, body) = s.comment(other, "app", "secret", "I am app too").await;
        refused_as_another_clients(status, &body, "4242");
    }

    // The owners are recorded in the database, and the refused calls registered nothing.
    let store = s.stack.boardroom.store();
    let owner = |u: &str| {
        store
            .virtual_user(&ruma::UserId::parse(u).expect("user"))
            .expect("read")
            .map(|v| (v.client, v.registered))
    };
    assert_eq!(owner("@boardroom_ci:localhost"), Some(("beta".to_owned(), true)));
    assert_eq!(owner("@boardroom_app:localhost"), Some(("alpha".to_owned(), true)));
    assert_eq!(store.virtual_users_of("gamma", 100).expect("count"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inbox_entry_of_a_board_the_client_lost_scope_over_is_not_listed() {
    let mut s = setup().await;
    let alice = &s.alice;

    // Gamma (scope demo and secret) comments as `ops` on both boards; a line in each thread.
    for slug in ["demo", "secret"] {
        let (status, body) = s.comment(GAMMA, "ops", slug, "ops is watching").await;
        assert_eq!(status, 200, "{body}");
    }
    let on_demo = alice.say_in_thread(&s.demo.tasks, &s.demo.root, "demo line").await;
    let on_secret = alice.say_in_thread(&s.secret.tasks, &s.secret.root, "secret line 9090").await;
    s.entry(GAMMA, "ops", &on_demo).await;
    let secret_id = s.entry(GAMMA, "ops", &on_secret).await["id"].as_u64().expect("id");
    let (status, body) = s.unread(GAMMA, "ops").await;
    assert_eq!((status, body["unread"].as_u64()), (200, Some(2)), "{body}");

    // The operator takes `secret` out of gamma's scope.
    let settings = &s.stack.boardroom.settings;
    let mut access = (*settings.access()).clone();
    let gamma = access.api_clients.iter_mut().find(|c| c.name == "gamma").expect("gamma");
    gamma.boards = vec!["demo".to_owned()];
    settings.set_access(access);
    s.stack.restart_boardroom().await;

    // The secret entry is not listed, not counted, and cannot be marked read.
    let (status, page) = s.inbox(GAMMA, "ops").await;
    assert_eq!(status, 200, "{page}");
    let listed = page["notifications"].as_array().expect("list");
    assert!(listed.iter().any(|n| n["event_id"] == on_demo.as_str()), "{page}");
    assert!(listed.iter().all(|n| n["board"] == "demo"), "{page}");
    assert!(!page.to_string().contains("9090"), "{page}");
    let (status, body) = s.unread(GAMMA, "ops").await;
    assert_eq!((status, body["unread"].as_u64()), (200, Some(1)), "{body}");
    let url = format!("{}/notifications/{secret_id}/read", s.api);
    let (status, body) = call("POST", &url, GAMMA, Some("ops"), None).await;
    assert_eq!((status, body["errcode"].as_str()), (404, Some("M_NOT_FOUND")), "{body}");
    let url = format!("{}/notifications/read_all", s.api);
    let (status, body) = call("POST", &url, GAMMA, Some("ops"), None).await;
    assert_eq!((status, body["marked"].as_u64()), (200, Some(1)), "{body}");
    let (status, body) = s.unread(GAMMA, "ops").await;
    assert_eq!((status, body["unread"].as_u64()), (200, Some(0)), "{body}");
    // The entry itself is still there, unread: out of sight, not altered.
    let ops = ruma::user_id!("@boardroom_ops:localhost");
    let held = s.stack.boardroom.store().notification(ops, secret_id).expect("read");
    assert_eq!(held.map(|n| (n.board, n.read)), Some(("secret".to_owned(), false)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_virtual_user_comments_again_after_a_restart() {
    let mut s = setup().await;
    let (status, body) = s.comment(BETA, "ci", "secret", "before the restart").await;
    assert_eq!(status, 200, "{body}");

    // What Synapse answers when an appservice registers one of its users again.
    let settings = &s.stack.boardroom.settings;
    let answer = reqwest::Client::new()
        .post(format!("{}/_matrix/client/v3/register", settings.homeserver_url))
        .bearer_auth(settings.as_token.expose())
        .json(&json!({
            "type": "m.login.application_service",
            "username": "boardroom_ci",
            "inhibit_login": true,
        }))
        .send()
        .await
        .expect("register");
    let status = answer.status().as_u16();
    let body: Value = answer.json().await.expect("json");
    eprintln!("Synapse on registering an existing appservice user: {status} {body}");
    assert_eq!((status, body["errcode"].as_str()), (400, Some("M_USER_IN_USE")), "{body}");
    // Which Boardroom counts as done.
    boardroom::matrix::Intent::register(&s.stack.boardroom.app().client, "boardroom_ci")
        .await
        .expect("M_USER_IN_USE is success");

    s.stack.restart_boardroom().await;
    let (status, body) = s.comment(BETA, "ci", "secret", "after the restart").await;
    assert_eq!(status, 200, "{body}");
    let event = body["event_id"].as_str().expect("event_id").to_owned();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let comments = s.stack.boardroom.store().comments("secret", 1).expect("comments");
        if let Some(c) = comments.iter().find(|c| c.event_id.as_str() == event) {
            assert_eq!(c.author.as_str(), "@boardroom_ci:localhost");
            assert_eq!(c.body, "after the restart");
            break;
        }
        assert!(Instant::now() < deadline, "the comment after the restart did not land");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

/// A request through `router`; the status and JSON body.
async fn through(router: &axum::Router, method: &str, path: &str, token: &str) -> (u16, Value) {
    let req = Request::builder()
        .method(method)
        .uri(format!("/_boardroom/api/v1{path}"))
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .expect("request");
    let resp = router.clone().oneshot(req).await.expect("infallible");
    let status = resp.status().as_u16();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX).await.expect("body");
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_matrix_token_reads_through_a_homeserver_outage_but_a_refused_one_never_does() {
    let mut s = setup().await;
    let alice = &s.alice;
    let bob = s.stack.synapse.register("bob").await;

    // The appservice's tokens are not API tokens (the as_token used to act as the bot).
    let settings = s.stack.boardroom.settings.clone();
    for token in [settings.as_token.expose(), settings.hs_token.expose()] {
        let (status, body) =
            call("GET", &format!("{}/notifications", s.api), token, None, None).await;
        assert_eq!((status, body["errcode"].as_str()), (403, Some("M_FORBIDDEN")), "{body}");
        assert!(body["error"].as_str().is_some_and(|e| e.contains("not API tokens")), "{body}");
    }
    // An unknown token is refused each time (the second from memory).
    for _ in 0..2 {
        let (status, body) =
            call("GET", &format!("{}/notifications", s.api), "no-such-token", None, None).await;
        assert_eq!((status, body["errcode"].as_str()), (401, Some("M_UNKNOWN_TOKEN")), "{body}");
    }

    // The API with a whoami TTL of zero: every request asks the homeserver, as every request
    // does once the real TTL has passed. No refusal memory, so the grace alone is tested.
    let cache = AuthCache::with_times(Duration::ZERO, Duration::from_secs(3600), Duration::ZERO);
    let router = api::router_with(s.stack.boardroom.app().ctx.clone(), Arc::new(cache));
    let (status, body) = through(&router, "GET", "/notifications", &alice.token).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = through(&router, "GET", "/notifications/unread_count", &bob.token).await;
    assert_eq!(status, 200, "{body}");
    let cache = AuthCache::with_times(Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let strict = api::router_with(s.stack.boardroom.app().ctx.clone(), Arc::new(cache));
    let (status, body) = through(&strict, "GET", "/notifications", &alice.token).await;
    assert_eq!(status, 200, "{body}");

    // Bob logs out: the homeserver refuses his token (401), and no grace covers it.
    let logout = ruma::api::client::session::logout::v3::Request::new();
    bob.client.send(logout, None).await.expect("logout");
    let (status, body) = through(&router, "GET", "/notifications/unread_count", &bob.token).await;
    assert_eq!((status, body["errcode"].as_str()), (401, Some("M_UNKNOWN_TOKEN")), "{body}");

    // The homeserver goes away.
    s.stack.synapse.stop_for_outage();
    // Alice, identified before, still reads her inbox.
    let (status, body) = through(&router, "GET", "/notifications", &alice.token).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["notifications"].is_array(), "{body}");
    let (status, body) = through(&router, "GET", "/notifications/unread_count", &alice.token).await;
    assert_eq!(status, 200, "{body}");
    // Writes are not covered: the homeserver must vouch for the token.
    let (status, body) = through(&router, "POST", "/notifications/read_all", &alice.token).await;
    assert_eq!((status, body["errcode"].as_str()), (502, Some("M_UNKNOWN")), "{body}");
    // Bob's refused token is not served, nor is a token never identified.
    let (status, body) = through(&router, "GET", "/notifications/unread_count", &bob.token).await;
    assert_eq!((status, body["errcode"].as_str()), (502, Some("M_UNKNOWN")), "{body}");
    let (status, body) = through(&router, "GET", "/notifications", "never-seen-token").await;
    assert_eq!((status, body["errcode"].as_str()), (502, Some("M_UNKNOWN")), "{body}");

    // Past its grace (zero here), a token identified before is not served either.
    let (status, body) = through(&strict, "GET", "/notifications", &alice.token).await;
    assert_eq!((status, body["errcode"].as_str()), (502, Some("M_UNKNOWN")), "{body}");
}
