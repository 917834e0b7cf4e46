//! Consumer groups: ListGroups (with group type), DescribeGroups (classic groups: members with
//! their assignment bytes), ConsumerGroupDescribe (KIP-848 groups, which DescribeGroups does not
//! see) and LeaveGroup (remove members by id). Blocking.

use std::time::Duration;

use bytes::{Buf, Bytes};
use kafka_protocol::messages::consumer_group_describe_response::{self as cgd, Assignment};
use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerProtocolAssignment, DescribeGroupsRequest, GroupId, LeaveGroupRequest,
    ListGroupsRequest,
};
use kafka_protocol::protocol::{Decodable, Message, StrBytes};

use super::{call, WireError};

/// (topic, partition) pairs, sorted.
pub type Partitions = Vec<(String, i32)>;

fn group_ids(groups: &[String]) -> Vec<GroupId> {
    groups.iter().map(|g| GroupId(StrBytes::from_string(g.clone()))).collect()
}

fn opt(s: &Option<StrBytes>) -> Option<String> {
    s.as_ref().map(|s| s.to_string())
}

/// One group as ListGroups names it.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedGroup {
    pub group: String,
    /// `consumer` for consumer groups of either protocol, `connect` etc. for others.
    pub protocol_type: String,
    /// Empty when the broker's version does not report it (ListGroups before v4).
    pub state: String,
    /// `classic` or `consumer` (KIP-848); `classic` when the broker predates group types (v5).
    pub group_type: String,
}

/// The group types we read: both consumer protocols (not share or streams groups).
const TYPES: [&str; 2] = ["classic", "consumer"];

/// The groups `addr` coordinates (in a cluster, ask every broker).
pub fn list_groups(addr: &str, timeout: Duration) -> Result<Vec<ListedGroup>, WireError> {
    let (resp, version) = call(addr, 0, timeout, |v| {
        let req = ListGroupsRequest::default();
        if v >= 5 {
            req.with_types_filter(TYPES.iter().map(|t| StrBytes::from_static_str(t)).collect())
        } else {
            req
        }
    })?;
    if resp.error_code != 0 {
        return Err(WireError::kafka(addr, resp.error_code, Some("ListGroups".to_string()), None));
    }
    Ok(resp
        .groups
        .iter()
        .map(|g| ListedGroup {
            group: g.group_id.to_string(),
            protocol_type: g.protocol_type.to_string(),
            state: g.group_state.to_string(),
            group_type: if version >= 5 && !g.group_type.is_empty() {
                g.group_type.to_lowercase()
            } else {
                "classic".to_string()
            },
        })
        .collect())
}

/// A classic group as DescribeGroups returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassicGroup {
    pub group: String,
    /// Kafka error code for this group (0, or e.g. GROUP_ID_NOT_FOUND for a KIP-848 group).
    pub error_code: i16,
    pub state: String,
    pub protocol_type: String,
    /// The assignor the group agreed on, e.g. `cooperative-sticky`.
    pub protocol: String,
    pub members: Vec<ClassicMember>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClassicMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    /// As the broker reports it, e.g. `/127.0.0.1`.
    pub client_host: String,
    /// The decoded ConsumerProtocol assignment; None when the group does not use the consumer
    /// protocol or the bytes do not decode (an empty assignment during a rebalance is Some([])).
    pub assignment: Option<Partitions>,
}

/// DescribeGroups of `groups` at their coordinator.
pub fn describe_groups(
    coordinator: &str,
    groups: &[String],
    timeout: Duration,
) -> Result<Vec<ClassicGroup>, WireError> {
    let (resp, _) = call(coordinator, 0, timeout, |_| DescribeGroupsRequest::default().with_groups(group_ids(groups)))?;
    Ok(resp.groups.iter().map(classic_group).collect())
}

