//! chat4allctl: the chat4all control plane.

mod cmd;

use std::io::Write;
use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::Parser;

use chat4all_ctl::error::{ConditionNotMet, UsageError};

fn main() -> ExitCode {
    let cli = match cmd::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return parse_error(e),
    };
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

/// Help and version go to stdout as clap prints them; a bad command line is one line on stderr
/// (`chat4allctl: <reason> (see --help)`) and exit code 2, like every other error.
fn parse_error(e: clap::Error) -> ExitCode {
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            ExitCode::from(2)
        }
        _ => {
            let text = e.render().to_string();
            let reason = text
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or("invalid arguments")
                .trim_start_matches("error: ")
                .to_string();
            eprintln!("chat4allctl: {reason} (see --help)");
            ExitCode::from(2)
        }
    }
}
