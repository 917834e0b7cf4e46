//! The consumer-group view every front end shares (`groups describe`, `lag`, `status`, the
//! dashboard, the exporter): the broker's offsets and members, ownership reconciled with the
//! instances' reports, and lag status from the offset history. One implementation of each query.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::error::usage;
use crate::kafka::{GroupInfo, GroupType, Member, Observer, PartitionOffsets};
use crate::lag::{LagHistory, LagStatus};
use crate::ownership::{self, Disagreement, Owner, Source};

/// One partition of one group, as `kafka-consumer-groups --describe` prints it, plus the owner
/// and the lag status.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PartitionView {
    pub group: String,
    #[serde(flatten)]
    pub offsets: PartitionOffsets,
    /// CONSUMER-ID, HOST, CLIENT-ID of the member the broker assigns the partition to (None:
    /// the broker assigns it to nobody), as `kafka-consumer-groups --describe` prints them.
    pub consumer_id: Option<String>,
    pub host: Option<String>,
    pub client_id: Option<String>,
    /// The owning instance: the broker's assignee, else the live member whose report claims it.
    pub owner: Option<Owner>,
    pub status: LagStatus,
    pub lag_seconds: Option<f64>,
}

impl PartitionView {
    /// Whether `kafka-consumer-groups --describe` lists this partition: it shows the partitions
    /// the broker assigns to a member and those the group committed on, nothing else.
    pub fn listed_by_kafka(&self) -> bool {
        self.offsets.committed.is_some() || self.consumer_id.is_some()
    }

    /// TOPIC, PARTITION, CURRENT-OFFSET, LOG-END-OFFSET, LAG as `kafka-consumer-groups` prints
    /// them (`-` where nothing is committed): the columns every partition table starts with.
    pub fn offset_cells(&self) -> [String; 5] {
        let o = &self.offsets;
        [
            o.topic.clone(),
            o.partition.to_string(),
            crate::output::or_dash(o.committed),
            o.log_end.to_string(),
            crate::output::or_dash(o.lag),
        ]
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupView {
    pub group: String,
    /// `classic` or `consumer` (KIP-848).
    pub group_type: GroupType,
    pub state: String,
    pub protocol: String,
    /// KIP-848 groups: the group epoch and the epoch of the target assignment.
    pub group_epoch: Option<i32>,
    pub assignment_epoch: Option<i32>,
    pub members: usize,
    /// Members still moving to their target assignment: off target, or behind the target
    /// assignment's epoch (KIP-848; 0 for classic groups).
    pub reconciling: usize,
    /// Partitions where a live member's own report differs from the broker's assignment.
    pub disagreements: Vec<Disagreement>,
    pub partitions: Vec<PartitionView>,
    /// Instances in the group that own nothing.
    pub standby: Vec<String>,
    /// Instances whose last report names a member the broker no longer lists.
    pub stale_reports: Vec<String>,
    /// Sum of the lag of partitions with a committed offset.
    pub total_lag: i64,
    /// Worst partition status (OK when every partition is).
    pub status: LagStatus,
    /// Largest lag in seconds of any partition.
    pub max_lag_seconds: Option<f64>,
}

impl GroupView {
    /// Whether the members' own reports dispute the broker's owner of `topic`-`partition`.
    pub fn disputed(&self, topic: &str, partition: i32) -> bool {
        self.disagreements.iter().any(|d| d.topic == topic && d.partition == partition)
    }

    /// The owner of `p` as the partition tables print it: the instance, followed by
    /// [`DISPUTED`] when the members' reports dispute it; None when nobody owns it.
    pub fn owner_cell(&self, p: &PartitionView) -> Option<String> {
        let owner = &p.owner.as_ref()?.instance;
        Some(if self.disputed(&p.offsets.topic, p.offsets.partition) {
            format!("{owner}{DISPUTED}")
        } else {
            owner.clone()
        })
    }

    /// `N reconciling, N disputed by reports` for one-line summaries; empty when neither.
    pub fn notes(&self) -> String {
        notes(self.reconciling, self.disagreements.len())
    }
}

/// Follows an owner the members' own reports dispute (`lag`, the dashboard).
pub const DISPUTED: char = '!';

/// What a group summary adds beyond state and lag: members still reconciling and partitions
/// whose owner the reports dispute; empty when neither.
pub fn notes(reconciling: usize, disputed: usize) -> String {
    let mut notes = Vec::new();
    if reconciling > 0 {
        notes.push(format!("{reconciling} reconciling"));
    }
    if disputed > 0 {
        notes.push(format!("{disputed} disputed by reports"));
    }
    notes.join(", ")
}

/// `groups describe`: the shared view plus what only a one-group describe shows (the group's
/// protocol and epochs, every member, and where the members' reports disagree with the broker).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupDescription {
    #[serde(flatten)]
    pub view: GroupView,
    pub coordinator: Option<String>,
    /// The broker's members (`members` is their count).
    pub member_details: Vec<Member>,
}

/// Reads groups from a broker and instance reports from Redis, keeping the offset history that
/// lag status and lag seconds need. Cheap to call repeatedly (`--watch`, the dashboard).
pub struct GroupReader {
    observer: Arc<Observer>,
    redis_url: String,
    redis: Option<redis::aio::MultiplexedConnection>,
    pub history: LagHistory,
    /// Set when the instance reports could not be read (ownership then from the broker only).
    pub reports_error: Option<String>,
}

impl GroupReader {
    pub fn new(bootstrap: &str, redis_url: &str, timeout: Duration, history: LagHistory) -> anyhow::Result<Self> {
        Ok(Self {
            observer: Arc::new(Observer::new(bootstrap, timeout)?),
            redis_url: redis_url.to_string(),
            redis: None,
            history,
            reports_error: None,
        })
    }

