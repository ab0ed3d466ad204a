//! Wiring: opens the store, builds the router, starts the workers, serves until shutdown.

use std::{sync::Arc, time::Duration};

use axum::{Router, extract::Request};
use tokio::{net::TcpListener, sync::Notify, task::JoinSet};
use tokio_util::sync::CancellationToken;
use tower_http::trace::TraceLayer;

mod health;
mod startup;

pub use startup::BOT_DISPLAY_NAME;

use crate::{
    appservice::{self, AppState},
    config::Settings,
    context::{Context, Streams},
    domain::live::LiveState,
    error::{Error, Result},
    inbound,
    listener::{self, Limits},
    matrix::{Auth, HomeserverClient, RetryPolicy},
    outbox,
    store::Store,
};

/// Everything a running Boardroom holds.
#[derive(Clone, Debug)]
pub struct App {
    /// Config, store, queues, live state.
    pub ctx: Arc<Context>,
    /// The appservice's homeserver client.
    pub client: HomeserverClient,
    /// Watches the homeserver's transaction ids for a restart, to catch up after it.
    pub restarts: Arc<appservice::catch_up::Restarts>,
}

/// A reload (`SIGHUP`): `new` is the config read and validated again. API clients, webhook
/// sources and board creators apply at once (a client's live streams end, to be resumed
/// with the new config); the keys that need a restart are named. `logging.level` is the
/// caller's to apply (it owns the subscriber).
pub fn reload(ctx: &Context, new: &Settings) -> crate::config::Reloaded {
    let reloaded = ctx.settings.reload_from(new);
    if reloaded.applied.contains(&"api.clients") {
        ctx.streams.clients_changed.send_modify(|n| *n += 1);
    }
    reloaded
}

impl App {
    /// Opens the database and builds the client; starts nothing.
    pub fn new(settings: Settings) -> Result<Self> {
        let store = Store::open(&settings.raw.database.path)?;
        let live = &settings.raw.live;
        store.set_live_buffer(usize::try_from(live.buffer_events).unwrap_or(usize::MAX));
        let streams = Streams::new(
            usize::try_from(live.max_subscribers).unwrap_or(usize::MAX),
            usize::try_from(live.max_streams_per_user).unwrap_or(usize::MAX),
        );
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let backlog = Arc::new(crate::context::Backlog::new(
            store.pending_counts()?,
            metrics.inbound_depth.clone(),
        ));
        metrics.watch(store.clone());
        let client = HomeserverClient::new(
            &settings.homeserver_url,
            Auth::Appservice(settings.as_token.clone()),
        )?
        .with_metrics(metrics.clone());
        let crypto: Arc<tokio::sync::OnceCell<crate::crypto::Crypto>> = Default::default();
        // Operations' direct sends (task roots) are encrypted in encrypted rooms too.
        let processing = client.clone().with_retry(RetryPolicy::BACKGROUND);
        let processing = match settings.raw.encryption.enabled {
            true => processing.with_device(crypto.clone()),
            false => processing,
        };
        let limits = Arc::new(crate::ratelimit::Limits::from_config(&settings.raw));
        let ctx = Arc::new(Context {
            settings: Arc::new(settings),
            store,
            outbox_notify: Arc::new(Notify::new()),
            inbound_notify: Arc::new(Notify::new()),
            live: Arc::new(LiveState::default()),
            client: processing,
            room_version: Default::default(),
            task_locks: Default::default(),
            streams: Arc::new(streams),
            crypto,
            device_counts: Default::default(),
            limits,
            metrics,
            backlog,
        });
        let restarts = appservice::catch_up::Restarts::after(ctx.store.last_ingest_ms()?);
        Ok(Self { ctx, client, restarts: Arc::new(restarts) })
    }

    /// The HTTP surface: the appservice API, the HTTP API and the webhooks, and
    /// Matrix-style 404 for anything else.
    pub fn router(&self) -> Router {
        finish(
            self.appservice_router_bare()
                .merge(self.api_router_bare())
                .merge(health::router(self.ctx.clone())),
            &self.ctx.metrics,
        )
    }

