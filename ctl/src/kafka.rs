//! Reads of the broker through the Kafka protocol: groups, members, committed and log-end
//! offsets, lag. Computed exactly as `kafka-consumer-groups --describe` does.
//!
//! Groups come from ListGroups, then DescribeGroups for classic groups and
//! ConsumerGroupDescribe for KIP-848 (`group.protocol=consumer`) groups, which DescribeGroups
//! does not see; both at the group's coordinator.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientConfig;
use serde::Serialize;

use crate::wire::{self, WireError};

/// Which group protocol a group speaks: the classic rebalance protocol, or KIP-848's
/// broker-driven one (`group.protocol=consumer`).
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum GroupType {
    #[default]
    Classic,
    Consumer,
}

impl std::fmt::Display for GroupType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            GroupType::Classic => "classic",
            GroupType::Consumer => "consumer",
        })
    }
}

/// One member of a group as the broker reports it.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    pub member_id: String,
    /// Static membership (`group.instance.id`), when the member has one.
    pub group_instance_id: Option<String>,
    pub client_id: String,
    /// As the broker reports it, e.g. `/127.0.0.1`.
    pub host: String,
    /// KIP-848 groups: the member's epoch.
    pub member_epoch: Option<i32>,
    /// Partitions the member owns now (classic groups: from its assignment bytes); None when the
    /// broker does not say.
    pub assignment: Option<Vec<(String, i32)>>,
    /// KIP-848 groups: what the coordinator wants the member to own.
    pub target_assignment: Option<Vec<(String, i32)>>,
    /// KIP-848 groups: the member is still moving to its target (current and target assignment
    /// differ, or its epoch is not the target assignment's).
    pub reconciling: bool,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GroupInfo {
    pub group: String,
    pub group_type: GroupType,
    pub state: String,
    /// The assignor: the classic group's agreed protocol (e.g. `cooperative-sticky`), or the
    /// KIP-848 group's server-side assignor (e.g. `uniform`).
    pub protocol: String,
    /// KIP-848 groups: the group epoch and the epoch of its target assignment.
    pub group_epoch: Option<i32>,
    pub assignment_epoch: Option<i32>,
    /// The group coordinator, `host:port`.
    pub coordinator: Option<String>,
    pub members: Vec<Member>,
}

impl GroupInfo {
    /// Partition -> member id, from the broker's assignments.
    pub fn assigned(&self) -> BTreeMap<(String, i32), &Member> {
        let mut out = BTreeMap::new();
        for m in &self.members {
            for tp in m.assignment.iter().flatten() {
                out.insert(tp.clone(), m);
            }
        }
        out
    }

    /// Members still reconciling (KIP-848 groups; a classic group has none).
    pub fn reconciling(&self) -> usize {
        self.members.iter().filter(|m| m.reconciling).count()
    }

    fn from_classic(g: wire::ClassicGroup, coordinator: &str) -> Self {
        GroupInfo {
            group: g.group,
            group_type: GroupType::Classic,
            state: g.state,
            protocol: g.protocol,
            group_epoch: None,
            assignment_epoch: None,
            coordinator: Some(coordinator.to_string()),
            members: g
                .members
                .into_iter()
                .map(|m| Member {
                    member_id: m.member_id,
                    group_instance_id: m.group_instance_id,
                    client_id: m.client_id,
                    host: m.client_host,
                    member_epoch: None,
                    assignment: m.assignment,
                    target_assignment: None,
                    reconciling: false,
                })
                .collect(),
        }
    }

