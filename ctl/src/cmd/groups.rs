//! `groups list`, `groups describe GROUP` and `events`.

use clap::{Args, Subcommand};

use super::watch::{self, Render};
use super::Cli;
use chat4all_ctl::control::SupervisorFile;
use chat4all_ctl::kafka::Observer;
use chat4all_ctl::lag::{LagHistory, Rules};
use chat4all_ctl::output::{self, or_dash, Format, Table};
use chat4all_ctl::ownership;
use chat4all_ctl::runtime::client::ProcessRuntime;
use chat4all_ctl::timeline::attribute;
use chat4all_ctl::view::{GroupReader, GroupView};
use chat4all_server::events::TopicPartition;

#[derive(Debug, Subcommand)]
pub enum GroupsCommand {
    /// Consumer groups on the broker.
    List,
    /// Partitions of a group: offsets, lag, owner (the columns of kafka-consumer-groups --describe).
    Describe(DescribeArgs),
}

#[derive(Debug, Args)]
pub struct DescribeArgs {
    pub group: String,
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Most events shown, newest last.
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
}

/// A setting of the stack: the environment variable `env` when set, else what the running
/// supervisor's `supervisor.json` says, else the local-stack default.
fn stack_setting(
    cli: &Cli,
    env: &str,
    from_stack: impl FnOnce(SupervisorFile) -> Option<String>,
    default: &str,
) -> String {
    if let Ok(v) = std::env::var(env) {
        if !v.is_empty() {
            return v;
        }
    }
    ProcessRuntime::connect(&cli.data(), cli.timeout)
        .ok()
        .and_then(|rt| from_stack(rt.info))
        .unwrap_or_else(|| default.to_string())
}

/// Kafka bootstrap of the stack (`KAFKA_BOOTSTRAP`, the supervisor's, 127.0.0.1:9092).
pub(crate) fn bootstrap(cli: &Cli) -> String {
    stack_setting(cli, "KAFKA_BOOTSTRAP", |i| Some(i.kafka_bootstrap), "127.0.0.1:9092")
}

/// Redis of the stack (`REDIS_URL`, the supervisor's, redis://127.0.0.1:6379).
pub(crate) fn redis_url(cli: &Cli) -> String {
    stack_setting(cli, "REDIS_URL", |i| i.redis_url, "redis://127.0.0.1:6379")
}

/// PostgreSQL of the stack (`DATABASE_URL`, the supervisor's, the local default).
pub(crate) fn database_url(cli: &Cli) -> String {
    stack_setting(cli, "DATABASE_URL", |i| i.database_url, "postgres://postgres@127.0.0.1:5432/chat4all")
}

/// A group reader primed with the supervisor's offset history (when a supervisor runs), so that
/// even a one-shot command has a window to judge lag status by.
pub(crate) async fn reader(cli: &Cli) -> anyhow::Result<GroupReader> {
    let mut history = LagHistory::new(Rules::default());
    if let Ok(rt) = ProcessRuntime::connect(&cli.data(), cli.timeout) {
        if let Ok(h) = rt.lag_history().await {
            history.merge(&h);
        }
    }
    GroupReader::new(&bootstrap(cli), &redis_url(cli), cli.timeout, history)
}

pub async fn groups(cli: &Cli, cmd: &GroupsCommand) -> anyhow::Result<()> {
    match cmd {
        GroupsCommand::List => {
            let mut v = ListView { observer: reader(cli).await?.observer() };
            watch::show(cli, &mut v).await
        }
        GroupsCommand::Describe(args) => {
            let mut v = DescribeView { reader: reader(cli).await?, group: args.group.clone() };
            watch::show(cli, &mut v).await
        }
    }
}

struct ListView {
    observer: std::sync::Arc<Observer>,
}

impl Render for ListView {
    async fn render(&mut self, format: Format) -> anyhow::Result<String> {
        let obs = self.observer.clone();
        let groups = tokio::task::spawn_blocking(move || obs.groups()).await??;
        Ok(match format {
            Format::Json => output::json(&groups),
            Format::Table => {
                let mut t = Table::new(&["GROUP", "STATE", "PROTOCOL", "MEMBERS"]);
                for g in groups {
                    t.row(vec![g.group, g.state, g.protocol, g.members.len().to_string()]);
                }
                t.render()
            }
        })
    }
}

