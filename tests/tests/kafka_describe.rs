//! `chat4allctl groups describe` against Kafka's own `kafka-consumer-groups` tool
//! (`org.apache.kafka.tools.consumer.group.ConsumerGroupCommand`, run from the installed jars):
//! the same rows and, column by column, the same values.
//!
//! - the stack's `router-service` group, at a moment without traffic (our describe before and
//!   after the tool's must agree, else the offsets moved and we look again);
//! - a KIP-848 group (`group.protocol=consumer`) of two rdkafka members on a topic of its own:
//!   type `consumer`, both members, epochs, an assignment that covers every partition once, and
//!   the tool's `--members --verbose` columns; one partition stays empty, so it is assigned with
//!   nothing committed (`-`), and once the members leave the committed partitions have no owner.
//!
//! Both tables are parsed by the column starts of their header line (both tools align their
//! columns), so an empty cell cannot shift the ones after it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use chat4all_tests::{ctl_run, unique, wait_for, Config, Stack};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::ClientConfig;
use serde_json::Value;

const KAFKA_VERSION: &str = "4.1.1";
/// The columns `kafka-consumer-groups --describe` prints, in its order.
const DESCRIBE_COLUMNS: [&str; 9] =
    ["GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG", "CONSUMER-ID", "HOST", "CLIENT-ID"];
/// The columns of `--members --verbose` both print (GROUP-INSTANCE-ID appears only when a member
/// has one, in both).
const MEMBER_COLUMNS: [&str; 9] = [
    "GROUP",
    "CONSUMER-ID",
    "HOST",
    "CLIENT-ID",
    "#PARTITIONS",
    "CURRENT-EPOCH",
    "CURRENT-ASSIGNMENT",
    "TARGET-EPOCH",
    "TARGET-ASSIGNMENT",
];

/// The installed Kafka jars: `CHAT4ALL_KAFKA_LIBS`, else `$CHAT4ALL_TOOLS/kafka-4.1.1/libs`, else
/// `~/.cache/chat4all/tools/kafka-4.1.1/libs` (where the bootstrap script installs them).
fn kafka_libs() -> Result<PathBuf> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    let dir = match (var("CHAT4ALL_KAFKA_LIBS"), var("CHAT4ALL_TOOLS"), var("HOME")) {
        (Some(libs), _, _) => PathBuf::from(libs),
        (None, Some(tools), _) => PathBuf::from(tools).join(format!("kafka-{KAFKA_VERSION}")).join("libs"),
        (None, None, Some(home)) => {
            PathBuf::from(home).join(".cache/chat4all/tools").join(format!("kafka-{KAFKA_VERSION}")).join("libs")
        }
        (None, None, None) => bail!("no CHAT4ALL_KAFKA_LIBS, CHAT4ALL_TOOLS or HOME to find the Kafka jars by"),
    };
    let tools_jar = dir.join(format!("kafka-tools-{KAFKA_VERSION}.jar"));
    ensure!(
        tools_jar.exists(),
        "Kafka's tools are not installed: {} is missing (run scripts/bootstrap.sh, or set CHAT4ALL_KAFKA_LIBS)",
        tools_jar.display()
    );
    Ok(dir)
}

fn java() -> PathBuf {
    match std::env::var("JAVA_HOME") {
        Ok(h) if !h.is_empty() => PathBuf::from(h).join("bin").join("java"),
        _ => PathBuf::from("java"),
    }
}

