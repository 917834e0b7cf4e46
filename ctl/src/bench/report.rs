//! The bench's report: figures, targets and the Markdown table.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

/// p50/p95/p99/max of a latency distribution, in milliseconds. All zero when `count` is 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LatencySummary {
    pub count: u64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl LatencySummary {
    /// Summarises a histogram of microseconds.
    pub fn from_micros(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            count: h.len(),
            p50: ms(h.value_at_quantile(0.50)),
            p95: ms(h.value_at_quantile(0.95)),
            p99: ms(h.value_at_quantile(0.99)),
            max: ms(h.max()),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BenchReport {
    /// Tag of this run: every conversation id starts with it.
    pub run_id: String,
    pub target_rate: u32,
    pub duration_secs: f64,
    pub recipients: usize,
    /// Messages the schedule called for (rate × duration).
    pub planned: u64,
    /// Requests that went out.
    pub sent: u64,
    /// 202 responses.
    pub accepted: u64,
    /// Other HTTP responses, in total and by status code.
    pub rejected: u64,
    pub rejected_by_status: BTreeMap<u16, u64>,
    /// Requests without an HTTP response (connection failure, timeout).
    pub errors: u64,
    pub error_samples: Vec<String>,
    /// Sends that found the concurrency cap full and had to wait for a slot.
    pub client_behind: u64,
    /// How late sends went out against their schedule.
    pub schedule_lag_ms: LatencySummary,
    /// From the first send to the last 202 response.
    pub send_window_secs: f64,
    pub accepted_per_sec: f64,
    /// accepted × recipients.
    pub expected_deliveries: u64,
    /// Deliveries of accepted messages with status DELIVERED (or READ).
    pub delivered: u64,
    /// Distinct (message, recipient, channel) with an effect in a provider's record.
    pub device_delivered: u64,
    /// Deliveries with status FAILED.
    pub failed: u64,
    /// From the first accepted message's `created_at` to the last `delivered_at`.
    pub delivery_window_secs: f64,
    pub delivered_per_sec: f64,
    /// expected − deliveries that are DELIVERED and have an effect in a provider's record.
    pub lost: u64,
    /// Provider requests beyond one per (message, recipient, channel): retries, replays.
    pub duplicate_requests: u64,
    /// Provider effects beyond one per (message, recipient, channel): delivered twice.
    pub duplicate_deliveries: u64,
    /// Per (conversation, recipient): consecutive messages whose first effects came reversed.
    pub order_violations: u64,
    /// The providers' reject rate during the run, when the benchmark set one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_failure_rate: Option<f64>,
    /// Whether every accepted message reached a final state before `drain_timeout`.
    pub drain_complete: bool,
    /// Time spent waiting for deliveries after the send phase.
    pub drain_secs: f64,
    pub accept_latency_ms: LatencySummary,
    pub end_to_end_latency_ms: LatencySummary,
    /// What `--check` holds the run to.
    pub targets: Targets,
    /// The ceilings measured beside the run (`--ceilings`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ceilings: Option<super::ceilings::Ceilings>,
    /// CPU per process group from the first send to the end of the drain.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cpu: Vec<super::cpu::CpuUse>,
}

/// Acceptance criteria of the benchmark (`bench --check` exits 1 when one is missed).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Targets {
    /// Accepted msg/s at least this share of the target rate.
    pub min_rate_fraction: f64,
    pub max_accept_p99_ms: f64,
    pub max_end_to_end_p95_ms: f64,
    /// Sends that found the load generator's concurrency cap full (it fell behind its schedule).
    pub max_client_behind: u64,
}

pub const MIN_RATE_FRACTION: f64 = 0.98;
pub const MAX_ACCEPT_P99_MS: f64 = 50.0;
pub const MAX_END_TO_END_P95_MS: f64 = 250.0;
/// At a trickle the end-to-end latency is the pipeline's own, with no queue: held tighter.
pub const MAX_END_TO_END_P95_MS_AT_TRICKLE: f64 = 30.0;
/// Rates up to this are a trickle.
pub const TRICKLE_RATE: u32 = 100;

impl Targets {
    /// The targets of the performance issue: 98% of the rate, accept p99 < 50 ms, end-to-end
    /// p95 < 250 ms (< 30 ms at 100 msg/s or less), the load generator never behind.
    pub fn for_rate(rate: u32) -> Self {
        Self {
            min_rate_fraction: MIN_RATE_FRACTION,
            max_accept_p99_ms: MAX_ACCEPT_P99_MS,
            max_end_to_end_p95_ms: if rate <= TRICKLE_RATE {
                MAX_END_TO_END_P95_MS_AT_TRICKLE
            } else {
                MAX_END_TO_END_P95_MS
            },
            max_client_behind: 0,
        }
    }
}

impl BenchReport {
    /// The criteria this run failed; empty when it met every target.
    pub fn meets_targets(&self) -> Vec<String> {
        let t = &self.targets;
        let mut failed = Vec::new();
        let min_rate = t.min_rate_fraction * f64::from(self.target_rate);
        if self.accepted_per_sec < min_rate {
            failed.push(format!(
                "accepted {:.1} msg/s < {:.0}% of the target {} msg/s ({:.1})",
                self.accepted_per_sec,
                t.min_rate_fraction * 100.0,
                self.target_rate,
                min_rate
            ));
        }
        if self.accept_latency_ms.count == 0 {
            failed.push("no accept latency measured (nothing accepted)".into());
        } else if self.accept_latency_ms.p99 >= t.max_accept_p99_ms {
            failed
                .push(format!("accept latency p99 {:.1} ms >= {} ms", self.accept_latency_ms.p99, t.max_accept_p99_ms));
        }
        if self.end_to_end_latency_ms.count == 0 {
            failed.push("no end-to-end latency measured (nothing delivered)".into());
        } else if self.end_to_end_latency_ms.p95 >= t.max_end_to_end_p95_ms {
            failed.push(format!(
                "end-to-end latency p95 {:.1} ms >= {} ms",
                self.end_to_end_latency_ms.p95, t.max_end_to_end_p95_ms
            ));
        }
        if self.client_behind > t.max_client_behind {
            failed.push(format!(
                "the load generator fell behind its schedule {} times (concurrency cap full)",
                self.client_behind
            ));
        }
        if self.lost > 0 {
            failed.push(format!("{} of {} deliveries lost", self.lost, self.expected_deliveries));
        }
        if self.duplicate_deliveries > 0 {
            failed.push(format!("{} duplicate device deliveries", self.duplicate_deliveries));
        }
        if self.order_violations > 0 {
            failed.push(format!("{} order violations", self.order_violations));
        }
        failed
    }

    /// A small Markdown table of the results.
    pub fn to_markdown(&self) -> String {
        let mut rows: Vec<(&str, String)> = vec![
            ("run", self.run_id.clone()),
            (
                "target",
                format!(
                    "{} msg/s for {:.1} s, {} recipients/msg",
                    self.target_rate, self.duration_secs, self.recipients
                ),
            ),
            ("sent / planned", format!("{} / {}", self.sent, self.planned)),
            ("accepted (202)", self.accepted.to_string()),
            ("rejected", rejected_text(self.rejected, &self.rejected_by_status)),
            ("transport errors", self.errors.to_string()),
            ("client behind (cap full)", self.client_behind.to_string()),
            ("schedule lag p99 / max", format!("{:.1} / {:.1} ms", self.schedule_lag_ms.p99, self.schedule_lag_ms.max)),
            ("accepted/s", format!("{:.1} (over {:.2} s)", self.accepted_per_sec, self.send_window_secs)),
            ("accept latency", latency_text(&self.accept_latency_ms)),
            (
                "delivered / expected",
                format!(
                    "{} / {} (on devices: {}, failed: {})",
                    self.delivered, self.expected_deliveries, self.device_delivered, self.failed
                ),
            ),
            ("delivered/s", format!("{:.1} (over {:.2} s)", self.delivered_per_sec, self.delivery_window_secs)),
            ("end-to-end latency", latency_text(&self.end_to_end_latency_ms)),
            ("lost", self.lost.to_string()),
            ("duplicate requests", self.duplicate_requests.to_string()),
            ("duplicate deliveries", self.duplicate_deliveries.to_string()),
            ("order violations", self.order_violations.to_string()),
            (
                "drain",
                format!(
                    "{} after {:.1} s",
                    if self.drain_complete { "complete" } else { "timed out" },
                    self.drain_secs
                ),
            ),
        ];
        if let Some(c) = &self.ceilings {
            rows.extend(ceiling_rows(c));
        }
        let failed = self.meets_targets();
        rows.push((
            "targets",
            if failed.is_empty() { "all met".to_string() } else { format!("FAILED: {}", failed.join("; ")) },
        ));
        let mut out = String::from("| metric | value |\n|---|---|\n");
        for (k, v) in rows {
            let _ = writeln!(out, "| {k} | {} |", v.replace('|', "\\|"));
        }
        if !self.cpu.is_empty() {
            out.push_str("\n| process (from the first send to the drained end) | share of one core | CPU per message |\n|---|---|---|\n");
            for c in &self.cpu {
                let _ = writeln!(
                    out,
                    "| {} ({}) | {:.1}% | {:.0} µs |",
                    c.process, c.processes, c.percent_of_core, c.micros_per_message
                );
            }
        }
        out
    }
}

/// The ceilings and our share of each, as report rows.
fn ceiling_rows(c: &super::ceilings::Ceilings) -> Vec<(&'static str, String)> {
    let share = |s: Option<f64>| s.map(|v| format!(" (ours: {:.0}%)", v * 100.0)).unwrap_or_default();
    let mut rows = Vec::new();
    if let Some(p) = &c.producer {
        rows.push((
            "ceiling: Kafka producer",
            format!(
                "{:.0} records/s of {} B, {} partitions, p99 {:.0} ms [{}]{}; {} records/message",
                p.records_per_second,
                p.record_bytes,
                p.partitions,
                p.p99_ms,
                p.settings,
                share(c.share_of_producer),
                c.records_per_message
            ),
        ));
    }
    if let Some(d) = &c.database {
        rows.push((
            "ceiling: PostgreSQL accept",
            format!("{:.0} msg/s (batches of {}){}", d.accept_per_second, d.accept_batch, share(c.share_of_accept)),
        ));
        rows.push((
            "ceiling: PostgreSQL routing",
            format!("{:.0} msg/s (batches of {}){}", d.route_per_second, d.route_batch, share(c.share_of_routing)),
        ));
    }
    for e in &c.errors {
        rows.push(("ceiling not measured", e.clone()));
    }
    rows
}

fn latency_text(l: &LatencySummary) -> String {
    if l.count == 0 {
        return "n/a".into();
    }
    format!("p50 {:.1} / p95 {:.1} / p99 {:.1} / max {:.1} ms (n={})", l.p50, l.p95, l.p99, l.max, l.count)
}

fn rejected_text(total: u64, by_status: &BTreeMap<u16, u64>) -> String {
    if by_status.is_empty() {
        return total.to_string();
    }
    let parts: Vec<String> = by_status.iter().map(|(s, n)| format!("{s}: {n}")).collect();
    format!("{total} ({})", parts.join(", "))
}
