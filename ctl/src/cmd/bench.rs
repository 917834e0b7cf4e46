//! `bench`: fixed-rate load through the API, throughput and latency report.

use std::time::Duration;

use clap::Args;

use super::Cli;
use chat4all_ctl::bench::ceilings::{self, Ceilings};
use chat4all_ctl::bench::cpu::Watched;
use chat4all_ctl::bench::{self, BenchOptions};
use chat4all_ctl::error::ConditionNotMet;
use chat4all_ctl::output::{self, parse_duration, Format};

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Messages per second, sent open-loop at a fixed schedule.
    #[arg(long, default_value_t = 2000)]
    pub rate: u32,
    /// How long to send.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub duration: Duration,
    /// How long to wait for every delivery after the last send.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// Most requests in flight.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// API base URL (default: the local stack's message-service).
    #[arg(long, env = "CHAT4ALL_API_URL")]
    pub api_url: Option<String>,
    /// Set the simulated providers' reject rate (0 to below 1) for the run and restore their
    /// faults after it.
    #[arg(long, value_parser = super::up::parse_rate)]
    pub provider_failure_rate: Option<f64>,
    /// Exit 1 when a target is missed: accepted >= 98% of --rate, accept p99 under
    /// --max-accept-p99, end-to-end p95 under --max-end-to-end-p95, the load generator never
    /// behind its schedule, nothing lost, duplicated or out of order.
    #[arg(long)]
    pub check: bool,
    /// Accept latency p99 target of --check [default: 50ms].
    #[arg(long, value_parser = parse_duration)]
    pub max_accept_p99: Option<Duration>,
    /// End-to-end latency p95 target of --check [default: 250ms; 30ms at 100 msg/s or less].
    #[arg(long, value_parser = parse_duration)]
    pub max_end_to_end_p95: Option<Duration>,
    /// After the run, measure the ceilings beside it on this machine and print our throughput as
    /// a share of each: Kafka's own producer (ProducerPerformance from the installed jars, our
    /// record size and settings) and PostgreSQL for the accept and routing statements alone
    /// (`chat4all-server db-ceiling`, on a scratch database). About 20 s more.
    #[arg(long)]
    pub ceilings: bool,
}

pub async fn bench(cli: &Cli, args: &BenchArgs) -> anyhow::Result<()> {
    let info = chat4all_ctl::runtime::client::ProcessRuntime::connect(&cli.data(), cli.timeout).ok().map(|rt| rt.info);
    let providers = chat4all_ctl::providers::Providers::of_stack(info.as_ref(), cli.timeout);
    let opts = BenchOptions {
        api_url: args
            .api_url
            .clone()
            .or_else(|| info.as_ref().map(|i| i.api_url.clone()))
            .unwrap_or_else(|| "http://127.0.0.1:8081".into()),
        provider_urls: providers
            .channels()
            .into_iter()
            .filter_map(|ch| providers.url(ch).ok().map(|u| (ch, u.to_string())))
            .collect(),
        provider_failure_rate: args.provider_failure_rate,
        rate: args.rate,
        duration: args.duration,
        drain_timeout: args.drain_timeout,
        concurrency: args.concurrency,
        targets: Some(targets(args)),
        watch_cpu: watched(cli).await,
        ..BenchOptions::default()
    };
    // Facts for up to 10,000 messages per request: more time than one small read.
    let admin =
        chat4all_ctl::admin::Admin::for_stack(&cli.stack(), cli.timeout.max(std::time::Duration::from_secs(30)))?;
    let mut report = bench::run(&opts, &admin).await?;
    if args.ceilings {
        report.ceilings = Some(measure_ceilings(cli, &report).await);
    }
    match cli.output {
        Format::Json => println!("{}", output::json(&report)),
        Format::Table => println!("{}", report.to_markdown()),
    }
    let failed = report.meets_targets();
    if args.check && !failed.is_empty() {
        return Err(ConditionNotMet(format!("targets missed: {}", failed.join("; "))).into());
    }
    Ok(())
}

fn targets(args: &BenchArgs) -> bench::Targets {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mut t = bench::Targets::for_rate(args.rate);
    if let Some(d) = args.max_accept_p99 {
        t.max_accept_p99_ms = ms(d);
    }
    if let Some(d) = args.max_end_to_end_p95 {
        t.max_end_to_end_p95_ms = ms(d);
    }
    t
}

/// Records the producer ceiling writes: a few seconds of Kafka at full speed.
const PRODUCER_RECORDS: u64 = 500_000;
/// Messages the database ceiling writes and routes.
const DATABASE_MESSAGES: u64 = 20_000;

/// Both ceilings, one after the other (never beside each other or the run: each alone).
async fn measure_ceilings(cli: &Cli, report: &bench::BenchReport) -> Ceilings {
    let stack = cli.stack();
    let mut c = Ceilings {
        records_per_message: 1 + report.recipients.min(chat4all_ctl::contract::channel::Channel::ALL.len()) as u32,
        ..Ceilings::default()
    };
    let database = match super::up::sibling_bin("CHAT4ALL_SERVER_BIN", "chat4all-server") {
        Ok(bin) => ceilings::database(&bin, &stack.database_url, DATABASE_MESSAGES, report.recipients).await,
        Err(e) => Err(e),
    };
    match database {
        Ok(d) => c.database = Some(d),
        Err(e) => c.errors.push(format!("PostgreSQL: {e:#}")),
    }
    let record_bytes = c.database.as_ref().map(|d| d.event_bytes).unwrap_or(500);
    let partitions = chat4all_ctl::kafka::Observer::new(&stack.bootstrap, cli.timeout)
        .and_then(|o| o.topics())
        .ok()
        .and_then(|t| t.into_iter().find(|(name, _)| name == chat4all_ctl::contract::names::topics::CHAT_EVENTS))
        .map(|(_, n)| n)
        .unwrap_or(1);
    match ceilings::producer(&stack.bootstrap, partitions, record_bytes, PRODUCER_RECORDS).await {
        Ok(p) => c.producer = Some(p),
        Err(e) => c.errors.push(format!("Kafka producer: {e:#}")),
    }
    c.with_shares(report.accepted_per_sec)
}

/// The stack's instances by service (from its runtime), PostgreSQL, Redis and this load
/// generator: whose CPU the report accounts for.
async fn watched(cli: &Cli) -> Vec<Watched> {
    let mut by_service: std::collections::BTreeMap<String, Vec<u32>> = Default::default();
    if let Ok(rt) = cli.runtime(cli.timeout).await {
        for i in rt.list().await.unwrap_or_default() {
            if let (true, Some(pid)) = (i.state.is_alive(), i.pid) {
                by_service.entry(i.service).or_default().push(pid);
            }
        }
    }
    let mut w: Vec<Watched> = by_service.into_iter().map(|(name, pids)| Watched::Pids { name, pids }).collect();
    w.push(Watched::Comm { name: "PostgreSQL".into(), comm: "postgres".into() });
    w.push(Watched::Comm { name: "Redis".into(), comm: "redis-server".into() });
    w.push(Watched::Pids { name: "chat4allctl bench (load generator)".into(), pids: vec![std::process::id()] });
    w
}
