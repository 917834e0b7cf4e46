//! What the drill's observations say after the run: each kill's failover (detection, rebalance,
//! first survivor processing, lag back to baseline) and a broker's outage, with the timeline
//! entries of both.

use chrono::{DateTime, Utc};

use chat4all_contract::admin::deliveries::MessageFact;
use chat4all_contract::events::RebalanceEvent;
use chat4all_contract::topics;

use super::broker::LeaderKill;
use super::count;
use super::observe::Sample;
use super::report::{BrokerOutage, KillOutcome};
use super::stall;
use super::timeline::{self, Failover, Kill};

const GROUP: &str = topics::ROUTER_GROUP;
/// Window before a kill that sets the lag baseline.
pub const BASELINE_WINDOW: i64 = 10;

/// Each kill's failover, relative to its kill, and the timeline entries of all of them.
pub fn failovers(
    kills: &[Kill],
    restarts: &[DateTime<Utc>],
    samples: &[Sample],
    events: &[RebalanceEvent],
    facts: &[MessageFact],
) -> (Vec<KillOutcome>, Vec<timeline::Entry>) {
    let mut outcomes = Vec::new();
    let mut entries = Vec::new();
    for (i, k) in kills.iter().enumerate() {
        let until = kills.get(i + 1).map(|n| n.at).or_else(|| restarts.get(i).copied());
        let until_events = kills.get(i + 1).map(|n| n.at);
        let mut f = Failover::default();
        if let Some(m) = &k.member_id {
            f.detected_at = timeline::detected(samples, m, k.at);
        }
        let timeline::Rebalance { start, end, takers } =
            timeline::rebalance(events, &k.victim, &k.partitions, k.at, until);
        f.rebalance_start = start;
        f.rebalance_end = end;
        f.taken_by = takers.iter().map(|(i, _)| i.clone()).collect();
        if let Some(from) = takers.iter().map(|(_, at)| *at).min() {
            if let Some((at, by)) = count::first_routed(facts, &f.taken_by, from) {
                f.first_processed_at = Some(at);
                f.first_processed_by = Some(by);
            }
        }
        f.lag_baseline = timeline::baseline(samples, k.at, chrono::Duration::seconds(BASELINE_WINDOW));
        let lag_from = f.first_processed_at.or(f.rebalance_end);
        if let (Some(b), Some(from)) = (f.lag_baseline, lag_from) {
            f.lag_recovered_at = timeline::lag_back(samples, b, from);
        }
        if let Some(next) = kills.get(i + 1) {
            f.interrupted =
                f.rebalance_end.is_some_and(|e| e < next.at) && f.first_processed_at.is_none_or(|p| p > next.at);
        }
        let f = f.relative_to(k.at);
        entries.extend(timeline::entries(k, &f, events, until_events));
        outcomes.push(KillOutcome { kill: k.clone(), failover: f });
    }
    (outcomes, entries)
}

/// The pipeline's progress while a broker fault ran: the relay's published counter moving, and
/// when the traffic stopped.
#[derive(Debug, Clone, Copy)]
pub struct Progress<'a> {
    pub published: &'a [DateTime<Utc>],
    pub traffic_end: Option<DateTime<Utc>>,
}

/// A broker's outage (stopped or killed at the first instant, started at the second), with its
/// entries added to `entries` in time order.
pub fn broker_outage(
    broker: Option<(DateTime<Utc>, DateTime<Utc>)>,
    leader_kill: Option<LeaderKill>,
    progress: Progress<'_>,
    facts: &[MessageFact],
    events: &[RebalanceEvent],
    entries: &mut Vec<timeline::Entry>,
) -> Option<BrokerOutage> {
    let (stopped, started) = broker?;
    let routers: Vec<String> = (1..=32).map(|n| format!("{GROUP}-{n}")).collect();
    let first = count::first_routed(facts, &routers, started);
    let routed: Vec<DateTime<Utc>> = facts.iter().flat_map(|m| &m.deliveries).filter_map(|d| d.routed_at).collect();
    let stall = |moved: &[DateTime<Utc>]| progress.traffic_end.and_then(|end| stall::longest_gap(moved, stopped, end));
    let o = BrokerOutage {
        producer_stall_ms: stall(progress.published),
        consumer_stall_ms: stall(&routed),
        stopped_at: stopped,
        started_at: started,
        down_ms: (started - stopped).num_milliseconds(),
        first_processed_at: first.as_ref().map(|f| f.0),
        resume_ms: first.as_ref().map(|f| (f.0 - started).num_milliseconds()),
        leader_kill: leader_kill.clone(),
    };
    let mut push = |at: DateTime<Utc>, event: &str, detail: String| {
        entries.push(timeline::Entry { at, offset_ms: (at - stopped).num_milliseconds(), event: event.into(), detail })
    };
    match &leader_kill {
        Some(k) => {
            push(stopped, "broker killed", format!("{} (leader of {}), SIGKILL", k.victim, k.partition));
            if let (Some(at), Some(l)) = (k.elected_at, k.new_leader) {
                push(at, "new leader elected", format!("broker {l} leads {}", k.partition));
            }
            if let Some(ms) = k.under_replicated_ms {
                push(k.killed_at + chrono::Duration::milliseconds(ms), "every ISR full again", String::new());
            }
        }
        None => push(stopped, "broker stop requested", "SIGTERM through the control plane".into()),
    }
    push(started, "broker started", format!("down {:.2} s", o.down_ms as f64 / 1000.0));
    if let Some((at, by)) = first {
        push(at, "first delivery routed after the restart", by);
    }
    for e in events.iter().filter(|e| e.at >= stopped) {
        let parts = e.partitions.iter().map(|tp| format!("{}-{}", tp.topic, tp.partition)).collect::<Vec<_>>();
        push(e.at, &format!("rebalance: {:?}", e.kind).to_lowercase(), format!("{} [{}]", e.instance, parts.join(",")));
    }
    entries.sort_by_key(|e| e.at);
    Some(o)
}
