//! `GET /metrics` on `[metrics] listen`: the values move as transactions arrive and are
//! processed, over real TCP; the listener serves nothing else, and the other listeners do
//! not serve metrics. No homeserver is needed (the events are in rooms Boardroom does not
//! manage: processed, nothing sent). `GET /_boardroom/health` and `/ready`: ready follows
//! a real Synapse going away and coming back.

use std::time::Duration;

use boardroom::{
    Config,
    app::{App, Listeners},
};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The value of the sample `name` (no labels) in the text format.
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} is not in the metrics:\n{text}"))
}

fn transaction(from: usize, n: usize) -> String {
    let events: Vec<_> = (from..from + n)
        .map(|i| {
            json!({
                "type": "m.room.message",
                "room_id": format!("!elsewhere{}:localhost", i % 3),
                "sender": "@alice:localhost",
                "event_id": format!("$metrics{i}"),
                "origin_server_ts": 1_780_000_000_000u64 + i as u64,
                "content": { "msgtype": "m.text", "body": format!("message {i}") },
            })
        })
        .collect();
    json!({ "events": events }).to_string()
}

#[tokio::test]
async fn metrics_move_as_transactions_arrive_and_are_processed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let appservice = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let metrics = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let (as_addr, m_addr) =
        (appservice.local_addr().expect("addr"), metrics.local_addr().expect("addr"));
    let config =
        Config::offline(&dir.path().join("db"), &format!("[metrics]\nlisten = \"{m_addr}\"\n"))
            .expect("config");
    let settings = config.validate().expect("valid");
    assert_eq!(settings.metrics_listen, Some(m_addr));
    let app = App::new(settings).expect("app");
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let served = tokio::spawn(async move {
        let listeners = Listeners { appservice, api: None, metrics: Some(metrics) };
        boardroom::app::serve_app_on(app, listeners, token).await.expect("serve");
    });

    let http = reqwest::Client::new();
    let metrics_url = format!("http://{m_addr}/metrics");
    let read = || async {
        let resp = http.get(&metrics_url).send().await.expect("GET /metrics");
        assert!(resp.status().is_success(), "{}", resp.status());
        let ct =
            resp.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_owned);
        assert!(ct.is_some_and(|c| c.starts_with("application/openmetrics-text")));
        resp.text().await.expect("body")
    };
    let before = read().await;
    assert_eq!(sample(&before, "boardroom_appservice_transactions_total"), 0.0);
    assert_eq!(sample(&before, "boardroom_inbound_queue_depth"), 0.0);

    let put = |txn: &'static str, body: String| {
        let http = http.clone();
        async move {
            let resp = http
                .put(format!("http://{as_addr}/_matrix/app/v1/transactions/{txn}"))
                .bearer_auth("hs")
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .expect("PUT");
            assert!(resp.status().is_success(), "{}", resp.status());
        }
    };
    // A transaction without the hs_token is refused before it is counted: a forger
    // moves no metric.
    let forged = http
        .put(format!("http://{as_addr}/_matrix/app/v1/transactions/forged"))
        .bearer_auth("not-the-hs-token")
        .header("content-type", "application/json")
        .body(transaction(100, 10))
        .send()
        .await
        .expect("PUT");
    assert_eq!(forged.status(), 403);
    put("1", transaction(0, 10)).await;
    // The same transaction again (a replay), and 5 events seen before with 5 new ones.
    put("1", transaction(0, 10)).await;
    put("2", transaction(5, 10)).await;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let after = loop {
        let text = read().await;
        if sample(&text, "boardroom_inbound_entries_processed_total") >= 15.0 {
            break text;
        }
        assert!(tokio::time::Instant::now() < deadline, "not processed in 20 s:\n{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(sample(&after, "boardroom_appservice_transactions_total"), 3.0);
    assert_eq!(sample(&after, "boardroom_appservice_transactions_replayed_total"), 1.0);
    assert_eq!(sample(&after, "boardroom_appservice_events_accepted_total"), 15.0);
    assert_eq!(sample(&after, "boardroom_appservice_events_duplicate_total"), 5.0);
    assert_eq!(sample(&after, "boardroom_inbound_entries_processed_total"), 15.0);
    assert_eq!(sample(&after, "boardroom_inbound_queue_depth"), 0.0);
    assert_eq!(sample(&after, "boardroom_appservice_ingest_seconds_count"), 3.0);
    assert_eq!(sample(&after, "boardroom_inbound_processing_seconds_count"), 15.0);

    // Alive; not ready, since this homeserver (port 9) never answers.
    let health = http.get(format!("http://{as_addr}/_boardroom/health")).send().await.expect("GET");
    assert_eq!(health.status(), 200);
    assert_eq!(health.json::<serde_json::Value>().await.expect("json"), json!({ "status": "ok" }));
    let ready = http.get(format!("http://{as_addr}/_boardroom/ready")).send().await.expect("GET");
    assert_eq!(ready.status(), 503);
    assert_eq!(ready.json::<serde_json::Value>().await.expect("json"), json!({ "ready": false }));
    assert_eq!(sample(&after, "boardroom_homeserver_last_answer_timestamp_seconds"), 0.0);

    // Metrics only there, and nothing else there.
    let elsewhere = http.get(format!("http://{as_addr}/metrics")).send().await.expect("GET");
    assert_eq!(elsewhere.status(), 404);
    let other = http
        .get(format!("http://{m_addr}/_boardroom/api/v1/openapi.json"))
        .send()
        .await
        .expect("GET");
    assert_eq!(other.status(), 404);
    let other = http.get(format!("http://{m_addr}/_boardroom/ready")).send().await.expect("GET");
    assert_eq!(other.status(), 404);

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(20), served)
        .await
        .expect("stops in time")
        .expect("serve task");
}

/// Ready while Synapse answers; not ready while it is stopped; ready again once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_follows_the_homeserver() {
    let mut stack =
        crate::harness::Stack::start("[health]\nmax_homeserver_silence_secs = 12\n").await;
    let http = reqwest::Client::new();
    let url = format!("http://{}/_boardroom/ready", stack.boardroom.settings.listen);
    let status = |http: reqwest::Client, url: String| async move {
        http.get(&url).send().await.expect("GET /_boardroom/ready").status().as_u16()
    };
    let wait_for = |want: u16, what: &'static str| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
            loop {
                if status(http.clone(), url.clone()).await == want {
                    return;
                }
                assert!(tokio::time::Instant::now() < deadline, "{what}: not within 40 s");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    wait_for(200, "ready once the homeserver answered").await;
    // Synapse away: the probes (every 10 s) fail, and once the last answer is older than
    // `max_homeserver_silence_secs` (12 s here) Boardroom is not ready.
    stack.stop_synapse().await;
    wait_for(503, "not ready while the homeserver is down").await;
    stack.start_synapse_again().await;
    wait_for(200, "ready again once the homeserver is back").await;
}