    /// The appservice API alone (what the homeserver calls), when the HTTP API has a
    /// listener of its own.
    pub fn appservice_router(&self) -> Router {
        finish(
            self.appservice_router_bare().merge(health::router(self.ctx.clone())),
            &self.ctx.metrics,
        )
    }

    /// The HTTP API and the webhooks, for their own listener (`api.listen`).
    pub fn api_router(&self) -> Router {
        finish(self.api_router_bare().merge(health::router(self.ctx.clone())), &self.ctx.metrics)
    }

    fn api_router_bare(&self) -> Router {
        crate::api::router(self.ctx.clone()).merge(crate::webhooks::router(self.ctx.clone()))
    }

    fn appservice_router_bare(&self) -> Router {
        appservice::router(AppState { ctx: self.ctx.clone(), restarts: self.restarts.clone() })
    }

    /// Starts the inbound dispatcher and the outbox worker.
    pub fn spawn_processing(&self, tasks: &mut JoinSet<()>, shutdown: &CancellationToken) {
        self.spawn_dispatcher(tasks, shutdown);
        self.spawn_outbox(tasks, shutdown);
    }

    /// Starts the inbound dispatcher alone (tests inspect the outbox it fills).
    pub fn spawn_dispatcher(&self, tasks: &mut JoinSet<()>, shutdown: &CancellationToken) {
        tasks.spawn(inbound::run_dispatcher(self.ctx.clone(), shutdown.clone()));
    }

    /// Starts the outbox worker alone.
    pub fn spawn_outbox(&self, tasks: &mut JoinSet<()>, shutdown: &CancellationToken) {
        let (store, client, notify) =
            (self.ctx.store.clone(), self.client.clone(), self.ctx.outbox_notify.clone());
        if self.ctx.settings.raw.encryption.enabled {
            let device = self.ctx.crypto.clone();
            tasks.spawn(outbox::run_with_device(store, client, notify, shutdown.clone(), device));
        } else {
            tasks.spawn(outbox::run(store, client, notify, shutdown.clone()));
        }
    }
}

/// Makes the bot's device (`[encryption]`), retrying while the homeserver cannot be
/// reached or refuses, until shutdown; device updates wait for it.
async fn start_device(ctx: Arc<Context>, shutdown: CancellationToken) {
    let mut backoff = crate::matrix::backoff::Backoff::new(RetryPolicy::FOREVER);
    loop {
        match crate::crypto::Crypto::start(&ctx.settings).await {
            Ok(crypto) => {
                let _ = ctx.crypto.set(crypto);
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot make the bot's device yet; retrying");
                if backoff.pause_or_cancelled(&shutdown).await {
                    return;
                }
            }
        }
    }
}

/// How often the boards' live logs are trimmed to `[live]`'s retention.
const TRIM_EVERY: Duration = Duration::from_secs(60);

