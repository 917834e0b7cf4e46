//! Lag over time: per-partition offset history, lag in seconds estimated from the log-end offset's
//! rate (as kafka-lag-exporter does) and a Burrow-style status (OK, WARN, STALL, STOP, REWIND).
//!
//! Pure: callers record samples (from the broker) and ask for an evaluation; nothing here talks
//! to Kafka, so every rule is unit-tested.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::kafka::PartitionOffsets;

/// Health of one partition of one group, after Burrow's evaluation rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord, Hash)]
#[serde(rename_all = "UPPERCASE")]
pub enum LagStatus {
    /// Lag is zero now, or the consumer keeps up.
    Ok,
    /// The consumer commits, but lag has not decreased over the window: it is falling behind.
    Warn,
    /// The partition has an owner whose committed offset has not moved for the whole window
    /// while lag is above zero.
    Stall,
    /// Lag above zero and nobody owns the partition: nothing will consume it.
    Stop,
    /// The committed offset went backwards (a reset or a replay).
    Rewind,
    /// Not enough history to tell (nothing committed yet, or a single sample with lag).
    Unknown,
}

impl LagStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            LagStatus::Ok => "OK",
            LagStatus::Warn => "WARN",
            LagStatus::Stall => "STALL",
            LagStatus::Stop => "STOP",
            LagStatus::Rewind => "REWIND",
            LagStatus::Unknown => "UNKNOWN",
        }
    }

    /// Whether an operator should look (WARN and worse).
    pub fn is_problem(self) -> bool {
        matches!(self, LagStatus::Warn | LagStatus::Stall | LagStatus::Stop | LagStatus::Rewind)
    }
}

impl std::fmt::Display for LagStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One observation of a partition: when, the group's committed offset, the log-end offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sample {
    /// Milliseconds since the Unix epoch.
    pub at_ms: i64,
    pub committed: Option<i64>,
    pub log_end: i64,
}

impl Sample {
    pub fn lag(&self) -> Option<i64> {
        self.committed.map(|c| (self.log_end - c).max(0))
    }
}

/// What the history says about one partition now.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LagEval {
    pub status: LagStatus,
    /// How far behind in time the committed offset is: now minus the time the log end was at the
    /// committed offset. None when nothing is committed.
    pub lag_seconds: Option<f64>,
}

/// Window rules. Defaults suit consumers that auto-commit every second.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    /// Samples older than this are forgotten (and not evaluated).
    pub window: Duration,
    /// A committed offset must stand still at least this long to be called STALL (several commit
    /// intervals, so a long batch is not mistaken for a stall).
    pub stall_after: Duration,
    /// Samples kept per partition at most.
    pub max_samples: usize,
}

impl Default for Rules {
    fn default() -> Self {
        Self { window: Duration::from_secs(60), stall_after: Duration::from_secs(10), max_samples: 240 }
    }
}

/// Key of a partition's history: (group, topic, partition).
pub type Key = (String, String, i32);

/// Offset history of many partitions of many groups.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LagHistory {
    #[serde(with = "entries")]
    samples: BTreeMap<Key, VecDeque<Sample>>,
    #[serde(skip)]
    rules: Rules,
}

impl LagHistory {
    pub fn new(rules: Rules) -> Self {
        Self { samples: BTreeMap::new(), rules }
    }

    pub fn rules(&self) -> Rules {
        self.rules
    }

    /// Records the offsets of `group` observed at `at_ms`; drops samples outside the window.
    pub fn record(&mut self, group: &str, offsets: &[PartitionOffsets], at_ms: i64) {
        for o in offsets {
            self.push(
                (group.to_string(), o.topic.clone(), o.partition),
                Sample { at_ms, committed: o.committed, log_end: o.log_end },
            );
        }
    }

    /// Adds one sample (kept in time order; a sample older than the newest is ignored).
    pub fn push(&mut self, key: Key, sample: Sample) {
        let rules = self.rules();
        let q = self.samples.entry(key).or_default();
        if q.back().is_some_and(|last| last.at_ms > sample.at_ms) {
            return;
        }
        if q.back().is_some_and(|last| last.at_ms == sample.at_ms) {
            q.pop_back();
        }
        q.push_back(sample);
        let horizon = sample.at_ms - rules.window.as_millis() as i64;
        while q.len() > rules.max_samples || q.front().is_some_and(|s| s.at_ms < horizon) {
            q.pop_front();
        }
    }

    /// Merges another history (e.g. the supervisor's) into this one.
    pub fn merge(&mut self, other: &LagHistory) {
        for (k, q) in &other.samples {
            let mut all: Vec<Sample> = self.samples.remove(k).map(Vec::from).unwrap_or_default();
            all.extend(q.iter().copied());
            all.sort_by_key(|s| s.at_ms);
            all.dedup_by_key(|s| s.at_ms);
            for s in all {
                self.push(k.clone(), s);
            }
        }
    }

    pub fn samples(&self, group: &str, topic: &str, partition: i32) -> Option<&VecDeque<Sample>> {
        self.samples.get(&(group.to_string(), topic.to_string(), partition))
    }

