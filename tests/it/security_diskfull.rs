//! Disk full: the database on a small tmpfs this test mounts itself, filled by a filler
//! file. Transactions get 503 (the homeserver keeps them and retries) and nothing is
//! acknowledged that is not stored; once the filler is gone the same process stores and
//! processes them, and the API's writes work again, without a restart. The appservice and
//! API are driven through the real router (`App::router`, `api::router_with`), with the
//! homeserver unreachable: `!help` is answered without it.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::Command,
    sync::Arc,
    time::{Duration, Instant},
};

use axum::body::Body;
use boardroom::{
    api::auth::AuthCache,
    app::App,
    domain::Action,
    domain::inbox::{Kind, Notification},
    store::Store,
};
use http::{Request, StatusCode};
use ruma::events::room::{member::MembershipState, message::Relation};
use serde_json::{Value, json};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::harness::{Stack, replies_to, test_config};

/// A tmpfs mounted for the test; unmounted when dropped, on every path.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// `None`, after saying so, when this machine does not let `test` mount (not root).
    fn mount(test: &str, size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("run mount");
        if !out.status.success() {
            eprintln!(
                "SKIPPED {test}: cannot mount a tmpfs here (mount needs root): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return None;
        }
        Some(Self { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount").arg(self.dir.path()).status().is_ok_and(|s| s.success());
        if !ok {
            // Something still holds a file there: detach it now, freed when let go.
            let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
        }
    }
}

/// Fills the file system holding `path` with a file there, until it refuses a byte.
fn fill(path: &Path) -> PathBuf {
    let filler = path.join("filler");
    let mut f = std::fs::File::create(&filler).expect("create the filler");
    for chunk in [64 * 1024, 4096, 512, 1] {
        let buf = vec![0u8; chunk];
        while f.write_all(&buf).is_ok() {}
    }
    // What was buffered when the disk refused is dropped with the file.
    drop(f);
    filler
}

fn message(event_id: &str, body: &str) -> Value {
    json!({
        "type": "m.room.message",
        "event_id": event_id,
        "room_id": "!room:localhost",
        "sender": "@alice:localhost",
        "origin_server_ts": 1,
        "content": { "msgtype": "m.text", "body": body },
    })
}

/// A `!help` large enough that it never fits in what is left of a page of the log.
fn transaction(event_id: &str) -> String {
    json!({ "events": [message(event_id, &format!("!help {}", "x".repeat(8 * 1024)))] }).to_string()
}

async fn call(router: &axum::Router, req: Request<Body>) -> (StatusCode, Option<String>, Value) {
    let resp = router.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get(http::header::RETRY_AFTER)
        .map(|v| v.to_str().expect("ascii").to_owned());
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.expect("body");
    (status, retry_after, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn put_txn(token: &str, txn: &str, body: String) -> Request<Body> {
    Request::put(format!("/_matrix/app/v1/transactions/{txn}"))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Body::from(body))
        .expect("request")
}

fn api(method: &str, path: &str) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(format!("/_boardroom/api/v1{path}"))
        .header("authorization", "Bearer client")
        .header("x-boardroom-user", "reader")
        .body(Body::empty())
        .expect("request")
}

/// The events the outbox's replies answer, in order.
fn replied_to(store: &Store) -> Vec<String> {
    store
        .outbox_from(0, 10_000)
        .expect("outbox")
        .into_iter()
        .filter_map(|(_, v)| match serde_json::from_slice(&v).expect("action") {
            Action::SendMessage { content, .. } => match content.relates_to {
                Some(Relation::Reply(r)) => Some(r.in_reply_to.event_id.to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

async fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_full_answers_503_then_recovers_without_a_restart() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("warn,boardroom=info"))
        .with_test_writer()
        .try_init();
    let Some(tmpfs) = Tmpfs::mount("disk_full_answers_503_then_recovers_without_a_restart", "128m")
    else {
        return;
    };
    let db_path = tmpfs.path().join("db");
    let config = test_config(
        "http://127.0.0.1:9",
        "127.0.0.1:9".parse().expect("addr"),
        &db_path,
        r#"
        [permissions]
        board_creators = ["@*:localhost"]
        [[api.clients]]
        name = "tracker"
        token = "client"
        boards = ["launch"]
        "#,
    );
    let settings = config.validate().expect("valid");
    let hs_token = settings.hs_token.expose().to_owned();
    let app = App::new(settings).expect("app");
    let shutdown = CancellationToken::new();
    let mut tasks = JoinSet::new();
    let appservice = app.router();
    let cache = Arc::new(AuthCache::default());
    let reader: ruma::OwnedUserId = "@boardroom_reader:localhost".try_into().expect("user");
    let store = app.ctx.store.clone();
    // The reader is the tracker's virtual user, registered already: no homeserver call.
    store.claim_virtual_user(&reader, "tracker", 10).expect("claim");
    store.set_virtual_user_registered(&reader, "tracker").expect("registered");
    let api_router = boardroom::api::router_with(app.ctx.clone(), cache);

    // Before: a transaction is stored (the dispatcher is not running yet, so it waits in
    // the inbound queue), and the reader has one unread notification.
    let (status, _, _) = call(&appservice, put_txn(&hs_token, "1", transaction("$before"))).await;
    assert_eq!(status, StatusCode::OK);
    let added = store
        .add_notifications(vec![Notification {
            id: 0,
            user_id: reader.clone(),
            kind: Kind::Mention,
            board: "launch".into(),
            room_id: "!room:localhost".try_into().expect("room"),
            thread_root: None,
            event_id: "$mention".try_into().expect("event"),
            sender: "@alice:localhost".try_into().expect("user"),
            excerpt: "hi".into(),
            ts: 1,
            read: false,
            seq: 1,
        }])
        .expect("add a notification");
    let note = added[0].id;

    // The disk fills up, and the dispatcher starts: it handles `$before`, cannot record it
    // as processed, and keeps it until it can.
    let filler = fill(tmpfs.path());
    app.spawn_dispatcher(&mut tasks, &shutdown);
    // Transactions until one is refused: the first ones still fit in the space RocksDB
    // reserved ahead for its log (a write buffer's size and a tenth, about 18 MiB). Each one answered
    // 200 was stored; each refused one is 503 and stored nothing.
    let mut stored = Vec::new();
    let mut refused = Vec::new();
    for i in 0..5000 {
        let (txn, event) = (format!("full{i}"), format!("$full{i}"));
        let (status, retry_after, body) =
            call(&appservice, put_txn(&hs_token, &txn, transaction(&event))).await;
        match status {
            StatusCode::OK => stored.push((txn, event)),
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_eq!(body["errcode"], "M_UNKNOWN", "{body}");
                assert!(
                    body["error"].as_str().is_some_and(|e| e.contains("temporarily unavailable")),
                    "{body}"
                );
                assert_eq!(retry_after.as_deref(), Some("5"), "a 503 says when to retry");
                refused.push((txn, event));
                if refused.len() == 3 {
                    break;
                }
            }
            other => panic!("a transaction on a full disk got {other}, not 503: {body}"),
        }
    }
    assert_eq!(refused.len(), 3, "transactions on a full disk were never refused");
    for (_, event) in &stored {
        assert!(store.is_event_seen(event).expect("read"), "{event} acknowledged, not stored");
    }
    for (_, event) in &refused {
        assert!(!store.is_event_seen(event).expect("read"), "{event} refused, yet stored");
    }
    // The API's writes are refused the same way, and change nothing.
    let (status, retry_after, body) =
        call(&api_router, api("POST", &format!("/notifications/{note}/read"))).await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("M_UNKNOWN"))
    );
    assert_eq!(retry_after.as_deref(), Some("5"));
    assert_eq!(store.unread_count(&reader).expect("count"), 1);
    // The dispatcher has not dropped `$before`: it is still pending and unanswered, or
    // (when its small write still fitted) answered first; never neither, never both.
    // (Read twice at most: the two reads are not one snapshot, and the entry moves once.)
    let mut seen = (false, false);
    for _ in 0..2 {
        let pending = store.pending_from(0, 10).expect("pending").first().map(|p| p.seq);
        let replied = replied_to(&store);
        seen = (pending == Some(1), replied.first().map(String::as_str) == Some("$before"));
        if seen.0 != seen.1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen.0 != seen.1, "(pending, answered): {seen:?}");

    // Space comes back. The homeserver retries the refused transactions (same ids, same
    // bodies), and the same process takes them.
    std::fs::remove_file(&filler).expect("remove the filler");
    let deadline = Instant::now() + Duration::from_secs(60);
    for (txn, event) in &refused {
        loop {
            let (status, _, body) =
                call(&appservice, put_txn(&hs_token, txn, transaction(event))).await;
            match status {
                StatusCode::OK => break,
                StatusCode::SERVICE_UNAVAILABLE => {
                    assert!(
                        Instant::now() < deadline,
                        "no recovery within 60 s after space came back"
                    );
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                other => panic!("a retried transaction got {other}: {body}"),
            }
        }
        assert!(store.is_event_seen(event).expect("read"), "{event} acknowledged, not stored");
    }
    // Every command is answered exactly once, in order, the ones stored before the disk
    // filled up and the ones refused while it was full alike.
    let mut expected = vec!["$before".to_owned()];
    expected.extend(stored.iter().chain(&refused).map(|(_, e)| e.clone()));
    wait_until("every command answered once", Duration::from_secs(60), || {
        replied_to(&store) == expected
    })
    .await;
    wait_until("the inbound queue drained", Duration::from_secs(20), || {
        store.pending_from(0, 10).expect("pending").is_empty()
    })
    .await;
    // The API writes again.
    let (status, _, body) =
        call(&api_router, api("POST", &format!("/notifications/{note}/read"))).await;
    assert_eq!((status, body["marked"].as_u64()), (StatusCode::OK, Some(1)), "{body}");
    let (status, _, body) = call(&api_router, api("GET", "/notifications/unread_count")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(store.unread_count(&reader).expect("count"), 0);

    // Nothing is corrupt: stopped and opened again, the database holds the same.
    shutdown.cancel();
    while tasks.join_next().await.is_some() {}
    drop((appservice, api_router, store, app));
    let store = reopen(&db_path).await;
    assert_eq!(replied_to(&store), expected, "the outbox after a reopen");
    assert!(store.pending_from(0, 10).expect("pending").is_empty());
    for e in &expected {
        assert!(store.is_event_seen(e).expect("read"), "{e} lost at reopen");
    }
    assert_eq!(store.unread_count(&reader).expect("count"), 0);
    assert!(store.notifications(&reader, None, 10).expect("inbox")[0].read);
    drop(store);
    drop(tmpfs);
}

/// Opens the database again once the last handle of the running app is gone.
async fn reopen(path: &Path) -> Store {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match Store::open(path) {
            Ok(s) => return s,
            Err(e) => {
                assert!(Instant::now() < deadline, "cannot reopen the database: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// End to end: Synapse keeps a transaction Boardroom answered 503 on a full disk, and
/// delivers it once Boardroom has recovered (Boardroom asks it to ping, which makes it
/// retry at once); the command is answered exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_full_synapse_keeps_the_transaction_and_redelivers_it() {
    let Some(tmpfs) =
        Tmpfs::mount("disk_full_synapse_keeps_the_transaction_and_redelivers_it", "64m")
    else {
        return;
    };
    let stack = Stack::start_with_db(
        "[permissions]\nboard_creators = [\"@alice:localhost\"]",
        &[],
        Some(&tmpfs.path().join("db")),
    )
    .await;
    let bot = stack.boardroom.bot().to_owned();
    let alice = stack.synapse.register("alice").await;
    let dm = alice.create_room(&[&bot]).await;
    alice.wait_for_membership(&dm, &bot, MembershipState::Join).await;
    let store = stack.boardroom.store().clone();

    let filler = fill(tmpfs.path());
    // What RocksDB reserved ahead for its log fills up first, with transactions in a room
    // Boardroom does not manage, put as the homeserver would.
    let router = stack.boardroom.app().router();
    let hs_token = stack.boardroom.app().ctx.settings.hs_token.expose().to_owned();
    let mut junk = 0;
    loop {
        let events: Vec<Value> =
            // (A `!` makes each a message that may be a command: stored.)
            (0..8).map(|i| message(&format!("$junk{junk}.{i}"), &format!("{}!", "y".repeat(8 * 1024)))).collect();
        let body = json!({ "events": events }).to_string();
        let (status, _, _) = call(&router, put_txn(&hs_token, &format!("junk{junk}"), body)).await;
        if status == StatusCode::SERVICE_UNAVAILABLE {
            break;
        }
        assert_eq!(status, StatusCode::OK);
        junk += 1;
        assert!(junk < 1000, "the disk never refused a write");
    }
    // Every transaction the homeserver pushes is counted, refused or not.
    let metrics = stack.boardroom.app().ctx.metrics.clone();
    let pushed = metrics.transactions.get();
    // Large enough that it never fits in what is left of a page of the log.
    let command = format!("!help {}", "x".repeat(8 * 1024));
    let event = alice.say(&dm, &command).await;
    wait_until("Synapse to push the transaction", Duration::from_secs(30), || {
        metrics.transactions.get() > pushed
    })
    .await;
    assert!(!store.is_event_seen(event.as_str()).expect("read"), "stored on a full disk");

    std::fs::remove_file(&filler).expect("remove the filler");
    let replies = alice
        .wait_for(&dm, Duration::from_secs(90), "the reply after space came back", |events| {
            let r = replies_to(events, &bot, &event);
            (!r.is_empty()).then_some(r.len())
        })
        .await;
    assert_eq!(replies, 1, "answered once");
    assert!(store.is_event_seen(event.as_str()).expect("read"));
    drop(store);
    drop(stack);
    drop(tmpfs);
}
