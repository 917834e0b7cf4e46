//! `exporter`: consumer lag, offsets, ownership and instance states as Prometheus metrics.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;

use super::Cli;
use chat4all_ctl::error::{usage, ConditionNotMet};
use chat4all_ctl::exporter::collect::InstanceSource;
use chat4all_ctl::exporter::{bench, Exporter};
use chat4all_ctl::output::{self, parse_duration, Format};
use chat4all_ctl::sampler::Observations;

#[derive(Debug, Args)]
pub struct ExporterArgs {
    /// Address to serve /metrics on.
    #[arg(long, default_value = "127.0.0.1:9308")]
    pub listen: SocketAddr,
    /// How often the broker, the runtime and Redis are observed (a scrape serves the latest).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub sample_interval: Duration,
    /// Kafka to observe (default: the running local stack's broker, else KAFKA_BOOTSTRAP, else
    /// 127.0.0.1:9092).
    #[arg(long)]
    pub kafka: Option<String>,
    /// Measure scrape time on a synthetic 3 groups x 10 partitions observation and exit
    /// (exit 1 when p99 is 20 ms or more).
    #[arg(long, hide = true)]
    pub bench: bool,
    /// Scrapes measured by --bench.
    #[arg(long, hide = true, default_value_t = 500)]
    pub bench_scrapes: usize,
}

/// Scrape-time target from the issue.
const BENCH_TARGET_MS: f64 = 20.0;

pub async fn exporter(cli: &Cli, args: &ExporterArgs) -> anyhow::Result<()> {
    if args.bench {
        return run_bench(cli, args).await;
    }
    if args.sample_interval < Duration::from_millis(100) {
        return Err(usage("--sample-interval must be at least 100ms"));
    }
    // Where the stack is (environment, a supervisor's or a docker stack's file, defaults), and
    // whichever runtime runs it for the instance metrics.
    let stack = cli.stack();
    let bootstrap = args.kafka.clone().unwrap_or(stack.bootstrap);
    let redis_url = stack.redis_url;
    let source = match cli.runtime(cli.timeout).await {
        Ok(rt) => InstanceSource::Remote(std::sync::Arc::from(rt)),
        Err(e) => {
            tracing::warn!(error = format!("{e:#}"), "no runtime to ask: no instance metrics");
            InstanceSource::None
        }
    };
    let obs = Observations::default();
    let exporter = Exporter::new(obs.clone());
    let (addr, server) = exporter.serve(args.listen).await.map_err(|e| usage(format!("{e:#}")))?;
    let sampler = tokio::spawn(chat4all_ctl::sampler::run(
        bootstrap.clone(),
        redis_url.clone(),
        args.sample_interval,
        cli.timeout,
        obs,
    ));
    let collector = exporter.collect(source, redis_url, bootstrap.clone(), args.sample_interval);
    let pipeline_collector = exporter.collect_pipeline(cli.data(), args.sample_interval);
    eprintln!("chat4allctl exporter: http://{addr}/metrics (broker {bootstrap})");
    chat4all_ctl::signals::Interrupt::install().wait().await;
    sampler.abort();
    collector.abort();
    pipeline_collector.abort();
    server.abort();
    Ok(())
}

async fn run_bench(cli: &Cli, args: &ExporterArgs) -> anyhow::Result<()> {
    if args.bench_scrapes == 0 {
        return Err(usage("--bench-scrapes must be at least 1"));
    }
    let report = bench::run(3, 10, args.bench_scrapes).await?;
    match cli.output {
        Format::Json => println!("{}", output::json(&report)),
        Format::Table => {
            let mut t = output::Table::new(&[
                "groups x partitions",
                "series",
                "bytes",
                "scrapes",
                "render p50/p99 ms",
                "HTTP p50/p99/max ms",
            ]);
            t.row(vec![
                format!("{} x {}", report.groups, report.partitions),
                report.series.to_string(),
                report.bytes.to_string(),
                report.scrapes.to_string(),
                format!("{:.3} / {:.3}", report.render_p50_ms, report.render_p99_ms),
                format!("{:.3} / {:.3} / {:.3}", report.http_p50_ms, report.http_p99_ms, report.http_max_ms),
            ]);
            print!("{}", t.render());
        }
    }
    if report.http_p99_ms >= BENCH_TARGET_MS {
        return Err(ConditionNotMet(format!(
            "scrape p99 {:.3} ms is not under {BENCH_TARGET_MS} ms",
            report.http_p99_ms
        ))
        .into());
    }
    Ok(())
}