/// Runs Kafka's `kafka-consumer-groups` with `args`; its stdout.
async fn kafka_tool(bootstrap: &str, args: &[&str]) -> Result<String> {
    let libs = kafka_libs()?;
    let classpath = format!("{}/*", libs.display());
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new(java())
            .args(["-Xmx256m", "-XX:TieredStopAtLevel=1", "-cp", &classpath])
            .arg("org.apache.kafka.tools.consumer.group.ConsumerGroupCommand")
            .args(["--bootstrap-server", bootstrap])
            .args(args)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .context("kafka-consumer-groups did not finish within 120 s")?
    .context("running java (is a JRE 17+ installed?)")?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    ensure!(
        out.status.success(),
        "kafka-consumer-groups {} failed ({}):\n{stdout}\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(stdout)
}

/// Runs `chat4allctl ARGS` against `cfg`'s broker; its stdout.
async fn ours(cfg: &Config, args: &[&str]) -> Result<String> {
    let home = cfg.home.to_string_lossy().into_owned();
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--data-dir", &home]);
    let run = ctl_run(cfg, &all, &[("KAFKA_BOOTSTRAP", &cfg.kafka_bootstrap)]).await?;
    ensure!(run.code == 0, "chat4allctl {} exited {}:\n{}\n{}", args.join(" "), run.code, run.stdout, run.stderr);
    Ok(run.stdout)
}

/// An aligned table: the first line whose first cell is `GROUP` is the header; every following
/// line that starts with `group` is a row. Cells are cut at the header's column starts.
fn parse_table(text: &str, group: &str) -> Result<Vec<BTreeMap<String, String>>> {
    let mut lines = text.lines().skip_while(|l| !l.starts_with("GROUP "));
    let header = lines.next().with_context(|| format!("no GROUP header in:\n{text}"))?;
    let mut starts = Vec::new();
    let mut prev = ' ';
    for (i, c) in header.char_indices() {
        if c != ' ' && prev == ' ' {
            starts.push(i);
        }
        prev = c;
    }
    let names: Vec<String> = header.split_whitespace().map(str::to_string).collect();
    ensure!(names.len() == starts.len(), "a header name with a space in it: {header}");
    let mut rows = Vec::new();
    for line in lines.filter(|l| l.starts_with(&format!("{group} "))) {
        let mut row = BTreeMap::new();
        for (k, name) in names.iter().enumerate() {
            let from = starts[k].min(line.len());
            let to = starts.get(k + 1).copied().unwrap_or(line.len()).min(line.len());
            row.insert(name.clone(), line.get(from..to).unwrap_or_default().trim().to_string());
        }
        rows.push(row);
    }
    Ok(rows)
}

/// (topic, partition) -> the tool's columns after PARTITION, for the rows that name a
/// partition (our standby rows name none).
fn by_partition(rows: &[BTreeMap<String, String>]) -> BTreeMap<(String, String), Vec<String>> {
    rows.iter()
        .filter(|r| r.get("TOPIC").is_some_and(|t| t != "-"))
        .map(|r| {
            let cell = |c: &str| r.get(c).cloned().unwrap_or_default();
            ((cell("TOPIC"), cell("PARTITION")), DESCRIBE_COLUMNS[3..].iter().map(|c| cell(c)).collect())
        })
        .collect()
}

/// CONSUMER-ID -> the member columns both print.
fn by_member(rows: &[BTreeMap<String, String>]) -> BTreeMap<String, Vec<String>> {
    rows.iter()
        .map(|r| {
            let cell = |c: &str| r.get(c).cloned().unwrap_or_default();
            (cell("CONSUMER-ID"), MEMBER_COLUMNS.iter().map(|c| cell(c)).collect())
        })
        .collect()
}

/// One comparison of `describe` (or `--members --verbose`) between the tool and us, with ours
/// taken before and after the tool's so a moving group is noticed. Ok(None) when it moved.
async fn compare_once(cfg: &Config, group: &str, members: bool) -> Result<Option<(usize, String)>> {
    let (ctl_args, tool_args): (Vec<&str>, Vec<&str>) = if members {
        (vec!["groups", "describe", group, "--members"], vec!["--describe", "--group", group, "--members", "--verbose"])
    } else {
        (vec!["groups", "describe", group], vec!["--describe", "--group", group])
    };
    let key = |text: &str| -> Result<String> {
        let rows = parse_table(text, group)?;
        Ok(if members { format!("{:?}", by_member(&rows)) } else { format!("{:?}", by_partition(&rows)) })
    };
    let before = ours(cfg, &ctl_args).await?;
    let theirs = kafka_tool(&cfg.kafka_bootstrap, &tool_args).await?;
    let after = ours(cfg, &ctl_args).await?;
    let (before_k, theirs_k, after_k) = (key(&before)?, key(&theirs)?, key(&after)?);
    if before_k != after_k {
        return Ok(None);
    }
    let rows = parse_table(&theirs, group)?.len();
    if theirs_k != before_k {
        bail!("{group}: kafka-consumer-groups and chat4allctl differ.\nkafka-consumer-groups:\n{theirs}\nchat4allctl:\n{before}");
    }
    Ok(Some((rows, theirs)))
}

/// Compares until the group holds still for one round (at most `within`).
async fn compare(cfg: &Config, group: &str, members: bool, within: Duration) -> Result<(usize, String)> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = compare_once(cfg, group, members).await? {
            return Ok(v);
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("{group} never held still for one comparison within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[test]
fn tables_are_cut_at_the_header_columns() {
    let text = "\nGROUP  TOPIC  PARTITION  CLIENT-ID\ng      t      0          c1\ng      -      -\nother  t      1          x\n";
    let rows = parse_table(text, "g").unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["CLIENT-ID"], "c1");
    assert_eq!(rows[1]["CLIENT-ID"], "");
    assert_eq!(by_partition(&rows).len(), 1);
}

#[tokio::test]
async fn router_group_described_as_kafka_describes_it() -> Result<()> {
    let stack = Stack::connect().await?;
    let cfg = &stack.cfg;
    let (rows, table) = compare(cfg, "router-service", false, Duration::from_secs(90)).await?;
    ensure!(rows > 0, "kafka-consumer-groups listed no partition of router-service:\n{table}");
    let (members, table) = compare(cfg, "router-service", true, Duration::from_secs(90)).await?;
    ensure!(members > 0, "kafka-consumer-groups listed no member of router-service:\n{table}");
    Ok(())
}

/// Two KIP-848 members polling on their own threads until dropped.
struct Members {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Members {
    fn start(bootstrap: &str, group: &str, topic: &str, client_ids: &[&str]) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for id in client_ids {
            let consumer: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", bootstrap)
                .set("group.id", group)
                .set("group.protocol", "consumer")
                .set("client.id", *id)
                .set("auto.offset.reset", "earliest")
                .set("enable.auto.commit", "true")
                .set("auto.commit.interval.ms", "200")
                .create()
                .context("creating a KIP-848 consumer")?;
            consumer.subscribe(&[topic]).context("subscribing")?;
            let stop = stop.clone();
            threads.push(std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let _ = consumer.poll(Duration::from_millis(100));
                }
                consumer.unsubscribe();
            }));
        }
        Ok(Self { stop, threads })
    }
}

