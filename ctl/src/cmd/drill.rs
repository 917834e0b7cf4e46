//! `drill`: the fault drills (kill-active, kill-random, broker-restart, kill-broker) with a report and a
//! verdict; exit code 1 when a criterion fails.

use std::time::Duration;

use clap::{Args, Subcommand};

use super::Cli;
use chat4all_ctl::drill::run::Stack;
use chat4all_ctl::drill::{self, DrillPlan, KillMethod, Scenario};
use chat4all_ctl::error::{usage, ConditionNotMet};
use chat4all_ctl::output::{self, parse_duration, Format};

/// How long one runtime action (stop the broker, start a router) may take.
const ACT_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, Subcommand)]
pub enum DrillCommand {
    /// Kill the router that owns the most partitions while traffic flows; report the failover.
    KillActive(CommonArgs),
    /// Kill a random router COUNT times, INTERVAL apart, under sustained load; each victim is
    /// started again half an interval after its kill, so N routers stay.
    KillRandom(KillRandomArgs),
    /// Stop and start the broker under load: nothing accepted may be lost. On a cluster
    /// (`up --brokers 3`) a rolling restart: one node at a time, each back in sync before the next.
    BrokerRestart(BrokerRestartArgs),
    /// On a cluster (`up --brokers 3`): SIGKILL the broker leading --leader-of under load (default
    /// 100 msg/s), start it again after --down; reports the leader election, the under-replicated
    /// time and accepted / delivered / duplicated / lost.
    KillBroker(KillBrokerArgs),
}

#[derive(Debug, Args)]
pub struct KillBrokerArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// The partition whose leader dies, TOPIC-N.
    #[arg(long, default_value = "chat-events-0", value_parser = chat4all_ctl::drill::broker::parse_partition)]
    pub leader_of: (String, i32),
    /// How long the killed broker stays down (from the kill).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub down: Duration,
}

#[derive(Debug, Args)]
pub struct CommonArgs {
    /// Router instances to ensure (scale) before the drill.
    #[arg(long, default_value_t = 3)]
    pub routers: u32,
    /// Messages of the main stream (without --rate).
    #[arg(long, default_value_t = 20)]
    pub messages: u64,
    /// Pause between two messages (without --rate).
    #[arg(long, default_value = "500ms", value_parser = parse_duration)]
    pub every: Duration,
    /// Sustained load in messages per second instead of --messages/--every.
    #[arg(long)]
    pub rate: Option<u32>,
    /// Length of the main stream under --rate (kill-active).
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Messages sent after the main stream.
    #[arg(long, default_value_t = 5)]
    pub recovery_messages: u64,
    /// Criterion: longest allowed time from the kill to the first event a survivor processes.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub max_recovery: Duration,
    /// How long to wait for every accepted message to be delivered.
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// Kill the process by pid behind the control plane's back (an unannounced crash; the
    /// supervisor still sees the exit and removes the member at once).
    #[arg(long, conflicts_with = "freeze")]
    pub crash: bool,
    /// Freeze the victim (SIGSTOP) instead of killing it, like a host that stops answering:
    /// only the session timeout finds it. It gets SIGCONT after --freeze-for and must find
    /// itself fenced (a zombie).
    #[arg(long)]
    pub freeze: bool,
    /// How long a --freeze victim stays stopped.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub freeze_for: Duration,
    /// API base URL (default: the local stack's message-service).
    #[arg(long, env = "CHAT4ALL_API_URL")]
    pub api_url: Option<String>,
    /// Set the simulated providers' reject rate (0 to 1, retryable rejections) for the drill and
    /// restore their faults after it.
    #[arg(long, value_parser = super::up::parse_rate)]
    pub provider_failure_rate: Option<f64>,
}

#[derive(Debug, Args)]
pub struct KillRandomArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Number of kills.
    #[arg(long, default_value_t = 5)]
    pub count: u32,
    /// Time between two kills.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub interval: Duration,
}

#[derive(Debug, Args)]
pub struct BrokerRestartArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// How long the broker stays down.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub down: Duration,
}

fn plan(scenario: Scenario, a: &CommonArgs, default_rate: Option<u32>) -> DrillPlan {
    DrillPlan {
        scenario,
        routers: a.routers,
        messages: a.messages,
        every: a.every,
        rate: a.rate.or(default_rate),
        duration: a.duration,
        recovery_messages: a.recovery_messages,
        kill: if a.crash {
            KillMethod::Crash
        } else if a.freeze {
            KillMethod::Freeze
        } else {
            KillMethod::Operator
        },
        freeze_for: a.freeze_for,
        max_recovery: a.max_recovery,
        drain_timeout: a.drain_timeout,
        provider_failure_rate: a.provider_failure_rate,
    }
}

pub async fn drill(cli: &Cli, cmd: &DrillCommand) -> anyhow::Result<()> {
    let (plan, common) = match cmd {
        DrillCommand::KillActive(a) => (plan(Scenario::KillActive, a, None), a),
        DrillCommand::KillRandom(a) => {
            let s = Scenario::KillRandom { count: a.count, interval_secs: a.interval.as_secs_f64() };
            if a.interval < Duration::from_secs(2) {
                return Err(usage("--interval must be at least 2s (a killed router needs time to start again)"));
            }
            (plan(s, &a.common, Some(100)), &a.common)
        }
        DrillCommand::BrokerRestart(a) => {
            (plan(Scenario::BrokerRestart { down_secs: a.down.as_secs_f64() }, &a.common, Some(100)), &a.common)
        }
        DrillCommand::KillBroker(a) => {
            let leader_of = format!("{}-{}", a.leader_of.0, a.leader_of.1);
            (plan(Scenario::KillBroker { leader_of, down_secs: a.down.as_secs_f64() }, &a.common, Some(100)), &a.common)
        }
    };
    plan.validate().map_err(usage)?;
    // Stopping the broker or starting a router waits for the instance: allow far more than the
    // read timeout of one request.
    let rt = cli.runtime(cli.timeout.max(ACT_TIMEOUT)).await?;
    let found = cli.stack();
    let stack = Stack {
        api_url: common.api_url.clone().unwrap_or_else(|| found.api_url.clone()),
        info: found.supervisor.clone(),
        // Facts for up to 10,000 messages per request: more time than one small read.
        admin: chat4all_ctl::admin::Admin::for_stack(&cli.stack(), cli.timeout.max(Duration::from_secs(30)))?,
        redis_url: super::groups::redis_url(cli),
        bootstrap: super::groups::bootstrap(cli),
        timeout: cli.timeout,
        rt: rt.into(),
    };
    let report = drill::run(&stack, &plan).await?;
    match cli.output {
        Format::Json => println!("{}", output::json(&report)),
        Format::Table => println!("{}", report.to_markdown()),
    }
    let failed = report.failed_criteria();
    if !failed.is_empty() {
        return Err(ConditionNotMet(format!("drill {} failed: {}", report.scenario, failed.join("; "))).into());
    }
    Ok(())
}