pub(crate) fn classic_group(g: &DescribedGroup) -> ClassicGroup {
    let consumer = g.protocol_type.as_str() == "consumer";
    ClassicGroup {
        group: g.group_id.to_string(),
        error_code: g.error_code,
        state: g.group_state.to_string(),
        protocol_type: g.protocol_type.to_string(),
        protocol: g.protocol_data.to_string(),
        members: g
            .members
            .iter()
            .map(|m| ClassicMember {
                member_id: m.member_id.to_string(),
                group_instance_id: opt(&m.group_instance_id),
                client_id: m.client_id.to_string(),
                client_host: m.client_host.to_string(),
                assignment: if consumer { decode_assignment(&m.member_assignment) } else { None },
            })
            .collect(),
    }
}

/// Decodes ConsumerProtocol assignment bytes (int16 version, then the assignment of that
/// version). Empty bytes (a member between JoinGroup and SyncGroup) are an empty assignment;
/// bytes that do not decode are None. A version newer than the crate knows is read as the
/// newest it knows: newer versions only add fields at the end.
pub fn decode_assignment(bytes: &[u8]) -> Option<Partitions> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let mut b = Bytes::copy_from_slice(bytes);
    if b.remaining() < 2 {
        return None;
    }
    let version = b.get_i16();
    if version < 0 {
        return None;
    }
    let version = version.min(ConsumerProtocolAssignment::VERSIONS.max);
    let a = ConsumerProtocolAssignment::decode(&mut b, version).ok()?;
    let mut out: Partitions = a
        .assigned_partitions
        .iter()
        .flat_map(|tp| tp.partitions.iter().map(move |p| (tp.topic.to_string(), *p)))
        .collect();
    out.sort();
    Some(out)
}

/// A KIP-848 group as ConsumerGroupDescribe returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsumerGroup {
    pub group: String,
    pub error_code: i16,
    pub error_message: Option<String>,
    pub state: String,
    pub group_epoch: i32,
    pub assignment_epoch: i32,
    pub assignor: String,
    pub members: Vec<ConsumerMember>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ConsumerMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub member_epoch: i32,
    /// What the member owns now.
    pub assignment: Partitions,
    /// What the coordinator wants it to own; the member is reconciling while they differ.
    pub target_assignment: Partitions,
}

impl ConsumerMember {
    /// Still moving to the group's target assignment (of epoch `assignment_epoch`): it owns
    /// something else than its target, or it has not yet caught up with the target's epoch.
    pub fn reconciling(&self, assignment_epoch: i32) -> bool {
        self.assignment != self.target_assignment || self.member_epoch != assignment_epoch
    }
}

/// ConsumerGroupDescribe of `groups` at their coordinator.
pub fn consumer_group_describe(
    coordinator: &str,
    groups: &[String],
    timeout: Duration,
) -> Result<Vec<ConsumerGroup>, WireError> {
    let (resp, _) =
        call(coordinator, 0, timeout, |_| ConsumerGroupDescribeRequest::default().with_group_ids(group_ids(groups)))?;
    Ok(resp.groups.iter().map(consumer_group).collect())
}

fn partitions(a: &Assignment) -> Partitions {
    let mut out: Partitions = a
        .topic_partitions
        .iter()
        .flat_map(|tp| tp.partitions.iter().map(move |p| (tp.topic_name.to_string(), *p)))
        .collect();
    out.sort();
    out
}

pub(crate) fn consumer_group(g: &cgd::DescribedGroup) -> ConsumerGroup {
    ConsumerGroup {
        group: g.group_id.to_string(),
        error_code: g.error_code,
        error_message: opt(&g.error_message),
        state: g.group_state.to_string(),
        group_epoch: g.group_epoch,
        assignment_epoch: g.assignment_epoch,
        assignor: g.assignor_name.to_string(),
        members: g
            .members
            .iter()
            .map(|m| ConsumerMember {
                member_id: m.member_id.to_string(),
                instance_id: opt(&m.instance_id),
                client_id: m.client_id.to_string(),
                client_host: m.client_host.to_string(),
                member_epoch: m.member_epoch,
                assignment: partitions(&m.assignment),
                target_assignment: partitions(&m.target_assignment),
            })
            .collect(),
    }
}

