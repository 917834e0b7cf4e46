//! The Kafka cluster as an operator reads it: brokers (alive or not, the active controller,
//! partitions led) and every partition's leader, replicas and in-sync replicas, from Metadata and
//! DescribeQuorum. `chat4allctl brokers`, `topics describe`, the exporter's broker series and the
//! dashboard's brokers pane all read this one view.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::kafka::Observer;
use crate::output::{or_dash, Table};
use crate::wire::{self, Cluster, Quorum};

/// One broker. A dead one is still listed: Metadata leaves it out, but it is a voter of the
/// quorum or named in a replica list.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Broker {
    pub id: i32,
    /// `host:port` of its client listener; None for a broker Metadata does not list (dead).
    pub address: Option<String>,
    pub rack: Option<String>,
    /// The active controller (leader of the metadata quorum).
    pub controller: bool,
    /// A voter of the controller quorum.
    pub voter: bool,
    pub alive: bool,
    /// Partitions (every topic, internal ones included) it leads.
    pub leads: usize,
    /// Partition replicas it is assigned.
    pub replicas: usize,
}

/// One partition, as `kafka-topics --describe` prints it plus our columns.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Partition {
    pub topic: String,
    #[serde(flatten)]
    pub replicas: wire::Replicas,
    /// No leader: nothing can be read or written.
    pub offline: bool,
    /// Fewer in-sync replicas than replicas.
    pub under_replicated: bool,
    /// The leader is the preferred one (the first replica).
    pub preferred_leader: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterView {
    /// Node id of the active controller; None when DescribeQuorum has no leader or is refused.
    pub controller: Option<i32>,
    pub brokers: Vec<Broker>,
    pub partitions: Vec<Partition>,
}

impl ClusterView {
    pub fn build(cluster: &Cluster, quorum: Option<&Quorum>) -> Self {
        let alive: BTreeSet<i32> = cluster.brokers.iter().map(|(id, _)| *id).collect();
        let mut ids = alive.clone();
        let voters: BTreeSet<i32> = quorum.map(|q| q.voters.iter().copied().collect()).unwrap_or_default();
        ids.extend(&voters);
        let controller = quorum.map(|q| q.leader).filter(|l| *l >= 0);
        let mut partitions = Vec::new();
        for t in &cluster.topics {
            for r in &t.replicas {
                ids.extend(&r.replicas);
                partitions.push(Partition {
                    topic: t.name.clone(),
                    offline: r.leader < 0,
                    under_replicated: r.isr.len() < r.replicas.len(),
                    preferred_leader: r.leader >= 0 && r.replicas.first() == Some(&r.leader),
                    replicas: r.clone(),
                });
            }
        }
        partitions.sort_by(|a, b| (&a.topic, a.replicas.partition).cmp(&(&b.topic, b.replicas.partition)));
        let brokers = ids
            .into_iter()
            .map(|id| Broker {
                id,
                address: cluster.broker(id).map(str::to_string),
                rack: cluster.racks.get(&id).cloned(),
                controller: controller == Some(id),
                voter: voters.contains(&id),
                alive: alive.contains(&id),
                leads: partitions.iter().filter(|p| p.replicas.leader == id).count(),
                replicas: partitions.iter().filter(|p| p.replicas.replicas.contains(&id)).count(),
            })
            .collect();
        Self { controller, brokers, partitions }
    }

    /// The partitions of `topic`.
    pub fn topic<'a>(&'a self, topic: &'a str) -> impl Iterator<Item = &'a Partition> + 'a {
        self.partitions.iter().filter(move |p| p.topic == topic)
    }

    /// The leader of `topic`-`partition`, if it has one.
    pub fn leader_of(&self, topic: &str, partition: i32) -> Option<i32> {
        self.topic(topic).find(|p| p.replicas.partition == partition).map(|p| p.replicas.leader).filter(|l| *l >= 0)
    }

    pub fn under_replicated(&self) -> usize {
        self.partitions.iter().filter(|p| p.under_replicated).count()
    }
}

/// Reads the cluster over the wire (Metadata from the first broker of `observer`'s bootstrap that
/// answers; DescribeQuorum from a live broker, which forwards it to the active controller).
pub async fn observe(observer: Arc<Observer>, timeout: Duration) -> anyhow::Result<ClusterView> {
    tokio::task::spawn_blocking(move || {
        let cluster = observer.cluster()?;
        let quorum = cluster.brokers.iter().find_map(|(_, addr)| match wire::describe_quorum(addr, timeout) {
            Ok(q) => Some(q),
            Err(e) => {
                tracing::debug!(error = %e, "DescribeQuorum");
                None
            }
        });
        Ok(ClusterView::build(&cluster, quorum.as_ref()))
    })
    .await?
}

