//! Faults Synapse cannot be made to produce on demand — a 429 with `retry_after_ms`, a 502,
//! a permanent refusal — from a small mock homeserver on loopback, against the real outbox
//! worker and a real RocksDB.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Json, Router,
    extract::{Path, RawQuery, State},
    http::StatusCode,
    routing::put,
};
use boardroom::{
    config::Secret,
    domain::{Action, action::derived_txn_id},
    matrix::{Auth, HomeserverClient},
    outbox,
    store::Store,
};
use ruma::{events::room::message::RoomMessageEventContent, owned_room_id, owned_user_id};
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// One attempt the mock saw: room, transaction id, query string, when.
type Attempt = (String, String, String, Instant);

/// A status and a JSON body.
type Answer = (StatusCode, Value);

#[derive(Clone, Default)]
struct Mock {
    /// Answers to give for each room, in order; then 200.
    script: Arc<Mutex<HashMap<String, Vec<Answer>>>>,
    /// (room, txn id, query string, when) of every attempt.
    seen: Arc<Mutex<Vec<Attempt>>>,
}

async fn send(
    State(mock): State<Mock>,
    Path((room, _ty, txn)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
) -> (StatusCode, Json<Value>) {
    mock.seen.lock().expect("lock").push((
        room.clone(),
        txn,
        query.unwrap_or_default(),
        Instant::now(),
    ));
    let next = {
        let mut s = mock.script.lock().expect("lock");
        s.get_mut(&room).and_then(|answers| (!answers.is_empty()).then(|| answers.remove(0)))
    };
    match next {
        Some((status, body)) => (status, Json(body)),
        None => (StatusCode::OK, Json(json!({ "event_id": "$sent" }))),
    }
}

/// Waits for the outbox to empty, stops its worker, and returns what the mock was sent.
async fn drain(
    store: &Store,
    mock: &Mock,
    shutdown: CancellationToken,
    worker: tokio::task::JoinHandle<()>,
) -> Vec<Attempt> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !store.outbox_from(0, 10).expect("outbox").is_empty() {
        assert!(Instant::now() < deadline, "the outbox did not drain");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    worker.await.expect("worker");
    mock.seen.lock().expect("lock").clone()
}

async fn start_mock(mock: Mock) -> String {
    let app = Router::new()
        .route("/_matrix/client/v3/rooms/{room}/send/{ty}/{txn}", put(send))
        .with_state(mock);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await.expect("mock") });
    url
}

fn message(room: &str, as_user: Option<&str>, cause: &str) -> Vec<u8> {
    let action = Action::SendMessage {
        room_id: room.try_into().expect("room id"),
        as_user: as_user.map(|u| u.try_into().expect("user id")),
        txn_id: derived_txn_id(cause, 0),
        content: Box::new(RoomMessageEventContent::notice_plain("hello")),
    };
    serde_json::to_vec(&action).expect("encode")
}

/// The attempts made for `room`.
fn attempts_in<'a>(seen: &'a [Attempt], room: &str) -> Vec<&'a Attempt> {
    seen.iter().filter(|s| s.0 == room).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_are_retried_in_their_room_and_permanent_ones_set_aside() {
    let mock = Mock::default();
    *mock.script.lock().expect("lock") = HashMap::from([
        (
            "!a:localhost".to_owned(),
            vec![
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    json!({ "errcode": "M_LIMIT_EXCEEDED", "error": "slow down", "retry_after_ms": 1500 }),
                ),
                (StatusCode::BAD_GATEWAY, json!({ "errcode": "M_UNKNOWN", "error": "upstream" })),
                // Then the first message of !a is accepted, and the second.
            ],
        ),
        (
            "!b:localhost".to_owned(),
            vec![(
                StatusCode::FORBIDDEN,
                json!({ "errcode": "M_FORBIDDEN", "error": "not in room" }),
            )],
        ),
    ]);
    let url = start_mock(mock.clone()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store");
    store
        .enqueue_outbound(&[
            message("!a:localhost", Some("@boardroom_app:localhost"), "$c1"),
            message("!a:localhost", None, "$c2"),
            message("!b:localhost", None, "$c3"),
            message("!c:localhost", None, "$c4"),
        ])
        .expect("enqueue");
    let client = HomeserverClient::new(&url, Auth::Appservice(Secret::new("as"))).expect("client");
    let shutdown = CancellationToken::new();
    let worker =
        tokio::spawn(outbox::run(store.clone(), client, Arc::new(Notify::new()), shutdown.clone()));

    let seen = drain(&store, &mock, shutdown, worker).await;
    let a = attempts_in(&seen, "!a:localhost");
    // In order within the room: the first message three times (the same transaction id on
    // every retry, so the homeserver deduplicates), then the second.
    let txns: Vec<&str> = a.iter().map(|s| s.1.as_str()).collect();
    assert_eq!(txns.len(), 4, "{seen:?}");
    assert!(txns[..3].iter().all(|t| *t == txns[0]) && txns[3] != txns[0], "{txns:?}");
    // The virtual user is asserted with `user_id`; the bot is not.
    assert!(a[0].2.contains("user_id=%40boardroom_app%3Alocalhost"), "{}", a[0].2);
    assert!(!a[3].2.contains("user_id"));
    // retry_after_ms was honoured.
    let waited = a[1].3 - a[0].3;
    assert!(waited >= Duration::from_millis(1500), "retried after {waited:?}");
    // The other rooms did not wait for !a's retries.
    let b = attempts_in(&seen, "!b:localhost");
    let c = attempts_in(&seen, "!c:localhost");
    assert_eq!(c.len(), 1, "{seen:?}");
    // In !b: the refused request, tried once; then the room is told of the refusal, once,
    // by a notice of its own (another transaction id: not a retry).
    assert_eq!(b.len(), 2, "{seen:?}");
    assert_ne!(b[0].1, b[1].1, "the second request in !b is the notice, not a retry");
    assert!(b[0].3 < a[1].3 && c[0].3 < a[1].3, "{seen:?}");
    // The refused request is kept with the homeserver's error, and was tried once.
    let dead = store.outbox_dead_entries(10).expect("dead");
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0].1.contains("M_FORBIDDEN") && dead[0].1.contains("!b:localhost"),
        "{}",
        dead[0].1
    );
}

