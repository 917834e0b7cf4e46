//! `provider faults` and `provider summary`: the simulated providers of the local stack.

use clap::{Args, Subcommand};

use super::Cli;
use chat4all_contract::channel::Channel;
use chat4all_contract::provider::{Faults, RecordSummary};
use chat4all_ctl::control::SupervisorFile;
use chat4all_ctl::error::usage;
use chat4all_ctl::output::{self, Format, Table};
use chat4all_ctl::providers::Providers;

#[derive(Debug, Subcommand)]
pub enum ProviderCommand {
    /// Show or change a provider's fault injection (no flags: show).
    Faults(FaultsArgs),
    /// What the providers received: requests, deliveries, duplicate requests and deliveries.
    Summary(SummaryArgs),
}

#[derive(Debug, Args)]
pub struct FaultsArgs {
    /// whatsapp, telegram, instagram, or all.
    pub channel: String,
    /// Share of items rejected (retryable, nothing done), 0 to 1.
    #[arg(long, value_parser = super::up::parse_rate)]
    pub reject: Option<f64>,
    /// Share of requests done, then answered only after --hang-ms (`--timeout` is the global
    /// request timeout of chat4allctl, hence the name).
    #[arg(long, value_parser = super::up::parse_rate)]
    pub timeout_rate: Option<f64>,
    #[arg(long)]
    pub hang_ms: Option<u64>,
    /// Share of requests answered 500, nothing done.
    #[arg(long, value_parser = super::up::parse_rate)]
    pub error: Option<f64>,
    /// Share of requests done, then answered 200 with a body that is not JSON.
    #[arg(long, value_parser = super::up::parse_rate)]
    pub garbage: Option<f64>,
    /// Share of requests done, then the connection closed mid-answer.
    #[arg(long, value_parser = super::up::parse_rate)]
    pub reset: Option<f64>,
    /// Added to every request, in milliseconds.
    #[arg(long)]
    pub latency_ms: Option<u64>,
    /// An outage: every request 503, nothing done.
    #[arg(long, conflicts_with = "up")]
    pub down: bool,
    /// End an outage.
    #[arg(long)]
    pub up: bool,
    /// Ignore idempotency keys (send again what is asked again).
    #[arg(long, conflicts_with = "idempotency")]
    pub no_idempotency: bool,
    /// Honour idempotency keys again.
    #[arg(long)]
    pub idempotency: bool,
    /// Start from a healthy provider (then apply the other flags).
    #[arg(long)]
    pub clear: bool,
}

impl FaultsArgs {
    fn changes(&self) -> bool {
        self.reject.is_some()
            || self.timeout_rate.is_some()
            || self.hang_ms.is_some()
            || self.error.is_some()
            || self.garbage.is_some()
            || self.reset.is_some()
            || self.latency_ms.is_some()
            || self.down
            || self.up
            || self.no_idempotency
            || self.idempotency
            || self.clear
    }

    fn apply(&self, current: Faults) -> Faults {
        let mut f = if self.clear { Faults::default() } else { current };
        if let Some(r) = self.reject {
            f.reject_rate = r;
        }
        if let Some(r) = self.timeout_rate {
            f.timeout_rate = r;
        }
        if let Some(ms) = self.hang_ms {
            f.hang_ms = ms;
        }
        if let Some(r) = self.error {
            f.error_rate = r;
        }
        if let Some(r) = self.garbage {
            f.garbage_rate = r;
        }
        if let Some(r) = self.reset {
            f.reset_rate = r;
        }
        if let Some(ms) = self.latency_ms {
            f.latency_ms = ms;
        }
        if self.down {
            f.down = true;
        }
        if self.up {
            f.down = false;
        }
        if self.no_idempotency {
            f.idempotency = false;
        }
        if self.idempotency {
            f.idempotency = true;
        }
        f
    }
}

#[derive(Debug, Args)]
pub struct SummaryArgs {
    /// Only conversations whose id starts with this (a drill's or benchmark's run id).
    #[arg(long)]
    pub prefix: Option<String>,
}

/// `whatsapp` / `all` -> channels.
pub fn parse_channels(s: &str) -> anyhow::Result<Vec<Channel>> {
    if s.eq_ignore_ascii_case("all") {
        return Ok(Channel::ALL.to_vec());
    }
    s.parse::<Channel>()
        .map(|c| vec![c])
        .map_err(|_| usage(format!("unknown channel {s:?} (expected whatsapp, telegram, instagram or all)")))
}

fn providers(cli: &Cli) -> Providers {
    let info: Option<SupervisorFile> =
        std::fs::read_to_string(cli.data().supervisor_file()).ok().and_then(|t| serde_json::from_str(&t).ok());
    Providers::of_stack(info.as_ref(), cli.timeout)
}

/// A provider that cannot be reached is an unusable environment (exit 2).
fn unreachable(e: anyhow::Error) -> anyhow::Error {
    usage(format!("{e:#} (is the stack up? `chat4allctl up --detach`)"))
}

