//! End-to-end: a task app drives a board over the HTTP API (boards, members, tasks,
//! comments) and what Element shows is what the chat commands produce; refusals change
//! nothing.

use std::time::{Duration, Instant};

use ruma::events::room::member::MembershipState;
use serde_json::{Value, json};

use crate::harness::Launch;

const CONFIG: &str = r#"
[permissions]
board_creators = ["@alice:localhost"]
[[api.clients]]
name = "tracker"
token = "tracker-client-token"
boards = ["launch"]
[[api.clients]]
name = "maker"
token = "maker-client-token"
boards = ["made"]
create_boards = true
"#;

const TRACKER: &str = "tracker-client-token";

type Setup = Launch;

async fn setup() -> Setup {
    Launch::start(CONFIG).await
}

async fn api(
    method: &str,
    url: &str,
    token: &str,
    user: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let http = reqwest::Client::new();
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = http.request(method, url).bearer_auth(token);
    if let Some(u) = user {
        req = req.header("X-Boardroom-User", u);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("api request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn eventually<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(t) = f().await {
            return t;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

/// The fields Element shows of task `n`: its state event's content.
async fn state(s: &Setup, n: u64) -> Value {
    s.alice.state(&s.tasks, "dev.boardroom.task", &n.to_string()).await.expect("task state")
}

/// The latest edit of `root` in the tasks room: the root's text as Element shows it.
async fn root_text(s: &Setup, root: &str) -> Option<String> {
    let events = s.alice.timeline(&s.tasks).await;
    events
        .iter()
        .filter_map(|r| serde_json::to_value(r).ok())
        .rfind(|e| {
            e["content"]["m.relates_to"]["rel_type"] == "m.replace"
                && e["content"]["m.relates_to"]["event_id"] == root
        })
        .and_then(|e| e["content"]["m.new_content"]["body"].as_str().map(str::to_owned))
}

/// The feed entries in `root`'s thread that mention `user`, as Element receives them.
async fn feed_mentions(s: &Setup, root: &str, user: &str) -> Vec<Value> {
    let bot = s.stack.boardroom.bot().to_string();
    s.alice
        .timeline(&s.tasks)
        .await
        .iter()
        .filter_map(|r| serde_json::to_value(r).ok())
        .filter(|e| {
            e["sender"] == bot.as_str()
                && e["content"]["m.relates_to"]["rel_type"] == "m.thread"
                && e["content"]["m.relates_to"]["event_id"] == root
                && e["content"]["m.mentions"]["user_ids"] == json!([user])
        })
        .collect()
}

#[tokio::test]
async fn a_task_app_and_the_chat_commands_make_the_same_task() {
    let s = setup().await;
    let bot = s.stack.boardroom.bot().to_owned();
    let tasks_url = format!("{}/boards/launch/tasks", s.api);

    // In chat: a task, moved and assigned.
    s.alice.command(&s.general, &bot, "!task new By chat").await;
    s.alice.command(&s.general, &bot, "!task status #1 doing").await;
    s.alice.command(&s.general, &bot, "!task assign #1 @bob:localhost").await;

    // Over the API, as the tracker's virtual user: the same, in two requests.
    let (status, created) =
        api("POST", &tasks_url, TRACKER, Some("ci"), Some(json!({ "title": "By the app" }))).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["number"], 2);
    assert_eq!(created["status"], "todo");
    assert_eq!(created["created_by"], "@boardroom_ci:localhost");
    let task2 = format!("{tasks_url}/2");
    let patch = json!({ "status": "doing", "assignees": ["@bob:localhost"] });
    let (status, changed) = api("PATCH", &task2, TRACKER, Some("ci"), Some(patch)).await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(
        (changed["status"].clone(), changed["assignees"].clone()),
        (json!("doing"), json!(["@bob:localhost"]))
    );

    // The state events agree, field by field.
    let (one, two) = (state(&s, 1).await, state(&s, 2).await);
    for field in ["status", "assignees", "labels", "deleted"] {
        assert_eq!(one[field], two[field], "{field}: {one} / {two}");
    }
    assert_eq!(two["title"], "By the app");
    assert_eq!(two["created_by"], "@boardroom_ci:localhost");

    // The roots read the same once edited, and the assignee was mentioned in the feed (a
    // highlight in Element) and has an assignment in their inbox, for both.
    for (n, st) in [(1, &one), (2, &two)] {
        let root = st["root_event_id"].as_str().expect("root").to_owned();
        let text = eventually("the root's edit", async || {
            root_text(&s, &root).await.filter(|t| t.contains("Assigned: @bob:localhost"))
        })
        .await;
        assert!(text.contains("Status: doing"), "#{n}: {text}");
        let feed = eventually("the assignment in the feed", async || {
            let f = feed_mentions(&s, &root, "@bob:localhost").await;
            (!f.is_empty()).then_some(f)
        })
        .await;
        assert!(
            feed[0]["content"]["body"]
                .as_str()
                .is_some_and(|b| b.contains("assigned @bob:localhost"))
        );
    }
    let (status, inbox) =
        api("GET", &format!("{}/notifications", s.api), &s.bob.token, None, None).await;
    assert_eq!(status, 200, "{inbox}");
    let assignments: Vec<&Value> = inbox["notifications"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|n| n["kind"] == "assignment")
        .collect();
    assert_eq!(assignments.len(), 2, "{inbox}");

    // A comment with a mention, and the comments page.
    let (status, sent) = api(
        "POST",
        &format!("{task2}/comments"),
        TRACKER,
        Some("ci"),
        Some(json!({ "body": "@bob can you take it?" })),
    )
    .await;
    assert_eq!(status, 200, "{sent}");
    let page = eventually("the comment in the page", async || {
        let (_, page) = api("GET", &format!("{task2}/comments"), TRACKER, Some("ci"), None).await;
        (page["comments"].as_array().is_some_and(|c| c.len() == 1)).then_some(page)
    })
    .await;
    assert_eq!(page["comments"][0]["event_id"], sent["event_id"]);
    assert_eq!(page["comments"][0]["author"], "@boardroom_ci:localhost");

    // Queries: by column, by assignee, by label; one task with its comment count.
    for query in ["status=doing", "assignee=@bob:localhost"] {
        let (status, page) =
            api("GET", &format!("{tasks_url}?{query}"), &s.alice.token, None, None).await;
        assert_eq!(status, 200, "{page}");
        let numbers: Vec<u64> = page["tasks"]
            .as_array()
            .expect("tasks")
            .iter()
            .filter_map(|t| t["number"].as_u64())
            .collect();
        assert_eq!(numbers, [1, 2], "{query}: {page}");
    }
    let (_, none) =
        api("GET", &format!("{tasks_url}?label=nope"), &s.alice.token, None, None).await;
    assert_eq!(none["tasks"], json!([]));
    let (_, paged) = api("GET", &format!("{tasks_url}?limit=1"), &s.alice.token, None, None).await;
    assert_eq!(
        (paged["tasks"][0]["number"].clone(), paged["next_batch"].clone()),
        (json!(1), json!("1"))
    );
    let (_, rest) =
        api("GET", &format!("{tasks_url}?limit=1&from=1"), &s.alice.token, None, None).await;
    assert_eq!(rest["tasks"][0]["number"], 2);
    let (status, got) = api("GET", &task2, &s.alice.token, None, None).await;
    assert_eq!((status, got["comment_count"].clone()), (200, json!(1)), "{got}");

    // Deleting: the creator may.
    let (status, deleted) = api("DELETE", &task2, TRACKER, Some("ci"), None).await;
    assert_eq!((status, deleted["deleted"].clone()), (200, json!(true)), "{deleted}");
    assert_eq!(state(&s, 2).await["deleted"], true);
    let (status, _) = api("GET", &task2, &s.alice.token, None, None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn boards_and_members_over_the_api_and_refusals_change_nothing() {
    let s = setup().await;
    let bot = s.stack.boardroom.bot().to_owned();
    s.alice.command(&s.general, &bot, "!task new Keep me").await;
    let before = state(&s, 1).await;

    // Alice's token: her boards, one board.
    let (status, boards) =
        api("GET", &format!("{}/boards", s.api), &s.alice.token, None, None).await;
    assert_eq!(status, 200, "{boards}");
    assert_eq!(
        boards["boards"],
        json!([{ "slug": "launch", "name": "Launch",
        "space_id": boards["boards"][0]["space_id"], "role": "owner" }])
    );
    let (status, board) =
        api("GET", &format!("{}/boards/launch", s.api), &s.bob.token, None, None).await;
    assert_eq!(status, 200, "{board}");
    assert_eq!(board["role"], "member");
    let rooms: Vec<&str> = board["rooms"]
        .as_array()
        .expect("rooms")
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert!(rooms.contains(&"general") && rooms.contains(&"tasks"), "{board}");
    assert_eq!(board["columns"][0], json!({ "name": "todo", "tasks": 1 }));
    let (status, members) =
        api("GET", &format!("{}/boards/launch/members", s.api), &s.bob.token, None, None).await;
    assert_eq!(status, 200, "{members}");
    let ids: Vec<&str> = members["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(|m| m["user_id"].as_str())
        .collect();
    assert_eq!(ids, ["@alice:localhost", "@bob:localhost"]);

    // Carol is on no board: she sees none, and every change is refused alike, whether the
    // board exists or not, and changes nothing.
    let (_, none) = api("GET", &format!("{}/boards", s.api), &s.carol.token, None, None).await;
    assert_eq!(none["boards"], json!([]));
    for slug in ["launch", "secret"] {
        let url = format!("{}/boards/{slug}/tasks/1", s.api);
        let (status, body) =
            api("PATCH", &url, &s.carol.token, None, Some(json!({ "title": "x" }))).await;
        assert_eq!((status, body["errcode"].as_str()), (403, Some("M_FORBIDDEN")), "{body}");
        assert_eq!(
            body["error"],
            format!("Only members of the board {slug} can change its tasks.")
        );
    }
    // Bad input: an unknown column, a bad date, a bad limit; nothing changes.
    let task1 = format!("{}/boards/launch/tasks/1", s.api);
    for (patch, why) in [
        (json!({ "status": "nowhere" }), "There is no column nowhere"),
        (json!({ "due": "2026-02-30" }), "not a date"),
        (json!({ "title": "" }), "must not be blank"),
    ] {
        let (status, body) = api("PATCH", &task1, &s.bob.token, None, Some(patch)).await;
        assert_eq!(status, 400, "{body}");
        assert!(body["error"].as_str().is_some_and(|e| e.contains(why)), "{body}");
    }
    let (status, _) =
        api("GET", &format!("{}/boards/launch/tasks?limit=0", s.api), &s.bob.token, None, None)
            .await;
    assert_eq!(status, 400);
    assert_eq!(state(&s, 1).await, before, "refused requests changed the task");

    // Bob comments with his own token: the comment is his, in the task's thread.
    let (status, sent) = api(
        "POST",
        &format!("{task1}/comments"),
        &s.bob.token,
        None,
        Some(json!({ "body": "on it" })),
    )
    .await;
    assert_eq!(status, 200, "{sent}");
    let event_id = sent["event_id"].as_str().expect("event id").to_owned();
    let sender = eventually("bob's comment in the room", async || {
        s.alice
            .timeline(&s.tasks)
            .await
            .iter()
            .filter_map(|r| serde_json::to_value(r).ok())
            .find_map(|e| (e["event_id"] == event_id.as_str()).then(|| e["sender"].clone()))
    })
    .await;
    assert_eq!(sender, "@bob:localhost");

    // Members: bob (no power) may not invite; alice (owner) may, with her own token.
    let carol_url = format!("{}/boards/launch/members/@carol:localhost", s.api);
    let (status, body) = api("PUT", &carol_url, &s.bob.token, None, None).await;
    assert_eq!((status, body["errcode"].as_str()), (403, Some("M_FORBIDDEN")), "{body}");
    let (status, body) = api("PUT", &carol_url, &s.alice.token, None, None).await;
    assert_eq!((status, body["membership"].as_str()), (200, Some("invite")), "{body}");
    let space = s.alice.resolve("#boardroom_launch:localhost").await;
    s.alice.wait_for_membership(&space, &s.carol.user_id, MembershipState::Invite).await;

    // Boards: a client without create_boards is refused; one with it owns what it creates.
    let boards_url = format!("{}/boards", s.api);
    let (status, _) =
        api("POST", &boards_url, TRACKER, Some("ci"), Some(json!({ "slug": "launch2" }))).await;
    assert_eq!(status, 403);
    let (status, made) = api(
        "POST",
        &boards_url,
        "maker-client-token",
        Some("pm"),
        Some(json!({ "slug": "made", "name": "Made by an app" })),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    assert_eq!((made["slug"].as_str(), made["role"].as_str()), (Some("made"), Some("owner")));
    let (_, listed) = api("GET", &boards_url, "maker-client-token", Some("pm"), None).await;
    assert_eq!(listed["boards"][0]["slug"], "made");
    let (status, task) = api(
        "POST",
        &format!("{}/boards/made/tasks", s.api),
        "maker-client-token",
        Some("pm"),
        Some(json!({ "title": "First", "labels": ["setup"] })),
    )
    .await;
    assert_eq!(
        (status, task["number"].clone(), task["labels"].clone()),
        (201, json!(1), json!(["setup"])),
        "{task}"
    );
}

/// A user whose homeserver cannot be reached (`unreachable.invalid`, the one server name the
/// test homeserver federates with, which never resolves): `!board invite` answers at once
/// that their server could not be reached, rather than retrying for minutes while the
/// room's next command waits behind it; over the API the same is a 502 that says so.
/// Nothing changed: no invite in the space.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invite_to_an_unreachable_homeserver_is_answered_and_holds_nothing_back() {
    let s = setup().await;
    let bot = s.stack.boardroom.bot().to_owned();
    let reply = s.alice.command(&s.general, &bot, "!board invite @dave:unreachable.invalid").await;
    assert!(
        reply.contains("@dave:unreachable.invalid could not be invited")
            && reply.contains("unreachable.invalid could not be reached"),
        "{reply}"
    );
    let help = s.alice.command(&s.general, &bot, "!help").await;
    assert!(help.contains("!board invite"), "{help}");

    let url = format!("{}/boards/launch/members/@dave:unreachable.invalid", s.api);
    let (status, body) = api("PUT", &url, &s.alice.token, None, None).await;
    assert_eq!((status, body["errcode"].as_str()), (502, Some("M_UNKNOWN")), "{body}");
    let error = body["error"].as_str().unwrap_or_default();
    assert!(error.contains("unreachable.invalid could not be reached"), "{body}");

    let space = s.alice.resolve("#boardroom_launch:localhost").await;
    let dave = ruma::user_id!("@dave:unreachable.invalid");
    assert_eq!(s.alice.state(&space, "m.room.member", dave.as_str()).await, None);
}
