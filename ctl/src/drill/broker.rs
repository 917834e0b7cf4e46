//! `drill kill-broker`'s fault on a cluster (`up --brokers 3`): SIGKILL the broker leading a
//! partition, time the leader election from the cluster's Metadata, start it again after the
//! outage and time until every partition is fully in sync. The traffic, the counts and the
//! report are the drill's own (`run`).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::time::Instant;

use crate::cluster::{self, ClusterView};
use crate::kafka::Observer;
use crate::runtime::{Runtime, Verb};

/// How often the cluster is read while waiting for an election or the ISR.
const POLL: Duration = Duration::from_millis(100);
/// Longest wait for an election or a full ISR before the drill goes on without the figure.
const WAIT: Duration = Duration::from_secs(60);

/// What the kill of a partition leader did to the cluster.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaderKill {
    /// `chat-events-0`.
    pub partition: String,
    /// The broker instance killed (`broker-2`) and its node id.
    pub victim: String,
    pub victim_id: i32,
    pub killed_at: DateTime<Utc>,
    /// The partition's new leader and when Metadata first named it.
    pub new_leader: Option<i32>,
    pub elected_at: Option<DateTime<Utc>>,
    /// Kill -> a new leader in Metadata.
    pub leader_election_ms: Option<i64>,
    /// Kill -> every partition of the cluster back to a full ISR (the broker was started again).
    pub under_replicated_ms: Option<i64>,
    /// Partitions under-replicated while the victim was down.
    pub under_replicated_partitions: usize,
}

/// `topic-N` as (topic, N).
pub fn parse_partition(s: &str) -> Result<(String, i32), String> {
    let bad = || format!("{s:?} is not TOPIC-PARTITION (e.g. chat-events-0)");
    let (topic, n) = s.rsplit_once('-').ok_or_else(bad)?;
    let n: i32 = n.parse().map_err(|_| bad())?;
    if topic.is_empty() || n < 0 {
        return Err(bad());
    }
    Ok((topic.to_string(), n))
}

async fn read(observer: &Arc<Observer>, timeout: Duration) -> anyhow::Result<ClusterView> {
    cluster::observe(observer.clone(), timeout).await
}

/// Kills the leader of `partition` (`chat-events-0`), keeps it down for `down`, starts it again.
/// Returns when it is started; the ISR wait goes on in the returned task.
pub async fn kill_leader(
    rt: &dyn Runtime,
    bootstrap: &str,
    timeout: Duration,
    partition: &str,
    down: Duration,
) -> anyhow::Result<(LeaderKill, DateTime<Utc>, tokio::task::JoinHandle<LeaderKill>)> {
    let (topic, n) = parse_partition(partition).map_err(crate::error::usage)?;
    let observer = Arc::new(Observer::new(bootstrap, timeout)?);
    let before = read(&observer, timeout).await.context("reading the cluster")?;
    if before.brokers.len() < 3 {
        return Err(crate::error::usage(format!(
            "kill-broker needs a cluster (`up --brokers 3`); this one has {} broker(s)",
            before.brokers.len()
        )));
    }
    let leader = before
        .leader_of(&topic, n)
        .ok_or_else(|| anyhow::anyhow!("{partition} has no leader (or no such partition)"))?;
    let victim = format!("broker-{leader}");
    let killed_at = Utc::now();
    rt.act(&victim, Verb::Kill).await.with_context(|| format!("killing {victim}"))?;
    let started = Instant::now();
    let mut k = LeaderKill {
        partition: partition.into(),
        victim: victim.clone(),
        victim_id: leader,
        killed_at,
        new_leader: None,
        elected_at: None,
        leader_election_ms: None,
        under_replicated_ms: None,
        under_replicated_partitions: 0,
    };
    while started.elapsed() < WAIT {
        if let Ok(v) = read(&observer, timeout).await {
            k.under_replicated_partitions = k.under_replicated_partitions.max(v.under_replicated());
            if let Some(l) = v.leader_of(&topic, n).filter(|l| *l != leader) {
                let at = Utc::now();
                k.new_leader = Some(l);
                k.elected_at = Some(at);
                k.leader_election_ms = Some((at - killed_at).num_milliseconds());
                break;
            }
        }
        tokio::time::sleep(POLL).await;
    }
    tokio::time::sleep(down.saturating_sub(started.elapsed())).await;
    rt.act(&victim, Verb::Start).await.with_context(|| format!("starting {victim} again"))?;
    let back = Utc::now();
    let first = k.clone();
    let isr = tokio::spawn(async move {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if let Ok(v) = read(&observer, timeout).await {
                if v.under_replicated() == 0 && v.brokers.iter().all(|b| b.alive) {
                    k.under_replicated_ms = Some((Utc::now() - k.killed_at).num_milliseconds());
                    break;
                }
            }
            tokio::time::sleep(POLL).await;
        }
        k
    });
    Ok((first, back, isr))
}

/// The broker instances of the stack, in node order (`broker`, or `broker-1..3` on a cluster).
pub async fn broker_instances(rt: &dyn Runtime) -> anyhow::Result<Vec<String>> {
    let mut v: Vec<String> = rt.list().await?.into_iter().filter(|i| i.service == "broker").map(|i| i.name).collect();
    v.sort();
    Ok(v)
}

/// `drill broker-restart` on a cluster: one node at a time, stop (SIGTERM: a controlled shutdown
/// moves its leaderships first), start, and wait until every partition's ISR is full again before
/// the next. Returns when the last node is back and in sync, with the ISR wait of each node (ms).
pub async fn rolling_restart(
    rt: &dyn Runtime,
    bootstrap: &str,
    timeout: Duration,
    nodes: &[String],
) -> anyhow::Result<Vec<(String, Option<i64>)>> {
    let observer = Arc::new(Observer::new(bootstrap, timeout)?);
    let mut steps = Vec::new();
    for name in nodes {
        rt.act(name, Verb::Stop).await.with_context(|| format!("stopping {name}"))?;
        rt.act(name, Verb::Start).await.with_context(|| format!("starting {name}"))?;
        let started = Instant::now();
        let mut in_sync = None;
        while started.elapsed() < WAIT {
            if let Ok(v) = read(&observer, timeout).await {
                if v.under_replicated() == 0 && v.brokers.iter().all(|b| b.alive) {
                    in_sync = Some(started.elapsed().as_millis() as i64);
                    break;
                }
            }
            tokio::time::sleep(POLL).await;
        }
        tracing::info!(node = %name, in_sync_ms = ?in_sync, "rolled");
        steps.push((name.clone(), in_sync));
        if in_sync.is_none() {
            anyhow::bail!("{name} restarted but the ISRs were not full within {}s", WAIT.as_secs());
        }
    }
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_topic_dash_number() {
        assert_eq!(parse_partition("chat-events-0"), Ok(("chat-events".into(), 0)));
        assert_eq!(parse_partition("deliveries-whatsapp-2"), Ok(("deliveries-whatsapp".into(), 2)));
        assert!(parse_partition("chat-events").is_err());
        assert!(parse_partition("-1").is_err());
    }
}
