//! End-to-end: crash and fault defects, against a real Synapse. A stand-in between
//! Boardroom and Synapse (raw HTTP/1.1 on loopback) passes requests on, and on cue holds
//! one, or passes it on and loses the answer: the moments a crash or a dying homeserver
//! leave behind, made deterministic.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use boardroom::{
    app::App,
    outbox,
    store::inbound::{EntryKind, PendingEntry},
    testing as handler,
};
use ruma::{
    OwnedEventId, OwnedRoomId, api::client::room::get_room_event,
    events::room::member::MembershipState,
};
use serde_json::Value;
use tokio::{
    net::{TcpListener, TcpStream},
    sync::oneshot,
};
use tokio_util::sync::CancellationToken;

use crate::{
    harness::{Stack, User, replies_to},
    standin::{forward, read_request, respond},
};

const CONFIG: &str = "[permissions]\nboard_creators = [\"@alice:localhost\"]";

/// What the stand-in does with the request its rule picks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// Passes nothing on and answers nothing; once released, closes the connection.
    Hold,
    /// Passes the request on (the homeserver carries it out) but not the answer; once
    /// released, closes the connection.
    LoseAnswer,
    /// Answers 403 `M_FORBIDDEN` at once, as a homeserver that refuses the bot does.
    Refuse,
}

/// The one request to fault: the first whose method, path and body match.
struct Rule {
    method: &'static str,
    path_has: &'static str,
    body_has: &'static str,
    fault: Fault,
    /// Told when the request was picked (and, for `LoseAnswer`, carried out).
    fired: oneshot::Sender<()>,
    /// Cancelled to let the connection close.
    release: CancellationToken,
}

/// A stand-in homeserver that passes every request on to Synapse, one per connection.
#[derive(Clone)]
struct Proxy {
    url: String,
    rule: Arc<Mutex<Option<Rule>>>,
}

impl Proxy {
    async fn start(target: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the stand-in");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let proxy = Proxy { url, rule: Arc::default() };
        let (served, target) = (proxy.clone(), target.to_owned());
        let http = reqwest::Client::new();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(serve(sock, served.clone(), target.clone(), http.clone()));
            }
        });
        proxy
    }

    /// Faults the next request that matches; returns when it fired, and its release.
    fn arm(
        &self,
        method: &'static str,
        path_has: &'static str,
        body_has: &'static str,
        fault: Fault,
    ) -> (oneshot::Receiver<()>, CancellationToken) {
        let (fired, rx) = oneshot::channel();
        let release = CancellationToken::new();
        *self.rule.lock().expect("lock") =
            Some(Rule { method, path_has, body_has, fault, fired, release: release.clone() });
        (rx, release)
    }
}

async fn serve(mut sock: TcpStream, proxy: Proxy, target: String, http: reqwest::Client) {
    let Some(request) = read_request(&mut sock).await else { return };
    let picked = {
        let mut rule = proxy.rule.lock().expect("lock");
        let (method, path, _, body) = &request;
        let hit = rule.as_ref().is_some_and(|r| {
            r.method == method
                && path.contains(r.path_has)
                && String::from_utf8_lossy(body).contains(r.body_has)
        });
        if hit { rule.take() } else { None }
    };
    if let Some(rule) = picked {
        if rule.fault == Fault::Refuse {
            let body = br#"{"errcode":"M_FORBIDDEN","error":"You are not allowed to send here"}"#;
            respond(&mut sock, 403, body).await;
            let _ = rule.fired.send(());
            return;
        }
        if rule.fault == Fault::LoseAnswer {
            assert!(forward(&http, &target, &request).await.is_some(), "Synapse did not answer");
        }
        let _ = rule.fired.send(());
        rule.release.cancelled().await;
        return; // The connection closes unanswered.
    }
    // Synapse down: the connection closes unanswered, as a dying homeserver's would.
    let Some((status, body)) = forward(&http, &target, &request).await else { return };
    respond(&mut sock, status, &body).await;
}

