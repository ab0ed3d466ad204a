//! End-to-end, against a real Synapse: signed webhooks. A delivery signed with the source's
//! ed25519 key creates, changes and comments on tasks as the source's virtual user, with
//! the same state event, root and thread a chat command makes; a delivery sent again is
//! applied once; a wrong signature, a stale timestamp, an unknown source, a board outside
//! the source's list and another owner's virtual user are refused and change nothing. A
//! source and an API client of the same name share their virtual users.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use ed25519_dalek::{Signer, SigningKey};
use ruma::{
    OwnedEventId, OwnedRoomId, RoomId,
    events::{
        AnyMessageLikeEvent, AnyTimelineEvent, MessageLikeEvent,
        room::{member::MembershipState, message::Relation},
    },
};
use serde_json::{Value, json};

use crate::harness::{Stack, User};

/// The sender's key (a fixed seed: tests only).
fn ci_key() -> SigningKey {
    SigningKey::from_bytes(&[42; 32])
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
boards = ["demo"]
[[api.clients]]
name = "ci"
token = "ci-client-token"
boards = ["demo"]
[[api.clients]]
name = "tracker"
token = "tracker-client-token"
boards = ["*"]
"#
    )
}

fn now_ms() -> u64 {
    u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_millis())
        .expect("ms")
}

/// A delivery as a sender makes it: the body, its timestamp and signature.
struct Delivery {
    id: String,
    timestamp: String,
    body: String,
    signature: String,
}

impl Delivery {
    fn signed_by(key: &SigningKey, id: &str, at_ms: u64, body: &Value) -> Self {
        let body = body.to_string();
        let timestamp = at_ms.to_string();
        let signature = key.sign(format!("{timestamp}.{body}").as_bytes());
        let signature = base64::engine::general_purpose::STANDARD.encode(signature.to_bytes());
        Delivery { id: id.into(), timestamp, body, signature }
    }

    fn new(id: &str, body: &Value) -> Self {
        Self::signed_by(&ci_key(), id, now_ms(), body)
    }
}

struct Setup {
    stack: Stack,
    alice: User,
    demo_tasks: OwnedRoomId,
    secret_tasks: OwnedRoomId,
    base: String,
}

