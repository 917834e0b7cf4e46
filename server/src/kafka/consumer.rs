//! A consumer-group member that hands out batches, stores offsets only when told (after the
//! work is durable), commits synchronously on revoke and shutdown, and reports every rebalance.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::{ClientConfig, ClientContext};
use tokio::sync::mpsc;

use crate::events::{RebalanceEvent, RebalanceKind, TopicPartition};
use crate::shutdown::Shutdown;

/// Records ready at once that mean load: from this many on, a batch lingers to fill up.
pub const LINGER_FROM: usize = 8;

/// Context that turns librdkafka's rebalance callbacks into `RebalanceEvent`s.
pub struct ReportingContext {
    group: String,
    instance: String,
    events: mpsc::UnboundedSender<RebalanceEvent>,
}

impl ClientContext for ReportingContext {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        crate::metrics::record_kafka_error("client");
        tracing::warn!(error = %error, reason, "Kafka client error");
    }
}

fn partitions_of(tpl: &TopicPartitionList) -> Vec<TopicPartition> {
    let mut v: Vec<TopicPartition> = tpl
        .elements()
        .iter()
        .map(|e| TopicPartition { topic: e.topic().to_string(), partition: e.partition() })
        .collect();
    v.sort();
    v
}

impl ReportingContext {
    fn report(&self, consumer: &BaseConsumer<Self>, kind: RebalanceKind, tpl: &TopicPartitionList) {
        let assignment = consumer.assignment().map(|a| partitions_of(&a)).unwrap_or_default();
        let _ = self.events.send(RebalanceEvent {
            at: chrono::Utc::now(),
            group: self.group.clone(),
            instance: self.instance.clone(),
            member_id: super::member_id(consumer),
            kind,
            partitions: partitions_of(tpl),
            assignment,
        });
    }
}

impl ConsumerContext for ReportingContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(_) = rebalance {
            // Offsets stored for the partitions we are about to lose are committed now, so the
            // next owner starts exactly after the last event whose work is durable.
            if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
                tracing::debug!(error = %e, "commit on revoke (nothing stored yet?)");
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => self.report(consumer, RebalanceKind::Assigned, tpl),
            Rebalance::Revoke(tpl) => {
                // SAFETY: the native handle is valid for the duration of the callback.
                let lost = unsafe { rdkafka::bindings::rd_kafka_assignment_lost(consumer.client().native_ptr()) } != 0;
                let kind = if lost { RebalanceKind::Lost } else { RebalanceKind::Revoked };
                self.report(consumer, kind, tpl)
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
    }
}

pub use chat4all_contract::group::{ConsumerTuning, GroupProtocol};

/// Settings of a batch consumer.
pub struct ConsumerSpec<'a> {
    pub bootstrap: &'a str,
    pub group: &'a str,
    pub instance: &'a str,
    pub topics: &'a [&'a str],
    pub protocol: GroupProtocol,
    /// Session, heartbeat and assignor apply to the classic protocol only (KIP-848 members get
    /// them from the broker); the metadata refresh to both.
    pub tuning: &'a ConsumerTuning,
}

pub struct BatchConsumer {
    inner: StreamConsumer<ReportingContext>,
}

impl BatchConsumer {
    /// Joins the group; every rebalance is reported on `events`.
    pub fn subscribe(spec: &ConsumerSpec<'_>, events: mpsc::UnboundedSender<RebalanceEvent>) -> anyhow::Result<Self> {
        let ctx = ReportingContext { group: spec.group.into(), instance: spec.instance.into(), events };
        let mut cfg: ClientConfig = super::base_config(spec.bootstrap, spec.instance);
        cfg.set("group.id", spec.group)
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            // Offsets are stored by us, only once the work for an event is recorded.
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("topic.metadata.refresh.interval.ms", spec.tuning.metadata_refresh_ms.to_string());
        match spec.protocol {
            GroupProtocol::Classic => {
                cfg.set("session.timeout.ms", spec.tuning.session_timeout_ms.to_string())
                    .set("heartbeat.interval.ms", spec.tuning.heartbeat_interval_ms.to_string())
                    .set("partition.assignment.strategy", &spec.tuning.assignment_strategy);
            }
            // librdkafka refuses the classic session settings with KIP-848: the broker's
            // group.consumer.* settings apply, and the broker's assignor assigns.
            GroupProtocol::Consumer => {
                cfg.set("group.protocol", "consumer");
            }
        }
        let inner: StreamConsumer<ReportingContext> =
            cfg.create_with_context(ctx).context("creating Kafka consumer")?;
        inner.subscribe(spec.topics).context("subscribing")?;
        Ok(Self { inner })
    }

