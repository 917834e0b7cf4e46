//! What a connector reports on `status-updates`: SENT and DELIVERED for everything the provider
//! has (again for a repeat: a crash between the send and the receipt must not leave a delivery
//! PENDING), FAILED with its reason for what was dead-lettered (FAILED is final in the fold).

use chrono::Utc;

use super::deliver::Outcome;
use super::wire::DeliveryItem;
use crate::config::topics;
use crate::events::{DeliveryStatus, ReceiptBatch, StatusUpdate};
use crate::kafka::Producer;

/// Publishes SENT and DELIVERED for every delivered item (one record) and waits for the ack.
pub async fn publish_delivered(
    producer: &Producer,
    instance: &str,
    items: &[DeliveryItem],
    outcomes: &[Outcome],
) -> anyhow::Result<()> {
    let now = Utc::now();
    let mut updates = Vec::with_capacity(items.len() * 2);
    for (item, outcome) in items.iter().zip(outcomes) {
        if !outcome.delivered() {
            continue;
        }
        for status in [DeliveryStatus::Sent, DeliveryStatus::Delivered] {
            updates.push(update(item, status, None, instance, now));
        }
    }
    publish(producer, instance, updates).await
}

/// Publishes FAILED (with its reason) for items given up on.
pub async fn publish_failed(
    producer: &Producer,
    instance: &str,
    failed: &[(&DeliveryItem, &str)],
) -> anyhow::Result<()> {
    let now = Utc::now();
    let updates =
        failed.iter().map(|(item, reason)| update(item, DeliveryStatus::Failed, Some(reason), instance, now)).collect();
    publish(producer, instance, updates).await
}

fn update(
    item: &DeliveryItem,
    status: DeliveryStatus,
    reason: Option<&str>,
    instance: &str,
    at: chrono::DateTime<Utc>,
) -> StatusUpdate {
    StatusUpdate {
        message_id: item.message_id,
        recipient_id: item.recipient_id.clone(),
        channel: item.channel,
        status,
        at,
        reason: reason.map(str::to_string),
        source: instance.to_string(),
    }
}

async fn publish(producer: &Producer, instance: &str, updates: Vec<StatusUpdate>) -> anyhow::Result<()> {
    if updates.is_empty() {
        return Ok(());
    }
    let payload = serde_json::to_vec(&ReceiptBatch { updates })?;
    producer.send(topics::STATUS_UPDATES, instance, &payload).await?;
    Ok(())
}
