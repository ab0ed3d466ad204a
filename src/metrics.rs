//! Prometheus metrics, served at `GET /metrics` on `[metrics] listen` (off unless set).
//!
//! Counters and gauges are atomics updated where the work happens; the text is rendered
//! by `prometheus-client` only when scraped.

use std::sync::{
    Arc,
    atomic::{AtomicI64, AtomicU64},
};

use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

/// Seconds buckets for work that takes from tens of microseconds to seconds.
fn latency_buckets() -> impl Iterator<Item = f64> {
    [
        0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
        0.5, 1.0, 2.5, 5.0, 10.0,
    ]
    .into_iter()
}

/// Every metric Boardroom keeps.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Transactions the homeserver pushed (answered or not).
    pub transactions: Counter,
    /// Timeline events and receipts stored for processing.
    pub events_accepted: Counter,
    /// Timeline events seen before, skipped.
    pub events_duplicate: Counter,
    /// Transactions that were byte-for-byte replays of one stored before.
    pub transactions_replayed: Counter,
    /// Seconds from a transaction's request to its durable write.
    pub ingest_seconds: Histogram,
    /// Entries stored and not yet processed.
    pub inbound_depth: Gauge<i64, AtomicI64>,
    /// Entries processed.
    pub events_processed: Counter,
    /// Seconds an entry took to process, from its handler's start to its completing write.
    pub processing_seconds: Histogram,
    /// When the homeserver last answered Boardroom's probe (seconds since the epoch; 0:
    /// not yet).
    pub homeserver_last_answer: Gauge<u64, AtomicU64>,
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
        Self {
            registry,
            transactions,
            events_accepted,
            events_duplicate,
            transactions_replayed,
            ingest_seconds,
            inbound_depth,
            events_processed,
            processing_seconds,
            homeserver_last_answer,
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
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
}
