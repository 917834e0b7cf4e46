//! `bench-observe`: what watching costs. Sets up GROUPS consumer groups with committed offsets on
//! a PARTITIONS-partition topic, then measures one `groups describe` as an operator runs it (a
//! whole process: start, connect, query, print) and one `--watch` refresh of every group
//! (in-process, as `status --watch`, `lag --watch` and the dashboard do), with the CPU it uses
//! at one refresh per second.

use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use serde::Serialize;

use super::Cli;
use chat4all_ctl::bench::measure::{cpu_seconds, Percentiles};
use chat4all_ctl::bench::synthetic::Synthetic;
use chat4all_ctl::lag::{LagHistory, Rules};
use chat4all_ctl::output::{self, Format};
use chat4all_ctl::view::GroupReader;

#[derive(Debug, Args)]
pub struct BenchObserveArgs {
    /// Consumer groups to create (bench-observe-g1..N).
    #[arg(long, default_value_t = 3)]
    pub groups: u32,
    /// Partitions of the benchmark topic.
    #[arg(long, default_value_t = 10)]
    pub partitions: i32,
    /// `groups describe` processes to time.
    #[arg(long, default_value_t = 20)]
    pub describes: u32,
    /// `--watch` refreshes to time, one per second.
    #[arg(long, default_value_t = 30)]
    pub refreshes: u32,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Report {
    groups: u32,
    partitions: i32,
    partitions_observed_per_refresh: usize,
    describe_process_ms: Percentiles,
    watch_refresh_ms: Percentiles,
    /// CPU of this process (all threads) while refreshing once a second, in % of one core.
    watch_cpu_percent_of_one_core: f64,
}

const TOPIC: &str = "bench-observe";

pub async fn bench_observe(cli: &Cli, args: &BenchObserveArgs) -> anyhow::Result<()> {
    let bootstrap = super::groups::bootstrap(cli);
    Synthetic::named(&bootstrap, TOPIC, args.groups, args.partitions)
        .create()
        .await
        .context("setting up the benchmark groups")?;

    // One describe, as an operator runs it: a whole process.
    let exe = std::env::current_exe()?;
    let mut describe = Vec::new();
    for _ in 0..args.describes {
        let started = Instant::now();
        let out = tokio::process::Command::new(&exe)
            .args(["--data-dir", &cli.data_dir, "groups", "describe", "bench-observe-g1"])
            .output()
            .await?;
        anyhow::ensure!(out.status.success(), "describe failed: {}", String::from_utf8_lossy(&out.stderr));
        describe.push(started.elapsed().as_secs_f64() * 1000.0);
    }

    // --watch refreshes: every group described, once a second.
    let mut reader =
        GroupReader::new(&bootstrap, &super::groups::redis_url(cli), cli.timeout, LagHistory::new(Rules::default()))?;
    let mut observed = reader.all().await?.iter().map(|g| g.partitions.len()).sum::<usize>();
    let cpu0 = cpu_seconds();
    let wall0 = Instant::now();
    let mut refresh = Vec::new();
    for _ in 0..args.refreshes {
        let started = Instant::now();
        let groups = reader.all().await?;
        observed = groups.iter().map(|g| g.partitions.len()).sum();
        let _ = chat4all_ctl::output::json(&groups);
        refresh.push(started.elapsed().as_secs_f64() * 1000.0);
        tokio::time::sleep(Duration::from_secs(1).saturating_sub(started.elapsed())).await;
    }
    let cpu = (cpu_seconds() - cpu0) / wall0.elapsed().as_secs_f64() * 100.0;
    let report = Report {
        groups: args.groups,
        partitions: args.partitions,
        partitions_observed_per_refresh: observed,
        describe_process_ms: Percentiles::of(describe),
        watch_refresh_ms: Percentiles::of(refresh),
        watch_cpu_percent_of_one_core: cpu,
    };
    match cli.output {
        Format::Json => println!("{}", output::json(&report)),
        Format::Table => println!(
            "| measure | p50 | p95 | max |\n|---|---|---|---|\n| `groups describe` (whole process) | {:.1} ms | {:.1} ms | {:.1} ms |\n| `--watch` refresh, every group ({} partitions) | {:.1} ms | {:.1} ms | {:.1} ms |\n\nCPU at 1 refresh/s: {:.2}% of one core ({} groups x {} partitions of {TOPIC}, plus the stack's own groups)",
            report.describe_process_ms.p50,
            report.describe_process_ms.p95,
            report.describe_process_ms.max,
            report.partitions_observed_per_refresh,
            report.watch_refresh_ms.p50,
            report.watch_refresh_ms.p95,
            report.watch_refresh_ms.max,
            report.watch_cpu_percent_of_one_core,
            report.groups,
            report.partitions
        ),
    }
    Ok(())
}
