//! The exporter's figures against an independent client: with the routers stopped (so committed
//! offsets stand still) and a backlog sent, `kafka_consumergroup_lag`,
//! `kafka_consumergroup_current_offset` and `kafka_topic_partition_current_offset` served by the
//! stack's exporter equal what rdkafka computes here from the group's committed offsets and the
//! partitions' high watermarks.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use chat4all_tests::{unique, MessageBuilder, Stack, WHATSAPP};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientConfig;

#[path = "support/routers.rs"]
mod support;
use support::{restore_routers, running, set_routers, GROUP};

const TOPIC: &str = "chat-events";
const DLQ: &str = "chat-events-dlq";

/// The high watermark of the dead-letter topic's partition 0, read here.
fn dlq_log_end(bootstrap: &str) -> Result<i64> {
    let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", bootstrap).create()?;
    Ok(consumer.fetch_watermarks(DLQ, 0, Duration::from_secs(10))?.1)
}

/// Per partition: (committed, log end, lag).
type Figures = BTreeMap<i32, (i64, i64, i64)>;

/// Committed offsets and high watermarks of GROUP on TOPIC, read here with rdkafka.
fn independent(bootstrap: &str) -> Result<Figures> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", GROUP)
        .set("enable.auto.commit", "false")
        .create()
        .context("creating the independent client")?;
    let timeout = Duration::from_secs(10);
    let md = consumer.fetch_metadata(Some(TOPIC), timeout)?;
    let partitions = md.topics().first().map(|t| t.partitions().len()).unwrap_or(0);
    if partitions == 0 {
        bail!("{TOPIC} has no partitions");
    }
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions as i32 {
        tpl.add_partition(TOPIC, p);
    }
    let committed = consumer.committed_offsets(tpl, timeout)?;
    let mut out = Figures::new();
    for e in committed.elements() {
        let Offset::Offset(c) = e.offset() else { continue };
        let (_, high) = consumer.fetch_watermarks(TOPIC, e.partition(), timeout)?;
        out.insert(e.partition(), (c, high, high - c));
    }
    Ok(out)
}

/// The value of `name{labels...}` lines of an exposition, keyed by partition.
fn exported(text: &str, name: &str, group: Option<&str>) -> BTreeMap<i32, i64> {
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with(&format!("{name}{{"))) {
        let Some((labels, value)) = line.rsplit_once(' ') else { continue };
        let has = |k: &str, v: &str| labels.contains(&format!("{k}=\"{v}\""));
        if !has("topic", TOPIC) || group.is_some_and(|g| !has("consumergroup", g)) {
            continue;
        }
        let partition =
            labels.split("partition=\"").nth(1).and_then(|r| r.split('"').next()).and_then(|p| p.parse().ok());
        if let (Some(p), Ok(v)) = (partition, value.parse::<f64>()) {
            out.insert(p, v as i64);
        }
    }
    out
}

#[tokio::test]
async fn exporter_lag_equals_an_independent_clients_computation() -> Result<()> {
    let stack = Stack::connect().await?;
    let url = stack.exporter_url()?;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build()?;

    // A committed offset first, so that lag is defined.
    let conversation = unique("exporter-conv");
    stack.api.send(&MessageBuilder::new(&conversation).to(&unique("user"), WHATSAPP).build()).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let b = stack.cfg.kafka_bootstrap.clone();
        let now = tokio::task::spawn_blocking(move || independent(&b)).await??;
        if !now.is_empty() && now.values().all(|f| f.2 == 0) {
            break;
        }
        if Instant::now() > deadline {
            bail!("{GROUP} never caught up before the test: {now:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let before = rebalances(&http, &url).await?;
    let names = running(&stack).await?;
    set_routers(&stack, "stop", &names).await?;
    let outcome = async {
        for i in 0..25 {
            let body =
                MessageBuilder::new(&conversation).text(format!("backlog {i}")).to(&unique("user"), WHATSAPP).build();
            stack.api.send(&body).await?;
        }
        // The outbox relay publishes within a moment; wait until the independent view is still.
        let bootstrap = stack.cfg.kafka_bootstrap.clone();
        let mut mine = Figures::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let b = bootstrap.clone();
            let now = tokio::task::spawn_blocking(move || independent(&b)).await??;
            if now == mine && now.values().map(|f| f.2).sum::<i64>() >= 25 {
                break;
            }
            mine = now;
            if Instant::now() > deadline {
                bail!("the backlog never settled: {mine:?}");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        // The exporter samples every 2 s: wait for a sample taken after the offsets settled.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = http.get(&url).send().await?.error_for_status()?.text().await?;
            let lag = exported(&text, "kafka_consumergroup_lag", Some(GROUP));
            let committed = exported(&text, "kafka_consumergroup_current_offset", Some(GROUP));
            let log_end = exported(&text, "kafka_topic_partition_current_offset", None);
            let theirs: Figures =
                lag.iter().filter_map(|(p, l)| Some((*p, (*committed.get(p)?, *log_end.get(p)?, *l)))).collect();
            if theirs == mine {
                eprintln!("exporter and independent client agree: {mine:?}");
                // A topic no group reads has its log-end offset exported too.
                let b = bootstrap.clone();
                let dlq = tokio::task::spawn_blocking(move || dlq_log_end(&b)).await??;
                let line = format!("kafka_topic_partition_current_offset{{topic=\"{DLQ}\",partition=\"0\"}} {dlq}");
                if !text.lines().any(|l| l == line) {
                    bail!("the exporter does not serve `{line}`:\n{text}");
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("exporter {theirs:?} (partition: committed, log end, lag) != independent client {mine:?}");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    .await;
    let restore = restore_routers(&stack, &names).await;
    outcome?;
    restore?;
    // Each router reported leaving (and its return): the rebalance counter moved by at least that.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let after = rebalances(&http, &url).await?;
        if after >= before + names.len() as u64 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("chat4all_consumergroup_rebalances_total for {GROUP} went from {before} to {after} only");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn rebalances(http: &reqwest::Client, url: &str) -> Result<u64> {
    let text = http.get(url).send().await?.error_for_status()?.text().await?;
    let prefix = format!("chat4all_consumergroup_rebalances_total{{consumergroup=\"{GROUP}\"}} ");
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or(0))
}
