use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use tracing_subscriber::EnvFilter;

use chat4all_provider::api::{self, AppState};
use chat4all_provider::config::{default_port, service_name, Cli};
use chat4all_provider::faults;

fn init_logs() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,hyper=warn"));
    let text = std::env::var("CHAT4ALL_LOG_FORMAT").is_ok_and(|v| v == "text");
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ =
        if text { builder.try_init() } else { builder.json().flatten_event(true).with_current_span(false).try_init() };
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs();
    let initial = cli.faults.to_faults();
    if let Err(e) = faults::validate(&initial) {
        eprintln!("chat4all-provider: {e}");
        return ExitCode::from(2);
    }
    let service = service_name(cli.channel);
    let instance = cli.instance.clone().unwrap_or_else(|| format!("{service}-1"));
    let listen = cli.listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], default_port(cli.channel))));
    tracing::info!(service, instance, channel = cli.channel.label(), ?initial, "starting");
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("chat4all-provider: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let state = AppState::new(cli.channel, &service, &instance, initial);
    match runtime.block_on(serve(listen, state)) {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "provider failed");
            eprintln!("chat4all-provider: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn serve(listen: SocketAddr, state: AppState) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
    tracing::info!(%listen, "listening");
    axum::serve(listener, api::router(state)).with_graceful_shutdown(shutdown()).await.context("HTTP server")
}

async fn shutdown() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