    pub fn observer(&self) -> Arc<Observer> {
        self.observer.clone()
    }

    /// Every group on the broker, described.
    pub async fn all(&mut self) -> anyhow::Result<Vec<GroupView>> {
        Ok(self.all_with_topics().await?.0)
    }

    /// Every group, and the topics (name, partitions) read on the way.
    pub async fn all_with_topics(&mut self) -> anyhow::Result<(Vec<GroupView>, Vec<(String, i32)>)> {
        let obs = self.observer.clone();
        let (raw, topics) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let topics = obs.topics()?;
            let groups = obs.groups()?;
            let offsets = obs.offsets_of_groups(&groups, &topics)?;
            Ok((groups.into_iter().zip(offsets).collect::<Vec<_>>(), topics))
        })
        .await??;
        let names: Vec<String> = raw.iter().map(|(g, _)| g.group.clone()).collect();
        let mut reports = self.reports_of(&names).await.into_iter();
        let views = raw
            .into_iter()
            .map(|(info, offsets)| {
                let r = reports.next().unwrap_or_default();
                self.build_with(&info, offsets, &r)
            })
            .collect();
        Ok((views, topics))
    }

    /// One group; a usage error (exit 2) when the broker does not know it.
    pub async fn describe(&mut self, group: &str) -> anyhow::Result<GroupView> {
        Ok(self.describe_full(group).await?.view)
    }

    /// One group with its members and the disagreements between reports and broker.
    pub async fn describe_full(&mut self, group: &str) -> anyhow::Result<GroupDescription> {
        let obs = self.observer.clone();
        let name = group.to_string();
        let (info, offsets) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let info = obs.group(&name)?.ok_or_else(|| usage(format!("unknown consumer group {name:?}")))?;
            let topics = obs.topics()?;
            let offsets = obs.offsets_of_group(&info, &topics)?;
            Ok((info, offsets))
        })
        .await??;
        let view = self.build(&info, offsets).await;
        Ok(GroupDescription { view, coordinator: info.coordinator, member_details: info.members })
    }

    /// The reports of `groups`, in one round trip; empty ones when Redis cannot be read (the
    /// error is kept in `reports_error`).
    async fn reports_of(&mut self, groups: &[String]) -> Vec<Vec<chat4all_contract::events::AssignmentReport>> {
        if self.redis.is_none() {
            match ownership::redis(&self.redis_url).await {
                Ok(c) => self.redis = Some(c),
                Err(e) => {
                    self.reports_error = Some(format!("{e:#}"));
                    return vec![Vec::new(); groups.len()];
                }
            }
        }
        let conn = self.redis.as_mut().expect("connected above");
        match ownership::reports_of(conn, groups).await {
            Ok(r) => {
                self.reports_error = None;
                r
            }
            Err(e) => {
                self.reports_error = Some(format!("{e:#}"));
                self.redis = None;
                vec![Vec::new(); groups.len()]
            }
        }
    }

    async fn reports(&mut self, group: &str) -> Vec<chat4all_contract::events::AssignmentReport> {
        self.reports_of(&[group.to_string()]).await.pop().unwrap_or_default()
    }

    async fn build(&mut self, info: &GroupInfo, offsets: Vec<PartitionOffsets>) -> GroupView {
        let reports = self.reports(&info.group).await;
        self.build_with(info, offsets, &reports)
    }

    fn build_with(
        &mut self,
        info: &GroupInfo,
        offsets: Vec<PartitionOffsets>,
        reports: &[chat4all_contract::events::AssignmentReport],
    ) -> GroupView {
        let own = ownership::reconcile(info, reports);
        let now = chrono::Utc::now().timestamp_millis();
        self.history.record(&info.group, &offsets, now);
        let partitions: Vec<PartitionView> = offsets
            .into_iter()
            .map(|o| {
                let owner = own.owners.get(&(o.topic.clone(), o.partition)).cloned();
                let assignee = owner
                    .as_ref()
                    .filter(|ow| ow.source == Source::Broker)
                    .and_then(|ow| info.members.iter().find(|m| m.member_id == ow.member_id));
                let eval = self.history.evaluate(&info.group, &o.topic, o.partition, owner.is_some());
                PartitionView {
                    group: info.group.clone(),
                    consumer_id: assignee.map(|m| m.member_id.clone()),
                    host: assignee.map(|m| m.host.clone()),
                    client_id: assignee.map(|m| m.client_id.clone()),
                    owner,
                    status: eval.status,
                    lag_seconds: eval.lag_seconds,
                    offsets: o,
                }
            })
            .collect();
        GroupView {
            total_lag: partitions.iter().filter_map(|p| p.offsets.lag).sum(),
            status: worst(partitions.iter().map(|p| p.status)),
            max_lag_seconds: partitions.iter().filter_map(|p| p.lag_seconds).reduce(f64::max),
            group: info.group.clone(),
            group_type: info.group_type,
            state: info.state.clone(),
            protocol: info.protocol.clone(),
            group_epoch: info.group_epoch,
            assignment_epoch: info.assignment_epoch,
            members: info.members.len(),
            reconciling: info.reconciling(),
            disagreements: own.disagreements,
            partitions,
            standby: own.standby,
            stale_reports: own.stale,
        }
    }
}

