//! `chat4all-server probe URL`: a container healthcheck without a shell or curl in the image.
//! GET the URL; success is a 2xx answer within the timeout. Compose's `healthcheck` runs it
//! (compose/docker-compose.local.yml).

use std::time::Duration;

use anyhow::Context;
use clap::Args;

#[derive(Debug, Clone, Args)]
pub struct ProbeArgs {
    /// The URL to GET, e.g. http://127.0.0.1:8081/health/live.
    pub url: String,
    /// Seconds the answer may take.
    #[arg(long, default_value_t = 2.0)]
    pub timeout: f64,
}

/// Ok on a 2xx answer; the status or the connection error otherwise.
pub async fn run(args: &ProbeArgs) -> anyhow::Result<()> {
    let url = reqwest::Url::parse(&args.url).with_context(|| format!("{:?} is not a URL", args.url))?;
    let client = reqwest::Client::builder().timeout(Duration::from_secs_f64(args.timeout.max(0.001))).build()?;
    let answer = client.get(url.clone()).send().await.with_context(|| format!("GET {url}"))?;
    let status = answer.status();
    anyhow::ensure!(status.is_success(), "GET {url}: {status}");
    Ok(())
}
