//! Who owns which partition, and the rebalance timeline. Ownership comes from the broker
//! (DescribeGroups member assignments for classic groups, ConsumerGroupDescribe for KIP-848
//! groups) and from the instances' own reports (the ops channel in Redis) only where the broker
//! does not say; a report counts only while its member id is still a member of the group on the
//! broker, so a killed instance stops owning as soon as the broker says so. Where a live
//! member's own report and the broker's assignment differ, the partition is listed as a
//! disagreement (the broker still decides the owner) — reconciled, never hidden.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Context;
use chat4all_contract::events::{AssignmentReport, RebalanceEvent};
use chat4all_contract::ops_keys;

use crate::kafka::{GroupInfo, Member};

/// Where an owner was learned from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Broker,
    Report,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Source::Broker => "broker",
            Source::Report => "report",
        })
    }
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
    /// Partitions where a live member's own report and the broker's assignment differ.
    pub disagreements: Vec<Disagreement>,
}

/// One partition on which the broker and the members' own reports disagree. Normal for a
/// moment around a rebalance (a report follows the broker); lasting, it means a member works
/// on partitions the broker gave someone else, or ignores one it was given.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Disagreement {
    pub topic: String,
    pub partition: i32,
    /// The instance the broker assigns it to (None: nobody, among members that reported).
    pub broker: Option<String>,
    /// The instances whose own last report claims it.
    pub reported_by: Vec<String>,
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
    Ok(reports_of(conn, &[group.to_string()]).await?.pop().unwrap_or_default())
}

