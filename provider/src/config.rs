//! Flags with `CHAT4ALL_*` environment fallbacks, like the platform's services.

use std::net::SocketAddr;

use chat4all_contract::channel::Channel;
use chat4all_contract::provider::Faults;
use clap::{Args, Parser};

#[derive(Debug, Parser)]
#[command(
    name = "chat4all-provider",
    version,
    about = "A simulated messaging provider for one channel (normally started by `chat4allctl up`)"
)]
pub struct Cli {
    /// The channel this provider simulates.
    #[arg(long, env = "CHAT4ALL_CHANNEL")]
    pub channel: Channel,
    /// HTTP listener (default 127.0.0.1:8075 / 8076 / 8077 by channel).
    #[arg(long, env = "CHAT4ALL_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Instance name, in logs and metrics (default `<channel>-provider-1`).
    #[arg(long, env = "CHAT4ALL_INSTANCE")]
    pub instance: Option<String>,
    #[command(flatten)]
    pub faults: FaultArgs,
}

/// The initial faults (change them at run time with `PUT /v1/admin/faults`).
#[derive(Debug, Clone, Args)]
pub struct FaultArgs {
    /// Added to every request, in milliseconds.
    #[arg(long, env = "CHAT4ALL_PROVIDER_LATENCY_MS", default_value_t = 0)]
    pub latency_ms: u64,
    /// Share of items rejected (retryable, nothing done).
    #[arg(long, env = "CHAT4ALL_PROVIDER_REJECT_RATE", default_value_t = 0.0)]
    pub reject_rate: f64,
    /// Share of requests done, then answered only after --hang-ms.
    #[arg(long, env = "CHAT4ALL_PROVIDER_TIMEOUT_RATE", default_value_t = 0.0)]
    pub timeout_rate: f64,
    #[arg(long, env = "CHAT4ALL_PROVIDER_HANG_MS", default_value_t = 5_000)]
    pub hang_ms: u64,
    /// Share of requests answered 500, nothing done.
    #[arg(long, env = "CHAT4ALL_PROVIDER_ERROR_RATE", default_value_t = 0.0)]
    pub error_rate: f64,
    /// Share of requests done, then answered 200 with a body that is not JSON.
    #[arg(long, env = "CHAT4ALL_PROVIDER_GARBAGE_RATE", default_value_t = 0.0)]
    pub garbage_rate: f64,
    /// Share of requests done, then the connection closed mid-answer.
    #[arg(long, env = "CHAT4ALL_PROVIDER_RESET_RATE", default_value_t = 0.0)]
    pub reset_rate: f64,
    /// Start in an outage (every request 503).
    #[arg(long, env = "CHAT4ALL_PROVIDER_DOWN", value_parser = clap::builder::BoolishValueParser::new())]
    pub down: bool,
    /// Ignore idempotency keys (a provider that sends again what it is asked again).
    #[arg(long, env = "CHAT4ALL_PROVIDER_NO_IDEMPOTENCY", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_idempotency: bool,
}

impl FaultArgs {
    pub fn to_faults(&self) -> Faults {
        Faults {
            latency_ms: self.latency_ms,
            reject_rate: self.reject_rate,
            timeout_rate: self.timeout_rate,
            hang_ms: self.hang_ms,
            error_rate: self.error_rate,
            garbage_rate: self.garbage_rate,
            reset_rate: self.reset_rate,
            down: self.down,
            idempotency: !self.no_idempotency,
        }
    }
}

/// `whatsapp-provider`.
pub fn service_name(channel: Channel) -> String {
    format!("{}-provider", channel.label())
}

pub fn default_port(channel: Channel) -> u16 {
    match channel {
        Channel::Whatsapp => 8075,
        Channel::Telegram => 8076,
        Channel::Instagram => 8077,
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn flags_parse_and_make_faults() {
        let cli = Cli::try_parse_from(["chat4all-provider", "--channel", "telegram", "--reject-rate", "0.1", "--down"])
            .expect("parses");
        assert_eq!(cli.channel, Channel::Telegram);
        let f = cli.faults.to_faults();
        assert_eq!((f.reject_rate, f.down, f.idempotency), (0.1, true, true));
        let cli =
            Cli::try_parse_from(["chat4all-provider", "--channel", "WHATSAPP", "--no-idempotency"]).expect("parses");
        assert!(!cli.faults.to_faults().idempotency);
        assert!(Cli::try_parse_from(["chat4all-provider", "--channel", "sms"]).is_err());
    }
}
