//! End to end, against Synapse with the appservice transaction extensions on: the bot's
//! device (`[encryption]`). Boardroom makes it (MSC4190), uploads its identity and
//! one-time keys as it (identity assertion with `device_id`), keeps it current from what
//! the transactions bring (MSC2409 to-device messages, MSC3202 one-time-key counts), and
//! keeps it across a restart.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{Stack, User};

const CONFIG: &str = "[encryption]\nenabled = true\n";
const DEVICE: &str = "BOARDROOM";

async fn post(user: &User, path: &str, body: Value) -> Value {
    let url = format!("{}{path}", user.client.base_url());
    let resp = reqwest::Client::new()
        .post(url)
        .bearer_auth(&user.token)
        .json(&body)
        .send()
        .await
        .expect("request");
    assert!(resp.status().is_success(), "{path}: {}", resp.status());
    resp.json().await.expect("json")
}

/// The bot's device keys as `user`'s client sees them, once they are there.
async fn device_keys(user: &User, bot: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found =
            post(user, "/_matrix/client/v3/keys/query", json!({ "device_keys": { bot: [] } }))
                .await;
        let keys = &found["device_keys"][bot][DEVICE];
        if keys.is_object() {
            return keys.clone();
        }
        assert!(Instant::now() < deadline, "the bot's device has no keys: {found}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Claims one of the bot's one-time keys; `true` when it is a one-time key, `false` when
/// the homeserver had only the fallback key left.
async fn claim(user: &User, bot: &str) -> bool {
    let body = json!({ "one_time_keys": { bot: { DEVICE: "signed_curve25519" } } });
    let claimed = post(user, "/_matrix/client/v3/keys/claim", body).await;
    let keys = claimed["one_time_keys"][bot][DEVICE].as_object().cloned().unwrap_or_default();
    let (_, key) = keys.into_iter().next().expect("a key, one-time or fallback");
    key.get("fallback") != Some(&Value::Bool(true))
}

#[tokio::test]
async fn the_bot_has_a_device_that_refills_its_one_time_keys_and_survives_a_restart() {
    let mut stack = Stack::start(CONFIG).await;
    let alice = stack.synapse.register("alice").await;
    let bot = stack.boardroom.bot().to_string();

    // The device and its identity keys, signed by itself.
    let keys = device_keys(&alice, &bot).await;
    let identity =
        keys["keys"][format!("curve25519:{DEVICE}")].as_str().expect("curve25519").to_owned();
    assert!(keys["keys"][format!("ed25519:{DEVICE}")].is_string(), "{keys}");
    assert!(keys["signatures"][&bot][format!("ed25519:{DEVICE}")].is_string(), "{keys}");
    assert!(
        keys["algorithms"].as_array().is_some_and(|a| a.contains(&json!("m.megolm.v1.aes-sha2"))),
        "{keys}"
    );

    // Alice's clients use up its one-time keys: the homeserver hands out the fallback key.
    assert!(claim(&alice, &bot).await, "a one-time key first");
    let mut claimed = 1;
    while claim(&alice, &bot).await {
        claimed += 1;
        assert!(claimed < 500, "one-time keys without end");
    }
    // A to-device message for the bot's device: its transaction carries the count (now
    // 0), and the device uploads new one-time keys.
    let txn = format!("/_matrix/client/v3/sendToDevice/m.dummy/dummy{claimed}");
    let url = format!("{}{txn}", alice.client.base_url());
    let sent = reqwest::Client::new()
        .put(url)
        .bearer_auth(&alice.token)
        .json(&json!({ "messages": { &bot: { DEVICE: {} } } }))
        .send()
        .await
        .expect("send to device");
    assert!(sent.status().is_success());
    let deadline = Instant::now() + Duration::from_secs(30);
    while !claim(&alice, &bot).await {
        assert!(Instant::now() < deadline, "no new one-time keys after {claimed} were claimed");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // A restart keeps the device: the same identity key, no new device.
    stack.restart_boardroom().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let keys = device_keys(&alice, &bot).await;
    assert_eq!(keys["keys"][format!("curve25519:{DEVICE}")].as_str(), Some(identity.as_str()));
    let devices =
        post(&alice, "/_matrix/client/v3/keys/query", json!({ "device_keys": { &bot: [] } })).await;
    let ids: Vec<&String> =
        devices["device_keys"][&bot].as_object().map(|m| m.keys().collect()).unwrap_or_default();
    assert_eq!(ids, [DEVICE], "one device: {devices}");
}
