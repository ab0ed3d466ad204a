//! Prometheus metrics, served at `GET /metrics` on `[metrics] listen` (off unless set).
//!
//! Counters and gauges are atomics updated where the work happens; the text is rendered
//! by `prometheus-client` only when scraped. What the store already keeps (the outbox's
//! and the inbox's kept counts, the age of the oldest inbound entry, the database's size)
//! is read into gauges at each scrape ([`Metrics::watch`]), without a scan.
//!
//! Label values come from fixed sets: route templates (never a path with its ids),
//! homeserver endpoint names from ruma's request types, Matrix error codes the spec
//! defines (any other is `other`), outcomes and states named here. No user id, room id,
//! token or other caller-chosen text is ever a label.

use std::{
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicI64, AtomicU64},
    },
    time::{Duration, Instant},
};

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

/// What the store keeps, read into gauges at each scrape. The app gives it
/// ([`Metrics::watch`]), so that this module, which the homeserver client and the store's
/// callers use, does not depend on the store.
pub trait Source: std::fmt::Debug + Send + Sync {
    /// Outbox entries waiting, sent unconfirmed, set aside: counts kept in memory.
    fn outbox_counts(&self) -> (u64, u64, u64);
    /// Inbox entries, every user's: a count kept in memory.
    fn inbox_entries(&self) -> u64;
    /// How long the oldest inbound entry has waited (ms; `None`: none waits). Asks RocksDB.
    fn oldest_pending_age_ms(&self) -> crate::Result<Option<u64>>;
    /// The database's table files and write buffers, in bytes. Asks RocksDB.
    fn size_bytes(&self) -> crate::Result<u64>;
}

/// Seconds buckets for work that takes from tens of microseconds to seconds.
fn latency_buckets() -> impl Iterator<Item = f64> {
    [
        0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
        0.5, 1.0, 2.5, 5.0, 10.0,
    ]
    .into_iter()
}

/// The gauges that ask RocksDB (the oldest inbound entry's age: a seek, which skips the
/// processed entries' tombstones; the database's size: two properties of every map) are
/// read at most this often, however often `/metrics` is scraped (a benchmark polls it
/// every few milliseconds). The kept counts are read at every scrape.
pub const SLOW_GAUGES_EVERY: Duration = Duration::from_secs(1);

/// The route label of a request that matched no route.
pub const UNMATCHED: &str = "unmatched";

/// An HTTP request's labels: its method, its route template, its status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// `GET`, `POST`, … (`other` for a method outside the usual ones).
    pub method: &'static str,
    /// The matched route's template, such as `/_boardroom/api/v1/boards/{slug}/tasks`;
    /// [`UNMATCHED`] for none.
    pub route: String,
    /// The status answered.
    pub status: u16,
}

/// An HTTP request's latency labels: its method and route template.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpRouteLabels {
    /// See [`HttpLabels::method`].
    pub method: &'static str,
    /// See [`HttpLabels::route`].
    pub route: String,
}

/// A homeserver endpoint, named after ruma's request type (`send_message_event`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    /// The endpoint's name.
    pub endpoint: &'static str,
}

/// A failed homeserver request: its endpoint and what failed.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointErrorLabels {
    /// The endpoint's name.
    pub endpoint: &'static str,
    /// The Matrix error code answered (`M_FORBIDDEN`; `other` for one outside the spec,
    /// `none` for an error answer without a code), or `network`, `timeout`, `protocol`.
    pub kind: &'static str,
}

/// An outcome, a state or a reason, from a fixed set.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// The outcome.
    pub outcome: &'static str,
}

/// The state of outbox entries.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    /// `waiting`, `sent` or `dead`.
    pub state: &'static str,
}

/// Why an outbox entry was set aside.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// `refused`, `gave_up` or `undecodable`.
    pub reason: &'static str,
}

/// A histogram family, each histogram with the latency buckets (50 µs to 10 s).
pub type HistogramFamily<S> = Family<S, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(latency_buckets())
}

