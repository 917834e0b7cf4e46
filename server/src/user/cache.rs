//! Best-effort Redis cache of user and identity lookups. Every operation has a short timeout and
//! every failure is a miss: with Redis down the service answers from PostgreSQL, only slower.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::AsyncCommands;
use tokio::sync::OnceCell;

pub struct Cache {
    client: Option<redis::Client>,
    conn: OnceCell<ConnectionManager>,
    /// When connecting last failed: no new attempt for a second, so an outage costs requests
    /// one timeout per second, not one each.
    failed_at: std::sync::Mutex<Option<std::time::Instant>>,
    ttl_s: u64,
    timeout: Duration,
}

pub fn user_key(id: &uuid::Uuid) -> String {
    format!("chat4all:user:{id}")
}

pub fn identity_key(channel: &str, external_id: &str) -> String {
    format!("chat4all:identity:{channel}:{external_id}")
}

impl Cache {
    pub fn new(url: &str, ttl_s: u64, timeout: Duration) -> Self {
        let client = match redis::Client::open(url) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(error = %e, "invalid REDIS_URL: lookups are not cached");
                None
            }
        };
        Self { client, conn: OnceCell::new(), failed_at: std::sync::Mutex::new(None), ttl_s, timeout }
    }

    /// The shared connection; established on first use (and retried on later uses while Redis is
    /// down), then reconnecting by itself.
    async fn conn(&self) -> Option<ConnectionManager> {
        if let Some(c) = self.conn.get() {
            return Some(c.clone());
        }
        let client = self.client.clone()?;
        if self.failed_at.lock().expect("cache state").is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
            return None;
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(self.timeout)
            .set_response_timeout(self.timeout)
            .set_number_of_retries(1);
        let made = tokio::time::timeout(self.timeout * 2, ConnectionManager::new_with_config(client, config)).await;
        match made {
            Ok(Ok(c)) => Some(self.conn.get_or_init(|| async { c }).await.clone()),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "redis unavailable: cache skipped");
                *self.failed_at.lock().expect("cache state") = Some(std::time::Instant::now());
                None
            }
            Err(_) => {
                *self.failed_at.lock().expect("cache state") = Some(std::time::Instant::now());
                None
            }
        }
    }

    pub async fn get(&self, key: &str) -> Option<String> {
        let mut c = self.conn().await?;
        match tokio::time::timeout(self.timeout, c.get::<_, Option<String>>(key)).await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "cache read failed");
                None
            }
            Err(_) => None,
        }
    }

    pub async fn set(&self, key: &str, value: &str) {
        if let Some(mut c) = self.conn().await {
            let _ = tokio::time::timeout(self.timeout, c.set_ex::<_, _, ()>(key, value, self.ttl_s)).await;
        }
    }

    /// Drops entries after a change. A failure here leaves a stale entry for at most the TTL.
    pub async fn invalidate(&self, keys: &[String]) {
        if keys.is_empty() {
            return;
        }
        if let Some(mut c) = self.conn().await {
            match tokio::time::timeout(self.timeout, c.del::<_, ()>(keys)).await {
                Ok(Ok(())) => {}
                _ => tracing::warn!(?keys, "cache invalidation failed: entries expire with their TTL"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[tokio::test]
    async fn an_unreachable_redis_is_a_fast_miss() {
        // Port 1 on loopback: connection refused, a real failure rather than a mock.
        let cache = Cache::new("redis://127.0.0.1:1/0", 60, Duration::from_millis(100));
        let start = Instant::now();
        assert_eq!(cache.get("k").await, None);
        cache.set("k", "v").await;
        cache.invalidate(&["k".to_string()]).await;
        assert!(start.elapsed() < Duration::from_secs(2), "took {:?}", start.elapsed());
    }
}
