//! The status consumer: applies connector receipts from `status-updates` to the deliveries.

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use rdkafka::Message;

use super::store;
use crate::events::{ReceiptBatch, StatusUpdate};
use crate::kafka::BatchConsumer;
use crate::shutdown::Shutdown;

#[derive(Clone)]
pub struct StatusMetrics {
    pub applied: Counter,
    pub malformed: Counter,
}

impl StatusMetrics {
    pub fn register(reg: &mut Registry) -> Self {
        let m = Self { applied: Counter::default(), malformed: Counter::default() };
        reg.register("chat4all_status_updates_applied", "Receipts that advanced a delivery status", m.applied.clone());
        reg.register("chat4all_status_updates_malformed", "Receipts that could not be parsed", m.malformed.clone());
        m
    }
}

pub async fn run(consumer: BatchConsumer, pool: sqlx::PgPool, metrics: StatusMetrics, shutdown: Shutdown) {
    while !shutdown.is_triggered() {
        let batch = consumer.next_batch(2000, Duration::from_millis(10), &shutdown).await;
        if batch.is_empty() {
            continue;
        }
        let mut updates: Vec<StatusUpdate> = Vec::new();
        for m in &batch {
            let payload = m.payload().unwrap_or_default();
            match serde_json::from_slice::<ReceiptBatch>(payload) {
                Ok(b) => updates.extend(b.updates),
                // A single receipt is accepted too (other producers, older connectors).
                Err(_) => match serde_json::from_slice::<StatusUpdate>(payload) {
                    Ok(u) => updates.push(u),
                    Err(e) => {
                        metrics.malformed.inc();
                        tracing::warn!(error = %e, offset = m.offset(), "malformed status update skipped");
                    }
                },
            }
        }
        // Retry until applied: receipts are never dropped because PostgreSQL hiccupped.
        match crate::retry::until_ok(&shutdown, "applying status updates", || {
            store::apply_status_updates(&pool, &updates)
        })
        .await
        {
            Ok(n) => {
                metrics.applied.inc_by(n);
            }
            Err(crate::retry::Interrupted) => return consumer.close(),
        }
        if let Err(e) = consumer.store(&batch) {
            tracing::warn!(error = format!("{e:#}"), "storing status offsets");
        }
    }
    consumer.close();
}
