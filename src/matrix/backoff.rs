//! The one retry mechanism: a [`RetryPolicy`] says how long to wait and when to give up,
//! a [`Backoff`] follows it attempt after attempt. The homeserver client, the outbox
//! worker, start-up, and the waits for a store that cannot write (its disk is full) all
//! retry through it.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// How often and how long to retry transient failures.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; `None` retries until it succeeds.
    pub max_attempts: Option<u32>,
    /// The first delay; it doubles each time.
    pub base_delay: Duration,
    /// The longest delay.
    pub max_delay: Duration,
    /// Server errors (5xx) in a row after which the failure is returned, whatever
    /// `max_attempts` says: a 5xx can be this one request's fault, unlike a connection
    /// failure or a 429. `None` retries them like any transient failure.
    pub max_server_errors: Option<u32>,
}

impl RetryPolicy {
    /// No retry at all.
    pub const NONE: Self = Self {
        max_attempts: Some(1),
        base_delay: Duration::ZERO,
        max_delay: Duration::ZERO,
        max_server_errors: None,
    };
    /// For request paths: a few quick retries.
    pub const SHORT: Self = Self {
        max_attempts: Some(4),
        base_delay: Duration::from_millis(200),
        max_delay: Duration::from_secs(2),
        max_server_errors: None,
    };
    /// For work that must eventually succeed (start-up): every transient failure is
    /// retried for as long as it lasts.
    pub const FOREVER: Self = Self {
        max_attempts: None,
        base_delay: Duration::from_millis(250),
        max_delay: Duration::from_secs(30),
        max_server_errors: None,
    };
    /// For processing and the outbox: like [`FOREVER`](Self::FOREVER), but 12 server
    /// errors in a row (about 2.5 minutes of backoff) end it, so that one request the
    /// homeserver keeps failing cannot hold back its room for good.
    pub const BACKGROUND: Self = Self { max_server_errors: Some(12), ..Self::FOREVER };
    /// For a write the database refuses while its disk is full: 100 ms doubling to 10 s,
    /// until it lands or shutdown.
    pub const STORE_WRITE: Self = Self {
        max_attempts: None,
        base_delay: Duration::from_millis(100),
        max_delay: Duration::from_secs(10),
        max_server_errors: None,
    };

    /// Whether `server_errors` 5xx answers in a row are enough to give up.
    pub fn gives_up_after(&self, server_errors: u32) -> bool {
        self.max_server_errors.is_some_and(|max| server_errors >= max)
    }

    /// The delay before attempt `attempt + 1`, unless the server asked for longer.
    pub fn delay(&self, attempt: u32, server_asked: Option<Duration>) -> Duration {
        let exp = self.base_delay.saturating_mul(1u32 << attempt.min(16));
        let backoff = exp.min(self.max_delay);
        server_asked.map_or(backoff, |s| s.max(backoff).min(Duration::from_secs(300)))
    }
}

/// `delay` shortened by a random quarter at most, never below what the server `asked`:
/// rooms' lanes that failed together (a homeserver outage) do not all retry at the same
/// instant.
fn jittered(delay: Duration, asked: Option<Duration>) -> Duration {
    let r = getrandom::u64().unwrap_or(0) % 1024;
    let cut = delay.mul_f64(r as f64 / 4096.0);
    delay.saturating_sub(cut).max(asked.unwrap_or_default().min(delay))
}

/// Why a [`Backoff`] gave up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GaveUp {
    /// The policy's `max_attempts` were made.
    Attempts(u32),
    /// The policy's `max_server_errors` came in a row.
    ServerErrors(u32),
}

impl std::fmt::Display for GaveUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GaveUp::Attempts(n) => write!(f, "gave up after {n} attempts"),
            GaveUp::ServerErrors(n) => write!(f, "gave up after {n} server errors in a row"),
        }
    }
}

/// One operation's retries under a [`RetryPolicy`]: the attempts made so far and the
/// server errors in a row.
#[derive(Clone, Debug)]
pub struct Backoff {
    policy: RetryPolicy,
    attempts: u32,
    server_errors: u32,
}

impl Backoff {
    /// No failure yet.
    pub fn new(policy: RetryPolicy) -> Self {
        Self { policy, attempts: 0, server_errors: 0 }
    }