    fn from_consumer(g: wire::ConsumerGroup, coordinator: &str) -> Self {
        let assignment_epoch = g.assignment_epoch;
        GroupInfo {
            group: g.group,
            group_type: GroupType::Consumer,
            state: g.state,
            protocol: g.assignor,
            group_epoch: Some(g.group_epoch),
            assignment_epoch: Some(g.assignment_epoch),
            coordinator: Some(coordinator.to_string()),
            members: g
                .members
                .into_iter()
                .map(|m| Member {
                    reconciling: m.reconciling(assignment_epoch),
                    member_id: m.member_id,
                    group_instance_id: m.instance_id,
                    client_id: m.client_id,
                    host: m.client_host,
                    member_epoch: Some(m.member_epoch),
                    assignment: Some(m.assignment),
                    target_assignment: Some(m.target_assignment),
                })
                .collect(),
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PartitionOffsets {
    pub topic: String,
    pub partition: i32,
    /// Committed offset of the group; None when nothing is committed (`-`).
    pub committed: Option<i64>,
    pub log_end: i64,
    /// log_end - committed; None when nothing is committed.
    pub lag: Option<i64>,
}

pub struct Observer {
    bootstrap: String,
    timeout: Duration,
    /// librdkafka, for the fallbacks only (created on first use: its start and its metadata
    /// round trips cost a describe more than all our requests together).
    client: OnceLock<BaseConsumer>,
    /// One offset reader per group, kept so a refresh does not reconnect (fallback path).
    readers: Mutex<HashMap<String, Arc<BaseConsumer>>>,
    /// Group -> coordinator address, for OffsetFetch over the wire.
    coordinators: Mutex<HashMap<String, String>>,
}

fn config(bootstrap: &str) -> ClientConfig {
    client_config(bootstrap, "chat4allctl")
}

/// The control plane's librdkafka settings: quiet, and quick to reconnect after a broker restart.
pub fn client_config(bootstrap: &str, client_id: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("client.id", client_id)
        .set("log_level", "3")
        .set("reconnect.backoff.max.ms", "1000");
    c
}

/// Each group's answer to a describe: described, None (unknown or dead), or its error.
type Answers = Vec<(String, Result<Option<GroupInfo>, WireError>)>;

impl Observer {
    pub fn new(bootstrap: &str, timeout: Duration) -> anyhow::Result<Self> {
        Ok(Self {
            bootstrap: bootstrap.into(),
            timeout,
            client: OnceLock::new(),
            readers: Mutex::new(HashMap::new()),
            coordinators: Mutex::new(HashMap::new()),
        })
    }

    /// The librdkafka client of the fallbacks.
    fn client(&self) -> anyhow::Result<&BaseConsumer> {
        if let Some(c) = self.client.get() {
            return Ok(c);
        }
        let c: BaseConsumer = config(&self.bootstrap).create().context("creating Kafka client")?;
        let _ = self.client.set(c);
        self.client.get().context("Kafka client")
    }

    /// Brokers and topics: Metadata from the first bootstrap broker that answers, librdkafka's
    /// metadata when none does over the wire (e.g. a cluster that needs TLS).
    pub fn cluster(&self) -> anyhow::Result<wire::Cluster> {
        for addr in self.bootstrap.split(',').map(str::trim).filter(|a| !a.is_empty()) {
            match wire::cluster(addr, self.timeout) {
                Ok(c) => return Ok(c),
                Err(e) => tracing::debug!(error = %e, "Metadata over the wire failed"),
            }
        }
        let md = self
            .client()?
            .fetch_metadata(None, self.timeout)
            .with_context(|| format!("broker {} unreachable", self.bootstrap))?;
        Ok(wire::Cluster {
            brokers: md.brokers().iter().map(|b| (b.id(), format!("{}:{}", b.host(), b.port()))).collect(),
            topics: md
                .topics()
                .iter()
                .map(|t| wire::TopicMeta {
                    name: t.name().to_string(),
                    internal: t.name().starts_with("__"),
                    partitions: t.partitions().iter().map(|p| (p.id(), p.leader())).collect(),
                    replicas: t
                        .partitions()
                        .iter()
                        .map(|p| wire::Replicas {
                            partition: p.id(),
                            leader: p.leader(),
                            replicas: p.replicas().to_vec(),
                            isr: p.isr().to_vec(),
                            offline: vec![],
                        })
                        .collect(),
                })
                .collect(),
            racks: Default::default(),
        })
    }

    /// Topic -> partition count, internal topics left out.
    pub fn topics(&self) -> anyhow::Result<Vec<(String, i32)>> {
        let mut v: Vec<(String, i32)> = self
            .cluster()?
            .topics
            .into_iter()
            .filter(|t| !t.internal && !t.name.starts_with("__"))
            .map(|t| (t.name, t.partitions.len() as i32))
            .collect();
        v.sort();
        Ok(v)
    }

    /// Every broker of the cluster, `host:port` (the bootstrap's first when metadata fails).
    fn brokers(&self) -> Vec<String> {
        match self.cluster() {
            Ok(c) if !c.brokers.is_empty() => c.brokers.into_iter().map(|(_, a)| a).collect(),
            _ => vec![self.first_broker()],
        }
    }

    /// Every consumer group (both protocols), described.
    pub fn groups(&self) -> anyhow::Result<Vec<GroupInfo>> {
        let mut listed: BTreeMap<String, wire::ListedGroup> = BTreeMap::new();
        // A broker of a cluster that just died stays in Metadata until the controller fences
        // it; the groups it coordinated are moving to the survivors, which list them.
        let mut failed = None;
        let mut answered = false;
        for broker in self.brokers() {
            match wire::list_groups(&broker, self.timeout) {
                Ok(groups) => {
                    answered = true;
                    listed.extend(groups.into_iter().map(|g| (g.group.clone(), g)));
                }
                Err(e) => failed = Some(anyhow::Error::new(e).context(format!("listing groups on {broker}"))),
            }
        }
        if let (false, Some(e)) = (answered, failed) {
            return Err(e);
        }
        let names: Vec<String> = listed.keys().cloned().collect();
        self.learn_coordinators(&names);
        // One DescribeGroups (or ConsumerGroupDescribe) per coordinator and protocol for all its
        // groups; a group whose answer is not a plain success is asked again on its own.
        let mut batches: BTreeMap<(String, GroupType), Vec<String>> = BTreeMap::new();
        for g in listed.values() {
            let kind = if g.group_type == "consumer" { GroupType::Consumer } else { GroupType::Classic };
            let coordinator = self.coordinator(&g.group)?;
            batches.entry((coordinator, kind)).or_default().push(g.group.clone());
        }
        let mut out = Vec::new();
        let mut one_by_one: Vec<(String, GroupType)> = Vec::new();
        for ((coordinator, kind), names) in batches {
            match self.describe_at(&coordinator, kind, &names) {
                Ok(answers) => {
                    for (group, answer) in answers {
                        match answer {
                            Ok(info) => out.extend(info),
                            Err(_) => one_by_one.push((group, kind)),
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, coordinator, "batched describe failed; asking per group");
                    one_by_one.extend(names.into_iter().map(|g| (g, kind)));
                }
            }
        }
        for (group, kind) in one_by_one {
            if let Some(info) = self.describe_as(&group, kind)? {
                out.push(info);
            }
        }
        out.sort_by(|a, b| a.group.cmp(&b.group));
        Ok(out)
    }

    /// One group, whichever protocol it speaks; None when the broker does not know it.
    pub fn group(&self, group: &str) -> anyhow::Result<Option<GroupInfo>> {
        if let Some(g) = self.describe_as(group, GroupType::Classic)? {
            return Ok(Some(g));
        }
        self.describe_as(group, GroupType::Consumer)
    }

    /// DescribeGroups (classic) or ConsumerGroupDescribe (consumer) of `group`; None when the
    /// coordinator does not know a group of that type by that name.
    fn describe_as(&self, group: &str, kind: GroupType) -> anyhow::Result<Option<GroupInfo>> {
        let names = [group.to_string()];
        let found = self.at_coordinator(group, |coordinator| {
            self.describe_at(coordinator, kind, &names)?.into_iter().next().map_or(Ok(None), |(_, answer)| answer)
        });
        found.with_context(|| format!("describing {kind} group {group}"))
    }

    /// DescribeGroups (classic) or ConsumerGroupDescribe (consumer) of `groups` at their
    /// coordinator, in one request; each group's answer: described, None when the coordinator
    /// does not know a live group of that type by that name, or its error.
    fn describe_at(&self, coordinator: &str, kind: GroupType, groups: &[String]) -> Result<Answers, WireError> {
        let failed =
            |group: &str, code, message| WireError::kafka(coordinator, code, Some(format!("group {group}")), message);
        Ok(match kind {
            GroupType::Classic => wire::describe_groups(coordinator, groups, self.timeout)?
                .into_iter()
                .map(|g| {
                    let name = g.group.clone();
                    let answer = match g.error_code {
                        // A KIP-848 group, seen through the classic API.
                        wire::code::GROUP_ID_NOT_FOUND => Ok(None),
                        0 if g.state == "Dead" => Ok(None),
                        0 => Ok(Some(GroupInfo::from_classic(g, coordinator))),
                        code => Err(failed(&name, code, None)),
                    };
                    (name, answer)
                })
                .collect(),
            GroupType::Consumer => wire::consumer_group_describe(coordinator, groups, self.timeout)?
                .into_iter()
                .map(|g| {
                    let name = g.group.clone();
                    let answer = match g.error_code {
                        wire::code::GROUP_ID_NOT_FOUND => Ok(None),
                        0 => Ok(Some(GroupInfo::from_consumer(g, coordinator))),
                        code => Err(failed(&name, code, g.error_message)),
                    };
                    (name, answer)
                })
                .collect(),
        })
    }

    /// Runs `f` at the coordinator of `group`; finds the coordinator again and retries once when
    /// it moved.
    fn at_coordinator<T>(&self, group: &str, f: impl Fn(&str) -> Result<T, WireError>) -> Result<T, WireError> {
        let first = self.coordinator(group)?;
        match f(&first) {
            Err(e) if wire::is_coordinator_moved(&e) => {
                tracing::debug!(error = %e, group, "coordinator moved; asking again");
                self.coordinators.lock().unwrap_or_else(|e| e.into_inner()).remove(group);
                f(&self.coordinator(group)?)
            }
            done => done,
        }
    }

    /// The coordinator of `group`, cached.
    fn coordinator(&self, group: &str) -> Result<String, WireError> {
        if let Some(c) = self.coordinators.lock().unwrap_or_else(|e| e.into_inner()).get(group) {
            return Ok(c.clone());
        }
        let c = wire::find_coordinator(&self.first_broker(), group, self.timeout)?;
        self.coordinators.lock().unwrap_or_else(|e| e.into_inner()).insert(group.into(), c.clone());
        Ok(c)
    }

    /// Looks up the coordinators of many groups in one request (where the broker batches).
    fn learn_coordinators(&self, groups: &[String]) {
        let missing: Vec<String> = {
            let known = self.coordinators.lock().unwrap_or_else(|e| e.into_inner());
            groups.iter().filter(|g| !known.contains_key(*g)).cloned().collect()
        };
        if missing.is_empty() {
            return;
        }
        match wire::find_coordinators(&self.first_broker(), &missing, self.timeout) {
            Ok(found) => {
                let mut known = self.coordinators.lock().unwrap_or_else(|e| e.into_inner());
                known.extend(found.into_iter().filter_map(|(g, c)| Some((g, c.ok()?))));
            }
            Err(e) => tracing::debug!(error = %e, "FindCoordinator (batch) failed; asking per group"),
        }
    }

    fn reader(&self, group: &str) -> anyhow::Result<Arc<BaseConsumer>> {
        let mut readers = self.readers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = readers.get(group) {
            return Ok(r.clone());
        }
        let consumer: BaseConsumer = config(&self.bootstrap)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()
            .context("creating offset reader")?;
        let consumer = Arc::new(consumer);
        readers.insert(group.to_string(), consumer.clone());
        Ok(consumer)
    }

    /// Committed and log-end offsets of `group` over `topics` (every partition of each).
    pub fn offsets(&self, group: &str, topics: &[(String, i32)]) -> anyhow::Result<Vec<PartitionOffsets>> {
        let wanted: Vec<(String, i32)> =
            topics.iter().flat_map(|(t, n)| (0..*n).map(move |p| (t.clone(), p))).collect();
        let committed = self.committed(group, &wanted)?;
        let ends = self.log_ends(&wanted)?;
        let mut out = Vec::new();
        for (topic, partition) in wanted {
            let committed = committed.get(&(topic.clone(), partition)).copied().flatten();
            let high = ends.get(&(topic.clone(), partition)).copied().unwrap_or(0);
            out.push(PartitionOffsets {
                topic,
                partition,
                committed,
                log_end: high,
                lag: committed.map(|c| (high - c).max(0)),
            });
        }
        out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        Ok(out)
    }

    /// Committed offsets of `group`: one OffsetFetch to its coordinator over the wire (no group
    /// client to set up and tear down), librdkafka's committed() where that fails.
    fn committed(
        &self,
        group: &str,
        partitions: &[(String, i32)],
    ) -> anyhow::Result<HashMap<(String, i32), Option<i64>>> {
        let over_wire =
            self.at_coordinator(group, |c| wire::committed_offsets(c, group, Some(partitions), self.timeout));
        match over_wire {
            Ok(v) => return Ok(v.into_iter().map(|(t, p, o)| ((t, p), o)).collect()),
            Err(e) => tracing::debug!(error = %e, "OffsetFetch failed; using librdkafka"),
        }
        let mut tpl = TopicPartitionList::new();
        for (t, p) in partitions {
            tpl.add_partition(t, *p);
        }
        let consumer = self.reader(group)?;
        let committed = consumer
            .committed_offsets(tpl, self.timeout)
            .with_context(|| format!("fetching committed offsets of {group}"))?;
        Ok(committed
            .elements()
            .iter()
            .map(|e| {
                let o = match e.offset() {
                    Offset::Offset(o) if o >= 0 => Some(o),
                    _ => None,
                };
                ((e.topic().to_string(), e.partition()), o)
            })
            .collect())
    }

    fn first_broker(&self) -> String {
        self.bootstrap.split(',').next().unwrap_or(&self.bootstrap).trim().to_string()
    }

    /// Log-end offsets: one ListOffsets request per partition leader, as the broker's metadata
    /// names them; partitions it did not answer fall back to librdkafka's watermark query.
    pub fn log_ends(&self, partitions: &[(String, i32)]) -> anyhow::Result<HashMap<(String, i32), i64>> {
        let cluster = self.cluster()?;
        let wanted: BTreeSet<&(String, i32)> = partitions.iter().collect();
        let mut by_leader: HashMap<String, Vec<(String, i32)>> = HashMap::new();
        for t in &cluster.topics {
            for (p, leader) in &t.partitions {
                let key = (t.name.clone(), *p);
                if wanted.contains(&key) {
                    if let Some(addr) = cluster.broker(*leader) {
                        by_leader.entry(addr.to_string()).or_default().push(key);
                    }
                }
            }
        }
        let mut ends = HashMap::new();
        for (addr, parts) in by_leader {
            match wire::log_end_offsets(&addr, &parts, self.timeout) {
                Ok(found) => ends.extend(found.into_iter().map(|(t, p, o)| ((t, p), o))),
                Err(e) => tracing::debug!(error = %e, "ListOffsets failed; using per-partition watermarks"),
            }
        }
        for (t, p) in partitions {
            if let std::collections::hash_map::Entry::Vacant(slot) = ends.entry((t.clone(), *p)) {
                let (_, high) = self
                    .client()?
                    .fetch_watermarks(t, *p, self.timeout)
                    .with_context(|| format!("fetching the log-end offset of {t}-{p}"))?;
                slot.insert(high);
            }
        }
        Ok(ends)
    }

    /// Committed and log-end offsets of `group` over the topics it consumes: those it has
    /// committed on, those the broker assigns to its members, plus the ones our own groups
    /// consume before their first commit.
    pub fn offsets_of_group(
        &self,
        group: &GroupInfo,
        topics: &[(String, i32)],
    ) -> anyhow::Result<Vec<PartitionOffsets>> {
        Ok(self.offsets_of_groups(std::slice::from_ref(group), topics)?.pop().unwrap_or_default())
    }

    /// [`Self::offsets_of_group`] of many groups, in their order: one OffsetFetch per group for
    /// what it committed (the broker answers with its own partitions only), then the log-end
    /// offsets of every partition any of them uses, once (one ListOffsets per leader). A refresh
    /// costs the partitions the groups read, not groups x every partition of the cluster.
    pub fn offsets_of_groups(
        &self,
        groups: &[GroupInfo],
        topics: &[(String, i32)],
    ) -> anyhow::Result<Vec<Vec<PartitionOffsets>>> {
        let counts: HashMap<&str, i32> = topics.iter().map(|(t, n)| (t.as_str(), *n)).collect();
        let mut per_group = Vec::with_capacity(groups.len());
        let mut wanted_all: BTreeSet<(String, i32)> = BTreeSet::new();
        for g in groups {
            let committed = self.committed_of(&g.group, topics)?;
            let mut used: BTreeSet<&str> = committed.keys().map(|(t, _)| t.as_str()).collect();
            used.extend(
                g.assigned().into_keys().filter_map(|(t, _)| counts.get_key_value(t.as_str()).map(|(k, _)| *k)),
            );
            used.extend(topics.iter().map(|(t, _)| t.as_str()).filter(|t| known_topic(&g.group, t)));
            let wanted: Vec<(String, i32)> = used
                .into_iter()
                .filter_map(|t| counts.get_key_value(t))
                .flat_map(|(t, n)| (0..*n).map(move |p| (t.to_string(), p)))
                .collect();
            wanted_all.extend(wanted.iter().cloned());
            per_group.push((committed, wanted));
        }
        let wanted_all: Vec<(String, i32)> = wanted_all.into_iter().collect();
        let ends = if wanted_all.is_empty() { HashMap::new() } else { self.log_ends(&wanted_all)? };
        Ok(per_group
            .into_iter()
            .map(|(committed, wanted)| {
                let mut out: Vec<PartitionOffsets> = wanted
                    .into_iter()
                    .map(|(topic, partition)| {
                        let key = (topic, partition);
                        let committed = committed.get(&key).copied().flatten();
                        let high = ends.get(&key).copied().unwrap_or(0);
                        PartitionOffsets {
                            topic: key.0,
                            partition,
                            committed,
                            log_end: high,
                            lag: committed.map(|c| (high - c).max(0)),
                        }
                    })
                    .collect();
                out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
                out
            })
            .collect())
    }

    /// What `group` committed on the topics of the cluster: one OffsetFetch for all of it over
    /// the wire; librdkafka's committed() over every partition of `topics` where that fails.
    fn committed_of(
        &self,
        group: &str,
        topics: &[(String, i32)],
    ) -> anyhow::Result<HashMap<(String, i32), Option<i64>>> {
        let known: BTreeSet<&str> = topics.iter().map(|(t, _)| t.as_str()).collect();
        match self.at_coordinator(group, |c| wire::committed_offsets(c, group, None, self.timeout)) {
            Ok(v) => {
                return Ok(v
                    .into_iter()
                    .filter(|(t, _, o)| o.is_some() && known.contains(t.as_str()))
                    .map(|(t, p, o)| ((t, p), o))
                    .collect())
            }
            Err(e) => tracing::debug!(error = %e, "OffsetFetch of all topics failed; using librdkafka"),
        }
        let wanted: Vec<(String, i32)> =
            topics.iter().flat_map(|(t, n)| (0..*n).map(move |p| (t.clone(), p))).collect();
        Ok(self.committed(group, &wanted)?.into_iter().filter(|(_, o)| o.is_some()).collect())
    }
}

/// Topics our own groups consume even before they commit anything (so their lag shows as `-`).
pub fn known_topic(group: &str, topic: &str) -> bool {
    match group {
        "router-service" => topic == "chat-events" || topic.starts_with("chat-events.g"),
        "message-service-status" => topic == "status-updates",
        g => chat4all_contract::topics::deliveries_channel(topic).is_some_and(|c| c.connector_service() == g),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, parts: Option<&[i32]>) -> Member {
        Member {
            member_id: id.into(),
            assignment: parts.map(|ps| ps.iter().map(|p| ("t".to_string(), *p)).collect()),
            ..Default::default()
        }
    }

    #[test]
    fn assigned_maps_partitions_to_members_and_skips_unknown_assignments() {
        let g = GroupInfo {
            group: "g".into(),
            members: vec![member("m1", Some(&[0, 2])), member("m2", None), member("m3", Some(&[1]))],
            ..Default::default()
        };
        let a = g.assigned();
        let ids: Vec<(i32, &str)> = a.iter().map(|((_, p), m)| (*p, m.member_id.as_str())).collect();
        assert_eq!(ids, vec![(0, "m1"), (1, "m3"), (2, "m1")]);
    }

    #[test]
    fn a_kip848_group_keeps_epochs_and_reconciling_members() {
        let g = wire::ConsumerGroup {
            group: "g".into(),
            error_code: 0,
            error_message: None,
            state: "Reconciling".into(),
            group_epoch: 7,
            assignment_epoch: 7,
            assignor: "uniform".into(),
            members: vec![wire::ConsumerMember {
                member_id: "m".into(),
                instance_id: None,
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                member_epoch: 6,
                assignment: vec![("t".into(), 0), ("t".into(), 1)],
                target_assignment: vec![("t".into(), 0)],
            }],
        };
        let info = GroupInfo::from_consumer(g, "b:9092");
        assert_eq!(info.group_type, GroupType::Consumer);
        assert_eq!((info.group_epoch, info.assignment_epoch), (Some(7), Some(7)));
        let m = &info.members[0];
        assert!(m.reconciling);
        assert_eq!(m.member_epoch, Some(6));
        assert_eq!(m.target_assignment.as_ref().map(Vec::len), Some(1));
        let json = serde_json::to_value(&info).unwrap();
        assert_eq!(json["groupType"], "consumer");
        assert_eq!(json["members"][0]["targetAssignment"][0], serde_json::json!(["t", 0]));
    }

    #[test]
    fn reconciling_counts_members_off_target_or_behind_the_assignment_epoch() {
        let consumer = |id: &str, epoch: i32, assignment: &[i32], target: &[i32]| wire::ConsumerMember {
            member_id: id.into(),
            instance_id: None,
            client_id: id.into(),
            client_host: "/127.0.0.1".into(),
            member_epoch: epoch,
            assignment: assignment.iter().map(|p| ("t".to_string(), *p)).collect(),
            target_assignment: target.iter().map(|p| ("t".to_string(), *p)).collect(),
        };
        let g = wire::ConsumerGroup {
            group: "g".into(),
            error_code: 0,
            error_message: None,
            state: "Reconciling".into(),
            group_epoch: 9,
            assignment_epoch: 9,
            assignor: "uniform".into(),
            members: vec![
                consumer("done", 9, &[0], &[0]),
                consumer("behind", 8, &[1], &[1]),
                consumer("moving", 9, &[1, 2], &[2]),
            ],
        };
        let info = GroupInfo::from_consumer(g, "b:9092");
        let flags: Vec<(&str, bool)> = info.members.iter().map(|m| (m.member_id.as_str(), m.reconciling)).collect();
        assert_eq!(flags, [("done", false), ("behind", true), ("moving", true)]);
        assert_eq!(info.reconciling(), 2);
        let classic = GroupInfo { members: vec![member("m1", Some(&[0]))], ..Default::default() };
        assert_eq!(classic.reconciling(), 0);
    }
}