/// The brokers as `chat4allctl brokers` and the dashboard's brokers pane print them, with a
/// summary line of the partitions.
pub fn brokers_table(v: &ClusterView) -> String {
    let mut t = Table::new(&["ID", "ADDRESS", "RACK", "CONTROLLER", "ALIVE", "LEADS", "REPLICAS"]);
    for b in &v.brokers {
        t.row(vec![
            b.id.to_string(),
            or_dash(b.address.as_deref()),
            or_dash(b.rack.as_deref()),
            role(b).into(),
            if b.alive { "yes" } else { "NO" }.into(),
            b.leads.to_string(),
            b.replicas.to_string(),
        ]);
    }
    let mut out = t.render();
    let under = v.under_replicated();
    let offline = v.partitions.iter().filter(|p| p.offline).count();
    out.push_str(&format!(
        "{} partitions: {under} under-replicated, {offline} offline{}\n",
        v.partitions.len(),
        if v.controller.is_none() { "; NO active controller" } else { "" }
    ));
    out
}

/// `active` for the quorum's leader, `voter` for the other controllers, `-` for a broker only.
fn role(b: &Broker) -> &'static str {
    match (b.controller, b.voter) {
        (true, _) => "active",
        (false, true) => "voter",
        _ => "-",
    }
}

/// Partitions as `topics describe` and the dashboard's brokers pane print them.
pub fn partitions_table(partitions: &[&Partition]) -> String {
    let mut t = Table::new(&["TOPIC", "PARTITION", "LEADER", "REPLICAS", "ISR", "OFFLINE", "STATE", "PREFERRED"]);
    for p in partitions {
        let r = &p.replicas;
        let state = match (p.offline, p.under_replicated) {
            (true, _) => "OFFLINE",
            (false, true) => "UNDER-REPLICATED",
            _ => "ok",
        };
        t.row(vec![
            p.topic.clone(),
            r.partition.to_string(),
            if r.leader < 0 { "none".into() } else { r.leader.to_string() },
            ids(&r.replicas),
            ids(&r.isr),
            ids(&r.offline),
            state.into(),
            if p.preferred_leader { "yes" } else { "no" }.into(),
        ]);
    }
    t.render()
}

fn ids(v: &[i32]) -> String {
    if v.is_empty() {
        return "-".into();
    }
    v.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Replicas, TopicMeta};

    fn replicas(partition: i32, leader: i32, replicas: &[i32], isr: &[i32]) -> Replicas {
        Replicas { partition, leader, replicas: replicas.to_vec(), isr: isr.to_vec(), offline: vec![] }
    }

    /// Broker 3 is dead: out of Metadata, out of every ISR, partition 1 moved to broker 1.
    fn cluster() -> Cluster {
        let reps = vec![replicas(0, 1, &[1, 2, 3], &[1, 2]), replicas(1, 1, &[3, 1, 2], &[1, 2])];
        Cluster {
            brokers: vec![(1, "h:1".into()), (2, "h:2".into())],
            topics: vec![TopicMeta {
                name: "chat-events".into(),
                internal: false,
                partitions: reps.iter().map(|r| (r.partition, r.leader)).collect(),
                replicas: reps,
            }],
            racks: Default::default(),
        }
    }

    #[test]
    fn a_dead_broker_is_listed_as_not_alive() {
        let q = Quorum { leader: 2, leader_epoch: 3, voters: vec![1, 2, 3], observers: vec![] };
        let v = ClusterView::build(&cluster(), Some(&q));
        let ids: Vec<(i32, bool, bool, usize)> =
            v.brokers.iter().map(|b| (b.id, b.alive, b.controller, b.leads)).collect();
        assert_eq!(ids, vec![(1, true, false, 2), (2, true, true, 0), (3, false, false, 0)]);
        assert_eq!(v.brokers[2].address, None);
        assert_eq!(v.brokers[2].replicas, 2);
        assert_eq!(v.under_replicated(), 2);
        let p: Vec<(bool, bool)> = v.topic("chat-events").map(|p| (p.under_replicated, p.preferred_leader)).collect();
        assert_eq!(p, vec![(true, true), (true, false)]);
        assert_eq!(v.leader_of("chat-events", 1), Some(1));
    }

    #[test]
    fn without_the_quorum_only_replica_lists_name_the_dead() {
        let v = ClusterView::build(&cluster(), None);
        assert_eq!(v.controller, None);
        assert_eq!(v.brokers.len(), 3);
        assert!(!v.brokers[2].alive && !v.brokers[2].voter);
    }

    #[test]
    fn a_partition_without_leader_is_offline() {
        let mut c = cluster();
        c.topics[0].replicas[0] = replicas(0, -1, &[3], &[]);
        let v = ClusterView::build(&c, None);
        let p = v.topic("chat-events").next().unwrap();
        assert!(p.offline && p.under_replicated && !p.preferred_leader);
        assert_eq!(v.leader_of("chat-events", 0), None);
    }
}