    /// Waits for at least one message (or shutdown), then takes what else is ready, up to `max`.
    /// Only under load (at least [`LINGER_FROM`] records were ready at once) does it wait up to
    /// `linger` for more: a lone record goes on at once, so a quiet pipeline pays no linger per
    /// stage, and a busy one still gets its big batches. Returns an empty batch on shutdown.
    pub async fn next_batch(&self, max: usize, linger: Duration, shutdown: &Shutdown) -> Vec<OwnedMessage> {
        let mut batch = Vec::new();
        loop {
            tokio::select! {
                r = self.inner.recv() => match r {
                    Ok(m) => { batch.push(m.detach()); break; }
                    Err(e) => {
                        tracing::warn!(error = %e, "consume error");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                },
                _ = shutdown.wait() => return batch,
            }
        }
        // What is ready now (a zero timeout still polls the receive once).
        while batch.len() < max {
            match tokio::time::timeout(Duration::ZERO, self.inner.recv()).await {
                Ok(Ok(m)) => batch.push(m.detach()),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "consume error");
                    return batch;
                }
                Err(_) => break,
            }
        }
        if batch.len() < LINGER_FROM {
            return batch;
        }
        let deadline = tokio::time::Instant::now() + linger;
        while batch.len() < max {
            match tokio::time::timeout_at(deadline, self.inner.recv()).await {
                Ok(Ok(m)) => batch.push(m.detach()),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "consume error");
                    break;
                }
                Err(_) => break,
            }
        }
        batch
    }

    /// Marks every message of `batch` as done: the next owner starts after them.
    pub fn store(&self, batch: &[OwnedMessage]) -> anyhow::Result<()> {
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), offset) in next_offsets(batch) {
            tpl.add_partition_offset(topic, partition, Offset::Offset(offset))?;
        }
        match self.inner.store_offsets(&tpl) {
            Ok(()) => Ok(()),
            // The partition was revoked meanwhile: its next owner redoes the batch (dedup'd).
            Err(e) => Err(anyhow::Error::new(e).context("storing offsets")),
        }
    }

    /// Commits what was stored and leaves the group (a planned leave rebalances at once).
    pub fn close(self) {
        if let Err(e) = self.inner.commit_consumer_state(CommitMode::Sync) {
            tracing::debug!(error = %e, "final commit");
        }
        self.inner.unsubscribe();
        drop(self.inner);
    }
}

/// Per partition of `batch`, the offset to store: one past its highest record (Kafka's committed
/// offset is the next record to read), whatever order the records came in.
fn next_offsets(batch: &[OwnedMessage]) -> BTreeMap<(&str, i32), i64> {
    let mut next: BTreeMap<(&str, i32), i64> = BTreeMap::new();
    for m in batch {
        let e = next.entry((m.topic(), m.partition())).or_insert(0);
        *e = (*e).max(m.offset() + 1);
    }
    next
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::Timestamp;

    fn record(topic: &str, partition: i32, offset: i64) -> OwnedMessage {
        OwnedMessage::new(None, None, topic.to_string(), Timestamp::NotAvailable, partition, offset, None)
    }

    #[test]
    fn the_stored_offset_is_one_past_each_partitions_highest_record() {
        let batch = [
            record("chat-events", 0, 7),
            record("chat-events", 1, 3),
            record("chat-events", 0, 9),
            record("chat-events", 0, 8),
            record("status-updates", 0, 41),
        ];
        let next = next_offsets(&batch);
        assert_eq!(
            next.into_iter().collect::<Vec<_>>(),
            [(("chat-events", 0), 10), (("chat-events", 1), 4), (("status-updates", 0), 42)]
        );
    }

    #[test]
    fn an_empty_batch_stores_nothing() {
        assert!(next_offsets(&[]).is_empty());
    }
}
