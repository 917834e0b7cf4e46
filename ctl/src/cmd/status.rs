//! `status` and `instances`.

use std::time::Duration;

use serde::Serialize;

use super::watch::{self, Render};
use super::Cli;
use chat4all_ctl::lag::LagStatus;
use chat4all_ctl::output::{self, human_duration, Format, Table};
use chat4all_ctl::runtime::{EngineInfo, InstanceInfo, Runtime, RuntimeKind};
use chat4all_ctl::view::{notes, GroupReader, GroupView};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct InstanceRow {
    #[serde(flatten)]
    info: InstanceInfo,
    health: String,
    uptime_seconds: Option<i64>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GroupRow {
    group: String,
    /// `classic` or `consumer` (KIP-848).
    #[serde(rename = "type")]
    group_type: chat4all_ctl::kafka::GroupType,
    state: String,
    /// Members still moving to their target assignment (KIP-848).
    reconciling: usize,
    /// Partitions where a member's own report differs from the broker's assignment.
    disagreements: usize,
    members: usize,
    partitions: usize,
    /// Sum of the lag of partitions with a committed offset.
    total_lag: i64,
    /// Partitions with nothing committed yet.
    uncommitted: usize,
    /// Worst lag status of its partitions.
    status: LagStatus,
    max_lag_seconds: Option<f64>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Status {
    data_dir: String,
    /// `process` or `docker`, the engine (`supervisor pid 123`, `docker 20.10.24 (project p)`)
    /// and its endpoint (control URL or socket).
    runtime: EngineInfo,
    /// The supervisor's pid and control URL (process runtime; 0 and the socket on docker).
    supervisor_pid: u32,
    control_url: String,
    broker: String,
    broker_reachable: bool,
    broker_error: Option<String>,
    instances: Vec<InstanceRow>,
    groups: Vec<GroupRow>,
    /// The outbox relay (what Kafka lag cannot see: messages not yet on the topic).
    relay: Option<chat4all_contract::admin::relay::RelayState>,
    /// Outbox records the relay published per second over the last second or more (from the
    /// message-services' `chat4all_outbox_published_total`).
    outbox_published_per_second: Option<f64>,
    /// Per channel, the oldest delivery that is not final yet.
    freshness: Vec<chat4all_contract::admin::pipeline::ChannelFreshness>,
    /// The stage holding the oldest pending message, if anything stalls.
    stalls: Vec<chat4all_ctl::stalls::Stall>,
    #[serde(skip_serializing_if = "Option::is_none")]
    relay_error: Option<String>,
    /// Per channel: oldest pending age, provider deliveries per second and error rate (from the
    /// connectors' `chat4all_connector_deliveries_total`), DLQ depth.
    channels: Vec<chat4all_ctl::pipeline::ChannelRow>,
    /// Dead letters whose delivery is still FAILED (and the records on chat-events-dlq).
    dlq: Option<chat4all_ctl::dlq::Depth>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dlq_error: Option<String>,
}

/// The shortest window rates are measured over (a one-shot `status` waits for it).
const RATE_WINDOW: Duration = Duration::from_secs(1);

async fn instance_rows(rt: &dyn Runtime) -> anyhow::Result<Vec<InstanceRow>> {
    let list = rt.list().await?;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(1)).build()?;
    let checks = list.iter().map(|i| chat4all_ctl::health::probe(&http, i, Duration::from_secs(1)));
    let health = futures::future::join_all(checks).await;
    let now = chrono::Utc::now();
    Ok(list
        .into_iter()
        .zip(health)
        .map(|(info, health)| InstanceRow {
            uptime_seconds: info.started_at.filter(|_| info.state.is_alive()).map(|t| (now - t).num_seconds()),
            info,
            health,
        })
        .collect())
}

fn group_row(g: &GroupView) -> GroupRow {
    GroupRow {
        group: g.group.clone(),
        group_type: g.group_type,
        state: g.state.clone(),
        reconciling: g.reconciling,
        disagreements: g.disagreements.len(),
        members: g.members,
        partitions: g.partitions.len(),
        total_lag: g.total_lag,
        uncommitted: g.partitions.iter().filter(|p| p.offsets.committed.is_none()).count(),
        status: g.status,
        max_lag_seconds: g.max_lag_seconds,
    }
}

/// One row per group: its type, state, size and lag, then NOTES: members still reconciling and
/// partitions whose owner the reports dispute (`-` when neither).
fn group_table(groups: &[GroupRow]) -> String {
    let mut t = Table::new(&[
        "GROUP",
        "TYPE",
        "STATE",
        "MEMBERS",
        "PARTITIONS",
        "LAG",
        "LAG-SECONDS",
        "UNCOMMITTED",
        "STATUS",
        "NOTES",
    ]);
    for g in groups {
        let notes = notes(g.reconciling, g.disagreements);
        t.row(vec![
            g.group.clone(),
            g.group_type.to_string(),
            g.state.clone(),
            g.members.to_string(),
            g.partitions.to_string(),
            g.total_lag.to_string(),
            g.max_lag_seconds.map(|s| format!("{s:.1}")).unwrap_or_else(|| "-".into()),
            g.uncommitted.to_string(),
            g.status.to_string(),
            if notes.is_empty() { "-".into() } else { notes },
        ]);
    }
    t.render()
}

fn instance_table(rows: &[InstanceRow]) -> String {
    let containers = rows.iter().any(|r| r.info.container.is_some());
    let mut head = vec!["INSTANCE", "SERVICE", "STATE", "PID", "PORT", "HEALTH", "UPTIME", "LAST EXIT"];
    if containers {
        head.push("CONTAINER");
    }
    let mut t = Table::new(&head);
    for r in rows {
        t.row(
            [
                r.info.name.clone(),
                r.info.service.clone(),
                r.info.state.as_str().into(),
                r.info.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                r.info.port.to_string(),
                r.health.clone(),
                r.uptime_seconds.map(human_duration).unwrap_or_else(|| "-".into()),
                r.info.last_exit.clone().unwrap_or_else(|| "-".into()),
            ]
            .into_iter()
            .chain(containers.then(|| r.info.container.clone().unwrap_or_else(|| "-".into())))
            .collect(),
        );
    }
    t.render()
}

pub async fn status(cli: &Cli) -> anyhow::Result<()> {
    let data = cli.data();
    let rt = cli.runtime(cli.timeout).await?;
    let reader = super::groups::reader(cli).await?;
    let admin = cli.admin();
    let bootstrap = cli.stack().bootstrap;
    let mut v = StatusView {
        rt,
        reader,
        admin,
        data_dir: data.root().display().to_string(),
        http: reqwest::Client::builder().timeout(Duration::from_secs(1)).build()?,
        rates: chat4all_ctl::rates::RateTracker::default(),
        dlq: None,
        bootstrap,
        supervisor_pid: chat4all_ctl::stack::Stack::find(&data).supervisor.map(|s| s.pid).unwrap_or(0),
    };
    watch::show(cli, &mut v).await
}

struct StatusView {
    rt: Box<dyn Runtime>,
    reader: GroupReader,
    admin: anyhow::Result<chat4all_ctl::admin::Admin>,
    data_dir: String,
    http: reqwest::Client,
    rates: chat4all_ctl::rates::RateTracker,
    dlq: Option<chat4all_ctl::dlq::DlqReader>,
    bootstrap: String,
    supervisor_pid: u32,
}

impl Render for StatusView {
    async fn render(&mut self, format: Format) -> anyhow::Result<String> {
        let instances = instance_rows(self.rt.as_ref()).await?;
        let infos: Vec<chat4all_ctl::runtime::InstanceInfo> = instances.iter().map(|r| r.info.clone()).collect();
        if self.rates.age().is_none() {
            self.rates.record(chat4all_ctl::rates::scrape(&self.http, &infos).await);
        }
        let (groups, broker_error) = match self.reader.all().await {
            Ok(g) => (g.iter().map(group_row).collect(), None),
            Err(e) => (Vec::new(), Some(format!("{e:#}"))),
        };
        let (pipeline, relay_error) = match &self.admin {
            Ok(admin) => match admin.pipeline().await {
                Ok(p) => (Some(p), None),
                Err(e) => (None, Some(e.to_string())),
            },
            Err(e) => (None, Some(format!("{e:#}"))),
        };
        let (dlq, dlq_error) = match &self.admin {
            Ok(admin) => match chat4all_ctl::dlq::depth_now(admin, &mut self.dlq, &self.bootstrap).await {
                Ok(d) => (Some(d), None),
                Err(e) => (None, Some(format!("{e:#}"))),
            },
            Err(e) => (None, Some(format!("{e:#}"))),
        };
        if let Some(age) = self.rates.age().filter(|a| *a < RATE_WINDOW) {
            tokio::time::sleep(RATE_WINDOW - age).await;
        }
        let rates = self.rates.record(chat4all_ctl::rates::scrape(&self.http, &infos).await);
        let channels = pipeline
            .as_ref()
            .map(|p| chat4all_ctl::pipeline::channel_rows(p, rates.as_ref().map(|r| &r.channels), dlq.as_ref()))
            .unwrap_or_default();
        let router_lag = groups.iter().find(|g: &&GroupRow| g.group == "router-service").map(|g| g.total_lag);
        let down = services_down(&instances);
        let stalls = pipeline.as_ref().map(|p| chat4all_ctl::stalls::find(p, router_lag, &down)).unwrap_or_default();
        let (relay, freshness) = match pipeline {
            Some(p) => (Some(p.relay), p.channels),
            None => (None, Vec::new()),
        };
        let status = Status {
            outbox_published_per_second: rates.as_ref().map(|r| r.outbox_published_per_second),
            relay,
            freshness,
            stalls,
            relay_error,
            channels,
            dlq,
            dlq_error,
            data_dir: self.data_dir.clone(),
            supervisor_pid: self.supervisor_pid,
            control_url: self.rt.engine().endpoint,
            runtime: self.rt.engine(),
            broker: self.bootstrap.clone(),
            broker_reachable: broker_error.is_none(),
            broker_error,
            instances,
            groups,
        };
        if format == Format::Json {
            return Ok(output::json(&status));
        }
        let mut out = match status.runtime.runtime {
            RuntimeKind::Process => format!(
                "supervisor pid {}  control {}  data {}\n",
                status.supervisor_pid, status.control_url, status.data_dir
            ),
            RuntimeKind::Docker => format!(
                "runtime docker: {} at {}  data {}\n",
                status.runtime.engine, status.runtime.endpoint, status.data_dir
            ),
        };
        match &status.broker_error {
            None => out.push_str(&format!("broker {}  reachable\n", status.broker)),
            Some(e) => out.push_str(&format!("broker {}  UNREACHABLE: {e}\n", status.broker)),
        }
        match (&status.relay, &status.relay_error) {
            (Some(r), _) => {
                out.push_str(&super::relay::describe(r, status.outbox_published_per_second));
                let ages: Vec<String> = status
                    .freshness
                    .iter()
                    .map(|f| format!("{} {:.1}s", f.channel.label(), f.oldest_pending_seconds))
                    .collect();
                out.push_str(&format!("pending:  oldest per channel: {}\n", ages.join(", ")));
                out.push_str(&dlq_line(status.dlq.as_ref(), status.dlq_error.as_deref()));
                out.push_str(&chat4all_ctl::stalls::line(&status.stalls));
                out.push_str("\n\n");
                out.push_str(&chat4all_ctl::pipeline::table(&status.channels));
            }
            (None, Some(e)) => out.push_str(&format!("relay:    UNKNOWN: {e}\n")),
            (None, None) => {}
        }
        out.push('\n');
        out.push_str(&instance_table(&status.instances));
        out.push('\n');
        out.push_str(&group_table(&status.groups));
        Ok(out)
    }
}

/// `dlq:` and the dead letters whose delivery is still FAILED, per channel.
fn dlq_line(depth: Option<&chat4all_ctl::dlq::Depth>, error: Option<&str>) -> String {
    match (depth, error) {
        (Some(d), _) => {
            let per: Vec<String> = d.channels.iter().map(|(c, n)| format!("{c} {n}")).collect();
            format!(
                "dlq:      {} still FAILED ({}), {} records on chat-events-dlq\n",
                d.total,
                per.join(", "),
                d.letters
            )
        }
        (None, Some(e)) => format!("dlq:      UNKNOWN: {e}\n"),
        (None, None) => "dlq:      UNKNOWN\n".into(),
    }
}

/// Services none of whose instances is running and healthy.
fn services_down(rows: &[InstanceRow]) -> Vec<String> {
    let mut services: std::collections::BTreeMap<&str, bool> = std::collections::BTreeMap::new();
    for r in rows {
        let ok = r.info.state.as_str() == "running" && r.health == "up";
        *services.entry(r.info.service.as_str()).or_default() |= ok;
    }
    services.into_iter().filter(|(_, ok)| !ok).map(|(s, _)| s.to_string()).collect()
}

pub async fn instances(cli: &Cli) -> anyhow::Result<()> {
    let rt = cli.runtime(cli.timeout).await?;
    watch::show(cli, &mut InstancesView { rt }).await
}

struct InstancesView {
    rt: Box<dyn Runtime>,
}

impl Render for InstancesView {
    async fn render(&mut self, format: Format) -> anyhow::Result<String> {
        let rows = instance_rows(self.rt.as_ref()).await?;
        Ok(match format {
            Format::Json => output::json(&rows),
            Format::Table => instance_table(&rows),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat4all_ctl::exporter::bench::synthetic;
    use chat4all_ctl::kafka::GroupType;
    use chat4all_ctl::ownership::Disagreement;

    /// A KIP-848 group with two members reconciling and one partition disputed.
    fn kip848_group() -> GroupView {
        let mut g = synthetic(1, 2, 0).0.groups.remove(0);
        g.group_type = GroupType::Consumer;
        g.state = "Reconciling".into();
        (g.group_epoch, g.assignment_epoch, g.reconciling) = (Some(7), Some(7), 2);
        g.disagreements = vec![Disagreement {
            topic: "topic-0".into(),
            partition: 1,
            broker: Some("instance-1".into()),
            reported_by: vec!["instance-2".into()],
        }];
        g
    }

    #[test]
    fn the_group_table_shows_type_and_notes() {
        let classic = synthetic(1, 2, 0).0.groups.remove(0);
        let text = group_table(&[group_row(&classic), group_row(&kip848_group())]);
        let lines: Vec<&str> = text.lines().collect();
        let cells = |i: usize| lines[i].split_whitespace().collect::<Vec<_>>();
        assert_eq!(cells(0)[..3], ["GROUP", "TYPE", "STATE"]);
        assert_eq!(cells(0).last(), Some(&"NOTES"));
        assert_eq!(cells(1)[1..3], ["classic", "Stable"]);
        assert_eq!(cells(1).last(), Some(&"-"));
        assert_eq!(cells(2)[1..3], ["consumer", "Reconciling"]);
        assert!(lines[2].ends_with(" OK      2 reconciling, 1 disputed by reports"), "{text}");
    }

    #[test]
    fn json_rows_carry_type_reconciling_and_disagreements() {
        let v = serde_json::to_value(group_row(&kip848_group())).unwrap();
        assert_eq!((v["type"].as_str(), v["reconciling"].as_u64()), (Some("consumer"), Some(2)));
        assert_eq!(v["disagreements"], 1);
        let classic = serde_json::to_value(group_row(&synthetic(1, 1, 0).0.groups[0])).unwrap();
        assert_eq!(classic["type"], "classic");
        assert_eq!((classic["reconciling"].as_u64(), classic["disagreements"].as_u64()), (Some(0), Some(0)));
    }
}
