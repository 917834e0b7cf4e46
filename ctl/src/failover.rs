//! Faster failover on an operator kill. A SIGKILLed consumer says no goodbye, so its group waits
//! for the session timeout before the survivors take its partitions. When the operator kills an
//! instance through the control plane we know it is dead, so we say the goodbye on its behalf: a
//! LeaveGroup request (the one a consumer sends on a clean close) with the dead member's id, sent
//! to the group coordinator. The coordinator removes the member and rebalances at once.
//!
//! The member id comes from the instance's last assignment report in Redis (the router writes it
//! on every rebalance, with its pid, so a report of an earlier run of the same instance is never
//! mistaken for the killed one), else from the broker: the member whose client id is the
//! instance's name.

use std::time::{Duration, Instant};

use chat4all_contract::topics;
use serde::Serialize;
use thiserror::Error;

use crate::wire::{self, code, WireError};

/// Kafka's UNKNOWN_MEMBER_ID: the coordinator had already dropped the member.
pub const UNKNOWN_MEMBER_ID: i16 = code::UNKNOWN_MEMBER_ID;

/// Consumer groups whose members the supervisor runs.
pub const GROUPS: [&str; 5] = [
    topics::ROUTER_GROUP,
    topics::STATUS_GROUP,
    topics::CONNECTOR_GROUPS[0],
    topics::CONNECTOR_GROUPS[1],
    topics::CONNECTOR_GROUPS[2],
];

/// The reason the coordinator logs for a removal (LeaveGroup v5+).
const REASON: &str = "chat4allctl: the member's process is gone";

#[derive(Debug, Error)]
pub enum FailoverError {
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("LeaveGroup answer from {coordinator} names no result for member {member_id}")]
    NoMemberResult { coordinator: String, member_id: String },
}

/// What one LeaveGroup on behalf of a dead member did.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LeaveOutcome {
    pub group: String,
    pub member_id: String,
    pub coordinator: String,
    /// Kafka error code for the member (0: removed, 25: it was already gone); the request's own
    /// error code when the whole request was refused.
    pub error_code: i16,
    /// The LeaveGroup version the coordinator took.
    pub version: i16,
    pub took_ms: u64,
}

impl LeaveOutcome {
    /// One line for the supervisor's action log.
    pub fn describe(&self) -> String {
        let what = match self.error_code {
            0 => "member removed".to_string(),
            UNKNOWN_MEMBER_ID => "member already gone".to_string(),
            c => format!("refused with Kafka error {c} ({})", wire::name_of(c)),
        };
        format!(
            "LeaveGroup {} member {} at coordinator {}: {what} ({} ms)",
            self.group, self.member_id, self.coordinator, self.took_ms
        )
    }
}

/// The member's own result in a LeaveGroup answer: the request-level error when there is one,
/// else the code the coordinator gave this member.
fn member_code(result: &wire::LeaveResult, member_id: &str) -> Option<i16> {
    if result.error_code != 0 {
        return Some(result.error_code);
    }
    result.members.iter().find(|(id, _)| id == member_id).map(|(_, c)| *c)
}

/// Removes member `member_id` (static members also by `group_instance_id`) of `group` on its
/// behalf: LeaveGroup v3+ at the group's coordinator. For a classic group the coordinator
/// removes the member and rebalances at once; for a KIP-848 group (Kafka 4.0+) the same request
/// fences the member. Blocking.
pub fn leave_group(
    bootstrap: &str,
    group: &str,
    member_id: &str,
    group_instance_id: Option<&str>,
    timeout: Duration,
) -> Result<LeaveOutcome, FailoverError> {
    let started = Instant::now();
    let seed = bootstrap.split(',').next().unwrap_or(bootstrap).trim();
    let coordinator = wire::find_coordinator(seed, group, timeout)?;
    let members = [(member_id.to_string(), group_instance_id.map(str::to_string))];
    let result = wire::leave_group(&coordinator, group, &members, REASON, timeout)?;
    let error_code = member_code(&result, member_id).ok_or_else(|| FailoverError::NoMemberResult {
        coordinator: coordinator.clone(),
        member_id: member_id.into(),
    })?;
    Ok(LeaveOutcome {
        group: group.into(),
        member_id: member_id.into(),
        coordinator,
        error_code,
        version: result.version,
        took_ms: started.elapsed().as_millis() as u64,
    })
}

