//! `bench`: fixed-rate load through the API, throughput and latency report.

use std::time::Duration;

use clap::Args;

use super::Cli;
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
    /// Exit 1 when a target (rate, p99 accept < 100 ms, p95 end-to-end < 1 s, zero loss) is missed.
    #[arg(long)]
    pub check: bool,
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
        ..BenchOptions::default()
    };
    // Facts for up to 10,000 messages per request: more time than one small read.
    let admin =
        chat4all_ctl::admin::Admin::for_stack(&cli.stack(), cli.timeout.max(std::time::Duration::from_secs(30)))?;
    let report = bench::run(&opts, &admin).await?;
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
