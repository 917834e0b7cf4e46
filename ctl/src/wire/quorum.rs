//! The KRaft controller quorum (DescribeQuorum, KIP-595/KIP-853): which node leads the metadata
//! log (the active controller) and which nodes are voters. A broker forwards the request to the
//! active controller. Blocking.

use std::time::Duration;

use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
use kafka_protocol::messages::describe_quorum_response::DescribeQuorumResponse;
use kafka_protocol::messages::{DescribeQuorumRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::{call, WireError};

/// The metadata log's topic: its partition 0 is the quorum.
const METADATA_TOPIC: &str = "__cluster_metadata";

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Quorum {
    /// Node id of the active controller; -1 while there is none (an election, or no majority).
    pub leader: i32,
    pub leader_epoch: i32,
    /// Node ids of the voters, in the quorum's order.
    pub voters: Vec<i32>,
    /// Node ids of the observers (brokers that are not controllers).
    pub observers: Vec<i32>,
}

pub fn describe_quorum(addr: &str, timeout: Duration) -> Result<Quorum, WireError> {
    let (resp, _) = call(addr, 0, timeout, |_| {
        DescribeQuorumRequest::default().with_topics(vec![TopicData::default()
            .with_topic_name(TopicName(StrBytes::from_static_str(METADATA_TOPIC)))
            .with_partitions(vec![PartitionData::default().with_partition_index(0)])])
    })?;
    parse(addr, &resp)
}

fn parse(addr: &str, resp: &DescribeQuorumResponse) -> Result<Quorum, WireError> {
    if resp.error_code != 0 {
        return Err(WireError::kafka(
            addr,
            resp.error_code,
            Some("the controller quorum".into()),
            resp.error_message.as_ref().map(|m| m.to_string()),
        ));
    }
    let p = resp.topics.iter().flat_map(|t| t.partitions.iter()).find(|p| p.partition_index == 0).ok_or_else(|| {
        WireError::Malformed {
            addr: addr.into(),
            api: super::api::DESCRIBE_QUORUM,
            version: 0,
            reason: "no partition 0 of the metadata log".into(),
        }
    })?;
    if p.error_code != 0 {
        let message = p.error_message.as_ref().map(|m| m.to_string());
        return Err(WireError::kafka(addr, p.error_code, Some("the metadata log".into()), message));
    }
    Ok(Quorum {
        leader: p.leader_id.0,
        leader_epoch: p.leader_epoch,
        voters: p.current_voters.iter().map(|v| v.replica_id.0).collect(),
        observers: p.observers.iter().map(|v| v.replica_id.0).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testing::wire;
    use kafka_protocol::messages::describe_quorum_response::{self as r, ReplicaState};
    use kafka_protocol::messages::BrokerId;

    #[test]
    fn leader_and_voters_survive_the_wire() {
        let voter = |id| ReplicaState::default().with_replica_id(BrokerId(id));
        let resp = DescribeQuorumResponse::default().with_topics(vec![r::TopicData::default()
            .with_topic_name(TopicName(StrBytes::from_static_str(METADATA_TOPIC)))
            .with_partitions(vec![r::PartitionData::default()
                .with_leader_id(BrokerId(2))
                .with_leader_epoch(7)
                .with_current_voters(vec![voter(1), voter(2), voter(3)])])]);
        for v in [0, 2] {
            let q = parse("b", &wire(&resp, v)).unwrap();
            assert_eq!((q.leader, q.leader_epoch, q.voters.as_slice()), (2, 7, &[1, 2, 3][..]));
        }
        let refused = DescribeQuorumResponse::default().with_error_code(35);
        assert_eq!(parse("b", &refused).unwrap_err().code(), Some(35));
    }
}