    /// The samples of these groups only (what a one-group describe needs of a large history).
    pub fn only(&self, groups: &[String]) -> LagHistory {
        let samples = self
            .samples
            .iter()
            .filter(|((g, _, _), _)| groups.contains(g))
            .map(|(k, q)| (k.clone(), q.clone()))
            .collect();
        LagHistory { samples, rules: self.rules }
    }

    /// True when there is no history, or a partition has fewer than two samples.
    pub fn is_thin(&self) -> bool {
        self.samples.is_empty() || self.samples.values().any(|q| q.len() < 2)
    }

    /// Forgets partitions that have no sample newer than `horizon_ms` (deleted topics, old groups).
    pub fn prune(&mut self, horizon_ms: i64) {
        self.samples.retain(|_, q| q.back().is_some_and(|s| s.at_ms >= horizon_ms));
    }

    /// Status and lag in seconds of one partition; `owned`: whether a live member owns it.
    pub fn evaluate(&self, group: &str, topic: &str, partition: i32, owned: bool) -> LagEval {
        match self.samples(group, topic, partition) {
            Some(q) => evaluate(&q.iter().copied().collect::<Vec<_>>(), owned, self.rules),
            None => LagEval { status: LagStatus::Unknown, lag_seconds: None },
        }
    }
}

/// Burrow's rules over `samples` (oldest first), in Burrow's order: REWIND, then OK when the
/// current lag is zero, then STOP (no owner), STALL (owner not moving), WARN (lag not
/// decreasing while commits move), else OK.
pub fn evaluate(samples: &[Sample], owned: bool, rules: Rules) -> LagEval {
    let Some(last) = samples.last() else {
        return LagEval { status: LagStatus::Unknown, lag_seconds: None };
    };
    let lag_seconds = lag_seconds(samples);
    let status = status(samples, last, owned, rules);
    LagEval { status, lag_seconds }
}

fn status(samples: &[Sample], last: &Sample, owned: bool, rules: Rules) -> LagStatus {
    let commits: Vec<(i64, i64)> = samples.iter().filter_map(|s| s.committed.map(|c| (s.at_ms, c))).collect();
    if commits.windows(2).any(|w| w[1].1 < w[0].1) {
        return LagStatus::Rewind;
    }
    let Some(lag) = last.lag() else {
        // Nothing committed: fine while nothing was produced either.
        return if last.log_end == 0 {
            LagStatus::Ok
        } else if !owned {
            LagStatus::Stop
        } else {
            LagStatus::Unknown
        };
    };
    if lag == 0 {
        return LagStatus::Ok;
    }
    if !owned {
        return LagStatus::Stop;
    }
    // How long the current committed offset has stood still, as far as the history shows.
    let current = commits.last().map(|c| c.1);
    let still_since = commits.iter().rev().take_while(|c| Some(c.1) == current).last().map(|c| c.0);
    let span = last.at_ms - commits.first().map_or(last.at_ms, |c| c.0);
    if let Some(since) = still_since {
        let still = last.at_ms - since;
        if still >= rules.stall_after.as_millis() as i64 && span >= rules.stall_after.as_millis() as i64 {
            return LagStatus::Stall;
        }
    }
    let lags: Vec<i64> = samples.iter().filter_map(Sample::lag).collect();
    if lags.len() >= 3 && lags.windows(2).all(|w| w[1] >= w[0]) && lags[lags.len() - 1] > lags[0] {
        return LagStatus::Warn;
    }
    if samples.len() < 2 {
        return LagStatus::Unknown;
    }
    LagStatus::Ok
}

/// Now minus the time at which the log end stood at the committed offset: interpolated between
/// the two log-end samples around it, extrapolated from the observed rate when it is older than
/// the history, and at least the history's age when the rate is unknown.
pub fn lag_seconds(samples: &[Sample]) -> Option<f64> {
    let last = samples.last()?;
    let committed = last.committed?;
    if committed >= last.log_end {
        return Some(0.0);
    }
    let now = last.at_ms as f64;
    // Newest sample whose log end was at or below the committed offset, and the one after it.
    let idx = samples.iter().rposition(|s| s.log_end <= committed);
    let secs = match idx {
        Some(i) => {
            let a = samples[i];
            let b = samples.get(i + 1).copied().unwrap_or(*last);
            let t = if b.log_end > a.log_end {
                let f = (committed - a.log_end) as f64 / (b.log_end - a.log_end) as f64;
                a.at_ms as f64 + f * (b.at_ms - a.at_ms) as f64
            } else {
                a.at_ms as f64
            };
            (now - t) / 1000.0
        }
        None => {
            // The committed offset predates the history: extrapolate at the observed rate.
            let first = samples[0];
            let span_ms = (last.at_ms - first.at_ms) as f64;
            let produced = (last.log_end - first.log_end) as f64;
            if span_ms > 0.0 && produced > 0.0 {
                let rate_per_ms = produced / span_ms;
                let behind_first = (first.log_end - committed) as f64 / rate_per_ms;
                (now - first.at_ms as f64 + behind_first) / 1000.0
            } else {
                (now - first.at_ms as f64) / 1000.0
            }
        }
    };
    Some(secs.max(0.0))
}