    /// Failed attempts so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// After a transient failure (a server error if `server_error`): the delay before
    /// the next attempt, at least what the server `asked` for, or why the policy gives up.
    pub fn next_delay(
        &mut self,
        asked: Option<Duration>,
        server_error: bool,
    ) -> Result<Duration, GaveUp> {
        self.attempts = self.attempts.saturating_add(1);
        self.server_errors = if server_error { self.server_errors.saturating_add(1) } else { 0 };
        if self.policy.gives_up_after(self.server_errors) {
            return Err(GaveUp::ServerErrors(self.server_errors));
        }
        if self.policy.max_attempts.is_some_and(|max| self.attempts >= max) {
            return Err(GaveUp::Attempts(self.attempts));
        }
        Ok(jittered(self.policy.delay(self.attempts - 1, asked), asked))
    }

    /// After a failure that is not the homeserver's (a store that cannot write, a failed
    /// `accept`): the delay before the next attempt. It never gives up.
    pub fn pause(&mut self) -> Duration {
        self.attempts = self.attempts.saturating_add(1);
        jittered(self.policy.delay(self.attempts - 1, None), None)
    }

    /// Waits [`pause`](Self::pause); `true` when `shutdown` came first.
    pub async fn pause_or_cancelled(&mut self, shutdown: &CancellationToken) -> bool {
        sleep_or_cancelled(tokio::time::sleep(self.pause()), shutdown).await
    }

    /// Back to no failure, after a success.
    pub fn reset(&mut self) {
        self.attempts = 0;
        self.server_errors = 0;
    }
}

/// Waits for `wait` (a sleep); `true` when `shutdown` came first.
pub async fn sleep_or_cancelled(
    wait: impl Future<Output = ()>,
    shutdown: &CancellationToken,
) -> bool {
    tokio::select! {
        () = wait => false,
        () = shutdown.cancelled() => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `got` is `full` less at most a quarter (the jitter).
    fn about(got: Duration, full: Duration) -> bool {
        got <= full && got >= full.mul_f64(0.75)
    }

    #[test]
    fn backoff_gives_up_on_attempts_or_server_errors_in_a_row() {
        let mut short = Backoff::new(RetryPolicy::SHORT);
        for (server_error, full) in [(false, 200), (true, 400), (false, 800)] {
            let got = short.next_delay(None, server_error).expect("a delay");
            assert!(about(got, Duration::from_millis(full)), "{got:?} for {full} ms");
        }
        assert_eq!(short.next_delay(None, false), Err(GaveUp::Attempts(4)));

        let mut background = Backoff::new(RetryPolicy::BACKGROUND);
        for _ in 0..11 {
            assert!(background.next_delay(None, true).is_ok());
        }
        // A 429 breaks the run of server errors.
        assert!(background.next_delay(None, false).is_ok());
        for _ in 0..11 {
            assert!(background.next_delay(None, true).is_ok());
        }
        assert_eq!(background.next_delay(None, true), Err(GaveUp::ServerErrors(12)));
        assert_eq!(GaveUp::ServerErrors(12).to_string(), "gave up after 12 server errors in a row");
    }

    #[test]
    fn store_write_pauses_double_to_ten_seconds_and_reset() {
        let mut b = Backoff::new(RetryPolicy::STORE_WRITE);
        for full in [100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000] {
            let got = b.pause();
            assert!(about(got, Duration::from_millis(full)), "{got:?} for {full} ms");
        }
        b.reset();
        assert!(about(b.pause(), Duration::from_millis(100)));
    }

    #[test]
    fn lanes_failing_together_do_not_retry_together_and_the_server_s_wait_holds() {
        let delays: std::collections::BTreeSet<Duration> = (0..64)
            .map(|_| Backoff::new(RetryPolicy::FOREVER).next_delay(None, true).expect("a delay"))
            .collect();
        assert!(delays.len() > 16, "64 lanes, {} distinct delays", delays.len());
        assert!(delays.iter().all(|d| about(*d, Duration::from_millis(250))), "{delays:?}");
        // What the server asks for (Retry-After) is waited in full.
        for _ in 0..64 {
            let asked = Duration::from_secs(3);
            let got = Backoff::new(RetryPolicy::FOREVER).next_delay(Some(asked), false);
            assert_eq!(got, Ok(asked));
        }
    }
}
