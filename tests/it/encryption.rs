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
/// installed by `scripts/setup.sh`) as Alice, with its keys in `store`, in a new encrypted
/// room with the bot, or `room`; `args` say what it does (`--send`, `--thread`, `--edit`,
/// `--redact`, `--expect`: see the script). Returns what it printed.
fn e2ee_client(stack: &Stack, store: &std::path::Path, room: Option<&str>, args: &[&str]) -> Value {
    let (ok, printed, stderr) = e2ee_client_run(stack, store, room, args);
    assert!(ok, "e2ee client failed: {printed}\n{stderr}");
    printed
}

/// [`e2ee_client`], failing or not: (success, what it printed, its stderr).
fn e2ee_client_run(
    stack: &Stack,
    store: &std::path::Path,
    room: Option<&str>,
    args: &[&str],
) -> (bool, Value, String) {
    let venv = std::env::var("BOARDROOM_NIO_VENV").unwrap_or_else(|_| {
        let home = std::env::var("HOME").expect("HOME");
        std::env::var("BOARDROOM_CACHE").unwrap_or(format!("{home}/.cache/boardroom"))
            + "/nio-0.26.0"
    });
    let script = crate::harness::project_root().join("scripts/e2ee_client.py");
    let mut cmd = std::process::Command::new(format!("{venv}/bin/python"));
    cmd.arg(script)
        .args(["--url", &stack.synapse.url, "--user", "@alice:localhost", "--password", "password"])
        .args(["--bot", stack.boardroom.bot().as_str()])
        .args(args)
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
    (out.status.success(), printed, String::from_utf8_lossy(&out.stderr).into_owned())
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
        e2ee_client(&stack, store.path(), None, &["--send", "!help", "--expect", "!task new"])
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
        e2ee_client(
            &stack,
            store.path(),
            Some(&room),
            &["--send", "!help", "--expect", "!task new"],
        )
    });
    assert_eq!(again["encrypted"], true, "{again}");
}

/// The room's events from `sender`, by type (the newest 100, as `user` reads them).
async fn types_from(user: &User, room: &ruma::RoomId, sender: &str) -> Vec<String> {
    user.timeline(room)
        .await
        .iter()
        .filter(|e| e.get_field::<String>("sender").ok().flatten().as_deref() == Some(sender))
        .filter(|e| e.get_field::<String>("state_key").ok().flatten().is_none())
        .filter_map(|e| e.get_field::<String>("type").ok().flatten())
        .collect()
}

async fn api_get(stack: &Stack, user: &User, path: &str) -> Value {
    let url = format!("http://{}/_boardroom/api/v1{path}", stack.boardroom.settings.listen);
    let resp =
        reqwest::Client::new().get(url).bearer_auth(&user.token).send().await.expect("request");
    assert!(resp.status().is_success(), "{path}: {}", resp.status());
    resp.json().await.expect("json")
}

