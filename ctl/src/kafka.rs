//! Reads of the broker through the Kafka protocol: groups, members, committed and log-end
//! offsets, lag. Computed exactly as `kafka-consumer-groups --describe` does.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientConfig;
use serde::Serialize;

/// One member of a group as the broker reports it (client id and host may be empty: the local
/// broker does not return them).
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    pub member_id: String,
    pub client_id: String,
    pub host: String,
    /// Partitions from the member's assignment bytes, when the broker returns them.
    pub assignment: Option<Vec<(String, i32)>>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GroupInfo {
    pub group: String,
    pub state: String,
    pub protocol: String,
    pub members: Vec<Member>,
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
    client: BaseConsumer,
    /// One offset reader per group, kept so a refresh does not reconnect (fallback path).
    readers: Mutex<HashMap<String, Arc<BaseConsumer>>>,
    /// Group -> coordinator address, for OffsetFetch over the wire.
    coordinators: Mutex<HashMap<String, String>>,
}

fn config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("client.id", "chat4allctl")
        .set("log_level", "3")
        .set("reconnect.backoff.max.ms", "1000");
    c
}

impl Observer {
    pub fn new(bootstrap: &str, timeout: Duration) -> anyhow::Result<Self> {
        let client: BaseConsumer = config(bootstrap).create().context("creating Kafka client")?;
        Ok(Self {
            bootstrap: bootstrap.into(),
            timeout,
            client,
            readers: Mutex::new(HashMap::new()),
            coordinators: Mutex::new(HashMap::new()),
        })
    }

    /// Topic -> partition count, internal topics left out.
    pub fn topics(&self) -> anyhow::Result<Vec<(String, i32)>> {
        let md = self
            .client
            .fetch_metadata(None, self.timeout)
            .with_context(|| format!("broker {} unreachable", self.bootstrap))?;
        let mut v: Vec<(String, i32)> = md
            .topics()
            .iter()
            .filter(|t| !t.name().starts_with("__"))
            .map(|t| (t.name().to_string(), t.partitions().len() as i32))
            .collect();
        v.sort();
        Ok(v)
    }

    pub fn groups(&self) -> anyhow::Result<Vec<GroupInfo>> {
        self.list_groups(None)
    }

    /// Every group, or only `only` (one DescribeGroups instead of one per group).
    fn list_groups(&self, only: Option<&str>) -> anyhow::Result<Vec<GroupInfo>> {
        let list = self
            .client
            .fetch_group_list(only, self.timeout)
            .with_context(|| format!("listing groups on {}", self.bootstrap))?;
        let mut out: Vec<GroupInfo> = list
            .groups()
            .iter()
            .map(|g| GroupInfo {
                group: g.name().to_string(),
                state: g.state().to_string(),
                protocol: g.protocol().to_string(),
                members: g
                    .members()
                    .iter()
                    .map(|m| Member {
                        member_id: m.id().to_string(),
                        client_id: m.client_id().to_string(),
                        host: m.client_host().to_string(),
                        assignment: m.assignment().and_then(decode_assignment),
                    })
                    .collect(),
            })
            .collect();
        out.sort_by(|a, b| a.group.cmp(&b.group));
        Ok(out)
    }

