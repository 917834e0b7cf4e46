//! The simulated provider: latency, failures, and an idempotent send recorded in
//! `provider_sends` (the ground truth of what reached a device).

use std::collections::HashSet;
use std::time::Duration;

use rand::Rng;
use sqlx::{PgPool, Row};
use uuid::Uuid;

use super::wire::{DeliveryItem, DeliveryResult};
use crate::channel::Channel;

pub struct Provider {
    pub pool: PgPool,
    pub channel: Channel,
    pub instance: String,
    pub latency: Duration,
    pub failure_rate: f64,
}

/// What the provider did with one item.
pub enum Outcome {
    Sent,
    AlreadySent,
    Failed(String),
}

impl Provider {
    /// Sends a batch in order. One transaction holds the channel's lock, so two connectors (or a
    /// zombie router and its successor) can never both send the same (message, recipient).
    pub async fn send(&self, items: &[DeliveryItem]) -> Result<Vec<Outcome>, sqlx::Error> {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(0x0c4a_0000_i64 + self.channel as i64)
            .execute(&mut *tx)
            .await?;
        let ids: Vec<Uuid> = items.iter().map(|i| i.message_id).collect();
        let users: Vec<&str> = items.iter().map(|i| i.recipient_id.as_str()).collect();
        let existing: HashSet<(Uuid, String)> = sqlx::query(
            "SELECT s.message_id, s.recipient_id FROM provider_sends s
             JOIN UNNEST($1::uuid[], $2::text[]) AS k(message_id, recipient_id)
               ON s.message_id = k.message_id AND s.recipient_id = k.recipient_id
             WHERE s.channel = $3",
        )
        .bind(&ids)
        .bind(&users)
        .bind(self.channel.as_str())
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .map(|r| (r.get("message_id"), r.get("recipient_id")))
        .collect();

        let mut outcomes = Vec::with_capacity(items.len());
        let (mut new_ids, mut new_users, mut provider_ids) = (Vec::new(), Vec::new(), Vec::new());
        let mut seen_in_batch = HashSet::new();
        {
            let mut rng = rand::thread_rng();
            for item in items {
                let key = (item.message_id, item.recipient_id.clone());
                if existing.contains(&key) || !seen_in_batch.insert(key) {
                    outcomes.push(Outcome::AlreadySent);
                } else if self.failure_rate > 0.0 && rng.gen_bool(self.failure_rate.clamp(0.0, 1.0)) {
                    seen_in_batch.remove(&(item.message_id, item.recipient_id.clone()));
                    outcomes.push(Outcome::Failed("provider rejected the request (simulated)".into()));
                } else {
                    new_ids.push(item.message_id);
                    new_users.push(item.recipient_id.as_str());
                    provider_ids.push(format!("{}-{}", self.channel.label(), Uuid::new_v4().simple()));
                    outcomes.push(Outcome::Sent);
                }
            }
        }
        if !new_ids.is_empty() {
            sqlx::query(
                "INSERT INTO provider_sends (message_id, recipient_id, channel, provider_message_id, connector_instance)
                 SELECT m, r, $3, p, $5 FROM UNNEST($1::uuid[], $2::text[], $4::text[]) WITH ORDINALITY AS t(m, r, p, n)
                 ORDER BY n",
            )
            .bind(&new_ids)
            .bind(&new_users)
            .bind(self.channel.as_str())
            .bind(&provider_ids)
            .bind(&self.instance)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(outcomes)
    }
}

impl Outcome {
    pub fn to_result(&self, item: &DeliveryItem) -> DeliveryResult {
        let (ok, duplicate, error) = match self {
            Outcome::Sent => (true, false, None),
            Outcome::AlreadySent => (true, true, None),
            Outcome::Failed(e) => (false, false, Some(e.clone())),
        };
        DeliveryResult { message_id: item.message_id, recipient_id: item.recipient_id.clone(), ok, duplicate, error }
    }
}