impl Setup {
    async fn send(&self, source: &str, d: &Delivery) -> (u16, Value) {
        let resp = reqwest::Client::new()
            .post(format!("{}/{source}", self.base))
            .header("content-type", "application/json")
            .header("X-Boardroom-Timestamp", &d.timestamp)
            .header("X-Boardroom-Delivery", &d.id)
            .header("X-Boardroom-Signature", &d.signature)
            .body(d.body.clone())
            .send()
            .await
            .expect("webhook request");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// The API's unread count of the virtual user `user`, asked with a client token: 200
    /// when the client owns (or may claim) the virtual user.
    async fn api_as(&self, token: &str, user: &str) -> (u16, Value) {
        let url = format!(
            "http://{}/_boardroom/api/v1/notifications/unread_count",
            self.stack.boardroom.settings.listen
        );
        let resp = reqwest::Client::new()
            .get(url)
            .bearer_auth(token)
            .header("X-Boardroom-User", user)
            .send()
            .await
            .expect("api request");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Task `n`'s `dev.boardroom.task` state in `room`, as Alice's client reads it.
    async fn task_state(&self, room: &RoomId, n: u64) -> Option<Value> {
        self.alice.state(room, "dev.boardroom.task", &n.to_string()).await
    }
}

async fn board(stack: &Stack, alice: &User, dm: &RoomId, slug: &str) -> OwnedRoomId {
    let bot = stack.boardroom.bot().to_owned();
    alice.command(dm, &bot, &format!("!board create {slug} {slug}")).await;
    alice.join(&format!("#boardroom_{slug}:localhost")).await.expect("space");
    alice.join(&format!("#boardroom_{slug}-tasks:localhost")).await.expect("tasks")
}

async fn setup() -> Setup {
    let stack = Stack::start(&config()).await;
    let bot = stack.boardroom.bot().to_owned();
    let alice = stack.synapse.register("alice").await;
    let dm = alice.create_room(&[&bot]).await;
    alice.wait_for_membership(&dm, &bot, MembershipState::Join).await;
    let demo_tasks = board(&stack, &alice, &dm, "demo").await;
    let secret_tasks = board(&stack, &alice, &dm, "secret").await;
    let base = format!("http://{}/_boardroom/webhooks/v1", stack.boardroom.settings.listen);
    Setup { stack, alice, demo_tasks, secret_tasks, base }
}

/// Alice's view of a message in `room` by `sender` whose body contains `text`: its event id
/// and the thread it is in.
async fn message(
    alice: &User,
    room: &RoomId,
    sender: &str,
    text: &str,
) -> (OwnedEventId, Option<OwnedEventId>) {
    alice
        .wait_for(room, Duration::from_secs(20), &format!("{sender}'s message `{text}`"), |evs| {
            evs.iter().find_map(|e| match e {
                AnyTimelineEvent::MessageLike(AnyMessageLikeEvent::RoomMessage(
                    MessageLikeEvent::Original(m),
                )) if m.sender == sender && m.content.body().contains(text) => {
                    let thread = match &m.content.relates_to {
                        Some(Relation::Thread(t)) => Some(t.event_id.clone()),
                        _ => None,
                    };
                    Some((m.event_id.clone(), thread))
                }
                _ => None,
            })
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_webhook_creates_changes_and_comments_once_as_the_sources_virtual_user() {
    let s = setup().await;
    let ci_user = "@boardroom_deploy-bot:localhost";
    let bot = s.stack.boardroom.bot().to_string();

    // task.create: the task's state event and root, as `!task new` makes them.
    let create = Delivery::new(
        "release-1",
        &json!({"board": "demo", "actor": "deploy-bot", "action": "task.create",
                "title": "Ship 1.4"}),
    );
    let (status, body) = s.send("ci", &create).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((body["number"].as_u64(), body["duplicate"].as_bool()), (Some(1), Some(false)));
    let state = s.task_state(&s.demo_tasks, 1).await.expect("task 1's state event");
    assert_eq!(state["title"], "Ship 1.4");
    assert_eq!(state["status"], "todo");
    assert_eq!(state["created_by"], ci_user, "made as the source's virtual user");
    let (root, _) = message(&s.alice, &s.demo_tasks, &bot, "Ship 1.4").await;
    assert_eq!(state["root_event_id"], root.as_str());
    assert_eq!(body["root_event_id"], root.as_str());
    let (_, feed_thread) =
        message(&s.alice, &s.demo_tasks, &bot, &format!("{ci_user} created demo#1")).await;
    assert_eq!(feed_thread.as_ref(), Some(&root), "the feed entry is in the task's thread");

    // The virtual user belongs to the name `ci`: the API client `ci` acts as it too, the
    // client `tracker` may not.
    let (status, body) = s.api_as("ci-client-token", "deploy-bot").await;
    assert_eq!(status, 200, "the API client of the same name shares it: {body}");
    let (status, body) = s.api_as("tracker-client-token", "deploy-bot").await;
    assert_eq!((status, body["errcode"].as_str()), (403, Some("M_FORBIDDEN")), "{body}");

    // The same delivery again, as sent and re-signed later: answered, not applied twice.
    let resent = Delivery::signed_by(
        &ci_key(),
        "release-1",
        now_ms() + 1000,
        &json!({
        "board": "demo", "actor": "deploy-bot", "action": "task.create", "title": "Ship 1.4"}),
    );
    for d in [&create, &resent] {
        let (status, again) = s.send("ci", d).await;
        assert_eq!(status, 200, "{again}");
        assert_eq!((again["number"].as_u64(), again["duplicate"].as_bool()), (Some(1), Some(true)));
    }
    // The same signed request under a new delivery id (the id is not signed): a replay.
    let replay = Delivery {
        id: "release-1-replayed".into(),
        timestamp: create.timestamp.clone(),
        body: create.body.clone(),
        signature: create.signature.clone(),
    };
    let (status, again) = s.send("ci", &replay).await;
    assert_eq!((status, again["duplicate"].as_bool()), (200, Some(true)), "{again}");
    assert_eq!(s.task_state(&s.demo_tasks, 2).await, None, "no second task");
    assert!(s.stack.boardroom.store().task("demo", 2).expect("read").is_none());

    // task.update: several fields in one delivery, the assignee a Matrix user.
    let update = Delivery::new(
        "release-2",
        &json!({"board": "demo", "actor": "deploy-bot", "action": "task.update", "number": 1,
                "title": "Ship 1.4.1", "status": "doing", "assignees": ["@alice:localhost"],
                "labels": ["release"], "due": "2026-12-31"}),
    );
    let (status, body) = s.send("ci", &update).await;
    assert_eq!(status, 200, "{body}");
    let state = s.task_state(&s.demo_tasks, 1).await.expect("state");
    assert_eq!(state["title"], "Ship 1.4.1");
    assert_eq!(state["status"], "doing");
    assert_eq!(state["assignees"], json!(["@alice:localhost"]));
    assert_eq!(state["labels"], json!(["release"]));
    assert_eq!(state["due"], "2026-12-31");
    // One feed entry in the thread lists every change, by the virtual user.
    let (feed, thread) = message(&s.alice, &s.demo_tasks, &bot, "assigned @alice:localhost").await;
    assert_eq!(thread.as_ref(), Some(&root));
    let feed_body = s
        .alice
        .timeline(&s.demo_tasks)
        .await
        .iter()
        .filter_map(|r| r.deserialize().ok())
        .find_map(|e: AnyTimelineEvent| match e {
            AnyTimelineEvent::MessageLike(AnyMessageLikeEvent::RoomMessage(
                MessageLikeEvent::Original(m),
            )) if m.event_id == feed => Some(m.content.body().to_owned()),
            _ => None,
        })
        .expect("the feed entry");
    assert!(feed_body.starts_with(ci_user), "{feed_body}");
    for said in ["Ship 1.4.1", "doing", "release", "2026-12-31"] {
        assert!(feed_body.contains(said), "the feed entry says {said}: {feed_body}");
    }
    let (status, again) = s.send("ci", &update).await;
    assert_eq!((status, again["duplicate"].as_bool()), (200, Some(true)), "{again}");

    // task.comment: a thread reply by the virtual user, mentioning Alice.
    let comment = Delivery::new(
        "release-3",
        &json!({"board": "demo", "actor": "deploy-bot", "action": "task.comment", "number": 1,
                "body": "Deployed to production, @alice"}),
    );
    let (status, body) = s.send("ci", &comment).await;
    assert_eq!(status, 200, "{body}");
    let (event, thread) = message(&s.alice, &s.demo_tasks, ci_user, "Deployed to production").await;
    assert_eq!(body["event_id"], event.as_str());
    assert_eq!(thread.as_ref(), Some(&root), "the comment is in the task's thread");
    let (status, again) = s.send("ci", &comment).await;
    assert_eq!((status, again["event_id"].as_str()), (200, Some(event.as_str())), "{again}");
    assert_eq!(again["duplicate"], true);
    let comments = s.alice.timeline(&s.demo_tasks).await;
    let posted = comments
        .iter()
        .filter_map(|r| r.deserialize().ok())
        .filter(|e: &AnyTimelineEvent| {
            e.sender().as_str() == ci_user && e.event_type().to_string() == "m.room.message"
        })
        .count();
    assert_eq!(posted, 1, "the comment is posted once");

    // task.delete: the virtual user created the task, so it may delete it.
    let delete = Delivery::new(
        "release-4",
        &json!({"board": "demo", "actor": "deploy-bot", "action": "task.delete", "number": 1}),
    );
    let (status, body) = s.send("ci", &delete).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(s.task_state(&s.demo_tasks, 1).await.expect("state")["deleted"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_refusals_change_nothing() {
    let s = setup().await;
    let store = s.stack.boardroom.store();
    let create = |board: &str| json!({"board": board, "actor": "intruder", "action": "task.create", "title": "Forged"});
    let check = |what: &str, (status, body): (u16, Value), want: (u16, &str)| {
        assert_eq!((status, body["errcode"].as_str()), (want.0, Some(want.1)), "{what}: {body}");
    };

    // Signed by another key.
    let forged =
        Delivery::signed_by(&SigningKey::from_bytes(&[7; 32]), "f-1", now_ms(), &create("demo"));
    check("another key", s.send("ci", &forged).await, (401, "M_UNAUTHORIZED"));
    // A good signature over another body.
    let mut swapped = Delivery::new("f-2", &create("demo"));
    swapped.body = create("demo").to_string().replace("Forged", "Forgef");
    check("another body", s.send("ci", &swapped).await, (401, "M_UNAUTHORIZED"));
    // No signature.
    let mut unsigned = Delivery::new("f-3", &create("demo"));
    unsigned.signature = String::new();
    check("no signature", s.send("ci", &unsigned).await, (401, "M_UNAUTHORIZED"));
    // Signed six minutes ago.
    let stale = Delivery::signed_by(&ci_key(), "f-4", now_ms() - 6 * 60 * 1000, &create("demo"));
    check("a stale timestamp", s.send("ci", &stale).await, (401, "M_UNAUTHORIZED"));
    // An unknown source, with a good signature.
    check(
        "an unknown source",
        s.send("cd", &Delivery::new("f-5", &create("demo"))).await,
        (404, "M_NOT_FOUND"),
    );
    // A board outside the source's list.
    check(
        "out of scope",
        s.send("ci", &Delivery::new("f-6", &create("secret"))).await,
        (403, "M_FORBIDDEN"),
    );
    // A board that does not exist, within `ci`'s list? `ci` has only `demo`: the same 403.
    check(
        "unknown board",
        s.send("ci", &Delivery::new("f-7", &create("nowhere"))).await,
        (403, "M_FORBIDDEN"),
    );

    // A virtual user another owner (the API client `tracker`) used first.
    let (status, body) = s.api_as("tracker-client-token", "tracker-bot").await;
    assert_eq!(status, 200, "{body}");
    let theirs = json!({"board": "demo", "actor": "tracker-bot", "action": "task.create",
                        "title": "Forged"});
    let (status, body) = s.send("ci", &Delivery::new("f-8", &theirs)).await;
    check("another owner's virtual user", (status, body.clone()), (403, "M_FORBIDDEN"));
    assert!(body["error"].as_str().is_some_and(|e| e.contains("belongs to another")), "{body}");

    // Nothing changed: no task, no delivery remembered, no virtual user claimed.
    assert_eq!(s.task_state(&s.demo_tasks, 1).await, None);
    assert_eq!(s.task_state(&s.secret_tasks, 1).await, None);
    assert!(store.task("demo", 1).expect("read").is_none());
    assert!(store.task("secret", 1).expect("read").is_none());
    for id in ["f-1", "f-2", "f-3", "f-4", "f-6", "f-7", "f-8"] {
        assert_eq!(store.webhook_delivery("ci", id).expect("read"), None, "{id}");
    }
    let intruder = ruma::user_id!("@boardroom_intruder:localhost");
    assert_eq!(store.virtual_user(intruder).expect("read"), None, "no virtual user claimed");

    // A refused delivery sent again, now well signed, is applied: refusals were not
    // remembered as deliveries.
    let (status, body) = s.send("ci", &Delivery::new("f-1", &create("demo"))).await;
    assert_eq!((status, body["number"].as_u64()), (200, Some(1)), "{body}");
    assert_eq!(s.task_state(&s.demo_tasks, 1).await.expect("state")["title"], "Forged");
}

/// `boardroom webhook-keygen` needs no config, and prints a private key whose signatures
/// verify with the public key it prints, the form `check-config` takes.
#[test]
fn webhook_keygen_prints_a_key_pair_that_signs_and_verifies_without_a_config() {
    let out = std::process::Command::new(crate::harness::boardroom_exe())
        .args(["--config", "/nonexistent/boardroom.toml", "webhook-keygen"])
        .output()
        .expect("run boardroom webhook-keygen");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let value = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{key} = \"")))
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or_else(|| panic!("no {key} in {text}"))
            .to_owned()
    };
    let engine = base64::engine::general_purpose::STANDARD;
    let seed: [u8; 32] =
        engine.decode(value("private_key")).expect("base64").try_into().expect("32 bytes");
    let public = boardroom::config::parse_public_key(&value("public_key")).expect("public key");
    let signature = SigningKey::from_bytes(&seed).sign(b"1780000000000.{}");
    public.verify_strict(b"1780000000000.{}", &signature).expect("the pair matches");
    assert!(text.contains("-----BEGIN PRIVATE KEY-----"), "{text}");
}
