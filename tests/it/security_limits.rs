//! Resources an outsider could exhaust (issue 10, "Medium"): connections held open by slow
//! or idle clients, connections beyond the cap, and the appservice listener kept apart from
//! the HTTP API. Real TCP against Boardroom served on 127.0.0.1:0, with short timeouts set
//! through `[http]`; no homeserver is needed. Waits are bounded; nothing asserts a time
//! beyond "closed within a generous bound".

use std::{net::SocketAddr, time::Duration};

use boardroom::{
    Config,
    app::{App, Listeners},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
    time::{Instant, timeout},
};
use tokio_util::sync::CancellationToken;

/// What "closed within a generous bound" allows.
const GENEROUS: Duration = Duration::from_secs(20);

struct Served {
    appservice: SocketAddr,
    api: Option<SocketAddr>,
    shutdown: CancellationToken,
    task: Option<JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Served {
    /// Boardroom with `http` as its `[http]` section; with `split`, the HTTP API on a
    /// listener of its own.
    async fn start(http: &str, split: bool) -> Served {
        let dir = tempfile::tempdir().expect("tempdir");
        let appservice = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let api =
            if split { Some(TcpListener::bind("127.0.0.1:0").await.expect("bind")) } else { None };
        let api_addr = api.as_ref().map(|l| l.local_addr().expect("addr"));
        let api_section = match api_addr {
            Some(a) => format!("[api]\nlisten = \"{a}\"\n"),
            None => String::new(),
        };
        let config =
            Config::offline(&dir.path().join("db"), &format!("[http]\n{http}\n{api_section}"))
                .expect("config");
        let settings = config.validate().expect("valid");
        assert_eq!(settings.api_listen, api_addr);
        let app = App::new(settings).expect("app");
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let appservice_addr = appservice.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            boardroom::app::serve_app_on(app, Listeners { appservice, api, metrics: None }, token)
                .await
                .expect("serve");
        });
        Served { appservice: appservice_addr, api: api_addr, shutdown, task: Some(task), _dir: dir }
    }

    async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(t) = self.task.take() {
            timeout(GENEROUS, t).await.expect("stops in time").expect("serve task");
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

const OPENAPI: &[u8] = b"GET /_boardroom/api/v1/openapi.json HTTP/1.1\r\nhost: boardroom\r\n\r\n";

fn transaction(txn: &str) -> Vec<u8> {
    let body = r#"{"events":[]}"#;
    format!(
        "PUT /_matrix/app/v1/transactions/{txn} HTTP/1.1\r\nhost: boardroom\r\n\
         authorization: Bearer hs\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Reads one response (head and `content-length` body) within `wait`: its status and body;
/// `None` when nothing complete came in time or the connection ended first.
async fn read_response(stream: &mut TcpStream, wait: Duration) -> Option<(u16, String)> {
    let deadline = Instant::now() + wait;
    let mut buf = Vec::new();
    loop {
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let head = &text[..end];
            let status: u16 = head.split(' ').nth(1)?.parse().ok()?;
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length").then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                return Some((status, text[end + 4..end + 4 + length].to_owned()));
            }
        }
        let mut chunk = [0u8; 8192];
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Whether the server has closed `stream` (end of stream or reset) within `wait`; bytes
/// that come first are skipped.
async fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    let mut chunk = [0u8; 8192];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

/// A client that sends its request head a line at a time, each line well within any
/// reasonable per-read timeout, is still cut off once `header_read_timeout_secs` have
/// passed since its first byte: it cannot hold a connection for good.
#[tokio::test]
async fn slow_header_trickle_is_disconnected_after_the_header_timeout() {
    let served =
        Served::start("header_read_timeout_secs = 1\nidle_timeout_secs = 120", false).await;

    // A normal request on its own connection is answered.
    let mut normal = TcpStream::connect(served.appservice).await.expect("connect");
    normal.write_all(OPENAPI).await.expect("write");
    let (status, _) = read_response(&mut normal, GENEROUS).await.expect("a response");
    assert_eq!(status, 200);

    let mut slow = TcpStream::connect(served.appservice).await.expect("connect");
    slow.write_all(b"GET /_boardroom/api/v1/openapi.json HTTP/1.1\r\n").await.expect("write");
    let started = Instant::now();
    let mut closed = false;
    let mut lines = 0;
    while started.elapsed() < GENEROUS {
        if slow.write_all(format!("x-trickle-{lines}: y\r\n").as_bytes()).await.is_err() {
            closed = true;
            break;
        }
        lines += 1;
        if closed_within(&mut slow, Duration::from_millis(200)).await {
            closed = true;
            break;
        }
    }
    // The idle timeout (120 s) is far beyond the bound: the header timeout does it.
    assert!(closed, "a client trickling header lines ({lines} sent) was never disconnected");
    served.stop().await;
}

/// A request whose body stops short (here: 10 of 1,000 bytes, then one byte now and then)
/// is answered 400 and its connection closed once `body_read_timeout_secs` have passed
/// since its head; nothing of it is stored.
#[tokio::test]
async fn half_sent_body_is_cut_off_after_the_body_timeout() {
    let served = Served::start(
        "body_read_timeout_secs = 1\nheader_read_timeout_secs = 60\nidle_timeout_secs = 120",
        false,
    )
    .await;
    let mut slow = TcpStream::connect(served.appservice).await.expect("connect");
    slow.write_all(
        b"PUT /_matrix/app/v1/transactions/half HTTP/1.1\r\nhost: boardroom\r\n\
          authorization: Bearer hs\r\ncontent-type: application/json\r\n\
          content-length: 1000\r\n\r\n{\"events\":",
    )
    .await
    .expect("write");
    let started = Instant::now();
    let mut response = None;
    while started.elapsed() < GENEROUS && response.is_none() {
        // Trickle: the body keeps moving, so only a deadline on the whole body ends it.
        let _ = slow.write_all(b" ").await;
        response = read_response(&mut slow, Duration::from_millis(300)).await;
    }
    let (status, body) = response.expect("the half-sent request was never answered");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("M_BAD_JSON"), "{body}");
    assert!(
        closed_within(&mut slow, GENEROUS).await,
        "the connection stayed open after the body timeout"
    );

    // The same transaction id, sent whole, is taken as new: the cut one left nothing.
    let mut whole = TcpStream::connect(served.appservice).await.expect("connect");
    whole.write_all(&transaction("half")).await.expect("write");
    let (status, body) = read_response(&mut whole, GENEROUS).await.expect("a response");
    assert_eq!(status, 200, "{body}");
    served.stop().await;
}

/// A keep-alive connection serves several requests, then, with no request in progress for
/// `idle_timeout_secs`, is closed.
#[tokio::test]
async fn idle_keep_alive_connection_is_closed() {
    let served =
        Served::start("idle_timeout_secs = 2\nheader_read_timeout_secs = 120", false).await;
    let mut conn = TcpStream::connect(served.appservice).await.expect("connect");
    for _ in 0..2 {
        conn.write_all(OPENAPI).await.expect("write");
        let (status, _) = read_response(&mut conn, GENEROUS).await.expect("a response");
        assert_eq!(status, 200);
    }
    assert!(
        closed_within(&mut conn, GENEROUS).await,
        "an idle keep-alive connection was never closed"
    );

    // A connection that never sends a byte is closed too.
    let mut silent = TcpStream::connect(served.appservice).await.expect("connect");
    assert!(closed_within(&mut silent, GENEROUS).await, "a silent connection was never closed");
    served.stop().await;
}

/// With the HTTP API on its own listener (`api.listen`), connections to it beyond
/// `max_connections` are not served until one closes, while the appservice listener, with
/// its own cap, keeps taking the homeserver's transactions. Each listener serves its own
/// API only.
#[tokio::test]
async fn connections_beyond_the_cap_wait_while_the_transactions_listener_serves() {
    let served = Served::start(
        "max_connections = 2\nidle_timeout_secs = 120\nheader_read_timeout_secs = 120",
        true,
    )
    .await;
    let api = served.api.expect("an API listener");

    // Two API connections take the cap, and stay open.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = TcpStream::connect(api).await.expect("connect");
        c.write_all(OPENAPI).await.expect("write");
        let (status, _) = read_response(&mut c, GENEROUS).await.expect("a response");
        assert_eq!(status, 200);
        held.push(c);
    }

    // A third is not served while they are.
    let mut third = TcpStream::connect(api).await.expect("the kernel queues the connection");
    third.write_all(OPENAPI).await.expect("write");
    assert_eq!(
        read_response(&mut third, Duration::from_secs(2)).await,
        None,
        "a connection beyond the cap was served"
    );

    // The homeserver's transactions still go through on the appservice listener.
    for i in 0..3 {
        let mut hs = TcpStream::connect(served.appservice).await.expect("connect");
        hs.write_all(&transaction(&format!("t{i}"))).await.expect("write");
        let (status, body) =
            read_response(&mut hs, GENEROUS).await.expect("the homeserver is answered");
        assert_eq!(status, 200, "{body}");
    }

    // Each listener serves its own API only.
    let mut hs = TcpStream::connect(served.appservice).await.expect("connect");
    hs.write_all(OPENAPI).await.expect("write");
    let (status, body) = read_response(&mut hs, GENEROUS).await.expect("a response");
    assert_eq!(status, 404, "the HTTP API is not on the appservice listener: {body}");
    assert!(body.contains("M_UNRECOGNIZED"), "{body}");

    // Once a held connection closes, the waiting one is served.
    drop(held.pop());
    let (status, _) =
        read_response(&mut third, GENEROUS).await.expect("the waiting connection is served");
    assert_eq!(status, 200);
    third.write_all(&transaction("on-the-api-listener")).await.expect("write");
    let (status, body) = read_response(&mut third, GENEROUS).await.expect("a response");
    assert_eq!(status, 404, "the appservice API is not on the API listener: {body}");
    served.stop().await;
}

/// Shutdown with a request in progress: the request is answered, then serving stops.
#[tokio::test]
async fn shutdown_lets_a_request_in_progress_finish() {
    let served = Served::start("body_read_timeout_secs = 60", false).await;
    let mut conn = TcpStream::connect(served.appservice).await.expect("connect");
    let request = transaction("during-shutdown");
    let (first, rest) = request.split_at(request.len() - 5);
    conn.write_all(first).await.expect("write");
    // The head is in (give the server time to read it); the body is not complete when
    // shutdown begins.
    tokio::time::sleep(Duration::from_secs(1)).await;
    served.shutdown.cancel();
    tokio::time::sleep(Duration::from_millis(300)).await;
    conn.write_all(rest).await.expect("write");
    let (status, body) = read_response(&mut conn, GENEROUS).await.expect("answered");
    assert_eq!(status, 200, "{body}");
    served.stop().await;
}

/// `boardroom serve` binds `api.listen` as well; a port it cannot have is named by key.
#[tokio::test]
async fn listeners_bind_api_listen_and_name_it_when_taken() {
    let dir = tempfile::tempdir().expect("tempdir");
    let taken = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let free = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let free_addr = free.local_addr().expect("addr");
    drop(free);
    let settings = |api: SocketAddr| {
        Config::offline(&dir.path().join("db"), &format!("[api]\nlisten = \"{api}\"\n",))
            .expect("config")
            .validate()
            .expect("valid")
    };
    let mut s = settings(taken.local_addr().expect("addr"));
    s.listen = "127.0.0.1:0".parse().expect("addr");
    let err = Listeners::bind(&s).await.expect_err("the API port is taken");
    assert!(err.to_string().contains("api.listen"), "{err}");

    let mut s = settings(free_addr);
    s.listen = "127.0.0.1:0".parse().expect("addr");
    let listeners = Listeners::bind(&s).await.expect("both bound");
    assert_eq!(listeners.api.as_ref().map(|l| l.local_addr().expect("addr")), Some(free_addr));
}

/// A thousand clients connecting at once, as live streams do when Boardroom comes back,
/// all get a connection from the kernel while Boardroom has accepted none of them yet:
/// its listeners' accept queue is not std's 128 (past which the kernel drops connection
/// attempts, and clients wait a second or more for their retry).
#[tokio::test]
async fn a_thousand_clients_connecting_at_once_are_all_queued_by_the_kernel() {
    let listener = boardroom::app::listen("127.0.0.1:0".parse().expect("addr")).expect("listen");
    let addr = listener.local_addr().expect("addr");
    let mut connecting = tokio::task::JoinSet::new();
    for _ in 0..1000 {
        connecting
            .spawn(async move { timeout(Duration::from_secs(5), TcpStream::connect(addr)).await });
    }
    let mut connected = Vec::new();
    let mut waited = 0;
    while let Some(done) = connecting.join_next().await {
        match done.expect("task") {
            Ok(Ok(stream)) => connected.push(stream),
            Ok(Err(e)) => panic!("connect failed: {e}"),
            Err(_) => waited += 1,
        }
    }
    assert_eq!(waited, 0, "connections the kernel did not queue: {waited} of 1000");
    drop(listener);
}