/// One member to remove: its group, member id and static instance id.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadMember {
    pub group: String,
    pub member_id: String,
    pub group_instance_id: Option<String>,
}

/// What the instances' reports say about `instance`, per group: the member id of the run with
/// `pid` (`Ok`), or of another run (`Err`: that id must not be removed).
async fn reported(redis_url: &str, instance: &str, pid: u32) -> anyhow::Result<Vec<(String, Result<String, String>)>> {
    let mut conn = crate::ownership::redis(redis_url).await?;
    let mut out = Vec::new();
    for group in GROUPS {
        for r in crate::ownership::reports(&mut conn, group).await? {
            if r.instance == instance && !r.member_id.is_empty() {
                let id = if r.pid == pid { Ok(r.member_id) } else { Err(r.member_id) };
                out.push((group.to_string(), id));
            }
        }
    }
    Ok(out)
}

/// The member ids `instance` (running as `pid`) last reported, per group.
pub async fn members_of(redis_url: &str, instance: &str, pid: u32) -> anyhow::Result<Vec<(String, String)>> {
    Ok(reported(redis_url, instance, pid).await?.into_iter().filter_map(|(g, id)| Some((g, id.ok()?))).collect())
}

/// The members of `group` the broker lists with client id `instance` (our consumers use their
/// instance name), leaving out `not` (a member id another run of the instance reported).
/// Blocking.
pub fn broker_members(
    bootstrap: &str,
    group: &str,
    instance: &str,
    not: &[String],
    timeout: Duration,
) -> anyhow::Result<Vec<DeadMember>> {
    let obs = crate::kafka::Observer::new(bootstrap, timeout)?;
    let Some(info) = obs.group(group)? else { return Ok(Vec::new()) };
    Ok(pick_members(&info, instance, not))
}

fn pick_members(info: &crate::kafka::GroupInfo, instance: &str, not: &[String]) -> Vec<DeadMember> {
    info.members
        .iter()
        .filter(|m| m.client_id == instance && !not.contains(&m.member_id))
        .map(|m| DeadMember {
            group: info.group.clone(),
            member_id: m.member_id.clone(),
            group_instance_id: m.group_instance_id.clone(),
        })
        .collect()
}

/// The members the dead `instance` (pid `pid`) held: the member ids its run reported, and in
/// the groups where it reported none (a KIP-848 member that never had a partition never
/// reports; nor does one killed before its first assignment) the broker's members with its
/// client id. Redis being down leaves the broker's word.
pub async fn dead_members(
    bootstrap: &str,
    redis_url: &str,
    instance: &str,
    pid: u32,
    timeout: Duration,
) -> anyhow::Result<Vec<DeadMember>> {
    let reports = match reported(redis_url, instance, pid).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "no instance reports; asking the broker who {instance} was");
            Vec::new()
        }
    };
    let mut out = Vec::new();
    for group in GROUPS {
        let mine: Vec<&String> =
            reports.iter().filter(|(g, _)| g == group).filter_map(|(_, id)| id.as_ref().ok()).collect();
        if !mine.is_empty() {
            out.extend(mine.into_iter().map(|id| DeadMember {
                group: group.to_string(),
                member_id: id.clone(),
                group_instance_id: None,
            }));
            continue;
        }
        let others: Vec<String> =
            reports.iter().filter(|(g, _)| g == group).filter_map(|(_, id)| id.clone().err()).collect();
        let (b, g, i) = (bootstrap.to_string(), group.to_string(), instance.to_string());
        let found = tokio::task::spawn_blocking(move || broker_members(&b, &g, &i, &others, timeout))
            .await
            .map_err(|e| anyhow::anyhow!("describe task: {e}"))?;
        match found {
            Ok(m) => out.extend(m),
            Err(e) => tracing::warn!(error = %format!("{e:#}"), group, "cannot ask the broker for {instance}'s member"),
        }
    }
    Ok(out)
}

