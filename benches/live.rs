//! A board's live stream fanned out to many subscribers (issue 13).
//!
//! Boardroom runs as its own process (the release binary, `boardroom serve`) on a fresh
//! database in `/dev/shm`, against a stand-in homeserver on loopback that answers its
//! start-up (the bot's registration, its display name, the appservice ping). This process
//! is the other side of real TCP connections on loopback:
//!
//! 1. N subscribers open `GET /_boardroom/api/v1/boards/bench/events` (raw HTTP/1.1 on
//!    tokio sockets, a client token and one of 100 virtual users), in bounded batches,
//!    and each waits for its `ready`;
//! 2. Boardroom's RSS is read before the first subscriber and with all N idle: the
//!    difference over N is the memory of an idle subscriber;
//! 3. acting as the homeserver, it PUTs transactions of one `m.room.message` in the
//!    board's `general` room, one round at a time; each subscriber notes when it reads
//!    the `message` frame with that round's body. A round's latency runs from just before
//!    the PUT is sent to the last subscriber's receipt;
//! 4. Boardroom's CPU time (utime + stime) across the rounds, over rounds × N, is its CPU
//!    per delivered event. Transactions sent before any subscriber give the fixed cost of
//!    a transaction (parsing, the synced write, processing, logging) for comparison.
//!
//! Run: `cargo bench --bench live` (1,000 then 10,000 subscribers), or with arguments:
//! `cargo bench --bench live -- 1000 10000 --rounds 100 --spacing-ms 200 --connect-batch 64`
//! (`--pause-secs N` waits before the subscribers connect, to attach a profiler such as
//! `heaptrack -p` to Boardroom). Figures go in docs/PERFORMANCE.md.

use std::{
    fs, io,
    net::SocketAddr,
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use boardroom::{
    domain::board::{RoomKind, RoomRecord},
    store::Store,
};
use ruma::events::room::member::MembershipState;
use serde_json::json;
use tokio::{net::TcpStream, sync::Semaphore, task::JoinHandle};

mod common;
use common::{
    Boardroom, HS_TOKEN, cpu_time, cpu_time_of, free_port, ms, percentile, report_log, rss_kib,
    sched_time, stand_in, user_sys_of,
};

const BOARD: &str = "bench";
const SPACE: &str = "!space:localhost";
const GENERAL: &str = "!general:localhost";
const SENDER: &str = "@alice:localhost";
const CLIENT: &str = "bench";
const CLIENT_TOKEN: &str = "bench-client-token";
/// Virtual users the subscribers are spread over.
const VIRTUAL_USERS: usize = 100;
/// Subscribers connecting at once, by default: fewer than the 128 connections Boardroom's
/// listeners queue (tokio binds them with std's backlog of 128), so that no SYN is dropped.
const CONNECT_BATCH: usize = 64;
/// Transactions sent before any subscriber: warm-up, and the fixed cost of one.
const WARMUP_ROUNDS: usize = 50;
/// How long a round may take before it is given up (and counted as missed receipts).
const ROUND_TIMEOUT: Duration = Duration::from_secs(10);
/// Between the last subscriber's `ready` and the idle RSS reading.
const SETTLE: Duration = Duration::from_secs(3);
/// The marker before a round's number in a message's body, as the stream's JSON has it.
const MARKER: &[u8] = b"\"body\":\"fanout ";

struct Args {
    counts: Vec<usize>,
    rounds: usize,
    spacing: Duration,
    /// A pause before the subscribers connect (to attach a profiler to Boardroom).
    pause: Duration,
    /// Subscribers connecting at once.
    batch: usize,
}

fn parse_args() -> Args {
    let mut args = Args {
        counts: Vec::new(),
        rounds: 100,
        spacing: Duration::from_millis(200),
        pause: Duration::ZERO,
        batch: CONNECT_BATCH,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            // `cargo bench` adds `--bench`.
            "--bench" => {}
            "--rounds" => {
                args.rounds = it.next().and_then(|v| v.parse().ok()).expect("--rounds N");
            }
            "--spacing-ms" => {
                let ms: u64 = it.next().and_then(|v| v.parse().ok()).expect("--spacing-ms N");
                args.spacing = Duration::from_millis(ms);
            }
            "--connect-batch" => {
                args.batch = it.next().and_then(|v| v.parse().ok()).expect("--connect-batch N");
            }
            "--pause-secs" => {
                let secs: u64 = it.next().and_then(|v| v.parse().ok()).expect("--pause-secs N");
                args.pause = Duration::from_secs(secs);
            }
            n => match n.replace(['_', ','], "").parse::<usize>() {
                Ok(n) if n > 0 => args.counts.push(n),
                // Filters divan's benchmarks would take: ignored.
                _ => eprintln!("live: ignoring argument `{n}`"),
            },
        }
    }
    if args.counts.is_empty() {
        args.counts = vec![1_000, 10_000];
    }
    args.rounds = args.rounds.max(1);
    args
}

