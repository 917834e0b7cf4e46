//! The failover timeline of one kill, from three independent sources: the broker's member list
//! (detection), the instances' rebalance reports in Redis (rebalance start / end, who took the
//! partitions), PostgreSQL (first event a survivor processed) and the lag samples (back to
//! baseline).

use chrono::{DateTime, Utc};
use serde::Serialize;

use chat4all_contract::events::{RebalanceEvent, RebalanceKind};

use super::observe::Sample;
use super::plan::KillMethod;

/// One kill, as the drill carried it out.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Kill {
    pub victim: String,
    pub method: KillMethod,
    pub at: DateTime<Utc>,
    /// The victim's member id before the kill (from the reconciled ownership).
    pub member_id: Option<String>,
    /// Partitions it owned.
    pub partitions: Vec<(String, i32)>,
    /// What the runtime said (and, for an operator kill, the LeaveGroup outcome).
    pub detail: String,
}

/// The failover after one kill. Times are absolute; the `*_ms` fields are relative to the kill.
#[derive(Debug, Clone, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Failover {
    /// The broker no longer lists the victim's member id.
    pub detected_at: Option<DateTime<Utc>>,
    /// First rebalance report of a survivor after the kill.
    pub rebalance_start: Option<DateTime<Utc>>,
    /// Every partition of the victim assigned to a survivor.
    pub rebalance_end: Option<DateTime<Utc>>,
    pub taken_by: Vec<String>,
    /// First new delivery routed by a survivor that took a partition, after its assignment
    /// (events the victim had already routed are skipped by the router's dedup and do not count:
    /// this is when recipients see progress again).
    pub first_processed_at: Option<DateTime<Utc>>,
    pub first_processed_by: Option<String>,
    pub lag_baseline: Option<i64>,
    pub lag_recovered_at: Option<DateTime<Utc>>,
    pub detection_ms: Option<i64>,
    pub rebalance_ms: Option<i64>,
    /// Kill -> every partition of the victim assigned to a survivor.
    pub takeover_ms: Option<i64>,
    /// Kill -> first event processed by a survivor.
    pub recovery_ms: Option<i64>,
    pub lag_recovery_ms: Option<i64>,
    /// A survivor took the partitions but the next kill came before it routed a new delivery
    /// (kill-random under a backlog): the recovery of this kill could not be observed.
    pub interrupted: bool,
}

/// When the broker stopped listing `member_id` (first sample after `after` without it).
pub fn detected(samples: &[Sample], member_id: &str, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    samples.iter().filter(|s| s.at >= after).find(|s| !s.members.iter().any(|m| m == member_id)).map(|s| s.at)
}

/// The rebalance that moved a victim's partitions.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Rebalance {
    pub start: Option<DateTime<Utc>>,
    /// Every partition assigned to a survivor (None if one never was).
    pub end: Option<DateTime<Utc>>,
    /// Survivors that took a partition, with when they got the first one.
    pub takers: Vec<(String, DateTime<Utc>)>,
}

/// Rebalance start, end and takers of `victim`'s `partitions` among `events` in [after, until).
pub fn rebalance(
    events: &[RebalanceEvent],
    victim: &str,
    partitions: &[(String, i32)],
    after: DateTime<Utc>,
    until: Option<DateTime<Utc>>,
) -> Rebalance {
    let window: Vec<&RebalanceEvent> =
        events.iter().filter(|e| e.at >= after && until.is_none_or(|u| e.at < u) && e.instance != victim).collect();
    let start = window.iter().map(|e| e.at).min();
    let mut takers: Vec<(String, DateTime<Utc>)> = Vec::new();
    let mut end: Option<DateTime<Utc>> = None;
    for (topic, partition) in partitions {
        let taken = window
            .iter()
            .filter(|e| e.kind == RebalanceKind::Assigned)
            .find(|e| e.partitions.iter().any(|tp| &tp.topic == topic && tp.partition == *partition));
        match taken {
            Some(e) => {
                end = end.max(Some(e.at));
                if !takers.iter().any(|(i, _)| i == &e.instance) {
                    takers.push((e.instance.clone(), e.at));
                }
            }
            None => return Rebalance { start, end: None, takers },
        }
    }
    Rebalance { start, end: if partitions.is_empty() { None } else { end }, takers }
}

/// The lag the group runs at before `before`: the highest lag sampled in the `window` before it
/// (traffic keeps a little lag in flight; a failover shows as lag above it).
pub fn baseline(samples: &[Sample], before: DateTime<Utc>, window: chrono::Duration) -> Option<i64> {
    samples.iter().filter(|s| s.at < before && s.at >= before - window).filter_map(|s| s.lag).max()
}

/// First sample at or after `after` whose lag is back at or under `baseline`.
pub fn lag_back(samples: &[Sample], baseline: i64, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    samples.iter().filter(|s| s.at >= after).find(|s| s.lag.is_some_and(|l| l <= baseline)).map(|s| s.at)
}

fn ms(from: DateTime<Utc>, to: Option<DateTime<Utc>>) -> Option<i64> {
    to.map(|t| (t - from).num_milliseconds())
}

impl Failover {
    /// Fills the relative figures from the absolute times.
    pub fn relative_to(mut self, kill: DateTime<Utc>) -> Self {
        self.detection_ms = ms(kill, self.detected_at);
        self.recovery_ms = ms(kill, self.first_processed_at);
        self.takeover_ms = ms(kill, self.rebalance_end);
        self.lag_recovery_ms = ms(kill, self.lag_recovered_at);
        self.rebalance_ms = match (self.rebalance_start, self.rebalance_end) {
            (Some(a), Some(b)) => Some((b - a).num_milliseconds()),
            _ => None,
        };
        self
    }
}

