//! `chat4allctl bench`: an open-loop load benchmark of the message pipeline.
//!
//! The benchmark posts messages to `POST {api_url}/api/v1/messages` at a fixed rate: send `i` is
//! scheduled at `start + i / rate` and goes out when its time comes, whether or not earlier
//! requests have been answered. When the concurrency cap is full the client has fallen behind:
//! the send is counted in `clientBehind` and waits for a free slot (the schedule is absolute, so
//! the sends after it go out as soon as they can); the delay shows in `scheduleLagMs` and in a
//! lower `acceptedPerSec`, never as a silently lower rate.
//!
//! Every message carries a client-generated `messageId` (UUID v7) and a conversation id tagged
//! with the run id (`bench-<8 hex>-c<n>`, 1,000 conversations round-robin), so the run's rows are
//! found by id. After the send phase the benchmark polls the message-service's admin deliveries
//! progress until every accepted message's deliveries are DELIVERED (or FAILED, or
//! `drain_timeout` passed), reads their facts ([`crate::admin::Admin::delivery_facts`]), then
//! measures ([`report`] holds the report and its Markdown):
//!
//! * accept latency: client time of each POST until its 202 response;
//! * end-to-end latency per delivery: `deliveries.delivered_at - messages.created_at` (server
//!   clocks on one machine);
//! * lost: accepted × recipients − deliveries that are DELIVERED *and* reached a device (an
//!   effect in a simulated provider's record, the ground truth, read over the providers' HTTP API
//!   for the run's conversation prefix);
//! * `duplicateRequests` / `duplicateDeliveries`: provider requests / effects beyond one per
//!   (message, recipient, channel);
//! * `orderViolations`: per (conversation, recipient), first effects of consecutive messages the
//!   other way round from `messages.seq`, the order the platform accepted them in
//!   ([`crate::providers::order_violations`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use chrono::{DateTime, Utc};
use hdrhistogram::Histogram;
use tokio::time::Instant;
use uuid::Uuid;

use chat4all_contract::admin::deliveries::MessageFact;
use chat4all_contract::channel::Channel;
use chat4all_contract::provider::RecordEntry;

use crate::admin::Admin;
use crate::providers::{self, Providers};

pub mod ceilings;
pub mod cpu;
pub mod measure;
mod report;
pub mod synthetic;

pub use report::{BenchReport, LatencySummary, Targets};

/// Conversations the messages are spread over, round-robin.
pub const CONVERSATIONS: u64 = 1_000;
pub use chat4all_contract::message::MAX_RECIPIENTS;
/// A request that has not been answered after this long counts as a transport error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Transport errors kept verbatim in the report.
const ERROR_SAMPLES: usize = 5;
/// Histogram range in microseconds: 1 µs to 1 hour, 3 significant digits.
const HIST_MAX_US: u64 = 3_600_000_000;

#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Base URL of the message-service, e.g. `http://127.0.0.1:8081`.
    pub api_url: String,
    /// Messages per second.
    pub rate: u32,
    /// Length of the send phase.
    pub duration: Duration,
    /// Recipients per message: WHATSAPP, TELEGRAM, INSTAGRAM, WHATSAPP, ... in that order.
    pub recipients: usize,
    /// How long to wait for deliveries after the send phase.
    pub drain_timeout: Duration,
    /// Maximum in-flight HTTP requests.
    pub concurrency: usize,
    /// The simulated providers (whose records are the ground truth), by channel.
    pub provider_urls: Vec<(Channel, String)>,
    /// The providers' reject rate for the run (restored after); None leaves them as they are.
    pub provider_failure_rate: Option<f64>,
    /// What `--check` holds the run to; None: [`Targets::for_rate`].
    pub targets: Option<Targets>,
    /// Processes whose CPU the report accounts for (empty: none).
    pub watch_cpu: Vec<cpu::Watched>,
}

