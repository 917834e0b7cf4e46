//! API keys: generation, hashing, and the gateway's lookup with a short-lived in-process cache.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::Rng;
use sha2::{Digest, Sha256};
use sqlx::{PgPool, Row};

/// Prefix of every key, so a leaked one is recognisable in logs and secret scanners.
pub const KEY_PREFIX: &str = "c4a_";

/// A fresh key: the prefix and 32 random bytes in hex (256 bits of entropy).
pub fn generate_key() -> String {
    let bytes: [u8; 32] = rand::thread_rng().gen();
    let mut s = String::with_capacity(KEY_PREFIX.len() + 64);
    s.push_str(KEY_PREFIX);
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// What is stored: the SHA-256 of the key, in hex. The key has full entropy, so a plain hash
/// (no salt, no slow KDF) is enough and keeps a lookup to one indexed equality.
pub fn hash_key(key: &str) -> String {
    format!("{:x}", Sha256::digest(key.as_bytes()))
}

/// The part of a key shown by `apikey list` (prefix and 6 hex digits).
pub fn display_prefix(key: &str) -> String {
    key.chars().take(KEY_PREFIX.len() + 6).collect()
}

/// A valid (not revoked) key as the gateway needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyInfo {
    pub id: i64,
    pub name: String,
    pub rate_per_second: Option<f64>,
    pub burst: Option<u32>,
}

/// Key lookups against PostgreSQL, kept in process so that a request costs one hash and one map
/// lookup: only a key never seen before queries the database on the request path. A background
/// task (`refresh_every`) re-reads every cached key in one query each `ttl`, so a revocation takes
/// effect within `ttl` (plus one query) without a burst of queries when entries age out.
pub struct KeyStore {
    pool: PgPool,
    ttl: Duration,
    cache: Mutex<HashMap<String, (Option<KeyInfo>, Instant)>>,
    /// Misses query one at a time: a burst of requests with a key not cached yet (or a flood of
    /// bad keys) costs one query each in turn, not one connection each at once.
    misses: tokio::sync::Mutex<()>,
}

/// Most cached lookups; beyond it the cache is emptied (bounds memory under a flood of bad keys).
const MAX_CACHED: usize = 10_000;

/// With the refresher failing (database down), cached answers are still used this many `ttl`s.
const STALE_FACTOR: u32 = 10;

fn key_info(r: &sqlx::postgres::PgRow) -> KeyInfo {
    KeyInfo {
        id: r.get("id"),
        name: r.get("name"),
        rate_per_second: r.get("rate_per_second"),
        burst: r.get::<Option<i32>, _>("burst").map(|b| b.max(1) as u32),
    }
}

impl KeyStore {
    pub fn new(pool: PgPool, ttl: Duration) -> Self {
        Self { pool, ttl, cache: Mutex::new(HashMap::new()), misses: tokio::sync::Mutex::new(()) }
    }

    /// The key's row when it exists and is not revoked.
    pub async fn lookup(&self, key: &str) -> Result<Option<KeyInfo>, sqlx::Error> {
        let hash = hash_key(key);
        if let Some(hit) = self.cached(&hash) {
            return Ok(hit);
        }
        let _one_at_a_time = self.misses.lock().await;
        // Another request may have looked it up while this one waited.
        if let Some(hit) = self.cached(&hash) {
            return Ok(hit);
        }
        let row = sqlx::query(
            "SELECT id, name, rate_per_second, burst FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
        )
        .bind(&hash)
        .fetch_optional(&self.pool)
        .await?;
        let info = row.as_ref().map(key_info);
        let mut cache = self.cache.lock().expect("key cache");
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(hash, (info.clone(), Instant::now()));
        Ok(info)
    }

    fn cached(&self, hash: &str) -> Option<Option<KeyInfo>> {
        match self.cache.lock().expect("key cache").get(hash) {
            Some((info, at)) if at.elapsed() < self.ttl * STALE_FACTOR => Some(info.clone()),
            _ => None,
        }
    }

    /// Re-reads every cached key (one query); unknown keys are forgotten (asked again on use).
    pub async fn refresh(&self) -> Result<(), sqlx::Error> {
        let hashes: Vec<String> = {
            let mut cache = self.cache.lock().expect("key cache");
            let ttl = self.ttl;
            cache.retain(|_, (info, at)| info.is_some() || at.elapsed() < ttl);
            cache.iter().filter(|(_, (info, _))| info.is_some()).map(|(h, _)| h.clone()).collect()
        };
        if hashes.is_empty() {
            return Ok(());
        }
        let rows = sqlx::query(
            "SELECT key_hash, id, name, rate_per_second, burst FROM api_keys
             WHERE key_hash = ANY($1) AND revoked_at IS NULL",
        )
        .bind(&hashes)
        .fetch_all(&self.pool)
        .await?;
        let mut fresh: HashMap<String, KeyInfo> = rows.iter().map(|r| (r.get("key_hash"), key_info(r))).collect();
        let now = Instant::now();
        let mut cache = self.cache.lock().expect("key cache");
        for h in hashes {
            cache.insert(h.clone(), (fresh.remove(&h), now));
        }
        Ok(())
    }

    /// Runs `refresh` every `ttl` until shutdown.
    pub async fn refresh_every(self: std::sync::Arc<Self>, shutdown: crate::shutdown::Shutdown) {
        let mut tick = tokio::time::interval(self.ttl);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.wait() => return,
            }
            if let Err(e) = self.refresh().await {
                tracing::warn!(error = %e, "refreshing API keys failed; cached answers are kept for now");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique_prefixed_and_hash_to_hex() {
        let a = generate_key();
        let b = generate_key();
        assert_ne!(a, b);
        assert!(a.starts_with(KEY_PREFIX));
        assert_eq!(a.len(), KEY_PREFIX.len() + 64);
        let h = hash_key(&a);
        assert_eq!(h.len(), 64);
        assert_ne!(h, hash_key(&b));
        assert_eq!(h, hash_key(&a));
        // Known vector: SHA-256("abc").
        assert_eq!(hash_key("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(display_prefix(&a).len(), KEY_PREFIX.len() + 6);
    }
}
