//! Per-client message rate limit: a token bucket, told the time by its caller.

use std::time::{Duration, Instant};

/// A token bucket: holds at most `burst` tokens, refilled at `per_second`
/// tokens a second; each message takes one.
///
/// Pure logic: it never reads the clock, the caller passes `now`.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    per_second: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket at `now`. `per_second` must be at least 1; a `burst`
    /// of 0 is taken as 1 (a message must be able to pass at all).
    pub(crate) fn new(per_second: u32, burst: u32, now: Instant) -> TokenBucket {
        let burst = f64::from(burst.max(1));
        TokenBucket {
            per_second: f64::from(per_second.max(1)),
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Takes one token if there is one; `false` means the message is over
    /// the limit. A `now` earlier than a previous call refills nothing.
    pub(crate) fn try_take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last);
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed.as_secs_f64() * self.per_second).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// How long from the last call until one token is available again.
    pub(crate) fn retry_after(&self) -> Duration {
        let missing = (1.0 - self.tokens).max(0.0);
        Duration::from_secs_f64(missing / self.per_second)
    }
}

/// What to do with one client message under the rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Within the limit: handle it.
    Pass,
    /// Over the limit: drop it. With `Some(retry)` (the first refusal
    /// after a message that passed) reply `rate_limited`: one token is
    /// available again after `retry`. With `None` drop it silently, so a
    /// flooder cannot make the server write more replies than its rate.
    Refuse(Option<Duration>),
    /// Over the limit once too often: drop it and disconnect.
    Disconnect,
}

/// One connection's rate limit: a [`TokenBucket`] plus a count of refused
/// messages that disconnects a client which keeps flooding.
#[derive(Debug, Clone)]
pub(crate) struct RateGuard {
    bucket: TokenBucket,
    refused: u32,
    disconnect_after: u32,
    /// The previous message was refused too.
    in_run: bool,
}

impl RateGuard {
    /// `disconnect_after` refused messages (over the connection's life)
    /// disconnect the client; 0 never does.
    pub(crate) fn new(per_second: u32, burst: u32, disconnect_after: u32, now: Instant) -> Self {
        RateGuard {
            bucket: TokenBucket::new(per_second, burst, now),
            refused: 0,
            disconnect_after,
            in_run: false,
        }
    }

    /// Judges one message arriving at `now`.
    pub(crate) fn check(&mut self, now: Instant) -> Verdict {
        if self.bucket.try_take(now) {
            self.in_run = false;
            return Verdict::Pass;
        }
        self.refused = self.refused.saturating_add(1);
        let first_of_run = !std::mem::replace(&mut self.in_run, true);
        if self.disconnect_after != 0 && self.refused >= self.disconnect_after {
            Verdict::Disconnect
        } else {
            Verdict::Refuse(first_of_run.then(|| self.bucket.retry_after()))
        }
    }

    /// Messages refused so far.
    pub(crate) fn refused(&self) -> u32 {
        self.refused
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_refuses_then_disconnects_a_flooder() {
        let t0 = Instant::now();
        let mut guard = RateGuard::new(10, 2, 4, t0);
        assert_eq!(guard.check(t0), Verdict::Pass);
        assert_eq!(guard.check(t0), Verdict::Pass);
        // The first refusal of a run is answered, the rest are silent.
        assert_eq!(guard.check(t0), Verdict::Refuse(Some(ms(100))));
        assert_eq!(guard.check(t0), Verdict::Refuse(None));
        // Back under the limit: passes, but the refusals are remembered.
        assert_eq!(guard.check(t0 + ms(100)), Verdict::Pass);
        assert_eq!(guard.check(t0 + ms(150)), Verdict::Refuse(Some(ms(50))));
        assert_eq!(guard.check(t0 + ms(150)), Verdict::Disconnect);
        assert_eq!(guard.refused(), 4);
    }

    #[test]
    fn guard_with_zero_disconnect_never_disconnects() {
        let t0 = Instant::now();
        let mut guard = RateGuard::new(1, 1, 0, t0);
        assert_eq!(guard.check(t0), Verdict::Pass);
        assert!(matches!(guard.check(t0), Verdict::Refuse(Some(_))));
        for _ in 0..10_000 {
            assert_eq!(guard.check(t0), Verdict::Refuse(None));
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn burst_then_refuses() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(10, 3, t0);
        assert!(bucket.try_take(t0));
        assert!(bucket.try_take(t0));
        assert!(bucket.try_take(t0));
        assert!(!bucket.try_take(t0));
        assert!(!bucket.try_take(t0));
        assert_eq!(bucket.retry_after(), ms(100));
    }

    #[test]
    fn refills_at_the_rate_and_caps_at_the_burst() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(10, 2, t0);
        assert!(bucket.try_take(t0));
        assert!(bucket.try_take(t0));
        assert!(!bucket.try_take(t0 + ms(50)));
        // 100 ms at 10/s is one token.
        assert!(bucket.try_take(t0 + ms(100)));
        assert!(!bucket.try_take(t0 + ms(100)));
        // A long pause refills only up to the burst.
        let later = t0 + Duration::from_secs(60);
        assert!(bucket.try_take(later));
        assert!(bucket.try_take(later));
        assert!(!bucket.try_take(later));
    }

    #[test]
    fn sustained_rate_is_honoured() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(50, 1, t0);
        // A message every millisecond for 10 s: 1 (burst) + 50 a second pass.
        let passed = (0..10_000u64)
            .filter(|i| bucket.try_take(t0 + ms(*i)))
            .count();
        assert!((500..=502).contains(&passed), "{passed}");
    }

    #[test]
    fn clock_going_backwards_refills_nothing() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut bucket = TokenBucket::new(1000, 1, t0);
        assert!(bucket.try_take(t0));
        assert!(!bucket.try_take(t0 - Duration::from_secs(5)));
        assert!(!bucket.try_take(t0));
    }

    #[test]
    fn zero_burst_still_lets_one_through() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(0, 0, t0);
        assert!(bucket.try_take(t0));
        assert!(!bucket.try_take(t0));
        assert!(bucket.try_take(t0 + Duration::from_secs(1)));
    }
}
