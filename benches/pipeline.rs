//! The whole transaction pipeline as a homeserver meets it (issue 16).
//!
//! Boardroom runs as its own process (the release binary, `boardroom serve`, logging at
//! `info` to a file) on a fresh database, on `/dev/shm` or on the machine's disk, against
//! a stand-in homeserver on loopback that answers its start-up. This process acts as the
//! homeserver: it PUTs Synapse-shaped transactions of 100 events to
//! `/_matrix/app/v1/transactions/{txnId}` over loopback TCP (HTTP/1.1, kept-alive
//! connections), one in flight as Synapse sends them, or 4 or 16 at once, and after the
//! last answer reads Boardroom's `GET /metrics` (`[metrics] listen`) until the inbound
//! queue is empty: every event stored and processed.
//!
//! The events are spread over 16 rooms, 8 of them a board's chat rooms (where messages go
//! to the board's live log, mentions to the inbox, thread replies to the comment index)
//! and 8 rooms Boardroom does not manage; a quarter of them plain messages, a quarter
//! messages mentioning a member (`m.mentions` and a pill), a quarter thread replies, a
//! quarter membership changes.
//!
//! It reports events/s from the first PUT to the empty queue, each transaction's answer
//! time (p50, p99), Boardroom's CPU per event (utime + stime of its process from before
//! the first PUT to the empty queue: the HTTP server, parsing, the synced write,
//! processing and its writes, logging), its RSS before, at its peak, after the run and
//! after an idle spell, and, for the disk, the time of one synced write (`dd
//! oflag=dsync`) of 4 KiB and of a transaction's body, in the same sitting.
//!
//! Run: `cargo bench --bench pipeline` (both places, 1, 4 and 16 in flight, 1,000
//! transactions each), or spelled out:
//! `cargo bench --bench pipeline -- --place shm --in-flight 1,4,16 --txns 1000 --idle-secs 20`
//! (`--pause-secs N` waits before the load, to attach a profiler; `--binary PATH` runs
//! another build of Boardroom, for an A/B in one sitting; `--events N` sends transactions
//! of N events rather than 100, as Synapse does when events trickle in; `--gap-ms N`
//! pauses N ms after each answer, so that each transaction meets an idle Boardroom, as
//! when people talk). It also times the same kind of client, with the same gap, against a
//! server that does nothing (a thread in this process answering each request as soon as
//! its headers are in): the machine's own cost of a request after that much idle, beside
//! Boardroom's. Figures go in docs/PERFORMANCE.md.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use boardroom::{
    domain::board::{RoomKind, RoomRecord},
    store::Store,
};
use ruma::events::room::member::MembershipState;
use serde_json::{Value, json};

mod common;
use common::{
    Boardroom, HS_TOKEN, base_dir, cpu_time, free_port, ms, peak_rss_kib, percentile, report_log,
    rss_kib, stand_in,
};

const BOARD: &str = "bench";
const SPACE: &str = "!space:localhost";
const EVENTS_PER_TXN: usize = 100;
/// Rooms the events are spread over: the even ones are the board's chat rooms.
const ROOMS: usize = 16;
/// Users who send, all members of the board's rooms.
const SENDERS: usize = 50;
const MENTIONED: &str = "@alice:localhost";

struct Args {
    txns: usize,
    /// Events per transaction (100: Synapse's most).
    events: usize,
    in_flight: Vec<usize>,
    places: Vec<String>,
    idle: Duration,
    pause: Duration,
    /// A pause after each answer before the next transaction (`--gap-ms`): Boardroom
    /// meets each transaction idle, as when people talk rather than a backlog drains.
    gap: Duration,
    /// The Boardroom binary to run: this build's, or another (`--binary`, for an A/B).
    binary: PathBuf,
}

