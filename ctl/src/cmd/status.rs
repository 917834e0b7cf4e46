//! `status` and `instances`.

use std::time::Duration;

use serde::Serialize;

use super::Cli;
use chat4all_ctl::kafka::Observer;
use chat4all_ctl::output::{self, human_duration, Format, Table};
use chat4all_ctl::runtime::client::ProcessRuntime;
use chat4all_ctl::runtime::InstanceInfo;

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
    state: String,
    members: usize,
    partitions: usize,
    /// Sum of the lag of partitions with a committed offset.
    total_lag: i64,
    /// Partitions with nothing committed yet.
    uncommitted: usize,
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
    let checks = list.iter().map(|i| {
        let http = http.clone();
        async move {
            if !i.state.is_alive() {
                return "-".to_string();
            }
            if i.service == "broker" {
                let ok =
                    tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(("127.0.0.1", i.port)))
                        .await
                        .is_ok_and(|r| r.is_ok());
                return if ok { "up" } else { "down" }.to_string();
            }
            match http.get(format!("http://127.0.0.1:{}/health", i.port)).send().await {
                Ok(r) if r.status().is_success() => "up".into(),
                Ok(r) => {
                    let body: serde_json::Value = r.json().await.unwrap_or_default();
                    let down: Vec<String> = body["checks"]
                        .as_object()
                        .map(|m| m.iter().filter(|(_, v)| v["status"] != "up").map(|(k, _)| k.clone()).collect())
                        .unwrap_or_default();
                    format!("down ({})", down.join(","))
                }
                Err(_) => "unreachable".into(),
            }
        }
    });
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

fn group_rows(obs: &Observer) -> anyhow::Result<Vec<GroupRow>> {
    let mut rows = Vec::new();
    for g in obs.groups()? {
        let known = |t: &str| chat4all_ctl::kafka::known_topic(&g.group, t);
        let offsets = obs.group_offsets(&g.group, &known)?;
        rows.push(GroupRow {
            state: g.state.clone(),
            members: g.members.len(),
            partitions: offsets.len(),
            total_lag: offsets.iter().filter_map(|p| p.lag).sum(),
            uncommitted: offsets.iter().filter(|p| p.committed.is_none()).count(),
            group: g.group,
        });
    }
    Ok(rows)
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
    let instances = instance_rows(&rt).await?;
    let bootstrap = rt.info.kafka_bootstrap.clone();
    let timeout = cli.timeout;
    let groups = tokio::task::spawn_blocking(move || {
        let obs = Observer::new(&bootstrap, timeout)?;
        group_rows(&obs)
    })
    .await?;
    let (groups, broker_error) = match groups {
        Ok(g) => (g, None),
        Err(e) => (Vec::new(), Some(format!("{e:#}"))),
    };
    let status = Status {
        data_dir: data.root().display().to_string(),
        supervisor_pid: rt.info.pid,
        control_url: rt.info.control_url.clone(),
        broker: rt.info.kafka_bootstrap.clone(),
        broker_reachable: broker_error.is_none(),
        broker_error,
        instances,
        groups,
    };
    match cli.output {
        Format::Json => println!("{}", output::json(&status)),
        Format::Table => {
            println!(
                "supervisor pid {}  control {}  data {}",
                status.supervisor_pid, status.control_url, status.data_dir
            );
            match &status.broker_error {
                None => println!("broker {}  reachable", status.broker),
                Some(e) => println!("broker {}  UNREACHABLE: {e}", status.broker),
            }
            println!();
            print!("{}", instance_table(&status.instances));
            println!();
            let mut t = Table::new(&["GROUP", "STATE", "MEMBERS", "PARTITIONS", "LAG", "UNCOMMITTED"]);
            for g in &status.groups {
                t.row(vec![
                    g.group.clone(),
                    g.state.clone(),
                    g.members.to_string(),
                    g.partitions.to_string(),
                    g.total_lag.to_string(),
                    g.uncommitted.to_string(),
                ]);
            }
            print!("{}", t.render());
        }
    }
    Ok(())
}

pub async fn instances(cli: &Cli) -> anyhow::Result<()> {
    let rt = ProcessRuntime::connect(&cli.data(), cli.timeout)?;
    let rows = instance_rows(&rt).await?;
    match cli.output {
        Format::Json => println!("{}", output::json(&rows)),
        Format::Table => print!("{}", instance_table(&rows)),
    }
    Ok(())
}
