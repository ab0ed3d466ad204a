//! A measurement, not a test of behaviour (issue 16, "Scale"): how fast `boardroom reindex`
//! reads a board back from a real Synapse, in events per second. Ignored by default: it
//! takes a few minutes. Run it with the release binary:
//!
//! ```sh
//! cargo build --release
//! BOARDROOM_EXE=$CARGO_TARGET_DIR/release/boardroom BOARDROOM_REINDEX_MESSAGES=3000 \
//!     cargo test --test it -- --ignored --nocapture reindex_throughput
//! ```
//!
//! `BOARDROOM_REINDEX_MESSAGES` (default 3,000) comments are spread over
//! `BOARDROOM_REINDEX_TASKS` (default 10) tasks, sent by Alice and Bob eight at a time
//! through the client-server API while Boardroom is stopped (so that it does not index them
//! as they come). Then the database is deleted and `boardroom reindex` is timed.

use std::time::{Duration, Instant};

use crate::harness::{Launch, boardroom_exe};

const CONFIG: &str = "[permissions]\nboard_creators = [\"@alice:localhost\"]";

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement against Synapse that takes minutes: run it by name"]
async fn reindex_throughput() {
    let messages = env_number("BOARDROOM_REINDEX_MESSAGES", 3_000);
    let task_count = env_number("BOARDROOM_REINDEX_TASKS", 10).max(1);
    let mut launch = Launch::start(CONFIG).await;
    let bot = launch.stack.boardroom.bot().to_owned();
    let mut roots = Vec::with_capacity(task_count);
    for i in 1..=task_count {
        let reply =
            launch.alice.command(&launch.general, &bot, &format!("!task new Task {i}")).await;
        assert!(reply.contains(&format!("#{i}")), "{reply}");
        let state = launch
            .alice
            .state(&launch.tasks, "dev.boardroom.task", &i.to_string())
            .await
            .expect("task state");
        let root: ruma::OwnedEventId =
            state["root_event_id"].as_str().expect("root").try_into().expect("event id");
        roots.push(root);
    }
    launch.stack.boardroom.stop().await;

    let started = Instant::now();
    let (alice, bob, room, roots) = (&launch.alice, &launch.bob, &launch.tasks, &roots);
    // Eight senders, each sending every eighth comment one after another.
    let sender = |lane: usize| async move {
        for i in (lane..messages).step_by(8) {
            let root = &roots[i % roots.len()];
            let who = if lane.is_multiple_of(2) { alice } else { bob };
            who.say_in_thread(room, root, &format!("comment {i}: about the usual length")).await;
        }
    };
    tokio::join!(
        sender(0),
        sender(1),
        sender(2),
        sender(3),
        sender(4),
        sender(5),
        sender(6),
        sender(7)
    );
    let sent = started.elapsed();
    println!(
        "reindex_throughput: sent {messages} comments in {:.1} s ({:.0}/s)",
        sent.as_secs_f64(),
        messages as f64 / sent.as_secs_f64()
    );

    let exe = std::env::var_os("BOARDROOM_EXE").map_or_else(boardroom_exe, Into::into);
    std::fs::remove_dir_all(&launch.stack.boardroom.settings.raw.database.path)
        .expect("delete the database");
    let cpu_before = children_cpu_seconds();
    let started = Instant::now();
    let out = std::process::Command::new(&exe)
        .arg("reindex")
        .arg("--config")
        .arg(&launch.stack.boardroom.config_path)
        .output()
        .expect("run reindex");
    let took = started.elapsed().max(Duration::from_millis(1));
    let cpu = children_cpu_seconds() - cpu_before;
    assert!(out.status.success(), "reindex failed: {}", String::from_utf8_lossy(&out.stderr));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains(&format!("{task_count} tasks with {messages} comments")), "{said}");
    println!(
        "reindex_throughput: {} reindexed {task_count} tasks with {messages} comments in \
         {:.2} s: {:.0} comments/s, using {cpu:.2} s of CPU ({said})",
        exe.display(),
        took.as_secs_f64(),
        messages as f64 / took.as_secs_f64(),
        said = said.trim()
    );
}

/// The CPU time (user and system) of this process's children that were waited for, from
/// `/proc/self/stat` (in clock ticks of 1/100 s); 0 where there is no such file.
fn children_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command's name (in parentheses, which may hold spaces): the
    // children's user and system times are the 14th and 15th.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: u64 =
        after.split_whitespace().skip(13).take(2).filter_map(|f| f.parse::<u64>().ok()).sum();
    ticks as f64 / 100.0
}
