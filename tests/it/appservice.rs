//! The appservice API through the router (`App::router` driven with `oneshot`), on a real
//! RocksDB in a temporary directory. The outbox worker is not started, so the actions each
//! transaction causes stay in the outbox where the test reads them.

use std::time::{Duration, Instant};

use axum::body::Body;
use boardroom::{app::App, domain::Action, store::inbound::PendingEntry};
use http::{Request, StatusCode};
use ruma::events::room::message::Relation;
use serde_json::{Value, json};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::harness::test_config;

struct Fixture {
    app: App,
    _dir: tempfile::TempDir,
    hs_token: String,
    tasks: std::sync::Mutex<JoinSet<()>>,
    shutdown: CancellationToken,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn fixture() -> Fixture {
    let f = fixture_without_processing(|_| {});
    f.start_processing();
    f
}

/// A fixture whose inbound queue is not processed until [`Fixture::start_processing`].
fn fixture_without_processing(tune: impl FnOnce(&mut boardroom::config::Config)) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(
        "http://127.0.0.1:9",
        "127.0.0.1:9".parse().expect("addr"),
        &dir.path().join("db"),
        "[permissions]\nboard_creators = [\"@*:localhost\"]",
    );
    tune(&mut config);
    let settings = config.validate().expect("valid");
    let hs_token = settings.hs_token.expose().to_owned();
    let app = App::new(settings).expect("app");
    let shutdown = CancellationToken::new();
    Fixture { app, _dir: dir, hs_token, tasks: std::sync::Mutex::new(JoinSet::new()), shutdown }
}

impl Fixture {
    fn start_processing(&self) {
        let mut tasks = self.tasks.lock().expect("tasks");
        self.app.spawn_dispatcher(&mut tasks, &self.shutdown);
    }

