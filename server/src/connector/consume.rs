//! The connector as a member of its channel's consumer group (`<channel>-connector` on
//! `deliveries-<channel>`): each batch of hand-offs is delivered in partition order with the
//! settle loop (`batch.rs`: a rejection uses up an attempt, a held-back item is asked again in
//! order at no cost, an outage is waited out), failures are dead-lettered and reported FAILED,
//! and only then are the offsets stored. A channel that is down holds its own topic only.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use rdkafka::message::{Message, OwnedMessage};

use super::batch::{self, Pending};
use super::deliver::Deliverer;
use super::receipts;
use super::wire::{DeliveryItem, Handoff};
use crate::dead_letters::DeadLetters;
use crate::events::{ChatEvent, Recipient};
use crate::kafka::{BatchWork, Producer};
use crate::metrics::{latency_histogram, ChannelResultLabels};
use crate::retry::{self, Backoff, Interrupted};
use crate::shutdown::Shutdown;

#[derive(Clone)]
pub struct PipelineMetrics {
    pub handoffs: Counter,
    pub malformed: Counter,
    pub dead_lettered: Counter,
    pub rounds_repeated: Counter,
    pub batch_seconds: Histogram,
    pub end_to_end_seconds: Histogram,
}

impl PipelineMetrics {
    pub fn register(reg: &mut Registry) -> Self {
        let m = Self {
            handoffs: Counter::default(),
            malformed: Counter::default(),
            dead_lettered: Counter::default(),
            rounds_repeated: Counter::default(),
            batch_seconds: latency_histogram(),
            end_to_end_seconds: latency_histogram(),
        };
        reg.register("chat4all_connector_handoffs", "Hand-offs read from deliveries-<channel>", m.handoffs.clone());
        reg.register(
            "chat4all_connector_malformed_handoffs",
            "Unparseable hand-offs sent to the DLQ",
            m.malformed.clone(),
        );
        reg.register(
            "chat4all_connector_dead_lettered",
            "Recipients given up on (out of attempts), published to chat-events-dlq and reported FAILED",
            m.dead_lettered.clone(),
        );
        reg.register(
            "chat4all_connector_rounds_repeated",
            "Delivery rounds of a batch repeated (rejections, hold-backs, outages)",
            m.rounds_repeated.clone(),
        );
        reg.register(
            "chat4all_connector_batch_seconds",
            "Time to deliver one batch of hand-offs",
            m.batch_seconds.clone(),
        );
        reg.register(
            "chat4all_connector_end_to_end_seconds",
            "From message acceptance to the provider's acceptance",
            m.end_to_end_seconds.clone(),
        );
        m
    }
}

pub struct Pipeline {
    pub deliverer: Arc<Deliverer>,
    pub producer: Producer,
    pub instance: String,
    pub attempts: u32,
    /// `CHAT4ALL_UNSAFE_NO_HOLDBACK` (test only).
    pub unordered: bool,
    pub deliveries: Family<ChannelResultLabels, Counter>,
    pub metrics: PipelineMetrics,
    pub dead_letters: DeadLetters,
}

/// One recipient of one hand-off.
struct Work<'a> {
    item: DeliveryItem,
    event: &'a ChatEvent,
}

impl BatchWork for Pipeline {
    async fn work(&self, batch: &[OwnedMessage], shutdown: &Shutdown) -> Result<(), Interrupted> {
        self.deliver_batch(batch, shutdown).await
    }
}

impl Pipeline {
    /// Delivers every recipient of every hand-off in `batch`. Returns only when each one is
    /// delivered or dead-lettered (and reported), so the caller may store offsets.
    pub async fn deliver_batch(&self, batch: &[OwnedMessage], shutdown: &Shutdown) -> Result<(), Interrupted> {
        let start = Instant::now();
        let channel = self.deliverer.channel;
        let mut handoffs = Vec::with_capacity(batch.len());
        for m in batch {
            match serde_json::from_slice::<Handoff>(m.payload().unwrap_or_default()) {
                Ok(h) if h.channel == channel => handoffs.push(h),
                other => {
                    let why = match other {
                        Ok(h) => format!("a {} hand-off on the {channel} topic", h.channel),
                        Err(e) => e.to_string(),
                    };
                    self.metrics.malformed.inc();
                    tracing::warn!(topic = m.topic(), partition = m.partition(), offset = m.offset(), error = %why,
                        "malformed hand-off: dead-lettered");
                    let key = m.key().map(|k| String::from_utf8_lossy(k).into_owned()).unwrap_or_default();
                    let payload = m.payload().unwrap_or_default().to_vec();
                    retry::until_ok(shutdown, "dead-lettering", || self.dead_letters.unparseable(&key, &payload))
                        .await?;
                }
            }
        }
        self.metrics.handoffs.inc_by(handoffs.len() as u64);
        let mut pending: Vec<Pending<Work<'_>>> = handoffs
            .iter()
            .flat_map(|h| h.items().into_iter().map(move |item| Work { item, event: &h.event }))
            .map(Pending::new)
            .collect();
        let label = channel.label();
        let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
        while !pending.is_empty() {
            let items: Vec<DeliveryItem> = pending.iter().map(|p| p.item.item.clone()).collect();
            let outcomes = match self.deliverer.deliver(&items, self.unordered).await {
                Ok(o) => o,
                Err(e) => {
                    tracing::warn!(error = %e, "delivery round failed; retrying");
                    self.metrics.rounds_repeated.inc();
                    backoff.wait(shutdown).await?;
                    continue;
                }
            };
            if let Err(e) = receipts::publish_delivered(&self.producer, &self.instance, &items, &outcomes).await {
                // The ledger has the sends: the next round answers them from it and publishes again.
                tracing::warn!(error = format!("{e:#}"), "publishing receipts failed; retrying the round");
                self.metrics.rounds_repeated.inc();
                backoff.wait(shutdown).await?;
                continue;
            }
            let now = Utc::now();
            let mut results = Vec::with_capacity(outcomes.len());
            for ((p, item), outcome) in pending.iter().zip(&items).zip(&outcomes) {
                self.deliveries
                    .get_or_create(&ChannelResultLabels { channel: label.into(), result: outcome.label().into() })
                    .inc();
                if outcome.delivered() {
                    let age = (now - p.item.event.created_at).to_std().unwrap_or_default();
                    self.metrics.end_to_end_seconds.observe(age.as_secs_f64());
                }
                results.push(outcome.to_result(item));
            }
            let settled = batch::settle(&mut pending, results, self.attempts);
            for (w, reason) in &settled.failed {
                tracing::warn!(message_id = %w.item.message_id, recipient = %w.item.recipient_id, %reason,
                    "out of attempts: dead-lettered");
                let recipient = Recipient { user_id: w.item.recipient_id.clone(), channel: w.item.channel };
                retry::until_ok(shutdown, "dead-lettering", || {
                    self.dead_letters.give_up(w.event, recipient.clone(), reason)
                })
                .await?;
                let failed = [(&w.item, reason.as_str())];
                retry::until_ok(shutdown, "reporting a failure", || {
                    receipts::publish_failed(&self.producer, &self.instance, &failed)
                })
                .await?;
            }
            if pending.is_empty() {
                break;
            }
            if settled.progressed() {
                backoff.reset();
            }
            tracing::debug!(
                channel = label,
                rejected = settled.rejected,
                held = settled.held,
                pending = pending.len(),
                "delivering the rest again"
            );
            self.metrics.rounds_repeated.inc();
            backoff.wait(shutdown).await?;
        }
        self.metrics.batch_seconds.observe(start.elapsed().as_secs_f64());
        Ok(())
    }
}
