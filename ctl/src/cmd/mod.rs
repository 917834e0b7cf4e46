//! The command line: arguments and dispatch.

mod act;
mod alerts;
mod apikey;
mod bench;
mod bench_gateway;
mod bench_observe;
mod brokers;
mod dlq;
mod drill;
mod exporter;
mod failover;
mod groups;
mod lag;
mod provider;
mod relay;
mod repartition;
mod status;
mod topics;
mod up;
mod watch;

use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use chat4all_ctl::output::{parse_duration, Format};
use chat4all_ctl::paths::DataDir;
use chat4all_ctl::runtime::Verb;

const AFTER_HELP: &str = "\
Exit codes:
  0  success
  1  a condition was not met (a wait that timed out, a failed drill criterion)
  2  error: bad input, unknown instance or service, stack or broker unreachable; nothing changed

Lag status (lag, groups describe, status):
  OK       lag is zero, or the group keeps up
  WARN     offsets are committed but lag has not decreased over the window
  STALL    an owner holds the partition but has not committed for 10 s while lag > 0
  STOP     lag > 0 and no live member owns the partition
  REWIND   the committed offset went backwards
  UNKNOWN  not enough history yet

Environment:
  CHAT4ALL_HOME    data directory of the local stack (default: ./.chat4all)
  KAFKA_BOOTSTRAP  use this Kafka instead of the embedded broker (up), or read from it
  DATABASE_URL     PostgreSQL (default postgres://postgres@127.0.0.1:5432/chat4all)
  REDIS_URL        Redis (default redis://127.0.0.1:6379)

Examples:
  chat4allctl up --detach          start the platform in the background (3 routers)
  chat4allctl status -o json       everything at a glance, for scripts
  chat4allctl kill router-service-1
  chat4allctl scale router=2
  chat4allctl lag --watch          lag, lag seconds and status, refreshed every second
  chat4allctl repartition chat-events --partitions 4 --dry-run
  chat4allctl dlq list --since 1h  dead letters of the last hour, with the reason
  chat4allctl dlq replay --all --dry-run
  chat4allctl up --brokers 3 --detach   a three-node Kafka cluster (broker-1..3)
  chat4allctl brokers              which broker is alive, controls, leads what
  chat4allctl topics describe chat-events --under-replicated
  chat4allctl down";

#[derive(Debug, Parser)]
#[command(
    name = "chat4allctl",
    version,
    about = "Control plane of the chat4all messaging platform",
    long_about = "Runs the chat4all platform locally and operates it: instances, consumer lag, \
                  partition ownership and rebalances, kill / scale / restart.",
    after_help = AFTER_HELP
)]
pub struct Cli {
    /// Data directory of the local stack (logs, broker data, control token).
    #[arg(long, global = true, env = "CHAT4ALL_HOME", default_value = ".chat4all")]
    pub data_dir: String,
    /// Output format of read commands.
    #[arg(short, long, global = true, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    /// How long to wait for the broker or the supervisor before giving up (e.g. 5s, 500ms).
    #[arg(long, global = true, default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Refresh a read command in place (tables) or print one JSON document per line (-o json).
    #[arg(short, long, global = true)]
    pub watch: bool,
    /// Refresh interval of --watch (e.g. 1s, 500ms).
    #[arg(long, global = true, default_value = "1s", value_parser = parse_duration)]
    pub interval: Duration,
    /// More logging on stderr.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// The runtime of the stack: `process` (the supervisor of --data-dir) or `docker` (the
    /// containers of --project on the engine at DOCKER_HOST). Found by itself when only one runs.
    #[arg(long, global = true, env = "CHAT4ALL_RUNTIME", value_enum)]
    pub runtime: Option<chat4all_ctl::runtime::RuntimeKind>,
    /// Compose project of the docker runtime (`docker-compose -p NAME`, label com.docker.compose.project).
    #[arg(long, global = true, env = "CHAT4ALL_COMPOSE_PROJECT", default_value = "chat4all")]
    pub project: String,
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    pub fn data(&self) -> DataDir {
        DataDir::new(&self.data_dir)
    }

    /// Where the stack is (environment, then the running supervisor, then the defaults).
    pub fn stack(&self) -> chat4all_ctl::stack::Stack {
        chat4all_ctl::stack::Stack::find(&self.data())
    }

    /// The runtime of the stack (`--runtime`, or the one found): a usage error when none runs.
    pub async fn runtime(&self, timeout: Duration) -> anyhow::Result<Box<dyn chat4all_ctl::runtime::Runtime>> {
        let target = chat4all_ctl::runtime::Target { data: self.data(), project: self.project.clone(), timeout };
        chat4all_ctl::runtime::connect(self.runtime, &target).await
    }

