//! The console at scale: how each look at the cluster costs as groups and partitions grow.
//!
//! For every cell of groups x partitions it creates a synthetic topic and groups on the running
//! stack's broker (`chat4all_ctl::bench::synthetic`), measures, and removes them before the next
//! cell, so each cell sees its own groups plus the stack's:
//!
//! * `groups describe` of one group and `lag` of every group, each a whole `chat4allctl` process
//!   as an operator runs it (start, connect, query, print JSON, exit);
//! * one `--watch` refresh (every group described in-process, as `status --watch`, `lag --watch`
//!   and the exporter's sampler do), with its CPU at one refresh a second;
//! * one exporter scrape (HTTP GET of `/metrics` rendering that observation; the observation
//!   itself is the sampler's, in the background, timed as the refresh above);
//! * one dashboard refresh (`Source::snapshot`: runtime, health, every group, timeline, pipeline)
//!   and one frame at 200x60, with their CPU at one refresh a second.
//!
//! ```sh
//! cargo build --release -p chat4all-ctl -p chat4all-tui --examples
//! CHAT4ALL_HOME=... target/release/examples/console_at_scale --groups 3,30,300 --partitions 10,100,1000
//! ```
//!
//! Prints a Markdown table (or JSON with `-o json`); BENCHMARKS.md holds the figures.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use clap::Parser;
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use serde::Serialize;

use chat4all_ctl::bench::measure::{cpu_seconds, Percentiles};
use chat4all_ctl::bench::synthetic::Synthetic;
use chat4all_ctl::exporter::collect::Extras;
use chat4all_ctl::exporter::Exporter;
use chat4all_ctl::lag::{LagHistory, Rules};
use chat4all_ctl::paths::DataDir;
use chat4all_ctl::sampler::Latest;
use chat4all_ctl::stack::Stack;
use chat4all_ctl::view::GroupReader;
use chat4all_tui::keys::KeyMap;
use chat4all_tui::source::Source;
use chat4all_tui::state::{update, Action, State};
use chat4all_tui::ui;

