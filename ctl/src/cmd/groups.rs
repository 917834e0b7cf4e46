//! `groups list`, `groups describe GROUP` and `events`.

use clap::{Args, Subcommand};

use super::watch::{self, Render};
use super::Cli;
use chat4all_contract::events::TopicPartition;
use chat4all_ctl::error::usage;
use chat4all_ctl::kafka::{GroupInfo, GroupType, Member, Observer};
use chat4all_ctl::lag::{LagHistory, Rules};
use chat4all_ctl::output::{self, or_dash, Format, Table};
use chat4all_ctl::ownership;
use chat4all_ctl::ownership::Disagreement;
use chat4all_ctl::runtime::client::ProcessRuntime;
use chat4all_ctl::timeline::attribute;
use chat4all_ctl::view::{GroupDescription, GroupReader};

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
    /// The group's members instead (kafka-consumer-groups --describe --members --verbose):
    /// client, host, assignment, and for KIP-848 groups epochs and target assignment.
    #[arg(long)]
    pub members: bool,
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Most events shown, newest last.
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
}

/// Kafka bootstrap of the stack (`KAFKA_BOOTSTRAP`, the supervisor's, 127.0.0.1:9092).
pub(crate) fn bootstrap(cli: &Cli) -> String {
    cli.stack().bootstrap
}

/// Redis of the stack (`REDIS_URL`, the supervisor's, redis://127.0.0.1:6379).
pub(crate) fn redis_url(cli: &Cli) -> String {
    cli.stack().redis_url
}

/// A group reader primed with the supervisor's offset history (when a supervisor runs), so that
/// even a one-shot command has a window to judge lag status by.
pub(crate) async fn reader(cli: &Cli) -> anyhow::Result<GroupReader> {
    reader_of(cli, None).await
}