/// The worst status of a group's partitions: REWIND > STOP > STALL > WARN > UNKNOWN > OK.
pub fn worst(statuses: impl Iterator<Item = LagStatus>) -> LagStatus {
    let rank = |s: LagStatus| match s {
        LagStatus::Ok => 0,
        LagStatus::Unknown => 1,
        LagStatus::Warn => 2,
        LagStatus::Stall => 3,
        LagStatus::Stop => 4,
        LagStatus::Rewind => 5,
    };
    statuses.max_by_key(|s| rank(*s)).unwrap_or(LagStatus::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worst_status_ranks_rewind_highest() {
        use LagStatus::*;
        assert_eq!(worst([Ok, Warn, Ok].into_iter()), Warn);
        assert_eq!(worst([Stall, Rewind, Stop].into_iter()), Rewind);
        assert_eq!(worst(std::iter::empty()), Ok);
    }

    #[test]
    fn disputed_owners_are_marked_and_notes_count_them() {
        let mut g = crate::exporter::bench::synthetic(1, 3, 0).0.groups.remove(0);
        assert_eq!(g.notes(), "");
        let cells = |g: &GroupView| g.partitions.iter().map(|p| g.owner_cell(p)).collect::<Vec<_>>();
        assert_eq!(cells(&g), [Some("instance-0".into()), Some("instance-1".into()), Some("instance-2".into())]);
        g.reconciling = 2;
        assert_eq!(g.notes(), "2 reconciling");
        g.disagreements = vec![Disagreement {
            topic: "topic-0".into(),
            partition: 2,
            broker: Some("instance-2".into()),
            reported_by: vec![],
        }];
        assert_eq!(g.notes(), "2 reconciling, 1 disputed by reports");
        assert!(g.disputed("topic-0", 2) && !g.disputed("topic-0", 1) && !g.disputed("other", 2));
        assert_eq!(cells(&g)[2].as_deref(), Some("instance-2!"));
        g.partitions[2].owner = None;
        assert_eq!(g.owner_cell(&g.partitions[2]), None);
        assert_eq!(notes(0, 3), "3 disputed by reports");
    }
}
