//! `chat4allctl failover watch`: runtime-assisted failover for a docker stack
//! ([`chat4all_ctl::runtime::docker::watch`]), with `/health` and `/metrics`.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use axum::routing::get;
use clap::{Args, Subcommand};

use super::Cli;
use chat4all_ctl::runtime::docker::watch::{self, WatchMetrics};
use chat4all_ctl::runtime::docker::DockerRuntime;

#[derive(Debug, Subcommand)]
pub enum FailoverCommand {
    /// Follow the Docker engine's events and, when a router's, connector's or message-service's
    /// container dies without a graceful stop (`docker kill` from a shell, a crash, the OOM
    /// killer), remove its members from their groups at once (LeaveGroup on its behalf), so the
    /// survivors take over now rather than after the session timeout. `up --runtime docker` runs
    /// it as the `failover-1` container; compose/docker-compose.local.yml as `failover`.
    Watch(WatchArgs),
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Where to serve /health and /metrics (`chat4all_failover_leaves_total{outcome}`).
    #[arg(long, env = "CHAT4ALL_LISTEN", default_value = "127.0.0.1:7670")]
    pub listen: SocketAddr,
}

pub async fn failover(cli: &Cli, c: &FailoverCommand) -> anyhow::Result<()> {
    let FailoverCommand::Watch(args) = c;
    let rt = DockerRuntime::connect(&cli.project).await?;
    let stack = cli.stack();
    let metrics = WatchMetrics::default();
    let mut registry = prometheus_client::registry::Registry::default();
    metrics.register(&mut registry);
    let registry = std::sync::Arc::new(registry);
    let listener =
        tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("binding {}", args.listen))?;
    let app = axum::Router::new()
        .route("/health", get(|| async { axum::Json(serde_json::json!({"status": "up"})) }))
        .route("/health/live", get(|| async { axum::Json(serde_json::json!({"status": "up"})) }))
        .route(
            "/metrics",
            get(move || {
                let registry = registry.clone();
                async move {
                    let mut text = String::new();
                    let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
                    text
                }
            }),
        );
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    tracing::info!(project = rt.project(), socket = rt.socket(), listen = %args.listen, "following the engine's events");
    eprintln!(
        "chat4allctl failover watch: project {} on {}, /metrics at http://{}",
        rt.project(),
        rt.socket(),
        args.listen
    );
    loop {
        tokio::select! {
            r = watch::follow(&rt, &stack.bootstrap, &stack.redis_url, &metrics) => {
                if let Err(e) = r {
                    tracing::warn!(error = %format!("{e:#}"), "event stream lost; following again in 1 s");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            r = tokio::signal::ctrl_c() => { r?; break; }
        }
        if server.is_finished() {
            anyhow::bail!("the /metrics server stopped");
        }
    }
    Ok(())
}
