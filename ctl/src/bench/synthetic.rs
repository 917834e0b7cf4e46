//! Synthetic consumer groups for the console's own benchmarks (`bench-observe`, the console-at-
//! scale grid): a topic of N partitions with a few records in each, and G groups with offsets
//! committed on every partition (no live members: the groups are `Empty`, as after a deploy).
//! Everything is named under one prefix and removed by [`Synthetic::remove`].

use std::time::Duration;

use anyhow::Context;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;

/// Records written to each partition; groups commit half of them, so every partition has lag.
const RECORDS_PER_PARTITION: i64 = 10;

/// One topic and its groups.
#[derive(Debug, Clone)]
pub struct Synthetic {
    pub topic: String,
    pub partitions: i32,
    pub groups: Vec<String>,
    bootstrap: String,
}

impl Synthetic {
    /// `{prefix}` is the topic, `{prefix}-g1..G` the groups.
    pub fn named(bootstrap: &str, prefix: &str, groups: u32, partitions: i32) -> Self {
        Self {
            topic: prefix.to_owned(),
            partitions,
            groups: (1..=groups).map(|g| format!("{prefix}-g{g}")).collect(),
            bootstrap: bootstrap.to_owned(),
        }
    }

    fn config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap).set("client.id", "chat4allctl-bench").set("log_level", "3");
        c
    }

    /// Creates the topic (kept if it exists), fills it, commits every group's offsets.
    pub async fn create(&self) -> anyhow::Result<()> {
        let admin: AdminClient<DefaultClientContext> = self.config().create()?;
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let new = NewTopic::new(&self.topic, self.partitions, TopicReplication::Fixed(-1));
        for r in admin.create_topics([&new], &opts).await? {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((t, e)) => anyhow::bail!("creating {t}: {e}"),
            }
        }
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.fill_and_commit()).await.context("the setup thread")?
    }

    fn fill_and_commit(&self) -> anyhow::Result<()> {
        let producer: ThreadedProducer<DefaultProducerContext> = self.config().create()?;
        for p in 0..self.partitions {
            for i in 0..RECORDS_PER_PARTITION {
                let payload = format!("record {i}");
                // A partition just created may not have a leader yet: the send queues until it has.
                producer
                    .send(BaseRecord::<(), str>::to(&self.topic).partition(p).payload(&payload))
                    .map_err(|(e, _)| e)?;
            }
        }
        producer.flush(Duration::from_secs(60)).context("writing the benchmark records")?;
        let mut tpl = TopicPartitionList::new();
        for p in 0..self.partitions {
            tpl.add_partition_offset(&self.topic, p, Offset::Offset(RECORDS_PER_PARTITION / 2))?;
        }
        for g in &self.groups {
            let consumer: BaseConsumer = self.config().set("group.id", g).create()?;
            consumer.commit(&tpl, CommitMode::Sync).with_context(|| format!("committing offsets of {g}"))?;
        }
        Ok(())
    }

    /// Deletes the groups and the topic; what is already gone is not an error.
    pub async fn remove(&self) -> anyhow::Result<()> {
        let admin: AdminClient<DefaultClientContext> = self.config().create()?;
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let groups: Vec<&str> = self.groups.iter().map(String::as_str).collect();
        for chunk in groups.chunks(100) {
            for r in admin.delete_groups(chunk, &opts).await? {
                match r {
                    Ok(_) | Err((_, RDKafkaErrorCode::GroupIdNotFound)) => {}
                    Err((g, e)) => anyhow::bail!("deleting group {g}: {e}"),
                }
            }
        }
        for r in admin.delete_topics(&[self.topic.as_str()], &opts).await? {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
                Err((t, e)) => anyhow::bail!("deleting topic {t}: {e}"),
            }
        }
        Ok(())
    }
}
