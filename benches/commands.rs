//! Boardroom's own time per chat command, against a real Synapse (issue 16).
//!
//! Synapse (from the venv `scripts/setup.sh` installs, configured by `scripts/synapse.py`
//! as the integration tests run it: rate limits off, its database on `/dev/shm`) and the
//! release binary (`boardroom serve`, its own process, logging at `info` to a file) run on
//! loopback. This process puts a recording TCP proxy on each path between them:
//!
//! - Synapse → proxy → Boardroom's appservice port (the registration's `url` is the
//!   proxy): each transaction is timestamped when the proxy's `read` of its last byte
//!   returns, just before the proxy forwards it to Boardroom;
//! - Boardroom → proxy → Synapse's client port (Boardroom's `[homeserver] url` is the
//!   proxy): each request is timestamped when the proxy's reads of its first and last
//!   bytes return, and its answer when the read of the answer's last byte returns, just
//!   before it is forwarded to Boardroom.
//!
//! Two Matrix users, Alice (the board's owner) and Bob (a member), act through Synapse's
//! client-server API (not through the proxies). Alice sends commands one at a time; the
//! next one goes only after the previous one's reply was accepted by Synapse and no byte
//! crossed either proxy for a settling pause, so everything between a command's
//! transaction and its reply belongs to it. For each command:
//!
//! own time = (reply request's first byte) − (transaction delivered)
//!            − (the union of [request sent, answer delivered] of Boardroom's requests to
//!               Synapse answered before the reply left)
//!
//! The reply is the bot's `m.room.message` whose `m.in_reply_to` is the command (a change
//! written in a task's thread is answered by its feed entry). A comment gets no reply: its
//! handling ends with the inbox entry of the member it mentions, which Bob reads from the
//! board's live stream (`GET /boards/bench/events`, straight to Boardroom); that frame's
//! arrival ends its own time instead. Every timestamp errs towards more own time, never
//! less: a transaction (or an answer) is stamped before the proxy forwards it, so the
//! forwarding `write` counts as Boardroom's; a request (and the reply) is stamped when the
//! proxy's `read` returns, after Boardroom's `write`, so the proxy's wake-up counts as
//! Boardroom's too. That wake-up is measured after the run and printed (the proxy's own
//! cost), to be read as up to one per request Boardroom makes, plus one for the reply.
//!
//! Run: `cargo bench --bench commands` (a warm-up cycle, then 40 cycles of the 8 kinds:
//! 320 commands), or `cargo bench --bench commands -- --cycles 40 --settle-ms 100`
//! (`--disk` puts Boardroom's database on disk rather than `/dev/shm`; `--pause-secs N`
//! waits before the measured cycles, to attach a profiler to Boardroom's printed pid;
//! `--keep` keeps the directories and logs; `--binary PATH` runs another build of Boardroom,
//! for an A/B in one sitting). Figures go in docs/PERFORMANCE.md.

use std::{
    collections::{BTreeMap, VecDeque},
    fs,
    io::{self, BufRead, Read, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use hmac::{KeyInit, Mac};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Value, json};

mod common;
use common::percentile;
const SERVER_NAME: &str = "localhost";
const SHARED_SECRET: &str = "boardroom-bench-shared-secret";
const AS_TOKEN: &str = "bench-commands-as-token";
const HS_TOKEN: &str = "bench-commands-hs-token";
const BOT: &str = "@boardroom:localhost";
const SLUG: &str = "bench";
const ALICE: &str = "@alice:localhost";
const BOB: &str = "@bob:localhost";
/// How long one command may take before the bench gives up.
const TIMEOUT: Duration = Duration::from_secs(60);

struct Args {
    cycles: usize,
    settle: Duration,
    disk: bool,
    pause: Duration,
    keep: bool,
    /// The kinds each cycle runs (all by default).
    kinds: Vec<Kind>,
    /// A nice value for Boardroom and this process (not Synapse), set after Synapse starts.
    nice: Option<i32>,
    /// The Boardroom binary to run (another build, for an A/B in one sitting).
    binary: std::path::PathBuf,
}

fn parse_args() -> Args {
    let mut args = Args {
        cycles: 40,
        settle: Duration::from_millis(100),
        disk: false,
        pause: Duration::ZERO,
        keep: false,
        kinds: Kind::CYCLE.to_vec(),
        nice: None,
        binary: env!("CARGO_BIN_EXE_boardroom").into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            // `cargo bench` adds `--bench`.
            "--bench" => {}
            "--cycles" => {
                args.cycles = it.next().and_then(|v| v.parse().ok()).expect("--cycles N");
            }
            "--settle-ms" => {
                let ms: u64 = it.next().and_then(|v| v.parse().ok()).expect("--settle-ms N");
                args.settle = Duration::from_millis(ms);
            }
            "--pause-secs" => {
                let s: u64 = it.next().and_then(|v| v.parse().ok()).expect("--pause-secs N");
                args.pause = Duration::from_secs(s);
            }
            "--only" => {
                let names = it.next().expect("--only kind,kind");
                args.kinds = Kind::CYCLE
                    .into_iter()
                    .filter(|k| names.split(',').any(|n| n == k.name()))
                    .collect();
                // Commands in a task's thread need a task.
                if args.kinds.iter().any(|k| k.needs_task()) && !args.kinds.contains(&Kind::TaskNew)
                {
                    args.kinds.insert(0, Kind::TaskNew);
                }
                assert!(!args.kinds.is_empty(), "--only: none of {names} is a kind");
            }
            "--nice" => {
                args.nice = Some(it.next().and_then(|v| v.parse().ok()).expect("--nice N"));
            }
            "--disk" => args.disk = true,
            "--keep" => args.keep = true,
            "--binary" => args.binary = it.next().expect("--binary PATH").into(),
            other => eprintln!("commands: ignoring argument `{other}`"),
        }
    }
    args
}

fn main() {
    let args = parse_args();
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(run(args));
}

// ---- What the proxies record -------------------------------------------------------------

/// Everything the proxies saw, timestamped from one clock.
struct Recorder {
    base: Instant,
    inner: Mutex<Records>,
    /// The last time a byte crossed either proxy (ns after `base`).
    activity: AtomicU64,
}

#[derive(Default)]
struct Records {
    /// Synapse → Boardroom: transactions (and pings, user and alias queries).
    inbound: Vec<Exchange>,
    /// Boardroom → Synapse: its requests.
    outbound: Vec<Exchange>,
}