#[derive(Parser)]
struct Args {
    /// Data directory of the running stack.
    #[arg(long, env = "CHAT4ALL_HOME", default_value = ".chat4all")]
    data_dir: String,
    /// Group counts, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "3,30,300")]
    groups: Vec<u32>,
    /// Partition counts, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "10,100,1000")]
    partitions: Vec<i32>,
    /// Samples of each measure (refreshes are one a second).
    #[arg(long, default_value_t = 5)]
    samples: usize,
    /// The chat4allctl binary (default: beside this example's target directory).
    #[arg(long)]
    ctl: Option<PathBuf>,
    /// `json` for the report as JSON.
    #[arg(short, long, default_value = "table")]
    output: String,
    /// Only remove the grid's synthetic topics and groups (after an interrupted run).
    #[arg(long)]
    cleanup: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Cell {
    groups: u32,
    partitions: i32,
    /// Partitions of every group on the broker, the stack's included: what a refresh reads.
    partitions_read: usize,
    describe_process_ms: Percentiles,
    lag_process_ms: Percentiles,
    watch_refresh_ms: Percentiles,
    watch_cpu_percent: f64,
    scrape_ms: Percentiles,
    scrape_bytes: usize,
    scrape_series: usize,
    dashboard_refresh_ms: Percentiles,
    dashboard_frame_ms: Percentiles,
    /// Refresh and frame once a second, in % of one core.
    dashboard_cpu_percent: f64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let data = DataDir::new(&args.data_dir);
    let stack = Stack::find(&data);
    let ctl = match &args.ctl {
        Some(p) => p.clone(),
        None => std::env::current_exe()?.parent().and_then(|d| d.parent()).context("target dir")?.join("chat4allctl"),
    };
    ensure!(ctl.exists(), "no chat4allctl at {} (build it, or pass --ctl)", ctl.display());
    if args.cleanup {
        for &p in &args.partitions {
            for &g in &args.groups {
                Synthetic::named(&stack.bootstrap, &format!("scale-{g}x{p}"), g, p).remove().await?;
            }
        }
        return Ok(());
    }
    let mut cells = Vec::new();
    for &p in &args.partitions {
        for &g in &args.groups {
            let synthetic = Synthetic::named(&stack.bootstrap, &format!("scale-{g}x{p}"), g, p);
            let setup = Instant::now();
            synthetic.create().await.with_context(|| format!("setting up {g} groups x {p} partitions"))?;
            eprintln!("{g} groups x {p} partitions: set up in {:.1} s", setup.elapsed().as_secs_f64());
            let cell = measure(&args, &data, &stack, &ctl, &synthetic).await;
            synthetic.remove().await.with_context(|| format!("removing {g} groups x {p} partitions"))?;
            let cell = cell?;
            eprintln!("{}", row(&cell));
            cells.push(cell);
        }
    }
    if args.output == "json" {
        println!("{}", serde_json::to_string_pretty(&cells)?);
    } else {
        println!("{}", table(&cells));
    }
    Ok(())
}

async fn measure(args: &Args, data: &DataDir, stack: &Stack, ctl: &Path, s: &Synthetic) -> anyhow::Result<Cell> {
    let n = args.samples.max(1);
    let home = data.root().display().to_string();
    let run = |cmd: Vec<String>| {
        let ctl = ctl.to_path_buf();
        let home = home.clone();
        async move {
            let started = Instant::now();
            let out = tokio::process::Command::new(&ctl)
                .args(["--data-dir", home.as_str(), "-o", "json"])
                .args(&cmd)
                .output()
                .await?;
            ensure!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr).trim());
            anyhow::Ok(started.elapsed().as_secs_f64() * 1000.0)
        }
    };
    let mut describe = Vec::new();
    let mut lag = Vec::new();
    for _ in 0..n {
        describe.push(run(vec!["groups".into(), "describe".into(), s.groups[0].clone()]).await?);
        lag.push(run(vec!["lag".into(), "--sample-for".into(), "0s".into()]).await?);
    }

    // --watch refreshes, and the observation the exporter's sampler would hold.
    let mut reader = GroupReader::new(
        &stack.bootstrap,
        &stack.redis_url,
        Duration::from_secs(10),
        LagHistory::new(Rules::default()),
    )?;
    let (groups, topics) = reader.all_with_topics().await?;
    let partitions_read = groups.iter().map(|g| g.partitions.len()).sum();
    let cpu0 = cpu_seconds();
    let wall0 = Instant::now();
    let mut refresh = Vec::new();
    for _ in 0..n {
        let started = Instant::now();
        let groups = reader.all().await?;
        let _ = chat4all_ctl::output::json(&groups);
        refresh.push(started.elapsed().as_secs_f64() * 1000.0);
        tokio::time::sleep(Duration::from_secs(1).saturating_sub(started.elapsed())).await;
    }
    let watch_cpu = percent_of_a_core(cpu0, wall0);

    // Exporter scrapes over real HTTP.
    let latest = Latest {
        at: Some(chrono::Utc::now()),
        took: Duration::ZERO,
        groups,
        topics,
        history: reader.history.clone(),
        error: None,
        rounds: 1,
    };
    let exporter = Exporter::fixed(latest, Extras::default());
    let (addr, server) = exporter.serve(([127, 0, 0, 1], 0).into()).await?;
    let http = reqwest::Client::new();
    let url = format!("http://{addr}/metrics");
    let mut scrape = Vec::new();
    let mut body = String::new();
    for _ in 0..n {
        let started = Instant::now();
        body = http.get(&url).send().await?.error_for_status()?.text().await?;
        scrape.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    server.abort();
    let scrape_series = body.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).count();

    // The dashboard: a refresh and a frame, once a second.
    let mut source = Source::new(data.clone(), Duration::from_secs(10))?;
    let mut state = State::new(KeyMap::default(), true);
    let mut terminal = Terminal::new(TestBackend::new(200, 60))?;
    let mut frames = Vec::new();
    let mut dash = Vec::new();
    // Warm-up: the first look connects (runtime, broker, Redis, admin); the dashboard pays it once.
    let first = source.snapshot().await;
    update(&mut state, Action::Data(Box::new(first)));
    let cpu0 = cpu_seconds();
    let wall0 = Instant::now();
    for _ in 0..n {
        let started = Instant::now();
        let snapshot = source.snapshot().await;
        dash.push(started.elapsed().as_secs_f64() * 1000.0);
        update(&mut state, Action::Data(Box::new(snapshot)));
        let drawn = Instant::now();
        terminal.draw(|f| ui::draw(&state, f))?;
        frames.push(drawn.elapsed().as_secs_f64() * 1000.0);
        tokio::time::sleep(Duration::from_secs(1).saturating_sub(started.elapsed())).await;
    }
    let dashboard_cpu = percent_of_a_core(cpu0, wall0);

    Ok(Cell {
        groups: s.groups.len() as u32,
        partitions: s.partitions,
        partitions_read,
        describe_process_ms: Percentiles::of(describe),
        lag_process_ms: Percentiles::of(lag),
        watch_refresh_ms: Percentiles::of(refresh),
        watch_cpu_percent: watch_cpu,
        scrape_ms: Percentiles::of(scrape),
        scrape_bytes: body.len(),
        scrape_series,
        dashboard_refresh_ms: Percentiles::of(dash),
        dashboard_frame_ms: Percentiles::of(frames),
        dashboard_cpu_percent: dashboard_cpu,
    })
}

/// CPU this process used since `cpu0` / `wall0`, in % of one core.
fn percent_of_a_core(cpu0: f64, wall0: Instant) -> f64 {
    (cpu_seconds() - cpu0) / wall0.elapsed().as_secs_f64() * 100.0
}

const HEADER: &str = "| groups x partitions | partitions read | describe (process) p50 | lag (process) p50 | watch refresh p50 / CPU at 1/s | exporter scrape p50 / p95 (series) | dashboard refresh p50 / frame p50 / CPU at 1/s |\n|---|---|---|---|---|---|---|";

fn row(c: &Cell) -> String {
    format!(
        "| {} x {} | {} | {:.1} ms | {:.1} ms | {:.1} ms / {:.2}% | {:.1} / {:.1} ms ({}) | {:.1} ms / {:.2} ms / {:.2}% |",
        c.groups,
        c.partitions,
        c.partitions_read,
        c.describe_process_ms.p50,
        c.lag_process_ms.p50,
        c.watch_refresh_ms.p50,
        c.watch_cpu_percent,
        c.scrape_ms.p50,
        c.scrape_ms.p95,
        c.scrape_series,
        c.dashboard_refresh_ms.p50,
        c.dashboard_frame_ms.p50,
        c.dashboard_cpu_percent,
    )
}

fn table(cells: &[Cell]) -> String {
    let mut out = String::from(HEADER);
    for c in cells {
        out.push('\n');
        out.push_str(&row(c));
    }
    out
}
