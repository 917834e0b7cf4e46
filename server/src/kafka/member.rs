//! One batch-consuming group member, the way every consumer of the platform runs (routers on
//! chat-events, connectors on their channel's topic, the message-service on status-updates):
//! join the group with rebalances reported on the ops channel, hand each batch to the
//! service's [`BatchWork`], store its offsets only once the work returned, and leave the group
//! (with a final `left` report) on shutdown.

use std::future::Future;
use std::time::Duration;

use rdkafka::message::OwnedMessage;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{BatchConsumer, ConsumerSpec};
use crate::events::{RebalanceEvent, RebalanceKind};
use crate::metrics::KafkaMetrics;
use crate::retry::Interrupted;
use crate::shutdown::Shutdown;

/// What a service does with one batch. Returns only when the batch's work is durable (the
/// offsets are stored next), or `Interrupted` on shutdown (nothing is stored: the next owner
/// does the batch again, which every service makes harmless).
pub trait BatchWork {
    fn work(&self, batch: &[OwnedMessage], shutdown: &Shutdown) -> impl Future<Output = Result<(), Interrupted>>;
}

/// How batches are taken from the consumer.
#[derive(Debug, Clone, Copy)]
pub struct Batching {
    /// Most records per batch.
    pub max: usize,
    /// How long to wait for more records once the first one arrived.
    pub linger: Duration,
}

pub struct GroupMember {
    consumer: BatchConsumer,
    group: String,
    instance: String,
    events: mpsc::UnboundedSender<RebalanceEvent>,
    reporter: JoinHandle<()>,
}

impl GroupMember {
    /// Subscribes to the group; the member takes part in rebalances from now on.
    pub fn join(spec: &ConsumerSpec<'_>, redis_url: String, metrics: KafkaMetrics) -> anyhow::Result<Self> {
        let (events, rebalances) = mpsc::unbounded_channel::<RebalanceEvent>();
        let consumer = BatchConsumer::subscribe(spec, events.clone())?;
        let reporter = tokio::spawn(crate::ops::run_reporter(redis_url, rebalances, metrics));
        Ok(Self { consumer, group: spec.group.into(), instance: spec.instance.into(), events, reporter })
    }

    /// Works batch after batch until shutdown, then leaves the group.
    pub async fn run(self, work: &impl BatchWork, batching: Batching, shutdown: &Shutdown) {
        while !shutdown.is_triggered() {
            let batch = self.consumer.next_batch(batching.max.max(1), batching.linger, shutdown).await;
            if batch.is_empty() {
                continue;
            }
            if work.work(&batch, shutdown).await.is_err() {
                break;
            }
            if let Err(e) = self.consumer.store(&batch) {
                tracing::warn!(
                    group = %self.group,
                    error = format!("{e:#}"),
                    "offsets not stored; the next owner does the batch again (harmless: deduplicated)"
                );
            }
        }
        self.leave().await;
    }

    /// Commits what was stored, leaves the group and reports it (a planned leave rebalances the
    /// group at once; the ops channel tells the control plane why).
    async fn leave(self) {
        tracing::info!(group = %self.group, "leaving the consumer group");
        self.consumer.close();
        let _ = self.events.send(RebalanceEvent {
            at: chrono::Utc::now(),
            group: self.group,
            instance: self.instance,
            member_id: String::new(),
            kind: RebalanceKind::Left,
            partitions: Vec::new(),
            assignment: Vec::new(),
        });
        // The reporter ends once the last sender (ours and the consumer context's) is gone.
        drop(self.events);
        let _ = tokio::time::timeout(Duration::from_secs(3), self.reporter).await;
    }
}