impl Drop for Members {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[tokio::test]
async fn a_kip848_group_is_described_with_type_members_epochs_and_assignment() -> Result<()> {
    let cfg = Config::from_env();
    let topic = unique("kafka-describe");
    let group = unique("kip848-group");
    const PARTITIONS: i32 = 4;
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", &cfg.kafka_bootstrap).create()?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let created = admin
        .create_topics(&[NewTopic::new(&topic, PARTITIONS, TopicReplication::Fixed(-1))], &opts)
        .await
        .with_context(|| format!("creating {topic} on {}", cfg.kafka_bootstrap))?;
    for r in created {
        r.map_err(|(t, e)| anyhow::anyhow!("creating {t}: {e}"))?;
    }
    let producer: ThreadedProducer<DefaultProducerContext> =
        ClientConfig::new().set("bootstrap.servers", &cfg.kafka_bootstrap).create()?;
    // Nothing goes to the last partition: assigned, but never committed on.
    const EMPTY: i32 = PARTITIONS - 1;
    for i in 0..20 {
        let key = format!("k{i}");
        producer
            .send(BaseRecord::to(&topic).key(&key).payload("x").partition(i % EMPTY))
            .map_err(|(e, _)| anyhow::anyhow!("producing: {e}"))?;
    }
    producer.flush(Duration::from_secs(10))?;

    let result = async {
        let group_members = Members::start(&cfg.kafka_bootstrap, &group, &topic, &["kip848-a", "kip848-b"])?;
        // Settled: both members, every partition owned once, nobody reconciling, all consumed.
        let desc = wait_for("the KIP-848 group settled", Duration::from_secs(60), || async {
            let out = ours(&cfg, &["groups", "describe", &group, "-o", "json"]).await?;
            let d: Value = serde_json::from_str(&out).context("describe -o json")?;
            let members = d["memberDetails"].as_array().cloned().unwrap_or_default();
            let owned: usize = members.iter().map(|m| m["assignment"].as_array().map_or(0, Vec::len)).sum();
            let reconciling = members.iter().any(|m| m["reconciling"] == true);
            let caught_up = d["partitions"].as_array().is_some_and(|ps| {
                ps.len() == PARTITIONS as usize
                    && ps.iter().all(|p| if p["partition"] == EMPTY { p["committed"].is_null() } else { p["lag"] == 0 })
            });
            let ok = d["state"] == "Stable"
                && members.len() == 2
                && owned == PARTITIONS as usize
                && !reconciling
                && caught_up;
            Ok((ok.then(|| d.clone()), out))
        })
        .await?;

        ensure!(desc["groupType"] == "consumer", "group type: {}", desc["groupType"]);
        let (group_epoch, assignment_epoch) = (desc["groupEpoch"].as_i64(), desc["assignmentEpoch"].as_i64());
        ensure!(group_epoch.is_some_and(|e| e >= 2), "group epoch {group_epoch:?} (two members joined)");
        ensure!(
            assignment_epoch == group_epoch,
            "assignment epoch {assignment_epoch:?} vs group epoch {group_epoch:?}"
        );
        let members = desc["memberDetails"].as_array().context("memberDetails")?;
        let mut clients: Vec<&str> = members.iter().filter_map(|m| m["clientId"].as_str()).collect();
        clients.sort();
        ensure!(clients == ["kip848-a", "kip848-b"], "client ids {clients:?}");
        let mut seen: Vec<(String, i64)> = Vec::new();
        for m in members {
            ensure!(m["memberEpoch"].as_i64() == assignment_epoch, "member epoch of {m}");
            ensure!(m["assignment"] == m["targetAssignment"], "assignment differs from target: {m}");
            ensure!(m["host"].as_str().is_some_and(|h| h.starts_with('/')), "host as Kafka prints it: {m}");
            for tp in m["assignment"].as_array().context("assignment")? {
                seen.push((tp[0].as_str().unwrap_or_default().to_string(), tp[1].as_i64().unwrap_or(-1)));
            }
        }
        seen.sort();
        let want: Vec<(String, i64)> = (0..PARTITIONS as i64).map(|p| (topic.clone(), p)).collect();
        ensure!(seen == want, "every partition assigned exactly once: {seen:?}");
        // The partitions' owners are the broker's assignees.
        for p in desc["partitions"].as_array().context("partitions")? {
            ensure!(p["owner"]["source"] == "broker", "owner of {p}");
            ensure!(p["consumerId"].is_string() && p["clientId"].is_string(), "consumer columns of {p}");
        }

        // And the tool agrees, row by row and member by member.
        let (rows, table) = compare(&cfg, &group, false, Duration::from_secs(60)).await?;
        ensure!(rows == PARTITIONS as usize, "kafka-consumer-groups rows:\n{table}");
        ensure!(
            table.lines().any(|l| l.contains(&topic) && l.split_whitespace().nth(3) == Some("-")),
            "no `-` offset for the empty partition:\n{table}"
        );
        let (members, table) = compare(&cfg, &group, true, Duration::from_secs(60)).await?;
        ensure!(members == 2, "kafka-consumer-groups members:\n{table}");
        drop(group_members);

        // Everyone left: the committed partitions remain, owned by nobody (`-`).
        wait_for("the KIP-848 group empty", Duration::from_secs(30), || async {
            let out = ours(&cfg, &["groups", "describe", &group, "-o", "json"]).await?;
            let d: Value = serde_json::from_str(&out).context("describe -o json")?;
            Ok(((d["state"] == "Empty").then_some(()), out))
        })
        .await?;
        let (rows, table) = compare(&cfg, &group, false, Duration::from_secs(60)).await?;
        ensure!(rows == EMPTY as usize, "rows of the empty group (the committed partitions):\n{table}");
        Ok(())
    }
    .await;

    let _ = admin.delete_topics(&[&topic], &opts).await;
    let _ = admin.delete_groups(&[&group], &opts).await;
    result
}