/// Alice creates the board `launch` and joins its `general` and `tasks` rooms.
async fn board(stack: &Stack) -> (User, OwnedRoomId, OwnedRoomId) {
    let bot = stack.boardroom.bot().to_owned();
    let alice = stack.synapse.register("alice").await;
    let dm = alice.create_room(&[&bot]).await;
    alice.wait_for_membership(&dm, &bot, MembershipState::Join).await;
    let reply = alice.command(&dm, &bot, "!board create launch Launch").await;
    assert!(reply.contains("created"), "{reply}");
    alice.join("#boardroom_launch:localhost").await.expect("space");
    let general = alice.join("#boardroom_launch-general:localhost").await.expect("general");
    let tasks = alice.join("#boardroom_launch-tasks:localhost").await.expect("tasks");
    (alice, general, tasks)
}

/// Event `event` of `room` as the inbound queue holds it.
async fn entry(user: &User, room: &OwnedRoomId, event: &OwnedEventId) -> PendingEntry {
    let raw = user
        .timeline(room)
        .await
        .into_iter()
        .find(|e| {
            e.get_field::<String>("event_id").ok().flatten().as_deref() == Some(event.as_str())
        })
        .unwrap_or_else(|| panic!("no event {event}"));
    PendingEntry {
        seq: 1_000_000,
        kind: EntryKind::Timeline,
        room_id: room.to_string(),
        json: raw.json().get().as_bytes().to_vec(),
        may_change_rooms: false,
        plain: false,
    }
}

/// Runs `entry` through the handler and sends what it produced, as Boardroom would.
async fn handle_and_send(app: &App, entry: &PendingEntry) {
    for action in handler::handle(&app.ctx, entry).await {
        outbox::execute(&app.client, &action).await.expect("sent");
    }
}

/// A `!task new` killed after posting its root and before recording its task, and another
/// room's `!task new` run first after the restart: the replay must keep its number, so its
/// root, its state and its reply all say the same number, and no root says a number twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_wrong_task_number_on_a_root_after_a_crash_race() {
    let mut stack = Stack::start(CONFIG).await;
    let bot = stack.boardroom.bot().to_owned();
    let (alice, general, tasks) = board(&stack).await;
    // Boardroom stops; the two commands below are run by hand, in the order of the race.
    stack.boardroom.stop().await;
    let first = alice.say(&tasks, "!task new First in line").await;
    let second = alice.say(&general, "!task new Second in line").await;
    let first_entry = entry(&alice, &tasks, &first).await;
    let second_entry = entry(&alice, &general, &second).await;

    // A Boardroom whose requests go through the stand-in runs the first command, and is
    // killed once the task's root is posted, while its state event is on its way.
    let proxy = Proxy::start(&stack.synapse.url).await;
    let (fired, release) = proxy.arm("PUT", "/state/dev.boardroom.task/", "", Fault::Hold);
    let mut settings = stack.boardroom.settings.clone();
    settings.homeserver_url = proxy.url.clone();
    let app = App::new(settings).expect("open boardroom");
    let (ctx, killed_entry) = (app.ctx.clone(), first_entry.clone());
    let run = tokio::spawn(async move { handler::handle(&ctx, &killed_entry).await });
    tokio::time::timeout(Duration::from_secs(30), fired)
        .await
        .expect("the task's state event was never sent")
        .expect("the stand-in fired");
    run.abort();
    let _ = run.await;
    release.cancel();
    drop(app);

    // Restarted, Boardroom runs the other room's command first, then the first again.
    let app = App::new(stack.boardroom.settings.clone()).expect("reopen boardroom");
    handle_and_send(&app, &second_entry).await;
    handle_and_send(&app, &first_entry).await;

    // What Alice sees: each reply names a task whose state and root say its number.
    let mut numbers = Vec::new();
    for (room, command) in [(&tasks, &first), (&general, &second)] {
        let reply = alice
            .wait_for(room, Duration::from_secs(30), "the reply to !task new", |ev| {
                replies_to(ev, &bot, command).first().map(|m| m.content.body().to_owned())
            })
            .await;
        let n: u64 = reply
            .strip_prefix("Created launch#")
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("not a creation: {reply}"));
        let state =
            alice.state(&tasks, "dev.boardroom.task", &n.to_string()).await.expect("task state");
        assert_eq!(state["number"], n, "{state}");
        let root: OwnedEventId =
            state["root_event_id"].as_str().and_then(|r| r.try_into().ok()).expect("root_event_id");
        let event = alice
            .client
            .send(get_room_event::v3::Request::new(tasks.clone(), root), None)
            .await
            .expect("the root")
            .event;
        let body = event.get_field::<Value>("content").ok().flatten().unwrap_or_default()["body"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            body.starts_with(&format!("launch#{n} ")),
            "the reply and state say #{n}; the root says: {body}"
        );
        numbers.push(n);
    }
    numbers.sort_unstable();
    assert_eq!(numbers, [1, 2], "unique and gap-free");
    // One root per task in the tasks room: no stale root says a number twice.
    let mut roots: Vec<String> = alice
        .timeline(&tasks)
        .await
        .iter()
        .filter(|e| e.get_field::<String>("sender").ok().flatten().as_deref() == Some(bot.as_str()))
        .filter_map(|e| e.get_field::<Value>("content").ok().flatten())
        .filter(|c| c.get("m.relates_to").is_none())
        .filter_map(|c| c["body"].as_str().and_then(|b| b.split(' ').next()).map(str::to_owned))
        .filter(|b| b.starts_with("launch#"))
        .collect();
    roots.sort();
    assert_eq!(roots, ["launch#1", "launch#2"]);
}