    /// The services' admin endpoints, with the stack's control token.
    pub fn admin(&self) -> anyhow::Result<chat4all_ctl::admin::Admin> {
        Ok(chat4all_ctl::admin::Admin::for_stack(&self.stack(), self.timeout)?)
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the platform on this machine (broker, services, routers) and supervise it.
    Up(up::UpArgs),
    /// Stop a running local stack cleanly (consumers leave their groups first, the broker last).
    Down,
    /// Services, instances, broker reachability and one line per consumer group.
    Status,
    /// Consumer groups: list, or describe one (offsets, lag, owner per partition).
    #[command(subcommand)]
    Groups(groups::GroupsCommand),
    /// Lag per group / topic / partition, lag in seconds and status (OK, WARN, STALL, STOP, REWIND).
    Lag(lag::LagArgs),
    /// The rebalance timeline: assigned / revoked partitions per instance, with the cause.
    Events(groups::EventsArgs),
    /// The Kafka cluster's brokers: id, address, rack, controller, alive, partitions led.
    Brokers,
    /// Topics: `topics describe chat-events` (leader, replicas, ISR, under-replicated per partition).
    #[command(subcommand)]
    Topics(topics::TopicsCommand),
    /// The instances of the local stack.
    #[command(alias = "ps")]
    Instances,
    /// SIGKILL an instance, like `docker kill` (no graceful leave: the group notices by timeout).
    Kill(InstanceArg),
    /// Stop an instance gracefully (SIGTERM: a consumer commits and leaves its group).
    Stop(InstanceArg),
    /// Start a stopped or killed instance again.
    Start(InstanceArg),
    /// Stop then start an instance.
    Restart(InstanceArg),
    /// Start or stop replicas of a service: `scale router=3` (also `router-service=3`).
    Scale(act::ScaleArgs),
    /// Print the log of an instance.
    Logs(act::LogsArgs),
    /// More partitions for chat-events, keeping per-conversation order (drain, change, resume).
    Repartition(repartition::RepartitionArgs),
    /// The outbox relay: show (leader, pause lease, backlog, oldest row), pause --for, resume.
    Relay {
        #[command(subcommand)]
        command: Option<relay::RelayCommand>,
    },
    /// Measure the control plane's own cost: one `groups describe`, one `--watch` refresh.
    BenchObserve(bench_observe::BenchObserveArgs),
    /// Drive the API at a fixed rate and report throughput and latency.
    Bench(bench::BenchArgs),
    /// Dead letters: `dlq list [--channel C] [--since 1h]`, `dlq replay --id P:O ... | --all
    /// [--dry-run]` (only deliveries still FAILED are replayed; nothing is delivered twice).
    #[command(subcommand)]
    Dlq(dlq::DlqCommand),
    /// Prometheus alert rules for the platform: `alerts emit` prints them.
    #[command(subcommand)]
    Alerts(alerts::AlertsCommand),
    /// Serve consumer lag, offsets, ownership and instance states as Prometheus metrics.
    Exporter(exporter::ExporterArgs),
    /// Runtime-assisted failover on Docker: `failover watch` removes a dead container's
    /// members from their groups at once.
    #[command(subcommand)]
    Failover(failover::FailoverCommand),
    /// Fault drills: kill-active, kill-random, broker-restart; a report and a verdict (exit 1 on failure).
    #[command(subcommand)]
    Drill(drill::DrillCommand),
    /// The simulated providers: `provider faults <channel|all> [--reject R --down ...]`,
    /// `provider summary [--prefix P]`.
    #[command(subcommand)]
    Provider(provider::ProviderCommand),
    /// API keys of the api-gateway: create (printed once), list, revoke.
    #[command(subcommand)]
    Apikey(apikey::ApiKeyCommand),
    /// The api-gateway's overhead per request and upload throughput (see BENCHMARKS.md).
    #[command(hide = true)]
    BenchGateway(bench_gateway::BenchGatewayArgs),
}

#[derive(Debug, Args)]
pub struct InstanceArg {
    /// Instance name, e.g. router-service-1 (see `chat4allctl instances`).
    pub instance: String,
}

pub fn init_logging(cli: &Cli) {
    let default = match (&cli.command, cli.verbose) {
        (_, true) => "info",
        (Command::Up(_), _) => "info,rdkafka=off",
        _ => "warn,rdkafka=off",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("CHAT4ALL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Up(args) => up::up(&cli, args).await,
        Command::Down => up::down(&cli).await,
        Command::Status => status::status(&cli).await,
        Command::Instances => status::instances(&cli).await,
        Command::Brokers => brokers::brokers(&cli).await,
        Command::Topics(c) => topics::topics(&cli, c).await,
        Command::Groups(c) => groups::groups(&cli, c).await,
        Command::Lag(a) => lag::lag(&cli, a).await,
        Command::Events(a) => groups::events(&cli, a).await,
        Command::Kill(a) => act::act(&cli, &a.instance, Verb::Kill).await,
        Command::Stop(a) => act::act(&cli, &a.instance, Verb::Stop).await,
        Command::Start(a) => act::act(&cli, &a.instance, Verb::Start).await,
        Command::Restart(a) => act::act(&cli, &a.instance, Verb::Restart).await,
        Command::Scale(a) => act::scale(&cli, a).await,
        Command::Logs(a) => act::logs(&cli, a).await,
        Command::Repartition(a) => repartition::repartition(&cli, a).await,
        Command::Relay { command } => relay::relay(&cli, command.as_ref()).await,
        Command::BenchObserve(a) => bench_observe::bench_observe(&cli, a).await,
        Command::Bench(a) => bench::bench(&cli, a).await,
        Command::Dlq(c) => dlq::dlq(&cli, c).await,
        Command::Failover(c) => failover::failover(&cli, c).await,
        Command::Alerts(c) => alerts::alerts(c),
        Command::Exporter(a) => exporter::exporter(&cli, a).await,
        Command::Drill(c) => drill::drill(&cli, c).await,
        Command::Apikey(c) => apikey::apikey(&cli, c).await,
        Command::Provider(c) => provider::provider(&cli, c).await,
        Command::BenchGateway(a) => bench_gateway::bench_gateway(&cli, a).await,
    }
}