/// What one LeaveGroup did: the request's error code, then one per member.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaveResult {
    pub error_code: i16,
    pub members: Vec<(String, i16)>,
    pub version: i16,
}

/// LeaveGroup v3+ at the coordinator: removes `members` (member id, group instance id) on their
/// behalf, with `reason` (v5+) for the broker's log.
pub fn leave_group(
    coordinator: &str,
    group: &str,
    members: &[(String, Option<String>)],
    reason: &str,
    timeout: Duration,
) -> Result<LeaveResult, WireError> {
    let (resp, version) = call(coordinator, 3, timeout, |v| {
        LeaveGroupRequest::default().with_group_id(GroupId(StrBytes::from_string(group.into()))).with_members(
            members
                .iter()
                .map(|(id, instance)| {
                    let m = MemberIdentity::default()
                        .with_member_id(StrBytes::from_string(id.clone()))
                        .with_group_instance_id(instance.clone().map(StrBytes::from_string));
                    if v >= 5 {
                        m.with_reason(Some(StrBytes::from_string(reason.into())))
                    } else {
                        m
                    }
                })
                .collect(),
        )
    })?;
    Ok(LeaveResult {
        error_code: resp.error_code,
        members: resp.members.iter().map(|m| (m.member_id.to_string(), m.error_code)).collect(),
        version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::messages::consumer_group_describe_response::{ConsumerGroupDescribeResponse, TopicPartitions};
    use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
    use kafka_protocol::messages::describe_groups_response::{DescribeGroupsResponse, DescribedGroupMember};
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::protocol::Encodable;

    use crate::wire::testing::{s, wire};

    fn assignment_bytes(version: i16, parts: &[(&str, &[i32])]) -> Bytes {
        let a = ConsumerProtocolAssignment::default().with_assigned_partitions(
            parts
                .iter()
                .map(|(t, ps)| TopicPartition::default().with_topic(TopicName(s(t))).with_partitions(ps.to_vec()))
                .collect(),
        );
        let mut b = BytesMut::new();
        b.extend_from_slice(&version.to_be_bytes());
        a.encode(&mut b, version.min(3)).unwrap();
        b.freeze()
    }

    #[test]
    fn decodes_a_consumer_protocol_assignment() {
        let b = assignment_bytes(1, &[("chat-events", &[3, 0])]);
        assert_eq!(decode_assignment(&b), Some(vec![("chat-events".to_string(), 0), ("chat-events".to_string(), 3)]));
        // A future version with fields appended still gives its partitions.
        let mut future = assignment_bytes(9, &[("t", &[1])]).to_vec();
        future.extend_from_slice(&[0, 0, 0, 7]);
        assert_eq!(decode_assignment(&future), Some(vec![("t".to_string(), 1)]));
    }

    #[test]
    fn truncated_or_garbage_assignment_is_none_and_empty_is_empty() {
        let b = assignment_bytes(0, &[("chat-events", &[0])]);
        for cut in 1..b.len() - 4 {
            assert_eq!(decode_assignment(&b[..cut]), None, "cut at {cut}");
        }
        assert_eq!(decode_assignment(&[0xff, 0xff, 1]), None);
        assert_eq!(decode_assignment(&[]), Some(vec![]));
    }

    #[test]
    fn describe_groups_members_carry_id_client_host_instance_and_assignment() {
        let resp = DescribeGroupsResponse::default().with_groups(vec![DescribedGroup::default()
            .with_group_id(GroupId(s("router-service")))
            .with_group_state(s("Stable"))
            .with_protocol_type(s("consumer"))
            .with_protocol_data(s("cooperative-sticky"))
            .with_members(vec![DescribedGroupMember::default()
                .with_member_id(s("router-service-1-abc"))
                .with_group_instance_id(Some(s("r1")))
                .with_client_id(s("router-service-1"))
                .with_client_host(s("/127.0.0.1"))
                .with_member_assignment(assignment_bytes(3, &[("chat-events", &[0])]))])]);
        let g = classic_group(&wire(&resp, 6).groups[0]);
        assert_eq!((g.state.as_str(), g.protocol.as_str()), ("Stable", "cooperative-sticky"));
        let m = &g.members[0];
        assert_eq!(m.member_id, "router-service-1-abc");
        assert_eq!(m.group_instance_id.as_deref(), Some("r1"));
        assert_eq!((m.client_id.as_str(), m.client_host.as_str()), ("router-service-1", "/127.0.0.1"));
        assert_eq!(m.assignment, Some(vec![("chat-events".to_string(), 0)]));
        // At v0 there is no instance id; and a non-consumer group's bytes are not decoded.
        let mut other = resp.clone();
        other.groups[0].protocol_type = s("connect");
        let g = classic_group(&wire(&other, 0).groups[0]);
        assert_eq!((g.members[0].group_instance_id.as_ref(), g.members[0].assignment.as_ref()), (None, None));
    }

    #[test]
    fn consumer_group_describe_gives_epochs_and_both_assignments() {
        let tp = |t: &str, ps: &[i32]| {
            Assignment::default().with_topic_partitions(vec![TopicPartitions::default()
                .with_topic_name(TopicName(s(t)))
                .with_partitions(ps.to_vec())])
        };
        let resp = ConsumerGroupDescribeResponse::default().with_groups(vec![cgd::DescribedGroup::default()
            .with_group_id(GroupId(s("g")))
            .with_group_state(s("Reconciling"))
            .with_group_epoch(5)
            .with_assignment_epoch(5)
            .with_assignor_name(s("uniform"))
            .with_members(vec![
                cgd::Member::default()
                    .with_member_id(s("m1"))
                    .with_client_id(s("c1"))
                    .with_client_host(s("/127.0.0.1"))
                    .with_member_epoch(4)
                    .with_assignment(tp("t", &[1, 0]))
                    .with_target_assignment(tp("t", &[0])),
                cgd::Member::default()
                    .with_member_id(s("m2"))
                    .with_member_epoch(5)
                    .with_assignment(tp("t", &[1]))
                    .with_target_assignment(tp("t", &[1])),
            ])]);
        let g = consumer_group(&wire(&resp, 1).groups[0]);
        assert_eq!(
            (g.state.as_str(), g.group_epoch, g.assignment_epoch, g.assignor.as_str()),
            ("Reconciling", 5, 5, "uniform")
        );
        let m1 = &g.members[0];
        assert_eq!(m1.assignment, vec![("t".to_string(), 0), ("t".to_string(), 1)]);
        assert_eq!(m1.target_assignment, vec![("t".to_string(), 0)]);
        assert_eq!(m1.member_epoch, 4);
        assert!(m1.reconciling(g.assignment_epoch));
        assert!(!g.members[1].reconciling(g.assignment_epoch));
        // Owning its target is not enough: a member behind the target's epoch still reconciles.
        assert!(g.members[1].reconciling(g.assignment_epoch + 1));
    }

    #[test]
    fn leave_group_request_names_members_only_from_v3() {
        let req = |v: i16| {
            LeaveGroupRequest::default().with_group_id(GroupId(s("g"))).with_members(vec![MemberIdentity::default()
                .with_member_id(s("m-1"))
                .with_reason(if v >= 5 { Some(s("killed")) } else { None })])
        };
        for v in 3..=5 {
            let mut b = BytesMut::new();
            req(v).encode(&mut b, v).unwrap();
            let back = LeaveGroupRequest::decode(&mut b.freeze(), v).unwrap();
            assert_eq!(back.members[0].member_id.as_str(), "m-1");
        }
        // The crate refuses the members array at a version that cannot carry it.
        assert!(req(2).encode(&mut BytesMut::new(), 2).is_err());
    }
}
