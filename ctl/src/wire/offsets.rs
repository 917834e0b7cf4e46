//! Where a group lives (FindCoordinator), what it committed (OffsetFetch) and how far the logs
//! reach (ListOffsets). Blocking: called from the observer's blocking thread.

use std::collections::BTreeMap;
use std::time::Duration;

use kafka_protocol::messages::find_coordinator_response::FindCoordinatorResponse;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::list_offsets_response::ListOffsetsResponse;
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::offset_fetch_response::OffsetFetchResponse;
use kafka_protocol::messages::{
    BrokerId, FindCoordinatorRequest, GroupId, ListOffsetsRequest, OffsetFetchRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::{by_topic, call, WireError};

/// Kafka's ListOffsets timestamp for "the offset of the next message" (the log end).
const LATEST: i64 = -1;

fn group_id(g: &str) -> GroupId {
    GroupId(StrBytes::from_string(g.to_string()))
}

fn topic_name(t: &str) -> TopicName {
    TopicName(StrBytes::from_string(t.to_string()))
}

/// The coordinator of `group`, as `host:port`.
pub fn find_coordinator(addr: &str, group: &str, timeout: Duration) -> Result<String, WireError> {
    let mut found = find_coordinators(addr, &[group.to_string()], timeout)?;
    found.remove(group).unwrap_or_else(|| {
        Err(WireError::Malformed {
            addr: addr.into(),
            api: super::api::FIND_COORDINATOR,
            version: -1,
            reason: format!("no coordinator named for {group}"),
        })
    })
}

/// The coordinators of several groups: one request where the broker takes a batch
/// (FindCoordinator v4+), one per group before that. A group whose lookup failed maps to its
/// error.
pub fn find_coordinators(
    addr: &str,
    groups: &[String],
    timeout: Duration,
) -> Result<BTreeMap<String, Result<String, WireError>>, WireError> {
    let mut out = BTreeMap::new();
    let mut rest = groups;
    while !rest.is_empty() {
        let (resp, version) = call(addr, 0, timeout, |v| {
            let req = FindCoordinatorRequest::default().with_key_type(0);
            if v >= 4 {
                req.with_coordinator_keys(rest.iter().map(|g| StrBytes::from_string(g.clone())).collect())
            } else {
                req.with_key(StrBytes::from_string(rest[0].clone()))
            }
        })?;
        let answered = if version >= 4 { rest.len() } else { 1 };
        out.extend(coordinators(addr, &resp, version, &rest[..answered]));
        rest = &rest[answered..];
    }
    Ok(out)
}

fn coordinators(
    addr: &str,
    resp: &FindCoordinatorResponse,
    version: i16,
    asked: &[String],
) -> Vec<(String, Result<String, WireError>)> {
    let one = |code: i16, msg: &Option<StrBytes>, host: &StrBytes, port: i32, group: &str| {
        if code != 0 {
            Err(WireError::kafka(addr, code, Some(format!("group {group}")), msg.as_ref().map(|m| m.to_string())))
        } else {
            Ok(format!("{}:{port}", host.as_str()))
        }
    };
    if version >= 4 {
        resp.coordinators
            .iter()
            .map(|c| (c.key.to_string(), one(c.error_code, &c.error_message, &c.host, c.port, &c.key)))
            .collect()
    } else {
        let group = asked[0].clone();
        let r = one(resp.error_code, &resp.error_message, &resp.host, resp.port, &group);
        vec![(group, r)]
    }
}

/// (topic, partition, committed offset) rows of an OffsetFetch answer; None where nothing is
/// committed.
pub type Committed = Vec<(String, i32, Option<i64>)>;

/// Committed offsets of `group` from its coordinator: of `partitions`, or of every partition
/// the group has committed on when None (what `kafka-consumer-groups --describe` shows).
pub fn committed_offsets(
    coordinator: &str,
    group: &str,
    partitions: Option<&[(String, i32)]>,
    timeout: Duration,
) -> Result<Committed, WireError> {
    let topics = partitions.map(by_topic);
    let (resp, version) = call::<OffsetFetchRequest>(coordinator, 0, timeout, |v| {
        if v >= 8 {
            let topics = topics.as_ref().map(|ts| {
                ts.iter()
                    .map(|(t, ps)| {
                        OffsetFetchRequestTopics::default().with_name(topic_name(t)).with_partition_indexes(ps.clone())
                    })
                    .collect()
            });
            OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
                .with_group_id(group_id(group))
                .with_topics(topics)])
        } else {
            let topics = topics.as_ref().map(|ts| {
                ts.iter()
                    .map(|(t, ps)| {
                        OffsetFetchRequestTopic::default().with_name(topic_name(t)).with_partition_indexes(ps.clone())
                    })
                    .collect()
            });
            OffsetFetchRequest::default().with_group_id(group_id(group)).with_topics(topics)
        }
    })?;
    parse_offset_fetch(&resp, version)
        .map_err(|code| WireError::kafka(coordinator, code, Some(format!("group {group}")), None))
}

