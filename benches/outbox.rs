//! The outbox: 256 queued messages sent to a homeserver that takes 2 ms to answer each
//! (a small axum server on loopback standing in for the homeserver's own time), spread over
//! 1, 4 or 32 rooms. The worker runs as in production: in order within a room, up to 8
//! requests at once across rooms. Measures the time until the outbox is empty.
//!
//! Run: `cargo bench --bench outbox`. Figures go in docs/PERFORMANCE.md.

use std::{sync::Arc, time::Duration};

use axum::{Json, Router, routing::put};
use boardroom::{
    config::Secret,
    domain::{Action, action::derived_txn_id},
    matrix::{Auth, HomeserverClient},
    outbox,
    store::Store,
};
use divan::{Bencher, counter::ItemsCount};
use ruma::events::room::message::RoomMessageEventContent;
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

fn main() {
    divan::main();
}

const MESSAGES: usize = 256;
const HOMESERVER_TIME: Duration = Duration::from_millis(2);

async fn send() -> Json<Value> {
    tokio::time::sleep(HOMESERVER_TIME).await;
    Json(json!({ "event_id": "$sent" }))
}

#[divan::bench(args = [1, 4, 32], sample_count = 10, sample_size = 1)]
fn send_256_messages(bencher: Bencher, rooms: usize) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir_in("/dev/shm").or_else(|_| tempfile::tempdir()).expect("tempdir");
    let store = Store::open(dir.path()).expect("store");
    let shutdown = CancellationToken::new();
    let notify = Arc::new(Notify::new());
    let url = runtime.block_on(async {
        let app = Router::new().route("/_matrix/client/v3/rooms/{room}/send/{ty}/{txn}", put(send));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
        url
    });
    let client = HomeserverClient::new(&url, Auth::Appservice(Secret::new("as"))).expect("client");
    let worker =
        runtime.spawn(outbox::run(store.clone(), client, notify.clone(), shutdown.clone()));
    let mut round = 0usize;

    bencher
        .counter(ItemsCount::new(MESSAGES))
        .with_inputs(|| {
            round += 1;
            (0..MESSAGES)
                .map(|i| {
                    let action = Action::SendMessage {
                        room_id: format!("!room{}:localhost", i % rooms)
                            .try_into()
                            .expect("room id"),
                        as_user: None,
                        txn_id: derived_txn_id(&format!("$r{round}m{i}"), 0),
                        content: Box::new(RoomMessageEventContent::notice_plain("hello")),
                    };
                    serde_json::to_vec(&action).expect("encode")
                })
                .collect::<Vec<_>>()
        })
        .bench_local_values(|queued| {
            store.enqueue_outbound(&queued).expect("enqueue");
            notify.notify_one();
            runtime.block_on(async {
                while !store.outbox_from(0, 1).expect("outbox").is_empty() {
                    tokio::time::sleep(Duration::from_micros(200)).await;
                }
            });
        });
    shutdown.cancel();
    runtime.block_on(async { worker.await.expect("worker") });
}
