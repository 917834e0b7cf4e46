//! The cluster's brokers and every topic's partitions and leaders (Metadata). Blocking.

use std::time::Duration;

use kafka_protocol::messages::metadata_response::MetadataResponse;
use kafka_protocol::messages::MetadataRequest;

use super::{call, WireError};

/// What Metadata tells: brokers by id and the partitions of every topic, internal ones included.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cluster {
    /// (node id, `host:port`).
    pub brokers: Vec<(i32, String)>,
    pub topics: Vec<TopicMeta>,
    /// Node id -> rack, for the brokers that have one (`broker.rack`).
    pub racks: std::collections::BTreeMap<i32, String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TopicMeta {
    pub name: String,
    pub internal: bool,
    /// (partition, leader node id; -1 while it has none).
    pub partitions: Vec<(i32, i32)>,
    /// The replicas of each partition, in partition order as the broker lists them.
    pub replicas: Vec<Replicas>,
}

/// One partition's replicas as Metadata tells them (what `kafka-topics --describe` prints).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Replicas {
    pub partition: i32,
    /// Node id of the leader; -1 while it has none (offline).
    pub leader: i32,
    /// The assigned replicas; the first is the preferred leader.
    pub replicas: Vec<i32>,
    /// The in-sync replicas.
    pub isr: Vec<i32>,
    /// Replicas whose broker or log directory is offline.
    pub offline: Vec<i32>,
}

impl Cluster {
    /// The address of node `id`.
    pub fn broker(&self, id: i32) -> Option<&str> {
        self.brokers.iter().find(|(b, _)| *b == id).map(|(_, a)| a.as_str())
    }
}

/// Every topic (never creating one) and the brokers, from `addr`.
pub fn cluster(addr: &str, timeout: Duration) -> Result<Cluster, WireError> {
    let (resp, _) = call(addr, 0, timeout, |v| {
        let req = MetadataRequest::default();
        // v0 asks for every topic with an empty list; later versions with null.
        let req = if v >= 1 { req.with_topics(None) } else { req };
        if v >= 4 {
            req.with_allow_auto_topic_creation(false)
        } else {
            req
        }
    })?;
    Ok(parse(&resp))
}

/// Topics the broker answered with an error (being deleted, say) are left out.
pub(crate) fn parse(resp: &MetadataResponse) -> Cluster {
    Cluster {
        brokers: resp.brokers.iter().map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port))).collect(),
        racks: resp.brokers.iter().filter_map(|b| Some((b.node_id.0, b.rack.as_ref()?.to_string()))).collect(),
        topics: resp
            .topics
            .iter()
            .filter(|t| t.error_code == 0)
            .filter_map(|t| {
                Some(TopicMeta {
                    name: t.name.as_ref()?.to_string(),
                    internal: t.is_internal,
                    partitions: t.partitions.iter().map(|p| (p.partition_index, p.leader_id.0)).collect(),
                    replicas: t
                        .partitions
                        .iter()
                        .map(|p| {
                            let ids = |v: &[kafka_protocol::messages::BrokerId]| v.iter().map(|b| b.0).collect();
                            Replicas {
                                partition: p.partition_index,
                                leader: p.leader_id.0,
                                replicas: ids(&p.replica_nodes),
                                isr: ids(&p.isr_nodes),
                                offline: ids(&p.offline_replicas),
                            }
                        })
                        .collect(),
                })
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::messages::metadata_response::{
        MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
    };
    use kafka_protocol::messages::{BrokerId, TopicName};
    use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

    #[test]
    fn brokers_topics_and_leaders_survive_the_wire() {
        let s = |v: &str| StrBytes::from_string(v.into());
        let resp = MetadataResponse::default()
            .with_brokers(vec![MetadataResponseBroker::default()
                .with_node_id(BrokerId(1))
                .with_host(s("h"))
                .with_port(9092)
                .with_rack(Some(s("r1")))])
            .with_topics(vec![
                MetadataResponseTopic::default().with_name(Some(TopicName(s("t")))).with_partitions(vec![
                    MetadataResponsePartition::default()
                        .with_partition_index(0)
                        .with_leader_id(BrokerId(1))
                        .with_replica_nodes(vec![BrokerId(1), BrokerId(2)])
                        .with_isr_nodes(vec![BrokerId(1)])
                        .with_offline_replicas(vec![BrokerId(2)]),
                    MetadataResponsePartition::default().with_partition_index(1).with_leader_id(BrokerId(-1)),
                ]),
                MetadataResponseTopic::default().with_name(Some(TopicName(s("gone")))).with_error_code(3),
            ]);
        for v in [1, 12] {
            let mut b = BytesMut::new();
            resp.encode(&mut b, v).unwrap();
            let c = parse(&MetadataResponse::decode(&mut b.freeze(), v).unwrap());
            assert_eq!(c.broker(1), Some("h:9092"));
            assert_eq!(c.topics.len(), 1);
            assert_eq!(c.topics[0].partitions, vec![(0, 1), (1, -1)]);
            let r = &c.topics[0].replicas[0];
            assert_eq!((r.replicas.as_slice(), r.isr.as_slice()), (&[1, 2][..], &[1][..]));
            // Offline replicas are in the answer from v5 on.
            let offline: &[i32] = if v >= 5 { &[2] } else { &[] };
            assert_eq!(r.offline, offline);
            assert_eq!(c.racks.get(&1).map(String::as_str), Some("r1"));
        }
    }
}
