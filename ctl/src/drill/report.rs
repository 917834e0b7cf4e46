//! The drill report: environment, phases, timeline, metrics, counts and the verdict, in Markdown
//! (the shape of a fault-tolerance test report) and JSON.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::count::Counts;
use super::plan::{DrillPlan, Scenario};
use super::timeline::{Entry, Failover, Kill};

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Environment {
    pub host: String,
    pub cores: usize,
    pub api_url: String,
    pub kafka_bootstrap: String,
    pub routers: u32,
    /// chat-events topics and their partitions.
    pub topics: Vec<(String, i32)>,
    /// `classic` or `consumer` (KIP-848: session and heartbeat are the broker's settings).
    pub group_protocol: String,
    pub session_timeout_ms: u32,
    pub heartbeat_interval_ms: u32,
    pub assignment_strategy: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Phase {
    pub name: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KillOutcome {
    pub kill: Kill,
    pub failover: Failover,
}

/// The broker outage of `broker-restart`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BrokerOutage {
    pub stopped_at: DateTime<Utc>,
    pub started_at: DateTime<Utc>,
    pub down_ms: i64,
    /// First delivery routed after the broker was back.
    pub first_processed_at: Option<DateTime<Utc>>,
    /// Broker back -> first delivery routed.
    pub resume_ms: Option<i64>,
    /// The longest time, from the fault until the traffic stopped, in which the outbox relay
    /// published nothing (the broker acknowledged no record), read every 50 ms.
    pub producer_stall_ms: Option<i64>,
    /// The same for the router group: the longest time in which no delivery was routed.
    pub consumer_stall_ms: Option<i64>,
    /// kill-broker: the leader election and the under-replicated time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader_kill: Option<super::broker::LeaderKill>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Traffic {
    pub sent: u64,
    pub accepted: u64,
    /// Requests refused or failed: API downtime.
    pub failed: u64,
    pub failure_samples: Vec<String>,
    /// Sends that found all connections busy (the client fell behind its schedule).
    pub client_behind: u64,
    /// Accepted messages per second over the send window.
    pub accepted_per_sec: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Criterion {
    pub name: String,
    pub limit: String,
    pub actual: String,
    pub passed: bool,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DrillReport {
    pub scenario: String,
    pub run_id: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub plan: DrillPlan,
    pub environment: Environment,
    pub phases: Vec<Phase>,
    pub kills: Vec<KillOutcome>,
    pub broker: Option<BrokerOutage>,
    pub timeline: Vec<Entry>,
    pub traffic: Traffic,
    pub counts: Counts,
    /// Every accepted message reached a final state before the drain timeout.
    pub drained: bool,
    pub criteria: Vec<Criterion>,
    pub passed: bool,
}

fn secs(ms: Option<i64>) -> String {
    ms.map(|m| format!("{:.2} s", m as f64 / 1000.0)).unwrap_or_else(|| "-".into())
}

/// The criteria a drill is judged by.
pub fn judge(
    plan: &DrillPlan,
    kills: &[KillOutcome],
    broker: Option<&BrokerOutage>,
    traffic: &Traffic,
    counts: &Counts,
    drained: bool,
) -> Vec<Criterion> {
    let limit_ms = plan.max_recovery.as_millis() as i64;
    let mut v = Vec::new();
    let owner_kills: Vec<&KillOutcome> = kills.iter().filter(|k| !k.kill.partitions.is_empty()).collect();
    let judged: Vec<&KillOutcome> = owner_kills.iter().copied().filter(|k| !k.failover.interrupted).collect();
    let interrupted = owner_kills.len() - judged.len();
    if !owner_kills.is_empty() {
        let worst = judged.iter().map(|k| k.failover.recovery_ms).try_fold(0i64, |w, r| r.map(|r| w.max(r)));
        let mut actual = match (judged.is_empty(), worst) {
            (true, _) => "not observed".to_string(),
            (false, Some(w)) => secs(Some(w)),
            (false, None) => "no survivor processed an event".into(),
        };
        if interrupted > 0 {
            actual.push_str(&format!(
                " ({interrupted} kill(s) taken over but interrupted by the next kill before a new delivery)"
            ));
        }
        v.push(Criterion {
            name: if owner_kills.len() > 1 { "recovery time (worst kill)" } else { "recovery time" }.into(),
            limit: format!("<= {}", secs(Some(limit_ms))),
            actual,
            passed: worst.is_some_and(|w| w <= limit_ms),
        });
    } else if matches!(plan.scenario, Scenario::KillActive | Scenario::KillRandom { .. }) {
        v.push(Criterion {
            name: "recovery time".into(),
            limit: "a partition owner was killed".into(),
            actual: "no killed instance owned a partition".into(),
            passed: matches!(plan.scenario, Scenario::KillRandom { .. }),
        });
    }
    if let Some(b) = broker {
        v.push(Criterion {
            name: "delivery resumed after the broker restart".into(),
            limit: format!("<= {}", secs(Some(limit_ms))),
            actual: secs(b.resume_ms),
            passed: b.resume_ms.is_some_and(|r| r <= limit_ms),
        });
    }
    v.push(Criterion {
        name: "zero loss".into(),
        limit: "0 lost".into(),
        actual: if drained {
            format!("{} lost", counts.lost)
        } else {
            format!("{} lost (not all final after {:?})", counts.lost, plan.drain_timeout)
        },
        passed: counts.lost == 0 && drained && counts.stored_messages == counts.accepted_messages,
    });
    v.push(Criterion {
        name: "zero duplicates".into(),
        limit: "0 delivered twice".into(),
        actual: format!("{} delivered twice", counts.duplicate_deliveries),
        passed: counts.duplicate_deliveries == 0,
    });
    v.push(Criterion {
        name: "order kept".into(),
        limit: "0 order violations".into(),
        actual: format!("{} order violations", counts.order_violations),
        passed: counts.order_violations == 0,
    });
    v.push(Criterion {
        name: "API downtime".into(),
        limit: "0 failed requests".into(),
        actual: format!("{} failed requests", traffic.failed),
        passed: traffic.failed == 0,
    });
    v
}

impl DrillReport {
    pub fn failed_criteria(&self) -> Vec<String> {
        self.criteria
            .iter()
            .filter(|c| !c.passed)
            .map(|c| format!("{}: {} (limit {})", c.name, c.actual, c.limit))
            .collect()
    }

    pub fn to_markdown(&self) -> String {
        let mut s = String::new();
        let verdict = if self.passed { "PASSED" } else { "FAILED" };
        let _ = writeln!(s, "# Fault drill `{}`: {verdict}\n", self.scenario);
        let _ = writeln!(
            s,
            "Run `{}`, {} to {}.\n",
            self.run_id,
            self.started_at.format("%F %T%.3f"),
            self.finished_at.format("%T%.3f UTC")
        );

        let e = &self.environment;
        let _ = writeln!(s, "## Environment\n\n| item | value |\n|---|---|");
        let _ = writeln!(s, "| host | {} ({} cores) |", e.host, e.cores);
        let _ = writeln!(s, "| API | {} |", e.api_url);
        let _ = writeln!(s, "| broker | {} |", e.kafka_bootstrap);
        let topics = e.topics.iter().map(|(t, p)| format!("{t} ({p} partitions)")).collect::<Vec<_>>().join(", ");
        let _ = writeln!(s, "| topics | {topics} |");
        let _ = writeln!(s, "| routers | {} |", e.routers);
        let _ = writeln!(
            s,
            "| consumer tuning | group protocol {}; classic settings: session.timeout.ms {}, heartbeat.interval.ms {}, {} |",
            e.group_protocol, e.session_timeout_ms, e.heartbeat_interval_ms, e.assignment_strategy
        );
        let p = &self.plan;
        let load = match p.rate {
            Some(r) => format!("{r} msg/s for {:?}", p.duration),
            None => format!("{} messages, one every {:?}", p.messages, p.every),
        };
        let _ = writeln!(s, "| traffic | {load}, then {} recovery messages; 2 recipients each |", p.recovery_messages);
        let _ = writeln!(s, "| kill method | {:?} |\n", p.kill);

        let _ = writeln!(s, "## Phases\n\n| phase | start | end | detail |\n|---|---|---|---|");
        for ph in &self.phases {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} |",
                ph.name,
                ph.start.format("%T%.3f"),
                ph.end.format("%T%.3f"),
                ph.detail
            );
        }

        let _ = writeln!(s, "\n## Timeline\n\n| T+ (s) | time (UTC) | event | detail |\n|---|---|---|---|");
        for t in &self.timeline {
            let _ = writeln!(
                s,
                "| {:+.3} | {} | {} | {} |",
                t.offset_ms as f64 / 1000.0,
                t.at.format("%T%.3f"),
                t.event,
                t.detail.replace('|', "/")
            );
        }

        let _ = writeln!(s, "\n## Metrics\n\n| metric | value |\n|---|---|");
        for (i, k) in self.kills.iter().enumerate() {
            let f = &k.failover;
            let tag =
                if self.kills.len() > 1 { format!(" (kill {} of {})", i + 1, k.kill.victim) } else { String::new() };
            let _ = writeln!(s, "| broker-side detection{tag} | {} |", secs(f.detection_ms));
            let _ = writeln!(
                s,
                "| recovery time: kill -> first event processed by a survivor{tag} | {} |",
                secs(f.recovery_ms)
            );
            if f.interrupted {
                let _ = writeln!(s, "| recovery{tag} | interrupted: the next kill came before a new delivery |");
            }
            let _ = writeln!(s, "| rebalance duration{tag} | {} |", secs(f.rebalance_ms));
            let _ =
                writeln!(s, "| takeover: kill -> partitions assigned to a survivor{tag} | {} |", secs(f.takeover_ms));
            let _ = writeln!(s, "| lag back to baseline{tag} | {} |", secs(f.lag_recovery_ms));
        }
        if let Some(b) = &self.broker {
            let _ = writeln!(s, "| broker down | {} |", secs(Some(b.down_ms)));
            let _ = writeln!(s, "| broker back -> first delivery routed | {} |", secs(b.resume_ms));
            let _ = writeln!(s, "| producer stall (longest, nothing published) | {} |", secs(b.producer_stall_ms));
            let _ = writeln!(s, "| consumer stall (longest, nothing routed) | {} |", secs(b.consumer_stall_ms));
            if let Some(k) = &b.leader_kill {
                let _ = writeln!(s, "| killed | {} (leader of {}) |", k.victim, k.partition);
                let _ = writeln!(
                    s,
                    "| leader election (kill -> new leader {}) | {} |",
                    crate::output::or_dash(k.new_leader),
                    secs(k.leader_election_ms)
                );
                let _ = writeln!(
                    s,
                    "| under-replicated (kill -> every ISR full, {} partitions) | {} |",
                    k.under_replicated_partitions,
                    secs(k.under_replicated_ms)
                );
            }
        }
        let t = &self.traffic;
        let _ = writeln!(s, "| requests sent | {} |", t.sent);
        let _ = writeln!(s, "| accepted | {} ({:.0} msg/s) |", t.accepted, t.accepted_per_sec);
        let _ = writeln!(s, "| API downtime (failed requests) | {} |", t.failed);
        if t.client_behind > 0 {
            let _ = writeln!(s, "| sends delayed (client behind schedule) | {} |", t.client_behind);
        }
        for f in &t.failure_samples {
            let _ = writeln!(s, "| failed request sample | {} |", f.replace('|', "/"));
        }

        let c = &self.counts;
        let _ = writeln!(s, "\n## Deliveries (the providers' records)\n\n| recipient | channel | accepted | delivered | duplicate requests | delivered twice | failed | lost |\n|---|---|---|---|---|---|---|---|");
        for r in &c.recipients {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                r.recipient,
                r.channel,
                r.accepted,
                r.delivered,
                r.duplicate_requests,
                r.duplicate_deliveries,
                r.failed,
                r.lost
            );
        }
        let _ = writeln!(
            s,
            "| **total** | | {} | {} | {} | {} | {} | {} |",
            c.accepted_messages * c.recipients.len() as u64,
            c.delivered,
            c.duplicate_requests,
            c.duplicate_deliveries,
            c.failed,
            c.lost
        );
        let _ = writeln!(s, "\nOrder violations (per conversation and recipient): {}.", c.order_violations);

        let _ = writeln!(s, "\n## Criteria\n\n| criterion | limit | actual | result |\n|---|---|---|---|");
        for cr in &self.criteria {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} |",
                cr.name,
                cr.limit,
                cr.actual,
                if cr.passed { "PASS" } else { "FAIL" }
            );
        }
        let _ = writeln!(s, "\n**Verdict: {verdict}**");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drill::count::RecipientCount;
    use crate::drill::plan::KillMethod;

    fn kill(partitions: usize, recovery: Option<i64>) -> KillOutcome {
        KillOutcome {
            kill: Kill {
                victim: "router-service-1".into(),
                method: KillMethod::Operator,
                at: Utc::now(),
                member_id: Some("m".into()),
                partitions: (0..partitions as i32).map(|p| ("chat-events".to_string(), p)).collect(),
                detail: String::new(),
            },
            failover: Failover { recovery_ms: recovery, ..Failover::default() },
        }
    }

    fn traffic(failed: u64) -> Traffic {
        Traffic {
            sent: 25,
            accepted: 25 - failed,
            failed,
            failure_samples: vec![],
            client_behind: 0,
            accepted_per_sec: 2.0,
        }
    }

    fn counts(lost: u64, dup: u64) -> Counts {
        Counts {
            accepted_messages: 25,
            stored_messages: 25,
            recipients: vec![RecipientCount { lost, duplicate_deliveries: dup, ..RecipientCount::default() }],
            delivered: 50 - lost,
            duplicate_requests: dup,
            duplicate_deliveries: dup,
            order_violations: 0,
            lost,
            failed: 0,
        }
    }

    #[test]
    fn a_clean_drill_passes_every_criterion() {
        let plan = DrillPlan::kill_active();
        let c = judge(&plan, &[kill(1, Some(3900))], None, &traffic(0), &counts(0, 0), true);
        assert!(c.iter().all(|c| c.passed), "{c:?}");
        assert_eq!(c.len(), 5);
    }

    #[test]
    fn each_failure_is_named() {
        let plan = DrillPlan::kill_active();
        let c = judge(&plan, &[kill(1, Some(61_000))], None, &traffic(1), &counts(2, 1), true);
        let failed: Vec<&str> = c.iter().filter(|c| !c.passed).map(|c| c.name.as_str()).collect();
        assert_eq!(failed, vec!["recovery time", "zero loss", "zero duplicates", "API downtime"]);
        let swapped = Counts { order_violations: 2, ..counts(0, 0) };
        let c = judge(&plan, &[kill(1, Some(3900))], None, &traffic(0), &swapped, true);
        let failed: Vec<&str> = c.iter().filter(|c| !c.passed).map(|c| c.name.as_str()).collect();
        assert_eq!(failed, vec!["order kept"]);
        let c = judge(&plan, &[kill(1, None)], None, &traffic(0), &counts(0, 0), false);
        assert!(!c[0].passed && c[0].actual.contains("no survivor"));
        assert!(!c[1].passed, "not drained is not zero loss");
    }

    #[test]
    fn an_interrupted_takeover_is_named_not_judged() {
        let plan =
            DrillPlan { scenario: Scenario::KillRandom { count: 2, interval_secs: 10.0 }, ..DrillPlan::kill_active() };
        let mut cut = kill(1, None);
        cut.failover.interrupted = true;
        let c = judge(&plan, &[cut.clone(), kill(1, Some(4000))], None, &traffic(0), &counts(0, 0), true);
        assert!(c[0].passed && c[0].actual.contains("1 kill(s)"), "{:?}", c[0]);
        let c = judge(&plan, &[cut, kill(1, None)], None, &traffic(0), &counts(0, 0), true);
        assert!(!c[0].passed, "a takeover that never processed fails");
    }

    #[test]
    fn killing_only_standbys_fails_kill_active() {
        let plan = DrillPlan::kill_active();
        let c = judge(&plan, &[kill(0, None)], None, &traffic(0), &counts(0, 0), true);
        assert!(!c[0].passed);
    }
}