/// One request and its answer as a proxy saw them.
#[derive(Clone)]
struct Exchange {
    method: String,
    path: String,
    body: Vec<u8>,
    /// When the proxy's `read` of the request's first byte returned.
    first: Duration,
    /// When the `read` of its last byte returned: it is forwarded right after, so the
    /// upstream side cannot have it all before this.
    read: Duration,
    /// When the `read` of the answer's last byte returned (forwarded right after).
    answer_read: Option<Duration>,
    status: u16,
}

impl Recorder {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            base: Instant::now(),
            inner: Mutex::new(Records::default()),
            activity: AtomicU64::new(0),
        })
    }

    fn now(&self) -> Duration {
        self.base.elapsed()
    }

    fn touch(&self, at: Duration) {
        self.activity.fetch_max(at.as_nanos() as u64, Ordering::AcqRel);
    }

    fn quiet_for(&self) -> Duration {
        let last = Duration::from_nanos(self.activity.load(Ordering::Acquire));
        self.now().saturating_sub(last)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Records> {
        self.inner.lock().expect("recorder lock")
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    /// Synapse → Boardroom.
    Inbound,
    /// Boardroom → Synapse.
    Outbound,
}

/// A TCP proxy on `listener` to `upstream`, parsing HTTP/1.1 both ways (passively: bytes
/// are forwarded as read) and recording each exchange. Blocking threads, two per
/// connection: a thread blocked in `read` wakes as soon as the bytes are there.
fn start_proxy(listener: TcpListener, upstream: SocketAddr, side: Side, rec: Arc<Recorder>) {
    thread::spawn(move || {
        for down in listener.incoming() {
            let Ok(down) = down else { continue };
            let Ok(up) = TcpStream::connect(upstream) else {
                let _ = down.shutdown(Shutdown::Both);
                continue;
            };
            let _ = down.set_nodelay(true);
            let _ = up.set_nodelay(true);
            let pending = Arc::new(Mutex::new(VecDeque::<usize>::new()));
            let (d2, u2) = (down.try_clone().expect("clone"), up.try_clone().expect("clone"));
            let (rec1, rec2, p1, p2) = (rec.clone(), rec.clone(), pending.clone(), pending);
            thread::spawn(move || pump_requests(down, up, side, &rec1, &p1));
            thread::spawn(move || pump_answers(u2, d2, side, &rec2, &p2));
        }
    });
}

fn pump_requests(
    mut from: TcpStream,
    mut to: TcpStream,
    side: Side,
    rec: &Recorder,
    pending: &Mutex<VecDeque<usize>>,
) {
    let mut parser = Parser::new(true);
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let read = rec.now();
        // Recorded before forwarding: the answer cannot come before its request.
        let done = parser.feed(&buf[..n], read);
        if !done.is_empty() {
            let mut records = rec.lock();
            for m in done {
                let list = match side {
                    Side::Inbound => &mut records.inbound,
                    Side::Outbound => &mut records.outbound,
                };
                let (method, path) = m.request_line();
                list.push(Exchange {
                    method,
                    path,
                    body: m.body,
                    first: m.first,
                    read,
                    answer_read: None,
                    status: 0,
                });
                pending.lock().expect("pending").push_back(list.len() - 1);
            }
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        rec.touch(rec.now());
    }
    let _ = to.shutdown(Shutdown::Write);
}

fn pump_answers(
    mut from: TcpStream,
    mut to: TcpStream,
    side: Side,
    rec: &Recorder,
    pending: &Mutex<VecDeque<usize>>,
) {
    let mut parser = Parser::new(false);
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let read = rec.now();
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        rec.touch(rec.now());
        let done = parser.feed(&buf[..n], read);
        if done.is_empty() {
            continue;
        }
        let mut records = rec.lock();
        for m in done {
            let Some(i) = pending.lock().expect("pending").pop_front() else { continue };
            let list = match side {
                Side::Inbound => &mut records.inbound,
                Side::Outbound => &mut records.outbound,
            };
            list[i].answer_read = Some(read);
            list[i].status = m.status();
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// An HTTP/1.1 message, whole.
struct Message {
    head: String,
    body: Vec<u8>,
    /// When its first byte was read.
    first: Duration,
}

impl Message {
    fn request_line(&self) -> (String, String) {
        let line = self.head.lines().next().unwrap_or_default();
        let mut parts = line.split(' ');
        let method = parts.next().unwrap_or_default().to_owned();
        let path = parts.next().unwrap_or_default().to_owned();
        (method, path)
    }

    fn status(&self) -> u16 {
        self.head
            .lines()
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }
}

/// Splits a byte stream into HTTP/1.1 messages (`Content-Length` or chunked bodies; no
/// pipelining is needed: answers are matched to requests in order).
struct Parser {
    requests: bool,
    buf: Vec<u8>,
    first: Option<Duration>,
}

impl Parser {
    fn new(requests: bool) -> Self {
        Self { requests, buf: Vec::new(), first: None }
    }

    fn feed(&mut self, bytes: &[u8], at: Duration) -> Vec<Message> {
        if self.buf.is_empty() && !bytes.is_empty() {
            self.first = Some(at);
        }
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some((head, body, used)) = parse_message(&self.buf, self.requests) {
            out.push(Message { head, body, first: self.first.unwrap_or(at) });
            self.buf.drain(..used);
            self.first = (!self.buf.is_empty()).then_some(at);
        }
        out
    }
}

/// The first whole message in `buf`: its head, its (de-chunked) body, and the bytes it
/// took; `None` until it is all there.
fn parse_message(buf: &[u8], request: bool) -> Option<(String, Vec<u8>, usize)> {
    let end = find(buf, b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut length = None;
    let mut chunked = false;
    for line in head.split("\r\n").skip(1) {
        if let Some((k, v)) = line.split_once(':') {
            if k.trim().eq_ignore_ascii_case("content-length") {
                length = v.trim().parse::<usize>().ok();
            } else if k.trim().eq_ignore_ascii_case("transfer-encoding")
                && v.to_ascii_lowercase().contains("chunked")
            {
                chunked = true;
            }
        }
    }
    let start = end + 4;
    if !request {
        let status: u16 = head.split(' ').nth(1).and_then(|s| s.trim().parse().ok()).unwrap_or(200);
        if status < 200 || status == 204 || status == 304 {
            return Some((head, Vec::new(), start));
        }
    }
    if chunked {
        let mut body = Vec::new();
        let mut at = start;
        loop {
            let line_end = at + find(&buf[at..], b"\r\n")?;
            let size_text = String::from_utf8_lossy(&buf[at..line_end]);
            let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
            at = line_end + 2;
            if size == 0 {
                // Trailers, then an empty line.
                if buf.get(at..at + 2)? == b"\r\n" {
                    return Some((head, body, at + 2));
                }
                let t = at + find(&buf[at..], b"\r\n\r\n")?;
                return Some((head, body, t + 4));
            }
            let chunk = buf.get(at..at + size)?;
            body.extend_from_slice(chunk);
            at += size + 2;
            if buf.len() < at {
                return None;
            }
        }
    }
    let length = length.unwrap_or(0);
    let body = buf.get(start..start + length)?.to_vec();
    Some((head, body, start + length))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

// ---- Bob's live stream ---------------------------------------------------------------------

/// A frame of the live stream: when it was read, its `event:` and its `data:`.
struct Frame {
    at: Duration,
    kind: String,
    data: String,
}

/// Reads the board's live stream as `token`'s user, straight from Boardroom, noting each
/// frame's arrival.
fn start_stream(addr: SocketAddr, token: &str, rec: Arc<Recorder>) -> Arc<Mutex<Vec<Frame>>> {
    let frames = Arc::new(Mutex::new(Vec::new()));
    let out = frames.clone();
    let mut stream = TcpStream::connect(addr).expect("connect the live stream");
    let _ = stream.set_nodelay(true);
    let request = format!(
        "GET /_boardroom/api/v1/boards/{SLUG}/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).expect("live stream request");
    thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        let mut pending: Vec<u8> = Vec::new();
        let mut head_done = false;
        let mut kind = String::new();
        loop {
            let n = match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let at = rec.now();
            pending.extend_from_slice(&buf[..n]);
            if !head_done {
                let Some(end) = find(&pending, b"\r\n\r\n") else { continue };
                assert!(
                    pending.starts_with(b"HTTP/1.1 200"),
                    "live stream refused: {}",
                    String::from_utf8_lossy(&pending[..end])
                );
                head_done = true;
                pending.drain(..end + 4);
            }
            let mut start = 0;
            while let Some(nl) = pending[start..].iter().position(|&b| b == b'\n') {
                let line = String::from_utf8_lossy(&pending[start..start + nl]);
                let line = line.trim_end_matches('\r');
                if let Some(k) = line.strip_prefix("event: ") {
                    k.clone_into(&mut kind);
                } else if let Some(data) = line.strip_prefix("data: ") {
                    let frame = Frame { at, kind: kind.clone(), data: data.to_owned() };
                    out.lock().expect("frames").push(frame);
                }
                start += nl + 1;
            }
            pending.drain(..start);
        }
    });
    frames
}

// ---- Synapse, Boardroom ----------------------------------------------------------------------

fn project_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Synapse venv `scripts/setup.sh` installs (as the integration tests find it).
fn synapse_python() -> PathBuf {
    let venv = std::env::var_os("BOARDROOM_SYNAPSE_VENV").map(PathBuf::from).unwrap_or_else(|| {
        let cache = std::env::var_os("BOARDROOM_CACHE").map(PathBuf::from).unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/boardroom")
        });
        cache.join("synapse-1.163.2")
    });
    let python = venv.join("bin/python");
    assert!(python.exists(), "no Synapse venv at {}: run scripts/setup.sh", venv.display());
    python
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// A child process, stopped with SIGTERM (then SIGKILL) when dropped.
struct Proc {
    child: Option<Child>,
    pid: u32,
    name: &'static str,
}

impl Proc {
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let _ = Command::new("kill").arg("-TERM").arg(self.pid.to_string()).status();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
        eprintln!("{} did not stop within 30 s: killed", self.name);
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

fn boardroom_config(db: &Path, listen: u16, as_proxy: u16, hs_proxy: u16) -> String {
    let db = toml::Value::String(db.display().to_string());
    format!(
        r#"[homeserver]
url = "http://127.0.0.1:{hs_proxy}"
server_name = "{SERVER_NAME}"

[appservice]
id = "boardroom-bench"
listen = "127.0.0.1:{listen}"
url = "http://127.0.0.1:{as_proxy}"
as_token = "{AS_TOKEN}"
hs_token = "{HS_TOKEN}"

[database]
path = {db}

[permissions]
board_creators = ["{ALICE}"]

[logging]
level = "info"
format = "pretty"
"#
    )
}

// ---- A Matrix user -------------------------------------------------------------------------

struct User {
    id: String,
    token: String,
    hs: String,
    http: reqwest::Client,
}

fn enc(s: &str) -> String {
    utf8_percent_encode(s, NON_ALPHANUMERIC).to_string()
}

static TXN: AtomicU64 = AtomicU64::new(0);

impl User {
    async fn register(hs: &str, localpart: &str) -> User {
        let http = reqwest::Client::new();
        let endpoint = format!("{hs}/_synapse/admin/v1/register");
        let nonce: Value =
            http.get(&endpoint).send().await.expect("nonce").json().await.expect("nonce json");
        let nonce = nonce["nonce"].as_str().expect("nonce").to_owned();
        let password = "password";
        let mut mac =
            hmac::Hmac::<sha1::Sha1>::new_from_slice(SHARED_SECRET.as_bytes()).expect("hmac");
        mac.update(format!("{nonce}\0{localpart}\0{password}\0notadmin").as_bytes());
        let mac: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
        let resp: Value = http
            .post(&endpoint)
            .json(&json!({"nonce": nonce, "username": localpart, "password": password,
                          "admin": false, "mac": mac}))
            .send()
            .await
            .expect("register")
            .json()
            .await
            .expect("register json");
        let token = resp["access_token"].as_str().unwrap_or_else(|| panic!("no token: {resp}"));
        let id = resp["user_id"].as_str().expect("user_id").to_owned();
        User { id, token: token.to_owned(), hs: hs.to_owned(), http }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req =
            self.http.request(method, format!("{}{path}", self.hs)).bearer_auth(&self.token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.unwrap_or_else(|e| panic!("{path}: {e}"));
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{path}: {status} {body}");
        body
    }

    async fn send(&self, room: &str, content: Value) -> String {
        let txn = TXN.fetch_add(1, Ordering::Relaxed);
        let path = format!(
            "/_matrix/client/v3/rooms/{}/send/m.room.message/bench{}-{txn}",
            enc(room),
            std::process::id()
        );
        let answer = self.call(reqwest::Method::PUT, &path, Some(content)).await;
        answer["event_id"].as_str().expect("event_id").to_owned()
    }

    async fn join(&self, room: &str) -> String {
        let path = format!("/_matrix/client/v3/join/{}", enc(room));
        let answer = self.call(reqwest::Method::POST, &path, Some(json!({}))).await;
        answer["room_id"].as_str().expect("room_id").to_owned()
    }

    async fn state(&self, room: &str, ty: &str, key: &str) -> Value {
        let path = format!("/_matrix/client/v3/rooms/{}/state/{ty}/{}", enc(room), enc(key));
        self.call(reqwest::Method::GET, &path, None).await
    }

    async fn joined(&self, room: &str) -> Vec<String> {
        let path = format!("/_matrix/client/v3/rooms/{}/joined_members", enc(room));
        let answer = self.call(reqwest::Method::GET, &path, None).await;
        answer["joined"].as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default()
    }
}

fn text(body: &str) -> Value {
    json!({ "msgtype": "m.text", "body": body })
}

/// `body` in the thread of `root`.
fn in_thread(root: &str, mut content: Value) -> Value {
    content["m.relates_to"] = json!({
        "rel_type": "m.thread",
        "event_id": root,
        "is_falling_back": true,
        "m.in_reply_to": { "event_id": root },
    });
    content
}

// ---- One command -------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Kind {
    TaskNew,
    AssignInThread,
    StatusByNumber,
    Comment,
    StatusInThread,
    TaskList,
    BoardInfo,
    Help,
}

impl Kind {
    const CYCLE: [Kind; 8] = [
        Kind::TaskNew,
        Kind::AssignInThread,
        Kind::StatusByNumber,
        Kind::Comment,
        Kind::StatusInThread,
        Kind::TaskList,
        Kind::BoardInfo,
        Kind::Help,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::TaskNew => "new",
            Kind::AssignInThread => "assign",
            Kind::StatusByNumber => "status",
            Kind::Comment => "comment",
            Kind::StatusInThread => "status-thread",
            Kind::TaskList => "list",
            Kind::BoardInfo => "info",
            Kind::Help => "help",
        }
    }

    fn needs_task(self) -> bool {
        matches!(
            self,
            Kind::AssignInThread | Kind::StatusByNumber | Kind::Comment | Kind::StatusInThread
        )
    }

    fn label(self) -> &'static str {
        match self {
            Kind::TaskNew => "`!task new <title>` (general)",
            Kind::AssignInThread => "`!task assign @bob` (task's thread)",
            Kind::StatusByNumber => "`!task status #n doing` (general)",
            Kind::Comment => "comment mentioning @bob (task's thread)",
            Kind::StatusInThread => "`!task status review` (task's thread)",
            Kind::TaskList => "`!task list` (general)",
            Kind::BoardInfo => "`!board info` (general)",
            Kind::Help => "`!help` (general)",
        }
    }
}

/// What ends a command's own time.
enum Until {
    /// The bot's message replying to it leaves Boardroom.
    Reply,
    /// Bob's live stream brings a `notification` frame naming it.
    Notification(Arc<Mutex<Vec<Frame>>>),
}

struct Sample {
    kind: Kind,
    /// Boardroom's own time.
    own: Duration,
    /// Own time before Boardroom's first request to Synapse (all of it when none).
    before: Duration,
    /// Own time after the last answer from Synapse (zero when none).
    after: Duration,
    /// Transaction delivered → reply leaving, homeserver waits included.
    wall: Duration,
    /// The user's send → the reply accepted by Synapse (or the frame read).
    e2e: Duration,
    /// The homeserver's answer waits subtracted.
    waits: Duration,
    /// Boardroom's requests to Synapse in between (the reply not counted).
    requests: usize,
    /// Transaction delivered → Boardroom's 200 read by the proxy.
    ack: Duration,
    /// The reply's text.
    reply: String,
    /// The requests in between, for the worst samples' breakdown.
    trace: Vec<String>,
    /// Boardroom's threads' time on a CPU from the user's send until the bench saw the
    /// reply (polling every millisecond; schedstat): the command's path, and whatever
    /// else Boardroom did meanwhile (the echoes of its requests to Synapse).
    cpu: Duration,
    /// Their time runnable but waiting for a CPU, summed over the threads, over the same
    /// span (schedstat).
    runq: Duration,
}

/// Requests Boardroom makes on its own, not for a command: left out of the waits.
fn background(e: &Exchange) -> bool {
    e.path.starts_with("/_matrix/client/versions") || e.path.contains("/messages")
}

fn reply_to(e: &Exchange, event: &str) -> Option<String> {
    if e.method != "PUT" || !e.path.contains("/send/m.room.message/") {
        return None;
    }
    let v: Value = serde_json::from_slice(&e.body).ok()?;
    let target = v["m.relates_to"]["m.in_reply_to"]["event_id"].as_str()?;
    (target == event).then(|| v["body"].as_str().unwrap_or_default().to_owned())
}

/// The length of the union of `intervals`, each clipped to [`lo`, `hi`].
fn union_within(mut intervals: Vec<(Duration, Duration)>, lo: Duration, hi: Duration) -> Duration {
    intervals.retain(|(a, b)| b > a);
    for iv in &mut intervals {
        iv.0 = iv.0.clamp(lo, hi);
        iv.1 = iv.1.clamp(lo, hi);
    }
    intervals.sort();
    let mut total = Duration::ZERO;
    let mut current: Option<(Duration, Duration)> = None;
    for (a, b) in intervals {
        match current {
            Some((ca, cb)) if a <= cb => current = Some((ca, cb.max(b))),
            Some((ca, cb)) => {
                total += cb - ca;
                current = Some((a, b));
            }
            None => current = Some((a, b)),
        }
    }
    if let Some((a, b)) = current {
        total += b - a;
    }
    total
}

struct Bench {
    rec: Arc<Recorder>,
    settle: Duration,
}

impl Bench {
    /// Waits until nothing crossed either proxy for the settling pause (at most 5 s).
    async fn settle(&self) {
        let started = Instant::now();
        while self.rec.quiet_for() < self.settle && started.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Sends `content` as `user` in `room`, waits for what ends it, and works out its
    /// times.
    async fn command(
        &self,
        pid: u32,
        kind: Kind,
        user: &User,
        room: &str,
        content: Value,
        until: Until,
    ) -> Sample {
        self.settle().await;
        let (in_mark, out_mark) = {
            let r = self.rec.lock();
            (r.inbound.len(), r.outbound.len())
        };
        let sched0 = schedstat(pid);
        let sent_at = self.rec.now();
        let event = user.send(room, content).await;
        let started = Instant::now();
        // Boardroom's threads' times when the end was first seen.
        let mut sched1 = None;
        // The end of Boardroom's own time, and of the end-to-end time.
        let (end, done, reply) = loop {
            assert!(started.elapsed() < TIMEOUT, "no end to {kind:?} {event} within {TIMEOUT:?}");
            match &until {
                Until::Reply => {
                    let r = self.rec.lock();
                    let found = r.outbound[out_mark..]
                        .iter()
                        .find_map(|e| reply_to(e, &event).map(|body| (e.clone(), body)));
                    if let Some((e, body)) = found {
                        sched1.get_or_insert_with(|| schedstat(pid));
                        if let Some(answered) = e.answer_read {
                            assert!(e.status == 200, "the reply to {event} answered {}", e.status);
                            break (e.first, answered, body);
                        }
                    }
                }
                Until::Notification(frames) => {
                    let frames = frames.lock().expect("frames");
                    if let Some(f) =
                        frames.iter().find(|f| f.kind == "notification" && f.data.contains(&event))
                    {
                        break (f.at, f.at, String::new());
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        let (cpu, runq) = sched_delta(&sched0, &sched1.unwrap_or_else(|| schedstat(pid)));
        // The transaction that brought it.
        let r = self.rec.lock();
        let txn = r.inbound[in_mark..]
            .iter()
            .find(|e| {
                e.path.starts_with("/_matrix/app/v1/transactions/")
                    && serde_json::from_slice::<Value>(&e.body).is_ok_and(|v| {
                        v["events"].as_array().is_some_and(|evs| {
                            evs.iter().any(|ev| ev["event_id"].as_str() == Some(event.as_str()))
                        })
                    })
            })
            .unwrap_or_else(|| panic!("no transaction brought {event}"))
            .clone();
        let delivered = txn.read;
        let ack = txn.answer_read.map_or(Duration::ZERO, |a| a.saturating_sub(delivered));
        let between: Vec<&Exchange> = r.outbound[out_mark..]
            .iter()
            .filter(|e| e.first < end && e.answer_read.is_none_or(|a| a > delivered))
            .collect();
        // A request still unanswered when the reply left is one the reply did not wait for
        // (another room's lane of the outbox): its time is Boardroom's.
        let waited = |e: &Exchange| !background(e) && e.answer_read.is_some_and(|a| a <= end);
        let counted: Vec<&Exchange> = between.iter().copied().filter(|e| waited(e)).collect();
        let waits = union_within(
            counted.iter().filter_map(|e| Some((e.read, e.answer_read?))).collect(),
            delivered,
            end,
        );
        let wall = end.saturating_sub(delivered);
        // Own time before the first wait, and after the last.
        let first_wait = counted.iter().map(|e| e.read.max(delivered)).min();
        let last_answer = counted.iter().filter_map(|e| e.answer_read).max();
        let before = first_wait.map_or(wall, |f| f.saturating_sub(delivered));
        let after = last_answer.map_or(Duration::ZERO, |a| end.saturating_sub(a));
        let trace = between
            .iter()
            .map(|e| {
                let body = String::from_utf8_lossy(&e.body);
                let body: String = body.chars().take(120).collect();
                format!(
                    "{} {} sent +{:.2} ms, answered +{:.2} ms{} {body}",
                    e.method,
                    e.path.split('?').next().unwrap_or_default(),
                    ms_f(e.read.saturating_sub(delivered)),
                    ms_f(e.answer_read.unwrap_or(end).saturating_sub(delivered)),
                    if background(e) {
                        " (background, not subtracted)"
                    } else if !waited(e) {
                        " (in flight when the reply left, not subtracted)"
                    } else {
                        ""
                    }
                )
            })
            .collect();
        Sample {
            kind,
            own: wall.saturating_sub(waits),
            before,
            after,
            wall,
            e2e: done.saturating_sub(sent_at),
            waits,
            requests: counted.len(),
            ack,
            reply,
            trace,
            cpu,
            runq,
        }
    }
}

/// Per thread of `pid`: time on a CPU and time waiting for one (ns), from schedstat.
fn schedstat(pid: u32) -> BTreeMap<String, (u64, u64)> {
    let mut out = BTreeMap::new();
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else { return out };
    for task in tasks.flatten() {
        if let Ok(s) = fs::read_to_string(task.path().join("schedstat")) {
            let mut f = s.split_whitespace().map(|v| v.parse::<u64>().unwrap_or(0));
            let (run, wait) = (f.next().unwrap_or(0), f.next().unwrap_or(0));
            out.insert(task.file_name().to_string_lossy().into_owned(), (run, wait));
        }
    }
    out
}

/// Time on a CPU and waiting for one between two readings (threads that ended meanwhile
/// are not counted).
fn sched_delta(
    before: &BTreeMap<String, (u64, u64)>,
    after: &BTreeMap<String, (u64, u64)>,
) -> (Duration, Duration) {
    let (mut run, mut wait) = (0, 0);
    for (tid, (r, w)) in after {
        let (r0, w0) = before.get(tid).copied().unwrap_or((0, 0));
        run += r.saturating_sub(r0);
        wait += w.saturating_sub(w0);
    }
    (Duration::from_nanos(run), Duration::from_nanos(wait))
}

// ---- The run --------------------------------------------------------------------------------

async fn run(args: Args) {
    let load_before = loadavg();
    println!("own time per command against Synapse; load average before: {load_before}");
    let dir = tempfile::Builder::new().prefix("boardroom-cmdbench-").tempdir().expect("tempdir");
    let shm = tempfile::Builder::new()
        .prefix("boardroom-cmdbench-")
        .tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .expect("tempdir");
    let db = if args.disk { dir.path().join("db") } else { shm.path().join("db") };
    println!("Boardroom's database: {}", db.display());

    let rec = Recorder::new();
    let as_proxy = TcpListener::bind("127.0.0.1:0").expect("bind");
    let hs_proxy = TcpListener::bind("127.0.0.1:0").expect("bind");
    let as_proxy_port = as_proxy.local_addr().expect("addr").port();
    let hs_proxy_port = hs_proxy.local_addr().expect("addr").port();
    let listen = free_port();
    let hs_port = free_port();
    let hs = format!("http://127.0.0.1:{hs_port}");

    let config = dir.path().join("boardroom.toml");
    fs::write(&config, boardroom_config(&db, listen, as_proxy_port, hs_proxy_port))
        .expect("config");
    let out = Command::new(&args.binary)
        .args(["registration", "--config"])
        .arg(&config)
        .output()
        .expect("boardroom registration");
    assert!(out.status.success(), "registration: {}", String::from_utf8_lossy(&out.stderr));
    let registration = dir.path().join("registration.yaml");
    fs::write(&registration, &out.stdout).expect("registration");

    // Synapse, as the integration tests run it.
    let synapse_dir = dir.path().join("synapse");
    let python = synapse_python();
    let child = Command::new(&python)
        .arg(project_root().join("scripts/synapse.py"))
        .args(["run", "--dir"])
        .arg(&synapse_dir)
        .args(["--port", &hs_port.to_string(), "--server-name", SERVER_NAME])
        .args(["--shared-secret", SHARED_SECRET, "--registration"])
        .arg(&registration)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start synapse");
    let mut synapse = Proc { pid: child.id(), child: Some(child), name: "synapse" };
    let http = reqwest::Client::new();
    let started = Instant::now();
    loop {
        if let Ok(r) = http.get(format!("{hs}/_matrix/client/versions")).send().await
            && r.status().is_success()
        {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(90), "synapse did not answer in 90 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("synapse pid {} on {hs} ({:.1} s)", synapse.pid, started.elapsed().as_secs_f64());

    if let Some(nice) = args.nice {
        // This thread's nice value; the threads and processes it starts from now on
        // (the proxies, Boardroom) inherit it.
        let me = std::process::id().to_string();
        let ok = Command::new("renice")
            .args(["-n", &nice.to_string(), "-p", &me])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "renice -n {nice} failed");
        println!("Boardroom, the proxies and the users run at nice {nice}; Synapse at 0");
    }
    start_proxy(as_proxy, SocketAddr::from(([127, 0, 0, 1], listen)), Side::Inbound, rec.clone());
    start_proxy(hs_proxy, SocketAddr::from(([127, 0, 0, 1], hs_port)), Side::Outbound, rec.clone());

    // Boardroom, the release binary.
    let log = dir.path().join("boardroom.log");
    let out = fs::File::create(&log).expect("log");
    let child = Command::new(&args.binary)
        .args(["serve", "--config"])
        .arg(&config)
        .env_remove("RUST_LOG")
        .env_remove("BOARDROOM_CONFIG")
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("log"))
        .stderr(out)
        .spawn()
        .expect("start boardroom");
    let mut boardroom = Proc { pid: child.id(), child: Some(child), name: "boardroom" };
    let started = Instant::now();
    while !fs::read_to_string(&log).unwrap_or_default().contains("ping answered") {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "boardroom not ready in 60 s; see {}",
            log.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("boardroom pid {} on 127.0.0.1:{listen}, ready", boardroom.pid);

    // The board, as the integration tests make it.
    let bench = Bench { rec: rec.clone(), settle: args.settle };
    let alice = User::register(&hs, "alice").await;
    let bob = User::register(&hs, "bob").await;
    assert_eq!((alice.id.as_str(), bob.id.as_str()), (ALICE, BOB));
    let dm = alice
        .call(
            reqwest::Method::POST,
            "/_matrix/client/v3/createRoom",
            Some(json!({"invite": [BOT], "is_direct": true, "preset": "trusted_private_chat"})),
        )
        .await["room_id"]
        .as_str()
        .expect("room_id")
        .to_owned();
    let started = Instant::now();
    while !alice.joined(&dm).await.iter().any(|u| u == BOT) {
        assert!(started.elapsed() < Duration::from_secs(30), "the bot did not join the DM");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let created = bench
        .command(
            boardroom.pid,
            Kind::Help,
            &alice,
            &dm,
            text(&format!("!board create {SLUG} Bench")),
            Until::Reply,
        )
        .await;
    assert!(created.reply.contains("created"), "{}", created.reply);
    println!("board created ({:.0} ms of Boardroom's wall time)", ms_f(created.wall));
    let alias = |room: &str| format!("#boardroom_{SLUG}{room}:{SERVER_NAME}");
    let space = alice.join(&alias("")).await;
    let general = alice.join(&alias("-general")).await;
    let tasks = alice.join(&alias("-tasks")).await;
    let invited = bench
        .command(
            boardroom.pid,
            Kind::Help,
            &alice,
            &general,
            text(&format!("!board invite {BOB}")),
            Until::Reply,
        )
        .await;
    assert!(invited.reply.contains("Invited"), "{}", invited.reply);
    bob.join(&space).await;
    bob.join(&tasks).await;
    bob.join(&general).await;
    bench.settle().await;
    let info = bench
        .command(boardroom.pid, Kind::BoardInfo, &bob, &general, text("!board info"), Until::Reply)
        .await;
    assert!(info.reply.contains("@bob:localhost (member)"), "{}", info.reply);
    let frames = start_stream(SocketAddr::from(([127, 0, 0, 1], listen)), &bob.token, rec.clone());
    let started = Instant::now();
    while !frames.lock().expect("frames").iter().any(|f| f.kind == "ready") {
        assert!(started.elapsed() < Duration::from_secs(30), "bob's live stream not ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A warm-up cycle, then the measured ones.
    let mut task = 0u64;
    let mut samples = Vec::new();
    let mut warmup = Vec::new();
    let mut switches0 = 0;
    for cycle in 0..=args.cycles {
        if cycle == 1 && !args.pause.is_zero() {
            println!(
                "pausing {} s: attach to boardroom pid {} now",
                args.pause.as_secs(),
                boardroom.pid
            );
            tokio::time::sleep(args.pause).await;
        }
        if cycle == 1 {
            println!("warm-up done; {} measured cycles", args.cycles);
        }
        let cpu0 = cpu_time(boardroom.pid);
        if cycle == 1 {
            switches0 = context_switches(boardroom.pid);
        }
        task += 1;
        let mut root = String::new();
        let mut got = Vec::new();
        for &kind in &args.kinds {
            let (who, room, content, until) = match kind {
                Kind::TaskNew => (
                    &alice,
                    &general,
                    text(&format!(
                        "!task new Bench task {task}: a title about as long as people write"
                    )),
                    Until::Reply,
                ),
                Kind::AssignInThread => (
                    &alice,
                    &tasks,
                    in_thread(&root, text(&format!("!task assign {BOB}"))),
                    Until::Reply,
                ),
                Kind::StatusByNumber => {
                    (&alice, &general, text(&format!("!task status #{task} doing")), Until::Reply)
                }
                Kind::Comment => {
                    let content = json!({
                        "msgtype": "m.text",
                        "body": format!("bob: could you look at this before Friday? (comment on task {task})"),
                        "format": "org.matrix.custom.html",
                        "formatted_body": format!(
                            "<a href=\"https://matrix.to/#/{BOB}\">bob</a>: could you look at this before Friday? (comment on task {task})"
                        ),
                        "m.mentions": { "user_ids": [BOB] },
                    });
                    (&alice, &tasks, in_thread(&root, content), Until::Notification(frames.clone()))
                }
                Kind::StatusInThread => {
                    (&alice, &tasks, in_thread(&root, text("!task status review")), Until::Reply)
                }
                Kind::TaskList => (&alice, &general, text("!task list"), Until::Reply),
                Kind::BoardInfo => (&alice, &general, text("!board info"), Until::Reply),
                Kind::Help => (&alice, &general, text("!help"), Until::Reply),
            };
            let sample = bench.command(boardroom.pid, kind, who, room, content, until).await;
            if kind == Kind::TaskNew {
                assert!(sample.reply.contains(&format!("{SLUG}#{task}")), "{}", sample.reply);
                let state = alice.state(&tasks, "dev.boardroom.task", &task.to_string()).await;
                root = state["root_event_id"].as_str().expect("root_event_id").to_owned();
            }
            got.push(sample);
        }
        let cpu = cpu_time(boardroom.pid) - cpu0;
        if cycle == 0 {
            warmup = got;
        } else {
            samples.extend(got.into_iter().map(|s| (s, cpu / args.kinds.len() as u32)));
        }
    }
    bench.settle().await;
    let switches = context_switches(boardroom.pid).saturating_sub(switches0);
    let load_after = loadavg();

    println!("\nwarm-up cycle (not counted):");
    for s in &warmup {
        println!(
            "  {:<45} own {:>7.3} ms, wall {:>7.2} ms",
            s.kind.label(),
            ms_f(s.own),
            ms_f(s.wall)
        );
    }
    println!("\nfirst replies of each kind:");
    let mut shown = std::collections::BTreeSet::new();
    for (s, _) in &samples {
        if shown.insert(s.kind) && !s.reply.is_empty() {
            let first_line = s.reply.lines().next().unwrap_or_default();
            println!("  {:?}: {}", s.kind, first_line);
        }
    }
    let refused = samples.iter().filter(|(s, _)| s.reply.contains("Usage:")).count();
    println!("replies with a refusal's usage line: {refused}");

    print_table(&samples);
    let mut worst: Vec<&Sample> = samples.iter().map(|(s, _)| s).collect();
    worst.sort_by_key(|s| std::cmp::Reverse(s.own));
    println!("\nthe five slowest (own time):");
    for s in worst.iter().take(5) {
        println!(
            "  {:?}: own {:.3} ms, wall {:.2} ms, waits {:.2} ms, ack {:.3} ms",
            s.kind,
            ms_f(s.own),
            ms_f(s.wall),
            ms_f(s.waits),
            ms_f(s.ack)
        );
        for t in &s.trace {
            println!("      {t}");
        }
    }
    let cpu: Duration = samples.iter().map(|(_, c)| *c).sum();
    println!(
        "\nBoardroom's CPU (utime + stime, 10 ms ticks) over the measured cycles: {:.2} s, {:.2} ms a \
         command (echoes of the bot's own messages included)",
        cpu.as_secs_f64(),
        ms_f(cpu / samples.len().max(1) as u32)
    );
    println!(
        "Boardroom's context switches over the measured cycles: {switches}, {:.1} a command",
        switches as f64 / samples.len().max(1) as f64
    );
    println!("load average after: {load_after}");

    boardroom.stop();
    let (warnings, lines) = log_problems(&log);
    println!("boardroom's log: {warnings} warnings or errors");
    for l in lines.iter().take(10) {
        println!("  {l}");
    }
    synapse.stop();
    let _ = Command::new(&python)
        .arg(project_root().join("scripts/synapse.py"))
        .args(["clean", "--dir"])
        .arg(&synapse_dir)
        .status();

    calibrate_proxy();

    if args.keep {
        let kept = dir.keep();
        let kept_shm = shm.keep();
        println!("kept {} and {}", kept.display(), kept_shm.display());
    }
}

// ---- The proxy's own cost ------------------------------------------------------------------

/// How late the proxy notes a request: a client writes a small request (stamped just
/// before its `write`), the proxy stamps it when its `read` returns, and forwards it to a
/// server that answers at once. The difference is what each request to Synapse, and the
/// reply, add to Boardroom's figure.
fn calibrate_proxy() {
    const ROUNDS: usize = 2000;
    let server = TcpListener::bind("127.0.0.1:0").expect("bind");
    let server_addr = server.local_addr().expect("addr");
    thread::spawn(move || {
        for conn in server.incoming() {
            let Ok(mut conn) = conn else { continue };
            let _ = conn.set_nodelay(true);
            thread::spawn(move || {
                let mut parser = Parser::new(true);
                let mut buf = vec![0u8; 8192];
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    for _ in parser.feed(&buf[..n], Duration::ZERO) {
                        let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
                        if conn.write_all(answer).is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    let rec = Recorder::new();
    let proxy = TcpListener::bind("127.0.0.1:0").expect("bind");
    let proxy_addr = proxy.local_addr().expect("addr");
    start_proxy(proxy, server_addr, Side::Outbound, rec.clone());

    let round_trips = |addr: SocketAddr| -> (Vec<Duration>, Vec<Duration>) {
        let mut conn = TcpStream::connect(addr).expect("connect");
        let _ = conn.set_nodelay(true);
        let mut reader = io::BufReader::new(conn.try_clone().expect("clone"));
        let request = b"PUT /_matrix/client/v3/rooms/x/send/m.room.message/t HTTP/1.1\r\n\
            Host: 127.0.0.1\r\nContent-Length: 2\r\n\r\n{}";
        let mut rtts = Vec::with_capacity(ROUNDS);
        let mut writes = Vec::with_capacity(ROUNDS);
        for _ in 0..ROUNDS {
            let t0 = rec.now();
            writes.push(t0);
            conn.write_all(request).expect("write");
            let mut line = String::new();
            let mut length = 0usize;
            loop {
                line.clear();
                reader.read_line(&mut line).expect("read");
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0u8; length];
            reader.read_exact(&mut body).expect("body");
            rtts.push(rec.now() - t0);
            thread::sleep(Duration::from_micros(500));
        }
        (rtts, writes)
    };
    let (direct, _) = round_trips(server_addr);
    let (proxied, writes) = round_trips(proxy_addr);
    let late: Vec<Duration> = {
        let r = rec.lock();
        r.outbound.iter().zip(&writes).map(|(e, w)| e.first.saturating_sub(*w)).collect()
    };
    println!(
        "\nthe proxy's own cost ({ROUNDS} requests, load average {}): a round trip straight \
         to a server that answers at once p50 {} p99 {}, through the proxy p50 {} p99 {}; \
         a request noted after its write p50 {} p99 {} (each request Boardroom makes, and \
         its reply, add this to its own time)",
        loadavg(),
        us(percentile(&direct, 50.0)),
        us(percentile(&direct, 99.0)),
        us(percentile(&proxied, 50.0)),
        us(percentile(&proxied, 99.0)),
        us(percentile(&late, 50.0)),
        us(percentile(&late, 99.0)),
    );
}

// ---- Figures ----------------------------------------------------------------------------------

fn print_table(samples: &[(Sample, Duration)]) {
    let mut by_kind: BTreeMap<Kind, Vec<&Sample>> = BTreeMap::new();
    for (s, _) in samples {
        by_kind.entry(s.kind).or_default().push(s);
    }
    println!(
        "\n| command | n | own p50 | own p99 | own max | requests to Synapse | \
         Boardroom's wall p50 (waits included) | end to end p50 | end to end p99 | \
         Boardroom's CPU, send to reply, p50 | its threads waiting for a CPU p50 / p99 |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    let row = |label: &str, list: &[&Sample]| {
        let own: Vec<Duration> = list.iter().map(|s| s.own).collect();
        let wall: Vec<Duration> = list.iter().map(|s| s.wall).collect();
        let e2e: Vec<Duration> = list.iter().map(|s| s.e2e).collect();
        let cpu: Vec<Duration> = list.iter().map(|s| s.cpu).collect();
        let runq: Vec<Duration> = list.iter().map(|s| s.runq).collect();
        let requests = list.iter().map(|s| s.requests).sum::<usize>() as f64 / list.len() as f64;
        println!(
            "| {label} | {} | {:.3} ms | {:.3} ms | {:.3} ms | {requests:.1} | {:.2} ms | {:.1} ms | {:.1} ms | {:.3} ms | {:.3} / {:.3} ms |",
            list.len(),
            ms_f(percentile(&own, 50.0)),
            ms_f(percentile(&own, 99.0)),
            ms_f(percentile(&own, 100.0)),
            ms_f(percentile(&wall, 50.0)),
            ms_f(percentile(&e2e, 50.0)),
            ms_f(percentile(&e2e, 99.0)),
            ms_f(percentile(&cpu, 50.0)),
            ms_f(percentile(&runq, 50.0)),
            ms_f(percentile(&runq, 99.0)),
        );
    };
    for (kind, list) in &by_kind {
        row(kind.label(), list);
    }
    let all: Vec<&Sample> = samples.iter().map(|(s, _)| s).collect();
    row("all", &all);
    println!(
        "\n| command | own time before the first request to Synapse p50 | between its answers \
         and the next request p50 | after the last answer p50 | transaction's 200 p50 |"
    );
    println!("| --- | --- | --- | --- | --- |");
    for (kind, list) in &by_kind {
        let part = |f: &dyn Fn(&Sample) -> Duration| {
            ms_f(percentile(&list.iter().map(|s| f(s)).collect::<Vec<_>>(), 50.0))
        };
        println!(
            "| {} | {:.3} ms | {:.3} ms | {:.3} ms | {:.3} ms |",
            kind.label(),
            part(&|s| s.before),
            part(&|s| s.own.saturating_sub(s.before + s.after)),
            part(&|s| s.after),
            part(&|s| s.ack),
        );
    }
    let ack: Vec<Duration> = all.iter().map(|s| s.ack).collect();
    let over = all.iter().filter(|s| s.own > Duration::from_millis(2)).count();
    let own: Vec<Duration> = all.iter().map(|s| s.own).collect();
    let p99 = percentile(&own, 99.0);
    println!(
        "\ntransactions answered (stored, synced) p50 {:.3} ms p99 {:.3} ms after delivery; \
         {over} of {} over 2 ms; p99 {:.3} ms against 2 ms: {}",
        ms_f(percentile(&ack, 50.0)),
        ms_f(percentile(&ack, 99.0)),
        all.len(),
        ms_f(p99),
        if p99 <= Duration::from_millis(2) { "met" } else { "MISSED" }
    );
}

fn ms_f(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// utime + stime of `pid`.
fn cpu_time(pid: u32) -> Duration {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Duration::ZERO;
    };
    let Some(close) = stat.rfind(')') else { return Duration::ZERO };
    let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
    let tick = |i: usize| {
        Duration::from_millis(fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) * 10)
    };
    tick(11) + tick(12)
}

/// Voluntary and involuntary context switches of `pid`'s threads alive now.
fn context_switches(pid: u32) -> u64 {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else { return 0 };
    let mut total = 0;
    for task in tasks.flatten() {
        let Ok(status) = fs::read_to_string(task.path().join("status")) else { continue };
        for line in status.lines() {
            if let Some(v) = line
                .strip_prefix("voluntary_ctxt_switches:")
                .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))
            {
                total += v.trim().parse::<u64>().unwrap_or(0);
            }
        }
    }
    total
}

fn log_problems(log: &Path) -> (usize, Vec<String>) {
    let Ok(file) = fs::File::open(log) else { return (0, Vec::new()) };
    let bad: Vec<String> = io::BufReader::new(file)
        .lines()
        .map_while(Result::ok)
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .collect();
    (bad.len(), bad)
}