impl Default for BenchOptions {
    fn default() -> Self {
        Self {
            api_url: "http://127.0.0.1:8081".into(),
            rate: 2000,
            duration: Duration::from_secs(60),
            recipients: 2,
            drain_timeout: Duration::from_secs(30),
            concurrency: 256,
            provider_urls: Channel::ALL
                .into_iter()
                .map(|ch| (ch, format!("http://127.0.0.1:{}", crate::providers::default_port(ch))))
                .collect(),
            provider_failure_rate: None,
            targets: None,
            watch_cpu: Vec::new(),
        }
    }
}

impl BenchOptions {
    fn validate(&self) -> anyhow::Result<()> {
        if self.rate == 0 {
            bail!("rate must be at least 1 message per second");
        }
        if planned_messages(self.rate, self.duration) == 0 {
            bail!("duration {:?} at {} msg/s sends no message", self.duration, self.rate);
        }
        if self.recipients == 0 || self.recipients > MAX_RECIPIENTS {
            bail!("recipients must be 1 to {MAX_RECIPIENTS}, got {}", self.recipients);
        }
        if self.concurrency == 0 {
            bail!("concurrency must be at least 1");
        }
        if let Some(r) = self.provider_failure_rate {
            if !(0.0..1.0).contains(&r) {
                bail!("provider failure rate must be from 0 to below 1, got {r}");
            }
        }
        Ok(())
    }
}

/// Messages sent in `duration` at `rate` per second (sends scheduled strictly before the end).
pub fn planned_messages(rate: u32, duration: Duration) -> u64 {
    let n = u128::from(rate) * duration.as_nanos();
    // ceil(n / 1e9): send i goes out at i/rate < duration.
    n.div_ceil(1_000_000_000) as u64
}

fn per_sec(count: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        count as f64 / secs
    } else {
        0.0
    }
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_US, 3).expect("valid histogram bounds")
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// The constant parts of every request body.
struct BodyTemplate {
    run_id: String,
    /// `,"recipients":[...]}` — identical for every message.
    tail: String,
}

