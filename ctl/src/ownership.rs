//! Who owns which partition, and the rebalance timeline. Ownership comes from the broker where
//! it returns member assignments (Apache Kafka) and from the instances' own reports (the ops
//! channel in Redis) where it does not; a report counts only while its member id is still a
//! member of the group on the broker, so a killed instance stops owning as soon as the broker
//! says so — reconciled, never guessed.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Context;
use chat4all_server::config::ops_keys;
use chat4all_server::events::{AssignmentReport, RebalanceEvent};

use crate::kafka::GroupInfo;

/// Where an owner was learned from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Broker,
    Report,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Owner {
    pub instance: String,
    pub member_id: String,
    pub source: Source,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Ownership {
    /// (topic, partition) -> owner.
    #[serde(skip)]
    pub owners: BTreeMap<(String, i32), Owner>,
    /// Instances that are members of the group but own nothing.
    pub standby: Vec<String>,
    /// Reports whose member id the broker no longer lists (dead or left instances).
    pub stale: Vec<String>,
}

pub async fn redis(url: &str) -> anyhow::Result<redis::aio::MultiplexedConnection> {
    let client = redis::Client::open(url).context("invalid REDIS_URL")?;
    tokio::time::timeout(std::time::Duration::from_secs(3), client.get_multiplexed_async_connection())
        .await
        .context("Redis did not answer")?
        .context("connecting to Redis")
}

pub async fn reports(
    conn: &mut redis::aio::MultiplexedConnection,
    group: &str,
) -> anyhow::Result<Vec<AssignmentReport>> {
    let raw: BTreeMap<String, String> = redis::cmd("HGETALL")
        .arg(ops_keys::assignment_hash(group))
        .query_async(conn)
        .await
        .context("reading assignment reports")?;
    Ok(raw.values().filter_map(|v| serde_json::from_str(v).ok()).collect())
}

/// The newest `count` rebalance reports, oldest first.
pub async fn timeline(
    conn: &mut redis::aio::MultiplexedConnection,
    count: usize,
) -> anyhow::Result<Vec<RebalanceEvent>> {
    let raw: Vec<(String, Vec<(String, String)>)> = redis::cmd("XREVRANGE")
        .arg(ops_keys::REBALANCE_STREAM)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(count)
        .query_async(conn)
        .await
        .context("reading the rebalance stream")?;
    let mut events: Vec<RebalanceEvent> = raw
        .into_iter()
        .flat_map(|(_, fields)| fields.into_iter().filter(|(k, _)| k == "event").map(|(_, v)| v))
        .filter_map(|v| serde_json::from_str(&v).ok())
        .collect();
    events.reverse();
    Ok(events)
}

/// Reconciles the broker's view of `group` with the instances' reports.
pub fn reconcile(group: &GroupInfo, reports: &[AssignmentReport]) -> Ownership {
    let members: BTreeSet<&str> = group.members.iter().map(|m| m.member_id.as_str()).collect();
    let mut own = Ownership::default();
    let by_member: BTreeMap<&str, &AssignmentReport> = reports.iter().map(|r| (r.member_id.as_str(), r)).collect();
    let mut active: BTreeSet<String> = BTreeSet::new();
    for m in &group.members {
        let Some(assignment) = &m.assignment else { continue };
        let instance = if m.client_id.is_empty() {
            by_member.get(m.member_id.as_str()).map(|r| r.instance.clone()).unwrap_or_else(|| m.member_id.clone())
        } else {
            m.client_id.clone()
        };
        for (t, p) in assignment {
            own.owners.insert(
                (t.clone(), *p),
                Owner { instance: instance.clone(), member_id: m.member_id.clone(), source: Source::Broker },
            );
        }
        active.insert(instance);
    }
    for r in reports {
        if !members.contains(r.member_id.as_str()) {
            own.stale.push(r.instance.clone());
            continue;
        }
        for tp in &r.assignment {
            own.owners.entry((tp.topic.clone(), tp.partition)).or_insert_with(|| Owner {
                instance: r.instance.clone(),
                member_id: r.member_id.clone(),
                source: Source::Report,
            });
        }
    }
    let owning: BTreeSet<&str> = own.owners.values().map(|o| o.instance.as_str()).collect();
    for r in reports {
        if members.contains(r.member_id.as_str()) && !owning.contains(r.instance.as_str()) {
            own.standby.push(r.instance.clone());
        }
    }
    own.standby.sort();
    own.stale.sort();
    own
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::Member;
    use chat4all_server::events::TopicPartition;

    fn report(instance: &str, member: &str, parts: &[i32]) -> AssignmentReport {
        AssignmentReport {
            at: chrono::Utc::now(),
            instance: instance.into(),
            member_id: member.into(),
            pid: 1,
            assignment: parts.iter().map(|p| TopicPartition { topic: "chat-events".into(), partition: *p }).collect(),
        }
    }

    fn group(members: &[&str]) -> GroupInfo {
        GroupInfo {
            group: "router-service".into(),
            state: "Stable".into(),
            protocol: "cooperative-sticky".into(),
            members: members
                .iter()
                .map(|m| Member {
                    member_id: m.to_string(),
                    client_id: String::new(),
                    host: String::new(),
                    assignment: None,
                })
                .collect(),
        }
    }

    #[test]
    fn reports_of_live_members_give_owner_and_standbys() {
        let reports = [report("r1", "m1", &[0]), report("r2", "m2", &[]), report("r3", "m3", &[])];
        let own = reconcile(&group(&["m1", "m2", "m3"]), &reports);
        assert_eq!(own.owners[&("chat-events".to_string(), 0)].instance, "r1");
        assert_eq!(own.standby, vec!["r2", "r3"]);
        assert!(own.stale.is_empty());
    }

    #[test]
    fn a_dead_members_report_does_not_own() {
        let reports = [report("r1", "m1", &[0]), report("r2", "m2", &[])];
        let own = reconcile(&group(&["m2"]), &reports);
        assert!(own.owners.is_empty());
        assert_eq!(own.stale, vec!["r1"]);
        assert_eq!(own.standby, vec!["r2"]);
    }

    #[test]
    fn broker_assignments_win_over_reports() {
        let mut g = group(&["m1", "m2"]);
        g.members[1].client_id = "r2".into();
        g.members[1].assignment = Some(vec![("chat-events".into(), 0)]);
        let own = reconcile(&g, &[report("r1", "m1", &[0])]);
        let o = &own.owners[&("chat-events".to_string(), 0)];
        assert_eq!((o.instance.as_str(), o.source), ("r2", Source::Broker));
        assert_eq!(own.standby, vec!["r1"]);
    }
}
