//! chat4allctl: the chat4all control plane.

mod cmd;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

use chat4all_ctl::error::{ConditionNotMet, UsageError};

fn main() -> ExitCode {
    let cli = cmd::Cli::parse();
    cmd::init_logging(&cli);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("chat4allctl: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(cmd::run(cli));
    // Do not wait for stray blocking tasks (a librdkafka call stuck on an unreachable broker).
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // A closed pipe (`chat4allctl status | head`) is not an error.
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            let _ = std::io::stdout().flush();
            let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
            eprintln!("chat4allctl: {}", chain.join(": ").replace('\n', " "));
            if e.downcast_ref::<ConditionNotMet>().is_some() {
                ExitCode::from(1)
            } else {
                let _ = e.downcast_ref::<UsageError>();
                ExitCode::from(2)
            }
        }
    }
}