fn parse_args() -> Args {
    let mut args = Args {
        txns: 1_000,
        events: EVENTS_PER_TXN,
        in_flight: vec![1, 4, 16],
        places: vec!["shm".into(), "disk".into()],
        idle: Duration::from_secs(10),
        pause: Duration::ZERO,
        gap: Duration::ZERO,
        binary: PathBuf::from(env!("CARGO_BIN_EXE_boardroom")),
    };
    let mut it = std::env::args().skip(1);
    let list = |v: Option<String>| -> Vec<String> {
        v.expect("a value").split(',').map(str::to_owned).collect()
    };
    while let Some(a) = it.next() {
        match a.as_str() {
            "--bench" => {}
            "--txns" => args.txns = it.next().and_then(|v| v.parse().ok()).expect("--txns N"),
            "--events" => args.events = it.next().and_then(|v| v.parse().ok()).expect("--events N"),
            "--in-flight" => {
                args.in_flight =
                    list(it.next()).iter().map(|v| v.parse().expect("--in-flight 1,4")).collect();
            }
            "--place" => args.places = list(it.next()),
            "--idle-secs" => {
                let s: u64 = it.next().and_then(|v| v.parse().ok()).expect("--idle-secs N");
                args.idle = Duration::from_secs(s);
            }
            "--pause-secs" => {
                let s: u64 = it.next().and_then(|v| v.parse().ok()).expect("--pause-secs N");
                args.pause = Duration::from_secs(s);
            }
            "--gap-ms" => {
                let ms: u64 = it.next().and_then(|v| v.parse().ok()).expect("--gap-ms N");
                args.gap = Duration::from_millis(ms);
            }
            "--binary" => args.binary = it.next().map(PathBuf::from).expect("--binary PATH"),
            other => eprintln!("pipeline: ignoring argument `{other}`"),
        }
    }
    args.txns = args.txns.max(1);
    args.events = args.events.clamp(1, EVENTS_PER_TXN);
    args
}

fn main() {
    let args = parse_args();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut results = Vec::new();
    // Each place's synced write of a transaction's size.
    let mut syncs = Vec::new();
    let client = runtime.block_on(async {
        let (homeserver, asked) = stand_in().await;
        for place in &args.places {
            let base = base_dir(place);
            std::fs::create_dir_all(&base).expect("bench dir");
            let sync = synced_write_time(&base, 4096);
            // A transaction's synced write carries its events, not 4 KiB: the same with
            // blocks of a transaction's body.
            let size = transaction("dd", 0, args.events).1.len();
            let sync_txn = synced_write_time(&base, size);
            println!(
                "{place}: one synced 4 KiB write (dd oflag=dsync, 500 writes): {}; \
                 of a transaction's {size} bytes: {}",
                dd_ms(sync),
                dd_ms(sync_txn)
            );
            syncs.push((place.clone(), sync_txn));
            for &k in &args.in_flight {
                let o = run(&args, place, &base, k, homeserver, &asked).await;
                print_outcome(&o);
                results.push(o);
            }
        }
        floor(args.gap, args.txns.min(1_000)).await
    });
    print_table(&results);
    if args.gap.is_zero() {
        print_bounds(&results, &syncs, client);
    }
}

/// For each place, the rate one synced write per transaction allows, the share of it
/// reached with one transaction in flight, and the most a server that did no work at all
/// could reach there: with one in flight a transaction waits for its own sync and for
/// everything else on its way, of which the client's own round trip (`client`, the p50
/// against the server that does nothing, a request without a body) is a part no server
/// can cut.
fn print_bounds(results: &[Outcome], syncs: &[(String, Option<Duration>)], client: Duration) {
    for (place, sync) in syncs {
        let Some(sync) = sync.filter(|s| !s.is_zero()) else { continue };
        let Some(one) = results.iter().find(|o| &o.place == place && o.in_flight == 1) else {
            continue;
        };
        let bound = one.events as f64 / one.answers.len().max(1) as f64 / sync.as_secs_f64();
        let ceiling = sync.as_secs_f64() / (sync + client).as_secs_f64();
        println!(
            "{place}: one synced write per transaction allows {bound:.0} events/s; one in \
             flight reached {:.0} ({:.0} % of it); the client's own round trip ({}) leaves \
             a server that does no work at most {:.0} % of it",
            events_per_sec(one),
            100.0 * events_per_sec(one) / bound,
            ms(client),
            100.0 * ceiling
        );
    }
}

fn dd_ms(took: Option<Duration>) -> String {
    took.map_or_else(|| "dd failed".into(), |t| format!("{:.3} ms", t.as_secs_f64() * 1e3))
}

