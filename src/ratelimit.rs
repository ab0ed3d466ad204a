//! Request rates per caller: a token bucket for each key (an API client, a Matrix user, a
//! webhook source). A bucket holds up to `burst` requests and refills at `per_second`; a
//! request that finds it empty is refused with how long until the next one would pass.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

/// Buckets kept at most; past it, full ones (callers quiet long enough) are dropped.
const MAX_KEYS: usize = 10_000;

/// One bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets by key.
#[derive(Debug)]
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    /// `per_second` requests a second with bursts of `burst`; `per_second == 0`: no limit.
    pub fn new(per_second: u64, burst: u64) -> Self {
        Self {
            per_second: per_second as f64,
            burst: burst.max(1) as f64,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from `key`'s bucket: `Ok`, or `Err(wait)` until one would pass.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        self.check_at(key, Instant::now())
    }

    fn check_at(&self, key: &str, now: Instant) -> Result<(), Duration> {
        if self.per_second <= 0.0 {
            return Ok(());
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_KEYS && !buckets.contains_key(key) {
            let (rate, burst) = (self.per_second, self.burst);
            buckets.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate < burst);
        }
        let bucket =
            buckets.entry(key.to_owned()).or_insert(Bucket { tokens: self.burst, at: now });
        let refill = now.saturating_duration_since(bucket.at).as_secs_f64() * self.per_second;
        bucket.tokens = (bucket.tokens + refill).min(self.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        let wait = (1.0 - bucket.tokens) / self.per_second;
        Err(Duration::from_secs_f64(wait).max(Duration::from_millis(1)))
    }
}

/// The rates Boardroom holds its callers to.
#[derive(Debug)]
pub struct Limits {
    /// Per API caller: a client token, or a Matrix user (`[api] requests_per_second`).
    pub api: RateLimiter,
    /// Per webhook source (`[webhooks] deliveries_per_second`).
    pub webhooks: RateLimiter,
}

impl Limits {
    /// The rates of `config`.
    pub fn from_config(config: &crate::config::Config) -> Self {
        Self {
            api: RateLimiter::new(config.api.requests_per_second, config.api.request_burst),
            webhooks: RateLimiter::new(
                config.webhooks.deliveries_per_second,
                config.webhooks.delivery_burst,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_the_rate_and_keys_are_apart() {
        let l = RateLimiter::new(2, 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(l.check_at("a", t0), Ok(()));
        }
        let wait = l.check_at("a", t0).expect_err("the burst is spent");
        assert!(
            wait > Duration::from_millis(400) && wait <= Duration::from_millis(500),
            "{wait:?}"
        );
        assert_eq!(l.check_at("b", t0), Ok(()), "another key has its own bucket");
        assert_eq!(l.check_at("a", t0 + Duration::from_millis(500)), Ok(()), "refilled one");
        assert!(l.check_at("a", t0 + Duration::from_millis(500)).is_err());
        // Quiet for long: back to a full burst, never more.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(l.check_at("a", later), Ok(()));
        }
        assert!(l.check_at("a", later).is_err());
    }

    #[test]
    fn zero_per_second_is_no_limit() {
        let l = RateLimiter::new(0, 1);
        let t0 = Instant::now();
        assert!((0..1000).all(|_| l.check_at("a", t0).is_ok()));
    }

    #[test]
    fn the_map_stays_bounded_by_dropping_full_buckets() {
        let l = RateLimiter::new(1000, 1);
        let t0 = Instant::now();
        for i in 0..MAX_KEYS {
            assert!(l.check_at(&i.to_string(), t0).is_ok());
        }
        let later = t0 + Duration::from_secs(1);
        assert!(l.check_at("new", later).is_ok());
        assert!(l.buckets.lock().expect("lock").len() <= 2);
    }
}
