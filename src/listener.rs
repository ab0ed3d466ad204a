//! Serves a router on a TCP listener with limits an outsider cannot exhaust (`[http]` in
//! the config):
//!
//! - **Connection cap**: at most `max_connections` connections are served at once on a
//!   listener. The accept loop takes a permit before it accepts, so further connections
//!   wait in the kernel's accept queue, holding no file descriptor of ours, until a served
//!   one closes; past the queue's length the kernel refuses them.
//! - **Idle timeout**: a connection that sends no byte of a new request for
//!   `idle_timeout_secs` (after it is accepted, or after its previous response) is closed,
//!   and so is one that takes no byte of its response for as long.
//! - **Header timeout**: a request's head must be complete `header_read_timeout_secs` after
//!   its first byte, or the connection is closed.
//! - **Body timeout**: a request's body must be complete `body_read_timeout_secs` after its
//!   head; the body readers then fail (400) and the connection is closed.
//! - **Accept errors** (for example `EMFILE` when the process is out of file descriptors)
//!   are logged and retried after a pause that doubles up to a second: never a hot loop.
//!
//! The idle and header clocks live in [`Watched`], a wrapper of the socket that knows,
//! through [`Activity`], whether a request is in progress on its connection. Hyper's own
//! header timeout is set to their sum as a second line.
//!
//! On shutdown the loop stops accepting, idle connections close, requests in progress get
//! [`SHUTDOWN_GRACE`] to finish.

use std::{
    convert::Infallible,
    io,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use axum::Router;
use hyper::{body::Incoming, server::conn::http1};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::Semaphore,
    time::{Instant, Sleep},
};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tower_http::timeout::RequestBodyDeadlineLayer;

use crate::{
    config::HttpConfig,
    matrix::{
        RetryPolicy,
        backoff::{Backoff, sleep_or_cancelled},
    },
};

/// How long requests in progress get to finish once shutdown begins.
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The pauses after failed `accept`s: 10 ms doubling up to a second.
const ACCEPT_BACKOFF: RetryPolicy = RetryPolicy {
    max_attempts: None,
    base_delay: Duration::from_millis(10),
    max_delay: Duration::from_secs(1),
    max_server_errors: None,
};

/// The limits of one listener.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// From a request's first byte to the end of its head.
    pub header_read: Duration,
    /// From the end of a request's head to the end of its body.
    pub body_read: Duration,
    /// Waiting for the next request, or for the client to take the response.
    pub idle: Duration,
    /// Connections served at once.
    pub max_connections: usize,
}

impl Limits {
    /// The limits `[http]` sets.
    pub(crate) fn from_config(c: &HttpConfig) -> Self {
        Self {
            header_read: Duration::from_secs(c.header_read_timeout_secs),
            body_read: Duration::from_secs(c.body_read_timeout_secs),
            idle: Duration::from_secs(c.idle_timeout_secs),
            max_connections: usize::try_from(c.max_connections).unwrap_or(usize::MAX),
        }
    }
}

/// Serves `router` on `listener` within `limits` until `shutdown` is cancelled; then lets
/// requests in progress finish (for at most [`SHUTDOWN_GRACE`]) and returns. `name` is
/// the listener's name in logs.
pub(crate) async fn serve(
    name: &'static str,
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let router = router.layer(RequestBodyDeadlineLayer::new(limits.body_read));
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut backoff = Backoff::new(ACCEPT_BACKOFF);
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => {
                    backoff.reset();
                    a
                }
                Err(e) => {
                    let pause = backoff.pause();
                    tracing::warn!(listener = name, error = %e, pause_ms = pause.as_millis() as u64, "accept failed");
                    if sleep_or_cancelled(tokio::time::sleep(pause), &shutdown).await {
                        break;
                    }
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let activity = Arc::new(Activity::new());
        let io = TokioIo::new(Watched::new(stream, activity.clone(), limits));
        let router = router.clone();
        let slot = ConnectionSlot(Arc::new(Mutex::new(Some(permit))));
        let held = slot.clone();
        let service = hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
            let busy = Activity::begin(&activity);
            req.extensions_mut().insert(slot.clone());
            let router = router.clone();
            async move {
                let response = router.oneshot(req).await;
                drop(busy);
                Ok::<_, Infallible>(match response {
                    Ok(r) => r,
                    Err(never) => match never {},
                })
            }
        });
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.idle + limits.header_read)
            .serve_connection(io, service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(listener = name, peer = %peer, error = %e, "connection ended");
            }
            held.release();
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(SHUTDOWN_GRACE) => {
            tracing::warn!(listener = name, "requests still in progress after the shutdown grace period");
        }
    }
}

