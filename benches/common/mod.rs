//! What the benches that run Boardroom as its own process share: the child process, a
//! stand-in homeserver for its start-up, readings from `/proc`, and percentiles. Each
//! bench uses part of it.
#![allow(dead_code)]

use std::{
    fs,
    io::{self, BufRead},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{Json, Router, http::Uri};
use serde_json::{Value, json};

pub(crate) const AS_TOKEN: &str = "bench-as-token";
pub(crate) const HS_TOKEN: &str = "bench-hs-token";

/// VmHWM of `pid` (its peak RSS so far), in KiB.
pub(crate) fn peak_rss_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

pub(crate) fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// The stand-in homeserver: answers the bot's registration, the appservice ping, the
/// probe of `/versions`, and anything else with `{}`. Keeps the requests it was asked.
pub(crate) async fn stand_in() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let asked = Arc::new(Mutex::new(Vec::new()));
    let seen = asked.clone();
    let app = Router::new().fallback(move |method: http::Method, uri: Uri| {
        let path = uri.path().to_owned();
        seen.lock().expect("lock").push(format!("{method} {path}"));
        async move {
            let answer: Value = if path.ends_with("/register") {
                json!({ "user_id": "@boardroom:localhost" })
            } else if path.contains("/appservice/") && path.ends_with("/ping") {
                json!({ "duration_ms": 1 })
            } else if path.ends_with("/client/versions") {
                // Boardroom's probe of the homeserver.
                json!({ "versions": ["v1.11"] })
            } else {
                json!({})
            };
            Json(answer)
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("stand-in") });
    (addr, asked)
}

/// The child, stopped (by its pid) when dropped.
pub(crate) struct Boardroom {
    child: Option<Child>,
    pub(crate) pid: u32,
}

impl Boardroom {
    pub(crate) fn start(config: &Path, log: &Path) -> Self {
        Self::start_binary(Path::new(env!("CARGO_BIN_EXE_boardroom")), config, log)
    }

    /// [`Boardroom::start`] with another build of Boardroom (an A/B comparison).
    pub(crate) fn start_binary(binary: &Path, config: &Path, log: &Path) -> Self {
        let out = fs::File::create(log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = Command::new(binary)
            .arg("serve")
            .arg("--config")
            .arg(config)
            .env_remove("RUST_LOG")
            .env_remove("BOARDROOM_CONFIG")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start boardroom");
        let pid = child.id();
        Self { child: Some(child), pid }
    }

    /// SIGTERM, then up to 30 s for a graceful stop, then SIGKILL.
    pub(crate) fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let started = Instant::now();
        let _ = Command::new("kill").arg("-TERM").arg(self.pid.to_string()).status();
        while started.elapsed() < Duration::from_secs(30) {
            if let Ok(Some(status)) = child.try_wait() {
                println!(
                    "boardroom stopped ({status}) {:.2} s after SIGTERM",
                    started.elapsed().as_secs_f64()
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        println!("boardroom did not stop within 30 s: killed");
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Boardroom {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Prints the log's warnings and errors (the first few) and the start-up lines; returns
/// how many there were.
pub(crate) fn report_log(log: &Path) -> usize {
    let Ok(file) = fs::File::open(log) else { return 0 };
    let mut bad = Vec::new();
    let mut opened = 0;
    for line in io::BufReader::new(file).lines().map_while(Result::ok) {
        if line.contains("live stream opened") {
            opened += 1;
        } else if line.contains("WARN") || line.contains("ERROR") {
            bad.push(line);
        } else if line.contains("bot registered") || line.contains("ping answered") {
            println!("  log: {}", line.trim());
        }
    }
    println!("  log: {opened} streams opened, {} warnings or errors", bad.len());
    for line in bad.iter().take(10) {
        println!("  log: {}", line.trim());
    }
    bad.len()
}

/// VmRSS of `pid`, in KiB.
pub(crate) fn rss_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Time on a CPU of `pid`'s threads alive now, from their schedstat (nanoseconds): finer
/// than utime + stime's 10 ms ticks, but a thread that exited is not counted.
pub(crate) fn sched_time(pid: u32) -> Duration {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else { return Duration::ZERO };
    let mut ns = 0u64;
    for task in tasks.flatten() {
        if let Ok(s) = fs::read_to_string(task.path().join("schedstat")) {
            ns += s.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        }
    }
    Duration::from_nanos(ns)
}

/// utime + stime of `pid`.
pub(crate) fn cpu_time(pid: u32) -> Duration {
    cpu_time_of(&pid.to_string())
}

/// utime + stime of `/proc/<who>` (`self` for this process), at 100 ticks a second.
pub(crate) fn cpu_time_of(who: &str) -> Duration {
    let (user, sys) = user_sys_of(who);
    user + sys
}

/// utime and stime of `/proc/<who>`.
pub(crate) fn user_sys_of(who: &str) -> (Duration, Duration) {
    let stat = fs::read_to_string(format!("/proc/{who}/stat")).expect("stat");
    // Fields after the command's closing parenthesis: state is field 3, utime 14, stime 15.
    let after = &stat[stat.rfind(')').expect("stat") + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let tick = |i: usize| Duration::from_millis(fields[i].parse::<u64>().expect("ticks") * 10);
    (tick(11), tick(12))
}

/// The nearest-rank percentile `p` (0 to 100) of `values`.
pub(crate) fn percentile(values: &[Duration], p: f64) -> Duration {
    if values.is_empty() {
        return Duration::ZERO;
    }
    let mut v = values.to_vec();
    v.sort_unstable();
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

pub(crate) fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// Where a bench puts its databases: `/dev/shm` for `shm`, else under the package's
/// `target/` (on the machine's disk). The package is the one `cargo bench` runs for (it
/// sets `CARGO_MANIFEST_DIR` for the run), not necessarily the clone the bench was built in.
pub(crate) fn base_dir(place: &str) -> PathBuf {
    match place {
        "shm" => PathBuf::from("/dev/shm"),
        _ => std::env::var_os("CARGO_MANIFEST_DIR")
            .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
            .join("target")
            .join("bench-db"),
    }
}

/// The config of a bench's Boardroom: its database at `db`, listening on `port`, the
/// homeserver at `homeserver`, logging at `info`; `more` adds sections.
pub(crate) fn config_text(db: &Path, port: u16, homeserver: SocketAddr, more: &str) -> String {
    let db = toml::Value::String(db.display().to_string());
    format!(
        r#"[homeserver]
url = "http://{homeserver}"
server_name = "localhost"

[appservice]
listen = "127.0.0.1:{port}"
url = "http://127.0.0.1:{port}"
as_token = "{AS_TOKEN}"
hs_token = "{HS_TOKEN}"

[database]
path = {db}

[permissions]
board_creators = []

[logging]
level = "info"
format = "pretty"

{more}"#
    )
}

/// A board as the benches seed it: `slug` in `space`, made by `created_by`, the default
/// columns, nobody else with power.
pub(crate) fn bench_board(
    slug: &str,
    space: &ruma::RoomId,
    created_by: &ruma::UserId,
) -> boardroom::domain::board::BoardRecord {
    boardroom::domain::board::BoardRecord {
        slug: slug.into(),
        space_id: space.to_owned(),
        name: "Bench".into(),
        created_by: created_by.to_owned(),
        created_by_event: "$create:localhost".try_into().expect("event id"),
        creators: vec![],
        power_users: Default::default(),
        users_default: 0,
        columns: vec!["todo".into(), "doing".into(), "done".into()],
    }
}
