use std::process::ExitCode;

use clap::Parser;

use chat4all_server::config::{Cli, Common, Service};
use chat4all_server::shutdown::Shutdown;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Service::Probe(args) = &cli.service {
        return probe(args);
    }
    let common = Common::resolve(cli.common, &cli.service);
    chat4all_server::telemetry::init(&common.service, &common.instance);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("chat4all-server: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async move {
        let shutdown = Shutdown::on_signals();
        match cli.service {
            Service::MessageService(args) => chat4all_server::message::run(common, args, shutdown).await,
            Service::RouterService(args) => chat4all_server::router::run(common, args, shutdown).await,
            Service::Connector(args) => chat4all_server::connector::run(common, args, shutdown).await,
            Service::ApiGateway(args) => chat4all_server::gateway::run(common, args, shutdown).await,
            Service::UserService(args) => chat4all_server::user::run(common, args, shutdown).await,
            Service::FileService(args) => chat4all_server::file::run(common, args, shutdown).await,
            Service::Probe(args) => chat4all_server::probe::run(&args).await,
            Service::DbCeiling(args) => chat4all_server::ceiling::run(&common.database_url, &args).await.map(|c| {
                println!("{}", serde_json::to_string(&c).expect("the ceiling serializes"));
            }),
        }
    });
    match result {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "service failed");
            eprintln!("chat4all-server: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// A healthcheck: no telemetry, one line on failure, exit 1.
fn probe(args: &chat4all_server::probe::ProbeArgs) -> ExitCode {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build();
    match rt.map_err(anyhow::Error::from).and_then(|rt| rt.block_on(chat4all_server::probe::run(args))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chat4all-server probe: {e:#}");
            ExitCode::from(1)
        }
    }
}
