//! End-to-end, against a real Synapse: Boardroom as its own process, killed with SIGKILL
//! again and again while two Matrix users, an API client and a webhook source keep it
//! busy. Every kill is aimed: 0 to 200 ms after a round of inputs was sent, when commands
//! are on their way in or halfway through. After each kill the test opens the database
//! (the process is gone) and counts what it caught halfway: inbound entries stored but
//! not processed, and requests decided but not yet sent. The API client and the webhook
//! source retry a request a kill cut off, with the same `Idempotency-Key` or delivery id,
//! as a real one would; a subscriber to the board's live stream resumes with its last id.
//!
//! Afterwards, from Matrix and from the API: every command answered exactly once, task
//! numbers unique and gap-free, one root per task, every task's state event as the index
//! has it, every expected inbox entry present once, every live-stream event delivered
//! once and in order, and nothing left in the queues. The counts go to the test output.
//!
//! `BOARDROOM_CRASH_KILLS` sets the number of kills (default 20) and
//! `BOARDROOM_CRASH_SEED` the seed of the kill moments; `scripts/crash-loop.sh` runs it
//! long.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use base64::Engine as _;
use ed25519_dalek::{Signer, SigningKey};
use reqwest::Method;
use ruma::{
    OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UserId,
    api::client::state::get_state_events,
    events::{
        Mentions,
        relation::Thread,
        room::message::{Relation, RoomMessageEventContent},
    },
};
use serde_json::{Value, json};
use tokio::{
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};
use tokio_util::sync::CancellationToken;

use crate::{
    harness::{Board, Prepared, Process, Synapse, User},
    sse::{Ev, Read, open},
    standin::{forward, read_request, respond},
};

const SLUG: &str = "crash";
const CLIENT_TOKEN: &str = "crash-client-token";

fn source_key() -> SigningKey {
    SigningKey::from_bytes(&[7; 32])
}

fn config() -> String {
    let public =
        base64::engine::general_purpose::STANDARD.encode(source_key().verifying_key().to_bytes());
    format!(
        r#"
[permissions]
board_creators = ["@alice:localhost"]
[[api.clients]]
name = "tracker"
token = "{CLIENT_TOKEN}"
boards = ["{SLUG}"]
[[webhooks.sources]]
name = "ci"
public_key = "{public}"
boards = ["{SLUG}"]
[live]
keepalive_secs = 1
"#
    )
}

/// A small generator for the kill moments: the same seed, the same moments.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// What a request that a kill may cut off came to.
struct Answered {
    status: u16,
    body: Value,
    /// Attempts that found nobody listening (Boardroom down).
    refused: usize,
    /// Attempts cut off (the connection died) or answered with a 5xx.
    cut: usize,
}

/// How long a client keeps retrying: past a homeserver outage of a minute.
const ANSWER_WITHIN: Duration = Duration::from_secs(150);