#[tokio::test]
async fn an_unreachable_homeserver_is_a_transient_error() {
    // A port held bound and not listening: a connection is refused, and no other process
    // can take the port while the test runs.
    let held = tokio::net::TcpSocket::new_v4().expect("socket");
    held.bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
    let port = held.local_addr().expect("addr").port();
    let client = HomeserverClient::new(
        &format!("http://127.0.0.1:{port}"),
        Auth::Appservice(Secret::new("as")),
    )
    .expect("client")
    .with_retry(boardroom::matrix::RetryPolicy::NONE);
    let action = Action::JoinRoom {
        room_id: owned_room_id!("!a:localhost"),
        as_user: Some(owned_user_id!("@boardroom_x:localhost")),
    };
    let err = outbox::execute(&client, &action).await.expect_err("nothing listens there");
    assert_eq!(err.retry_kind(), boardroom::matrix::RetryKind::Transient(None));
    assert!(err.to_string().contains("join_room_by_id"), "{err}");
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_keeps_getting_server_errors_is_set_aside_and_its_room_goes_on() {
    let mock = Mock::default();
    let boom =
        || (StatusCode::INTERNAL_SERVER_ERROR, json!({ "errcode": "M_UNKNOWN", "error": "boom" }));
    *mock.script.lock().expect("lock") =
        HashMap::from([("!a:localhost".to_owned(), vec![boom(), boom(), boom()])]);
    let url = start_mock(mock.clone()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store");
    store
        .enqueue_outbound(&[
            message("!a:localhost", None, "$c1"),
            message("!a:localhost", None, "$c2"),
        ])
        .expect("enqueue");
    let metrics = Arc::new(boardroom::metrics::Metrics::new());
    let client = HomeserverClient::new(&url, Auth::Appservice(Secret::new("as")))
        .expect("client")
        .with_metrics(metrics.clone());
    let shutdown = CancellationToken::new();
    let policy = outbox::OutboxPolicy {
        backoff: boardroom::matrix::RetryPolicy {
            max_attempts: None,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
            max_server_errors: Some(3),
        },
        ..outbox::OutboxPolicy::DEFAULT
    };
    let worker = tokio::spawn(outbox::run_with(
        store.clone(),
        client,
        Arc::new(Notify::new()),
        shutdown.clone(),
        policy,
    ));
    let seen = drain(&store, &mock, shutdown, worker).await;
    let txns: Vec<&str> = seen.iter().map(|s| s.1.as_str()).collect();
    assert_eq!(txns.len(), 4, "{seen:?}");
    assert!(txns[..3].iter().all(|t| *t == txns[0]) && txns[3] != txns[0], "{txns:?}");
    let dead = store.outbox_dead_entries(10).expect("dead");
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0].1.contains("gave up after 3 server errors")
            && dead[0].1.contains(derived_txn_id("$c1", 0).as_str()),
        "{}",
        dead[0].1
    );
    // In the metrics: the first message's three attempts (two retries), given up; the
    // second sent; each attempt under its endpoint, the 5xx under their error code.
    let text = metrics.render();
    for line in [
        "boardroom_outbox_retries_total 2\n",
        "boardroom_outbox_dead_letters_total{reason=\"gave_up\"} 1\n",
        "boardroom_outbox_sent_total 1\n",
        "boardroom_homeserver_request_seconds_count{endpoint=\"send_message_event\"} 4\n",
        "boardroom_homeserver_request_errors_total{endpoint=\"send_message_event\",kind=\"M_UNKNOWN\"} 3\n",
    ] {
        assert!(text.contains(line), "{line} in\n{text}");
    }
}

#[tokio::test]
async fn retries_give_up_after_server_errors_in_a_row_but_not_on_rate_limits() {
    let mock = Mock::default();
    let boom =
        || (StatusCode::INTERNAL_SERVER_ERROR, json!({ "errcode": "M_UNKNOWN", "error": "boom" }));
    let slow = || {
        (
            StatusCode::TOO_MANY_REQUESTS,
            json!({ "errcode": "M_LIMIT_EXCEEDED", "error": "slow down", "retry_after_ms": 10 }),
        )
    };
    // Two 5xx, a 429 that breaks the run, then three 5xx in a row: given up on the last.
    *mock.script.lock().expect("lock") = HashMap::from([(
        "!a:localhost".to_owned(),
        vec![slow(), boom(), boom(), slow(), boom(), boom(), boom(), boom()],
    )]);
    let url = start_mock(mock.clone()).await;
    let client = HomeserverClient::new(&url, Auth::Appservice(Secret::new("as"))).expect("client");
    let policy = boardroom::matrix::RetryPolicy {
        max_attempts: None,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
        max_server_errors: Some(3),
    };
    let req = ruma::api::client::message::send_message_event::v3::Request::new(
        owned_room_id!("!a:localhost"),
        derived_txn_id("$c1", 0),
        &RoomMessageEventContent::notice_plain("hello"),
    )
    .expect("request");
    let err = client.send_with(req, None, policy).await.expect_err("given up");
    assert_eq!(err.status(), Some(500), "{err}");
    assert_eq!(mock.seen.lock().expect("lock").len(), 7, "one 5xx was left unasked");
}