/// Polls `check` on the API until it holds.
async fn until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_an_encrypted_tasks_room_tasks_comments_mentions_edits_and_redactions_work() {
    let config = format!(
        "{CONFIG}encrypt_new_rooms = true\n[permissions]\nboard_creators = [\"@alice:localhost\"]\n"
    );
    let stack = Stack::start(&config).await;
    let bot = stack.boardroom.bot().to_owned();
    let alice = stack.synapse.register("alice").await;
    let bob = stack.synapse.register("bob").await;
    device_keys(&alice, bot.as_str()).await;
    let dm = alice.create_room(&[&bot]).await;
    alice.wait_for_membership(&dm, &bot, ruma::events::room::member::MembershipState::Join).await;
    alice.command(&dm, &bot, "!board create launch Launch").await;
    let space = alice.join("#boardroom_launch:localhost").await.expect("space");
    let tasks = alice.join("#boardroom_launch-tasks:localhost").await.expect("tasks");
    let encryption = alice.state(&tasks, "m.room.encryption", "").await;
    assert!(encryption.is_some(), "the tasks room is made encrypted");
    // Bob joins the board and its tasks room (invited by a command in the encrypted room).
    let store = tempfile::tempdir().expect("client store");
    let room = tasks.to_string();
    let invited = tokio::task::block_in_place(|| {
        e2ee_client(
            &stack,
            store.path(),
            Some(&room),
            &["--send", "!board invite @bob:localhost", "--expect", "Invited"],
        )
    });
    assert_eq!(invited["encrypted"], true, "{invited}");
    bob.join(space.as_str()).await.expect("bob joins the space");
    bob.join(tasks.as_str()).await.expect("bob joins tasks");

    // A task, by command: the bot's answer and the task's root are encrypted.
    let created = tokio::task::block_in_place(|| {
        e2ee_client(
            &stack,
            store.path(),
            Some(&room),
            &["--send", "!task new Encrypted launch notes", "--expect", "launch#1"],
        )
    });
    assert_eq!(created["encrypted"], true, "{created}");
    let task = api_get(&stack, &alice, "/boards/launch/tasks/1").await;
    assert_eq!(task["title"], "Encrypted launch notes", "{task}");
    let from_bot = types_from(&alice, &tasks, bot.as_str()).await;
    assert!(
        !from_bot.is_empty() && from_bot.iter().all(|t| t == "m.room.encrypted"),
        "{from_bot:?}"
    );

    // A comment in the task's thread that mentions bob: indexed, and bob is notified.
    let root = task["root_event_id"].as_str().expect("root").to_owned();
    let comment = tokio::task::block_in_place(|| {
        e2ee_client(
            &stack,
            store.path(),
            Some(&room),
            &["--send", "@bob can you check the numbers?", "--thread", &root],
        )
    });
    let comment_id = comment["event_id"].as_str().expect("the comment's id").to_owned();
    until("the comment", async || {
        let page = api_get(&stack, &alice, "/boards/launch/tasks/1/comments").await;
        page["comments"][0]["body"] == "@bob can you check the numbers?"
    })
    .await;
    until("bob's mention", async || {
        let inbox = api_get(&stack, &bob, "/notifications").await;
        inbox["notifications"].as_array().is_some_and(|n| {
            n.iter().any(|e| e["kind"] == "mention" && e["event_id"] == comment_id.as_str())
        })
    })
    .await;

    // Edited, then redacted: the index follows.
    tokio::task::block_in_place(|| {
        e2ee_client(
            &stack,
            store.path(),
            Some(&room),
            &["--send", "@bob can you check the totals?", "--edit", &comment_id],
        )
    });
    until("the edit", async || {
        let page = api_get(&stack, &alice, "/boards/launch/tasks/1/comments").await;
        page["comments"][0]["body"] == "@bob can you check the totals?"
    })
    .await;
    tokio::task::block_in_place(|| {
        e2ee_client(&stack, store.path(), Some(&room), &["--redact", &comment_id])
    });
    until("the redaction", async || {
        let page = api_get(&stack, &alice, "/boards/launch/tasks/1/comments").await;
        page["comments"].as_array().is_some_and(|c| c.is_empty())
    })
    .await;

    // An API caller cannot write in the encrypted room: refused, with the reason.
    let url = format!(
        "http://{}/_boardroom/api/v1/boards/launch/tasks/1/comments",
        stack.boardroom.settings.listen
    );
    let refused = reqwest::Client::new()
        .post(url)
        .bearer_auth(&alice.token)
        .json(&json!({ "body": "in the clear" }))
        .send()
        .await
        .expect("request");
    assert_eq!(refused.status().as_u16(), 409);
    let body: Value = refused.json().await.expect("json");
    assert!(body["error"].as_str().is_some_and(|e| e.contains("end-to-end encrypted")), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_cross_signed_only_a_device_without_cross_signing_gets_no_room_key() {
    let config = format!(
        "{CONFIG}share_keys_with = \"cross_signed\"\n[permissions]\nboard_creators = [\"@alice:localhost\"]\n"
    );
    let stack = Stack::start(&config).await;
    let alice = stack.synapse.register("alice").await;
    device_keys(&alice, stack.boardroom.bot().as_str()).await;
    let store = tempfile::tempdir().expect("client store");
    // The bot reads Alice's command (she shared her key with it), but her client has no
    // cross-signing identity: the bot's answer reaches her undecryptable.
    let (ok, printed, stderr) = tokio::task::block_in_place(|| {
        let args = ["--send", "!help", "--expect", "!task new", "--wait", "15"];
        e2ee_client_run(&stack, store.path(), None, &args)
    });
    assert!(!ok, "decrypted without a room key: {printed}");
    assert_eq!(printed["error"], "no reply", "{printed}\n{stderr}");
    assert!(
        printed["undecryptable"].as_array().is_some_and(|u| !u.is_empty()),
        "the bot answered, encrypted, with a key her device was not given: {printed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_encryption_off_the_bot_says_once_that_it_cannot_read_an_encrypted_room() {
    let stack = Stack::start("[permissions]\nboard_creators = [\"@alice:localhost\"]\n").await;
    let alice = stack.synapse.register("alice").await;
    let bot = stack.boardroom.bot().to_string();
    let store = tempfile::tempdir().expect("client store");
    // Alice's encrypting client asks the bot for help in an encrypted room: the bot, with no
    // device, says in the clear why it cannot answer.
    let told = tokio::task::block_in_place(|| {
        let args = ["--send", "!help", "--expect", "end-to-end encrypted"];
        e2ee_client(&stack, store.path(), None, &args)
    });
    assert_eq!(told["encrypted"], false, "{told}");
    assert!(told["reply"].as_str().is_some_and(|r| r.contains("[encryption]")), "{told}");
    let room = told["room"].as_str().expect("room").to_owned();
    // Again: handled, and nothing more said.
    let again = tokio::task::block_in_place(|| {
        e2ee_client(&stack, store.path(), Some(&room), &["--send", "!help again"])
    });
    let event = again["event_id"].as_str().expect("sent").to_owned();
    let ours = stack.boardroom.store();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let seen = boardroom::store::inbound::seq_of_event(ours, &event).expect("read").is_some();
        let pending = ours.pending_from(0, 10).expect("read").len();
        let outgoing = ours.outbox_from(0, 10).expect("read").len();
        if seen && pending == 0 && outgoing == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the second message was never handled");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let room_id = ruma::OwnedRoomId::try_from(room.as_str()).expect("room id");
    let notices = alice
        .timeline(&room_id)
        .await
        .iter()
        .filter(|e| e.get_field::<String>("sender").ok().flatten().as_deref() == Some(bot.as_str()))
        .filter(|e| {
            e.get_field::<String>("type").ok().flatten().as_deref() == Some("m.room.message")
        })
        .count();
    assert_eq!(notices, 1, "told once");
    // Handled once more (as after a crash), the event asks for nothing: the room was told.
    let raw = alice
        .timeline(&room_id)
        .await
        .into_iter()
        .find(|e| {
            e.get_field::<String>("event_id").ok().flatten().as_deref() == Some(event.as_str())
        })
        .expect("the second message");
    let entry = boardroom::store::inbound::PendingEntry {
        seq: 1_000_000,
        kind: boardroom::store::inbound::EntryKind::Timeline,
        room_id: room.clone(),
        json: raw.json().get().as_bytes().to_vec(),
        may_change_rooms: false,
        plain: false,
    };
    let actions = boardroom::testing::handle(stack.boardroom.ctx(), &entry).await;
    assert!(actions.is_empty(), "{actions:?}");
}
