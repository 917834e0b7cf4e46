//! Accepted vs delivered vs delivered twice, from PostgreSQL. `provider_sends` (the providers'
//! own log, deliberately without a unique constraint) is the ground truth: a delivery counts only
//! when the status says DELIVERED *and* a provider handed it to a device; every row beyond the
//! first per (message, recipient, channel) is a duplicate.

use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use tokio::time::Instant;
use uuid::Uuid;

/// Message ids per query.
const CHUNK: usize = 10_000;

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RecipientCount {
    pub recipient: String,
    pub channel: String,
    /// Messages accepted by the API for this recipient.
    pub accepted: u64,
    /// DELIVERED (or READ) and present in provider_sends.
    pub delivered: u64,
    /// provider_sends rows beyond one per message.
    pub duplicated: u64,
    pub failed: u64,
    pub lost: u64,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    pub accepted_messages: u64,
    /// Accepted messages the messages table holds (should be all).
    pub stored_messages: u64,
    pub recipients: Vec<RecipientCount>,
    pub delivered: u64,
    pub duplicated: u64,
    pub lost: u64,
    pub failed: u64,
}

/// Waits until every delivery of `ids` is final (delivered or FAILED) or `timeout` passes;
/// returns whether all were.
pub async fn wait_delivered(pool: &PgPool, ids: &[Uuid], per_message: u64, timeout: Duration) -> anyhow::Result<bool> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut done = 0u64;
        for chunk in ids.chunks(CHUNK) {
            let (n,): (i64,) = sqlx::query_as(
                "SELECT count(*) FROM deliveries
                 WHERE message_id = ANY($1) AND (delivered_at IS NOT NULL OR status = 'FAILED')",
            )
            .bind(chunk)
            .fetch_one(pool)
            .await
            .context("polling deliveries")?;
            done += n as u64;
        }
        if done >= ids.len() as u64 * per_message {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Counts per recipient for the accepted `ids`; `recipients` are (user id, channel) pairs every
/// message was addressed to.
pub async fn count(pool: &PgPool, ids: &[Uuid], recipients: &[(String, String)]) -> anyhow::Result<Counts> {
    let mut c = Counts { accepted_messages: ids.len() as u64, ..Counts::default() };
    let mut per: Vec<RecipientCount> = recipients
        .iter()
        .map(|(r, ch)| RecipientCount {
            recipient: r.clone(),
            channel: ch.clone(),
            accepted: ids.len() as u64,
            ..RecipientCount::default()
        })
        .collect();
    for chunk in ids.chunks(CHUNK) {
        let (stored,): (i64,) = sqlx::query_as("SELECT count(*) FROM messages WHERE id = ANY($1)")
            .bind(chunk)
            .fetch_one(pool)
            .await
            .context("counting messages")?;
        c.stored_messages += stored as u64;
        let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(
            "SELECT d.recipient_id, d.channel,
                    count(*) FILTER (WHERE d.delivered_at IS NOT NULL AND EXISTS (
                        SELECT 1 FROM provider_sends p WHERE p.message_id = d.message_id
                          AND p.recipient_id = d.recipient_id AND p.channel = d.channel)),
                    count(*) FILTER (WHERE d.status = 'FAILED')
             FROM deliveries d WHERE d.message_id = ANY($1) GROUP BY 1, 2",
        )
        .bind(chunk)
        .fetch_all(pool)
        .await
        .context("counting deliveries")?;
        for (r, ch, delivered, failed) in rows {
            if let Some(p) = per.iter_mut().find(|p| p.recipient == r && p.channel == ch) {
                p.delivered += delivered as u64;
                p.failed += failed as u64;
            }
        }
        let dups: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT recipient_id, channel, COALESCE(sum(n - 1), 0)::int8 FROM (
                 SELECT recipient_id, channel, count(*) AS n FROM provider_sends WHERE message_id = ANY($1)
                 GROUP BY message_id, recipient_id, channel) k GROUP BY 1, 2",
        )
        .bind(chunk)
        .fetch_all(pool)
        .await
        .context("counting provider_sends")?;
        for (r, ch, d) in dups {
            if let Some(p) = per.iter_mut().find(|p| p.recipient == r && p.channel == ch) {
                p.duplicated += d as u64;
            }
        }
    }
    for p in &mut per {
        p.lost = p.accepted.saturating_sub(p.delivered);
        c.delivered += p.delivered;
        c.duplicated += p.duplicated;
        c.failed += p.failed;
        c.lost += p.lost;
    }
    c.recipients = per;
    Ok(c)
}

/// The first delivery of `ids` routed by one of `instances` at or after `after` (when a survivor
/// processed its first event), with the instance.
pub async fn first_routed(
    pool: &PgPool,
    ids: &[Uuid],
    instances: &[String],
    after: DateTime<Utc>,
) -> anyhow::Result<Option<(DateTime<Utc>, String)>> {
    let mut best: Option<(DateTime<Utc>, String)> = None;
    for chunk in ids.chunks(CHUNK) {
        let row: Option<(DateTime<Utc>, String)> = sqlx::query_as(
            "SELECT routed_at, routed_by FROM deliveries
             WHERE message_id = ANY($1) AND routed_by = ANY($2) AND routed_at >= $3
             ORDER BY routed_at LIMIT 1",
        )
        .bind(chunk)
        .bind(instances)
        .bind(after)
        .fetch_optional(pool)
        .await
        .context("reading routed_at")?;
        if let Some(r) = row {
            if best.as_ref().is_none_or(|b| r.0 < b.0) {
                best = Some(r);
            }
        }
    }
    Ok(best)
}
