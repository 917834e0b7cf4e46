//! The status consumer: applies connector receipts from `status-updates` to the deliveries.

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use rdkafka::message::{Message, OwnedMessage};

use super::store;
use crate::events::{ReceiptBatch, StatusUpdate};
use crate::kafka::{BatchWork, Batching};
use crate::retry::Interrupted;
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

/// Applies each batch of receipts; retries until PostgreSQL took them (receipts are never
/// dropped because PostgreSQL hiccupped).
pub struct StatusApplier {
    pub pool: sqlx::PgPool,
    pub metrics: StatusMetrics,
}

/// Most receipts records per batch, and how long a batch waits to fill.
pub const BATCHING: Batching = Batching { max: 2000, linger: Duration::from_millis(10) };

impl BatchWork for StatusApplier {
    async fn work(&self, batch: &[OwnedMessage], shutdown: &Shutdown) -> Result<(), Interrupted> {
        let mut updates: Vec<StatusUpdate> = Vec::new();
        for m in batch {
            let payload = m.payload().unwrap_or_default();
            match serde_json::from_slice::<ReceiptBatch>(payload) {
                Ok(b) => updates.extend(b.updates),
                // A single receipt is accepted too (other producers, older connectors).
                Err(_) => match serde_json::from_slice::<StatusUpdate>(payload) {
                    Ok(u) => updates.push(u),
                    Err(e) => {
                        self.metrics.malformed.inc();
                        tracing::warn!(error = %e, offset = m.offset(), "malformed status update skipped");
                    }
                },
            }
        }
        let n = crate::retry::until_ok(shutdown, "applying status updates", || {
            store::apply_status_updates(&self.pool, &updates)
        })
        .await?;
        self.metrics.applied.inc_by(n);
        Ok(())
    }
}
