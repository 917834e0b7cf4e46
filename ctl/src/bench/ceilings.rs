//! The ceilings the pipeline runs under, measured beside it on the same machine (`bench
//! --ceilings`): Kafka's own producer (`org.apache.kafka.tools.ProducerPerformance` from the
//! installed jars) for our record size and producer settings, and PostgreSQL's rate for the
//! platform's accept and routing statements alone (`chat4all-server db-ceiling`, which runs the
//! services' own statements on a scratch database). The report gives our throughput as a share
//! of each.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;
use serde::{Deserialize, Serialize};

/// The scratch topic the producer ceiling writes to (created and deleted by the measurement).
pub const TOPIC: &str = "bench-ceiling";

/// Our producer's settings (server/src/kafka/producer.rs), as ProducerPerformance takes them.
pub const PRODUCER_PROPS: [&str; 4] = ["acks=all", "enable.idempotence=true", "linger.ms=1", "compression.type=none"];

/// Kafka's producer alone.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProducerCeiling {
    pub records: u64,
    pub record_bytes: usize,
    pub partitions: i32,
    pub records_per_second: f64,
    pub mb_per_second: f64,
    pub p99_ms: f64,
    pub settings: String,
}

/// PostgreSQL alone, for the platform's own statements (`chat4all-server db-ceiling`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseCeiling {
    pub messages: u64,
    pub accept_batch: u64,
    pub route_batch: u64,
    pub accept_per_second: f64,
    pub route_per_second: f64,
    pub event_bytes: usize,
}

/// Both ceilings and our throughput as a share of each (a ceiling that could not be measured is
/// absent, with the reason in `errors`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Ceilings {
    pub producer: Option<ProducerCeiling>,
    pub database: Option<DatabaseCeiling>,
    /// Kafka records the pipeline writes per message: the chat event and one hand-off per
    /// channel of its recipients (receipts are batched and left out).
    pub records_per_message: u32,
    /// accepted msg/s × records per message ÷ the producer's records/s.
    pub share_of_producer: Option<f64>,
    /// accepted msg/s ÷ PostgreSQL's accept rate, and ÷ its routing rate.
    pub share_of_accept: Option<f64>,
    pub share_of_routing: Option<f64>,
    pub errors: Vec<String>,
}

impl Ceilings {
    pub fn with_shares(mut self, accepted_per_second: f64) -> Self {
        let share = |ours: f64, ceiling: f64| (ceiling > 0.0).then(|| ours / ceiling);
        self.share_of_producer = self
            .producer
            .as_ref()
            .and_then(|p| share(accepted_per_second * f64::from(self.records_per_message), p.records_per_second));
        self.share_of_accept = self.database.as_ref().and_then(|d| share(accepted_per_second, d.accept_per_second));
        self.share_of_routing = self.database.as_ref().and_then(|d| share(accepted_per_second, d.route_per_second));
        self
    }
}

