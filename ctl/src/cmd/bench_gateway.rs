//! `bench-gateway` (hidden): the api-gateway's cost. Latency of the cheapest user-service request
//! (`GET /api/v1/users/bench-not-a-uuid`, a 400 without I/O) at a fixed open-loop rate, called
//! directly and through the gateway in alternating phases, and upload throughput of the
//! file-service directly and through the gateway. Uses a temporary API key (unlimited rate),
//! revoked at the end.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use hdrhistogram::Histogram;
use serde::Serialize;

use chat4all_contract::admin::api_keys::CreateKey;
use chat4all_ctl::load;
use chat4all_ctl::output::{self, parse_duration, Format};

use super::Cli;

#[derive(Debug, Args)]
pub struct BenchGatewayArgs {
    /// Requests per second of each latency phase (open loop).
    #[arg(long, default_value_t = 1000)]
    pub rate: u32,
    /// Length of each latency phase.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Rounds of (direct phase, gateway phase); the report sums them.
    #[arg(long, default_value_t = 3)]
    pub rounds: u32,
    /// Size of each upload in MiB.
    #[arg(long, default_value_t = 64)]
    pub upload_mib: usize,
    /// Uploads per path (direct, gateway).
    #[arg(long, default_value_t = 5)]
    pub uploads: u32,
    /// The gateway (default: the stack's gatewayUrl); the user- and file-service are taken at
    /// its port + 3 and + 4, as the supervisor lays them out.
    #[arg(long)]
    pub gateway_url: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Latency {
    requests: u64,
    errors: u64,
    p50_us: u64,
    p90_us: u64,
    p99_us: u64,
    p999_us: u64,
    max_us: u64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Report {
    rate: u32,
    phase_seconds: f64,
    rounds: u32,
    direct: Latency,
    gateway: Latency,
    p50_overhead_us: i64,
    p99_overhead_us: i64,
    upload_mib: usize,
    upload_direct_mib_s: f64,
    upload_gateway_mib_s: f64,
    download_gateway_mib_s: f64,
}

fn latency(h: &Histogram<u64>, errors: u64) -> Latency {
    Latency {
        requests: h.len(),
        errors,
        p50_us: h.value_at_quantile(0.50),
        p90_us: h.value_at_quantile(0.90),
        p99_us: h.value_at_quantile(0.99),
        p999_us: h.value_at_quantile(0.999),
        max_us: h.max(),
    }
}

/// The answer of the probe request (the id is refused before any I/O).
const EXPECTED: u16 = 400;

/// One open-loop phase ([`chat4all_ctl::load`]): `rate` requests a second for `duration`.
async fn phase(
    http: &reqwest::Client,
    url: &str,
    key: Option<&str>,
    rate: u32,
    duration: Duration,
    hist: &Arc<Mutex<Histogram<u64>>>,
    errors: &Arc<Mutex<u64>>,
) {
    let (http, url, key) = (http.clone(), url.to_string(), key.map(str::to_owned));
    let make: load::MakeRequest = Arc::new(move |_, _| {
        let rb = http.get(&url);
        match &key {
            Some(k) => rb.bearer_auth(k),
            None => rb,
        }
    });
    let planned = chat4all_ctl::bench::planned_messages(rate, duration);
    let run = load::run(make, load::Schedule::per_second(rate, Some(planned), 4096)).await;
    let mut hist = hist.lock().expect("hist");
    let mut errors = errors.lock().expect("errors");
    for r in &run.replies {
        if r.status() == Some(EXPECTED) {
            let _ = hist.record(u64::try_from(r.latency().as_micros()).unwrap_or(u64::MAX).max(1));
        } else {
            *errors += 1;
        }
    }
}

/// MiB/s of `n` sequential uploads of `data` to `url`; the file ids.
async fn uploads(
    http: &reqwest::Client,
    url: &str,
    key: Option<&str>,
    data: &axum::body::Bytes,
    n: u32,
) -> anyhow::Result<(f64, Vec<String>)> {
    let mut ids = Vec::new();
    let start = Instant::now();
    for _ in 0..n {
        let mut rb = http.post(url).header("content-type", "application/octet-stream").body(data.clone());
        if let Some(k) = key {
            rb = rb.bearer_auth(k);
        }
        let r = rb.send().await?;
        if r.status().as_u16() != 201 {
            bail!("upload to {url} answered {}: {}", r.status(), r.text().await.unwrap_or_default());
        }
        let v: serde_json::Value = r.json().await?;
        ids.push(v["fileId"].as_str().unwrap_or_default().to_string());
    }
    let mib = (data.len() as f64 * f64::from(n)) / (1024.0 * 1024.0);
    Ok((mib / start.elapsed().as_secs_f64(), ids))
}

pub async fn bench_gateway(cli: &Cli, args: &BenchGatewayArgs) -> anyhow::Result<()> {
    let gateway = match &args.gateway_url {
        Some(u) => u.trim_end_matches('/').to_string(),
        None => chat4all_ctl::runtime::client::ProcessRuntime::connect(&cli.data(), cli.timeout)?
            .info
            .gateway_url
            .context("the running stack has no api-gateway")?,
    };
    let port: u16 = gateway.rsplit(':').next().and_then(|p| p.parse().ok()).context("gateway URL without a port")?;
    let user_direct = format!("http://127.0.0.1:{}", port + 3);
    let file_direct = format!("http://127.0.0.1:{}", port + 4);

    // A key of its own, without a rate limit to speak of, revoked when the run ends.
    let admin = cli.admin()?;
    let name = format!("bench-gateway-{}", uuid::Uuid::new_v4().simple());
    let req = CreateKey { name: name.clone(), rate_per_second: Some(1e9), burst: Some(1_000_000_000) };
    let key = admin.create_api_key(&req).await.context("creating the benchmark's API key")?.key;
    let result = run(args, &gateway, &user_direct, &file_direct, &key).await;
    admin.revoke_api_key(&name).await.context("revoking the benchmark's API key")?;
    let report = result?;
    match cli.output {
        Format::Json => println!("{}", output::json(&report)),
        Format::Table => print_markdown(&report),
    }
    Ok(())
}

async fn run(
    args: &BenchGatewayArgs,
    gateway: &str,
    user_direct: &str,
    file_direct: &str,
    key: &str,
) -> anyhow::Result<Report> {
    let http = reqwest::Client::builder().pool_max_idle_per_host(256).tcp_nodelay(true).build()?;
    // The cheapest request the user-service answers (a 400 from parsing the path, no I/O), so
    // the difference between the two paths is the gateway and not the service's own load.
    let path = "/api/v1/users/bench-not-a-uuid";
    let direct_url = format!("{user_direct}{path}");
    let gw_url = format!("{gateway}{path}");
    // Warm up both paths (connections, cache).
    phase(
        &http,
        &direct_url,
        None,
        args.rate,
        Duration::from_secs(1),
        &Arc::new(Mutex::new(Histogram::new(3)?)),
        &Arc::default(),
    )
    .await;
    phase(
        &http,
        &gw_url,
        Some(key),
        args.rate,
        Duration::from_secs(1),
        &Arc::new(Mutex::new(Histogram::new(3)?)),
        &Arc::default(),
    )
    .await;

    let direct = Arc::new(Mutex::new(Histogram::<u64>::new(3)?));
    let via = Arc::new(Mutex::new(Histogram::<u64>::new(3)?));
    let (de, ge) = (Arc::new(Mutex::new(0u64)), Arc::new(Mutex::new(0u64)));
    for _ in 0..args.rounds {
        phase(&http, &direct_url, None, args.rate, args.duration, &direct, &de).await;
        phase(&http, &gw_url, Some(key), args.rate, args.duration, &via, &ge).await;
    }
    let direct = latency(&direct.lock().expect("hist"), *de.lock().expect("e"));
    let gateway_l = latency(&via.lock().expect("hist"), *ge.lock().expect("e"));

    let data = axum::body::Bytes::from(chat4all_ctl::load::pseudo_random_bytes(
        args.upload_mib * 1024 * 1024,
        0x9e37_79b9_7f4a_7c15,
    ));
    let (up_direct, _) = uploads(&http, &format!("{file_direct}/api/v1/files"), None, &data, args.uploads).await?;
    let (up_gw, ids) = uploads(&http, &format!("{gateway}/api/v1/files"), Some(key), &data, args.uploads).await?;
    let start = Instant::now();
    let mut got = 0usize;
    for id in &ids {
        let r = http.get(format!("{gateway}/api/v1/files/{id}/content")).bearer_auth(key).send().await?;
        got += r.bytes().await?.len();
    }
    let down_gw = got as f64 / (1024.0 * 1024.0) / start.elapsed().as_secs_f64();

    Ok(Report {
        rate: args.rate,
        phase_seconds: args.duration.as_secs_f64(),
        rounds: args.rounds,
        p50_overhead_us: gateway_l.p50_us as i64 - direct.p50_us as i64,
        p99_overhead_us: gateway_l.p99_us as i64 - direct.p99_us as i64,
        direct,
        gateway: gateway_l,
        upload_mib: args.upload_mib,
        upload_direct_mib_s: up_direct,
        upload_gateway_mib_s: up_gw,
        download_gateway_mib_s: down_gw,
    })
}

fn print_markdown(r: &Report) {
    println!(
        "GET /api/v1/users/bench-not-a-uuid (400, no I/O) at {} req/s, {} x {} s per path (phases alternate)\n",
        r.rate, r.rounds, r.phase_seconds
    );
    println!("| path | requests | errors | p50 | p90 | p99 | p99.9 | max |");
    println!("|---|---|---|---|---|---|---|---|");
    for (name, l) in [("direct (user-service)", &r.direct), ("through the api-gateway", &r.gateway)] {
        println!(
            "| {name} | {} | {} | {} us | {} us | {} us | {} us | {} us |",
            l.requests, l.errors, l.p50_us, l.p90_us, l.p99_us, l.p999_us, l.max_us
        );
    }
    println!("\ngateway overhead: p50 {} us, p99 {} us", r.p50_overhead_us, r.p99_overhead_us);
    println!(
        "\nuploads of {} MiB: direct {:.0} MiB/s, through the gateway {:.0} MiB/s; downloads through the gateway {:.0} MiB/s",
        r.upload_mib, r.upload_direct_mib_s, r.upload_gateway_mib_s, r.download_gateway_mib_s
    );
}