struct DescribeView {
    reader: GroupReader,
    group: String,
}

impl Render for DescribeView {
    async fn render(&mut self, format: Format) -> anyhow::Result<String> {
        let desc = self.reader.describe(&self.group).await?;
        Ok(match format {
            Format::Json => output::json(&desc),
            Format::Table => {
                let mut out = String::new();
                if let Some(e) = &self.reader.reports_error {
                    out.push_str(&format!("warning: no instance reports ({e}); ownership from the broker only\n"));
                }
                out.push_str(&describe_table(&desc));
                out
            }
        })
    }
}

/// `kafka-consumer-groups --describe` columns, then the owner and the lag status.
pub(crate) fn describe_table(desc: &GroupView) -> String {
    let mut t = Table::new(&[
        "GROUP",
        "TOPIC",
        "PARTITION",
        "CURRENT-OFFSET",
        "LOG-END-OFFSET",
        "LAG",
        "CONSUMER-ID",
        "HOST",
        "CLIENT-ID",
        "OWNER",
        "STATUS",
    ]);
    for p in &desc.partitions {
        let mut row = vec![p.group.clone()];
        row.extend(p.offset_cells());
        row.extend([
            or_dash(p.consumer_id.as_ref()),
            or_dash(p.host.as_ref()),
            or_dash(p.client_id.as_ref()),
            or_dash(p.owner.as_ref().map(|o| &o.instance)),
            p.status.to_string(),
        ]);
        t.row(row);
    }
    for s in &desc.standby {
        let mut row = vec![desc.group.clone()];
        row.extend(std::iter::repeat_n("-".to_string(), 8));
        row.push(format!("{s} (standby)"));
        row.push("-".into());
        t.row(row);
    }
    format!(
        "group {} state {} members {} lag {} status {}\n{}",
        desc.group,
        desc.state,
        desc.members,
        desc.total_lag,
        desc.status,
        t.render()
    )
}

pub async fn events(cli: &Cli, args: &EventsArgs) -> anyhow::Result<()> {
    let conn = ownership::redis(&redis_url(cli)).await?;
    let runtime = ProcessRuntime::connect(&cli.data(), cli.timeout).ok();
    let mut v = EventsView { conn, runtime, limit: args.limit };
    watch::show(cli, &mut v).await
}

struct EventsView {
    conn: redis::aio::MultiplexedConnection,
    runtime: Option<ProcessRuntime>,
    limit: usize,
}

impl Render for EventsView {
    async fn render(&mut self, format: Format) -> anyhow::Result<String> {
        let events = ownership::timeline(&mut self.conn, self.limit).await?;
        let actions = match &self.runtime {
            Some(rt) => rt.actions().await.unwrap_or_default(),
            None => Vec::new(),
        };
        let rows = attribute(events, &actions);
        Ok(match format {
            Format::Json => output::json(&rows),
            Format::Table => {
                let mut t = Table::new(&["TIME", "GROUP", "INSTANCE", "KIND", "PARTITIONS", "ASSIGNMENT", "CAUSE"]);
                let fmt = |v: &[TopicPartition]| {
                    if v.is_empty() {
                        "-".to_string()
                    } else {
                        v.iter().map(|p| format!("{}-{}", p.topic, p.partition)).collect::<Vec<_>>().join(",")
                    }
                };
                for r in &rows {
                    t.row(vec![
                        r.event.at.format("%H:%M:%S%.3f").to_string(),
                        r.event.group.clone(),
                        r.event.instance.clone(),
                        format!("{:?}", r.event.kind).to_lowercase(),
                        fmt(&r.event.partitions),
                        fmt(&r.event.assignment),
                        r.cause.clone().unwrap_or_else(|| "-".into()),
                    ]);
                }
                t.render()
            }
        })
    }
}