/// A client built as [`run`]'s, with the same pause between requests, against a server
/// that answers each request as soon as its headers are in (blocking threads of this
/// process; the requests carry no body): what a request costs this machine after that
/// much idle, whatever answers it.
async fn floor(gap: Duration, n: usize) -> Duration {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let _ = conn.set_nodelay(true);
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                let mut seen = Vec::new();
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                        seen.drain(..end + 4);
                        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
                        if conn.write_all(answer).is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    let http = reqwest::Client::builder().pool_max_idle_per_host(64).build().expect("client");
    let url = format!("http://{addr}/nothing");
    let mut answers = Vec::with_capacity(n);
    for i in 0..n {
        if i > 0 {
            tokio::time::sleep(gap).await;
        }
        let t = Instant::now();
        let resp = http.get(&url).send().await.expect("GET");
        let _ = resp.bytes().await;
        answers.push(t.elapsed());
    }
    let p50 = percentile(&answers, 50.0);
    println!(
        "a server that does nothing, {} ms after each answer: p50 {}, p99 {} ({n} requests)",
        gap.as_millis(),
        ms(p50),
        ms(percentile(&answers, 99.0))
    );
    p50
}

/// What one run measured.
struct Outcome {
    place: String,
    in_flight: usize,
    events: usize,
    body_bytes: usize,
    /// Each transaction's answer time.
    answers: Vec<Duration>,
    /// From the first PUT to the last answer, and to the empty queue.
    sent: Duration,
    drained: Duration,
    /// Entries still waiting when the last transaction was answered.
    depth_at_last_answer: i64,
    cpu: Duration,
    rss_before: u64,
    rss_peak: u64,
    rss_after: u64,
    rss_idle: u64,
    idle: Duration,
    errors_in_log: usize,
}

async fn run(
    args: &Args,
    place: &str,
    base: &Path,
    in_flight: usize,
    homeserver: SocketAddr,
    asked: &Mutex<Vec<String>>,
) -> Outcome {
    asked.lock().expect("lock").clear();
    let dir = tempfile::tempdir_in(base).expect("tempdir");
    let db = dir.path().join("db");
    seed(&db);
    let (port, metrics_port) = (free_port(), free_port());
    let config = dir.path().join("boardroom.toml");
    std::fs::write(&config, config_text(&db, port, metrics_port, homeserver)).expect("config");
    let log = dir.path().join("boardroom.log");
    let mut boardroom = Boardroom::start_binary(&args.binary, &config, &log);
    let pid = boardroom.pid;
    let http = reqwest::Client::builder().pool_max_idle_per_host(64).build().expect("client");
    let metrics_url = format!("http://127.0.0.1:{metrics_port}/metrics");
    wait_until_serving(&http, &metrics_url, &log).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    if !args.pause.is_zero() {
        println!("boardroom pid {pid}: pausing {} s", args.pause.as_secs());
        tokio::time::sleep(args.pause).await;
    }

    // Every body made before the clock starts.
    let run_id = format!("{place}{in_flight}");
    let bodies: Arc<Vec<(String, String)>> =
        Arc::new((0..args.txns).map(|t| transaction(&run_id, t, args.events)).collect());
    let body_bytes = bodies.iter().map(|(_, b)| b.len()).sum::<usize>() / bodies.len();
    let url = format!("http://127.0.0.1:{port}/_matrix/app/v1/transactions");
    let rss_before = rss_kib(pid);
    let cpu_before = cpu_time(pid);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    let gap = args.gap;
    for _ in 0..in_flight {
        let (http, url, bodies, next) = (http.clone(), url.clone(), bodies.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            loop {
                if !gap.is_zero() && !answers.is_empty() {
                    tokio::time::sleep(gap).await;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((txn, body)) = bodies.get(i) else { return answers };
                let t = Instant::now();
                let resp = http
                    .put(format!("{url}/{txn}"))
                    .bearer_auth(HS_TOKEN)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .expect("PUT transaction");
                let status = resp.status();
                let _ = resp.bytes().await;
                answers.push(t.elapsed());
                assert!(status.is_success(), "transaction {txn} answered {status}");
            }
        }));
    }
    let mut answers = Vec::with_capacity(args.txns);
    for w in workers {
        answers.extend(w.await.expect("worker"));
    }
    let sent = started.elapsed();
    let depth_at_last_answer = read_metrics(&http, &metrics_url).await.0;
    let events = args.txns * args.events;
    loop {
        let (depth, processed) = read_metrics(&http, &metrics_url).await;
        if depth == 0 && processed >= events as u64 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(600), "not drained after 600 s");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let drained = started.elapsed();
    let cpu = cpu_time(pid).saturating_sub(cpu_before);
    let (rss_peak, rss_after) = (peak_rss_kib(pid), rss_kib(pid));
    tokio::time::sleep(args.idle).await;
    let rss_idle = rss_kib(pid);
    boardroom.stop();
    let errors_in_log = report_log(&log);
    Outcome {
        place: place.to_owned(),
        in_flight,
        events,
        body_bytes,
        answers,
        sent,
        drained,
        depth_at_last_answer,
        cpu,
        rss_before,
        rss_peak,
        rss_after,
        rss_idle,
        idle: args.idle,
        errors_in_log,
    }
}

