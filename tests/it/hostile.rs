//! End-to-end, against a real Synapse: hostile content. Titles, labels, comments, board
//! names, a display name and a room name carrying markup, `javascript:` and `data:` links,
//! quotes, entities, bidi controls, zero-width characters and 10,000-character strings go
//! in through chat commands, the HTTP API and a signed webhook. Every message Boardroom
//! then wrote (the bot's, and its virtual users') is read back from Synapse and rendered as
//! a Matrix client would: only elements the Matrix specification allows, only `matrix.to`
//! links, each hostile string shown as text, no bidi control left. Oversized input is
//! refused with a reply that fits in an event. The API answers the same strings as JSON
//! data, with `X-Content-Type-Options: nosniff`.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use ed25519_dalek::{Signer, SigningKey};
use ruma::{
    RoomId,
    api::client::{
        message::get_message_events,
        profile::{ProfileFieldValue, set_profile_field},
        state::send_state_event,
    },
    events::{EmptyStateKey, room::name::RoomNameEventContent},
};
use ruma_html::{Html, NodeData, NodeRef};
use serde_json::{Value, json};

use crate::harness::{Launch, User};

/// Text people may give, one line each and within a title's 256 characters.
const HOSTILE: &[&str] = &[
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "<a href=\"javascript:alert(1)\">click</a>",
    "javascript:alert(1)",
    "data:text/html;base64,PHNjcmlwdD4=",
    "\"><b onmouseover=\"alert(1)\">bold</b>",
    "' onclick='alert(1)' x='",
    "&lt;b&gt; &amp;amp; &#60;i&#62;",
    "<!-- c --><![CDATA[x]]></p></li></ul>",
    "[link](javascript:alert(1)) <https://evil.example>",
    "gnp.\u{202E}exe.txt\u{202C} and \u{2067}RLI\u{2069} \u{202D}LRO\u{202A}LRE\u{202B}RLE",
    "close\u{2069}\u{2069}\u{202C} early",
    "zero\u{200B}width\u{200C}non\u{200D}joiner\u{2060}\u{FEFF}",
    "\u{200B}!task delete #1",
];

/// Labels: no spaces, commas or invisible characters.
const LABELS: &[&str] =
    &["<b>x</b>", "javascript:alert(1)", "\"><i>", "&amp;", "<img/src=x/onerror=alert(1)>"];

/// A display name (Synapse keeps at most 256 characters of one).
const DISPLAY_NAME: &str = "Al<img src=x onerror=alert(1)>ice \u{202E}nimda\u{202C}";

/// The elements the Matrix specification allows in `formatted_body`.
const ALLOWED_TAGS: &[&str] = &[
    "del",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "blockquote",
    "p",
    "a",
    "ul",
    "ol",
    "sup",
    "sub",
    "li",
    "b",
    "i",
    "u",
    "strong",
    "em",
    "s",
    "code",
    "hr",
    "br",
    "div",
    "table",
    "thead",
    "tbody",
    "tr",
    "th",
    "td",
    "caption",
    "pre",
    "span",
    "img",
    "details",
    "summary",
    "mx-reply",
];

const CONFIG_CLIENTS: &str = r#"
[[api.clients]]
name = "tracker"
token = "tracker-client-token"
boards = ["launch", "evil"]
create_boards = true
"#;
const TRACKER: &str = "tracker-client-token";

fn ci_key() -> SigningKey {
    SigningKey::from_bytes(&[7; 32])
}

