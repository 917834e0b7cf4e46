//! `topics describe [TOPIC...]`: per partition, leader, replicas and ISR as `kafka-topics.sh
//! --describe` prints them, plus whether it is offline, under-replicated, led by its preferred
//! replica.

use std::sync::Arc;

use clap::{Args, Subcommand};
use serde::Serialize;

use super::watch::{self, Render};
use super::Cli;
use chat4all_ctl::cluster::{self, Partition};
use chat4all_ctl::error::usage;
use chat4all_ctl::kafka::Observer;
use chat4all_ctl::output::{self, Format};

#[derive(Debug, Subcommand)]
pub enum TopicsCommand {
    /// Partitions of topics (default: every topic but Kafka's internal ones): leader, replicas,
    /// in-sync replicas, offline / under-replicated, preferred leader.
    Describe(DescribeArgs),
}

#[derive(Debug, Args)]
pub struct DescribeArgs {
    /// Topics to describe, e.g. chat-events.
    pub topics: Vec<String>,
    /// Only partitions with fewer in-sync replicas than replicas (or no leader).
    #[arg(long)]
    pub under_replicated: bool,
}

pub async fn topics(cli: &Cli, cmd: &TopicsCommand) -> anyhow::Result<()> {
    let TopicsCommand::Describe(args) = cmd;
    let mut v = TopicsView {
        observer: super::brokers::observer(cli)?,
        timeout: cli.timeout,
        topics: args.topics.clone(),
        under_replicated: args.under_replicated,
    };
    watch::show(cli, &mut v).await
}

struct TopicsView {
    observer: Arc<Observer>,
    timeout: std::time::Duration,
    topics: Vec<String>,
    under_replicated: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TopicsReport<'a> {
    partitions: Vec<&'a Partition>,
}

impl Render for TopicsView {
    async fn render(&mut self, format: Format) -> anyhow::Result<String> {
        let view = cluster::observe(self.observer.clone(), self.timeout).await?;
        if let Some(missing) = self.topics.iter().find(|t| view.topic(t).next().is_none()) {
            let known: std::collections::BTreeSet<&str> = view.partitions.iter().map(|p| p.topic.as_str()).collect();
            let known: Vec<&str> = known.into_iter().filter(|t| !t.starts_with("__")).collect();
            return Err(usage(format!("no topic {missing:?} (topics: {})", known.join(", "))));
        }
        let partitions: Vec<&Partition> = view
            .partitions
            .iter()
            .filter(
                |p| if self.topics.is_empty() { !p.topic.starts_with("__") } else { self.topics.contains(&p.topic) },
            )
            .filter(|p| !self.under_replicated || p.under_replicated)
            .collect();
        Ok(match format {
            Format::Json => output::json(&TopicsReport { partitions }),
            Format::Table => cluster::partitions_table(&partitions),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat4all_ctl::wire::Replicas;

    #[test]
    fn rows_read_like_kafka_topics() {
        let p = |partition, leader, isr: &[i32]| Partition {
            topic: "chat-events".into(),
            replicas: Replicas { partition, leader, replicas: vec![2, 3, 1], isr: isr.to_vec(), offline: vec![] },
            offline: leader < 0,
            under_replicated: isr.len() < 3,
            preferred_leader: leader == 2,
        };
        let (a, b) = (p(0, 2, &[2, 3, 1]), p(1, 3, &[3, 1]));
        let text = cluster::partitions_table(&[&a, &b]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[1], "chat-events  0          2       2,3,1     2,3,1  -        ok                yes");
        assert_eq!(lines[2], "chat-events  1          3       2,3,1     3,1    -        UNDER-REPLICATED  no");
    }
}
