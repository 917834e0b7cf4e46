//! `relay [show]`, `relay pause --for 60s`, `relay resume [--force]`: the message-service's
//! outbox relay through its admin endpoints.

use std::time::Duration;

use clap::{Args, Subcommand};

use super::Cli;
use chat4all_contract::admin::relay::RelayState;
use chat4all_ctl::output::{self, parse_duration, Format};

#[derive(Debug, Subcommand)]
pub enum RelayCommand {
    /// Leader, pause lease, outbox backlog and the age of its oldest row (the default).
    Show,
    /// Pause publishing for a while (a lease: it ends by itself; the API keeps accepting and
    /// messages wait in the outbox). Renew it by running the same command again.
    Pause(PauseArgs),
    /// End the pause now.
    Resume(ResumeArgs),
}

#[derive(Debug, Args)]
pub struct PauseArgs {
    /// How long the pause lasts unless renewed (1s..1h).
    #[arg(long = "for", default_value = "60s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Who holds it (shown in `status`); only the same holder renews or ends it.
    #[arg(long, default_value = "chat4allctl")]
    pub by: String,
}

#[derive(Debug, Args)]
pub struct ResumeArgs {
    #[arg(long, default_value = "chat4allctl")]
    pub by: String,
    /// End a pause held by someone else (say, a repartition that died).
    #[arg(long)]
    pub force: bool,
}

pub async fn relay(cli: &Cli, command: Option<&RelayCommand>) -> anyhow::Result<()> {
    let admin = cli.admin()?;
    let state = match command.unwrap_or(&RelayCommand::Show) {
        RelayCommand::Show => admin.relay().await?,
        RelayCommand::Pause(a) => {
            if a.duration < Duration::from_secs(1) || a.duration > Duration::from_secs(3600) {
                return Err(chat4all_ctl::error::usage(format!(
                    "--for must be 1s..1h, got {}s",
                    a.duration.as_secs_f64()
                )));
            }
            admin.pause_relay(&a.by, a.duration).await?
        }
        RelayCommand::Resume(a) => admin.resume_relay(&a.by, a.force).await?,
    };
    match cli.output {
        Format::Json => println!("{}", output::json(&state)),
        Format::Table => print!("{}", describe(&state, None)),
    }
    Ok(())
}

/// The relay in a few lines (also `status`'s relay line, its first).
/// The relay in three lines; `published_per_second` (when measured) joins the outbox line.
pub fn describe(s: &RelayState, published_per_second: Option<f64>) -> String {
    let leader = match (&s.leader, s.leader_since) {
        (Some(l), Some(since)) => format!("{l} (epoch {}, since {})", s.leader_epoch, since.format("%H:%M:%S")),
        (Some(l), None) => l.clone(),
        _ => "none (no message-service leads the relay)".into(),
    };
    let pause = match &s.paused {
        Some(p) => {
            format!("paused by {} since {} until {}", p.by, p.since.format("%H:%M:%S"), p.until.format("%H:%M:%S"))
        }
        None => "running".into(),
    };
    let rate = published_per_second.map(|r| format!(", publishing {r:.1}/s")).unwrap_or_default();
    format!(
        "relay:    {pause}\nleader:   {leader}\noutbox:   {} rows, oldest {:.1}s{rate}\n",
        s.backlog, s.oldest_seconds
    )
}