fn config() -> String {
    let public =
        base64::engine::general_purpose::STANDARD.encode(ci_key().verifying_key().to_bytes());
    format!(
        r#"
[permissions]
board_creators = ["@alice:localhost"]
[[webhooks.sources]]
name = "ci"
public_key = "{public}"
boards = ["launch"]
{CONFIG_CLIENTS}"#
    )
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// `s` as a message shows it: without bidi controls.
fn shown(s: &str) -> String {
    s.chars().filter(|c| !is_bidi_control(*c)).collect()
}

/// A formatted body as a client shows it: its text, elements, attributes and links.
#[derive(Debug, Default)]
struct Rendered {
    text: String,
    tags: Vec<String>,
    attrs: Vec<String>,
    hrefs: Vec<String>,
}

fn walk(node: &NodeRef, out: &mut Rendered) {
    match node.data() {
        NodeData::Text(t) => out.text.push_str(&t.borrow()),
        NodeData::Element(e) => {
            let name = e.name.local.to_string();
            for a in e.attrs.borrow().iter() {
                let (key, value) = (a.name.local.to_string(), a.value.to_string());
                if name == "a" && key == "href" {
                    out.hrefs.push(value.clone());
                }
                out.attrs.push(format!("{name}.{key}={value}"));
            }
            out.tags.push(name);
        }
        NodeData::Other => out.tags.push("#comment-or-other".into()),
        _ => {}
    }
    for child in node.children() {
        walk(&child, out);
    }
}

fn render(html: &str) -> Rendered {
    let mut out = Rendered::default();
    for child in Html::parse(html).children() {
        walk(&child, &mut out);
    }
    out
}

/// A message Boardroom wrote, as a client shows it.
struct Shown {
    event_id: String,
    body: String,
    rendered: Rendered,
}

/// Renders a message content (or an edit's new content) and asserts it is inert: only
/// allowed elements, `href` the only attribute and a `matrix.to` link, no bidi control in
/// either body.
fn inert(event_id: &str, content: &Value) -> Option<Shown> {
    let body = content["body"].as_str()?.to_owned();
    assert!(!body.chars().any(is_bidi_control), "{event_id}: a bidi control in {body:?}");
    let html = content["formatted_body"].as_str().unwrap_or_default();
    if !html.is_empty() {
        assert_eq!(content["format"], "org.matrix.custom.html", "{event_id}");
    }
    assert!(!html.chars().any(is_bidi_control), "{event_id}: a bidi control in {html:?}");
    let rendered = render(html);
    for tag in &rendered.tags {
        assert!(ALLOWED_TAGS.contains(&tag.as_str()), "{event_id}: element <{tag}> in {html}");
    }
    for attr in &rendered.attrs {
        assert!(attr.starts_with("a.href="), "{event_id}: attribute {attr} in {html}");
    }
    for href in &rendered.hrefs {
        assert!(href.starts_with("https://matrix.to/#/"), "{event_id}: a link to {href} in {html}");
    }
    Some(Shown { event_id: event_id.to_owned(), body, rendered })
}

/// Every message in `room` not sent by `people` (so: by Boardroom's bot or virtual
/// users), each checked with [`inert`]; edits give their new content too.
async fn boardroom_messages(reader: &User, room: &RoomId, people: &[&str]) -> Vec<Shown> {
    let mut out = Vec::new();
    let mut from: Option<String> = None;
    for _ in 0..20 {
        let mut req = get_message_events::v3::Request::backward(room.to_owned());
        req.limit = 100u32.into();
        req.from.clone_from(&from);
        let resp = reader.client.send(req, None).await.expect("messages");
        for raw in &resp.chunk {
            let e: Value = serde_json::from_str(raw.json().get()).expect("event json");
            let sender = e["sender"].as_str().unwrap_or_default();
            if e["type"] != "m.room.message" || people.contains(&sender) {
                continue;
            }
            let id = e["event_id"].as_str().unwrap_or_default();
            out.extend(inert(id, &e["content"]));
            if e["content"]["m.new_content"].is_object() {
                out.extend(inert(id, &e["content"]["m.new_content"]));
            }
        }
        match resp.end {
            Some(end) if !resp.chunk.is_empty() => from = Some(end),
            _ => break,
        }
    }
    out
}

/// Asserts that some message of `shown` shows `want` (bidi controls aside) as text in its
/// formatted body and in its body.
fn assert_shown(shown: &[Shown], want: &str, where_: &str) {
    let want = self::shown(want);
    let found = shown.iter().find(|s| s.rendered.text.contains(&want));
    let Some(found) = found else { panic!("no message in {where_} shows {want:?} as text") };
    assert!(found.body.contains(&want), "{}: {want:?} not in {:?}", found.event_id, found.body);
}

struct Api {
    base: String,
}

impl Api {
    /// A request with the tracker's token as its virtual user `app`; the status, the
    /// headers that matter here and the JSON answer.
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let http = reqwest::Client::new();
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(TRACKER)
            .header("X-Boardroom-User", "app");
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("api request");
        let status = resp.status().as_u16();
        assert_json_nosniff(&resp, path);
        (status, resp.json().await.unwrap_or(Value::Null))
    }
}