    async fn call(&self, req: Request<Body>) -> (StatusCode, Value) {
        let resp = self.app.router().oneshot(req).await.expect("infallible");
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.expect("body");
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    fn put_txn(&self, txn: &str, body: impl Into<Body>, token: Option<&str>) -> Request<Body> {
        let mut b = Request::put(format!("/_matrix/app/v1/transactions/{txn}"))
            .header("content-type", "application/json");
        if let Some(t) = token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        b.body(body.into()).expect("request")
    }

    async fn txn(&self, txn: &str, body: Value) -> StatusCode {
        let token = self.hs_token.clone();
        self.call(self.put_txn(txn, body.to_string(), Some(&token))).await.0
    }

    /// Waits until every accepted entry has been processed, then returns the outbox.
    async fn processed_outbox(&self) -> Vec<Action> {
        let store = &self.app.ctx.store;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !store.pending_from(0, 1).expect("pending").is_empty() {
            assert!(Instant::now() < deadline, "entries were not processed");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        store
            .outbox_from(0, 1000)
            .expect("outbox")
            .into_iter()
            .map(|(_, v)| serde_json::from_slice(&v).expect("action"))
            .collect()
    }

    fn pending(&self) -> Vec<PendingEntry> {
        self.app.ctx.store.pending_from(0, 1000).expect("pending")
    }
}

fn message(event_id: &str, sender: &str, body: &str) -> Value {
    json!({
        "type": "m.room.message",
        "event_id": event_id,
        "room_id": "!room:localhost",
        "sender": sender,
        "origin_server_ts": 1,
        "content": { "msgtype": "m.text", "body": body },
    })
}

fn replied_to(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::SendMessage { content, .. } => match &content.relates_to {
                Some(Relation::Reply(r)) => Some(r.in_reply_to.event_id.to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn tokens_are_checked_and_refusals_store_nothing() {
    let f = fixture();
    let body = json!({ "events": [message("$a", "@alice:localhost", "!help")] }).to_string();

    let (status, err) = f.call(f.put_txn("1", body.clone(), None)).await;
    assert_eq!(
        (status, err["errcode"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("M_UNAUTHORIZED"))
    );
    let (status, err) = f.call(f.put_txn("1", body.clone(), Some("wrong"))).await;
    assert_eq!((status, err["errcode"].as_str()), (StatusCode::FORBIDDEN, Some("M_FORBIDDEN")));
    // The legacy query-string token works too, and a wrong one is refused the same way.
    let req = Request::put("/_matrix/app/v1/transactions/1?access_token=wrong")
        .body(Body::from(body.clone()))
        .expect("request");
    assert_eq!(f.call(req).await.0, StatusCode::FORBIDDEN);
    for path in
        ["/_matrix/app/v1/users/@boardroom:localhost", "/_matrix/app/v1/rooms/%23x:localhost"]
    {
        let (status, _) = f.call(Request::get(path).body(Body::empty()).expect("request")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
    }
    assert!(f.pending().is_empty(), "a refused transaction left something behind");
    assert!(!f.app.ctx.store.is_event_seen("$a").expect("read"));
}

#[tokio::test]
async fn malformed_bodies_are_refused_with_matrix_codes() {
    let f = fixture();
    let token = f.hs_token.clone();
    let (status, err) = f.call(f.put_txn("1", "{not json", Some(&token))).await;
    assert_eq!((status, err["errcode"].as_str()), (StatusCode::BAD_REQUEST, Some("M_NOT_JSON")));
    let (status, err) = f.call(f.put_txn("2", r#"{"events": "nope"}"#, Some(&token))).await;
    assert_eq!((status, err["errcode"].as_str()), (StatusCode::BAD_REQUEST, Some("M_BAD_JSON")));
    let huge = format!(
        r#"{{"events": [], "pad": "{}"}}"#,
        "x".repeat(boardroom::appservice::MAX_BODY_BYTES)
    );
    let (status, err) = f.call(f.put_txn("3", huge, Some(&token))).await;
    assert_eq!(
        (status, err["errcode"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("M_TOO_LARGE"))
    );
    assert!(f.pending().is_empty());

    // A body of 100 events of 60 KiB each is accepted.
    let events: Vec<Value> = (0..100)
        .map(|i| message(&format!("$big{i}"), "@alice:localhost", &"y".repeat(60 * 1024)))
        .collect();
    assert_eq!(f.txn("4", json!({ "events": events })).await, StatusCode::OK);

    let (status, err) =
        f.call(Request::get("/_matrix/app/v1/nope").body(Body::empty()).expect("request")).await;
    assert_eq!((status, err["errcode"].as_str()), (StatusCode::NOT_FOUND, Some("M_UNRECOGNIZED")));
    let (status, err) = f
        .call(
            Request::get("/_matrix/app/v1/transactions/1")
                .header("authorization", format!("Bearer {token}"))
                .body(Body::empty())
                .expect("request"),
        )
        .await;
    assert_eq!(
        (status, err["errcode"].as_str()),
        (StatusCode::METHOD_NOT_ALLOWED, Some("M_UNRECOGNIZED"))
    );
}

#[tokio::test]
async fn transactions_take_effect_once_by_event_id() {
    let f = fixture();
    let first = json!({ "events": [message("$help1", "@alice:localhost", "!help")] });

    assert_eq!(f.txn("1", first.clone()).await, StatusCode::OK);
    assert_eq!(replied_to(&f.processed_outbox().await), vec!["$help1"]);

    // The same transaction again: acknowledged, no new effect.
    assert_eq!(f.txn("1", first.clone()).await, StatusCode::OK);
    // The same events under a new transaction id: no new effect.
    assert_eq!(f.txn("2", first).await, StatusCode::OK);
    assert_eq!(replied_to(&f.processed_outbox().await), vec!["$help1"]);

    // A reused transaction id with new events (the homeserver restarted): processed.
    let again = json!({ "events": [message("$help2", "@alice:localhost", "!help")] });
    assert_eq!(f.txn("1", again).await, StatusCode::OK);
    assert_eq!(replied_to(&f.processed_outbox().await), vec!["$help1", "$help2"]);
}

#[tokio::test]
async fn a_bad_event_is_skipped_and_never_blocks_the_rest() {
    let f = fixture();
    let body = json!({ "events": [
        { "type": "m.room.message", "room_id": "!room:localhost", "sender": "@alice:localhost" },
        { "type": "m.room.message", "event_id": "$broken", "room_id": "!room:localhost",
          "sender": "not a user id", "origin_server_ts": 1, "content": { "msgtype": "m.text", "body": "!help" } },
        message("$ok", "@alice:localhost", "!help"),
        message("$plain", "@alice:localhost", "just talking"),
        message("$echo", "@boardroom:localhost", "!help"),
        message("$virtual", "@boardroom_bot1:localhost", "!help"),
    ]});
    assert_eq!(f.txn("1", body).await, StatusCode::OK);
    assert_eq!(
        replied_to(&f.processed_outbox().await),
        vec!["$ok"],
        "only the person's command is answered"
    );
    // And the next transaction goes through as usual.
    let next = json!({ "events": [message("$next", "@alice:localhost", "!nonsense")] });
    assert_eq!(f.txn("2", next).await, StatusCode::OK);
    assert_eq!(replied_to(&f.processed_outbox().await), vec!["$ok", "$next"]);
}

#[tokio::test]
async fn invites_are_accepted_from_creators_only() {
    let f = fixture();
    let invite = |id: &str, room: &str, sender: &str| {
        json!({
            "type": "m.room.member", "event_id": id, "room_id": room, "sender": sender,
            "state_key": "@boardroom:localhost", "origin_server_ts": 1,
            "content": { "membership": "invite" },
        })
    };
    let body = json!({ "events": [
        invite("$i1", "!a:localhost", "@alice:localhost"),
        invite("$i2", "!b:localhost", "@mallory:elsewhere.example"),
    ]});
    assert_eq!(f.txn("1", body).await, StatusCode::OK);
    let mut actions: Vec<String> = f
        .processed_outbox()
        .await
        .iter()
        .map(|a| match a {
            Action::JoinRoom { room_id, .. } => format!("join {room_id}"),
            Action::LeaveRoom { room_id, reason, .. } => {
                assert!(reason.as_deref().is_some_and(|r| r.contains("board_creators")));
                format!("leave {room_id}")
            }
            other => format!("unexpected {other:?}"),
        })
        .collect();
    actions.sort();
    assert_eq!(actions, vec!["join !a:localhost", "leave !b:localhost"]);
}

#[tokio::test]
async fn ephemeral_data_is_read_under_both_keys() {
    let f = fixture();
    let body = json!({
        "events": [],
        "ephemeral": [
            { "type": "m.typing", "room_id": "!room:localhost",
              "content": { "user_ids": ["@alice:localhost", "@boardroom:localhost"] } },
        ],
        "de.sorunome.msc2409.ephemeral": [
            { "type": "m.presence", "sender": "@bob:localhost", "content": { "presence": "online" } },
            { "type": "m.receipt", "room_id": "!room:localhost",
              "content": { "$ev": { "m.read": { "@bob:localhost": { "ts": 1 } } } } },
        ],
    });
    assert_eq!(f.txn("1", body).await, StatusCode::OK);
    let live = &f.app.ctx.live;
    let typing: Vec<String> =
        live.typing(ruma::room_id!("!room:localhost")).iter().map(|u| u.to_string()).collect();
    assert_eq!(typing, vec!["@alice:localhost"], "the bot's own typing is filtered");
    let presence = live.presence(ruma::user_id!("@bob:localhost")).expect("bob's presence");
    assert_eq!(presence.state, ruma::presence::PresenceState::Online);
    // The receipt was stored durably and then processed.
    assert!(f.processed_outbox().await.is_empty());
}

#[tokio::test]
async fn queries_and_ping() {
    let f = fixture();
    let token = f.hs_token.clone();
    let get = |path: &str| {
        Request::get(path)
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .expect("request")
    };
    assert_eq!(f.call(get("/_matrix/app/v1/users/@boardroom:localhost")).await.0, StatusCode::OK);
    let (status, err) = f.call(get("/_matrix/app/v1/users/@boardroom_ghost:localhost")).await;
    assert_eq!((status, err["errcode"].as_str()), (StatusCode::NOT_FOUND, Some("M_NOT_FOUND")));
    let (status, err) = f.call(get("/_matrix/app/v1/rooms/%23boardroom_x:localhost")).await;
    assert_eq!((status, err["errcode"].as_str()), (StatusCode::NOT_FOUND, Some("M_NOT_FOUND")));
    let ping = Request::post("/_matrix/app/v1/ping")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Body::from(r#"{"transaction_id":"t1"}"#))
        .expect("request");
    let (status, body) = f.call(ping).await;
    assert_eq!((status, body), (StatusCode::OK, json!({})));
}

/// Records `!board:localhost` as a board's chat room.
fn board_room(f: &Fixture) {
    use boardroom::domain::board::{RoomKind, RoomRecord};
    let record = RoomRecord {
        board: "ops".into(),
        name: "general".into(),
        kind: RoomKind::Chat,
        private: false,
        pending_move_from: None,
    };
    f.app.ctx.store.put_room(ruma::room_id!("!board:localhost"), &record).expect("room");
}

/// `n` people joining the board room of [`board_room`]: each is stored and processed (in a
/// room that is no board's they would not be stored at all).
fn joins(from: usize, n: usize) -> Value {
    let events: Vec<Value> = (from..from + n)
        .map(|i| {
            json!({
                "type": "m.room.member",
                "event_id": format!("$held{i}"),
                "room_id": "!board:localhost",
                "sender": format!("@user{i}:localhost"),
                "state_key": format!("@user{i}:localhost"),
                "origin_server_ts": 1,
                "content": { "membership": "join" },
            })
        })
        .collect();
    json!({ "events": events })
}

/// Past `max_backlog` entries waiting, a transaction is stored at once and its answer held
/// until processing brings the queue back to the limit: a homeserver sending one
/// transaction at a time then sends no faster than Boardroom processes.
#[tokio::test]
async fn a_transaction_is_answered_once_processing_catches_up_past_max_backlog() {
    let f = std::sync::Arc::new(fixture_without_processing(|c| {
        c.appservice.max_backlog = 5;
        c.appservice.backlog_hold_secs = 30;
    }));
    board_room(&f);
    // Under the limit: answered at once.
    assert_eq!(f.txn("1", joins(0, 5)).await, StatusCode::OK);
    // Past it: stored, and the answer waits.
    let held = {
        let f = f.clone();
        tokio::spawn(async move { f.txn("2", joins(5, 10)).await })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while f.pending().len() < 15 {
        assert!(Instant::now() < deadline, "the held transaction was not stored");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!held.is_finished(), "answered with 15 entries waiting and a limit of 5");
    assert_eq!(f.app.ctx.backlog.waiting(), 15);

    f.start_processing();
    let status = tokio::time::timeout(Duration::from_secs(10), held)
        .await
        .expect("answered once processing caught up")
        .expect("task");
    assert_eq!(status, StatusCode::OK);
    assert!(f.pending().len() <= 5, "answered before the queue came back to the limit");
    let text = f.app.ctx.metrics.render();
    assert!(
        text.contains("boardroom_appservice_transaction_hold_seconds_count 1"),
        "one held transaction counted: {text}"
    );
    f.processed_outbox().await;
    assert_eq!(f.app.ctx.backlog.waiting(), 0);
}

/// A hold ends after `backlog_hold_secs` even if processing stays behind (the homeserver
/// would give up on the answer after 60 s); the events stay stored.
#[tokio::test]
async fn a_held_transaction_is_answered_after_the_longest_hold() {
    let f = fixture_without_processing(|c| {
        c.appservice.max_backlog = 2;
        c.appservice.backlog_hold_secs = 1;
    });
    board_room(&f);
    let started = Instant::now();
    assert_eq!(f.txn("1", joins(0, 4)).await, StatusCode::OK);
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(1), "answered after {took:?}, before the hold ended");
    assert_eq!(f.pending().len(), 4);
    // With the limit off, never held.
    let f = fixture_without_processing(|c| c.appservice.max_backlog = 0);
    board_room(&f);
    let started = Instant::now();
    assert_eq!(f.txn("1", joins(0, 4)).await, StatusCode::OK);
    assert!(started.elapsed() < Duration::from_secs(1), "held with max_backlog = 0");
}

fn in_room(mut event: Value, room: &str) -> Value {
    event["room_id"] = json!(room);
    event
}

fn pending_ids(f: &Fixture) -> Vec<String> {
    f.pending()
        .iter()
        .map(|p| {
            let v: Value = serde_json::from_slice(&p.json).expect("json");
            v["event_id"].as_str().unwrap_or_default().to_owned()
        })
        .collect()
}

fn ignored(f: &Fixture) -> u64 {
    let text = f.app.ctx.metrics.render();
    text.lines()
        .find_map(|l| l.strip_prefix("boardroom_appservice_events_ignored_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no ignored count in\n{text}"))
}

/// Another user's membership in a room that is neither a board's room nor its space calls
/// for nothing either: it is not stored. In a board room or space it is (the index keeps
/// who is a member), and so is the bot's own (an invite it answers).
#[tokio::test]
async fn memberships_that_call_for_nothing_are_not_stored() {
    use boardroom::domain::board::BoardRecord;
    let f = fixture_without_processing(|_| {});
    let store = &f.app.ctx.store;
    board_room(&f);
    store
        .put_board(&BoardRecord {
            slug: "ops".into(),
            space_id: ruma::owned_room_id!("!space:localhost"),
            name: "Ops".into(),
            created_by: ruma::owned_user_id!("@alice:localhost"),
            created_by_event: ruma::owned_event_id!("$create"),
            creators: vec![],
            power_users: Default::default(),
            users_default: 0,
            columns: vec!["todo".into()],
        })
        .expect("board");
    let member = |event_id: &str, room: &str, user: &str, membership: &str| {
        json!({
            "type": "m.room.member", "event_id": event_id, "room_id": room,
            "sender": user, "state_key": user, "origin_server_ts": 1,
            "content": { "membership": membership, "displayname": "Someone" },
        })
    };
    let bot = f.app.ctx.settings.bot_user_id.to_string();
    let body = json!({ "events": [
        member("$elsewhere", "!room:localhost", "@bob:localhost", "join"),
        member("$in_board_room", "!board:localhost", "@bob:localhost", "join"),
        member("$in_space", "!space:localhost", "@bob:localhost", "join"),
        member("$left_elsewhere", "!room:localhost", "@carol:localhost", "leave"),
        // A message in the space calls for nothing: only a board room's messages count.
        in_room(message("$talk_in_space", "@alice:localhost", "hello"), "!space:localhost"),
        // The bot's own membership is stored (and, as it may change rooms, so is all that
        // follows in the transaction).
        member("$bot", "!room:localhost", &bot, "leave"),
        member("$after_bot", "!room:localhost", "@dave:localhost", "join"),
    ]});
    assert_eq!(f.txn("1", body).await, StatusCode::OK);
    assert_eq!(pending_ids(&f), ["$in_board_room", "$in_space", "$bot", "$after_bot"]);
    assert_eq!(ignored(&f), 3);
    for id in ["$elsewhere", "$left_elsewhere", "$talk_in_space"] {
        assert!(!store.is_event_seen(id).expect("store"), "{id} was stored");
    }
}

/// A message in a room that is no board's that cannot be a command calls for nothing: it is
/// not stored. Commands, events in board rooms and state are. While an entry waits that
/// can make a room a board's (a tombstone, Boardroom's own state, the bot's membership, a
/// command), every message is stored, whatever its room.
#[tokio::test]
async fn messages_that_call_for_nothing_are_not_stored_while_no_room_may_change() {
    let f = fixture_without_processing(|_| {});
    board_room(&f);
    let image = json!({
        "type": "m.room.message", "event_id": "$image", "room_id": "!room:localhost",
        "sender": "@alice:localhost", "origin_server_ts": 1,
        "content": { "msgtype": "m.image", "body": "!a.png", "url": "mxc://localhost/a" },
    });
    let member = json!({
        "type": "m.room.member", "event_id": "$member", "room_id": "!room:localhost",
        "sender": "@bob:localhost", "state_key": "@bob:localhost", "origin_server_ts": 1,
        "content": { "membership": "join" },
    });
    let body = json!({ "events": [
        message("$talk", "@alice:localhost", "just talking"),
        image,
        message("$bang", "@alice:localhost", "ship it!"),
        in_room(message("$board", "@alice:localhost", "just talking"), "!board:localhost"),
        member,
    ]});
    assert_eq!(f.txn("1", body).await, StatusCode::OK);
    assert_eq!(pending_ids(&f), ["$bang", "$board", "$member"]);
    assert_eq!(ignored(&f), 2);
    // "ship it!" can be a command: while it waits, nothing is left out.
    assert!(!f.app.ctx.backlog.rooms_settled());
    let later = json!({ "events": [message("$later", "@alice:localhost", "more talk")] });
    assert_eq!(f.txn("2", later).await, StatusCode::OK);
    assert_eq!(pending_ids(&f), ["$bang", "$board", "$member", "$later"]);

    f.start_processing();
    f.processed_outbox().await;
    assert!(f.app.ctx.backlog.rooms_settled(), "every entry that could change rooms is done");
    let quiet = json!({ "events": [message("$quiet", "@alice:localhost", "quiet talk")] });
    assert_eq!(f.txn("3", quiet).await, StatusCode::OK);
    assert_eq!(ignored(&f), 3);
    // A tombstone earlier in the same transaction: the message after it is stored.
    let tombstone = json!({
        "type": "m.room.tombstone", "event_id": "$tomb", "room_id": "!room:localhost",
        "sender": "@alice:localhost", "state_key": "", "origin_server_ts": 2,
        "content": { "body": "moved", "replacement_room": "!new:localhost" },
    });
    let upgrade = json!({ "events": [
        tombstone,
        in_room(message("$first", "@alice:localhost", "hello new room"), "!new:localhost"),
    ]});
    assert_eq!(f.txn("4", upgrade).await, StatusCode::OK);
    assert_eq!(ignored(&f), 3, "nothing left out after the tombstone");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f.app.ctx.backlog.rooms_settled() {
        assert!(Instant::now() < deadline, "the tombstone was never processed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