/// The rows of an answer, or the first error code it carries (group-level, then partition-level).
pub(crate) fn parse_offset_fetch(resp: &OffsetFetchResponse, version: i16) -> Result<Committed, i16> {
    let committed = |o: i64| (o >= 0).then_some(o);
    let mut out = Vec::new();
    if version >= 8 {
        for g in &resp.groups {
            if g.error_code != 0 {
                return Err(g.error_code);
            }
            for t in &g.topics {
                for p in &t.partitions {
                    if p.error_code != 0 {
                        return Err(p.error_code);
                    }
                    out.push((t.name.to_string(), p.partition_index, committed(p.committed_offset)));
                }
            }
        }
    } else {
        if resp.error_code != 0 {
            return Err(resp.error_code);
        }
        for t in &resp.topics {
            for p in &t.partitions {
                if p.error_code != 0 {
                    return Err(p.error_code);
                }
                out.push((t.name.to_string(), p.partition_index, committed(p.committed_offset)));
            }
        }
    }
    Ok(out)
}

/// Log-end offsets of many partitions in one ListOffsets request to `addr`, which must lead them
/// all. A partition the broker answers with an error is left out (the caller falls back).
pub fn log_end_offsets(
    addr: &str,
    partitions: &[(String, i32)],
    timeout: Duration,
) -> Result<Vec<(String, i32, i64)>, WireError> {
    let topics: Vec<ListOffsetsTopic> = by_topic(partitions)
        .into_iter()
        .map(|(t, ps)| {
            ListOffsetsTopic::default().with_name(topic_name(t)).with_partitions(
                ps.into_iter()
                    .map(|p| ListOffsetsPartition::default().with_partition_index(p).with_timestamp(LATEST))
                    .collect(),
            )
        })
        .collect();
    let timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    let (resp, _) = call(addr, 0, timeout, |v| {
        let req = ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(topics);
        if v >= 10 {
            req.with_timeout_ms(timeout_ms)
        } else {
            req
        }
    })?;
    Ok(parse_list_offsets(&resp))
}

pub(crate) fn parse_list_offsets(resp: &ListOffsetsResponse) -> Vec<(String, i32, i64)> {
    resp.topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().filter(|p| p.error_code == 0).map(|p| (t.name.to_string(), p.partition_index, p.offset))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testing::{s, wire};
    use kafka_protocol::messages::find_coordinator_response::Coordinator;
    use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
    use kafka_protocol::messages::offset_fetch_response::{
        OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
        OffsetFetchResponseTopic, OffsetFetchResponseTopics,
    };

    #[test]
    fn parses_list_offsets() {
        let resp = ListOffsetsResponse::default().with_topics(vec![ListOffsetsTopicResponse::default()
            .with_name(topic_name("t"))
            .with_partitions(vec![
                ListOffsetsPartitionResponse::default().with_partition_index(0).with_offset(42),
                ListOffsetsPartitionResponse::default().with_partition_index(1).with_error_code(6).with_offset(-1),
            ])]);
        for v in [1, 10] {
            assert_eq!(parse_list_offsets(&wire(&resp, v)), vec![("t".to_string(), 0, 42)]);
        }
    }

    #[test]
    fn parses_offset_fetch_in_both_layouts() {
        let old = OffsetFetchResponse::default().with_topics(vec![OffsetFetchResponseTopic::default()
            .with_name(topic_name("t"))
            .with_partitions(vec![
                OffsetFetchResponsePartition::default().with_partition_index(0).with_committed_offset(7),
                OffsetFetchResponsePartition::default().with_partition_index(1).with_committed_offset(-1),
            ])]);
        let want = vec![("t".to_string(), 0, Some(7)), ("t".to_string(), 1, None)];
        assert_eq!(parse_offset_fetch(&wire(&old, 1), 1), Ok(want.clone()));
        let new = OffsetFetchResponse::default().with_groups(vec![OffsetFetchResponseGroup::default()
            .with_group_id(group_id("g"))
            .with_topics(vec![OffsetFetchResponseTopics::default().with_name(topic_name("t")).with_partitions(
                vec![
                    OffsetFetchResponsePartitions::default().with_partition_index(0).with_committed_offset(7),
                    OffsetFetchResponsePartitions::default().with_partition_index(1).with_committed_offset(-1),
                ],
            )])]);
        assert_eq!(parse_offset_fetch(&wire(&new, 9), 9), Ok(want));
    }

    #[test]
    fn offset_fetch_errors_surface() {
        let group_level = OffsetFetchResponse::default()
            .with_groups(vec![OffsetFetchResponseGroup::default().with_group_id(group_id("g")).with_error_code(16)]);
        assert_eq!(parse_offset_fetch(&wire(&group_level, 9), 9), Err(16));
        let partition_level = OffsetFetchResponse::default().with_topics(vec![OffsetFetchResponseTopic::default()
            .with_name(topic_name("t"))
            .with_partitions(vec![OffsetFetchResponsePartition::default().with_error_code(14)])]);
        assert_eq!(parse_offset_fetch(&wire(&partition_level, 3), 3), Err(14));
    }

    #[test]
    fn coordinators_of_a_batch_and_of_one() {
        let batch = FindCoordinatorResponse::default().with_coordinators(vec![
            Coordinator::default().with_key(s("a")).with_host(s("h1")).with_port(9092),
            Coordinator::default().with_key(s("b")).with_error_code(15),
        ]);
        let got = coordinators("x", &wire(&batch, 6), 6, &["a".into(), "b".into()]);
        assert_eq!(got[0].1.as_deref().unwrap(), "h1:9092");
        assert_eq!(got[1].1.as_ref().unwrap_err().code(), Some(15));
        let one = FindCoordinatorResponse::default().with_host(s("h2")).with_port(19092);
        let got = coordinators("x", &wire(&one, 3), 3, &["a".into()]);
        assert_eq!((got[0].0.as_str(), got[0].1.as_deref().unwrap()), ("a", "h2:19092"));
    }
}
