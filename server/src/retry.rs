//! Retry with backoff, once for every service: `until_ok` retries an operation until it
//! succeeds or the service shuts down, waiting `Backoff`'s doubling delays in between.

use std::future::Future;
use std::time::Duration;

use crate::shutdown::Shutdown;

/// Doubling delays from `initial` up to `max`; `reset` after progress.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self { initial, max, next: initial }
    }

    /// The delay to wait now; the one after it is twice as long (up to the maximum).
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }

    /// Starts again from the initial delay.
    pub fn reset(&mut self) {
        self.next = self.initial;
    }

    /// Waits the next delay, or returns `Interrupted` as soon as shutdown is requested.
    pub async fn wait(&mut self, shutdown: &Shutdown) -> Result<(), Interrupted> {
        let d = self.next_delay();
        tokio::select! {
            _ = tokio::time::sleep(d) => Ok(()),
            _ = shutdown.wait() => Err(Interrupted),
        }
    }
}

impl Default for Backoff {
    /// 100 ms, doubling to 5 s: for a dependency (PostgreSQL, Kafka, Redis) that hiccups.
    fn default() -> Self {
        Self::new(Duration::from_millis(100), Duration::from_secs(5))
    }
}

/// The service is shutting down: the operation was not done (a batch is left whole to the next
/// owner: its offsets are not stored).
#[derive(Debug, thiserror::Error)]
#[error("interrupted by shutdown")]
pub struct Interrupted;

/// Runs `op` until it succeeds, logging each failure as `what`; gives up only on shutdown.
pub async fn until_ok<T, E, F, Fut>(shutdown: &Shutdown, what: &str, mut op: F) -> Result<T, Interrupted>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    let mut backoff = Backoff::default();
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) => tracing::warn!(error = %e, "{what} failed; retrying"),
        }
        backoff.wait(shutdown).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_maximum_and_reset() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let d: Vec<u128> = (0..4).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(d, [100, 200, 350, 350]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }

    #[tokio::test]
    async fn retries_until_the_operation_succeeds_and_stops_on_shutdown() {
        let shutdown = Shutdown::new();
        let mut calls = 0;
        let got = until_ok(&shutdown, "test", || {
            calls += 1;
            let n = calls;
            async move {
                if n < 3 {
                    Err("not yet")
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(got.ok(), Some(3));
        shutdown.trigger();
        let never = until_ok(&shutdown, "test", || async { Err::<(), _>("down") }).await;
        assert!(never.is_err());
    }
}