/// Every metric Boardroom keeps.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// The store whose kept counts are read at each scrape ([`Metrics::watch`]).
    store: OnceLock<Box<dyn Source>>,
    /// When the gauges that ask RocksDB were last read ([`SLOW_GAUGES_EVERY`]).
    slow_read: Mutex<Option<Instant>>,
    /// Transactions the homeserver pushed (answered or not).
    pub transactions: Counter,
    /// Timeline events and receipts stored for processing.
    pub events_accepted: Counter,
    /// Timeline events seen before, skipped.
    pub events_duplicate: Counter,
    /// Events left unstored because they call for nothing: messages in a room that is no
    /// board's that cannot be a command, other users' memberships outside boards.
    pub events_ignored: Counter,
    /// Transactions that were byte-for-byte replays of one stored before.
    pub transactions_replayed: Counter,
    /// Seconds from a transaction's request to its durable write.
    pub ingest_seconds: Histogram,
    /// Entries stored and not yet processed: set by `context::Backlog` alone, which owns
    /// the count.
    pub(crate) inbound_depth: Gauge<i64, AtomicI64>,
    /// Seconds a stored transaction's answer was held while processing caught up
    /// (`[appservice] max_backlog`).
    pub transaction_hold_seconds: Histogram,
    /// Entries processed.
    pub events_processed: Counter,
    /// Seconds an entry took to process, from its handler's start to its completing write.
    pub processing_seconds: Histogram,
    /// When the homeserver last answered Boardroom's probe (seconds since the epoch; 0:
    /// not yet).
    pub homeserver_last_answer: Gauge<u64, AtomicU64>,
    /// Seconds the oldest inbound entry waiting has waited (0: none), read at scrape.
    pub inbound_oldest_age: Gauge<f64, AtomicU64>,
    /// Outbox entries by state, read at scrape.
    pub outbox_entries: Family<StateLabels, Gauge>,
    /// Outbox entries the homeserver accepted.
    pub outbox_sent: Counter,
    /// Outbox attempts that failed and are tried again.
    pub outbox_retries: Counter,
    /// Outbox entries set aside, by reason.
    pub outbox_dead_letters: Family<ReasonLabels, Counter>,
    /// Requests to the homeserver by endpoint: their latency (and count).
    pub homeserver_request_seconds: HistogramFamily<EndpointLabels>,
    /// Failed requests to the homeserver by endpoint and kind of failure.
    pub homeserver_request_errors: Family<EndpointErrorLabels, Counter>,
    /// HTTP requests answered, by method, route and status.
    pub http_requests: Family<HttpLabels, Counter>,
    /// Seconds to answer an HTTP request (to its response's head), by method and route.
    pub http_request_seconds: HistogramFamily<HttpRouteLabels>,
    /// Live streams open now.
    pub live_subscribers: Gauge,
    /// Live streams ended because their subscriber fell too far behind.
    pub live_dropped_slow: Counter,
    /// Webhook deliveries by outcome.
    pub webhook_deliveries: Family<OutcomeLabels, Counter>,
    /// Entries in every notification inbox, read at scrape.
    pub inbox_entries: Gauge,
    /// The database's size in bytes (table files and write buffers), read at scrape.
    pub store_size: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// All metrics at zero, registered under the `boardroom_` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("boardroom");
        let transactions = Counter::default();
        registry.register(
            "appservice_transactions",
            "Transactions the homeserver pushed",
            transactions.clone(),
        );
        let transactions_replayed = Counter::default();
        registry.register(
            "appservice_transactions_replayed",
            "Transactions that repeated one already stored, byte for byte",
            transactions_replayed.clone(),
        );
        let events_accepted = Counter::default();
        registry.register(
            "appservice_events_accepted",
            "Events and receipts stored for processing",
            events_accepted.clone(),
        );
        let events_duplicate = Counter::default();
        registry.register(
            "appservice_events_duplicate",
            "Timeline events seen before, skipped",
            events_duplicate.clone(),
        );
        let events_ignored = Counter::default();
        registry.register(
            "appservice_events_ignored",
            "Events not stored because they call for nothing (messages outside boards that cannot be commands, other users' memberships outside boards)",
            events_ignored.clone(),
        );
        let ingest_seconds = Histogram::new(latency_buckets());
        registry.register(
            "appservice_ingest_seconds",
            "From a transaction's arrival to its durable write",
            ingest_seconds.clone(),
        );
        let inbound_depth = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "inbound_queue_depth",
            "Entries stored and not yet processed",
            inbound_depth.clone(),
        );
        let transaction_hold_seconds = Histogram::new(latency_buckets());
        registry.register(
            "appservice_transaction_hold_seconds",
            "How long a stored transaction's answer was held while processing caught up (only held ones)",
            transaction_hold_seconds.clone(),
        );
        let events_processed = Counter::default();
        registry.register(
            "inbound_entries_processed",
            "Inbound entries processed",
            events_processed.clone(),
        );
        let processing_seconds = Histogram::new(latency_buckets());
        registry.register(
            "inbound_processing_seconds",
            "From an entry's handler starting to its completing write",
            processing_seconds.clone(),
        );
        let homeserver_last_answer = Gauge::<u64, AtomicU64>::default();
        registry.register(
            "homeserver_last_answer_timestamp_seconds",
            "When the homeserver last answered (seconds since the epoch, 0: not yet)",
            homeserver_last_answer.clone(),
        );
        let inbound_oldest_age = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "inbound_queue_oldest_age_seconds",
            "How long the oldest entry waiting has waited (0: none waits)",
            inbound_oldest_age.clone(),
        );
        let outbox_entries = Family::<StateLabels, Gauge>::default();
        registry.register(
            "outbox_entries",
            "Outbox entries by state: waiting to be sent, sent and not yet confirmed, dead (set aside)",
            outbox_entries.clone(),
        );
        let outbox_sent = Counter::default();
        registry.register(
            "outbox_sent",
            "Outbox entries the homeserver accepted",
            outbox_sent.clone(),
        );
        let outbox_retries = Counter::default();
        registry.register(
            "outbox_retries",
            "Outbox attempts that failed and will be tried again",
            outbox_retries.clone(),
        );
        let outbox_dead_letters = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "outbox_dead_letters",
            "Outbox entries set aside: refused for good, given up after repeated failures, undecodable",
            outbox_dead_letters.clone(),
        );
        let homeserver_request_seconds: HistogramFamily<EndpointLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "homeserver_request_seconds",
            "Requests to the homeserver by endpoint, from sending to the answer read (each attempt)",
            homeserver_request_seconds.clone(),
        );
        let homeserver_request_errors = Family::<EndpointErrorLabels, Counter>::default();
        registry.register(
            "homeserver_request_errors",
            "Failed requests to the homeserver by endpoint and kind (Matrix error code, network, timeout, protocol)",
            homeserver_request_errors.clone(),
        );
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by method, route template and status",
            http_requests.clone(),
        );
        let http_request_seconds: HistogramFamily<HttpRouteLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "http_request_seconds",
            "From an HTTP request's arrival to its response's head, by method and route template",
            http_request_seconds.clone(),
        );
        let live_subscribers = Gauge::default();
        registry.register("live_subscribers", "Live streams open", live_subscribers.clone());
        let live_dropped_slow = Counter::default();
        registry.register(
            "live_slow_subscribers_dropped",
            "Live streams ended because their subscriber fell too far behind",
            live_dropped_slow.clone(),
        );
        let webhook_deliveries = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "webhook_deliveries",
            "Webhook deliveries by outcome",
            webhook_deliveries.clone(),
        );
        let inbox_entries = Gauge::default();
        registry.register(
            "inbox_entries",
            "Notification inbox entries, every user's",
            inbox_entries.clone(),
        );
        let store_size = Gauge::default();
        registry.register(
            "store_size_bytes",
            "The database's table files and write buffers (not its write-ahead log)",
            store_size.clone(),
        );
        Self {
            registry,
            store: OnceLock::new(),
            slow_read: Mutex::new(None),
            transactions,
            events_accepted,
            events_duplicate,
            events_ignored,
            transactions_replayed,
            ingest_seconds,
            inbound_depth,
            transaction_hold_seconds,
            events_processed,
            processing_seconds,
            homeserver_last_answer,
            inbound_oldest_age,
            outbox_entries,
            outbox_sent,
            outbox_retries,
            outbox_dead_letters,
            homeserver_request_seconds,
            homeserver_request_errors,
            http_requests,
            http_request_seconds,
            live_subscribers,
            live_dropped_slow,
            webhook_deliveries,
            inbox_entries,
            store_size,
        }
    }

    /// Reads `store`'s kept counts into the gauges at each scrape (the first store given
    /// is kept).
    pub fn watch(&self, store: impl Source + 'static) {
        let _ = self.store.set(Box::new(store));
    }

    /// Counts an HTTP request answered `status` after `elapsed`.
    pub fn http_request(&self, method: &http::Method, route: &str, status: u16, elapsed: Duration) {
        let labels = HttpRouteLabels { method: method_label(method), route: route.to_owned() };
        self.http_request_seconds.get_or_create(&labels).observe(elapsed.as_secs_f64());
        let HttpRouteLabels { method, route } = labels;
        self.http_requests.get_or_create(&HttpLabels { method, route, status }).inc();
    }

    /// Counts a request to the homeserver's `endpoint` that took `elapsed` and failed with
    /// `error` (a kind of [`EndpointErrorLabels::kind`]) if it did.
    pub fn homeserver_request(
        &self,
        endpoint: &'static str,
        elapsed: Duration,
        error: Option<&'static str>,
    ) {
        self.homeserver_request_seconds
            .get_or_create(&EndpointLabels { endpoint })
            .observe(elapsed.as_secs_f64());
        if let Some(kind) = error {
            self.homeserver_request_errors
                .get_or_create(&EndpointErrorLabels { endpoint, kind })
                .inc();
        }
    }

    /// Counts an outbox entry set aside for `reason`.
    pub fn dead_letter(&self, reason: &'static str) {
        self.outbox_dead_letters.get_or_create(&ReasonLabels { reason }).inc();
    }

    /// Counts a webhook delivery with `outcome`.
    pub fn webhook_delivery(&self, outcome: &'static str) {
        self.webhook_deliveries.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    /// Reads the watched store's kept counts into their gauges, and those that ask
    /// RocksDB when they were last read [`SLOW_GAUGES_EVERY`] ago or more.
    fn refresh(&self) {
        let Some(store) = self.store.get() else { return };
        let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let (waiting, sent, dead) = store.outbox_counts();
        for (state, n) in [("waiting", waiting), ("sent", sent), ("dead", dead)] {
            self.outbox_entries.get_or_create(&StateLabels { state }).set(gauge(n));
        }
        self.inbox_entries.set(gauge(store.inbox_entries()));
        {
            let mut last = self.slow_read.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            if last.is_some_and(|at| now.duration_since(at) < SLOW_GAUGES_EVERY) {
                return;
            }
            *last = Some(now);
        }
        match store.oldest_pending_age_ms() {
            Ok(age) => {
                self.inbound_oldest_age.set(age.map_or(0.0, |ms| ms as f64 / 1000.0));
            }
            Err(e) => tracing::debug!(error = %e, "cannot read the oldest inbound entry's age"),
        }
        match store.size_bytes() {
            Ok(size) => {
                self.store_size.set(gauge(size));
            }
            Err(e) => tracing::debug!(error = %e, "cannot read the database's size"),
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        self.refresh();
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// The label of an HTTP method: the usual ones by name, any other `other`.
fn method_label(method: &http::Method) -> &'static str {
    use http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Counts every request `router` answers under its route template
/// ([`axum::extract::MatchedPath`], [`UNMATCHED`] for none) and status: a layer over
/// a whole router, fallback included, so that refusals (401, 403, 429) and unknown paths
/// count too. A streamed answer counts when its head goes out.
pub fn layer(router: axum::Router, metrics: Arc<Metrics>) -> axum::Router {
    router.layer(axum::middleware::from_fn(
        move |req: axum::extract::Request, next: axum::middleware::Next| {
            let metrics = metrics.clone();
            async move {
                let started = std::time::Instant::now();
                let method = req.method().clone();
                // A clone of the template's `Arc`, not of its text.
                let route = req.extensions().get::<axum::extract::MatchedPath>().cloned();
                let response = next.run(req).await;
                let route = route.as_ref().map_or(UNMATCHED, |p| p.as_str());
                metrics.http_request(&method, route, response.status().as_u16(), started.elapsed());
                response
            }
        },
    ))
}

/// The router of the metrics listener: `GET /metrics`, nothing else.
pub fn router(metrics: Arc<Metrics>) -> axum::Router {
    axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let metrics = metrics.clone();
            async move {
                (
                    [(
                        http::header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    metrics.render(),
                )
            }
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_show_in_the_text_format() {
        let m = Metrics::new();
        m.transactions.inc();
        m.events_accepted.inc_by(100);
        m.inbound_depth.set(42);
        m.ingest_seconds.observe(0.0004);
        let text = m.render();
        assert!(text.contains("boardroom_appservice_transactions_total 1"), "{text}");
        assert!(text.contains("boardroom_appservice_events_accepted_total 100"), "{text}");
        assert!(text.contains("boardroom_inbound_queue_depth 42"), "{text}");
        assert!(text.contains("boardroom_appservice_ingest_seconds_count 1"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    /// Requests are counted under their route's template, never their path; a path no
    /// route matches under `unmatched`.
    #[tokio::test]
    async fn requests_count_under_their_route_template_and_status() {
        use axum::{body::Body, routing::get};
        use tower::ServiceExt;

        let m = Arc::new(Metrics::new());
        let router = axum::Router::new()
            .route("/boards/{slug}", get(|| async { "ok" }))
            .route("/refused", get(|| async { http::StatusCode::UNAUTHORIZED }))
            .fallback(|| async { http::StatusCode::NOT_FOUND });
        let router = layer(router, m.clone());
        for path in ["/boards/launch", "/boards/@alice:x", "/refused", "/boards/a/b", "/secret"] {
            let req = http::Request::get(path).body(Body::empty()).expect("request");
            router.clone().oneshot(req).await.expect("response");
        }
        let text = m.render();
        let line =
            |labels: &str, v: u64| format!("boardroom_http_requests_total{{{labels}}} {v}\n");
        for want in [
            line(r#"method="GET",route="/boards/{slug}",status="200""#, 2),
            line(r#"method="GET",route="/refused",status="401""#, 1),
            line(r#"method="GET",route="unmatched",status="404""#, 2),
        ] {
            assert!(text.contains(&want), "{want} in\n{text}");
        }
        assert!(
            text.contains(
                "boardroom_http_request_seconds_count{method=\"GET\",route=\"/boards/{slug}\"} 2"
            ),
            "{text}"
        );
        assert!(!text.contains("alice") && !text.contains("secret"), "{text}");
    }

    /// What the store keeps is read at each scrape.
    #[test]
    fn store_gauges_are_read_at_scrape() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = crate::store::Store::open(dir.path()).expect("open");
        let m = Metrics::new();
        m.watch(store.clone());
        let text = m.render();
        assert!(text.contains("boardroom_outbox_entries{state=\"waiting\"} 0\n"), "{text}");
        assert!(text.contains("boardroom_inbox_entries 0\n"), "{text}");
        assert!(text.contains("boardroom_inbound_queue_oldest_age_seconds 0.0\n"), "{text}");
        store.enqueue_outbound(&[b"a".to_vec(), b"b".to_vec()]).expect("enqueue");
        store.outbox_mark_sent(1, 7).expect("mark");
        store.outbox_dead(2, b"b", "M_FORBIDDEN").expect("dead");
        let text = m.render();
        for (state, n) in [("waiting", 0), ("sent", 1), ("dead", 1)] {
            let want = format!("boardroom_outbox_entries{{state=\"{state}\"}} {n}\n");
            assert!(text.contains(&want), "{want} in\n{text}");
        }
        let size = text
            .lines()
            .find_map(|l| l.strip_prefix("boardroom_store_size_bytes "))
            .and_then(|v| v.parse::<u64>().ok())
            .expect("size");
        assert!(size > 0, "{text}");
    }
}