pub async fn provider(cli: &Cli, cmd: &ProviderCommand) -> anyhow::Result<()> {
    match cmd {
        ProviderCommand::Faults(a) => faults(cli, a).await,
        ProviderCommand::Summary(a) => summary(cli, a).await,
    }
}

async fn faults(cli: &Cli, a: &FaultsArgs) -> anyhow::Result<()> {
    let channels = parse_channels(&a.channel)?;
    if let Some(ms) = a.hang_ms.into_iter().chain(a.latency_ms).find(|ms| *ms > 600_000) {
        return Err(usage(format!("--hang-ms / --latency-ms must be at most 600000, got {ms}")));
    }
    let p = providers(cli);
    let mut out = Vec::new();
    for ch in channels {
        let current = p.faults(ch).await.map_err(unreachable)?;
        let f = if a.changes() {
            let wanted = a.apply(current);
            // The provider validates too (rates adding up past 1): its refusal is bad input.
            p.set_faults(ch, &wanted).await.map_err(|e| usage(format!("{e:#}")))?
        } else {
            current
        };
        out.push((ch, f));
    }
    match cli.output {
        Format::Json => {
            let doc: serde_json::Map<String, serde_json::Value> = out
                .iter()
                .map(|(ch, f)| (ch.label().to_string(), serde_json::to_value(f).unwrap_or_default()))
                .collect();
            println!("{}", output::json(&doc));
        }
        Format::Table => {
            let mut t = Table::new(&[
                "CHANNEL",
                "DOWN",
                "REJECT",
                "TIMEOUT",
                "HANG",
                "ERROR",
                "GARBAGE",
                "RESET",
                "LATENCY",
                "IDEMPOTENCY",
            ]);
            for (ch, f) in &out {
                t.row(vec![
                    ch.label().into(),
                    f.down.to_string(),
                    f.reject_rate.to_string(),
                    f.timeout_rate.to_string(),
                    format!("{}ms", f.hang_ms),
                    f.error_rate.to_string(),
                    f.garbage_rate.to_string(),
                    f.reset_rate.to_string(),
                    format!("{}ms", f.latency_ms),
                    if f.idempotency { "on" } else { "off" }.into(),
                ]);
            }
            print!("{}", t.render());
        }
    }
    Ok(())
}

async fn summary(cli: &Cli, a: &SummaryArgs) -> anyhow::Result<()> {
    let p = providers(cli);
    let mut rows: Vec<(String, RecordSummary)> = Vec::new();
    let mut total = RecordSummary::default();
    for ch in p.channels() {
        let s = p.summary(ch, a.prefix.as_deref()).await.map_err(unreachable)?;
        total += &s;
        rows.push((ch.label().to_string(), s));
    }
    rows.push(("total".into(), total));
    match cli.output {
        Format::Json => {
            let doc: serde_json::Map<String, serde_json::Value> =
                rows.iter().map(|(k, s)| (k.clone(), serde_json::to_value(s).unwrap_or_default())).collect();
            println!("{}", output::json(&doc));
        }
        Format::Table => {
            let mut t = Table::new(&[
                "CHANNEL",
                "REQUESTS",
                "DELIVERED",
                "DUP-REQUESTS",
                "DUP-DELIVERIES",
                "ACCEPTED",
                "REPLAYED",
                "REJECTED",
                "FAILED",
            ]);
            for (k, s) in &rows {
                t.row(vec![
                    k.clone(),
                    s.requests.to_string(),
                    s.delivered.to_string(),
                    s.duplicate_requests.to_string(),
                    s.duplicate_deliveries.to_string(),
                    s.accepted.to_string(),
                    s.replayed.to_string(),
                    s.rejected.to_string(),
                    s.failed.to_string(),
                ]);
            }
            print!("{}", t.render());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    #[test]
    fn the_command_line_parses_and_applies_changes() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "chat4allctl",
            "provider",
            "faults",
            "all",
            "--reject",
            "0.1",
            "--timeout-rate",
            "0.05",
            "--down",
            "--no-idempotency",
        ])
        .expect("parses");
        let super::super::Command::Provider(ProviderCommand::Faults(a)) = &cli.command else { panic!("faults") };
        let f = a.apply(Faults::default());
        assert_eq!((f.reject_rate, f.timeout_rate, f.down, f.idempotency), (0.1, 0.05, true, false));
        assert!(Cli::try_parse_from(["chat4allctl", "provider", "faults", "all", "--reject", "2"]).is_err());
        assert!(Cli::try_parse_from(["chat4allctl", "provider", "faults", "all", "--down", "--up"]).is_err());
        assert_eq!(parse_channels("all").unwrap().len(), 3);
        assert_eq!(parse_channels("Telegram").unwrap(), vec![Channel::Telegram]);
        assert!(parse_channels("sms").is_err());
    }
}