    pub fn group(&self, group: &str) -> anyhow::Result<Option<GroupInfo>> {
        Ok(self.list_groups(Some(group))?.into_iter().find(|g| g.group == group))
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
        for _attempt in 0..2 {
            let cached = self.coordinators.lock().unwrap_or_else(|e| e.into_inner()).get(group).cloned();
            let coordinator = match cached {
                Some(c) => c,
                None => match crate::wire::find_coordinator(&self.first_broker(), group, self.timeout) {
                    Ok(c) => {
                        self.coordinators.lock().unwrap_or_else(|e| e.into_inner()).insert(group.into(), c.clone());
                        c
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "FindCoordinator failed; using librdkafka");
                        break;
                    }
                },
            };
            match crate::wire::committed_offsets(&coordinator, group, partitions, self.timeout) {
                Ok(v) => return Ok(v.into_iter().map(|(t, p, o)| ((t, p), o)).collect()),
                Err(e) => {
                    tracing::debug!(error = %e, "OffsetFetch failed");
                    self.coordinators.lock().unwrap_or_else(|e| e.into_inner()).remove(group);
                    if !crate::wire::is_coordinator_moved(&e) {
                        break;
                    }
                }
            }
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
        let md = self
            .client
            .fetch_metadata(None, self.timeout)
            .with_context(|| format!("broker {} unreachable", self.bootstrap))?;
        let brokers: HashMap<i32, String> =
            md.brokers().iter().map(|b| (b.id(), format!("{}:{}", b.host(), b.port()))).collect();
        let mut by_leader: HashMap<String, Vec<(String, i32)>> = HashMap::new();
        for t in md.topics() {
            for p in t.partitions() {
                let key = (t.name().to_string(), p.id());
                if partitions.contains(&key) {
                    if let Some(addr) = brokers.get(&p.leader()) {
                        by_leader.entry(addr.clone()).or_default().push(key);
                    }
                }
            }
        }
        let mut ends = HashMap::new();
        for (addr, parts) in by_leader {
            match crate::wire::log_end_offsets(&addr, &parts, self.timeout) {
                Ok(found) => ends.extend(found.into_iter().map(|(t, p, o)| ((t, p), o))),
                Err(e) => tracing::debug!(error = %e, "ListOffsets failed; using per-partition watermarks"),
            }
        }
        for (t, p) in partitions {
            if let std::collections::hash_map::Entry::Vacant(slot) = ends.entry((t.clone(), *p)) {
                let (_, high) = self
                    .client
                    .fetch_watermarks(t, *p, self.timeout)
                    .with_context(|| format!("fetching the log-end offset of {t}-{p}"))?;
                slot.insert(high);
            }
        }
        Ok(ends)
    }

    /// Committed and log-end offsets of `group` over the topics it consumes: those it has
    /// committed on, plus the ones our own groups consume before their first commit.
    pub fn offsets_of_group(&self, group: &str, topics: &[(String, i32)]) -> anyhow::Result<Vec<PartitionOffsets>> {
        let all = self.offsets(group, topics)?;
        let used: BTreeSet<String> = all
            .iter()
            .filter(|p| p.committed.is_some() || known_topic(group, &p.topic))
            .map(|p| p.topic.clone())
            .collect();
        Ok(all.into_iter().filter(|p| used.contains(&p.topic)).collect())
    }
}

/// Topics our own groups consume even before they commit anything (so their lag shows as `-`).
pub fn known_topic(group: &str, topic: &str) -> bool {
    match group {
        "router-service" => topic == "chat-events" || topic.starts_with("chat-events.g"),
        "message-service-status" => topic == "status-updates",
        _ => false,
    }
}

/// Decodes a ConsumerProtocol assignment (version, [topic, [partition]], user data).
pub fn decode_assignment(bytes: &[u8]) -> Option<Vec<(String, i32)>> {
    let mut r = Reader { b: bytes, at: 0 };
    let _version = r.i16()?;
    let topics = r.i32()?;
    let mut out = Vec::new();
    for _ in 0..topics.max(0) {
        let len = r.i16()?;
        let topic = std::str::from_utf8(r.take(len.max(0) as usize)?).ok()?.to_string();
        let n = r.i32()?;
        for _ in 0..n.max(0) {
            out.push((topic.clone(), r.i32()?));
        }
    }
    Some(out)
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.at..self.at + n)?;
        self.at += n;
        Some(s)
    }
    fn i16(&mut self) -> Option<i16> {
        Some(i16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }
    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_consumer_protocol_assignment() {
        let mut b = vec![0, 1, 0, 0, 0, 1, 0, 11];
        b.extend_from_slice(b"chat-events");
        b.extend_from_slice(&[0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 3, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(decode_assignment(&b), Some(vec![("chat-events".to_string(), 0), ("chat-events".to_string(), 3)]));
    }

    #[test]
    fn truncated_assignment_is_none() {
        assert_eq!(decode_assignment(&[0, 1, 0, 0, 0, 1, 0, 11, b'c']), None);
    }
}