/// After the death of `instance` (pid `pid`): LeaveGroup on its behalf in every group it was a
/// member of (see [`dead_members`]). Returns one outcome (or error) per member; nothing when
/// neither its reports nor the broker know a membership.
pub async fn leave_for_dead(
    bootstrap: &str,
    redis_url: &str,
    instance: &str,
    pid: u32,
    timeout: Duration,
) -> anyhow::Result<Vec<Result<LeaveOutcome, String>>> {
    let members = dead_members(bootstrap, redis_url, instance, pid, timeout).await?;
    let mut out = Vec::new();
    for m in members {
        let bootstrap = bootstrap.to_string();
        let r = tokio::task::spawn_blocking(move || {
            leave_group(&bootstrap, &m.group, &m.member_id, m.group_instance_id.as_deref(), timeout)
        })
        .await
        .map_err(|e| anyhow::anyhow!("LeaveGroup task: {e}"))?;
        out.push(r.map_err(|e| e.to_string()));
    }
    Ok(out)
}

/// [`leave_for_dead`] with a timeout of 3 s, each outcome as one line for an action log or a
/// command's answer. A failure costs only the fast path: the session timeout still removes the
/// member.
pub async fn leave_for_dead_lines(bootstrap: &str, redis_url: &str, instance: &str, pid: u32) -> Vec<String> {
    const FALLBACK: &str = "the group waits for the session timeout";
    match leave_for_dead(bootstrap, redis_url, instance, pid, Duration::from_secs(3)).await {
        Ok(o) if o.is_empty() => vec![format!("no group membership reported by this run of it; {FALLBACK}")],
        Ok(o) => o
            .into_iter()
            .map(|o| match o {
                Ok(o) => o.describe(),
                Err(e) => format!("LeaveGroup failed ({e}); {FALLBACK}"),
            })
            .collect(),
        Err(e) => vec![format!("LeaveGroup failed ({e:#}); {FALLBACK}")],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(error_code: i16, members: &[(&str, i16)]) -> wire::LeaveResult {
        wire::LeaveResult {
            error_code,
            members: members.iter().map(|(m, c)| (m.to_string(), *c)).collect(),
            version: 5,
        }
    }

    #[test]
    fn the_members_own_code_is_the_outcome() {
        assert_eq!(member_code(&result(0, &[("m-1", 0)]), "m-1"), Some(0));
        assert_eq!(member_code(&result(0, &[("m-2", 0), ("m-1", 25)]), "m-1"), Some(25));
        assert_eq!(member_code(&result(16, &[]), "m-1"), Some(16));
        assert_eq!(member_code(&result(0, &[("m-2", 0)]), "m-1"), None);
    }

    #[test]
    fn the_broker_names_the_dead_instances_members_but_not_another_runs() {
        use crate::kafka::{GroupInfo, Member};
        let m =
            |id: &str, client: &str| Member { member_id: id.into(), client_id: client.into(), ..Default::default() };
        let info = GroupInfo {
            group: "router-service".into(),
            members: vec![m("a", "router-service-1"), m("b", "router-service-2"), m("c", "router-service-1")],
            ..Default::default()
        };
        let picked: Vec<String> =
            pick_members(&info, "router-service-1", &["c".to_string()]).into_iter().map(|d| d.member_id).collect();
        assert_eq!(picked, vec!["a"]);
        assert!(pick_members(&info, "router-service-9", &[]).is_empty());
    }

    #[test]
    fn describes_outcomes() {
        let mut o = LeaveOutcome {
            group: "router-service".into(),
            member_id: "m".into(),
            coordinator: "127.0.0.1:9092".into(),
            error_code: 0,
            version: 5,
            took_ms: 3,
        };
        assert!(o.describe().contains("member removed"));
        o.error_code = UNKNOWN_MEMBER_ID;
        assert!(o.describe().contains("already gone"));
        o.error_code = 16;
        assert!(o.describe().contains("error 16 (NotCoordinator)"), "{}", o.describe());
    }
}