/// Sends the request `make` builds until Boardroom answers it with anything but a 5xx, as
/// a client that keeps its idempotency key would; panics after [`ANSWER_WITHIN`].
fn until_answered(
    make: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder + Send + 'static,
) -> JoinHandle<Answered> {
    tokio::spawn(async move {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .expect("http client");
        let deadline = Instant::now() + ANSWER_WITHIN;
        let (mut refused, mut cut) = (0, 0);
        loop {
            match make(&http).send().await {
                Ok(resp) if !resp.status().is_server_error() => {
                    let status = resp.status().as_u16();
                    let body = resp.json().await.unwrap_or(Value::Null);
                    return Answered { status, body, refused, cut };
                }
                Err(e) if e.is_connect() => refused += 1,
                Ok(_) | Err(_) => cut += 1,
            }
            assert!(Instant::now() < deadline, "no answer within {ANSWER_WITHIN:?}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
}

/// An API request as the client's virtual user `app`.
fn api(
    http: &reqwest::Client,
    base: &str,
    method: reqwest::Method,
    path: &str,
    key: &str,
) -> reqwest::RequestBuilder {
    http.request(method, format!("{base}{path}"))
        .bearer_auth(CLIENT_TOKEN)
        .header("X-Boardroom-User", "app")
        .header("Idempotency-Key", key)
}

/// A signed webhook delivery, as the source sends it (and sends again, unchanged).
fn delivery(
    http: &reqwest::Client,
    url: &str,
    id: &str,
    timestamp: &str,
    body: &str,
) -> reqwest::RequestBuilder {
    let signature = source_key().sign(format!("{timestamp}.{body}").as_bytes());
    http.post(url)
        .header("content-type", "application/json")
        .header("X-Boardroom-Timestamp", timestamp)
        .header("X-Boardroom-Delivery", id)
        .header(
            "X-Boardroom-Signature",
            base64::engine::general_purpose::STANDARD.encode(signature.to_bytes()),
        )
        .body(body.to_owned())
}

/// A subscriber to the board's stream that reconnects with its last id whenever the
/// stream ends (a kill), until `stop`; `ready` is told when its first stream is live.
fn subscribe(
    base: String,
    token: String,
    stop: CancellationToken,
    ready: tokio::sync::oneshot::Sender<()>,
) -> JoinHandle<(Vec<Ev>, usize)> {
    let mut ready = Some(ready);
    tokio::spawn(async move {
        let mut seen = Vec::new();
        let mut last = None;
        let mut connects = 0;
        while !stop.is_cancelled() {
            let Ok(mut sse) = open(&base, SLUG, &token, last).await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            connects += 1;
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    read = sse.read(Duration::from_secs(5)) => match read {
                        Read::Event(ev) => {
                            if ev.event == "ready"
                                && let Some(r) = ready.take()
                            {
                                let _ = r.send(());
                            }
                            seen.push(ev);
                        }
                        Read::Quiet => {}
                        Read::Ended => break,
                    },
                }
            }
            last = sse.last_id;
        }
        (seen, connects)
    })
}

/// What the database holds halfway, read while the process is gone.
fn halfway(db: &Path, users: &[OwnedUserId]) -> (usize, usize) {
    let store = boardroom::store::Store::open(db).expect("open the killed process's database");
    let pending = store.pending_from(0, 1_000_000).expect("inbound entries");
    let commands = pending
        .iter()
        .filter_map(|e| serde_json::from_slice::<Value>(&e.json).ok())
        .filter(|e| {
            e["type"] == "m.room.message"
                && users.iter().any(|u| e["sender"] == u.as_str())
                && e["content"]["body"].as_str().is_some_and(|b| b.starts_with('!'))
        })
        .count();
    let outbox = store.outbox_from(0, 1_000_000).expect("outbox").len();
    (commands, outbox)
}

/// Every event of `room`, oldest first, read page by page.
async fn all_events(user: &User, room: &RoomId) -> Vec<Value> {
    use ruma::api::client::message::get_message_events;
    let mut out = Vec::new();
    let mut from: Option<String> = None;
    loop {
        let mut req = get_message_events::v3::Request::backward(room.to_owned());
        req.limit = 1000u32.into();
        req.from = from.clone();
        let resp = user.client.send(req, None).await.expect("messages");
        out.extend(resp.chunk.iter().filter_map(|e| serde_json::to_value(e).ok()));
        match resp.end {
            Some(end) if !resp.chunk.is_empty() => from = Some(end),
            _ => break,
        }
    }
    out.reverse();
    out
}

/// The event a bot's message answers (a reply, or in a thread with a reply fallback).
fn answers(event: &Value) -> Option<&str> {
    event["content"]["m.relates_to"]["m.in_reply_to"]["event_id"].as_str()
}

/// A comment by `user` in the thread of `root`, mentioning `whom`.
async fn comment(user: &User, room: &RoomId, root: &ruma::EventId, whom: &UserId) -> OwnedEventId {
    let mut content =
        RoomMessageEventContent::text_plain(format!("{whom} have a look at this one"))
            .add_mentions(Mentions::with_user_ids([whom.to_owned()]));
    content.relates_to = Some(Relation::Thread(Thread::plain(root.to_owned(), root.to_owned())));
    user.send(room, content).await
}

/// Every item under `key` of the pages of `path` (`?limit=100`, then `&from=` each page's
/// `next_batch`), as `token` reads them.
async fn all_pages(base: &str, path: &str, key: &str, token: &str) -> Vec<Value> {
    let http = reqwest::Client::new();
    let mut out = Vec::new();
    let mut from: Option<String> = None;
    loop {
        let mut url = format!("{base}{path}?limit=100");
        if let Some(f) = &from {
            url.push_str(&format!("&from={f}"));
        }
        let resp = http.get(url).bearer_auth(token).send().await.expect(path);
        let body: Value = resp.json().await.expect(path);
        out.extend(body[key].as_array().expect(key).iter().cloned());
        match body["next_batch"].as_str() {
            Some(n) => from = Some(n.to_owned()),
            None => return out,
        }
    }
}

/// Every task of the board over the API, by number.
async fn tasks(base: &str, token: &str) -> BTreeMap<u64, Value> {
    let all = all_pages(base, &format!("/boards/{SLUG}/tasks"), "tasks", token).await;
    all.into_iter().map(|t| (t["number"].as_u64().expect("number"), t)).collect()
}

/// A user's whole inbox over the API.
async fn inbox(base: &str, token: &str) -> Vec<Value> {
    all_pages(base, "/notifications", "notifications", token).await
}

/// How often each item occurs.
fn counts<T: Ord>(items: impl IntoIterator<Item = T>) -> BTreeMap<T, usize> {
    let mut out = BTreeMap::new();
    for i in items {
        *out.entry(i).or_insert(0) += 1;
    }
    out
}

/// The items of `expected` that do not occur exactly once in `seen`, with their counts.
fn not_once<'a>(expected: &'a [String], seen: &BTreeMap<String, usize>) -> Vec<(&'a str, usize)> {
    expected
        .iter()
        .map(|e| (e.as_str(), seen.get(e).copied().unwrap_or(0)))
        .filter(|(_, n)| *n != 1)
        .collect()
}

/// Inputs of the whole run, to check what became of them.
#[derive(Default)]
struct Sent {
    /// Chat commands' event ids.
    commands: Vec<String>,
    /// Titles of the tasks that must exist, once each.
    titles: Vec<String>,
    /// Comments mentioning Alice: each is one `mention` entry in her inbox.
    mentions: Vec<String>,
    /// `!task assign … @bob` commands: each is one `assignment` entry in Bob's inbox.
    assignments: Vec<String>,
    /// Bodies of the API's comments on task 3: each once in the `tasks` room, and one
    /// `comment` entry in Alice's inbox (she made task 3).
    api_comments: Vec<String>,
    /// The title task 2 must have in the end.
    renamed: Option<String>,
    /// API requests and webhook deliveries answered.
    requests: usize,
    /// Their attempts that found Boardroom down (connection refused), or cut off (the
    /// connection died, or a 5xx came back).
    refused: usize,
    cut: usize,
}

/// One round's API requests and webhook delivery, in flight.
type Requests = Vec<(&'static str, JoinHandle<Answered>)>;

/// A board under load: Synapse, Boardroom as its own process (its requests to the
/// homeserver sent to Synapse or a stand-in), two Matrix users, an API client, a webhook
/// source and a subscriber to the board's stream; and the ledger of what they sent.
struct Workload {
    synapse: Synapse,
    boardroom: Process,
    _dir: tempfile::TempDir,
    db: PathBuf,
    bot: OwnedUserId,
    alice: User,
    bob: User,
    general: OwnedRoomId,
    tasks_room: OwnedRoomId,
    base: String,
    hook: String,
    root1: OwnedEventId,
    sent: Sent,
    last_api_task: Option<u64>,
    rounds: u64,
    stop: CancellationToken,
    subscriber: Option<JoinHandle<(Vec<Ev>, usize)>>,
    flaky: Option<Flaky>,
}

impl Workload {
    /// Starts the stack and makes the board with three tasks (comments go into task 1's
    /// thread, the API renames task 2 and comments on task 3; Alice made them and
    /// watches them). With `flaky`, Boardroom sends its requests to the homeserver through
    /// a [`Flaky`] stand-in (passing everything on until it is turned on).
    async fn start(flaky: Option<u64>) -> Workload {
        Self::start_logging(flaky, None).await
    }

    /// [`Workload::start`], logging at `level` when given.
    async fn start_logging(flaky: Option<u64>, level: Option<&str>) -> Workload {
        let Prepared { synapse, mut config, config_path, dir, reserved } =
            Prepared::start(&config(), &[], None).await;
        let flaky = match flaky {
            Some(seed) => {
                let f = Flaky::start(&synapse.url, seed).await;
                config.homeserver.url = f.url.clone();
                Some(f)
            }
            None => None,
        };
        if let Some(level) = level {
            config.logging.level = level.to_owned();
        }
        std::fs::write(&config_path, toml::to_string(&config).expect("toml")).expect("config");
        let db = config.database.path.clone();
        let boardroom =
            Process::start(&config, &config_path, dir.path().join("boardroom.log"), reserved).await;
        let bot = boardroom.bot().to_owned();
        let Board { alice, bob, general, tasks: tasks_room, .. } =
            Board::create(&synapse, &bot, SLUG, "Crash").await;
        let base = format!("http://{}/_boardroom/api/v1", boardroom.settings.listen);
        let hook = format!("http://{}/_boardroom/webhooks/v1/ci", boardroom.settings.listen);
        let mut sent = Sent::default();
        for n in 1..=3 {
            let title = format!("seed task {n}");
            let reply = alice.command(&general, &bot, &format!("!task new {title}")).await;
            assert!(reply.contains(&format!("{SLUG}#{n}")), "{reply}");
            sent.titles.push(title);
        }
        let root1: OwnedEventId = tasks(&base, &alice.token).await[&1]["root_event_id"]
            .as_str()
            .and_then(|r| r.try_into().ok())
            .expect("task 1's root");
        let stop = CancellationToken::new();
        // Live before anything is sent: its first stream replays nothing.
        let (ready, live) = tokio::sync::oneshot::channel();
        let subscriber = Some(subscribe(base.clone(), alice.token.clone(), stop.clone(), ready));
        tokio::time::timeout(Duration::from_secs(30), live)
            .await
            .expect("the subscriber's stream is ready within 30 s")
            .expect("the subscriber runs");
        Workload {
            synapse,
            boardroom,
            _dir: dir,
            db,
            bot,
            alice,
            bob,
            general,
            tasks_room,
            base,
            hook,
            root1,
            sent,
            last_api_task: None,
            rounds: 0,
            stop,
            subscriber,
            flaky,
        }
    }

    /// Chat: two new tasks, an assignment and a move of the task the API made in the
    /// last round, and a comment mentioning Alice. Sent through Synapse.
    async fn chat(&mut self) {
        let round = self.rounds;
        let mut chat = Vec::new();
        for (user, who) in [(&self.alice, "alice"), (&self.bob, "bob")] {
            let title = format!("round {round} by {who}");
            chat.push((user, format!("!task new {title}")));
            self.sent.titles.push(title);
        }
        if let Some(n) = self.last_api_task {
            chat.push((&self.alice, format!("!task assign #{n} @bob:localhost")));
            chat.push((&self.bob, format!("!task status #{n} doing")));
        }
        for (user, text) in &chat {
            let event = user.say(&self.general, text).await.to_string();
            if text.starts_with("!task assign") {
                self.sent.assignments.push(event.clone());
            }
            self.sent.commands.push(event);
        }
        let mention = comment(&self.bob, &self.tasks_room, &self.root1, &self.alice.user_id).await;
        self.sent.mentions.push(mention.to_string());
    }

    /// The API client and the webhook source: a new task, task 2 renamed, a comment on
    /// task 3, a task from a delivery; each retried until answered.
    fn requests(&mut self) -> Requests {
        let round = self.rounds;
        self.rounds += 1;
        let title = format!("round {round} by the api");
        self.sent.titles.push(title.clone());
        let base = self.base.clone();
        let create = until_answered(move |http| {
            api(
                http,
                &base,
                Method::POST,
                &format!("/boards/{SLUG}/tasks"),
                &format!("create-{round}"),
            )
            .json(&json!({ "title": title }))
        });
        let renamed = format!("seed task 2, renamed in round {round}");
        self.sent.renamed = Some(renamed.clone());
        let base = self.base.clone();
        let rename = until_answered(move |http| {
            api(
                http,
                &base,
                Method::PATCH,
                &format!("/boards/{SLUG}/tasks/2"),
                &format!("rename-{round}"),
            )
            .json(&json!({ "title": renamed }))
        });
        let body = format!("comment from the api, round {round}");
        self.sent.api_comments.push(body.clone());
        let base = self.base.clone();
        let path = format!("/boards/{SLUG}/tasks/3/comments");
        let comment = until_answered(move |http| {
            api(http, &base, Method::POST, &path, &format!("comment-{round}"))
                .json(&json!({ "body": body }))
        });
        let title = format!("round {round} by the webhook");
        self.sent.titles.push(title.clone());
        let body =
            json!({"board": SLUG, "actor": "deploy", "action": "task.create", "title": title})
                .to_string();
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis()
            .to_string();
        let hook = self.hook.clone();
        let webhook = until_answered(move |http| {
            delivery(http, &hook, &format!("create-{round}"), &timestamp, &body)
        });
        vec![("create", create), ("rename", rename), ("comment", comment), ("webhook", webhook)]
    }

    /// Waits for a round's requests to be answered, and takes note.
    async fn settle(&mut self, requests: Requests) {
        for (what, handle) in requests {
            let a = handle.await.expect("request task");
            assert!(a.status == 200 || a.status == 201, "{what}: {} {}", a.status, a.body);
            self.sent.requests += 1;
            self.sent.refused += a.refused;
            self.sent.cut += a.cut;
            if what == "create" {
                self.last_api_task = a.body["number"].as_u64();
            }
        }
    }

    /// Waits until everything sent is done, then checks from Matrix and from the API
    /// that each input took effect exactly once; stops Boardroom and checks that its
    /// queues are empty. Returns the figures, as one line.
    async fn verify(&mut self) -> String {
        let (alice, bob, bot, base) = (&self.alice, &self.bob, &self.bot, &self.base);
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let g = all_events(alice, &self.general).await;
            let replies =
                counts(g.iter().filter(|e| e["sender"] == bot.as_str()).filter_map(answers));
            let listed = tasks(base, &alice.token).await;
            if self.sent.commands.iter().all(|e| replies.contains_key(e.as_str()))
                && listed.len() >= self.sent.titles.len()
                || Instant::now() > deadline
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        // Let anything sent twice arrive too, then read.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let general_events = all_events(alice, &self.general).await;
        let tasks_events = all_events(alice, &self.tasks_room).await;
        let by_number = tasks(base, &alice.token).await;
        let events: Vec<&Value> = general_events.iter().chain(tasks_events.iter()).collect();
        let sent = &self.sent;

        // Every command answered exactly once.
        let replies = counts(
            events
                .iter()
                .filter(|e| e["sender"] == bot.as_str())
                .filter_map(|e| answers(e).map(str::to_owned)),
        );
        assert_eq!(not_once(&sent.commands, &replies), vec![], "commands answered once");

        // Every task's state event, as Alice's client reads the room's state.
        let req = get_state_events::v3::Request::new(self.tasks_room.clone());
        let state = alice.client.send(req, None).await.expect("state").room_state;
        let mut states: BTreeMap<u64, Value> = BTreeMap::new();
        for s in state.iter().filter_map(|s| serde_json::to_value(s).ok()) {
            if s["type"] == "dev.boardroom.task"
                && let Some(n) = s["state_key"].as_str().and_then(|k| k.parse().ok())
            {
                states.insert(n, s["content"].clone());
            }
        }

        // Task numbers unique and gap-free, each expected title once, one root per task.
        let numbers: Vec<u64> = by_number.keys().copied().collect();
        let expected: Vec<u64> = (1..=u64::try_from(sent.titles.len()).expect("n")).collect();
        let missing: Vec<(u64, Option<&Value>)> = expected
            .iter()
            .filter(|n| !by_number.contains_key(n))
            .map(|n| (*n, states.get(n)))
            .collect();
        let listed: BTreeSet<&str> =
            by_number.values().filter_map(|t| t["title"].as_str()).collect();
        let untitled: Vec<&String> =
            sent.titles.iter().skip(3).filter(|t| !listed.contains(t.as_str())).collect();
        assert_eq!(
            numbers, expected,
            "task numbers are 1..n, each once; missing (with their state event): {missing:?}; \
             titles not listed: {untitled:?}"
        );
        let titles =
            counts(by_number.values().filter_map(|t| t["title"].as_str().map(str::to_owned)));
        let mut wanted = sent.titles.clone();
        if let Some(renamed) = &sent.renamed {
            wanted[1] = renamed.clone();
        }
        assert_eq!(not_once(&wanted, &titles), vec![], "each task once, by its title");
        let roots: BTreeSet<&str> =
            by_number.values().filter_map(|t| t["root_event_id"].as_str()).collect();
        assert_eq!(roots.len(), by_number.len(), "each task its own root");
        let stray: Vec<&str> = tasks_events
            .iter()
            .filter(|e| e["sender"] == bot.as_str() && e["type"] == "m.room.message")
            .filter(|e| e["content"]["m.relates_to"].is_null())
            .filter_map(|e| e["event_id"].as_str())
            .filter(|r| !roots.contains(r))
            .collect();
        assert_eq!(stray, Vec::<&str>::new(), "no root without a task");
        let api_bodies = counts(
            tasks_events
                .iter()
                .filter(|e| e["sender"].as_str().is_some_and(|s| s.starts_with("@boardroom_app")))
                .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned)),
        );
        assert_eq!(not_once(&sent.api_comments, &api_bodies), vec![], "API comments once");

        // Every task's state event as the index has it.
        assert_eq!(states.keys().copied().collect::<Vec<_>>(), numbers, "a state event each");
        for (n, task) in &by_number {
            let s = &states[n];
            for field in ["title", "status", "assignees", "root_event_id", "created_by"] {
                assert_eq!(s[field], task[field], "task {n}'s {field}: state {s} index {task}");
            }
        }

        // Every expected inbox entry once, and none twice.
        let alices = inbox(base, &alice.token).await;
        let bobs = inbox(base, &bob.token).await;
        let of_kind = |entries: &[Value], kind: &str| {
            counts(
                entries
                    .iter()
                    .filter(|e| e["kind"] == kind)
                    .filter_map(|e| e["event_id"].as_str().map(str::to_owned)),
            )
        };
        let missing = not_once(&sent.mentions, &of_kind(&alices, "mention"));
        assert_eq!(
            missing,
            vec![],
            "mentions; the events in the tasks room: {:?}; Alice's entries for them: {:?}",
            missing
                .iter()
                .map(|(id, _)| tasks_events.iter().find(|e| e["event_id"] == *id))
                .collect::<Vec<_>>(),
            missing
                .iter()
                .map(|(id, _)| alices.iter().filter(|e| e["event_id"] == *id).collect::<Vec<_>>())
                .collect::<Vec<_>>(),
        );
        assert_eq!(
            not_once(&sent.assignments, &of_kind(&bobs, "assignment")),
            vec![],
            "assignments"
        );
        let comments = of_kind(&alices, "comment");
        assert_eq!(comments.len(), sent.api_comments.len(), "an entry per API comment");
        assert!(comments.values().all(|n| *n == 1), "{comments:?}");
        let distinct =
            counts(alices.iter().chain(bobs.iter()).map(|e| {
                (e["user_id"].to_string(), e["kind"].to_string(), e["event_id"].to_string())
            }));
        assert_eq!(distinct.len(), alices.len() + bobs.len(), "no inbox entry twice");

        // The stream: every logged event once and in order; each task created after the
        // seeds, each command and each of Alice's entries once; no reset.
        self.stop.cancel();
        let (streamed, connects) =
            self.subscriber.take().expect("subscriber").await.expect("subscriber");
        let logged: Vec<&Ev> = streamed.iter().filter(|e| e.is_logged()).collect();
        let ids: Vec<u64> = logged.iter().filter_map(|e| e.id).collect();
        assert_eq!(ids.len(), logged.len(), "every logged event has an id");
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids grow, none twice");
        assert!(streamed.iter().all(|e| e.event != "reset"), "no reset: nothing was lost");
        let created = counts(
            logged
                .iter()
                .filter(|e| e.event == "task" && e.data["change"] == "created")
                .filter_map(|e| e.data["task"]["number"].as_u64().map(|n| n.to_string())),
        );
        let after_seeds: Vec<String> =
            numbers.iter().filter(|n| **n > 3).map(u64::to_string).collect();
        assert_eq!(not_once(&after_seeds, &created), vec![], "each creation streamed once");
        let messages = counts(
            logged
                .iter()
                .filter(|e| e.event == "message")
                .filter_map(|e| e.data["event_id"].as_str().map(str::to_owned)),
        );
        assert_eq!(not_once(&sent.commands, &messages), vec![], "each command streamed once");
        let entries = counts(
            logged
                .iter()
                .filter(|e| e.event == "notification")
                .filter_map(|e| e.data["notification"]["id"].as_u64().map(|n| n.to_string())),
        );
        let alice_ids: Vec<String> =
            alices.iter().filter_map(|e| e["id"].as_u64().map(|n| n.to_string())).collect();
        assert_eq!(not_once(&alice_ids, &entries), vec![], "each of Alice's entries streamed once");

        // Nothing left behind: the queues empty, nothing refused for good.
        self.boardroom.stop().await;
        let store = boardroom::store::Store::open(&self.db).expect("open");
        assert_eq!(store.pending_from(0, 1000).expect("inbound").len(), 0, "inbound drained");
        assert_eq!(store.outbox_from(0, 1000).expect("outbox").len(), 0, "outbox drained");
        assert_eq!(store.outbox_dead_entries(1000).expect("dead"), vec![], "no dead letters");

        format!(
            "{} commands, {} mention comments, {} API requests and webhook deliveries \
             ({} attempts refused while down, {} cut off or answered 5xx, all retried); \
             {} tasks numbered 1..{} with one root and state event each; inbox: {} entries \
             for Alice, {} for Bob, none twice; stream: {} logged events over {connects} \
             connections, none twice, no reset; queues empty, no dead letters; lost 0, \
             applied twice 0",
            sent.commands.len(),
            sent.mentions.len(),
            sent.requests,
            sent.refused,
            sent.cut,
            by_number.len(),
            by_number.len(),
            alices.len(),
            bobs.len(),
            logged.len(),
        )
    }
}