/// Runs `chat4all-server db-ceiling` against the stack's database (it works on a scratch copy
/// of the schema, `<name>_ceiling`) and reads its JSON.
pub async fn database(
    server_bin: &Path,
    database_url: &str,
    messages: u64,
    recipients: usize,
) -> anyhow::Result<DatabaseCeiling> {
    let out = tokio::process::Command::new(server_bin)
        .arg("db-ceiling")
        .args(["--messages", &messages.to_string(), "--recipients", &recipients.to_string()])
        .env("DATABASE_URL", database_url)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .with_context(|| format!("running {} db-ceiling", server_bin.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        bail!("db-ceiling exited {}: {}", out.status, stderr.lines().last().unwrap_or_default());
    }
    let line = stdout.lines().rev().find(|l| l.starts_with('{')).unwrap_or_default();
    serde_json::from_str(line).with_context(|| format!("reading db-ceiling's answer {line:?}"))
}

/// Runs Kafka's ProducerPerformance with our settings on a scratch topic of `partitions`.
pub async fn producer(
    bootstrap: &str,
    partitions: i32,
    record_bytes: usize,
    records: u64,
) -> anyhow::Result<ProducerCeiling> {
    let libs: PathBuf = crate::broker::locate_libs()
        .ok_or_else(|| anyhow::anyhow!("Kafka's jars are not installed (scripts/bootstrap.sh installs them)"))?;
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", bootstrap).set("log_level", "3").create()?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    // A topic left by an interrupted run would hold its records: start from an empty one.
    let _ = admin.delete_topics(&[TOPIC], &opts).await;
    let mut created = false;
    for _ in 0..20 {
        match admin.create_topics([&NewTopic::new(TOPIC, partitions, TopicReplication::Fixed(-1))], &opts).await?.pop()
        {
            Some(Ok(_)) => {
                created = true;
                break;
            }
            // Still being deleted.
            Some(Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists))) => {
                tokio::time::sleep(Duration::from_millis(250)).await
            }
            Some(Err((t, e))) => bail!("creating {t}: {e}"),
            None => bail!("creating {TOPIC}: no answer"),
        }
    }
    if !created {
        bail!("{TOPIC} from an earlier run is still being deleted");
    }
    let mut props = vec![format!("bootstrap.servers={bootstrap}")];
    props.extend(PRODUCER_PROPS.iter().map(|p| p.to_string()));
    let out = tokio::process::Command::new(crate::broker::java())
        .args(["-Xmx256m", "-cp", &crate::broker::classpath(&libs), "org.apache.kafka.tools.ProducerPerformance"])
        .args(["--topic", TOPIC, "--num-records", &records.to_string(), "--record-size", &record_bytes.to_string()])
        .args(["--throughput", "-1", "--producer-props"])
        .args(&props)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .context("running ProducerPerformance (is a Java 17+ runtime installed?)");
    let _ = admin.delete_topics(&[TOPIC], &opts).await;
    let out = out?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "ProducerPerformance exited {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or_default()
        );
    }
    let summary = parse_summary(&stdout)
        .ok_or_else(|| anyhow::anyhow!("no summary line in ProducerPerformance's output:\n{stdout}"))?;
    Ok(ProducerCeiling {
        records,
        record_bytes,
        partitions,
        records_per_second: summary.records_per_second,
        mb_per_second: summary.mb_per_second,
        p99_ms: summary.p99_ms,
        settings: PRODUCER_PROPS.join(" "),
    })
}

/// The figures of ProducerPerformance's final line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub records_per_second: f64,
    pub mb_per_second: f64,
    pub p99_ms: f64,
}

/// Reads the final line, e.g. `200000 records sent, 98765.4 records/sec (46.27 MB/sec), 12.30 ms
/// avg latency, 345.00 ms max latency, 10 ms 50th, 30 ms 95th, 40 ms 99th, 50 ms 99.9th.`
pub fn parse_summary(out: &str) -> Option<Summary> {
    let line = out.lines().rev().find(|l| l.contains("records sent") && l.contains("99th"))?;
    let before = |marker: &str| -> Option<f64> {
        let head = &line[..line.find(marker)?];
        head.rsplit([' ', '(']).find(|w| !w.is_empty())?.parse().ok()
    };
    Some(Summary {
        records_per_second: before(" records/sec")?,
        mb_per_second: before(" MB/sec")?,
        p99_ms: before(" ms 99th")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_final_summary_line() {
        let out = "\
499981 records sent, 99976.2 records/sec (46.62 MB/sec), 3.1 ms avg latency, 120.0 ms max latency.
1000000 records sent, 101214.574899 records/sec (47.20 MB/sec), 2.95 ms avg latency, 150.00 ms max latency, 2 ms 50th, 7 ms 95th, 12 ms 99th, 60 ms 99.9th.
";
        let s = parse_summary(out).expect("a summary");
        assert_eq!(s, Summary { records_per_second: 101214.574899, mb_per_second: 47.20, p99_ms: 12.0 });
        assert_eq!(parse_summary("499981 records sent, 99976.2 records/sec (46.62 MB/sec)"), None);
    }

    #[test]
    fn shares_are_ours_over_each_ceiling() {
        let c = Ceilings {
            producer: Some(ProducerCeiling {
                records: 1,
                record_bytes: 500,
                partitions: 1,
                records_per_second: 60_000.0,
                mb_per_second: 1.0,
                p99_ms: 1.0,
                settings: String::new(),
            }),
            database: Some(DatabaseCeiling {
                messages: 1,
                accept_batch: 64,
                route_batch: 500,
                accept_per_second: 8_000.0,
                route_per_second: 4_000.0,
                event_bytes: 500,
            }),
            records_per_message: 3,
            ..Default::default()
        }
        .with_shares(2_000.0);
        assert_eq!(c.share_of_producer, Some(0.1));
        assert_eq!(c.share_of_accept, Some(0.25));
        assert_eq!(c.share_of_routing, Some(0.5));
        assert_eq!(Ceilings::default().with_shares(1.0).share_of_producer, None);
    }
}