/// The inbound queue's depth and the events done with, from `GET /metrics`: the entries
/// processed, and the messages ingest left unstored because they call for nothing (a build
/// without that counter reads 0).
async fn read_metrics(http: &reqwest::Client, url: &str) -> (i64, u64) {
    let text = http.get(url).send().await.expect("metrics").text().await.expect("metrics");
    let value = |name: &str| -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
    };
    let required = |name: &str| -> f64 {
        value(name).unwrap_or_else(|| panic!("{name} not in the metrics:\n{text}"))
    };
    (
        required("boardroom_inbound_queue_depth") as i64,
        required("boardroom_inbound_entries_processed_total") as u64
            + value("boardroom_appservice_events_ignored_total").unwrap_or(0.0) as u64,
    )
}

async fn wait_until_serving(http: &reqwest::Client, metrics_url: &str, log: &Path) {
    let started = Instant::now();
    loop {
        if http.get(metrics_url).send().await.is_ok_and(|r| r.status().is_success())
            && std::fs::read_to_string(log).unwrap_or_default().contains("ping answered")
        {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "boardroom not serving after 30 s; see {}",
            log.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---- The database, the config, the events ----------------------------------------------------

/// One synced write of `bytes` in `dir`, as `dd … oflag=dsync` measures it over 500
/// writes.
fn synced_write_time(dir: &Path, bytes: usize) -> Option<Duration> {
    let file = dir.join("ddtest");
    let started = Instant::now();
    let ok = std::process::Command::new("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", file.display()))
        .arg(format!("bs={bytes}"))
        .args(["count=500", "oflag=dsync"])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let took = started.elapsed();
    let _ = std::fs::remove_file(&file);
    ok.then(|| took / 500)
}

fn room(i: usize) -> String {
    if i.is_multiple_of(2) {
        format!("!board{i}:localhost")
    } else {
        format!("!other{i}:localhost")
    }
}

fn sender(i: usize) -> String {
    format!("@user{i}:localhost")
}

/// The board `bench`: its space and 8 chat rooms, with Alice and the senders joined.
fn seed(db: &Path) {
    let store = Store::open(db).expect("store");
    let space: ruma::OwnedRoomId = SPACE.try_into().expect("room id");
    let alice: ruma::OwnedUserId = MENTIONED.try_into().expect("user id");
    store.put_board(&common::bench_board(BOARD, &space, &alice)).expect("board");
    let members: Vec<(ruma::OwnedUserId, String)> = std::iter::once((MENTIONED.into(), "Alice"))
        .chain((0..SENDERS).map(|i| (sender(i), "User")))
        .map(|(u, name)| (u.try_into().expect("user id"), format!("{name} {}", name.len())))
        .collect();
    for (user, name) in &members {
        store
            .set_membership(&space, user, &MembershipState::Join, Some(name), Some(BOARD))
            .expect("member");
    }
    for i in (0..ROOMS).step_by(2) {
        let id: ruma::OwnedRoomId = room(i).try_into().expect("room id");
        let record = RoomRecord {
            board: BOARD.into(),
            name: format!("chat{i}"),
            kind: RoomKind::Chat,
            private: false,
            pending_move_from: None,
        };
        store.put_room(&id, &record).expect("room");
        for (user, name) in &members {
            store
                .set_membership(&id, user, &MembershipState::Join, Some(name), None)
                .expect("member");
        }
    }
}

fn config_text(db: &Path, port: u16, metrics_port: u16, homeserver: SocketAddr) -> String {
    let more = format!("[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n");
    common::config_text(db, port, homeserver, &more)
}

/// Event `n` of a run, as Synapse sends it to an appservice.
fn event(run_id: &str, n: usize) -> Value {
    let room = room(n % ROOMS);
    let common = |mut v: Value| {
        v["event_id"] = json!(format!("${run_id}-{n}-aB3dE6gH9jK2mN5pQ8sT1vW4yZ7"));
        v["room_id"] = json!(room);
        v["sender"] = json!(sender(n % SENDERS));
        v["origin_server_ts"] = json!(1_780_000_000_000u64 + n as u64);
        v["unsigned"] = json!({ "age": 12, "membership": "join" });
        v
    };
    match (n / ROOMS) % 4 {
        0 => common(json!({
            "type": "m.room.message",
            "content": {
                "msgtype": "m.text",
                "body": format!("status update number {n}: the build is green again, merging the release branch after lunch"),
            },
        })),
        1 => common(json!({
            "type": "m.room.message",
            "content": {
                "msgtype": "m.text",
                "body": "Alice: could you look at this task before the review?",
                "format": "org.matrix.custom.html",
                "formatted_body": "<a href=\"https://matrix.to/#/@alice:localhost\">Alice</a>: could you look at this task before the review?",
                "m.mentions": { "user_ids": [MENTIONED] },
            },
        })),
        2 => common(json!({
            "type": "m.room.message",
            "content": {
                "msgtype": "m.text",
                "body": "a comment in the thread: I tried it on staging and it works",
                "m.relates_to": {
                    "rel_type": "m.thread",
                    "event_id": format!("${run_id}-root-{}:localhost", n % 7),
                    "is_falling_back": true,
                    "m.in_reply_to": { "event_id": format!("${run_id}-{}:localhost", n.saturating_sub(16)) },
                },
            },
        })),
        _ => {
            let user = format!("@member{}:localhost", n % 500);
            common(json!({
                "type": "m.room.member",
                "state_key": user,
                "content": { "membership": "join", "displayname": format!("Member {}", n % 500) },
            }))
        }
    }
}

/// Transaction `t` of a run, of `size` events: its id and body.
fn transaction(run_id: &str, t: usize, size: usize) -> (String, String) {
    let start = t * size;
    let events: Vec<Value> = (start..start + size).map(|n| event(run_id, n)).collect();
    (format!("{run_id}-{t}"), json!({ "events": events }).to_string())
}

// ---- Figures ----------------------------------------------------------------------------------

fn events_per_sec(o: &Outcome) -> f64 {
    o.events as f64 / o.drained.as_secs_f64()
}

fn cpu_per_event_us(o: &Outcome) -> f64 {
    o.cpu.as_secs_f64() * 1e6 / o.events as f64
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn print_outcome(o: &Outcome) {
    println!(
        "{} · {} in flight: {} events in {} transactions of {} bytes",
        o.place,
        o.in_flight,
        o.events,
        o.answers.len(),
        o.body_bytes
    );
    println!(
        "  answered: p50 {}, p99 {}, slowest {}; last answer after {}",
        ms(percentile(&o.answers, 50.0)),
        ms(percentile(&o.answers, 99.0)),
        ms(percentile(&o.answers, 100.0)),
        ms(o.sent)
    );
    println!(
        "  queue: {} entries waiting at the last answer; empty after {}: {:.0} events/s",
        o.depth_at_last_answer,
        ms(o.drained),
        events_per_sec(o)
    );
    println!("  CPU: {} in all, {:.2} µs per event", ms(o.cpu), cpu_per_event_us(o));
    println!(
        "  RSS: {} before, {} peak, {} after, {} after {} s idle; {} warnings or errors logged",
        mib(o.rss_before),
        mib(o.rss_peak),
        mib(o.rss_after),
        mib(o.rss_idle),
        o.idle.as_secs(),
        o.errors_in_log
    );
}

fn print_table(results: &[Outcome]) {
    println!();
    println!(
        "| place | in flight | events/s | answer p50 | p99 | CPU per event | waiting at last answer | RSS before / peak / after / idle |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for o in results {
        println!(
            "| {} | {} | {:.0} | {} | {} | {:.2} µs | {} | {} / {} / {} / {} |",
            o.place,
            o.in_flight,
            events_per_sec(o),
            ms(percentile(&o.answers, 50.0)),
            ms(percentile(&o.answers, 99.0)),
            cpu_per_event_us(o),
            o.depth_at_last_answer,
            mib(o.rss_before),
            mib(o.rss_peak),
            mib(o.rss_after),
            mib(o.rss_idle)
        );
    }
}