/// The answer is JSON and tells browsers not to sniff it.
fn assert_json_nosniff(resp: &reqwest::Response, what: &str) {
    let h = resp.headers();
    let ct = h.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
    assert!(ct.starts_with("application/json"), "{what}: Content-Type {ct:?}");
    assert_eq!(
        h.get("x-content-type-options").and_then(|v| v.to_str().ok()),
        Some("nosniff"),
        "{what}: no nosniff in {} {h:?}",
        resp.status()
    );
}

async fn webhook(base: &str, id: &str, body: &Value) -> (u16, Value) {
    let body = body.to_string();
    let ts =
        u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_millis())
            .expect("ms")
            .to_string();
    let sig = ci_key().sign(format!("{ts}.{body}").as_bytes());
    let sig = base64::engine::general_purpose::STANDARD.encode(sig.to_bytes());
    let resp = reqwest::Client::new()
        .post(format!("{base}/_boardroom/webhooks/v1/ci"))
        .header("content-type", "application/json")
        .header("X-Boardroom-Timestamp", ts)
        .header("X-Boardroom-Delivery", id)
        .header("X-Boardroom-Signature", sig)
        .body(body)
        .send()
        .await
        .expect("webhook request");
    let status = resp.status().as_u16();
    assert_json_nosniff(&resp, "webhook");
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn eventually<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(t) = f().await {
            return t;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_content_is_shown_as_text_and_answered_as_json_data() {
    let s = Launch::start(&config()).await;
    let bot = s.stack.boardroom.bot().to_owned();
    let listen = s.stack.boardroom.settings.listen;
    let api = Api { base: s.api.clone() };
    let alice = &s.alice;
    let people = ["@alice:localhost", "@bob:localhost", "@carol:localhost"];

    // A display name and a room name, set from a Matrix client.
    let req = set_profile_field::v3::Request::new(
        alice.user_id.clone(),
        ProfileFieldValue::DisplayName(DISPLAY_NAME.to_owned()),
    );
    alice.client.send(req, None).await.expect("display name");
    let room_name = HOSTILE[2];
    let req = send_state_event::v3::Request::new(
        s.general.clone(),
        &EmptyStateKey,
        &RoomNameEventContent::new(room_name.to_owned()),
    )
    .expect("request");
    alice.client.send(req, None).await.expect("room name");

    // Chat: a task per hostile title, hostile labels, a list, the board's info, refusals
    // that repeat hostile words.
    for title in HOSTILE {
        let reply = alice.command(&s.general, &bot, &format!("!task new {title}")).await;
        assert!(reply.starts_with("Created launch#"), "{reply}");
    }
    let labels: Vec<String> = LABELS.iter().map(|l| format!("+{l}")).collect();
    let reply =
        alice.command(&s.general, &bot, &format!("!task label #1 {}", labels.join(" "))).await;
    assert!(reply.contains("changed the labels"), "{reply}");
    let list = alice.command(&s.general, &bot, "!task list").await;
    assert!(list.contains("Tasks of Launch"), "{list}");
    let info = alice.command(&s.general, &bot, "!board info").await;
    assert!(info.contains("Board Launch (launch)"), "{info}");
    for h in HOSTILE {
        let first = h.split_whitespace().next().unwrap_or_default();
        alice.command(&s.general, &bot, &format!("!board room {h}")).await;
        alice.command(&s.general, &bot, &format!("!task status #1 {first}")).await;
        alice.command(&s.general, &bot, &format!("!board invite {first}")).await;
    }
    // Task #1 is there, never deleted (a title that starts like a command is a title).
    let task1 = api.call("GET", "/boards/launch/tasks/1", None).await;
    assert_eq!((task1.0, &task1.1["deleted"]), (200, &json!(false)), "{}", task1.1);

    // 10,000 characters: refused with a reply that names the limit and fits in an event.
    let long = "<".repeat(10_000);
    for (command, limit) in [
        (format!("!task new {long}"), "at most 256 characters"),
        (format!("!task rename #1 {}", "\"".repeat(10_000)), "at most 256 characters"),
        (format!("!task label #1 +{long}"), "1 to 32 characters"),
        (format!("!board create big {}", "é".repeat(10_000)), "at most 128 characters"),
        (format!("!board create {long}"), "1 to 32 characters"),
        (format!("!x{long}"), "Unknown command"),
        (format!("!task status #1 {long}"), "There is no column"),
    ] {
        let reply = alice.command(&s.general, &bot, &command).await;
        assert!(reply.contains(limit), "{}: {}", &command[..20], &reply[..reply.len().min(300)]);
        assert!(reply.len() < 4_000, "{}: a reply of {} bytes", &command[..20], reply.len());
    }

    // An admin's client writes a 10,000-character board name into the space's state: the
    // bot puts its own back, and the listings keep the board's name.
    let space = alice.resolve("#boardroom_launch:localhost").await;
    let mut board_state =
        alice.state(&space, "dev.boardroom.board", "").await.expect("the board's state");
    board_state["name"] = json!("<".repeat(10_000));
    let raw = ruma::serde::Raw::new(&board_state).expect("raw").cast_unchecked();
    let req = send_state_event::v3::Request::new_raw(
        space.clone(),
        "dev.boardroom.board".into(),
        String::new(),
        raw,
    );
    alice.client.send(req, None).await.expect("an admin's board state");
    eventually("the board's own state put back", async || {
        let now = alice.state(&space, "dev.boardroom.board", "").await?;
        (now["name"] == "Launch").then_some(())
    })
    .await;
    let list = alice.command(&s.general, &bot, "!task list").await;
    assert!(list.starts_with("Tasks of Launch:"), "{}", &list[..list.len().min(200)]);

    // A board named with hostile text, through chat; its space and rooms are named after it.
    let board_name = HOSTILE[10];
    let reply = alice.command(&s.general, &bot, &format!("!board create evil {board_name}")).await;
    assert!(reply.starts_with("Board "), "{reply}");
    let evil_space = alice.join("#boardroom_evil:localhost").await.expect("evil space");
    let evil_general = alice.join("#boardroom_evil-general:localhost").await.expect("general");
    for room in [&evil_space, &evil_general] {
        let name = alice.state(room, "m.room.name", "").await.expect("a room name");
        let name = name["name"].as_str().expect("name");
        assert!(name.starts_with(&shown(board_name)), "{name:?}");
        assert!(!name.chars().any(is_bidi_control), "{name:?}");
    }
    let topic = alice.state(&evil_space, "m.room.topic", "").await.expect("a topic");
    assert!(!topic.to_string().chars().any(is_bidi_control), "{topic}");
    let reply = alice.command(&evil_general, &bot, "!task list").await;
    assert!(reply.contains(&shown(board_name)), "{reply}");
    alice.command(&evil_general, &bot, "!board info").await;

    // The API: a task with a hostile title and labels, a rename, comments, one mentioning
    // Alice by her display name; oversized input refused.
    let (status, created) = api
        .call(
            "POST",
            "/boards/launch/tasks",
            Some(json!({ "title": HOSTILE[5], "labels": LABELS })),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let api_task = created["number"].as_u64().expect("number");
    let (status, patched) = api
        .call(
            "PATCH",
            &format!("/boards/launch/tasks/{api_task}"),
            Some(json!({ "title": HOSTILE[11] })),
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    for (i, h) in HOSTILE.iter().enumerate() {
        let body = if i == 0 { format!("cc @{DISPLAY_NAME}: {h}") } else { (*h).to_owned() };
        let (status, sent) = api
            .call(
                "POST",
                &format!("/boards/launch/tasks/{api_task}/comments"),
                Some(json!({ "body": body })),
            )
            .await;
        assert_eq!(status, 200, "{sent}");
    }
    // Chat over the API, in general: the same strings as messages of the virtual user.
    for h in HOSTILE {
        let (status, sent) = api
            .call(
                "POST",
                "/boards/launch/rooms/general/messages",
                Some(json!({ "body": format!("said: {h}") })),
            )
            .await;
        assert_eq!(status, 200, "{sent}");
    }
    for (path, body, why) in [
        ("/boards/launch/tasks", json!({ "title": long }), "at most 256 characters"),
        ("/boards/launch/tasks", json!({ "title": "x", "labels": [long] }), "1 to 32 characters"),
        (
            "/boards/launch/tasks",
            json!({ "title": "x", "labels": (0..33).map(|i| format!("l{i}")).collect::<Vec<_>>() }),
            "at most 32 labels",
        ),
        ("/boards/launch/tasks", json!({ "title": "two\nlines" }), "one line"),
        (
            // Within the 16,000 bytes of a comment, too large once formatted.
            &format!("/boards/launch/tasks/{api_task}/comments"),
            json!({ "body": "\"".repeat(10_000) }),
            "too long once formatted",
        ),
        (
            "/boards",
            json!({ "slug": "evil", "name": "x".repeat(10_000) }),
            "at most 128 characters",
        ),
        (
            "/boards",
            json!({ "slug": "evil", "name": "x", "topic": "x".repeat(10_000) }),
            "at most 1000 characters",
        ),
        (
            "/boards/launch/rooms/general/messages",
            json!({ "body": "<".repeat(16_000) }),
            "too long once formatted",
        ),
    ] {
        let (status, err) = api.call("POST", path, Some(body)).await;
        assert_eq!(status, 400, "{path}: {err}");
        let error = err["error"].as_str().unwrap_or_default();
        assert!(error.contains(why), "{path}: {error}");
        assert!(error.len() < 1_000, "{path}: an error of {} bytes", error.len());
    }

    // A signed webhook: a task and a comment.
    let base = format!("http://{listen}");
    let (status, hooked) = webhook(
        &base,
        "hostile-1",
        &json!({ "board": "launch", "actor": "deploy", "action": "task.create",
                 "title": HOSTILE[3], "labels": [LABELS[1]] }),
    )
    .await;
    assert_eq!(status, 200, "{hooked}");
    let hook_task = hooked["number"].as_u64().expect("number");
    let (status, commented) = webhook(
        &base,
        "hostile-2",
        &json!({ "board": "launch", "actor": "deploy", "action": "task.comment",
                 "number": hook_task, "body": HOSTILE[8] }),
    )
    .await;
    assert_eq!(status, 200, "{commented}");
    let (status, refused) = webhook(
        &base,
        "hostile-3",
        &json!({ "board": "launch", "actor": "deploy", "action": "task.create", "title": long }),
    )
    .await;
    assert_eq!(status, 400, "{refused}");

    // What Boardroom wrote, as a client renders it.
    let general = boardroom_messages(alice, &s.general, &people).await;
    let tasks = eventually("every comment in the tasks room", async || {
        let shown = boardroom_messages(alice, &s.tasks, &people).await;
        shown.iter().any(|m| m.rendered.text.contains(HOSTILE[8])).then_some(shown)
    })
    .await;
    let evil = boardroom_messages(alice, &evil_general, &people).await;
    eprintln!(
        "rendered {} messages in general, {} in tasks, {} in the evil board",
        general.len(),
        tasks.len(),
        evil.len()
    );
    for h in HOSTILE {
        // Each title: its root in the tasks room, its creation and the list in general.
        assert_shown(&tasks, h, "the tasks room");
        assert_shown(&general, h, "general");
        // Each comment.
        assert!(
            tasks.iter().filter(|m| m.rendered.text.contains(&shown(h))).count() >= 2,
            "{h:?}: a root and a comment"
        );
    }
    for l in LABELS {
        assert_shown(&tasks, l, "the tasks room");
    }
    for h in HOSTILE {
        assert_shown(&general, &format!("said: {h}"), "general");
    }
    assert_shown(&evil, board_name, "the evil board's general");
    // The comment that mentions Alice by her display name: a pill to her, and the name as
    // text, never as an element.
    let mention = tasks
        .iter()
        .find(|m| m.rendered.text.starts_with("cc "))
        .expect("the comment mentioning Alice");
    assert!(
        mention.rendered.hrefs.iter().all(|h| h == "https://matrix.to/#/@alice:localhost"),
        "{:?}",
        mention.rendered.hrefs
    );
    // Links: only those Boardroom made, to users, rooms and events (checked in `inert`);
    // and there are some, so the check ran.
    assert!(general.iter().any(|m| !m.rendered.hrefs.is_empty()));

    // The API answers the strings as they were given, as JSON data.
    let (status, page) = api.call("GET", "/boards/launch/tasks?limit=100", None).await;
    assert_eq!(status, 200, "{page}");
    let titles: Vec<&str> = page["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .filter_map(|t| t["title"].as_str())
        .collect();
    for h in HOSTILE.iter().chain([&HOSTILE[11], &HOSTILE[3]]) {
        assert!(titles.contains(h), "{h:?} not among {titles:?}");
    }
    let (_, one) = api.call("GET", "/boards/launch/tasks/1", None).await;
    assert_eq!(one["labels"], json!(LABELS), "{one}");
    let (_, comments) =
        api.call("GET", &format!("/boards/launch/tasks/{api_task}/comments?limit=100"), None).await;
    let bodies: Vec<&str> = comments["comments"]
        .as_array()
        .expect("comments")
        .iter()
        .filter_map(|c| c["body"].as_str())
        .collect();
    // A comment is a message: it went out, and is stored, without bidi controls.
    for h in &HOSTILE[1..] {
        assert!(bodies.contains(&shown(h).as_str()), "{h:?} not among {bodies:?}");
    }
    // Alice's display name, as she set it.
    eventually("Alice's display name in the board's space", async || {
        let (status, members) = api.call("GET", "/boards/launch/members", None).await;
        assert_eq!(status, 200, "{members}");
        let alice = members["members"]
            .as_array()?
            .iter()
            .find(|m| m["user_id"] == "@alice:localhost")?
            .clone();
        (alice["display_name"] == DISPLAY_NAME).then_some(())
    })
    .await;
    let (status, boards) = api.call("GET", "/boards", None).await;
    assert_eq!(status, 200, "{boards}");
    // Every answer is JSON with nosniff (checked in `call`), whatever its status.
    api.call("GET", "/boards/launch/rooms", None).await;
    api.call("GET", "/boards/launch/rooms/general/messages?limit=50", None).await;
    api.call("GET", "/boards/launch/members?q=al", None).await;
    let (status, _) = api.call("GET", "/no/such/path", None).await;
    assert_eq!(status, 404);
}
