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

/// Runs the encrypting test client (`scripts/e2ee_client.py`, matrix-nio with its e2e extra,
/// installed by `scripts/setup.sh`) as `user`: it sends `send` encrypted to the bot (in a
/// new encrypted room, or `room`) and waits for the bot's reply containing `expect`,
/// decrypted. Returns what it printed.
fn e2ee_client(
    stack: &Stack,
    user: &str,
    store: &std::path::Path,
    room: Option<&str>,
    send: &str,
    expect: &str,
) -> Value {
    let venv = std::env::var("BOARDROOM_NIO_VENV").unwrap_or_else(|_| {
        let home = std::env::var("HOME").expect("HOME");
        std::env::var("BOARDROOM_CACHE").unwrap_or(format!("{home}/.cache/boardroom"))
            + "/nio-0.26.0"
    });
    let script = crate::harness::project_root().join("scripts/e2ee_client.py");
    let mut cmd = std::process::Command::new(format!("{venv}/bin/python"));
    cmd.arg(script)
        .args(["--url", &stack.synapse.url, "--user", user, "--password", "password"])
        .args(["--bot", stack.boardroom.bot().as_str(), "--send", send, "--expect", expect])
        .arg("--store")
        .arg(store);
    if let Some(r) = room {
        cmd.args(["--room", r]);
    }
    let out = cmd.output().expect("run the e2ee client (scripts/setup.sh installs its venv)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    let printed: Value = serde_json::from_str(last).unwrap_or_else(|_| {
        panic!("e2ee client: {stdout}\n{}", String::from_utf8_lossy(&out.stderr))
    });
    assert!(
        out.status.success(),
        "e2ee client failed: {printed}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    printed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_direct_chat_gets_an_encrypted_answer_also_after_a_restart() {
    let config = format!("{CONFIG}[permissions]\nboard_creators = [\"@alice:localhost\"]\n");
    let mut stack = Stack::start(&config).await;
    let alice = stack.synapse.register("alice").await;
    let bot = stack.boardroom.bot().to_string();
    device_keys(&alice, &bot).await;
    let store = tempfile::tempdir().expect("client store");

    // Alice's encrypting client starts an encrypted chat with the bot and asks for help:
    // the bot decrypts the command and answers encrypted, and her client decrypts it.
    let first = tokio::task::block_in_place(|| {
        e2ee_client(&stack, "@alice:localhost", store.path(), None, "!help", "!task new")
    });
    assert_eq!(first["encrypted"], true, "{first}");
    let room = first["room"].as_str().expect("the room").to_owned();
    // What the room holds is ciphertext only: the bot's answer is an m.room.encrypted event.
    let room_id = ruma::OwnedRoomId::try_from(room.as_str()).expect("room id");
    let seen = alice.timeline(&room_id).await;
    let from_bot: Vec<String> = seen
        .iter()
        .filter(|e| e.get_field::<String>("sender").ok().flatten().as_deref() == Some(bot.as_str()))
        .filter_map(|e| e.get_field::<String>("type").ok().flatten())
        .filter(|t| t.starts_with("m.room.message") || t == "m.room.encrypted")
        .collect();
    assert!(
        !from_bot.is_empty() && from_bot.iter().all(|t| t == "m.room.encrypted"),
        "{from_bot:?}"
    );

    // Restarted, the bot goes on in the same room with the same device and sessions.
    stack.restart_boardroom().await;
    let again = tokio::task::block_in_place(|| {
        e2ee_client(&stack, "@alice:localhost", store.path(), Some(&room), "!help", "!task new")
    });
    assert_eq!(again["encrypted"], true, "{again}");
}