/// One row of the timeline table.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub at: DateTime<Utc>,
    /// Milliseconds after the (first) kill; negative before it.
    pub offset_ms: i64,
    pub event: String,
    pub detail: String,
}

/// The timeline rows of one kill and its failover.
pub fn entries(kill: &Kill, f: &Failover, events: &[RebalanceEvent], until: Option<DateTime<Utc>>) -> Vec<Entry> {
    let mut v = Vec::new();
    let mut push = |at: DateTime<Utc>, event: &str, detail: String| {
        v.push(Entry { at, offset_ms: (at - kill.at).num_milliseconds(), event: event.into(), detail })
    };
    let what = match kill.method {
        KillMethod::Operator => "kill (operator)",
        KillMethod::Crash => "kill (crash)",
        KillMethod::Freeze => "freeze (SIGSTOP)",
    };
    let parts = kill.partitions.iter().map(|(t, p)| format!("{t}-{p}")).collect::<Vec<_>>().join(",");
    push(kill.at, what, format!("{} owning [{}]: {}", kill.victim, parts, kill.detail));
    if let Some(t) = f.detected_at {
        push(t, "broker-side detection", format!("member of {} gone from the group", kill.victim));
    }
    for e in events.iter().filter(|e| e.at >= kill.at && until.is_none_or(|u| e.at < u)) {
        let parts = e.partitions.iter().map(|tp| format!("{}-{}", tp.topic, tp.partition)).collect::<Vec<_>>();
        let kind = match e.kind {
            RebalanceKind::Assigned => "assigned",
            RebalanceKind::Revoked => "revoked",
            RebalanceKind::Lost => "lost",
            RebalanceKind::Left => "left",
        };
        push(e.at, &format!("rebalance: {kind}"), format!("{} [{}]", e.instance, parts.join(",")));
    }
    if let Some(t) = f.first_processed_at {
        push(t, "first event processed by a survivor", f.first_processed_by.clone().unwrap_or_default());
    }
    if let Some(t) = f.lag_recovered_at {
        push(t, "lag back to baseline", format!("lag <= {}", f.lag_baseline.unwrap_or(0)));
    }
    v.sort_by_key(|e| e.at);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat4all_contract::events::TopicPartition;

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_700_000_000_000 + ms).expect("valid time")
    }

    fn ev(ms: i64, instance: &str, kind: RebalanceKind, parts: &[i32]) -> RebalanceEvent {
        let tps: Vec<TopicPartition> =
            parts.iter().map(|p| TopicPartition { topic: "chat-events".into(), partition: *p }).collect();
        RebalanceEvent {
            at: at(ms),
            group: "router-service".into(),
            instance: instance.into(),
            member_id: format!("{instance}-m"),
            kind,
            partitions: tps.clone(),
            assignment: tps,
        }
    }

    fn sample(ms: i64, members: &[&str], lag: i64) -> Sample {
        Sample {
            at: at(ms),
            state: "Stable".into(),
            members: members.iter().map(|m| m.to_string()).collect(),
            lag: Some(lag),
            owners: vec![],
        }
    }

    #[test]
    fn detection_is_the_first_sample_without_the_member() {
        let s = [sample(-100, &["a", "b"], 0), sample(200, &["a", "b"], 3), sample(400, &["b"], 5)];
        assert_eq!(detected(&s, "a", at(0)), Some(at(400)));
        assert_eq!(detected(&s, "c", at(0)), Some(at(200)));
        assert_eq!(detected(&s[..2], "a", at(0)), None);
    }

    #[test]
    fn rebalance_ends_when_every_partition_is_taken() {
        let events = [
            ev(-50, "r1", RebalanceKind::Assigned, &[0, 1]),
            ev(3000, "r2", RebalanceKind::Assigned, &[]),
            ev(3100, "r2", RebalanceKind::Assigned, &[0]),
            ev(3200, "r3", RebalanceKind::Assigned, &[1]),
        ];
        let parts = vec![("chat-events".to_string(), 0), ("chat-events".to_string(), 1)];
        let r = rebalance(&events, "r1", &parts, at(0), None);
        assert_eq!((r.start, r.end), (Some(at(3000)), Some(at(3200))));
        assert_eq!(r.takers, vec![("r2".to_string(), at(3100)), ("r3".to_string(), at(3200))]);
        let r = rebalance(&events[..3], "r1", &parts, at(0), None);
        assert_eq!(r.end, None, "partition 1 never taken");
    }

    #[test]
    fn lag_returns_to_the_pre_kill_baseline() {
        let s = [sample(-2000, &[], 2), sample(-1000, &[], 4), sample(500, &[], 30), sample(4000, &[], 3)];
        let b = baseline(&s, at(0), chrono::Duration::seconds(10)).expect("baseline");
        assert_eq!(b, 4);
        assert_eq!(lag_back(&s, b, at(400)), Some(at(4000)));
    }

    #[test]
    fn figures_are_relative_to_the_kill() {
        let f = Failover {
            detected_at: Some(at(150)),
            rebalance_start: Some(at(3000)),
            rebalance_end: Some(at(3500)),
            first_processed_at: Some(at(3600)),
            ..Failover::default()
        }
        .relative_to(at(0));
        assert_eq!((f.detection_ms, f.rebalance_ms, f.recovery_ms), (Some(150), Some(500), Some(3600)));
        assert_eq!(f.takeover_ms, Some(3500));
    }
}