/// [`reports`] of many groups in one round trip (a pipeline of HGETALLs), in their order.
pub async fn reports_of(
    conn: &mut redis::aio::MultiplexedConnection,
    groups: &[String],
) -> anyhow::Result<Vec<Vec<AssignmentReport>>> {
    if groups.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for g in groups {
        pipe.cmd("HGETALL").arg(ops_keys::assignment_hash(g));
    }
    let raw: Vec<BTreeMap<String, String>> = pipe.query_async(conn).await.context("reading assignment reports")?;
    Ok(raw.into_iter().map(|m| m.values().filter_map(|v| serde_json::from_str(v).ok()).collect()).collect())
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

/// The instance a broker member is: its client id (our consumers use their instance name),
/// else the instance of its report, else the member id.
fn instance_of(m: &Member, by_member: &BTreeMap<&str, &AssignmentReport>) -> String {
    if !m.client_id.is_empty() {
        return m.client_id.clone();
    }
    by_member.get(m.member_id.as_str()).map(|r| r.instance.clone()).unwrap_or_else(|| m.member_id.clone())
}

/// Reconciles the broker's view of `group` with the instances' reports.
pub fn reconcile(group: &GroupInfo, reports: &[AssignmentReport]) -> Ownership {
    let members: BTreeSet<&str> = group.members.iter().map(|m| m.member_id.as_str()).collect();
    let mut own = Ownership::default();
    let by_member: BTreeMap<&str, &AssignmentReport> = reports.iter().map(|r| (r.member_id.as_str(), r)).collect();
    for m in &group.members {
        let Some(assignment) = &m.assignment else { continue };
        let instance = instance_of(m, &by_member);
        for (t, p) in assignment {
            own.owners.insert(
                (t.clone(), *p),
                Owner { instance: instance.clone(), member_id: m.member_id.clone(), source: Source::Broker },
            );
        }
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
    // Standing by: members the broker gives nothing (a KIP-848 member that never had a
    // partition never reports), and live members whose report names nothing.
    let owning: BTreeSet<&str> = own.owners.values().map(|o| o.instance.as_str()).collect();
    let mut standby: BTreeSet<String> = BTreeSet::new();
    for m in group.members.iter().filter(|m| m.assignment.as_ref().is_some_and(Vec::is_empty)) {
        standby.insert(instance_of(m, &by_member));
    }
    for r in reports {
        if members.contains(r.member_id.as_str()) {
            standby.insert(r.instance.clone());
        }
    }
    own.standby = standby.into_iter().filter(|i| !owning.contains(i.as_str())).collect();
    own.stale.sort();
    own.disagreements = disagreements(group, &by_member);
    own
}

/// Partitions on which the members that both reported and have a broker assignment disagree
/// with the broker. A member without a report, or whose assignment the broker does not return,
/// cannot disagree.
fn disagreements(group: &GroupInfo, by_member: &BTreeMap<&str, &AssignmentReport>) -> Vec<Disagreement> {
    let mut broker: BTreeMap<(String, i32), String> = BTreeMap::new();
    let mut reported: BTreeMap<(String, i32), BTreeSet<String>> = BTreeMap::new();
    for m in &group.members {
        let (Some(assignment), Some(report)) = (&m.assignment, by_member.get(m.member_id.as_str())) else {
            continue;
        };
        let instance = instance_of(m, by_member);
        for tp in assignment {
            broker.insert(tp.clone(), instance.clone());
        }
        for tp in &report.assignment {
            reported.entry((tp.topic.clone(), tp.partition)).or_default().insert(instance.clone());
        }
    }
    let partitions: BTreeSet<&(String, i32)> = broker.keys().chain(reported.keys()).collect();
    partitions
        .into_iter()
        .filter_map(|tp| {
            let owner = broker.get(tp);
            let claims: Vec<String> = reported.get(tp).map(|s| s.iter().cloned().collect()).unwrap_or_default();
            let agree = match owner {
                Some(o) => claims.len() == 1 && &claims[0] == o,
                None => claims.is_empty(),
            };
            (!agree).then(|| Disagreement {
                topic: tp.0.clone(),
                partition: tp.1,
                broker: owner.cloned(),
                reported_by: claims,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat4all_contract::events::TopicPartition;

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
            members: members.iter().map(|m| Member { member_id: m.to_string(), ..Default::default() }).collect(),
            ..Default::default()
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

    #[test]
    fn members_the_broker_gives_nothing_stand_by_without_a_report() {
        let mut g = group(&["m1", "m2", "m3"]);
        for (m, client, parts) in
            [(0, "r1", vec![("chat-events".to_string(), 0)]), (1, "r2", vec![]), (2, "r3", vec![])]
        {
            g.members[m].client_id = client.into();
            g.members[m].assignment = Some(parts);
        }
        let own = reconcile(&g, &[report("r1", "m1", &[0])]);
        assert_eq!(own.standby, vec!["r2", "r3"]);
        assert!(own.disagreements.is_empty());
    }

    #[test]
    fn agreeing_reports_show_no_disagreement() {
        let mut g = group(&["m1", "m2"]);
        g.members[0].assignment = Some(vec![("chat-events".into(), 0)]);
        g.members[1].assignment = Some(vec![]);
        let own = reconcile(&g, &[report("r1", "m1", &[0]), report("r2", "m2", &[])]);
        assert!(own.disagreements.is_empty(), "{:?}", own.disagreements);
        assert_eq!(own.standby, vec!["r2"]);
    }

    #[test]
    fn a_live_member_claiming_anothers_partition_is_a_disagreement() {
        let mut g = group(&["m1", "m2"]);
        g.members[0].assignment = Some(vec![("chat-events".into(), 0)]);
        g.members[1].assignment = Some(vec![("chat-events".into(), 1)]);
        // r2 still reports partition 0 (it lost it) and not 1 (not yet taken).
        let own = reconcile(&g, &[report("r1", "m1", &[0]), report("r2", "m2", &[0])]);
        let d: Vec<(i32, Option<&str>, Vec<&str>)> = own
            .disagreements
            .iter()
            .map(|d| (d.partition, d.broker.as_deref(), d.reported_by.iter().map(String::as_str).collect()))
            .collect();
        assert_eq!(d, vec![(0, Some("r1"), vec!["r1", "r2"]), (1, Some("r2"), vec![])]);
        // The broker still decides the owner.
        assert_eq!(own.owners[&("chat-events".to_string(), 1)].instance, "r2");
    }

    #[test]
    fn members_without_a_report_or_a_broker_assignment_cannot_disagree() {
        let mut g = group(&["m1", "m2"]);
        g.members[0].assignment = Some(vec![("chat-events".into(), 0)]);
        // m1 has no report; m2's assignment is unknown to the broker view.
        let own = reconcile(&g, &[report("r2", "m2", &[0])]);
        assert!(own.disagreements.is_empty(), "{:?}", own.disagreements);
    }
}