/// JSON form: a list of {group, topic, partition, samples} (maps with tuple keys are not JSON).
mod entries {
    use super::*;
    use serde::{Deserializer, Serializer};

    #[derive(Serialize, Deserialize)]
    struct Entry {
        group: String,
        topic: String,
        partition: i32,
        samples: Vec<Sample>,
    }

    pub fn serialize<S: Serializer>(m: &BTreeMap<Key, VecDeque<Sample>>, s: S) -> Result<S::Ok, S::Error> {
        let v: Vec<Entry> = m
            .iter()
            .map(|((g, t, p), q)| Entry {
                group: g.clone(),
                topic: t.clone(),
                partition: *p,
                samples: q.iter().copied().collect(),
            })
            .collect();
        v.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<Key, VecDeque<Sample>>, D::Error> {
        let v: Vec<Entry> = Vec::deserialize(d)?;
        Ok(v.into_iter().map(|e| ((e.group, e.topic, e.partition), e.samples.into())).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(at_s: i64, committed: i64, log_end: i64) -> Sample {
        Sample { at_ms: at_s * 1000, committed: Some(committed), log_end }
    }

    fn st(samples: &[Sample], owned: bool) -> LagStatus {
        evaluate(samples, owned, Rules::default()).status
    }

    #[test]
    fn zero_lag_is_ok() {
        assert_eq!(st(&[s(0, 10, 10)], true), LagStatus::Ok);
        assert_eq!(st(&[s(0, 5, 10), s(1, 10, 10)], false), LagStatus::Ok);
    }

    #[test]
    fn offsets_going_back_is_rewind() {
        assert_eq!(st(&[s(0, 10, 10), s(1, 4, 10)], true), LagStatus::Rewind);
    }

    #[test]
    fn lag_without_an_owner_is_stop() {
        assert_eq!(st(&[s(0, 5, 10)], false), LagStatus::Stop);
    }

    #[test]
    fn owner_not_moving_for_the_stall_time_is_stall() {
        let v: Vec<Sample> = (0..=12).map(|t| s(t, 5, 10 + t)).collect();
        assert_eq!(st(&v, true), LagStatus::Stall);
        // Not long enough yet: a long batch, not a stall. Lag grows, so WARN.
        assert_eq!(st(&v[..5], true), LagStatus::Warn);
    }

    #[test]
    fn lag_growing_while_committing_is_warn_and_shrinking_is_ok() {
        let growing = [s(0, 0, 10), s(1, 5, 20), s(2, 10, 30)];
        assert_eq!(st(&growing, true), LagStatus::Warn);
        let shrinking = [s(0, 0, 30), s(1, 15, 35), s(2, 30, 36)];
        assert_eq!(st(&shrinking, true), LagStatus::Ok);
    }

    #[test]
    fn nothing_committed() {
        let none = |log_end| Sample { at_ms: 0, committed: None, log_end };
        assert_eq!(st(&[none(0)], true), LagStatus::Ok);
        assert_eq!(st(&[none(5)], false), LagStatus::Stop);
        assert_eq!(st(&[none(5)], true), LagStatus::Unknown);
        assert_eq!(evaluate(&[none(5)], true, Rules::default()).lag_seconds, None);
    }

    #[test]
    fn lag_seconds_interpolates_the_log_end_history() {
        // Log end 0 at t=0, 100 at t=10: offset 50 was written at t=5; now is t=10.
        let v = [s(0, 0, 0), s(10, 50, 100)];
        assert!((lag_seconds(&v).unwrap() - 5.0).abs() < 1e-9);
        // Caught up.
        assert_eq!(lag_seconds(&[s(0, 100, 100)]), Some(0.0));
    }

    #[test]
    fn lag_seconds_extrapolates_before_the_history() {
        // 10 msg/s observed from t=0 (log end 100) to t=10 (200); committed 50 was written 5 s
        // before the first sample: 15 s behind at t=10.
        let v = [s(0, 50, 100), s(10, 50, 200)];
        assert!((lag_seconds(&v).unwrap() - 15.0).abs() < 1e-9);
        // No production seen: at least the history's age.
        let idle = [s(0, 50, 100), s(4, 50, 100)];
        assert!((lag_seconds(&idle).unwrap() - 4.0).abs() < 1e-9);
    }

    #[test]
    fn history_keeps_the_window_and_merges() {
        let mut h = LagHistory::new(Rules { window: Duration::from_secs(10), ..Rules::default() });
        let key = ("g".to_string(), "t".to_string(), 0);
        for t in 0..30 {
            h.push(key.clone(), s(t, t, t));
        }
        let q = h.samples("g", "t", 0).unwrap();
        assert_eq!(q.front().unwrap().at_ms, 19_000);
        assert_eq!(q.len(), 11);
        let mut other = LagHistory::new(Rules::default());
        other.merge(&h);
        assert_eq!(other.samples("g", "t", 0).unwrap().len(), 11);
        let json = serde_json::to_string(&h).unwrap();
        let back: LagHistory = serde_json::from_str(&json).unwrap();
        assert_eq!(back.samples("g", "t", 0).unwrap().len(), 11);
    }
}