/// A connection's place under its listener's cap, in each of its requests' extensions.
/// A live stream gives it up ([`ConnectionSlot::release`]) for a place under the streams'
/// own cap, and its response closes the connection when it ends.
#[derive(Clone, Debug)]
pub(crate) struct ConnectionSlot(Arc<Mutex<Option<tokio::sync::OwnedSemaphorePermit>>>);

impl ConnectionSlot {
    /// Gives the connection's place back: the listener may accept another.
    pub(crate) fn release(&self) {
        let permit = self.0.lock().unwrap_or_else(|p| p.into_inner()).take();
        drop(permit);
    }
}

/// Where a connection stands.
#[derive(Clone, Copy, Debug)]
enum Phase {
    /// No request in progress and none begun, since this instant.
    Waiting(Instant),
    /// The first bytes of a request's head arrived at this instant.
    Head(Instant),
    /// This many requests are with the router (their body being read, or handled).
    Busy(usize),
}

/// What a connection is doing, shared by its socket ([`Watched`]) and its service.
#[derive(Debug)]
pub(crate) struct Activity {
    phase: Mutex<Phase>,
}

/// A request in progress; dropping it ends it.
#[derive(Debug)]
pub(crate) struct Busy(Arc<Activity>);

impl Activity {
    fn new() -> Self {
        Self { phase: Mutex::new(Phase::Waiting(Instant::now())) }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Phase) -> T) -> T {
        // A poisoned lock only means a panic elsewhere; the phase is still meaningful.
        let mut guard = self.phase.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    /// A request's head has been read and goes to the router.
    fn begin(this: &Arc<Self>) -> Busy {
        this.with(|p| {
            *p = match *p {
                Phase::Busy(n) => Phase::Busy(n + 1),
                _ => Phase::Busy(1),
            }
        });
        Busy(this.clone())
    }

    /// Bytes came in: the start of a request's head, when none was in progress.
    fn received(&self) {
        self.with(|p| {
            if let Phase::Waiting(_) = p {
                *p = Phase::Head(Instant::now());
            }
        });
    }

    /// Bytes went out: while waiting, the client is taking its response.
    fn sent(&self) {
        self.with(|p| {
            if let Phase::Waiting(_) = p {
                *p = Phase::Waiting(Instant::now());
            }
        });
    }

    /// When the connection is to be closed, and why, if nothing happens before.
    fn deadline(&self, limits: &Limits) -> Option<(Instant, Expired)> {
        self.with(|p| match *p {
            Phase::Waiting(since) => Some((since + limits.idle, Expired::Idle)),
            Phase::Head(since) => Some((since + limits.header_read, Expired::Head)),
            Phase::Busy(_) => None,
        })
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.with(|p| {
            *p = match *p {
                Phase::Busy(n) if n > 1 => Phase::Busy(n - 1),
                _ => Phase::Waiting(Instant::now()),
            }
        });
    }
}

#[derive(Clone, Copy, Debug)]
enum Expired {
    Idle,
    Head,
}

/// A socket that ends itself when its connection's idle or header clock runs out: reads
/// see the end of the stream when idle (hyper closes quietly), an error mid-head.
#[derive(Debug)]
pub(crate) struct Watched {
    stream: TcpStream,
    activity: Arc<Activity>,
    limits: Limits,
    timer: Option<Pin<Box<Sleep>>>,
}

impl Watched {
    fn new(stream: TcpStream, activity: Arc<Activity>, limits: Limits) -> Self {
        Self { stream, activity, limits, timer: None }
    }

    /// Called when the socket is not ready: `Ready` with the reason once the connection's
    /// clock has run out, otherwise `Pending` with a wake-up set for when it will.
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<Expired> {
        let Some((at, why)) = self.activity.deadline(&self.limits) else {
            self.timer = None;
            return Poll::Pending;
        };
        let timer = match &mut self.timer {
            Some(t) => {
                if t.deadline() != at {
                    t.as_mut().reset(at);
                }
                t
            }
            None => self.timer.insert(Box::pin(tokio::time::sleep_until(at))),
        };
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(why),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.activity.received();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => match this.poll_expired(cx) {
                // The end of the stream: hyper closes an idle connection without a word.
                Poll::Ready(Expired::Idle) => Poll::Ready(Ok(())),
                Poll::Ready(Expired::Head) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "request head not complete within http.header_read_timeout_secs",
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl Watched {
    /// A write's outcome: bytes out count as activity; a write the client does not take
    /// within the idle timeout fails the connection.
    fn after_write(
        &mut self,
        cx: &mut Context<'_>,
        written: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match written {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.activity.sent();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => match self.poll_expired(cx) {
                Poll::Ready(_) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "response not taken within http.idle_timeout_secs",
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.after_write(cx, written)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.after_write(cx, written)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
