//! Accepted vs delivered vs delivered twice. The providers' records (read over their HTTP API,
//! [`crate::providers`]) are the ground truth: a delivery counts only when its status in
//! PostgreSQL says DELIVERED *and* a provider's record holds an effect for it; requests and effects
//! beyond the first per (message, recipient, channel) are `duplicateRequests` and
//! `duplicateDeliveries`; `orderViolations` judge first effects against `messages.seq`, the order
//! the platform accepted each conversation's messages in.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use tokio::time::Instant;
use uuid::Uuid;

use chat4all_contract::channel::Channel;
use chat4all_contract::provider::RecordEntry;

use crate::providers;

/// Message ids per query.
const CHUNK: usize = 10_000;

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RecipientCount {
    pub recipient: String,
    pub channel: String,
    /// Messages accepted by the API for this recipient.
    pub accepted: u64,
    /// DELIVERED (or READ) and an effect in the provider's record.
    pub delivered: u64,
    /// Provider requests beyond one per message (retries, replays: harmless with keys).
    pub duplicate_requests: u64,
    /// Provider effects beyond one per message (the recipient got it twice).
    pub duplicate_deliveries: u64,
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
    pub duplicate_requests: u64,
    pub duplicate_deliveries: u64,
    /// Per (conversation, recipient): first effects of consecutive messages the other way round.
    pub order_violations: u64,
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

/// Each message's position in the platform's order (`messages.seq`).
pub async fn platform_order(pool: &PgPool, ids: &[Uuid]) -> anyhow::Result<HashMap<Uuid, i64>> {
    let mut order = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(CHUNK) {
        let rows: Vec<(Uuid, i64)> = sqlx::query_as("SELECT id, seq FROM messages WHERE id = ANY($1)")
            .bind(chunk)
            .fetch_all(pool)
            .await
            .context("reading the messages' order")?;
        order.extend(rows);
    }
    Ok(order)
}

/// Counts per recipient for the accepted `ids`; `recipients` are (user id, channel) pairs every
/// message was addressed to; `record` the providers' entries of the run.
pub async fn count(
    pool: &PgPool,
    ids: &[Uuid],
    recipients: &[(String, String)],
    record: &[RecordEntry],
) -> anyhow::Result<Counts> {
    let mut c = Counts { accepted_messages: ids.len() as u64, ..Counts::default() };
    let truth = providers::tally(record);
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
        let rows: Vec<(Uuid, String, String, bool, bool)> = sqlx::query_as(
            "SELECT message_id, recipient_id, channel, delivered_at IS NOT NULL, status = 'FAILED'
             FROM deliveries WHERE message_id = ANY($1)",
        )
        .bind(chunk)
        .fetch_all(pool)
        .await
        .context("reading deliveries")?;
        for (m, r, ch, delivered, failed) in rows {
            let Some(p) = per.iter_mut().find(|p| p.recipient == r && p.channel == ch) else { continue };
            let on_device = ch
                .parse::<Channel>()
                .ok()
                .and_then(|channel| truth.get(&(channel, m, r.clone())))
                .is_some_and(|t| t.effects > 0);
            p.delivered += u64::from(delivered && on_device);
            p.failed += u64::from(failed);
        }
    }
    let wanted: std::collections::HashSet<Uuid> = ids.iter().copied().collect();
    for ((channel, m, r), t) in &truth {
        if !wanted.contains(m) {
            continue;
        }
        if let Some(p) = per.iter_mut().find(|p| &p.recipient == r && p.channel == channel.as_str()) {
            p.duplicate_requests += t.requests.saturating_sub(1);
            p.duplicate_deliveries += t.effects.saturating_sub(1);
        }
    }
    for p in &mut per {
        p.lost = p.accepted.saturating_sub(p.delivered);
        c.delivered += p.delivered;
        c.duplicate_requests += p.duplicate_requests;
        c.duplicate_deliveries += p.duplicate_deliveries;
        c.failed += p.failed;
        c.lost += p.lost;
    }
    c.order_violations = providers::order_violations(record, &platform_order(pool, ids).await?);
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