fn main() {
    let args = parse_args();
    let largest = args.counts.iter().copied().max().unwrap_or(0);
    let limit = open_files_limit();
    println!(
        "live fan-out: subscribers {:?}, {} rounds {} ms apart; open-file limit {limit} (both processes)",
        args.counts,
        args.rounds,
        args.spacing.as_millis()
    );
    assert!(
        limit > largest as u64 + 256,
        "the open-file limit ({limit}) is too low for {largest} subscribers: raise `ulimit -n`"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let results = runtime.block_on(async {
        let (homeserver, asked) = stand_in().await;
        let mut results = Vec::new();
        for &n in &args.counts {
            results.push(run(n, &args, homeserver, &asked).await);
        }
        results
    });
    print_table(&results);
}

/// What one run measured.
struct Outcome {
    subscribers: usize,
    rounds: usize,
    connect: Duration,
    /// Per round: the last receipt after t0; rounds with missed receipts included.
    last: Vec<Duration>,
    /// Per round: the first receipt after t0 (the pipeline before the fan-out).
    first: Vec<Duration>,
    /// Every receipt after its round's t0.
    receipts: Vec<Duration>,
    /// Per round: the PUT's answer after t0.
    put: Vec<Duration>,
    missed: usize,
    ended: usize,
    rss_before: u64,
    rss_idle: u64,
    rss_after: u64,
    /// utime + stime across the rounds.
    cpu_rounds: Duration,
    /// stime alone: in the kernel (the sockets' writes, epoll).
    sys_rounds: Duration,
    /// The same from the threads' schedstat.
    sched_rounds: Duration,
    /// Per transaction without subscribers (schedstat).
    cpu_fixed_per_txn: Duration,
    cpu_idle: Duration,
    client_cpu_rounds: Duration,
    errors_in_log: usize,
}

/// One run: a fresh database and Boardroom, `n` subscribers, the rounds.
async fn run(n: usize, args: &Args, homeserver: SocketAddr, asked: &Mutex<Vec<String>>) -> Outcome {
    println!("\n== {n} subscribers ==");
    let dir = tempfile::Builder::new()
        .prefix("boardroom-live-")
        .tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .expect("tempdir");
    let db = dir.path().join("db");
    seed(&db);
    let port = free_port();
    let config = dir.path().join("boardroom.toml");
    fs::write(&config, config_text(&db, port, homeserver, n)).expect("config");
    let log = dir.path().join("boardroom.log");
    asked.lock().expect("lock").clear();
    let mut boardroom = Boardroom::start(&config, &log);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_until_serving(addr, &log).await;
    let pid = boardroom.pid;
    println!(
        "boardroom pid {pid} serving on {addr}; the stand-in homeserver was asked: {:?}",
        asked.lock().expect("lock")
    );

    let http = reqwest::Client::new();
    let txn_url = format!("http://{addr}/_matrix/app/v1/transactions");
    let run_id = format!("{}{}", std::process::id(), n);

    // Warm-up without subscribers: what a transaction costs whoever follows it.
    let cpu0 = sched_time(pid);
    for r in 0..WARMUP_ROUNDS {
        put_transaction(&http, &txn_url, &run_id, "warmup", r).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let cpu_fixed_per_txn = (sched_time(pid) - cpu0) / WARMUP_ROUNDS as u32;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before = rss_kib(pid);
    if !args.pause.is_zero() {
        println!("pausing {} s before the subscribers connect", args.pause.as_secs());
        tokio::time::sleep(args.pause).await;
    }

    // The subscribers.
    let shared = Arc::new(Shared::new(n, args.rounds));
    let gate = Arc::new(Semaphore::new(args.batch.max(1)));
    let overflows_before = listen_overflows();
    let started = Instant::now();
    let handles: Vec<JoinHandle<()>> =
        (0..n).map(|i| tokio::spawn(subscriber(i, addr, shared.clone(), gate.clone()))).collect();
    let mut shown = 0;
    loop {
        let ready = shared.ready.load(Ordering::Acquire);
        let ended = shared.ended.load(Ordering::Acquire);
        if ready / 1000 > shown {
            shown = ready / 1000;
            println!("  {ready} ready after {:.1} s", started.elapsed().as_secs_f64());
        }
        if ready == n {
            break;
        }
        assert!(ended == 0, "{ended} subscribers failed to connect; see {}", log.display());
        assert!(started.elapsed() < Duration::from_secs(300), "subscribers not ready in 300 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let connect = started.elapsed();
    let since = started.duration_since(shared.base);
    let ready_at: Vec<Duration> = shared
        .ready_at
        .iter()
        .map(|a| Duration::from_nanos(a.load(Ordering::Acquire)).saturating_sub(since))
        .collect();
    let overflows = listen_overflows().saturating_sub(overflows_before);
    println!(
        "all {n} ready in {:.2} s, {} at once; the kernel's accept queues overflowed {overflows} \
         times (a subscriber's ready after the start: p50 {} p90 {} p99 {} max {})",
        connect.as_secs_f64(),
        args.batch,
        ms(percentile(&ready_at, 50.0)),
        ms(percentile(&ready_at, 90.0)),
        ms(percentile(&ready_at, 99.0)),
        ms(percentile(&ready_at, 100.0)),
    );
    let cpu_settle = sched_time(pid);
    tokio::time::sleep(SETTLE).await;
    let cpu_idle = sched_time(pid) - cpu_settle;
    let rss_idle = rss_kib(pid);
    println!(
        "RSS {rss_before} KiB before, {rss_idle} KiB with {n} idle subscribers: {:.2} KiB each",
        (rss_idle.saturating_sub(rss_before)) as f64 / n as f64
    );

    // The rounds.
    let mut last = Vec::with_capacity(args.rounds);
    let mut first = Vec::with_capacity(args.rounds);
    let mut put = Vec::with_capacity(args.rounds);
    let mut receipts = Vec::with_capacity(args.rounds * n);
    let mut missed = 0;
    let cpu_start = cpu_time(pid);
    let (_, sys_start) = user_sys_of(&pid.to_string());
    let sched_start = sched_time(pid);
    let client_start = cpu_time_of("self");
    for r in 0..args.rounds {
        let body = transaction(&run_id, "fanout", r);
        let url = format!("{txn_url}/{run_id}-fanout-{r}");
        let t0 = shared.base.elapsed();
        let resp = http
            .put(&url)
            .bearer_auth(HS_TOKEN)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("PUT transaction");
        let answered = shared.base.elapsed();
        assert!(resp.status().is_success(), "transaction answered {}", resp.status());
        let round = &shared.rounds[r];
        loop {
            if round.count.load(Ordering::Acquire) >= n {
                break;
            }
            if shared.base.elapsed() > t0 + ROUND_TIMEOUT {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let mut worst = Duration::ZERO;
        let mut earliest = ROUND_TIMEOUT;
        for at in &round.at {
            let at = at.load(Ordering::Acquire);
            if at == 0 {
                missed += 1;
                worst = ROUND_TIMEOUT;
                continue;
            }
            let d = Duration::from_nanos(at).saturating_sub(t0);
            worst = worst.max(d);
            earliest = earliest.min(d);
            receipts.push(d);
        }
        last.push(worst);
        first.push(earliest);
        put.push(answered - t0);
        let next = t0 + args.spacing;
        let now = shared.base.elapsed();
        if next > now {
            tokio::time::sleep(next - now).await;
        }
    }
    let cpu_rounds = cpu_time(pid) - cpu_start;
    let sys_rounds = user_sys_of(&pid.to_string()).1 - sys_start;
    let sched_rounds = sched_time(pid) - sched_start;
    let client_cpu_rounds = cpu_time_of("self") - client_start;
    let rss_after = rss_kib(pid);
    let ended = shared.ended.load(Ordering::Acquire);

    for h in &handles {
        h.abort();
    }
    for h in handles {
        let _ = h.await;
    }
    boardroom.stop();
    let errors_in_log = report_log(&log);
    drop(dir);
    let outcome = Outcome {
        subscribers: n,
        rounds: args.rounds,
        connect,
        last,
        first,
        receipts,
        put,
        missed,
        ended,
        rss_before,
        rss_idle,
        rss_after,
        cpu_rounds,
        sys_rounds,
        sched_rounds,
        cpu_fixed_per_txn,
        cpu_idle,
        client_cpu_rounds,
        errors_in_log,
    };
    print_outcome(&outcome);
    outcome
}

// ---- The database, the config, the homeserver ----------------------------------------------

fn virtual_user(i: usize) -> String {
    format!("sub{i}")
}

/// A board `bench` with its space and a public `general` room, `VIRTUAL_USERS` virtual
/// users owned by the client `bench` and registered; then the store is closed (RocksDB
/// admits one process).
fn seed(db: &Path) {
    let store = Store::open(db).expect("store");
    let space: ruma::OwnedRoomId = SPACE.try_into().expect("room id");
    let general: ruma::OwnedRoomId = GENERAL.try_into().expect("room id");
    let alice: ruma::OwnedUserId = SENDER.try_into().expect("user id");
    store.put_board(&common::bench_board(BOARD, &space, &alice)).expect("board");
    let room = RoomRecord {
        board: BOARD.into(),
        name: "general".into(),
        kind: RoomKind::Chat,
        private: false,
        pending_move_from: None,
    };
    store.put_room(&general, &room).expect("room");
    store
        .set_membership(&space, &alice, &MembershipState::Join, Some("Alice"), Some(BOARD))
        .expect("member");
    store
        .set_membership(&general, &alice, &MembershipState::Join, Some("Alice"), None)
        .expect("member");
    for i in 0..VIRTUAL_USERS {
        let user: ruma::OwnedUserId =
            format!("@boardroom_{}:localhost", virtual_user(i)).try_into().expect("user id");
        store.claim_virtual_user(&user, CLIENT, 1_000).expect("claim");
        store.set_virtual_user_registered(&user, CLIENT).expect("registered");
    }
}

fn config_text(db: &Path, port: u16, homeserver: SocketAddr, n: usize) -> String {
    let more = format!(
        r#"[api]
# Every subscriber connects at once through one client: no per-caller rate.
requests_per_second = 0

[[api.clients]]
name = "{CLIENT}"
token = "{CLIENT_TOKEN}"
boards = ["{BOARD}"]
max_virtual_users = 1000

[live]
max_subscribers = {}
max_streams_per_user = {}
"#,
        n + 1_000,
        n
    );
    common::config_text(db, port, homeserver, &more)
}

// ---- Boardroom as a child process -----------------------------------------------------------

/// Waits until Boardroom answers the API as the client, and its start-up reached the
/// stand-in (the ping was answered).
async fn wait_until_serving(addr: SocketAddr, log: &Path) {
    let http = reqwest::Client::new();
    let url = format!("http://{addr}/_boardroom/api/v1/boards/{BOARD}");
    let started = Instant::now();
    loop {
        let answered = http
            .get(&url)
            .bearer_auth(CLIENT_TOKEN)
            .header("x-boardroom-user", virtual_user(0))
            .send()
            .await;
        if let Ok(resp) = answered {
            assert!(resp.status().is_success(), "GET /boards/{BOARD}: {}", resp.status());
            let text = fs::read_to_string(log).unwrap_or_default();
            if text.contains("ping answered") {
                return;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "boardroom not serving after 30 s; see {}",
            log.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---- Transactions -----------------------------------------------------------------------------

/// A transaction of one message in `general`, with round `r`'s number in its body.
fn transaction(run_id: &str, kind: &str, r: usize) -> String {
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    json!({ "events": [{
        "type": "m.room.message",
        "room_id": GENERAL,
        "sender": SENDER,
        "event_id": format!("${kind}-{run_id}-{r}:localhost"),
        "origin_server_ts": ts,
        "content": {
            "msgtype": "m.text",
            "body": format!("{kind} {r}: a line of chat about as long as people write them, no mentions"),
        },
        "unsigned": { "age": 12 },
    }]})
    .to_string()
}

async fn put_transaction(http: &reqwest::Client, url: &str, run_id: &str, kind: &str, r: usize) {
    let resp = http
        .put(format!("{url}/{run_id}-{kind}-{r}"))
        .bearer_auth(HS_TOKEN)
        .header("content-type", "application/json")
        .body(transaction(run_id, kind, r))
        .send()
        .await
        .expect("PUT transaction");
    assert!(resp.status().is_success(), "transaction answered {}", resp.status());
}

// ---- Subscribers --------------------------------------------------------------------------------

/// What the subscribers report.
struct Shared {
    /// The clock's origin: receipts are nanoseconds after it.
    base: Instant,
    ready: AtomicUsize,
    /// When each subscriber read its `ready` (0: not yet).
    ready_at: Vec<AtomicU64>,
    /// Subscribers whose stream failed or ended.
    ended: AtomicUsize,
    rounds: Vec<Round>,
}

struct Round {
    /// Subscribers that received the round's message.
    count: AtomicUsize,
    /// When each did (0: not yet).
    at: Vec<AtomicU64>,
}

impl Shared {
    fn new(n: usize, rounds: usize) -> Self {
        Self {
            base: Instant::now(),
            ready: AtomicUsize::new(0),
            ready_at: (0..n).map(|_| AtomicU64::new(0)).collect(),
            ended: AtomicUsize::new(0),
            rounds: (0..rounds)
                .map(|_| Round {
                    count: AtomicUsize::new(0),
                    at: (0..n).map(|_| AtomicU64::new(0)).collect(),
                })
                .collect(),
        }
    }
}

/// One subscriber: connects (within the gate), reads its stream, notes each round's
/// message. Runs until its stream ends or it is aborted.
async fn subscriber(i: usize, addr: SocketAddr, shared: Arc<Shared>, gate: Arc<Semaphore>) {
    let mut permit = Some(gate.acquire_owned().await.expect("gate"));
    let mut stream = None;
    for attempt in 0..5u64 {
        match TcpStream::connect(addr).await {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100 * (attempt + 1))).await,
        }
    }
    let Some(stream) = stream else {
        shared.ended.fetch_add(1, Ordering::AcqRel);
        return;
    };
    let request = format!(
        "GET /_boardroom/api/v1/boards/{BOARD}/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Authorization: Bearer {CLIENT_TOKEN}\r\nX-Boardroom-User: {}\r\n\
         Accept: text/event-stream\r\n\r\n",
        virtual_user(i % VIRTUAL_USERS)
    );
    if write_all(&stream, request.as_bytes()).await.is_err() {
        shared.ended.fetch_add(1, Ordering::AcqRel);
        return;
    }
    let mut reader = Frames::default();
    let mut buf = vec![0u8; 2048];
    loop {
        if stream.readable().await.is_err() {
            break;
        }
        let n = match stream.try_read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(_) => break,
        };
        let mut now = None;
        let ok = reader.feed(&buf[..n], |seen| match seen {
            Seen::Ready => {
                permit.take();
                let at = shared.base.elapsed().as_nanos() as u64;
                shared.ready_at[i].store(at.max(1), Ordering::Release);
                shared.ready.fetch_add(1, Ordering::AcqRel);
            }
            Seen::Round(r) => {
                let Some(round) = shared.rounds.get(r) else { return };
                let at = *now.get_or_insert_with(|| shared.base.elapsed().as_nanos() as u64);
                if round.at[i].swap(at.max(1), Ordering::AcqRel) == 0 {
                    round.count.fetch_add(1, Ordering::AcqRel);
                }
            }
        });
        if !ok {
            break;
        }
    }
    shared.ended.fetch_add(1, Ordering::AcqRel);
}

async fn write_all(stream: &TcpStream, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        stream.writable().await?;
        match stream.try_write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

enum Seen {
    Ready,
    Round(usize),
}

/// Reads an event stream's response line by line: the head (must be 200), then SSE
/// lines (chunk-size lines of the chunked encoding fall between frames and are ignored).
#[derive(Default)]
struct Frames {
    pending: Vec<u8>,
    head_done: bool,
    event: Vec<u8>,
}

impl Frames {
    /// Takes `bytes`; calls `on` for `ready` and for each round's message. `false` if the
    /// response is not a 200.
    fn feed(&mut self, bytes: &[u8], mut on: impl FnMut(Seen)) -> bool {
        self.pending.extend_from_slice(bytes);
        if !self.head_done {
            let Some(end) = find(&self.pending, b"\r\n\r\n") else { return true };
            let status = &self.pending[..end];
            if !status.starts_with(b"HTTP/1.1 200") {
                eprintln!("live: stream refused: {}", String::from_utf8_lossy(status));
                return false;
            }
            self.head_done = true;
            self.pending.drain(..end + 4);
        }
        let mut start = 0;
        while let Some(nl) = self.pending[start..].iter().position(|&b| b == b'\n') {
            let line = &self.pending[start..start + nl];
            if let Some(event) = line.strip_prefix(b"event: ") {
                self.event.clear();
                self.event.extend_from_slice(event);
                if event == b"ready" {
                    on(Seen::Ready);
                }
            } else if line.starts_with(b"data: ")
                && self.event == b"message"
                && let Some(at) = find(line, MARKER)
            {
                let digits = &line[at + MARKER.len()..];
                let end = digits.iter().position(|b| !b.is_ascii_digit()).unwrap_or(digits.len());
                if let Some(r) =
                    std::str::from_utf8(&digits[..end]).ok().and_then(|s| s.parse().ok())
                {
                    on(Seen::Round(r));
                }
            }
            start += nl + 1;
        }
        self.pending.drain(..start);
        true
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

// ---- /proc ------------------------------------------------------------------------------------

/// The kernel's count of SYNs dropped because a listener's accept queue was full (all
/// listeners of the machine: read it in a quiet sitting).
fn listen_overflows() -> u64 {
    let Ok(text) = fs::read_to_string("/proc/net/netstat") else { return 0 };
    let mut lines = text.lines();
    while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
        if !names.starts_with("TcpExt:") {
            continue;
        }
        let at = names.split_whitespace().position(|n| n == "ListenOverflows");
        return at
            .and_then(|i| values.split_whitespace().nth(i))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
    }
    0
}

fn open_files_limit() -> u64 {
    fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| {
            l.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

// ---- Figures ----------------------------------------------------------------------------------

fn per_sub_kib(o: &Outcome, rss: u64) -> f64 {
    rss.saturating_sub(o.rss_before) as f64 / o.subscribers as f64
}

fn cpu_per_event(o: &Outcome) -> Duration {
    o.cpu_rounds / (o.rounds * o.subscribers).max(1) as u32
}

fn print_outcome(o: &Outcome) {
    println!(
        "rounds {}: last receipt p50 {} p99 {} max {}; every receipt p50 {} p99 {}; \
         first receipt p50 {}; PUT answered p50 {}",
        o.rounds,
        ms(percentile(&o.last, 50.0)),
        ms(percentile(&o.last, 99.0)),
        ms(percentile(&o.last, 100.0)),
        ms(percentile(&o.receipts, 50.0)),
        ms(percentile(&o.receipts, 99.0)),
        ms(percentile(&o.first, 50.0)),
        ms(percentile(&o.put, 50.0)),
    );
    println!(
        "missed receipts {}, streams ended early {}; RSS after the rounds {} KiB ({:.2} KiB a subscriber)",
        o.missed,
        o.ended,
        o.rss_after,
        per_sub_kib(o, o.rss_after)
    );
    println!(
        "boardroom CPU: {:.3} s over the rounds (utime + stime, {:.3} s of it in the kernel; {:.3} s by schedstat) = \
         {:.2} µs a delivered event ({:.2} µs by schedstat); a transaction with no subscriber \
         {:.2} ms; idle {} over {} s with every subscriber connected; this process {:.3} s \
         over the rounds",
        o.cpu_rounds.as_secs_f64(),
        o.sys_rounds.as_secs_f64(),
        o.sched_rounds.as_secs_f64(),
        cpu_per_event(o).as_secs_f64() * 1e6,
        (o.sched_rounds / (o.rounds * o.subscribers).max(1) as u32).as_secs_f64() * 1e6,
        o.cpu_fixed_per_txn.as_secs_f64() * 1e3,
        ms(o.cpu_idle),
        SETTLE.as_secs(),
        o.client_cpu_rounds.as_secs_f64(),
    );
}

fn print_table(results: &[Outcome]) {
    println!();
    println!(
        "| subscribers | connect all | last receipt p50 | p99 | max | every receipt p50 | \
         RSS per idle subscriber | CPU per delivered event | missed | log warnings |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for o in results {
        println!(
            "| {} | {:.2} s | {} | {} | {} | {} | {:.2} KiB | {:.2} µs | {} | {} |",
            o.subscribers,
            o.connect.as_secs_f64(),
            ms(percentile(&o.last, 50.0)),
            ms(percentile(&o.last, 99.0)),
            ms(percentile(&o.last, 100.0)),
            ms(percentile(&o.receipts, 50.0)),
            per_sub_kib(o, o.rss_idle),
            cpu_per_event(o).as_secs_f64() * 1e6,
            o.missed,
            o.errors_in_log,
        );
    }
    for o in results {
        let p99 = percentile(&o.last, 99.0);
        let target = if o.subscribers >= 10_000 {
            Duration::from_millis(250)
        } else {
            Duration::from_millis(20)
        };
        let rss = per_sub_kib(o, o.rss_idle);
        println!(
            "{} subscribers: p99 {} against {}: {}; RSS {:.2} KiB against 16 KiB: {}",
            o.subscribers,
            ms(p99),
            ms(target),
            if p99 <= target { "met" } else { "MISSED" },
            rss,
            if rss <= 16.0 { "met" } else { "MISSED" },
        );
    }
}
