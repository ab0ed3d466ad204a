//! The transaction path: 100-event transactions PUT one after another through the router
//! into RocksDB, durably (one synced write per transaction), with the database on disk and
//! on `/dev/shm`. The inbound dispatcher runs as in production and drains what is stored.
//!
//! Run: `cargo bench --bench transactions`. Figures go in docs/PERFORMANCE.md.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Body;
use boardroom::{Config, app::App};
use divan::{Bencher, counter::ItemsCount};
use http::Request;
use serde_json::{Value, json};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

mod common;
use common::base_dir;

fn main() {
    divan::main();
}

const EVENTS_PER_TXN: usize = 100;
static NEXT: AtomicU64 = AtomicU64::new(0);

fn event(n: u64) -> Value {
    let room = format!("!room{}:localhost", n % 16);
    let sender = format!("@user{}:localhost", n % 50);
    let common = |v: Value| {
        let mut v = v;
        v["event_id"] = json!(format!("$bench{n}"));
        v["room_id"] = json!(room);
        v["sender"] = json!(sender);
        v["origin_server_ts"] = json!(1_700_000_000_000u64 + n);
        v["unsigned"] = json!({ "age": 12 });
        v
    };
    match n % 4 {
        0 => common(json!({
            "type": "m.room.message",
            "content": { "msgtype": "m.text", "body": format!("status update number {n}, nothing to see here") },
        })),
        1 => common(json!({
            "type": "m.room.message",
            "content": {
                "msgtype": "m.text",
                "body": "alice: could you look at this task?",
                "format": "org.matrix.custom.html",
                "formatted_body": "<a href=\"https://matrix.to/#/@alice:localhost\">alice</a>: could you look at this task?",
                "m.mentions": { "user_ids": ["@alice:localhost"] },
            },
        })),
        2 => common(json!({
            "type": "m.room.message",
            "content": {
                "msgtype": "m.text",
                "body": "a comment in the task's thread",
                "m.relates_to": {
                    "rel_type": "m.thread", "event_id": "$root:localhost", "is_falling_back": true,
                    "m.in_reply_to": { "event_id": "$prev:localhost" },
                },
            },
        })),
        _ => common(json!({
            "type": "m.room.member",
            "state_key": format!("@member{n}:localhost"),
            "content": { "membership": "join", "displayname": format!("Member {n}") },
        })),
    }
}

fn transaction() -> (String, String) {
    let start = NEXT.fetch_add(EVENTS_PER_TXN as u64, Ordering::Relaxed);
    let events: Vec<Value> = (start..start + EVENTS_PER_TXN as u64).map(event).collect();
    (format!("txn{start}"), json!({ "events": events }).to_string())
}

#[divan::bench(args = ["disk", "shm"], sample_count = 30, sample_size = 5)]
fn put_100_event_transaction(bencher: Bencher, place: &str) {
    let base = base_dir(place);
    std::fs::create_dir_all(&base).expect("bench dir");
    let dir = tempfile::tempdir_in(&base).expect("tempdir");
    let config = Config::offline(&dir.path().join("db"), "").expect("config");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let app = runtime.block_on(async { App::new(config.validate().expect("valid")) }).expect("app");
    let shutdown = CancellationToken::new();
    let mut tasks = JoinSet::new();
    runtime.block_on(async { app.spawn_dispatcher(&mut tasks, &shutdown) });
    let router = app.router();

    bencher.counter(ItemsCount::new(EVENTS_PER_TXN)).with_inputs(transaction).bench_local_values(
        |(txn, body)| {
            let req = Request::put(format!("/_matrix/app/v1/transactions/{txn}"))
                .header("authorization", "Bearer hs")
                .body(Body::from(body))
                .expect("request");
            let resp = runtime.block_on(router.clone().oneshot(req)).expect("infallible");
            assert!(resp.status().is_success(), "{}", resp.status());
        },
    );
    shutdown.cancel();
    runtime.block_on(async { while tasks.join_next().await.is_some() {} });
}