/// A reader primed with the supervisor's offset history: of one group, or of all.
pub(crate) async fn reader_of(cli: &Cli, group: Option<&str>) -> anyhow::Result<GroupReader> {
    let mut history = LagHistory::new(Rules::default());
    if let Ok(rt) = ProcessRuntime::connect(&cli.data(), cli.timeout) {
        let h = match group {
            Some(g) => rt.lag_history_of(g).await,
            None => rt.lag_history().await,
        };
        if let Ok(h) = h {
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
        GroupsCommand::Describe(args) if args.members => {
            let mut v = MembersView {
                observer: reader_of(cli, Some(&args.group)).await?.observer(),
                group: args.group.clone(),
            };
            watch::show(cli, &mut v).await
        }
        GroupsCommand::Describe(args) => {
            let mut v = DescribeView { reader: reader_of(cli, Some(&args.group)).await?, group: args.group.clone() };
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
                let mut t = Table::new(&["GROUP", "TYPE", "STATE", "PROTOCOL", "MEMBERS"]);
                for g in groups {
                    t.row(vec![g.group, g.group_type.to_string(), g.state, g.protocol, g.members.len().to_string()]);
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
        let desc = self.reader.describe_full(&self.group).await?;
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

/// The group line above both tables: type, state, epochs (KIP-848), members.
fn summary(group: &str, kind: GroupType, state: &str, epochs: (Option<i32>, Option<i32>), members: usize) -> String {
    let epochs = match epochs {
        (Some(g), Some(a)) => format!(" epoch {g} assignment-epoch {a}"),
        _ => String::new(),
    };
    format!("group {group} type {kind} state {state}{epochs} members {members}")
}

/// The columns of `kafka-consumer-groups --describe` with the values it prints (only the
/// partitions it lists: assigned ones and committed ones), then ours: the owning instance, where
/// that was learned, lag status and lag in seconds. Standby instances follow as rows of their
/// own, and any disagreement between the members' reports and the broker below the table.
pub(crate) fn describe_table(desc: &GroupDescription) -> String {
    let v = &desc.view;
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
        "SOURCE",
        "STATUS",
        "LAG-SECONDS",
    ]);
    for p in v.partitions.iter().filter(|p| p.listed_by_kafka()) {
        let mut row = vec![p.group.clone()];
        row.extend(p.offset_cells());
        row.extend([
            or_dash(p.consumer_id.as_ref()),
            or_dash(p.host.as_ref()),
            or_dash(p.client_id.as_ref()),
            or_dash(p.owner.as_ref().map(|o| &o.instance)),
            or_dash(p.owner.as_ref().map(|o| o.source)),
            p.status.to_string(),
            or_dash(p.lag_seconds.map(|s| format!("{s:.1}"))),
        ]);
        t.row(row);
    }
    for s in &v.standby {
        let mut row = vec![v.group.clone()];
        row.extend(std::iter::repeat_n("-".to_string(), 8));
        row.push(format!("{s} (standby)"));
        row.extend(std::iter::repeat_n("-".to_string(), 3));
        t.row(row);
    }
    let mut out = format!(
        "{} lag {} status {}\n{}",
        summary(&v.group, v.group_type, &v.state, (v.group_epoch, v.assignment_epoch), v.members),
        v.total_lag,
        v.status,
        t.render()
    );
    for d in &v.disagreements {
        out.push_str(&disagreement_line(d));
    }
    if !v.stale_reports.is_empty() {
        out.push_str(&format!("stale reports (no longer members): {}\n", v.stale_reports.join(", ")));
    }
    out
}

pub(crate) fn disagreement_line(d: &Disagreement) -> String {
    let claims = if d.reported_by.is_empty() { "no member".to_string() } else { d.reported_by.join(", ") };
    format!(
        "DISAGREEMENT {}-{}: broker assigns it to {}, reported by {claims}\n",
        d.topic,
        d.partition,
        d.broker.as_deref().unwrap_or("nobody")
    )
}

struct MembersView {
    observer: std::sync::Arc<Observer>,
    group: String,
}

impl Render for MembersView {
    async fn render(&mut self, format: Format) -> anyhow::Result<String> {
        let obs = self.observer.clone();
        let name = self.group.clone();
        let info = tokio::task::spawn_blocking(move || obs.group(&name))
            .await??
            .ok_or_else(|| usage(format!("unknown consumer group {:?}", self.group)))?;
        Ok(match format {
            Format::Json => output::json(&info),
            Format::Table => members_table(&info),
        })
    }
}

/// An assignment as `kafka-consumer-groups --members --verbose` prints it: `topic:0,1;other:2`
/// (topics sorted, partitions ascending), `-` when empty or unknown.
pub(crate) fn assignment_cell(a: Option<&Vec<(String, i32)>>) -> String {
    let Some(a) = a.filter(|a| !a.is_empty()) else { return "-".into() };
    let mut by_topic: std::collections::BTreeMap<&str, Vec<i32>> = Default::default();
    for (t, p) in a {
        by_topic.entry(t.as_str()).or_default().push(*p);
    }
    by_topic
        .into_iter()
        .map(|(t, mut ps)| {
            ps.sort_unstable();
            format!("{t}:{}", ps.iter().map(i32::to_string).collect::<Vec<_>>().join(","))
        })
        .collect::<Vec<_>>()
        .join(";")
}

/// `kafka-consumer-groups --describe --members --verbose`: GROUP-INSTANCE-ID only when a member
/// has one, as the tool does; then RECONCILING (KIP-848: current and target assignment differ).
pub(crate) fn members_table(info: &GroupInfo) -> String {
    let with_instance = info.members.iter().any(|m| m.group_instance_id.as_ref().is_some_and(|i| !i.is_empty()));
    let mut header = vec!["GROUP", "CONSUMER-ID"];
    if with_instance {
        header.push("GROUP-INSTANCE-ID");
    }
    header.extend([
        "HOST",
        "CLIENT-ID",
        "#PARTITIONS",
        "CURRENT-EPOCH",
        "CURRENT-ASSIGNMENT",
        "TARGET-EPOCH",
        "TARGET-ASSIGNMENT",
        "RECONCILING",
    ]);
    let mut t = Table::new(&header);
    for m in &info.members {
        t.row(member_row(info, m, with_instance));
    }
    format!(
        "{}\n{}",
        summary(
            &info.group,
            info.group_type,
            &info.state,
            (info.group_epoch, info.assignment_epoch),
            info.members.len()
        ),
        t.render()
    )
}

fn member_row(info: &GroupInfo, m: &Member, with_instance: bool) -> Vec<String> {
    let mut row = vec![info.group.clone(), m.member_id.clone()];
    if with_instance {
        row.push(m.group_instance_id.clone().unwrap_or_default());
    }
    let consumer = info.group_type == GroupType::Consumer;
    row.extend([
        m.host.clone(),
        m.client_id.clone(),
        m.assignment.as_ref().map_or(0, Vec::len).to_string(),
        or_dash(m.member_epoch),
        assignment_cell(m.assignment.as_ref()),
        or_dash(info.assignment_epoch),
        assignment_cell(m.target_assignment.as_ref()),
        if consumer { if m.reconciling { "yes" } else { "no" }.to_string() } else { "-".to_string() },
    ]);
    row
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

#[cfg(test)]
mod tests {
    use super::*;

    fn tps(v: &[(&str, i32)]) -> Vec<(String, i32)> {
        v.iter().map(|(t, p)| (t.to_string(), *p)).collect()
    }

    #[test]
    fn assignments_print_as_the_kafka_tool_does() {
        assert_eq!(assignment_cell(Some(&tps(&[("wt", 1), ("a", 3), ("wt", 0)]))), "a:3;wt:0,1");
        assert_eq!(assignment_cell(Some(&vec![])), "-");
        assert_eq!(assignment_cell(None), "-");
    }

    #[test]
    fn members_of_a_kip848_group_show_epochs_target_and_reconciling() {
        let info = GroupInfo {
            group: "g".into(),
            group_type: GroupType::Consumer,
            state: "Reconciling".into(),
            group_epoch: Some(4),
            assignment_epoch: Some(4),
            members: vec![Member {
                member_id: "m1".into(),
                client_id: "c1".into(),
                host: "/127.0.0.1".into(),
                member_epoch: Some(3),
                assignment: Some(tps(&[("t", 0), ("t", 1)])),
                target_assignment: Some(tps(&[("t", 0)])),
                reconciling: true,
                ..Default::default()
            }],
            ..Default::default()
        };
        let out = members_table(&info);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "group g type consumer state Reconciling epoch 4 assignment-epoch 4 members 1");
        assert!(!lines[1].contains("GROUP-INSTANCE-ID"));
        let cells: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(cells, ["g", "m1", "/127.0.0.1", "c1", "2", "3", "t:0,1", "4", "t:0", "yes"]);
    }

    #[test]
    fn a_classic_member_with_an_instance_id_gets_the_column_and_dashes_for_epochs() {
        let info = GroupInfo {
            group: "g".into(),
            state: "Stable".into(),
            members: vec![Member {
                member_id: "m1".into(),
                group_instance_id: Some("r1".into()),
                client_id: "c1".into(),
                host: "/10.0.0.1".into(),
                assignment: Some(tps(&[("t", 2)])),
                ..Default::default()
            }],
            ..Default::default()
        };
        let out = members_table(&info);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[1].contains("GROUP-INSTANCE-ID"));
        let cells: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(cells, ["g", "m1", "r1", "/10.0.0.1", "c1", "1", "-", "t:2", "-", "-", "-"]);
    }
}
