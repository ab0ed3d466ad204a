//! `GET /metrics` on `[metrics] listen`: the values move as transactions arrive and are
//! processed, over real TCP; the listener serves nothing else, and the other listeners do
//! not serve metrics. No homeserver is needed (the events are in rooms Boardroom does not
//! manage: processed, nothing sent). Against a real Synapse, the rest move as people use
//! Boardroom: API requests by route and status (a refused token under its route), the
//! homeserver's requests by endpoint, live streams, webhook deliveries by outcome, the
//! outbox by state with its dead letters, and the inbox after a mention.
//! `GET /_boardroom/health` and `/ready`: ready follows a real Synapse going away and
//! coming back.

use std::time::Duration;

use base64::Engine as _;
use boardroom::{
    Config,
    app::{App, Listeners},
    domain::Action,
};
use ed25519_dalek::{Signer, SigningKey};
use ruma::events::room::message::RoomMessageEventContent;
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

/// The sum of the samples `name` whose labels include every one of `labels` (0 when there
/// is none).
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut sum = 0.0;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else { continue };
        let (found, v) = match rest.strip_prefix('{') {
            Some(rest) => match rest.rsplit_once("} ") {
                Some((found, v)) => (found, v),
                None => continue,
            },
            None => match rest.strip_prefix(' ') {
                Some(v) => ("", v),
                None => continue,
            },
        };
        if labels.iter().all(|(k, v)| found.split(',').any(|l| l == format!("{k}=\"{v}\""))) {
            sum += v.trim().parse::<f64>().unwrap_or_else(|_| panic!("{line}"));
        }
    }
    sum
}