/// Trims every board's live log to `[live] retention_days` and `max_events_per_board`,
/// at start and every [`TRIM_EVERY`], until shutdown.
async fn trim_live_logs(ctx: Arc<Context>, shutdown: CancellationToken) {
    let live = ctx.settings.raw.live.clone();
    let max_age_ms = live.retention_days.saturating_mul(86_400_000);
    loop {
        let oldest = crate::domain::now_ms().saturating_sub(max_age_ms);
        match ctx.store.boards() {
            Ok(boards) => {
                for b in boards {
                    match ctx.store.live_trim(&b.slug, oldest, live.max_events_per_board) {
                        Ok(0) => {}
                        Ok(n) => tracing::debug!(board = %b.slug, dropped = n, "live log trimmed"),
                        Err(e) => {
                            tracing::warn!(board = %b.slug, error = %e, "cannot trim a live log")
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot list boards to trim their live logs"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(TRIM_EVERY) => {}
        }
    }
}

impl crate::metrics::Source for Store {
    fn outbox_counts(&self) -> (u64, u64, u64) {
        let c = Store::outbox_counts(self);
        (c.waiting, c.sent, c.dead)
    }
    fn inbox_entries(&self) -> u64 {
        self.inbox_entry_count()
    }
    fn oldest_pending_age_ms(&self) -> Result<Option<u64>> {
        Store::oldest_pending_age_ms(self)
    }
    fn size_bytes(&self) -> Result<u64> {
        Store::size_bytes(self)
    }
}

/// How often the database is looked at for [`release_memory_when_idle`].
const IDLE_CHECK_EVERY: Duration = Duration::from_secs(10);

/// Write buffers smaller than this are left alone when idle.
const IDLE_FLUSH_MIN_BYTES: u64 = 1 << 20;

/// Gives memory back while nothing is written: when no write came in for `every` (one
/// check to the next) and the write buffers hold more than a mebibyte, they are flushed to
/// table files (the data stays, read from the files), and their memory is given back. A
/// server that is busy now and then does not keep its write buffers' peak in between
/// (docs/PERFORMANCE.md, "Memory").
pub async fn release_memory_when_idle(store: Store, every: Duration, shutdown: CancellationToken) {
    let mut seen = None;
    let mut released_at = None;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        let Ok(now) = store.last_sequence() else { continue };
        let idle = seen == Some(now) && released_at != Some(now);
        seen = Some(now);
        if !idle || store.memtable_bytes().unwrap_or(0) < IDLE_FLUSH_MIN_BYTES {
            continue;
        }
        let flushing = store.clone();
        let flushed = tokio::task::spawn_blocking(move || {
            let before = flushing.memtable_bytes().unwrap_or(0);
            flushing.flush_write_buffers()?;
            Ok::<_, Error>(before)
        })
        .await;
        match flushed {
            Ok(Ok(bytes)) => {
                released_at = Some(now);
                tracing::debug!(write_buffer_bytes = bytes, "idle: write buffers flushed");
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "idle: cannot flush the write buffers"),
            Err(e) => tracing::warn!(error = %e, "idle: the flush did not finish"),
        }
    }
}

/// Matrix-style 404 for unknown paths, `X-Content-Type-Options: nosniff` on every
/// response, each request counted by route and status (`metrics`), and a span per request.
fn finish(router: Router, metrics: &Arc<crate::metrics::Metrics>) -> Router {
    let router = router.fallback(|| async { Error::Unrecognized });
    crate::metrics::layer(router, metrics.clone())
        .layer(axum::middleware::map_response(nosniff))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            // The path only: a query string may carry a token.
            tracing::info_span!("http", method = %req.method(), path = %req.uri().path())
        }))
}

/// Tells browsers to take a response for the `Content-Type` it declares (JSON, SSE) and
/// never sniff it as HTML, whatever strings people stored in it.
async fn nosniff(mut response: axum::response::Response) -> axum::response::Response {
    response
        .headers_mut()
        .insert(http::header::X_CONTENT_TYPE_OPTIONS, http::HeaderValue::from_static("nosniff"));
    response
}

/// Where Boardroom listens.
#[derive(Debug)]
pub struct Listeners {
    /// `appservice.listen`: the appservice API, and the HTTP API when `api` is `None`.
    pub appservice: TcpListener,
    /// `api.listen`: the HTTP API alone.
    pub api: Option<TcpListener>,
    /// `metrics.listen`: `GET /metrics` alone.
    pub metrics: Option<TcpListener>,
}

impl Listeners {
    /// Binds `appservice.listen`, and `api.listen` when it is set, each with an accept
    /// queue of [`LISTEN_BACKLOG`].
    pub async fn bind(settings: &Settings) -> Result<Self> {
        let bind = |addr: std::net::SocketAddr, key: &'static str| {
            listen(addr).map_err(|e| Error::Config {
                key: key.into(),
                problem: format!("cannot listen on {addr}: {e}"),
            })
        };
        let appservice = bind(settings.listen, "appservice.listen")?;
        let api = match settings.api_listen {
            Some(addr) => Some(bind(addr, "api.listen")?),
            None => None,
        };
        let metrics = match settings.metrics_listen {
            Some(addr) => Some(bind(addr, "metrics.listen")?),
            None => None,
        };
        Ok(Self { appservice, api, metrics })
    }
}

/// Connections the kernel queues for a listener before Boardroom accepts them (the
/// kernel caps it at `net.core.somaxconn`). std's default, 128, made the kernel drop
/// connections when a thousand live streams reconnected at once after a restart, and
/// their clients waited a second for the retry (docs/PERFORMANCE.md, "The accept queue").
pub const LISTEN_BACKLOG: u32 = 4096;

