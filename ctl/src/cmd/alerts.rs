//! `alerts emit`: Prometheus alert rules for the platform, from a few parameters.

use std::time::Duration;

use clap::{Args, Subcommand};

use chat4all_ctl::alerts::{self, Params, DEFAULT_GROUPS};
use chat4all_ctl::output::parse_duration;

#[derive(Debug, Subcommand)]
pub enum AlertsCommand {
    /// Print Prometheus rule groups (YAML) for the platform; without flags, what
    /// alerts/chat4all-rules.yml holds.
    Emit(EmitArgs),
}

#[derive(Debug, Args)]
pub struct EmitArgs {
    /// Consumer group to watch (repeat for several).
    #[arg(long = "group", default_values_t = DEFAULT_GROUPS.map(String::from))]
    pub groups: Vec<String>,
    /// Lag (messages) of a partition above which the lag alert fires.
    #[arg(long, default_value_t = Params::default().lag_threshold)]
    pub lag_threshold: u64,
    /// How long lag must stay above the threshold, or keep growing, before alerting.
    #[arg(long, default_value = "2m", value_parser = parse_duration)]
    pub lag_for: Duration,
    /// Lag is growing when it is higher than this long ago.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub growing_window: Duration,
    /// The consumers' session timeout: how long a partition may lack an owner during a failover.
    #[arg(long, default_value = "45s", value_parser = parse_duration)]
    pub session_timeout: Duration,
    /// Window over which rebalance reports are counted.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub rebalance_window: Duration,
    /// More rebalance reports than this within the window: the group is rebalancing.
    #[arg(long, default_value_t = Params::default().rebalance_max)]
    pub rebalance_max: u32,
    /// How long members of a KIP-848 group may keep reconciling before alerting.
    #[arg(long, default_value = "2m", value_parser = parse_duration)]
    pub reconciling_for: Duration,
    /// How long an instance may be down or unhealthy before alerting.
    #[arg(long, default_value = "1m", value_parser = parse_duration)]
    pub down_for: Duration,
    /// How long members may exceed partitions before the idle-standby notice.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub standby_for: Duration,
    /// Any dead letter within this window fires the dead-letter alert.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub dead_letter_window: Duration,
    /// Age of the exporter's last broker observation beyond which it is stale.
    #[arg(long, default_value = "1m", value_parser = parse_duration)]
    pub stale_after: Duration,
    /// How long the outbox relay may stay paused before alerting (a repartition takes seconds).
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub relay_paused_for: Duration,
    /// Age of the oldest unpublished outbox row above which the outbox is not draining.
    #[arg(long, default_value = "1m", value_parser = parse_duration)]
    pub outbox_max_age: Duration,
    /// Evaluation interval of the rule groups (default: Prometheus' global interval).
    #[arg(long = "eval-interval", value_parser = parse_duration)]
    pub eval_interval: Option<Duration>,
}

impl EmitArgs {
    pub fn params(&self) -> Params {
        Params {
            groups: self.groups.clone(),
            lag_threshold: self.lag_threshold,
            lag_for: self.lag_for,
            growing_window: self.growing_window,
            session_timeout: self.session_timeout,
            rebalance_window: self.rebalance_window,
            rebalance_max: self.rebalance_max,
            reconciling_for: self.reconciling_for,
            down_for: self.down_for,
            standby_for: self.standby_for,
            dead_letter_window: self.dead_letter_window,
            stale_after: self.stale_after,
            relay_paused_for: self.relay_paused_for,
            outbox_max_age: self.outbox_max_age,
            interval: self.eval_interval,
        }
    }
}

pub fn alerts(cmd: &AlertsCommand) -> anyhow::Result<()> {
    match cmd {
        AlertsCommand::Emit(args) => {
            print!("{}", alerts::render(&args.params())?);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cmd::{Cli, Command};

    fn emit_args(args: &[&str]) -> EmitArgs {
        let cli = Cli::try_parse_from([&["chat4allctl", "alerts", "emit"], args].concat()).unwrap();
        match cli.command {
            Command::Alerts(AlertsCommand::Emit(a)) => a,
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn flags_default_to_the_library_defaults() {
        assert_eq!(emit_args(&[]).params(), Params::default());
    }

    #[test]
    fn flags_reach_the_parameters() {
        let p = emit_args(&[
            "--lag-threshold",
            "5",
            "--lag-for",
            "10s",
            "--group",
            "g1",
            "--eval-interval",
            "2s",
            "--reconciling-for",
            "30s",
        ])
        .params();
        assert_eq!(p.reconciling_for, Duration::from_secs(30));
        assert_eq!(p.lag_threshold, 5);
        assert_eq!(p.lag_for, Duration::from_secs(10));
        assert_eq!(p.groups, vec!["g1".to_string()]);
        assert_eq!(p.interval, Some(Duration::from_secs(2)));
    }

    /// CI fails when the checked-in rules differ from what `alerts emit` prints.
    #[test]
    fn checked_in_rules_are_what_emit_prints() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../alerts/chat4all-rules.yml");
        let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
        let emitted = alerts::render(&emit_args(&[]).params()).unwrap();
        assert!(
            checked_in == emitted,
            "{} differs from `chat4allctl alerts emit`; regenerate it with \
             `target/debug/chat4allctl alerts emit > alerts/chat4all-rules.yml`",
            path.display()
        );
    }
}
