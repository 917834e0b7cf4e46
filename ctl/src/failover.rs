//! Faster failover on an operator kill. A SIGKILLed consumer says no goodbye, so its group waits
//! for the session timeout before the survivors take its partitions. When the operator kills an
//! instance through the control plane we know it is dead, so we say the goodbye on its behalf: a
//! LeaveGroup request (the one a consumer sends on a clean close) with the dead member's id, sent
//! to the group coordinator. The coordinator removes the member and rebalances at once.
//!
//! The member id comes from the instance's last assignment report in Redis (the router writes it
//! on every rebalance, with its pid, so a report of an earlier run of the same instance is never
//! mistaken for the killed one).

use std::time::{Duration, Instant};

use chat4all_server::config::topics;
use serde::Serialize;
use thiserror::Error;

use crate::wire::{self, Decoder, Encoder, WireError};

/// Kafka's LeaveGroup API key.
pub const LEAVE_GROUP: i16 = 13;
/// Kafka's UNKNOWN_MEMBER_ID: the coordinator had already dropped the member.
pub const UNKNOWN_MEMBER_ID: i16 = 25;

/// Consumer groups whose members the supervisor runs.
pub const GROUPS: [&str; 2] = [topics::ROUTER_GROUP, topics::STATUS_GROUP];

#[derive(Debug, Error)]
pub enum FailoverError {
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("malformed LeaveGroup response from {0}")]
    Malformed(String),
}

/// What one LeaveGroup on behalf of a dead member did.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LeaveOutcome {
    pub group: String,
    pub member_id: String,
    pub coordinator: String,
    /// Kafka error code of the answer (0: the member was removed, 25: it was already gone).
    pub error_code: i16,
    pub took_ms: u64,
}

impl LeaveOutcome {
    /// One line for the supervisor's action log.
    pub fn describe(&self) -> String {
        let what = match self.error_code {
            0 => "member removed".to_string(),
            UNKNOWN_MEMBER_ID => "member already gone".to_string(),
            c => format!("refused with Kafka error {c}"),
        };
        format!(
            "LeaveGroup {} member {} at coordinator {}: {what} ({} ms)",
            self.group, self.member_id, self.coordinator, self.took_ms
        )
    }
}

/// The LeaveGroup v1 request body: group id and member id.
pub fn leave_group_body(group: &str, member_id: &str) -> Vec<u8> {
    Encoder::default().str(group).str(member_id).bytes()
}

/// The error code of a LeaveGroup v1 response (throttle time, error code).
pub fn parse_leave_group(body: &[u8]) -> Option<i16> {
    let mut d = Decoder::new(body);
    let _throttle_ms = d.i32()?;
    d.i16()
}

/// Sends LeaveGroup for `member_id` of `group` to the group's coordinator. Blocking.
pub fn leave_group(
    bootstrap: &str,
    group: &str,
    member_id: &str,
    timeout: Duration,
) -> Result<LeaveOutcome, FailoverError> {
    let started = Instant::now();
    let seed = bootstrap.split(',').next().unwrap_or(bootstrap).trim();
    let coordinator = wire::find_coordinator(seed, group, timeout)?;
    let body = wire::request_blocking(&coordinator, LEAVE_GROUP, 1, &leave_group_body(group, member_id), timeout)?;
    let error_code = parse_leave_group(&body).ok_or_else(|| FailoverError::Malformed(coordinator.clone()))?;
    Ok(LeaveOutcome {
        group: group.into(),
        member_id: member_id.into(),
        coordinator,
        error_code,
        took_ms: started.elapsed().as_millis() as u64,
    })
}

/// The member ids `instance` (running as `pid`) last reported, per group.
pub async fn members_of(redis_url: &str, instance: &str, pid: u32) -> anyhow::Result<Vec<(String, String)>> {
    let mut conn = crate::ownership::redis(redis_url).await?;
    let mut out = Vec::new();
    for group in GROUPS {
        for r in crate::ownership::reports(&mut conn, group).await? {
            if r.instance == instance && r.pid == pid && !r.member_id.is_empty() {
                out.push((group.to_string(), r.member_id));
            }
        }
    }
    Ok(out)
}

/// After the SIGKILL of `instance` (pid `pid`): LeaveGroup on its behalf in every group it was a
/// member of. Returns one outcome (or error) per group; nothing when it reported no membership.
pub async fn leave_for_dead(
    bootstrap: &str,
    redis_url: &str,
    instance: &str,
    pid: u32,
    timeout: Duration,
) -> anyhow::Result<Vec<Result<LeaveOutcome, String>>> {
    let members = members_of(redis_url, instance, pid).await?;
    let mut out = Vec::new();
    for (group, member) in members {
        let bootstrap = bootstrap.to_string();
        let r = tokio::task::spawn_blocking(move || leave_group(&bootstrap, &group, &member, timeout))
            .await
            .map_err(|e| anyhow::anyhow!("LeaveGroup task: {e}"))?;
        out.push(r.map_err(|e| e.to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leave_group_body_is_two_strings() {
        let b = leave_group_body("g", "m-1");
        assert_eq!(b, vec![0, 1, b'g', 0, 3, b'm', b'-', b'1']);
    }

    #[test]
    fn parses_leave_group_response() {
        assert_eq!(parse_leave_group(&Encoder::default().i32(0).i16(0).bytes()), Some(0));
        assert_eq!(parse_leave_group(&Encoder::default().i32(5).i16(25).bytes()), Some(25));
        assert_eq!(parse_leave_group(&[0, 0, 0]), None);
    }

    #[test]
    fn describes_outcomes() {
        let mut o = LeaveOutcome {
            group: "router-service".into(),
            member_id: "m".into(),
            coordinator: "127.0.0.1:9092".into(),
            error_code: 0,
            took_ms: 3,
        };
        assert!(o.describe().contains("member removed"));
        o.error_code = UNKNOWN_MEMBER_ID;
        assert!(o.describe().contains("already gone"));
        o.error_code = 16;
        assert!(o.describe().contains("error 16"));
    }
}