impl BodyTemplate {
    fn new(run_id: &str, recipients: usize) -> Self {
        let mut tail = String::from(r#","channel":"WHATSAPP","recipients":["#);
        for k in 0..recipients {
            if k > 0 {
                tail.push(',');
            }
            let channel = Channel::ALL[k % Channel::ALL.len()].as_str();
            let _ = write!(tail, r#"{{"userId":"{run_id}-u{k}","channel":"{channel}"}}"#);
        }
        tail.push_str("]}");
        Self { run_id: run_id.to_string(), tail }
    }

    /// The body of send `i`. The run id is `bench-` and hex digits: nothing to escape.
    fn body(&self, id: Uuid, i: u64) -> String {
        let conv = i % CONVERSATIONS;
        let mut s = String::with_capacity(160 + self.tail.len());
        let _ = write!(
            s,
            r#"{{"messageId":"{id}","conversationId":"{run}-c{conv}","senderId":"{run}-s{conv}","content":{{"type":"TEXT","text":"bench {run} #{i}"}}"#,
            run = self.run_id,
        );
        s.push_str(&self.tail);
        s
    }
}

/// What the send phase saw.
struct SendTally {
    sent: u64,
    client_behind: u64,
    schedule_lag: Histogram<u64>,
    accepted: Vec<Uuid>,
    accept_latency: Histogram<u64>,
    rejected_by_status: BTreeMap<u16, u64>,
    errors: u64,
    error_samples: Vec<String>,
    /// From the first send to the last 202 response.
    window: Duration,
}

impl SendTally {
    fn rejected(&self) -> u64 {
        self.rejected_by_status.values().sum()
    }
}

/// Sends `planned` messages at `rate` per second, open loop ([`crate::load`]), at most
/// `concurrency` in flight.
async fn send_phase(
    client: &reqwest::Client,
    url: reqwest::Url,
    template: BodyTemplate,
    rate: u32,
    planned: u64,
    concurrency: usize,
) -> SendTally {
    let client = client.clone();
    let template = Arc::new(template);
    let make: crate::load::MakeRequest = Arc::new(move |id, i| {
        client.post(url.clone()).header(reqwest::header::CONTENT_TYPE, "application/json").body(template.body(id, i))
    });
    let run = crate::load::run(make, crate::load::Schedule::per_second(rate, Some(planned), concurrency)).await;
    let mut t = SendTally {
        sent: run.sent,
        client_behind: run.behind,
        schedule_lag: new_histogram(),
        accepted: Vec::with_capacity(run.replies.len()),
        accept_latency: new_histogram(),
        rejected_by_status: BTreeMap::new(),
        errors: 0,
        error_samples: Vec::new(),
        window: Duration::ZERO,
    };
    let mut last_accept = run.started;
    for r in &run.replies {
        t.schedule_lag.saturating_record(micros(r.schedule_lag()).max(1));
        match &r.answer {
            crate::load::Answer::Status { code: 202, .. } => {
                t.accepted.push(r.id);
                t.accept_latency.saturating_record(micros(r.latency()).max(1));
                last_accept = last_accept.max(r.answered);
            }
            crate::load::Answer::Status { code, .. } => *t.rejected_by_status.entry(*code).or_insert(0u64) += 1,
            crate::load::Answer::Failed(e) => {
                t.errors += 1;
                if t.error_samples.len() < ERROR_SAMPLES {
                    t.error_samples.push(e.clone());
                }
            }
        }
    }
    t.window = last_accept - run.started;
    t
}

/// What PostgreSQL and the providers' records say about the run's deliveries.
struct DeliveryStats {
    delivered: u64,
    confirmed: u64,
    device_delivered: u64,
    failed: u64,
    duplicate_requests: u64,
    duplicate_deliveries: u64,
    order_violations: u64,
    end_to_end: Histogram<u64>,
    first_created: Option<DateTime<Utc>>,
    last_delivered: Option<DateTime<Utc>>,
}

fn delivery_stats(ids: &[Uuid], facts: &[MessageFact], record: &[RecordEntry]) -> DeliveryStats {
    let truth = providers::tally(record);
    let mut s = DeliveryStats {
        delivered: 0,
        confirmed: 0,
        device_delivered: 0,
        failed: 0,
        duplicate_requests: 0,
        duplicate_deliveries: 0,
        order_violations: 0,
        end_to_end: new_histogram(),
        first_created: None,
        last_delivered: None,
    };
    let wanted: std::collections::HashSet<Uuid> = ids.iter().copied().collect();
    let facts: Vec<&MessageFact> = facts.iter().filter(|m| wanted.contains(&m.id)).collect();
    for m in &facts {
        s.first_created = s.first_created.min(Some(m.created_at)).or(Some(m.created_at));
        for d in &m.deliveries {
            s.failed += u64::from(d.status == chat4all_contract::events::DeliveryStatus::Failed);
            let Some(delivered_at) = d.delivered_at else { continue };
            let on_device = truth.get(&(d.channel, m.id, d.recipient_id.clone())).is_some_and(|t| t.effects > 0);
            s.delivered += 1;
            s.confirmed += u64::from(on_device);
            let us = (delivered_at - m.created_at).num_microseconds().unwrap_or(i64::MAX).max(1) as u64;
            s.end_to_end.saturating_record(us);
            s.last_delivered = s.last_delivered.max(Some(delivered_at));
        }
    }
    let order: std::collections::HashMap<Uuid, i64> = facts.iter().map(|m| (m.id, m.seq)).collect();
    for ((_, m, _), t) in &truth {
        if !order.contains_key(m) {
            continue;
        }
        s.duplicate_requests += t.requests.saturating_sub(1);
        if t.effects > 0 {
            s.device_delivered += 1;
            s.duplicate_deliveries += t.effects - 1;
        }
    }
    s.order_violations = providers::order_violations(record, &order);
    s
}

/// A short random tag for the run: `bench-` and 8 hex digits.
fn new_run_id() -> String {
    let simple = Uuid::new_v4().simple().to_string();
    format!("bench-{}", &simple[..8])
}

/// Runs the benchmark: the send phase, the drain, then the report.
pub async fn run(opts: &BenchOptions, admin: &Admin) -> anyhow::Result<BenchReport> {
    opts.validate()?;
    let url = reqwest::Url::parse(&format!("{}/api/v1/messages", opts.api_url.trim_end_matches('/')))
        .with_context(|| format!("invalid api url {:?}", opts.api_url))?;
    // Ask first: a benchmark whose results cannot be read is not worth sending.
    admin.delivery_progress(&[]).await.context("the message-service's admin API")?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(opts.concurrency)
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .timeout(REQUEST_TIMEOUT)
        .build()
        .context("building the HTTP client")?;

    let providers = Providers::new(opts.provider_urls.clone(), Duration::from_secs(30));
    let restore = match opts.provider_failure_rate {
        Some(r) => Some(providers.with_reject_rate(r).await.context("setting the providers' reject rate")?),
        None => None,
    };
    let result = measure(opts, admin, &client, url, &providers).await;
    if let Some(restore) = restore {
        restore.restore().await.context("restoring the providers' faults")?;
    }
    result
}

/// The send phase, the drain, the counts.
async fn measure(
    opts: &BenchOptions,
    admin: &Admin,
    client: &reqwest::Client,
    url: reqwest::Url,
    providers: &Providers,
) -> anyhow::Result<BenchReport> {
    let run_id = new_run_id();
    let planned = planned_messages(opts.rate, opts.duration);
    let template = BodyTemplate::new(&run_id, opts.recipients);
    let meter = cpu::CpuMeter::start(&opts.watch_cpu);
    let tally = send_phase(client, url, template, opts.rate, planned, opts.concurrency).await;

    let drain_start = Instant::now();
    let drain_complete = crate::drill::count::wait_finished(admin, &tally.accepted, opts.drain_timeout)
        .await
        .context("polling the deliveries")?;
    let drain_secs = drain_start.elapsed().as_secs_f64();
    let cpu = meter.finish(tally.accepted.len() as u64);
    let record = providers
        .records(Some(&format!("{run_id}-c")))
        .await
        .context("reading the providers' records (the ground truth)")?;
    let facts = admin.delivery_facts(&tally.accepted).await.context("reading the deliveries' facts")?;
    let stats = delivery_stats(&tally.accepted, &facts, &record);

    let mut report = build_report(opts, run_id, planned, &tally, &stats, drain_complete, drain_secs);
    report.cpu = cpu;
    Ok(report)
}

fn build_report(
    opts: &BenchOptions,
    run_id: String,
    planned: u64,
    tally: &SendTally,
    stats: &DeliveryStats,
    drain_complete: bool,
    drain_secs: f64,
) -> BenchReport {
    let accepted = tally.accepted.len() as u64;
    let expected = accepted * opts.recipients as u64;
    let send_window_secs = tally.window.as_secs_f64();
    let delivery_window_secs = match (stats.first_created, stats.last_delivered) {
        (Some(a), Some(b)) if b > a => (b - a).num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6,
        _ => 0.0,
    };
    BenchReport {
        run_id,
        target_rate: opts.rate,
        duration_secs: opts.duration.as_secs_f64(),
        recipients: opts.recipients,
        planned,
        sent: tally.sent,
        accepted,
        rejected: tally.rejected(),
        rejected_by_status: tally.rejected_by_status.clone(),
        errors: tally.errors,
        error_samples: tally.error_samples.clone(),
        client_behind: tally.client_behind,
        schedule_lag_ms: LatencySummary::from_micros(&tally.schedule_lag),
        send_window_secs,
        accepted_per_sec: per_sec(accepted, send_window_secs),
        expected_deliveries: expected,
        delivered: stats.delivered,
        device_delivered: stats.device_delivered,
        failed: stats.failed,
        delivery_window_secs,
        delivered_per_sec: per_sec(stats.delivered, delivery_window_secs),
        lost: expected.saturating_sub(stats.confirmed),
        duplicate_requests: stats.duplicate_requests,
        duplicate_deliveries: stats.duplicate_deliveries,
        order_violations: stats.order_violations,
        provider_failure_rate: opts.provider_failure_rate,
        drain_complete,
        drain_secs,
        accept_latency_ms: LatencySummary::from_micros(&tally.accept_latency),
        end_to_end_latency_ms: LatencySummary::from_micros(&stats.end_to_end),
        targets: opts.targets.unwrap_or_else(|| Targets::for_rate(opts.rate)),
        ceilings: None,
        cpu: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat4all_contract::message::NewMessage;

    #[test]
    fn default_options_match_the_documented_defaults() {
        let o = BenchOptions::default();
        assert_eq!(o.rate, 2000);
        assert_eq!(o.duration, Duration::from_secs(60));
        assert_eq!(o.recipients, 2);
        assert_eq!(o.drain_timeout, Duration::from_secs(30));
        assert_eq!(o.concurrency, 256);
        assert!(o.validate().is_ok());
    }

    #[test]
    fn rejects_unusable_options() {
        let bad = [
            BenchOptions { rate: 0, ..Default::default() },
            BenchOptions { duration: Duration::ZERO, ..Default::default() },
            BenchOptions { recipients: 0, ..Default::default() },
            BenchOptions { recipients: MAX_RECIPIENTS + 1, ..Default::default() },
            BenchOptions { concurrency: 0, ..Default::default() },
        ];
        for o in bad {
            assert!(o.validate().is_err(), "{o:?} should be rejected");
        }
    }

    #[test]
    fn plans_rate_times_duration() {
        assert_eq!(planned_messages(2000, Duration::from_secs(60)), 120_000);
        assert_eq!(planned_messages(500, Duration::from_secs(10)), 5_000);
        // Sends at 0, 1/3, 2/3, 1, 4/3 s are all before 1.5 s.
        assert_eq!(planned_messages(3, Duration::from_millis(1500)), 5);
        assert_eq!(planned_messages(1, Duration::from_millis(1)), 1);
        assert_eq!(planned_messages(1000, Duration::ZERO), 0);
    }

    #[test]
    fn schedule_is_evenly_spaced_and_absolute() {
        let scheduled_offset = |i, rate| crate::load::Schedule::per_second(rate, None, 1).due(i);
        // Every planned send is scheduled inside the duration, the next one is not.
        let (rate, d) = (7, Duration::from_secs(3));
        let n = planned_messages(rate, d);
        assert!(scheduled_offset(n - 1, rate) < d);
        assert!(scheduled_offset(n, rate) >= d);
        let offsets: Vec<Duration> = (0..1000).map(|i| scheduled_offset(i, 977)).collect();
        assert!(offsets.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn summarises_latencies_in_milliseconds() {
        let mut h = new_histogram();
        for ms in 1..=1000u64 {
            h.record(ms * 1000).unwrap();
        }
        let s = LatencySummary::from_micros(&h);
        assert_eq!(s.count, 1000);
        let close = |a: f64, b: f64| (a - b).abs() <= b * 0.002;
        assert!(close(s.p50, 500.0), "p50 {}", s.p50);
        assert!(close(s.p95, 950.0), "p95 {}", s.p95);
        assert!(close(s.p99, 990.0), "p99 {}", s.p99);
        assert!(close(s.max, 1000.0), "max {}", s.max);
        assert_eq!(LatencySummary::from_micros(&new_histogram()), LatencySummary::default());
    }

    #[test]
    fn a_slow_tail_shows_in_p99_not_p50() {
        let mut h = new_histogram();
        for _ in 0..980 {
            h.record(2_000).unwrap();
        }
        for _ in 0..20 {
            h.record(250_000).unwrap();
        }
        let s = LatencySummary::from_micros(&h);
        assert!((s.p50 - 2.0).abs() < 0.01);
        assert!((s.p95 - 2.0).abs() < 0.01);
        assert!((s.p99 - 250.0).abs() < 0.5, "p99 {}", s.p99);
    }

    #[test]
    fn per_sec_handles_an_empty_window() {
        assert_eq!(per_sec(100, 0.0), 0.0);
        assert_eq!(per_sec(1000, 0.5), 2000.0);
    }

    fn passing_report() -> BenchReport {
        let lat = |p50, p95, p99, max| LatencySummary { count: 1000, p50, p95, p99, max };
        BenchReport {
            run_id: "bench-00000000".into(),
            target_rate: 2000,
            duration_secs: 60.0,
            recipients: 2,
            planned: 120_000,
            sent: 120_000,
            accepted: 120_000,
            rejected: 0,
            rejected_by_status: BTreeMap::new(),
            errors: 0,
            error_samples: vec![],
            client_behind: 0,
            schedule_lag_ms: lat(0.1, 0.5, 1.0, 3.0),
            send_window_secs: 60.0,
            accepted_per_sec: 2000.0,
            expected_deliveries: 240_000,
            delivered: 240_000,
            device_delivered: 240_000,
            failed: 0,
            delivery_window_secs: 60.3,
            delivered_per_sec: 3980.1,
            lost: 0,
            duplicate_requests: 0,
            duplicate_deliveries: 0,
            order_violations: 0,
            provider_failure_rate: None,
            drain_complete: true,
            drain_secs: 0.4,
            accept_latency_ms: lat(3.0, 10.0, 40.0, 90.0),
            end_to_end_latency_ms: lat(50.0, 200.0, 400.0, 900.0),
            targets: Targets::for_rate(2000),
            ceilings: None,
            cpu: Vec::new(),
        }
    }

    #[test]
    fn a_good_run_meets_every_target() {
        assert!(passing_report().meets_targets().is_empty());
        // Exactly 98 % of the target passes.
        let r = BenchReport { accepted_per_sec: 1960.0, ..passing_report() };
        assert!(r.meets_targets().is_empty());
    }

    #[test]
    fn each_missed_target_is_reported() {
        let base = passing_report();
        let cases: Vec<(BenchReport, &str)> = vec![
            (BenchReport { accepted_per_sec: 1959.0, ..base.clone() }, "accepted"),
            (
                BenchReport {
                    accept_latency_ms: LatencySummary { p99: 50.0, ..base.accept_latency_ms },
                    ..base.clone()
                },
                "accept latency p99",
            ),
            (
                BenchReport {
                    end_to_end_latency_ms: LatencySummary { p95: 250.5, ..base.end_to_end_latency_ms },
                    ..base.clone()
                },
                "end-to-end latency p95",
            ),
            (BenchReport { lost: 1, ..base.clone() }, "lost"),
            (BenchReport { client_behind: 1, ..base.clone() }, "fell behind"),
            (BenchReport { duplicate_deliveries: 2, ..base.clone() }, "duplicate"),
            (BenchReport { order_violations: 1, ..base.clone() }, "order"),
            (BenchReport { duplicate_requests: 9, lost: 1, ..base.clone() }, "lost"),
            (BenchReport { end_to_end_latency_ms: LatencySummary::default(), ..base.clone() }, "nothing delivered"),
            (BenchReport { accept_latency_ms: LatencySummary::default(), ..base.clone() }, "nothing accepted"),
        ];
        for (report, needle) in cases {
            let failed = report.meets_targets();
            assert_eq!(failed.len(), 1, "{needle}: {failed:?}");
            assert!(failed[0].contains(needle), "{needle}: {failed:?}");
        }
        let all_bad = BenchReport {
            accepted_per_sec: 10.0,
            lost: 5,
            duplicate_deliveries: 1,
            order_violations: 1,
            client_behind: 4,
            accept_latency_ms: LatencySummary { p99: 500.0, ..base.accept_latency_ms },
            end_to_end_latency_ms: LatencySummary { p95: 5000.0, ..base.end_to_end_latency_ms },
            ..base
        };
        assert_eq!(all_bad.meets_targets().len(), 7);
    }

    #[test]
    fn a_trickle_is_held_to_a_tighter_end_to_end_target() {
        assert_eq!(Targets::for_rate(100).max_end_to_end_p95_ms, 30.0);
        assert_eq!(Targets::for_rate(101).max_end_to_end_p95_ms, 250.0);
        let r = BenchReport {
            target_rate: 100,
            accepted_per_sec: 100.0,
            targets: Targets::for_rate(100),
            end_to_end_latency_ms: LatencySummary { p95: 31.0, ..passing_report().end_to_end_latency_ms },
            ..passing_report()
        };
        assert!(r.meets_targets()[0].contains("p95 31.0 ms >= 30 ms"), "{:?}", r.meets_targets());
    }

    #[test]
    fn report_math_counts_loss_duplicates_and_rates() {
        let opts = BenchOptions { rate: 100, duration: Duration::from_secs(2), ..Default::default() };
        let mut accept_latency = new_histogram();
        accept_latency.record(5_000).unwrap();
        let tally = SendTally {
            sent: 200,
            client_behind: 3,
            schedule_lag: new_histogram(),
            accepted: (0..190).map(|_| Uuid::now_v7()).collect(),
            accept_latency,
            rejected_by_status: BTreeMap::from([(500, 6), (409, 1)]),
            errors: 3,
            error_samples: vec!["connection refused".into()],
            window: Duration::from_millis(1900),
        };
        let t0 = Utc::now();
        let stats = DeliveryStats {
            delivered: 378,
            confirmed: 377,
            device_delivered: 377,
            failed: 2,
            duplicate_requests: 7,
            duplicate_deliveries: 4,
            order_violations: 0,
            end_to_end: new_histogram(),
            first_created: Some(t0),
            last_delivered: Some(t0 + chrono::Duration::milliseconds(2100)),
        };
        let r = build_report(&opts, "bench-x".into(), 200, &tally, &stats, false, 30.0);
        assert_eq!(r.accepted, 190);
        assert_eq!(r.rejected, 7);
        assert_eq!(r.expected_deliveries, 380);
        // 380 expected, 377 delivered and on a device.
        assert_eq!(r.lost, 3);
        assert_eq!((r.duplicate_requests, r.duplicate_deliveries), (7, 4));
        assert!((r.accepted_per_sec - 100.0).abs() < 1e-9);
        assert!((r.delivery_window_secs - 2.1).abs() < 1e-9);
        assert!((r.delivered_per_sec - 180.0).abs() < 1e-9);
        assert_eq!(r.accept_latency_ms.count, 1);
        let md = r.to_markdown();
        assert!(md.starts_with("| metric | value |\n|---|---|\n"));
        assert!(md.contains("| rejected | 7 (409: 1, 500: 6) |"), "{md}");
        assert!(md.contains("| lost | 3 |"));
        assert!(md.contains("timed out"));
        assert!(md.contains("FAILED:"));
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["acceptedPerSec"], 100.0);
        assert_eq!(json["rejectedByStatus"]["500"], 6);
        assert_eq!(json["endToEndLatencyMs"]["count"], 0);
    }

    #[test]
    fn bodies_are_valid_api_requests_spread_over_tagged_conversations() {
        let t = BodyTemplate::new("bench-abc123", 2);
        let id = Uuid::now_v7();
        let body = t.body(id, 1_007);
        let m = NewMessage::parse(body.as_bytes()).unwrap_or_else(|e| panic!("{body}: {e:?}"));
        assert_eq!(m.message_id, Some(id));
        assert_eq!(m.conversation_id, "bench-abc123-c7");
        assert_eq!(m.channel, Channel::Whatsapp);
        let chans: Vec<Channel> = m.recipients.iter().map(|r| r.channel).collect();
        assert_eq!(chans, [Channel::Whatsapp, Channel::Telegram]);
        assert_eq!(m.content.text, "bench bench-abc123 #1007");

        let convs: std::collections::HashSet<String> = (0..2 * CONVERSATIONS)
            .map(|i| NewMessage::parse(t.body(Uuid::nil(), i).as_bytes()).unwrap().conversation_id)
            .collect();
        assert_eq!(convs.len(), CONVERSATIONS as usize);
        assert!(convs.iter().all(|c| c.starts_with("bench-abc123-c")));

        // Many recipients stay distinct (the API rejects repeats).
        let many = BodyTemplate::new("bench-abc123", MAX_RECIPIENTS);
        let m = NewMessage::parse(many.body(id, 0).as_bytes()).unwrap();
        assert_eq!(m.recipients.len(), MAX_RECIPIENTS);
    }

    #[test]
    fn run_ids_are_short_unique_tags() {
        let a = new_run_id();
        assert!(a.starts_with("bench-") && a.len() == 14, "{a}");
        assert_ne!(a, new_run_id());
    }

    /// A local HTTP server answering like the message API after `delay`; counts the requests.
    async fn fake_api(delay: Duration, status: u16) -> (reqwest::Url, Arc<std::sync::atomic::AtomicU64>) {
        use axum::http::StatusCode;
        use std::sync::atomic::{AtomicU64, Ordering};
        let hits = Arc::new(AtomicU64::new(0));
        let h = hits.clone();
        let app = axum::Router::new().route(
            "/api/v1/messages",
            axum::routing::post(move |body: axum::body::Bytes| {
                let h = h.clone();
                async move {
                    assert!(NewMessage::parse(&body).is_ok());
                    h.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(delay).await;
                    (StatusCode::from_u16(status).unwrap(), "{}")
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (format!("http://{addr}/api/v1/messages").parse().unwrap(), hits)
    }

    fn test_client() -> reqwest::Client {
        reqwest::Client::builder().timeout(REQUEST_TIMEOUT).build().unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sends_at_the_fixed_rate_without_waiting_for_responses() {
        // 100 ms per response, 200 msg/s: a closed loop with 64 slots would still keep up, but
        // one that waits for each response would send 10/s.
        let (url, hits) = fake_api(Duration::from_millis(100), 202).await;
        let started = std::time::Instant::now();
        let tally = send_phase(&test_client(), url, BodyTemplate::new("bench-t", 2), 200, 100, 64).await;
        let took = started.elapsed();
        assert_eq!(tally.sent, 100);
        assert_eq!(tally.accepted.len(), 100);
        assert_eq!(hits.load(std::sync::atomic::Ordering::Relaxed), 100);
        assert_eq!(tally.client_behind, 0);
        assert_eq!(tally.errors + tally.rejected(), 0);
        // Last send at 495 ms, its answer 100 ms later.
        assert!(took >= Duration::from_millis(590) && took < Duration::from_millis(1500), "{took:?}");
        assert!(tally.window >= Duration::from_millis(590));
        let lat = LatencySummary::from_micros(&tally.accept_latency);
        assert!(lat.p50 >= 99.0 && lat.p50 < 500.0, "{lat:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_concurrency_cap_is_counted_as_falling_behind() {
        // 4 slots, 200 ms per response: at most 20 answers/s against a rate of 100/s.
        let (url, _) = fake_api(Duration::from_millis(200), 202).await;
        let tally = send_phase(&test_client(), url, BodyTemplate::new("bench-t", 1), 100, 30, 4).await;
        assert_eq!(tally.sent, 30);
        assert_eq!(tally.accepted.len(), 30);
        assert!(tally.client_behind >= 20, "behind {}", tally.client_behind);
        let lag = LatencySummary::from_micros(&tally.schedule_lag);
        assert!(lag.max >= 500.0, "{lag:?}");
        // The rate the run achieved shows the shortfall.
        let rate = per_sec(tally.accepted.len() as u64, tally.window.as_secs_f64());
        assert!(rate < 25.0, "{rate}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn counts_rejections_and_transport_errors() {
        let (url, _) = fake_api(Duration::ZERO, 503).await;
        let tally = send_phase(&test_client(), url, BodyTemplate::new("bench-t", 2), 1000, 20, 8).await;
        assert_eq!(tally.sent, 20);
        assert!(tally.accepted.is_empty());
        assert_eq!(tally.rejected_by_status, BTreeMap::from([(503, 20)]));
        assert!(tally.accept_latency.is_empty());

        // Nothing listens on this port.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let url: reqwest::Url = format!("http://127.0.0.1:{port}/api/v1/messages").parse().unwrap();
        let tally = send_phase(&test_client(), url, BodyTemplate::new("bench-t", 2), 1000, 10, 8).await;
        assert_eq!(tally.errors, 10);
        assert!(!tally.error_samples.is_empty() && tally.error_samples.len() <= ERROR_SAMPLES);
        // The cause is in the sample, not only reqwest's "error sending request".
        assert!(tally.error_samples[0].to_lowercase().contains("refused"), "{:?}", tally.error_samples);
        assert_eq!(tally.window, Duration::ZERO);
    }
}