/// The bot's reply to `!help` lands in Synapse, Synapse stops before its answer gets back
/// (the connection breaks), and starts again having forgotten the transaction id; with
/// `restart_boardroom`, Boardroom is stopped meanwhile too and started again after Synapse.
/// The reply must show once.
async fn reply_once_across_a_homeserver_restart(restart_boardroom: bool) {
    let mut stack = Stack::start(CONFIG).await;
    let bot = stack.boardroom.bot().to_owned();
    let proxy = Proxy::start(&stack.synapse.url).await;
    stack.restart_boardroom_via(&proxy.url).await;
    let alice = stack.synapse.register("alice").await;
    let room = alice.create_room(&[&bot]).await;
    alice.wait_for_membership(&room, &bot, MembershipState::Join).await;

    let (landed, release) =
        proxy.arm("PUT", "/send/m.room.message/", "Boardroom commands", Fault::LoseAnswer);
    let help = alice.say(&room, "!help").await;
    tokio::time::timeout(Duration::from_secs(30), landed)
        .await
        .expect("the reply was never sent")
        .expect("the stand-in fired");
    stack.stop_synapse().await;
    release.cancel();
    if restart_boardroom {
        // Stopped while the reply's outcome is unknown, Boardroom starts again once Synapse
        // is back, talking to it directly: only what it wrote down before tells it.
        stack.boardroom.stop().await;
        stack.start_synapse_again().await;
        let direct = stack.synapse.url.clone();
        stack.restart_boardroom_via(&direct).await;
    } else {
        stack.start_synapse_again().await;
    }

    let deadline = Instant::now() + Duration::from_secs(90);
    while !stack.boardroom.store().outbox_from(0, 10).expect("outbox").is_empty() {
        assert!(Instant::now() < deadline, "the reply never left the outbox");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let events: Vec<_> =
        alice.timeline(&room).await.iter().filter_map(|r| r.deserialize().ok()).collect();
    let replies = replies_to(&events, &bot, &help);
    assert_eq!(replies.len(), 1, "the reply shows {} times", replies.len());
    assert!(replies[0].content.body().contains("Boardroom commands"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_reply_posted_twice_across_a_homeserver_restart() {
    reply_once_across_a_homeserver_restart(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_reply_posted_twice_across_a_homeserver_and_boardroom_restart() {
    reply_once_across_a_homeserver_restart(true).await;
}

/// `!task new` posts its task's root directly (not through the outbox): the root lands,
/// Synapse stops before its answer gets back, and starts again having forgotten the
/// transaction id. The task must still have one root, which its state names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_task_root_posted_twice_across_a_homeserver_restart() {
    let mut stack = Stack::start(CONFIG).await;
    let bot = stack.boardroom.bot().to_owned();
    let proxy = Proxy::start(&stack.synapse.url).await;
    stack.restart_boardroom_via(&proxy.url).await;
    let (alice, general, tasks) = board(&stack).await;

    let (landed, release) =
        proxy.arm("PUT", "/send/m.room.message/", "launch#1 Only one root", Fault::LoseAnswer);
    let command = alice.say(&general, "!task new Only one root").await;
    tokio::time::timeout(Duration::from_secs(30), landed)
        .await
        .expect("the root was never sent")
        .expect("the stand-in fired");
    stack.stop_synapse().await;
    release.cancel();
    stack.start_synapse_again().await;

    let reply = alice
        .wait_for(&general, Duration::from_secs(60), "the reply to !task new", |ev| {
            replies_to(ev, &bot, &command).first().map(|m| m.content.body().to_owned())
        })
        .await;
    assert!(reply.starts_with("Created launch#1 "), "{reply}");
    let roots: Vec<String> = alice
        .timeline(&tasks)
        .await
        .iter()
        .filter(|e| e.get_field::<String>("sender").ok().flatten().as_deref() == Some(bot.as_str()))
        .filter(|e| {
            e.get_field::<Value>("content").ok().flatten().is_some_and(|c| {
                c.get("m.relates_to").is_none()
                    && c["body"].as_str().is_some_and(|b| b.starts_with("launch#1 "))
            })
        })
        .filter_map(|e| e.get_field::<String>("event_id").ok().flatten())
        .collect();
    assert_eq!(roots.len(), 1, "the root shows {} times", roots.len());
    let state = alice.state(&tasks, "dev.boardroom.task", "1").await.expect("task state");
    assert_eq!(state["root_event_id"], roots[0].as_str());
}

/// A stand-in homeserver for the look-back's bounds: `/messages` pages of `events`
/// (newest first, `per_page` each, `end` naming the next page), and sends counted.
#[derive(Clone, Default)]
struct History {
    events: Arc<Vec<Value>>,
    pages_read: Arc<Mutex<usize>>,
    sends: Arc<Mutex<usize>>,
}

async fn history_messages(
    axum::extract::State(h): axum::extract::State<History>,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> axum::Json<Value> {
    *h.pages_read.lock().expect("lock") += 1;
    let from: usize = q.get("from").and_then(|f| f.parse().ok()).unwrap_or(0);
    let limit: usize = q.get("limit").and_then(|l| l.parse().ok()).unwrap_or(10);
    let chunk: Vec<Value> = h.events.iter().skip(from).take(limit).cloned().collect();
    let end = (from + limit < h.events.len()).then(|| (from + limit).to_string());
    axum::Json(serde_json::json!({ "start": from.to_string(), "end": end, "chunk": chunk }))
}

async fn history_send(axum::extract::State(h): axum::extract::State<History>) -> axum::Json<Value> {
    *h.sends.lock().expect("lock") += 1;
    axum::Json(serde_json::json!({ "event_id": "$resent" }))
}

/// `n` messages by the bot, newest first, `ts` ms old and older by 1 ms each; the one at
/// `ours` (if any) carries `txn` as its transaction id.
fn history(n: usize, ts: u64, ours: Option<usize>, txn: &str) -> Vec<Value> {
    (0..n)
        .map(|i| {
            let txn_id = if Some(i) == ours { txn.to_owned() } else { format!("other{i}") };
            serde_json::json!({
                "type": "m.room.message", "event_id": format!("$e{i}"), "room_id": "!a:localhost",
                "sender": "@boardroom:localhost", "origin_server_ts": ts - i as u64,
                "content": { "msgtype": "m.notice", "body": "hi" },
                "unsigned": { "transaction_id": txn_id },
            })
        })
        .collect()
}

/// Runs one outbox message marked as sent at `sent_at` against `events`; returns the pages
/// read and the sends made.
async fn look_back(events: Vec<Value>, sent_at: u64) -> (usize, usize) {
    use axum::routing::{get, put};
    let h = History { events: Arc::new(events), ..History::default() };
    let app = axum::Router::new()
        .route("/_matrix/client/v3/rooms/{room}/messages", get(history_messages))
        .route("/_matrix/client/v3/rooms/{room}/send/{ty}/{txn}", put(history_send))
        .with_state(h.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await.expect("mock") });

    let dir = tempfile::tempdir().expect("tempdir");
    let store = boardroom::store::Store::open(dir.path()).expect("store");
    let action = boardroom::domain::Action::SendMessage {
        room_id: ruma::owned_room_id!("!a:localhost"),
        as_user: None,
        txn_id: boardroom::domain::action::derived_txn_id("$cmd", 0),
        content: Box::new(ruma::events::room::message::RoomMessageEventContent::notice_plain("hi")),
    };
    store.enqueue_outbound(&[serde_json::to_vec(&action).expect("encode")]).expect("enqueue");
    store.outbox_mark_sent(1, sent_at).expect("mark");
    let client = boardroom::matrix::HomeserverClient::new(
        &url,
        boardroom::matrix::Auth::Appservice(boardroom::config::Secret::new("as")),
    )
    .expect("client");
    let shutdown = CancellationToken::new();
    let worker = tokio::spawn(outbox::run(
        store.clone(),
        client,
        Arc::new(tokio::sync::Notify::new()),
        shutdown.clone(),
    ));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !store.outbox_from(0, 10).expect("outbox").is_empty() {
        assert!(Instant::now() < deadline, "the outbox did not drain");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    worker.await.expect("worker");
    assert_eq!(store.outbox_sent_at(1).expect("mark"), None, "the mark goes with the entry");
    let pages = *h.pages_read.lock().expect("lock");
    let sends = *h.sends.lock().expect("lock");
    (pages, sends)
}

/// The look for a message that may have landed reads far enough to find it among newer
/// messages, and no further than its bounds: the first attempt's time less the slack, and
/// `FIND_SENT_PAGES` pages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_look_for_a_landed_message_is_bounded() {
    use boardroom::matrix::client::{FIND_SENT_PAGE, FIND_SENT_PAGES};
    let txn = boardroom::domain::action::derived_txn_id("$cmd", 0).to_string();
    let now = boardroom::domain::now_ms();
    let page = FIND_SENT_PAGE as usize;
    // Found on the second page, behind a page of newer messages: not sent again.
    assert_eq!(look_back(history(150, now, Some(120), &txn), now - 1000).await, (2, 0));
    // Not there, and every message is older than the first attempt less the slack: one page
    // read, then sent.
    let old = now - 10 * 60 * 1000;
    assert_eq!(look_back(history(3 * page, old, None, &txn), now).await, (1, 1));
    // Not among the newest pages: the look gives up and sends it (a duplicate risked
    // rather than a message lost).
    let many = history((FIND_SENT_PAGES + 2) * page, now, Some(FIND_SENT_PAGES * page), &txn);
    assert_eq!(look_back(many, now - 1000).await, (FIND_SENT_PAGES, 1));
}

/// Empties Synapse's stored transactions for appservices (Synapse is stopped): the events
/// in them are lost to the appservice, as the events Synapse holds in memory are when it
/// stops (Synapse's issue 11637). Returns how many transactions there were.
fn lose_appservice_transactions(synapse_dir: &std::path::Path) -> usize {
    let script = r#"
import sqlite3, sys, yaml
cfg = yaml.safe_load(open(sys.argv[1] + "/homeserver.yaml"))
db = sqlite3.connect(cfg["database"]["args"]["database"])
n = db.execute("delete from application_services_txns").rowcount
db.commit()
print(n)
"#;
    let out = std::process::Command::new(crate::harness::synapse_python())
        .args(["-c", script])
        .arg(synapse_dir)
        .output()
        .expect("run python");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().parse().expect("a count")
}

/// A command the homeserver never pushed, because it lost it in a restart, is read back
/// from the room's history when Boardroom next hears from the homeserver, and answered
/// once. Without the catch-up it would never be answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_the_homeserver_lost_in_a_restart_is_caught_up_and_answered_once() {
    let mut stack = Stack::start(CONFIG).await;
    let bot = stack.boardroom.bot().to_owned();
    let (alice, general, _) = board(&stack).await;
    // Boardroom down: Synapse keeps the command in a transaction it retries...
    stack.boardroom.stop().await;
    let command = alice.say(&general, "!task new caught up after a homeserver restart").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut lost = 0;
    while lost == 0 {
        assert!(Instant::now() < deadline, "Synapse never stored the transaction");
        tokio::time::sleep(Duration::from_millis(500)).await;
        stack.stop_synapse().await;
        // ...and loses it across its restart.
        lost = lose_appservice_transactions(stack.synapse.dir.path());
        stack.start_synapse_again().await;
    }
    stack.boardroom = crate::harness::Boardroom::start(
        stack.boardroom.settings.clone(),
        stack.boardroom.config_path.clone(),
    )
    .await;
    // Anything new in a board room makes the homeserver send a transaction: the first
    // since Boardroom started, which starts the catch-up.
    alice.say(&general, "hello again").await;
    let reply = alice
        .wait_for(&general, Duration::from_secs(30), "the reply to the lost command", |ev| {
            replies_to(ev, &bot, &command).first().map(|m| m.content.body().to_owned())
        })
        .await;
    assert!(reply.contains("launch#1"), "{reply}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let events: Vec<_> =
        alice.timeline(&general).await.iter().filter_map(|r| r.deserialize().ok()).collect();
    assert_eq!(replies_to(&events, &bot, &command).len(), 1, "answered once");
    assert!(stack.boardroom.store().task("launch", 1).expect("read").is_some());
    assert!(stack.boardroom.store().task("launch", 2).expect("read").is_none());
}

/// A homeserver that refuses one of Boardroom's requests for good: the request is set
/// aside (`boardroom dead-letters` lists it), the room is told once, in plain words, what
/// Boardroom could not do and what to do, and `!board info` flags the room. A second
/// refusal in the same room is not told again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_for_good_is_told_once_in_the_room_and_flagged_by_board_info() {
    let mut stack = Stack::start(CONFIG).await;
    let bot = stack.boardroom.bot().to_owned();
    let (alice, general, _) = board(&stack).await;
    let proxy = Proxy::start(&stack.synapse.url).await;
    stack.restart_boardroom_via(&proxy.url).await;

    let notices = |events: &[ruma::events::AnyTimelineEvent]| -> Vec<String> {
        events
            .iter()
            .filter_map(|e| match e {
                ruma::events::AnyTimelineEvent::MessageLike(
                    ruma::events::AnyMessageLikeEvent::RoomMessage(
                        ruma::events::MessageLikeEvent::Original(m),
                    ),
                ) if m.sender == bot && m.content.body().starts_with("I could not") => {
                    Some(m.content.body().to_owned())
                }
                _ => None,
            })
            .collect()
    };
    for round in 0..2 {
        let (refused, _) =
            proxy.arm("PUT", "/send/m.room.message/", "Boardroom commands", Fault::Refuse);
        alice.say(&general, "!help").await;
        tokio::time::timeout(Duration::from_secs(30), refused)
            .await
            .expect("the reply was never sent")
            .expect("the stand-in fired");
        let deadline = Instant::now() + Duration::from_secs(30);
        while stack.boardroom.store().outbox_dead_entries(10).expect("dead").len() <= round {
            assert!(Instant::now() < deadline, "the refused reply was not set aside");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let told = alice
        .wait_for(&general, Duration::from_secs(30), "the notice of the refusal", |ev| {
            let n = notices(ev);
            (!n.is_empty()).then_some(n)
        })
        .await;
    assert!(
        told[0].contains("post a message here") && told[0].contains("M_FORBIDDEN"),
        "{}",
        told[0]
    );
    assert!(told[0].contains("boardroom dead-letters"), "what to do: {}", told[0]);
    let info = alice.command(&general, &bot, "!board info").await;
    assert!(info.contains("refused one of Boardroom's requests"), "{info}");
    let events: Vec<_> =
        alice.timeline(&general).await.iter().filter_map(|r| r.deserialize().ok()).collect();
    assert_eq!(notices(&events).len(), 1, "told once, not at the second refusal");
    assert_eq!(stack.boardroom.store().outbox_dead_entries(10).expect("dead").len(), 2);
}
