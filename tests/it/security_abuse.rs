//! End-to-end, against a real Synapse: the abuse limits. Each API caller (a client token,
//! a Matrix user) and each webhook source has a request rate; past it, 429
//! `M_LIMIT_EXCEEDED` with `retry_after_ms` and `Retry-After`, and nothing done, while
//! other callers go on. Deliveries whose signature fails do not use up a source's rate.
//! One user holds at most `[live] max_streams_per_user` streams. (Slow and idle clients,
//! and the connection cap, are in `security_limits`.)

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use ed25519_dalek::{Signer, SigningKey};
use serde_json::{Value, json};

use crate::{
    harness::Launch,
    sse::{Read, open},
};

fn key() -> SigningKey {
    SigningKey::from_bytes(&[9; 32])
}

fn config() -> String {
    let public = base64::engine::general_purpose::STANDARD.encode(key().verifying_key().to_bytes());
    format!(
        r#"
[permissions]
board_creators = ["@alice:localhost"]
[api]
requests_per_second = 1
request_burst = 3
[[api.clients]]
name = "tracker"
token = "tracker-client-token"
boards = ["launch"]
[webhooks]
deliveries_per_second = 1
delivery_burst = 2
[[webhooks.sources]]
name = "ci"
public_key = "{public}"
boards = ["launch"]
[live]
max_streams_per_user = 2
keepalive_secs = 1
"#
    )
}

/// A GET as a Matrix user (`token`) or a client's virtual user: status, `Retry-After`, body.
async fn get(url: &str, token: &str, user: Option<&str>) -> (u16, Option<String>, Value) {
    let mut req = reqwest::Client::new().get(url).bearer_auth(token);
    if let Some(u) = user {
        req = req.header("X-Boardroom-User", u);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let retry = resp.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
    (status, retry, resp.json().await.unwrap_or(Value::Null))
}

/// A delivery creating a task titled `title`, signed with `signer`.
async fn deliver(url: &str, signer: &SigningKey, id: &str, title: &str) -> (u16, Value) {
    let body =
        json!({"board": "launch", "actor": "ci-bot", "action": "task.create", "title": title})
            .to_string();
    let ts = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_millis().to_string();
    let signature = signer.sign(format!("{ts}.{body}").as_bytes());
    let resp = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("X-Boardroom-Timestamp", ts)
        .header("X-Boardroom-Delivery", id)
        .header(
            "X-Boardroom-Signature",
            base64::engine::general_purpose::STANDARD.encode(signature.to_bytes()),
        )
        .body(body)
        .send()
        .await
        .expect("delivery");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// The 429 a caller over its rate gets: `M_LIMIT_EXCEEDED`, a wait in `retry_after_ms`
/// and `Retry-After`, of at most a second at one request a second.
fn limited(what: &str, status: u16, retry: Option<&str>, body: &Value) -> u64 {
    assert_eq!(
        (status, body["errcode"].as_str()),
        (429, Some("M_LIMIT_EXCEEDED")),
        "{what}: {body}"
    );
    let ms = body["retry_after_ms"]
        .as_u64()
        .unwrap_or_else(|| panic!("{what}: no retry_after_ms in {body}"));
    assert!((1..=1000).contains(&ms), "{what}: retry_after_ms {ms}");
    if let Some(r) = retry {
        assert!(r.parse::<u64>().is_ok_and(|s| s <= 1), "{what}: Retry-After {r}");
    }
    ms
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_over_their_rate_get_429_and_others_go_on() {
    let l = Launch::start(&config()).await;
    let boards = format!("{}/boards", l.api);

    // Alice: a burst of 3, then 429, while Bob (his own rate) goes on.
    for i in 0..3 {
        let (status, _, body) = get(&boards, &l.alice.token, None).await;
        assert_eq!(status, 200, "request {i} of the burst: {body}");
    }
    let (status, retry, body) = get(&boards, &l.alice.token, None).await;
    let wait = limited("Alice past her burst", status, retry.as_deref(), &body);
    let (status, _, body) = get(&boards, &l.bob.token, None).await;
    assert_eq!(status, 200, "Bob is not Alice: {body}");
    tokio::time::sleep(Duration::from_millis(wait + 50)).await;
    let (status, _, body) = get(&boards, &l.alice.token, None).await;
    assert_eq!(status, 200, "after retry_after_ms, Alice passes again: {body}");

    // A client: one rate for all its virtual users.
    let token = "tracker-client-token";
    for (i, user) in ["app", "app", "other"].into_iter().enumerate() {
        let (status, _, body) = get(&boards, token, Some(user)).await;
        assert_eq!(status, 200, "client request {i}: {body}");
    }
    let (status, retry, body) = get(&boards, token, Some("third")).await;
    limited("the client past its burst, whichever virtual user", status, retry.as_deref(), &body);
    // Nothing was done for the refused request: its virtual user was never made.
    let tasks = l.stack.boardroom.store();
    let third: ruma::OwnedUserId = "@boardroom_third:localhost".try_into().expect("user id");
    assert!(
        tasks.virtual_user(&third).expect("read").is_none(),
        "a refused request claims no virtual user"
    );

    // Webhooks: five deliveries with a wrong key use up nothing...
    let hook = format!("http://{}/_boardroom/webhooks/v1/ci", l.stack.boardroom.settings.listen);
    let wrong = SigningKey::from_bytes(&[1; 32]);
    for i in 0..5 {
        let (status, body) = deliver(&hook, &wrong, &format!("forged-{i}"), "forged").await;
        assert_eq!(status, 401, "a wrong signature: {body}");
    }
    // ...the source's own pass for its burst, then 429 and no task.
    for i in 0..2 {
        let (status, body) =
            deliver(&hook, &key(), &format!("d{i}"), &format!("from ci {i}")).await;
        assert_eq!(status, 200, "delivery {i}: {body}");
    }
    let (status, body) = deliver(&hook, &key(), "d2", "one too many").await;
    limited("the source past its burst", status, None, &body);
    assert!(tasks.task("launch", 3).expect("read").is_none(), "the refused delivery made no task");
    assert!(tasks.task("launch", 2).expect("read").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_holds_at_most_max_streams_per_user() {
    let mut text = config();
    text = text.replace("requests_per_second = 1", "requests_per_second = 0");
    let l = Launch::start(&text).await;
    let mut first = open(&l.api, "launch", &l.alice.token, None).await.expect("first stream");
    let _second = open(&l.api, "launch", &l.alice.token, None).await.expect("second stream");
    let (status, body) =
        open(&l.api, "launch", &l.alice.token, None).await.err().expect("a third is refused");
    assert_eq!((status, body["errcode"].as_str()), (429, Some("M_LIMIT_EXCEEDED")), "{body}");
    assert!(body["error"].as_str().is_some_and(|e| e.contains("@alice:localhost")), "{body}");
    // Bob has his own.
    let _bobs = open(&l.api, "launch", &l.bob.token, None).await.expect("Bob's stream");
    // Closing one gives its place back.
    while let Read::Event(ev) = first.read(Duration::from_millis(300)).await {
        if ev.event == "ready" {
            break;
        }
    }
    drop(first);
    let mut again = None;
    for _ in 0..50 {
        if let Ok(s) = open(&l.api, "launch", &l.alice.token, None).await {
            again = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(again.is_some(), "a closed stream's place is given back");
}
