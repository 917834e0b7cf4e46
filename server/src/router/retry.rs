//! Retrying an operation on infrastructure (PostgreSQL, Kafka) until it succeeds or the service
//! shuts down: a batch either finishes or is left whole to the next owner.

use std::time::Duration;

use crate::shutdown::Shutdown;

/// Why a batch was not finished: its offsets are not stored and the next owner redoes it.
#[derive(Debug, thiserror::Error)]
#[error("batch interrupted by shutdown")]
pub struct Interrupted;

/// Retries `op` with backoff (100 ms doubling to 5 s) until it succeeds; gives up only on shutdown.
pub async fn until_ok<T, E, F, Fut>(shutdown: &Shutdown, what: &str, mut op: F) -> Result<T, Interrupted>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    let mut backoff = Duration::from_millis(100);
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) => tracing::warn!(error = %e, "{what} failed; retrying"),
        }
        pause(shutdown, backoff).await?;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Sleeps `d`, or returns `Interrupted` as soon as shutdown is requested.
pub async fn pause(shutdown: &Shutdown, d: Duration) -> Result<(), Interrupted> {
    tokio::select! {
        _ = tokio::time::sleep(d) => Ok(()),
        _ = shutdown.wait() => Err(Interrupted),
    }
}
