//! End-to-end: mentions become push notifications and inbox entries; the inbox through the
//! HTTP API; read receipts; a task app commenting as a virtual user; refusals.

use std::time::{Duration, Instant};

use ruma::{
    OwnedEventId, OwnedRoomId,
    api::client::{push::get_notifications, receipt::create_receipt},
    events::{
        Mentions,
        receipt::ReceiptThread,
        relation::Thread,
        room::message::{Relation, RoomMessageEventContent},
    },
};
use serde_json::{Value, json};

use crate::harness::{Launch, Stack, User};

const CONFIG: &str = r#"
[permissions]
board_creators = ["@alice:localhost"]
[[api.clients]]
name = "tracker"
token = "tracker-client-token"
boards = ["launch"]
[[api.clients]]
name = "other"
token = "other-client-token"
boards = ["elsewhere"]
"#;

/// [`Launch`] with task #1, `Ship it`, created by Alice.
struct Setup {
    stack: Stack,
    alice: User,
    bob: User,
    carol: User,
    tasks: OwnedRoomId,
    root: OwnedEventId,
    api: String,
}

async fn setup() -> Setup {
    let Launch { stack, alice, bob, carol, general, tasks, api } = Launch::start(CONFIG).await;
    let bot = stack.boardroom.bot().to_owned();
    alice.command(&general, &bot, "!task new Ship it").await;
    let state = alice.state(&tasks, "dev.boardroom.task", "1").await.expect("task");
    let root = state["root_event_id"].as_str().expect("root").try_into().expect("event id");
    Setup { stack, alice, bob, carol, tasks, root, api }
}

