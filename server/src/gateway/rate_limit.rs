//! Per-key token buckets, in process: `burst` requests at once, refilled at `rate` per second.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    pub rate_per_second: f64,
    pub burst: u32,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Buckets by key id.
#[derive(Debug, Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<i64, Bucket>>,
}

impl RateLimiter {
    /// Takes one token for `key`: Ok, or how long until one is available.
    pub fn check(&self, key: i64, limit: Limit, now: Instant) -> Result<(), Duration> {
        let rate = limit.rate_per_second.max(1e-6);
        let burst = f64::from(limit.burst.max(1));
        let mut buckets = self.buckets.lock().expect("rate limiter");
        let b = buckets.entry(key).or_insert(Bucket { tokens: burst, last: now });
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(burst);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - b.tokens) / rate))
        }
    }
}

/// The `Retry-After` value (whole seconds, at least 1) for a wait.
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_the_burst_then_refuses_until_refilled() {
        let rl = RateLimiter::default();
        let limit = Limit { rate_per_second: 2.0, burst: 3 };
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(rl.check(1, limit, t0).is_ok());
        }
        let wait = rl.check(1, limit, t0).unwrap_err();
        assert!((wait.as_secs_f64() - 0.5).abs() < 1e-6, "{wait:?}");
        assert_eq!(retry_after_secs(wait), 1);
        // Another key has its own bucket.
        assert!(rl.check(2, limit, t0).is_ok());
        // Half a second later one token is back, and only one.
        let t1 = t0 + Duration::from_millis(500);
        assert!(rl.check(1, limit, t1).is_ok());
        assert!(rl.check(1, limit, t1).is_err());
    }

    #[test]
    fn never_exceeds_the_burst_after_idling() {
        let rl = RateLimiter::default();
        let limit = Limit { rate_per_second: 100.0, burst: 2 };
        let t0 = Instant::now();
        assert!(rl.check(1, limit, t0).is_ok());
        let later = t0 + Duration::from_secs(60);
        assert!(rl.check(1, limit, later).is_ok());
        assert!(rl.check(1, limit, later).is_ok());
        assert!(rl.check(1, limit, later).is_err());
    }
}