fn transaction(from: usize, n: usize) -> String {
    let events: Vec<_> = (from..from + n)
        .map(|i| {
            // A text with a `!` may be a command: stored and processed wherever it is (a
            // message that cannot be one, or a join, in a room that is no board's, would
            // not be stored). None of these is one: nothing answers.
            json!({
                "type": "m.room.message",
                "room_id": format!("!elsewhere{}:localhost", i % 3),
                "sender": format!("@user{i}:localhost"),
                "event_id": format!("$metrics{i}"),
                "origin_server_ts": 1_780_000_000_000u64 + i as u64,
                "content": { "msgtype": "m.text", "body": format!("release {i} is out!") },
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
    let extra = format!(
        "[metrics]\nlisten = \"{m_addr}\"\n{}",
        ci_source("launch", "deliveries_per_second = 1\ndelivery_burst = 1\n")
    );
    let config = Config::offline(&dir.path().join("db"), &extra).expect("config");
    let settings = config.validate().expect("valid");
    assert_eq!(settings.metrics_listen, Some(m_addr));
    let app = App::new(settings).expect("app");
    let ctx = app.ctx.clone();
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
    // A transaction without the hs_token is refused before it is counted: a forger moves
    // no transaction metric, and shows only as a 403 of the transactions route.
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
    // A message that calls for nothing: counted, not stored (once no message that may be
    // a command waits: until then every message is stored).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while sample(&read().await, "boardroom_inbound_entries_processed_total") < 15.0 {
        assert!(tokio::time::Instant::now() < deadline, "not processed in 20 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let talk = json!({ "events": [{
        "type": "m.room.message", "room_id": "!elsewhere0:localhost", "sender": "@alice:localhost",
        "event_id": "$talk", "origin_server_ts": 1_780_000_000_000u64,
        "content": { "msgtype": "m.text", "body": "just talking" },
    }]});
    put("3", talk.to_string()).await;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let after = loop {
        let text = read().await;
        if sample(&text, "boardroom_appservice_transactions_total") >= 4.0 {
            break text;
        }
        assert!(tokio::time::Instant::now() < deadline, "not processed in 20 s:\n{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(sample(&after, "boardroom_appservice_transactions_total"), 4.0);
    assert_eq!(sample(&after, "boardroom_appservice_events_ignored_total"), 1.0);
    assert_eq!(sample(&after, "boardroom_appservice_transactions_replayed_total"), 1.0);
    assert_eq!(sample(&after, "boardroom_appservice_events_accepted_total"), 15.0);
    assert_eq!(sample(&after, "boardroom_appservice_events_duplicate_total"), 5.0);
    assert_eq!(sample(&after, "boardroom_inbound_entries_processed_total"), 15.0);
    assert_eq!(sample(&after, "boardroom_inbound_queue_depth"), 0.0);
    assert_eq!(sample(&after, "boardroom_appservice_ingest_seconds_count"), 4.0);
    assert_eq!(sample(&after, "boardroom_inbound_processing_seconds_count"), 15.0);
    let transactions = [("route", "/_matrix/app/v1/transactions/{txn_id}")];
    assert_eq!(
        value(&after, "boardroom_http_requests_total", &[transactions[0], ("status", "403")]),
        1.0,
        "{after}"
    );
    assert_eq!(
        value(&after, "boardroom_http_requests_total", &[transactions[0], ("status", "200")]),
        4.0
    );
    assert_eq!(value(&after, "boardroom_http_request_seconds_count", &transactions), 5.0);
    for state in ["waiting", "sent", "dead"] {
        assert_eq!(value(&after, "boardroom_outbox_entries", &[("state", state)]), 0.0);
    }
    assert_eq!(sample(&after, "boardroom_inbox_entries"), 0.0);

    // The API without a token: 401, under the route's template; a path no route has:
    // `unmatched`, never the path itself.
    let api = format!("http://{as_addr}/_boardroom/api/v1");
    let no_token = http.get(format!("{api}/boards/launch/tasks")).send().await.expect("GET");
    assert_eq!(no_token.status(), 401);
    let nowhere = http.get(format!("{api}/no/such/thing")).send().await.expect("GET");
    assert_eq!(nowhere.status(), 404);
    // Webhook deliveries of a source allowed one a second: the first is refused (there is
    // no board here), the next, right after it, is over the rate (429).
    let hook = format!("http://{as_addr}/_boardroom/webhooks/v1/ci");
    assert_eq!(deliver(&http, &hook, "w-1", ci_key(), "launch").await, 404);
    assert_eq!(deliver(&http, &hook, "w-2", ci_key(), "launch").await, 429);
    // An outbox entry no action decodes from is set aside at once.
    ctx.store.enqueue_outbound(&[b"not an action".to_vec()]).expect("enqueue");
    ctx.outbox_notify.notify_one();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let text = loop {
        let text = read().await;
        if value(&text, "boardroom_outbox_entries", &[("state", "dead")]) == 1.0 {
            break text;
        }
        assert!(tokio::time::Instant::now() < deadline, "not set aside in 20 s:\n{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let tasks = [("method", "GET"), ("route", "/_boardroom/api/v1/boards/{slug}/tasks")];
    assert_eq!(
        value(&text, "boardroom_http_requests_total", &[tasks[0], tasks[1], ("status", "401")]),
        1.0
    );
    assert_eq!(value(&text, "boardroom_http_request_seconds_count", &tasks), 1.0);
    let unmatched = [("route", "unmatched"), ("status", "404")];
    assert_eq!(value(&text, "boardroom_http_requests_total", &unmatched), 1.0);
    let webhook = [("method", "POST"), ("route", "/_boardroom/webhooks/v1/{source}")];
    for (status, outcome) in [("404", "refused"), ("429", "rate_limited")] {
        let labels = [webhook[0], webhook[1], ("status", status)];
        assert_eq!(value(&text, "boardroom_http_requests_total", &labels), 1.0, "{text}");
        let labels = [("outcome", outcome)];
        assert_eq!(value(&text, "boardroom_webhook_deliveries_total", &labels), 1.0, "{text}");
    }
    assert!(!text.contains("no/such/thing") && !text.contains("launch"), "{text}");
    assert_eq!(
        value(&text, "boardroom_outbox_dead_letters_total", &[("reason", "undecodable")]),
        1.0
    );
    assert_eq!(value(&text, "boardroom_outbox_entries", &[("state", "waiting")]), 0.0);
    // What asks RocksDB is read at most once a second: nothing waits, and the database
    // has a size.
    tokio::time::sleep(boardroom::metrics::SLOW_GAUGES_EVERY).await;
    let text = read().await;
    assert_eq!(sample(&text, "boardroom_inbound_queue_oldest_age_seconds"), 0.0);
    assert!(sample(&text, "boardroom_store_size_bytes") > 0.0, "{text}");

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

/// The key of the webhook source `ci` (a fixed seed: tests only).
fn ci_key() -> SigningKey {
    SigningKey::from_bytes(&[42; 32])
}

/// A `task.create` delivery for `board` to the webhook URL `url` under the delivery id
/// `id`, signed with `key`: the status answered.
async fn deliver(http: &reqwest::Client, url: &str, id: &str, key: SigningKey, board: &str) -> u16 {
    let body = json!({ "board": board, "actor": "deploy-bot",
        "action": "task.create", "title": "Ship it" })
    .to_string();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock");
    let timestamp = now.as_millis().to_string();
    let signature = key.sign(format!("{timestamp}.{body}").as_bytes());
    let signature = base64::engine::general_purpose::STANDARD.encode(signature.to_bytes());
    let resp = http
        .post(url)
        .header("content-type", "application/json")
        .header("X-Boardroom-Timestamp", timestamp)
        .header("X-Boardroom-Delivery", id)
        .header("X-Boardroom-Signature", signature)
        .body(body)
        .send()
        .await
        .expect("POST");
    resp.status().as_u16()
}

/// The webhook source `ci` (its key [`ci_key`]) for `boards`, with `rates` (TOML lines of
/// `[webhooks]`).
fn ci_source(boards: &str, rates: &str) -> String {
    let public =
        base64::engine::general_purpose::STANDARD.encode(ci_key().verifying_key().to_bytes());
    format!(
        "[webhooks]\n{rates}[[webhooks.sources]]\nname = \"ci\"\npublic_key = \"{public}\"\n\
         boards = [\"{boards}\"]\n"
    )
}

/// Once the queues are empty and stay so: the metrics then.
async fn settled(metrics: &boardroom::metrics::Metrics) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut quiet = 0;
    loop {
        let text = metrics.render();
        let busy = sample(&text, "boardroom_inbound_queue_depth")
            + value(&text, "boardroom_outbox_entries", &[("state", "waiting")])
            + value(&text, "boardroom_outbox_entries", &[("state", "sent")]);
        quiet = if busy == 0.0 { quiet + 1 } else { 0 };
        if quiet >= 5 {
            return text;
        }
        assert!(tokio::time::Instant::now() < deadline, "the queues did not settle:\n{text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Against a real Synapse, each metric moves as people use Boardroom.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_the_api_streams_webhooks_the_outbox_and_the_inbox() {
    let config = format!(
        "[permissions]\nboard_creators = [\"@alice:localhost\"]\n{}",
        ci_source("launch", "")
    );
    let s = crate::harness::Launch::start(&config).await;
    let ctx = s.stack.boardroom.ctx();
    let metrics = ctx.metrics.clone();
    let http = reqwest::Client::new();
    let before = settled(&metrics).await;
    let delta = |after: &str, name: &str, labels: &[(&str, &str)]| {
        value(after, name, labels) - value(&before, name, labels)
    };

    // An API request, and one with a token the homeserver does not know: 401 under the
    // same route, and the homeserver's refusal under its endpoint and error code.
    let tasks = format!("{}/boards/launch/tasks", s.api);
    let ok = http.get(&tasks).bearer_auth(&s.alice.token).send().await.expect("GET");
    assert_eq!(ok.status(), 200);
    let refused = http.get(&tasks).bearer_auth("not-a-token").send().await.expect("GET");
    assert_eq!(refused.status(), 401);
    let text = metrics.render();
    let route = [("method", "GET"), ("route", "/_boardroom/api/v1/boards/{slug}/tasks")];
    let requests = "boardroom_http_requests_total";
    assert_eq!(delta(&text, requests, &[route[0], route[1], ("status", "200")]), 1.0);
    assert_eq!(delta(&text, requests, &[route[0], route[1], ("status", "401")]), 1.0);
    assert_eq!(delta(&text, "boardroom_http_request_seconds_count", &route), 2.0);
    let whoami = [("endpoint", "whoami")];
    assert_eq!(delta(&text, "boardroom_homeserver_request_seconds_count", &whoami), 2.0);
    let unknown = [("endpoint", "whoami"), ("kind", "M_UNKNOWN_TOKEN")];
    assert_eq!(delta(&text, "boardroom_homeserver_request_errors_total", &unknown), 1.0);

    // A live stream: one subscriber while it is open, none once its client goes.
    let mut stream = http
        .get(format!("{}/boards/launch/events", s.api))
        .bearer_auth(&s.alice.token)
        .send()
        .await
        .expect("GET events");
    assert_eq!(stream.status(), 200);
    let mut seen = String::new();
    while !seen.contains("event: ready") {
        let chunk = tokio::time::timeout(Duration::from_secs(20), stream.chunk())
            .await
            .expect("ready in 20 s")
            .expect("chunk")
            .expect("the stream goes on");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert_eq!(sample(&metrics.render(), "boardroom_live_subscribers"), 1.0);
    drop(stream);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while sample(&metrics.render(), "boardroom_live_subscribers") != 0.0 {
        assert!(tokio::time::Instant::now() < deadline, "the closed stream is still counted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Webhook deliveries: applied, the same again (a duplicate), and a forged one.
    let url = format!("http://{}/_boardroom/webhooks/v1/ci", s.stack.boardroom.settings.listen);
    let deliver = |id: &'static str, key: SigningKey| deliver(&http, &url, id, key, "launch");
    assert_eq!(deliver("d-1", ci_key()).await, 200);
    assert_eq!(deliver("d-1", ci_key()).await, 200);
    assert_eq!(deliver("d-2", SigningKey::from_bytes(&[7; 32])).await, 401);
    let text = metrics.render();
    for (outcome, n) in [("applied", 1.0), ("duplicate", 1.0), ("unauthorized", 1.0)] {
        let labels = [("outcome", outcome)];
        assert_eq!(delta(&text, "boardroom_webhook_deliveries_total", &labels), n, "{outcome}");
    }

    // The task the delivery made went out through the outbox: sent, and counted by
    // endpoint among the homeserver's requests.
    let text = settled(&metrics).await;
    let sent = delta(&text, "boardroom_outbox_sent_total", &[]);
    assert!(sent >= 1.0, "{text}");
    let requests = delta(&text, "boardroom_homeserver_request_seconds_count", &[]);
    assert!(requests >= sent, "{requests} requests for {sent} entries:\n{text}");
    let messages = [("endpoint", "send_message_event")];
    assert!(delta(&text, "boardroom_homeserver_request_seconds_count", &messages) >= 1.0);

    // A mention of Alice: an inbox entry.
    let inbox = sample(&text, "boardroom_inbox_entries");
    let mut mention = RoomMessageEventContent::text_plain("alice: have a look");
    mention.mentions = Some(ruma::events::Mentions::with_user_ids([s.alice.user_id.clone()]));
    s.bob.send(&s.general, mention).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while sample(&metrics.render(), "boardroom_inbox_entries") != inbox + 1.0 {
        assert!(tokio::time::Instant::now() < deadline, "no inbox entry for the mention");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A request the homeserver refuses for good (a room that does not exist) is set
    // aside: a dead letter, with the refusal counted under its endpoint.
    let nowhere = ruma::OwnedRoomId::try_from("!nowhere:localhost").expect("room id");
    ctx.send_later(&[Action::JoinRoom { room_id: nowhere, as_user: None }]).expect("queue");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let text = loop {
        let text = metrics.render();
        if value(&text, "boardroom_outbox_entries", &[("state", "dead")]) == 1.0 {
            break text;
        }
        assert!(tokio::time::Instant::now() < deadline, "no dead letter in 30 s:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(delta(&text, "boardroom_outbox_dead_letters_total", &[("reason", "refused")]), 1.0);
    let join = [("endpoint", "join_room_by_id")];
    assert_eq!(delta(&text, "boardroom_homeserver_request_errors_total", &join), 1.0, "{text}");
    assert_eq!(value(&text, "boardroom_outbox_entries", &[("state", "waiting")]), 0.0);
    for secret in [s.alice.token.as_str(), "@alice", "!nowhere", "deploy-bot"] {
        assert!(!text.contains(secret), "{secret} in the metrics:\n{text}");
    }
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