async fn api(
    method: &str,
    url: &str,
    token: Option<&str>,
    user: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let http = reqwest::Client::new();
    let mut req = match method {
        "POST" => http.post(url),
        _ => http.get(url),
    };
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
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

async fn inbox(s: &Setup, user: &User) -> Vec<Value> {
    let (status, page) =
        api("GET", &format!("{}/notifications", s.api), Some(&user.token), None, None).await;
    assert_eq!(status, 200, "{page}");
    page["notifications"].as_array().cloned().unwrap_or_default()
}

async fn unread(s: &Setup, user: &User) -> u64 {
    let (status, body) =
        api("GET", &format!("{}/notifications/unread_count", s.api), Some(&user.token), None, None)
            .await;
    assert_eq!(status, 200, "{body}");
    body["unread"].as_u64().expect("unread")
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

async fn highlighted(user: &User, event: &OwnedEventId) -> bool {
    let mut req = get_notifications::v3::Request::new();
    req.only = Some("highlight".into());
    let n = user.client.send(req, None).await.expect("notifications");
    n.notifications.iter().any(|n| {
        n.event.get_field::<String>("event_id").ok().flatten().as_deref() == Some(event.as_str())
    })
}

fn thread_reply(
    root: &OwnedEventId,
    plain: &str,
    html: Option<&str>,
    mentions: &[&ruma::UserId],
) -> RoomMessageEventContent {
    let mut c = match html {
        Some(h) => RoomMessageEventContent::text_html(plain, h),
        None => RoomMessageEventContent::text_plain(plain),
    };
    c.relates_to = Some(Relation::Thread(Thread::plain(root.clone(), root.clone())));
    c.mentions = Some(Mentions::with_user_ids(mentions.iter().map(|u| (*u).to_owned())));
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mentions_push_and_fill_the_inbox_and_receipts_read_it() {
    let s = setup().await;
    let (alice, bob) = (&s.alice, &s.bob);

    // Bob comments with a pill to Alice, as Element sends it.
    let pill = thread_reply(
        &s.root,
        "alice: please review",
        Some("<a href=\"https://matrix.to/#/@alice:localhost\">alice</a>: please review"),
        &[&alice.user_id],
    );
    let mention = bob.send(&s.tasks, pill).await;
    eventually("alice's highlight", async || highlighted(alice, &mention).await.then_some(()))
        .await;
    let entries = eventually("alice's inbox entry", async || {
        let e = inbox(&s, alice).await;
        (!e.is_empty()).then_some(e)
    })
    .await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["kind"], "mention");
    assert_eq!(entries[0]["event_id"], mention.as_str());
    assert_eq!(entries[0]["sender"], "@bob:localhost");
    assert_eq!(entries[0]["board"], "launch");
    assert_eq!(entries[0]["thread_root"], s.root.as_str());
    assert_eq!(entries[0]["read"], false);
    assert_eq!(unread(&s, alice).await, 1);

    // A comment without a mention on a task Alice watches (she created it): a `comment`
    // entry, and no highlight.
    let plain = bob.send(&s.tasks, thread_reply(&s.root, "another thought", None, &[])).await;
    let entries = eventually("alice's comment entry", async || {
        let e = inbox(&s, alice).await;
        (e.len() == 2).then_some(e)
    })
    .await;
    assert_eq!(
        (entries[0]["kind"].as_str(), entries[0]["event_id"].as_str()),
        (Some("comment"), Some(plain.as_str()))
    );
    assert!(!highlighted(alice, &plain).await, "a plain comment must not highlight");
    assert_eq!(unread(&s, alice).await, 2);

    // Alice reads the thread in her client: a read receipt at the latest comment.
    let mut receipt = create_receipt::v3::Request::new(
        s.tasks.clone(),
        create_receipt::v3::ReceiptType::Read,
        plain.clone(),
    );
    receipt.thread = ReceiptThread::Thread(s.root.clone());
    alice.client.send(receipt, None).await.expect("receipt");
    eventually("the receipt to mark everything read", async || {
        (unread(&s, alice).await == 0).then_some(())
    })
    .await;
    assert!(inbox(&s, alice).await.iter().all(|e| e["read"] == true));

    // A redacted mention takes its entry away.
    let req = ruma::api::client::redact::redact_event::v3::Request::new(
        s.tasks.clone(),
        mention.clone(),
        ruma::TransactionId::new(),
    );
    bob.client.send(req, None).await.expect("redact");
    eventually("the redacted entry to go", async || {
        let e = inbox(&s, alice).await;
        e.iter().all(|n| n["event_id"] != mention.as_str()).then_some(())
    })
    .await;

    // Bob takes a display name (the homeserver tells his rooms): a plain `@Bobby Tables`
    // in a comment, with an empty m.mentions, now names him, once.
    let req = ruma::api::client::profile::set_profile_field::v3::Request::new(
        bob.user_id.clone(),
        ruma::api::client::profile::ProfileFieldValue::DisplayName("Bobby Tables".into()),
    );
    bob.client.send(req, None).await.expect("display name");
    eventually("Bob's new name in the tasks room", async || {
        s.stack.boardroom.store().name_at(&s.tasks, "bobby tables").expect("index")
    })
    .await;
    let named = alice
        .send(&s.tasks, thread_reply(&s.root, "thanks @Bobby Tables, and @nobody", None, &[]))
        .await;
    eventually("the mention by Bob's new display name", async || {
        let bobs = inbox(&s, bob).await;
        bobs.iter().any(|n| n["event_id"] == named.as_str() && n["kind"] == "mention").then_some(())
    })
    .await;
    let bobs = inbox(&s, bob).await;
    assert_eq!(bobs.iter().filter(|n| n["event_id"] == named.as_str()).count(), 1, "{bobs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_app_comments_as_a_virtual_user_and_mentions_notify() {
    let s = setup().await;
    let alice = &s.alice;
    let url = format!("{}/boards/launch/tasks/1/comments", s.api);
    let (status, body) = api(
        "POST",
        &url,
        Some("tracker-client-token"),
        Some("ci"),
        Some(json!({ "body": "@alice the build is green" })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let event: OwnedEventId = body["event_id"].as_str().expect("event_id").try_into().expect("id");

    // Boardroom added m.mentions: a highlight for Alice, and an inbox entry.
    eventually("alice's highlight", async || highlighted(alice, &event).await.then_some(())).await;
    let entries = eventually("alice's inbox", async || {
        let e = inbox(&s, alice).await;
        e.iter().any(|n| n["event_id"] == event.as_str()).then_some(e)
    })
    .await;
    let entry = entries.iter().find(|n| n["event_id"] == event.as_str()).expect("entry");
    assert_eq!(entry["kind"], "mention");
    assert_eq!(entry["sender"], "@boardroom_ci:localhost");

    // It is a reply in the task's thread, sent by the virtual user, with a pill.
    let raw = alice.timeline(&s.tasks).await;
    let sent: Value = raw
        .iter()
        .filter_map(|r| serde_json::to_value(r).ok())
        .find(|e| e["event_id"] == event.as_str())
        .expect("the comment is in the tasks room");
    assert_eq!(sent["sender"], "@boardroom_ci:localhost");
    assert_eq!(sent["content"]["m.relates_to"]["rel_type"], "m.thread");
    assert_eq!(sent["content"]["m.relates_to"]["event_id"], s.root.as_str());
    assert_eq!(sent["content"]["m.mentions"]["user_ids"], json!(["@alice:localhost"]));
    assert!(
        sent["content"]["formatted_body"]
            .as_str()
            .is_some_and(|h| h.contains("https://matrix.to/#/@alice:localhost"))
    );
    // And it is indexed as a comment.
    let comments = eventually("the comment index", async || {
        let c = s.stack.boardroom.store().comments("launch", 1).expect("comments");
        (!c.is_empty()).then_some(c)
    })
    .await;
    assert_eq!(comments[0].author.as_str(), "@boardroom_ci:localhost");

    // An edit that adds a mention notifies only the newly mentioned, once.
    let bob = &s.bob;
    let note = alice.send(&s.tasks, thread_reply(&s.root, "a note", None, &[])).await;
    for text in ["a note for @bob", "a note for @bob!"] {
        let mut edit = RoomMessageEventContent::text_plain(format!("* {text}"));
        edit.relates_to = Some(Relation::Replacement(ruma::events::relation::Replacement::new(
            note.clone(),
            ruma::events::room::message::RoomMessageEventContentWithoutRelation::text_plain(text),
        )));
        alice.send(&s.tasks, edit).await;
    }
    let bot = s.stack.boardroom.bot().to_owned();
    alice.command_in_thread(&s.tasks, &s.root, &bot, "!task status doing").await;
    let bobs = inbox(&s, bob).await;
    let about_note: Vec<&Value> = bobs.iter().filter(|n| n["event_id"] == note.as_str()).collect();
    assert_eq!(about_note.len(), 1, "{bobs:?}");
    assert_eq!(about_note[0]["kind"], "mention");
    // The entry is in the thread of the edited comment, so a receipt there covers it.
    assert_eq!(about_note[0]["thread_root"], s.root.as_str(), "{bobs:?}");

    // A threaded message that is no task's comment: its thread is read from the homeserver.
    let chat_root = alice.send(&s.tasks, RoomMessageEventContent::text_plain("not a task")).await;
    let aside = alice.send(&s.tasks, thread_reply(&chat_root, "an aside", None, &[])).await;
    let mut edit = RoomMessageEventContent::text_plain("* an aside for @bob");
    edit.relates_to = Some(Relation::Replacement(ruma::events::relation::Replacement::new(
        aside.clone(),
        ruma::events::room::message::RoomMessageEventContentWithoutRelation::text_plain(
            "an aside for @bob",
        ),
    )));
    alice.send(&s.tasks, edit).await;
    let entry = eventually("the aside's mention", async || {
        inbox(&s, bob).await.into_iter().find(|n| n["event_id"] == aside.as_str())
    })
    .await;
    assert_eq!(entry["thread_root"], chat_root.as_str(), "{entry}");

    // The virtual user has an inbox of its own through the client token: it commented, so
    // it watches the task, and Alice's note is a comment for it.
    let (status, body) = api(
        "GET",
        &format!("{}/notifications", s.api),
        Some("tracker-client-token"),
        Some("ci"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let kinds: Vec<(&str, &str)> = body["notifications"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|n| Some((n["kind"].as_str()?, n["event_id"].as_str()?)))
        .collect();
    assert_eq!(kinds, [("comment", note.as_str())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outsiders_and_bad_tokens_are_refused_and_change_nothing() {
    let s = setup().await;
    let (alice, bob, carol) = (&s.alice, &s.bob, &s.carol);
    let bot = s.stack.boardroom.bot().to_owned();

    // Mentioning someone who is not in the board notifies nobody.
    let to_carol = bob
        .send(&s.tasks, thread_reply(&s.root, "@carol have a look", None, &[&carol.user_id]))
        .await;
    bob.command_in_thread(&s.tasks, &s.root, &bot, "!task status doing").await;
    assert!(inbox(&s, carol).await.is_empty());
    assert!(!highlighted(carol, &to_carol).await);

    // Autocomplete: members only.
    let url = format!("{}/boards/launch/members?q=al", s.api);
    let (status, body) = api("GET", &url, Some(&carol.token), None, None).await;
    assert_eq!((status, body["errcode"].as_str()), (403, Some("M_FORBIDDEN")));
    let (status, body) = api("GET", &url, Some(&alice.token), None, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["members"][0]["user_id"], "@alice:localhost");
    assert_eq!(body["members"][0]["role"], "owner");
    assert_eq!(body["members"].as_array().map(Vec::len), Some(1));
    let (_, body) =
        api("GET", &format!("{}/boards/launch/members?q=", s.api), Some(&alice.token), None, None)
            .await;
    assert_eq!(body["members"].as_array().map(Vec::len), Some(2), "{body}");

    // Carol sees nothing of Alice's inbox.
    let mention = bob
        .send(
            &s.tasks,
            thread_reply(
                &s.root,
                "alice?",
                Some("<a href=\"https://matrix.to/#/@alice:localhost\">alice</a>?"),
                &[&alice.user_id],
            ),
        )
        .await;
    let entries = eventually("alice's entry", async || {
        let e = inbox(&s, alice).await;
        e.iter().any(|n| n["event_id"] == mention.as_str()).then_some(e)
    })
    .await;
    let id = entries
        .iter()
        .find(|n| n["event_id"] == mention.as_str())
        .and_then(|n| n["id"].as_u64())
        .expect("id");
    assert!(inbox(&s, carol).await.is_empty());
    let (status, body) =
        api("POST", &format!("{}/notifications/{id}/read", s.api), Some(&carol.token), None, None)
            .await;
    assert_eq!((status, body["errcode"].as_str()), (404, Some("M_NOT_FOUND")));
    let before = unread(&s, alice).await;
    assert!(before >= 1);

    // Tokens.
    let url = format!("{}/notifications", s.api);
    let (status, body) = api("GET", &url, None, None, None).await;
    assert_eq!((status, body["errcode"].as_str()), (401, Some("M_MISSING_TOKEN")));
    let (status, body) = api("GET", &url, Some("no-such-token"), None, None).await;
    assert_eq!((status, body["errcode"].as_str()), (401, Some("M_UNKNOWN_TOKEN")));
    let (status, body) = api("GET", &url, Some("tracker-client-token"), None, None).await;
    assert_eq!((status, body["errcode"].as_str()), (400, Some("M_MISSING_PARAM")));
    let comments = format!("{}/boards/launch/tasks/1/comments", s.api);
    // A client out of the board's scope, as a virtual user of its own (a virtual user belongs
    // to the first client that names it, and `ci` is the tracker's below).
    let outsider = Some(json!({"body": "hi"}));
    let (status, body) =
        api("POST", &comments, Some("other-client-token"), Some("outsider"), outsider).await;
    assert_eq!((status, body["errcode"].as_str()), (403, Some("M_FORBIDDEN")));
    let (status, body) =
        api("POST", &comments, Some(&carol.token), None, Some(json!({"body": "hi"}))).await;
    assert_eq!((status, body["errcode"].as_str()), (403, Some("M_FORBIDDEN")));
    let (status, body) = api(
        "POST",
        &comments,
        Some("tracker-client-token"),
        Some("ci"),
        Some(json!({"bdy": "hi"})),
    )
    .await;
    assert_eq!((status, body["errcode"].as_str()), (400, Some("M_BAD_JSON")));
    let resp = reqwest::Client::new()
        .post(&comments)
        .bearer_auth("tracker-client-token")
        .header("X-Boardroom-User", "ci")
        .body("{not json")
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status().as_u16(), 400);
    let (status, body) = api(
        "POST",
        &format!("{}/boards/launch/tasks/99/comments", s.api),
        Some("tracker-client-token"),
        Some("ci"),
        Some(json!({"body": "hi"})),
    )
    .await;
    assert_eq!((status, body["errcode"].as_str()), (404, Some("M_NOT_FOUND")));
    // Nothing changed: no comment from the refused calls, Alice's inbox as it was.
    assert!(
        s.stack
            .boardroom
            .store()
            .comments("launch", 1)
            .expect("comments")
            .iter()
            .all(|c| c.body != "hi")
    );
    assert_eq!(unread(&s, alice).await, before);

    // The OpenAPI document is served.
    let (status, doc) = api("GET", &format!("{}/openapi.json", s.api), None, None, None).await;
    assert_eq!((status, doc["openapi"].as_str()), (200, Some("3.1.0")));
}
