//! `status` and `instances`.

use std::time::Duration;

use serde::Serialize;

use super::watch::{self, Render};
use super::Cli;
use chat4all_ctl::lag::LagStatus;
use chat4all_ctl::output::{self, human_duration, Format, Table};
use chat4all_ctl::runtime::client::ProcessRuntime;
use chat4all_ctl::runtime::InstanceInfo;
use chat4all_ctl::view::{GroupReader, GroupView};

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
    supervisor_pid: u32,
    control_url: String,
    broker: String,
    broker_reachable: bool,
    broker_error: Option<String>,
    instances: Vec<InstanceRow>,
    groups: Vec<GroupRow>,
}

async fn instance_rows(rt: &ProcessRuntime) -> anyhow::Result<Vec<InstanceRow>> {
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

fn instance_table(rows: &[InstanceRow]) -> String {
    let mut t = Table::new(&["INSTANCE", "SERVICE", "STATE", "PID", "PORT", "HEALTH", "UPTIME", "LAST EXIT"]);
    for r in rows {
        t.row(vec![
            r.info.name.clone(),
            r.info.service.clone(),
            r.info.state.as_str().into(),
            r.info.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
            r.info.port.to_string(),
            r.health.clone(),
            r.uptime_seconds.map(human_duration).unwrap_or_else(|| "-".into()),
            r.info.last_exit.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    t.render()
}

pub async fn status(cli: &Cli) -> anyhow::Result<()> {
    let data = cli.data();
    let rt = ProcessRuntime::connect(&data, cli.timeout)?;
    let reader = super::groups::reader(cli).await?;
    let mut v = StatusView { rt, reader, data_dir: data.root().display().to_string() };
    watch::show(cli, &mut v).await
}

struct StatusView {
    rt: ProcessRuntime,
    reader: GroupReader,
    data_dir: String,
}

impl Render for StatusView {
    async fn render(&mut self, format: Format) -> anyhow::Result<String> {
        let instances = instance_rows(&self.rt).await?;
        let (groups, broker_error) = match self.reader.all().await {
            Ok(g) => (g.iter().map(group_row).collect(), None),
            Err(e) => (Vec::new(), Some(format!("{e:#}"))),
        };
        let status = Status {
            data_dir: self.data_dir.clone(),
            supervisor_pid: self.rt.info.pid,
            control_url: self.rt.info.control_url.clone(),
            broker: self.rt.info.kafka_bootstrap.clone(),
            broker_reachable: broker_error.is_none(),
            broker_error,
            instances,
            groups,
        };
        if format == Format::Json {
            return Ok(output::json(&status));
        }
        let mut out = format!(
            "supervisor pid {}  control {}  data {}\n",
            status.supervisor_pid, status.control_url, status.data_dir
        );
        match &status.broker_error {
            None => out.push_str(&format!("broker {}  reachable\n", status.broker)),
            Some(e) => out.push_str(&format!("broker {}  UNREACHABLE: {e}\n", status.broker)),
        }
        out.push('\n');
        out.push_str(&instance_table(&status.instances));
        out.push('\n');
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
        for g in &status.groups {
            let mut notes = Vec::new();
            if g.reconciling > 0 {
                notes.push(format!("{} reconciling", g.reconciling));
            }
            if g.disagreements > 0 {
                notes.push(format!("{} disputed by reports", g.disagreements));
            }
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
                if notes.is_empty() { "-".into() } else { notes.join(", ") },
            ]);
        }
        out.push_str(&t.render());
        Ok(out)
    }
}

pub async fn instances(cli: &Cli) -> anyhow::Result<()> {
    let rt = ProcessRuntime::connect(&cli.data(), cli.timeout)?;
    watch::show(cli, &mut InstancesView { rt }).await
}

struct InstancesView {
    rt: ProcessRuntime,
}

impl Render for InstancesView {
    async fn render(&mut self, format: Format) -> anyhow::Result<String> {
        let rows = instance_rows(&self.rt).await?;
        Ok(match format {
            Format::Json => output::json(&rows),
            Format::Table => instance_table(&rows),
        })
    }
}
