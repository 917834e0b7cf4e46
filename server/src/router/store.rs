//! The router's dedup marker on `deliveries`.

use std::collections::HashSet;

use sqlx::{PgPool, Row};
use uuid::Uuid;

use crate::channel::Channel;

pub type Key = (Uuid, String, Channel);

/// The keys among `keys` that were routed already (a redelivered event).
pub async fn already_routed(pool: &PgPool, keys: &[Key]) -> Result<HashSet<Key>, sqlx::Error> {
    let (ids, users, chans) = columns(keys);
    let rows = sqlx::query(
        "SELECT d.message_id, d.recipient_id, d.channel FROM deliveries d
         JOIN UNNEST($1::uuid[], $2::text[], $3::text[]) AS k(message_id, recipient_id, channel)
           ON d.message_id = k.message_id AND d.recipient_id = k.recipient_id AND d.channel = k.channel
         WHERE d.routed_at IS NOT NULL",
    )
    .bind(&ids)
    .bind(&users)
    .bind(&chans)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            let chan: String = r.get("channel");
            Some((r.get("message_id"), r.get("recipient_id"), chan.parse().ok()?))
        })
        .collect())
}

/// Records that `keys` were handed to their connector (or failed for good, with `reason`).
pub async fn mark_routed(
    pool: &PgPool,
    keys: &[Key],
    instance: &str,
    failure: Option<&str>,
) -> Result<(), sqlx::Error> {
    if keys.is_empty() {
        return Ok(());
    }
    let (ids, users, chans) = columns(keys);
    sqlx::query(
        "UPDATE deliveries d SET routed_at = now(), routed_by = $4, route_count = d.route_count + 1,
                status = CASE WHEN $5::text IS NULL THEN d.status ELSE 'FAILED' END,
                failed_at = CASE WHEN $5::text IS NULL THEN d.failed_at ELSE now() END,
                failure_reason = COALESCE($5::text, d.failure_reason),
                updated_at = now()
         FROM UNNEST($1::uuid[], $2::text[], $3::text[]) AS k(message_id, recipient_id, channel)
         WHERE d.message_id = k.message_id AND d.recipient_id = k.recipient_id AND d.channel = k.channel",
    )
    .bind(&ids)
    .bind(&users)
    .bind(&chans)
    .bind(instance)
    .bind(failure)
    .execute(pool)
    .await?;
    Ok(())
}

fn columns(keys: &[Key]) -> (Vec<Uuid>, Vec<&str>, Vec<&str>) {
    (
        keys.iter().map(|k| k.0).collect(),
        keys.iter().map(|k| k.1.as_str()).collect(),
        keys.iter().map(|k| k.2.as_str()).collect(),
    )
}
