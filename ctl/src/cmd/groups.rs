//! `groups list`, `groups describe GROUP` and `events`.

use clap::{Args, Subcommand};
use serde::Serialize;

use super::Cli;
use chat4all_ctl::error::usage;
use chat4all_ctl::kafka::{Observer, PartitionOffsets};
use chat4all_ctl::output::{self, Format, Table};
use chat4all_ctl::ownership::{self, Owner};
use chat4all_ctl::runtime::client::ProcessRuntime;

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

fn bootstrap(cli: &Cli) -> String {
    if let Ok(b) = std::env::var("KAFKA_BOOTSTRAP") {
        if !b.is_empty() {
            return b;
        }
    }
    ProcessRuntime::connect(&cli.data(), cli.timeout)
        .map(|rt| rt.info.kafka_bootstrap)
        .unwrap_or_else(|_| "127.0.0.1:9092".into())
}

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PartitionRow {
    group: String,
    #[serde(flatten)]
    offsets: PartitionOffsets,
    consumer_id: Option<String>,
    host: Option<String>,
    client_id: Option<String>,
    owner: Option<Owner>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Description {
    group: String,
    state: String,
    protocol: String,
    members: usize,
    partitions: Vec<PartitionRow>,
    standby: Vec<String>,
    stale_reports: Vec<String>,
}

pub async fn groups(cli: &Cli, cmd: &GroupsCommand) -> anyhow::Result<()> {
    let bootstrap = bootstrap(cli);
    let timeout = cli.timeout;
    match cmd {
        GroupsCommand::List => {
            let groups = tokio::task::spawn_blocking(move || Observer::new(&bootstrap, timeout)?.groups()).await??;
            match cli.output {
                Format::Json => println!("{}", output::json(&groups)),
                Format::Table => {
                    let mut t = Table::new(&["GROUP", "STATE", "PROTOCOL", "MEMBERS"]);
                    for g in groups {
                        t.row(vec![g.group, g.state, g.protocol, g.members.len().to_string()]);
                    }
                    print!("{}", t.render());
                }
            }
            Ok(())
        }
        GroupsCommand::Describe(args) => describe(cli, &args.group, bootstrap).await,
    }
}

async fn describe(cli: &Cli, group: &str, bootstrap: String) -> anyhow::Result<()> {
    let timeout = cli.timeout;
    let name = group.to_string();
    let (info, offsets) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let obs = Observer::new(&bootstrap, timeout)?;
        let info = obs.group(&name)?.ok_or_else(|| usage(format!("unknown consumer group {name:?}")))?;
        let known = |t: &str| chat4all_ctl::kafka::known_topic(&name, t);
        let offsets = obs.group_offsets(&name, &known)?;
        Ok((info, offsets))
    })
    .await??;
    let reports = match ownership::redis(&redis_url()).await {
        Ok(mut conn) => ownership::reports(&mut conn, group).await.unwrap_or_default(),
        Err(e) => {
            eprintln!("chat4allctl: warning: no instance reports ({e:#}); ownership from the broker only");
            Vec::new()
        }
    };
    let own = ownership::reconcile(&info, &reports);
    let partitions: Vec<PartitionRow> = offsets
        .into_iter()
        .map(|o| {
            let owner = own.owners.get(&(o.topic.clone(), o.partition)).cloned();
            let member = owner.as_ref().and_then(|ow| info.members.iter().find(|m| m.member_id == ow.member_id));
            PartitionRow {
                group: group.to_string(),
                consumer_id: owner.as_ref().map(|o| o.member_id.clone()),
                host: member.map(|m| m.host.clone()).filter(|h| !h.is_empty()),
                client_id: member.map(|m| m.client_id.clone()).filter(|c| !c.is_empty()),
                owner,
                offsets: o,
            }
        })
        .collect();
    let desc = Description {
        group: group.into(),
        state: info.state.clone(),
        protocol: info.protocol.clone(),
        members: info.members.len(),
        partitions,
        standby: own.standby,
        stale_reports: own.stale,
    };
    match cli.output {
        Format::Json => println!("{}", output::json(&desc)),
        Format::Table => {
            let dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
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
            ]);
            for p in &desc.partitions {
                t.row(vec![
                    p.group.clone(),
                    p.offsets.topic.clone(),
                    p.offsets.partition.to_string(),
                    dash(p.offsets.committed.map(|c| c.to_string())),
                    p.offsets.log_end.to_string(),
                    dash(p.offsets.lag.map(|l| l.to_string())),
                    dash(p.consumer_id.clone()),
                    dash(p.host.clone()),
                    dash(p.client_id.clone()),
                    dash(p.owner.as_ref().map(|o| o.instance.clone())),
                ]);
            }
            for s in &desc.standby {
                t.row(vec![
                    group.into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    format!("{s} (standby)"),
                ]);
            }
            println!("group {} state {} members {}", desc.group, desc.state, desc.members);
            print!("{}", t.render());
        }
    }
    Ok(())
}

pub async fn events(cli: &Cli, args: &EventsArgs) -> anyhow::Result<()> {
    let mut conn = ownership::redis(&redis_url()).await?;
    let events = ownership::timeline(&mut conn, args.limit).await?;
    let actions = match ProcessRuntime::connect(&cli.data(), cli.timeout) {
        Ok(rt) => rt.actions().await.unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Row<'a> {
        #[serde(flatten)]
        event: &'a chat4all_server::events::RebalanceEvent,
        cause: Option<String>,
    }
    // The cause of a rebalance: the newest operator action on the same service in the 60 s before it.
    let service_of = |instance: &str| -> String {
        match instance.rsplit_once('-') {
            Some((s, n)) if n.chars().all(|c| c.is_ascii_digit()) => s.to_string(),
            _ => instance.to_string(),
        }
    };
    let rows: Vec<Row<'_>> = events
        .iter()
        .map(|e| {
            let service = service_of(&e.instance);
            let cause = actions
                .iter()
                .filter(|a| a.at <= e.at && (e.at - a.at).num_seconds() <= 60)
                .filter(|a| service_of(&a.target) == service)
                .max_by_key(|a| a.at)
                .map(|a| format!("{} {}", a.action, a.target));
            Row { event: e, cause }
        })
        .collect();
    match cli.output {
        Format::Json => println!("{}", output::json(&rows)),
        Format::Table => {
            let mut t = Table::new(&["TIME", "GROUP", "INSTANCE", "KIND", "PARTITIONS", "ASSIGNMENT", "CAUSE"]);
            let fmt = |v: &[chat4all_server::events::TopicPartition]| {
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
            print!("{}", t.render());
        }
    }
    Ok(())
}
