//! The Kafka protocol for the requests the admin side of librdkafka does not expose (or exposes
//! without the fields we need): ApiVersions, FindCoordinator, OffsetFetch, ListOffsets,
//! ListGroups, DescribeGroups, ConsumerGroupDescribe, LeaveGroup, Metadata, DescribeQuorum. Messages are the
//! `kafka-protocol` crate's, generated from Kafka's own message specs; this module picks the
//! version ([`versions`]), keeps connections ([`pool`]) and turns answers into our types.
//!
//! Versions are never hard-coded: each request goes out at the highest version both the crate
//! and the broker support (Kafka 4 removed many old versions, KIP-896), learned once per broker
//! address from ApiVersions.

mod conn;
mod exchange;
pub mod groups;
pub mod metadata;
pub mod offsets;
mod pool;
pub mod quorum;
#[cfg(test)]
mod testing;
pub mod versions;

use std::time::Duration;

use exchange::Exchange;
use kafka_protocol::error::ParseResponseErrorCode;
use thiserror::Error;

pub use groups::{
    consumer_group_describe, decode_assignment, describe_groups, leave_group, list_groups, ClassicGroup, ClassicMember,
    ConsumerGroup, ConsumerMember, LeaveResult, ListedGroup,
};
pub use metadata::{cluster, Cluster, Replicas, TopicMeta};
pub use offsets::{committed_offsets, find_coordinator, find_coordinators, log_end_offsets, Committed};
pub use quorum::{describe_quorum, Quorum};
pub use versions::ApiRange;

/// Kafka API keys used by callers that only ask whether the broker supports one.
pub mod api {
    pub const LIST_OFFSETS: i16 = 2;
    pub const METADATA: i16 = 3;
    pub const OFFSET_FETCH: i16 = 9;
    pub const FIND_COORDINATOR: i16 = 10;
    pub const LEAVE_GROUP: i16 = 13;
    pub const DESCRIBE_GROUPS: i16 = 15;
    pub const LIST_GROUPS: i16 = 16;
    pub const API_VERSIONS: i16 = 18;
    pub const CREATE_PARTITIONS: i16 = 37;
    pub const DESCRIBE_QUORUM: i16 = 55;
    pub const CONSUMER_GROUP_DESCRIBE: i16 = 69;
}

/// Kafka error codes we act on.
pub mod code {
    pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
    pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    pub const NOT_COORDINATOR: i16 = 16;
    pub const UNKNOWN_MEMBER_ID: i16 = 25;
    pub const UNSUPPORTED_VERSION: i16 = 35;
    pub const GROUP_ID_NOT_FOUND: i16 = 69;
}

#[derive(Debug, Error)]
pub enum WireError {
    #[error("connecting to {addr}: {source}")]
    Connect { addr: String, source: std::io::Error },
    #[error("talking to {addr}: {source}")]
    Io { addr: String, source: std::io::Error },
    #[error("{addr} did not answer within {timeout:?}")]
    Timeout { addr: String, timeout: Duration },
    #[error("malformed answer from {addr} (API {api} v{version}): {reason}")]
    Malformed { addr: String, api: i16, version: i16, reason: String },
    #[error("encoding API {api} v{version} for {addr}: {reason}")]
    Encode { addr: String, api: i16, version: i16, reason: String },
    #[error("{addr} supports API {api} only at versions {theirs}, we speak {ours}")]
    Unsupported { addr: String, api: i16, ours: String, theirs: String },
    #[error("{addr} answered{} with Kafka error {code} ({}){}", context_of(context), name_of(*code), message_of(message))]
    Kafka { addr: String, code: i16, context: Option<String>, message: Option<String> },
}

fn context_of(c: &Option<String>) -> String {
    c.as_ref().map(|c| format!(" for {c}")).unwrap_or_default()
}

fn message_of(m: &Option<String>) -> String {
    m.as_ref().filter(|m| !m.is_empty()).map(|m| format!(": {m}")).unwrap_or_default()
}

/// Kafka's name of an error code, e.g. `NotCoordinator`.
pub fn name_of(code: i16) -> String {
    match code.err() {
        Some(e) => format!("{e:?}"),
        None => "None".into(),
    }
}

impl WireError {
    pub fn kafka(addr: &str, code: i16, context: impl Into<Option<String>>, message: Option<String>) -> Self {
        WireError::Kafka { addr: addr.into(), code, context: context.into(), message }
    }

    /// The Kafka error code, when the broker answered with one.
    pub fn code(&self) -> Option<i16> {
        match self {
            WireError::Kafka { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// The coordinator moved or is not ready yet (NOT_COORDINATOR, COORDINATOR_NOT_AVAILABLE,
/// COORDINATOR_LOAD_IN_PROGRESS), or the connection broke: find it again and ask again.
pub fn is_coordinator_moved(e: &WireError) -> bool {
    matches!(
        e,
        WireError::Kafka { code: code::COORDINATOR_LOAD_IN_PROGRESS..=code::NOT_COORDINATOR, .. }
            | WireError::Connect { .. }
            | WireError::Io { .. }
    )
}

/// Sends the request `build` makes for the negotiated version to `addr`; `min` is the lowest
/// version the caller can work with (e.g. LeaveGroup 3 for removing members by id). Returns the
/// answer and the version it was decoded as. Blocking.
pub fn call<R: Exchange>(
    addr: &str,
    min: i16,
    timeout: Duration,
    build: impl FnOnce(i16) -> R,
) -> Result<(R::Response, i16), WireError> {
    let version = versions::negotiate::<R>(addr, min, timeout)?;
    let req = build(version);
    let resp = pool::with_conn(addr, timeout, |c| c.send(&req, version, timeout))?;
    Ok((resp, version))
}

/// The broker's supported APIs, asked afresh (also a readiness probe: it answers only once the
/// broker serves requests).
pub async fn api_versions(addr: &str, timeout: Duration) -> Result<Vec<ApiRange>, WireError> {
    let owned = addr.to_string();
    tokio::task::spawn_blocking(move || versions::fetch(&owned, timeout))
        .await
        .map_err(|e| WireError::Io { addr: addr.to_string(), source: std::io::Error::other(e) })?
}

/// Whether the broker supports `api_key` at all.
pub async fn supports(addr: &str, api_key: i16, timeout: Duration) -> Result<bool, WireError> {
    Ok(api_versions(addr, timeout).await?.iter().any(|r| r.key == api_key))
}

/// Partitions grouped by topic, in topic order, as the requests list them.
pub(crate) fn by_topic(partitions: &[(String, i32)]) -> std::collections::BTreeMap<&str, Vec<i32>> {
    let mut m: std::collections::BTreeMap<&str, Vec<i32>> = Default::default();
    for (t, p) in partitions {
        m.entry(t.as_str()).or_default().push(*p);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_kafka_code() {
        let e = WireError::kafka("b:9092", 16, Some("group g".into()), Some("moved".into()));
        assert_eq!(e.to_string(), "b:9092 answered for group g with Kafka error 16 (NotCoordinator): moved");
        assert!(is_coordinator_moved(&e));
        assert!(!is_coordinator_moved(&WireError::kafka("b", 25, None, None)));
        assert_eq!(WireError::kafka("b", 25, None, None).code(), Some(25));
    }

    #[test]
    fn partitions_are_grouped_by_topic() {
        let parts = [("b".to_string(), 1), ("a".to_string(), 0), ("b".to_string(), 0)];
        let m = by_topic(&parts);
        assert_eq!(m.into_iter().collect::<Vec<_>>(), vec![("a", vec![0]), ("b", vec![1, 0])]);
    }
}