impl Drop for Workload {
    /// A failed run keeps Boardroom's log (its directory goes).
    fn drop(&mut self) {
        if std::thread::panicking() {
            let kept = std::env::temp_dir()
                .join(format!("boardroom-under-load-{}.log", std::process::id()));
            if std::fs::copy(&self.boardroom.log, &kept).is_ok() {
                eprintln!("Boardroom's log: {}", kept.display());
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_lost_or_applied_twice_across_aimed_kills_under_load() {
    let kills = env_u64("BOARDROOM_CRASH_KILLS").unwrap_or(20);
    let seed = env_u64("BOARDROOM_CRASH_SEED").unwrap_or_else(|| {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        u64::from(now.map_or(1, |d| d.subsec_nanos())) | 1
    });
    eprintln!("crash loop: {kills} kills, seed {seed} (BOARDROOM_CRASH_SEED to repeat)");
    let mut rng = Rng(seed);
    let mut w = Workload::start(None).await;
    let users = [w.alice.user_id.clone(), w.bob.user_id.clone()];
    let (mut caught_commands, mut caught_outbox, mut kills_catching) = (0, 0, 0);
    let started = Instant::now();
    for _ in 0..kills {
        w.chat().await;
        let requests = w.requests();
        // The kill, aimed into the work just sent.
        tokio::time::sleep(Duration::from_millis(rng.below(200))).await;
        w.boardroom.kill();
        let (commands, outbox) = halfway(&w.db, &users);
        caught_commands += commands;
        caught_outbox += outbox;
        kills_catching += usize::from(commands + outbox > 0);
        w.boardroom.spawn().await;
        w.settle(requests).await;
    }
    let looping = started.elapsed();
    let figures = w.verify().await;
    eprintln!(
        "crash loop: {kills} kills in {looping:.1?}, each 0-200 ms after a round was sent; \
         caught halfway: {caught_commands} commands stored but not processed and \
         {caught_outbox} requests decided but not sent, in {kills_catching} of {kills} kills; \
         {figures}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_lost_or_applied_twice_through_a_homeserver_outage_under_load() {
    let outage = Duration::from_secs(env_u64("BOARDROOM_OUTAGE_SECS").unwrap_or(60));
    let mut w = Workload::start(None).await;
    for _ in 0..3 {
        w.chat().await;
        let requests = w.requests();
        w.settle(requests).await;
    }
    // Commands sent just before Synapse stops: their replies wait in Boardroom's outbox,
    // or the commands themselves in Synapse's queue for the appservice.
    w.chat().await;
    w.synapse.stop().await;
    let stopped = Instant::now();
    // The API client and the webhook source keep going; the API still reads.
    let mut pending = Vec::new();
    while stopped.elapsed() < outage {
        pending.push(w.requests());
        let listed = reqwest::Client::new()
            .get(format!("{}/boards/{SLUG}/tasks?limit=1", w.base))
            .bearer_auth(CLIENT_TOKEN)
            .header("X-Boardroom-User", "app")
            .send()
            .await
            .expect("the API answers during the outage");
        assert_eq!(listed.status(), 200, "tasks are read from the index during the outage");
        tokio::time::sleep(outage / 6).await;
    }
    w.synapse.start_again().await;
    let back = Instant::now();
    for requests in pending {
        w.settle(requests).await;
    }
    let caught_up = back.elapsed();
    // Load goes on after the outage.
    for _ in 0..2 {
        w.chat().await;
        let requests = w.requests();
        w.settle(requests).await;
    }
    let figures = w.verify().await;
    eprintln!(
        "homeserver outage: Synapse stopped for {outage:?} under load; every request made \
         during the outage answered {caught_up:.1?} after it came back; {figures}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_lost_or_applied_twice_through_a_flaky_homeserver_under_load() {
    let rounds = env_u64("BOARDROOM_FLAKY_ROUNDS").unwrap_or(12);
    let seed = env_u64("BOARDROOM_FLAKY_SEED").unwrap_or(0x5eed) | 1;
    let mut w = Workload::start(Some(seed)).await;
    let flaky = w.flaky.clone().expect("the stand-in");
    flaky.on.store(true, Ordering::SeqCst);
    // Each round's requests are awaited a round later, so that the chat can assign the
    // task the API made.
    let mut pending = None;
    for _ in 0..rounds {
        w.chat().await;
        if let Some(requests) = pending.replace(w.requests()) {
            w.settle(requests).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    if let Some(requests) = pending {
        w.settle(requests).await;
    }
    let faults = flaky.counts();
    flaky.on.store(false, Ordering::SeqCst);
    let figures = w.verify().await;
    eprintln!(
        "flaky homeserver (seed {seed}): {rounds} rounds; of Boardroom's requests to the \
         homeserver {} answered 502 at once, {} answered 429 with retry_after_ms, {} held 2 s \
         and answered 504, {} carried out with the answer lost, {} passed; {figures}",
        faults[0], faults[1], faults[2], faults[3], faults[4]
    );
    assert!(faults[..4].iter().all(|n| *n > 0), "every kind of fault happened: {faults:?}");
}

/// A stand-in homeserver that passes Boardroom's requests on to Synapse and, once `on`,
/// faults some at random: 10 % answered 502 at once, 10 % 429 `M_LIMIT_EXCEEDED` with
/// `retry_after_ms`, 5 % held 2 s then answered 504 (a gateway's timeout), 5 % carried out
/// by Synapse with the answer lost (the connection closes unanswered).
#[derive(Clone)]
struct Flaky {
    url: String,
    on: Arc<AtomicBool>,
    rng: Arc<Mutex<Rng>>,
    /// 502, 429, 504 after a hold, answer lost, passed.
    counts: Arc<Mutex<[usize; 5]>>,
}

impl Flaky {
    async fn start(target: &str, seed: u64) -> Flaky {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the stand-in");
        let flaky = Flaky {
            url: format!("http://{}", listener.local_addr().expect("addr")),
            on: Arc::default(),
            rng: Arc::new(Mutex::new(Rng(seed))),
            counts: Arc::default(),
        };
        let (served, target) = (flaky.clone(), target.to_owned());
        let http = reqwest::Client::new();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(served.clone().serve(sock, target.clone(), http.clone()));
            }
        });
        flaky
    }

    fn counts(&self) -> [usize; 5] {
        *self.counts.lock().expect("lock")
    }

    async fn serve(self, mut sock: TcpStream, target: String, http: reqwest::Client) {
        let Some(request) = read_request(&mut sock).await else { return };
        let fault = if self.on.load(Ordering::SeqCst) {
            match self.rng.lock().expect("lock").below(100) {
                0..10 => 0,
                10..20 => 1,
                20..25 => 2,
                25..30 => 3,
                _ => 4,
            }
        } else {
            4
        };
        self.counts.lock().expect("lock")[fault] += 1;
        match fault {
            0 => respond(&mut sock, 502, br#"{"errcode":"M_UNKNOWN","error":"bad gateway"}"#).await,
            1 => {
                let body =
                    br#"{"errcode":"M_LIMIT_EXCEEDED","error":"slow down","retry_after_ms":200}"#;
                respond(&mut sock, 429, body).await;
            }
            2 => {
                tokio::time::sleep(Duration::from_secs(2)).await;
                respond(&mut sock, 504, br#"{"errcode":"M_UNKNOWN","error":"timeout"}"#).await;
            }
            3 => {
                let _ = forward(&http, &target, &request).await;
            }
            _ => {
                if let Some((status, body)) = forward(&http, &target, &request).await {
                    respond(&mut sock, status, &body).await;
                }
            }
        }
    }
}

/// With logging at `trace` (every crate's), a whole run (chat, the API with Matrix and
/// client tokens, tokens in query strings, webhooks, a live stream, a kill and a restart)
/// leaves no secret in Boardroom's output: not the appservice's tokens, not a client
/// token, not a user's access token, not a webhook source's key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_the_logs_of_a_whole_run_at_trace() {
    let mut w = Workload::start_logging(None, Some("trace")).await;
    for round in 0..3 {
        w.chat().await;
        let requests = w.requests();
        if round == 1 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            w.boardroom.kill();
            w.boardroom.spawn().await;
        }
        w.settle(requests).await;
    }
    // A client's token and virtual user in the query string, as a browser's EventSource
    // passes them.
    let url = format!("{}/boards/{SLUG}/events?access_token={CLIENT_TOKEN}&user_id=app", w.base);
    let mut sse = crate::sse::open_url(url, None).await.expect("a client's stream");
    while let Read::Event(ev) = sse.read(Duration::from_secs(5)).await {
        if ev.event == "ready" {
            break;
        }
    }
    drop(sse);
    let log = w.boardroom.log.clone();
    let settings = w.boardroom.settings.clone();
    let secrets = [
        ("as_token", settings.as_token.expose().to_owned()),
        ("hs_token", settings.hs_token.expose().to_owned()),
        ("the client token", CLIENT_TOKEN.to_owned()),
        ("Alice's access token", w.alice.token.clone()),
        ("Bob's access token", w.bob.token.clone()),
        (
            "the webhook source's key",
            base64::engine::general_purpose::STANDARD
                .encode(source_key().verifying_key().to_bytes()),
        ),
    ];
    let figures = w.verify().await;
    let text = std::fs::read_to_string(&log).expect("Boardroom's log");
    drop(w);
    let lines = text.lines().count();
    assert!(lines > 1000, "logging at trace wrote only {lines} lines");
    for (what, secret) in &secrets {
        assert!(secret.len() >= 8, "{what} is too short to look for");
        let found: Vec<&str> =
            text.lines().filter(|l| l.contains(secret.as_str())).take(3).collect();
        assert!(found.is_empty(), "{what} is in the log: {found:#?}");
    }
    eprintln!(
        "secrets: {lines} lines ({} KB) logged at trace, none holds any of {} secrets; {figures}",
        text.len() / 1024,
        secrets.len()
    );
}