/// A listener on `addr` with an accept queue of [`LISTEN_BACKLOG`].
pub fn listen(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    // As std does on Unix: a restarted Boardroom binds again while old connections linger.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// The runtime `boardroom serve` runs on: `runtime.worker_threads` async workers, or one per
/// CPU core when it is 0 (tokio's default, which also reads `TOKIO_WORKER_THREADS`). On a
/// machine shared with the homeserver fewer workers cost less CPU per event and answer a
/// little later (docs/configuration.md, "Worker threads").
pub fn runtime(config: &crate::config::RuntimeConfig) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if config.worker_threads > 0 {
        builder.worker_threads(usize::try_from(config.worker_threads).unwrap_or(usize::MAX));
    }
    builder.build()
}

/// Serves on `listener` until `shutdown` is cancelled, then stops every task.
pub async fn serve(
    settings: Settings,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<()> {
    serve_app(App::new(settings)?, listener, shutdown).await
}

/// [`serve`] with an [`App`] already built (tests keep a clone to look inside): both APIs
/// on `listener`.
pub async fn serve_app(app: App, listener: TcpListener, shutdown: CancellationToken) -> Result<()> {
    serve_app_on(app, Listeners { appservice: listener, api: None, metrics: None }, shutdown).await
}

/// [`serve_app`] on [`Listeners`]: with an API listener, the HTTP API is served there and
/// not on the appservice listener, each with its own connection cap.
pub async fn serve_app_on(
    app: App,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> Result<()> {
    let mut tasks = JoinSet::new();
    app.spawn_processing(&mut tasks, &shutdown);
    let startup_settings = app.ctx.settings.clone();
    let startup_client = app.client.clone();
    let startup_shutdown = shutdown.clone();
    tasks.spawn(
        async move { startup::run(&startup_settings, startup_client, startup_shutdown).await },
    );
    let (settings, store, client) =
        (app.ctx.settings.clone(), app.ctx.store.clone(), app.client.clone());
    let recovery_shutdown = shutdown.clone();
    tasks.spawn(async move {
        startup::ping_after_recovery(&settings, store, client, recovery_shutdown).await;
    });
    tasks.spawn(appservice::catch_up::probe(
        app.client.clone(),
        app.restarts.clone(),
        app.ctx.metrics.clone(),
        shutdown.clone(),
    ));
    tasks.spawn(appservice::catch_up::run(
        app.ctx.clone(),
        app.client.clone(),
        app.restarts.clone(),
        shutdown.clone(),
    ));

    // Streams end when Boardroom stops (their clients resume by id after the restart),
    // so that the listeners' graceful shutdown does not wait for them.
    let (streams, stopping) = (app.ctx.streams.clone(), shutdown.clone());
    tokio::spawn(async move {
        stopping.cancelled().await;
        streams.stopping.cancel();
    });
    tasks.spawn(trim_live_logs(app.ctx.clone(), shutdown.clone()));
    tasks.spawn(release_memory_when_idle(
        app.ctx.store.clone(),
        IDLE_CHECK_EVERY,
        shutdown.clone(),
    ));
    if app.ctx.settings.raw.encryption.enabled {
        tasks.spawn(start_device(app.ctx.clone(), shutdown.clone()));
    }

    let limits = Limits::from_config(&app.ctx.settings.raw.http);
    if let Some(listener) = listeners.metrics {
        tracing::info!(listen = %listener.local_addr()?, "metrics served at /metrics");
        let router = crate::metrics::router(app.ctx.metrics.clone());
        tasks.spawn(listener::serve("metrics", listener, router, limits, shutdown.clone()));
    }
    let api_listen = match &listeners.api {
        Some(l) => Some(l.local_addr()?),
        None => None,
    };
    tracing::info!(
        listen = %listeners.appservice.local_addr()?,
        api_listen = api_listen.map(|a| a.to_string()),
        max_connections = limits.max_connections,
        homeserver = app.client.base_url(),
        bot = %app.ctx.settings.bot_user_id,
        "Boardroom serving"
    );
    match listeners.api {
        None => {
            listener::serve(
                "appservice",
                listeners.appservice,
                app.router(),
                limits,
                shutdown.clone(),
            )
            .await
        }
        Some(api) => {
            tokio::join!(
                listener::serve(
                    "appservice",
                    listeners.appservice,
                    app.appservice_router(),
                    limits,
                    shutdown.clone()
                ),
                listener::serve("api", api, app.api_router(), limits, shutdown.clone()),
            );
        }
    }
    shutdown.cancel();
    let drained = tokio::time::timeout(Duration::from_secs(10), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("some tasks did not stop within 10 s");
    }
    tracing::info!("Boardroom stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use axum::{body::Body, routing::get};
    use tower::ServiceExt;

    use super::*;

    /// `runtime.worker_threads` is how many async workers `serve` gets; 0 leaves it to
    /// tokio (one per core, or `TOKIO_WORKER_THREADS`), never none.
    #[test]
    fn the_runtime_has_the_workers_the_config_asks_for() {
        for asked in [1u64, 3] {
            let rt =
                runtime(&crate::config::RuntimeConfig { worker_threads: asked }).expect("runtime");
            assert_eq!(rt.metrics().num_workers() as u64, asked);
            // It runs what it is given, timers and sockets included.
            let echoed = rt.block_on(async {
                tokio::time::sleep(Duration::from_millis(1)).await;
                tokio::net::TcpListener::bind("127.0.0.1:0").await.is_ok()
            });
            assert!(echoed, "timers and sockets work on it");
        }
        let rt = runtime(&crate::config::RuntimeConfig::default()).expect("runtime");
        let default = tokio::runtime::Runtime::new().expect("tokio's default");
        assert_eq!(rt.metrics().num_workers(), default.metrics().num_workers());
        assert!(rt.metrics().num_workers() >= 1);
    }

    /// A database that stops being written gives its write buffers back (flushed to table
    /// files, what they held still read back); one written all along keeps them.
    #[tokio::test]
    async fn an_idle_database_flushes_its_write_buffers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let entry = |i: usize| format!("{{\"n\":{i},\"pad\":\"{}\"}}", "x".repeat(4000));
        let entries: Vec<Vec<u8>> = (0..600).map(|i| entry(i).into_bytes()).collect();
        store.enqueue_outbound(&entries).expect("enqueue");
        let held = store.memtable_bytes().expect("bytes");
        assert!(held > IDLE_FLUSH_MIN_BYTES, "{held}");

        let shutdown = CancellationToken::new();
        let every = Duration::from_millis(100);
        let idle = tokio::spawn(release_memory_when_idle(store.clone(), every, shutdown.clone()));
        // Written every 20 ms: never idle for a whole check, nothing flushed.
        for i in 0..30 {
            store.enqueue_outbound(&[entry(1000 + i).into_bytes()]).expect("enqueue");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(store.memtable_bytes().expect("bytes") >= held, "flushed while written");
        // Then quiet: within a few checks the buffers are flushed.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while store.memtable_bytes().expect("bytes") >= IDLE_FLUSH_MIN_BYTES {
            assert!(tokio::time::Instant::now() < deadline, "never flushed");
            tokio::time::sleep(every).await;
        }
        shutdown.cancel();
        idle.await.expect("the task ends");
        let read = store.outbox_from(0, 1000).expect("outbox");
        assert_eq!(read.len(), 630);
        assert_eq!(read[599].1, entry(599).into_bytes());
    }

    #[tokio::test]
    async fn every_response_says_nosniff() {
        let router = finish(
            Router::new().route("/x", get(|| async { axum::Json("<b>x</b>") })),
            &Arc::new(crate::metrics::Metrics::new()),
        );
        for path in ["/x", "/no/such/path"] {
            let req = http::Request::get(path).body(Body::empty()).expect("request");
            let resp = router.clone().oneshot(req).await.expect("response");
            assert_eq!(
                resp.headers().get(http::header::X_CONTENT_TYPE_OPTIONS).map(|v| v.as_bytes()),
                Some(&b"nosniff"[..]),
                "{path}"
            );
            let ct = resp.headers().get(http::header::CONTENT_TYPE).map(|v| v.as_bytes());
            assert_eq!(ct, Some(&b"application/json"[..]), "{path}");
        }
    }
}
