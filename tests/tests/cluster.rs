//! A three-broker Kafka cluster (`chat4allctl up --brokers 3`), brought up by this test on its
//! own ports, data directory, database and Redis database, and taken down at the end even when
//! the test fails:
//!
//! * `brokers` and `topics describe` say what Kafka's own `TopicCommand --describe` (run from the
//!   installed jars) says at the same moment: every partition's leader, replicas and ISR, and
//!   how many partitions each broker leads;
//! * `drill kill-broker` SIGKILLs the leader of `chat-events-0` under 1,000 msg/s: a new leader
//!   is elected, nothing accepted is lost or delivered twice (counted from the providers' records),
//!   and once the broker is back every ISR fills again;
//! * a dead broker shows as not alive, its partitions as under-replicated, like TopicCommand,
//!   and a real Prometheus over the exporter fires the under-replicated and broker-down alerts
//!   (rules from `alerts emit`) until it is back.
//!
//! It starts a whole stack, so scripts/test.sh runs it in its own phase (`--ignored`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use chat4all_tests::{ctl_run, wait_for, workspace_dir, Config, CtlRun};
use serde_json::Value;

#[path = "support/prometheus.rs"]
mod prometheus;
use prometheus::{Job, Prometheus};

/// Ports 9792.. (brokers), 8780.. (services), 7770 (control), 10008 (exporter).
const OFFSET: &str = "700";

/// The test's own stack: its environment, and `down` when dropped.
struct ClusterStack {
    cfg: Config,
    env: Vec<(&'static str, String)>,
}

impl ClusterStack {
    async fn up() -> Result<Self> {
        let home = workspace_dir().join("target").join("cluster-stack");
        let _ = std::fs::remove_dir_all(&home);
        let env = vec![
            ("CHAT4ALL_HOME", home.display().to_string()),
            ("CHAT4ALL_PORT_OFFSET", OFFSET.to_string()),
            ("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/chat4all_cluster_test".to_string()),
            ("REDIS_URL", "redis://127.0.0.1:6379/14".to_string()),
        ];
        let cfg = Config {
            api_url: String::new(),
            database_url: env[2].1.clone(),
            kafka_bootstrap: String::new(),
            ctl: std::env::var("CHAT4ALL_CTL")
                .map(PathBuf::from)
                .unwrap_or_else(|_| workspace_dir().join("target/debug/chat4allctl")),
            home,
        };
        let s = Self { cfg, env };
        let run = s.ctl(&["up", "--brokers", "3", "--detach"]).await?;
        ensure!(run.code == 0, "up --brokers 3 exited {}: {}{}", run.code, run.stdout, run.stderr);
        Ok(s)
    }

    async fn ctl(&self, args: &[&str]) -> Result<CtlRun> {
        let env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        ctl_run(&self.cfg, args, &env).await
    }

    async fn json(&self, args: &[&str]) -> Result<Value> {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        let run = self.ctl(&all).await?;
        ensure!(run.code == 0, "{args:?} exited {}: {}", run.code, run.stderr);
        serde_json::from_str(&run.stdout).with_context(|| format!("{args:?} printed {}", run.stdout))
    }

    /// The port of the exporter `up` serves (from the supervisor's file).
    fn exporter_port(&self) -> Result<u16> {
        let file = self.cfg.home.join("supervisor.json");
        let sup: Value = serde_json::from_str(&std::fs::read_to_string(&file)?)?;
        prometheus::port_of(sup["exporterUrl"].as_str().context("no exporterUrl in supervisor.json")?)
    }

    fn bootstrap(&self) -> String {
        let base: u16 = 9092 + OFFSET.parse::<u16>().unwrap_or(0);
        format!("127.0.0.1:{base}")
    }
}

impl Drop for ClusterStack {
    fn drop(&mut self) {
        let out = std::process::Command::new(&self.cfg.ctl)
            .arg("down")
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .output();
        if let Ok(o) = out {
            eprintln!("cluster stack down: {}", String::from_utf8_lossy(&o.stdout).trim());
        }
    }
}

/// (topic, partition) -> (leader, replicas, isr), from Kafka's own TopicCommand.
type Described = BTreeMap<(String, i32), (i32, Vec<i32>, Vec<i32>)>;

fn ids(s: &str) -> Vec<i32> {
    s.split(',').filter_map(|x| x.trim().parse().ok()).collect()
}

/// `TopicCommand --describe` of every topic, internal ones included.
async fn kafka_describe(bootstrap: &str) -> Result<Described> {
    let libs = chat4all_ctl::broker::locate_libs().context("Apache Kafka is not installed (scripts/bootstrap.sh)")?;
    let out = tokio::process::Command::new(chat4all_ctl::broker::java())
        .arg("-cp")
        .arg(chat4all_ctl::broker::classpath(&libs))
        .arg("org.apache.kafka.tools.TopicCommand")
        .args(["--bootstrap-server", bootstrap, "--describe"])
        .output()
        .await
        .context("running TopicCommand")?;
    ensure!(out.status.success(), "TopicCommand failed: {}", String::from_utf8_lossy(&out.stderr));
    let mut d = Described::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // "\tTopic: t\tPartition: 0\tLeader: 1\tReplicas: 1,2,3\tIsr: 1,2,3\tElr: ..."
        let fields: BTreeMap<&str, &str> =
            line.split('\t').filter_map(|f| f.split_once(": ")).map(|(k, v)| (k.trim(), v.trim())).collect();
        let (Some(t), Some(p), Some(l)) = (fields.get("Topic"), fields.get("Partition"), fields.get("Leader")) else {
            continue;
        };
        let leader = if *l == "none" { -1 } else { l.parse()? };
        let isr = fields.get("Isr").map(|s| ids(s)).unwrap_or_default();
        let replicas = fields.get("Replicas").map(|s| ids(s)).unwrap_or_default();
        d.insert((t.to_string(), p.parse()?), (leader, replicas, isr));
    }
    ensure!(!d.is_empty(), "TopicCommand described nothing");
    Ok(d)
}

/// Ours, in the same shape, from `topics describe -o json` (every partition but Kafka's
/// internal topics', which the `brokers` comparison covers).
fn ours(topics: &Value) -> Result<Described> {
    let mut d = Described::new();
    for p in topics["partitions"].as_array().context("partitions")? {
        let v = |k: &str| p[k].as_array().map(|a| a.iter().filter_map(|x| x.as_i64()).map(|x| x as i32).collect());
        let key = (p["topic"].as_str().context("topic")?.to_string(), p["partition"].as_i64().context("p")? as i32);
        d.insert(key, (p["leader"].as_i64().context("leader")? as i32, v("replicas").unwrap(), v("isr").unwrap()));
    }
    Ok(d)
}

fn sorted(mut v: Vec<i32>) -> Vec<i32> {
    v.sort_unstable();
    v
}

/// Our views and TopicCommand agree (read back to back; retried while the cluster moves).
async fn views_equal_kafkas(s: &ClusterStack) -> Result<()> {
    wait_for("brokers/topics views equal to TopicCommand --describe", Duration::from_secs(60), || async {
        let kafka = kafka_describe(&s.bootstrap()).await?;
        let topics = s.json(&["topics", "describe"]).await?;
        let brokers = s.json(&["brokers"]).await?;
        let mine = ours(&topics)?;
        let mut diffs = Vec::new();
        for (k, (leader, replicas, isr)) in &mine {
            match kafka.get(k) {
                None => diffs.push(format!("{k:?} unknown to TopicCommand")),
                Some((kl, kr, ki)) => {
                    if (leader, replicas, sorted(isr.clone())) != (kl, kr, sorted(ki.clone())) {
                        diffs.push(format!("{k:?}: ours {leader} {replicas:?} {isr:?}, Kafka {kl} {kr:?} {ki:?}"));
                    }
                }
            }
        }
        let non_internal = kafka.keys().filter(|(t, _)| !t.starts_with("__")).count();
        if non_internal != mine.len() {
            diffs.push(format!("{} partitions ours, {non_internal} TopicCommand's", mine.len()));
        }
        // Partitions led per broker, every topic (internal ones too).
        for b in brokers.as_array().context("brokers")? {
            let id = b["id"].as_i64().unwrap_or(-99) as i32;
            let led = kafka.values().filter(|(l, _, _)| *l == id).count() as u64;
            if b["leads"].as_u64() != Some(led) {
                diffs.push(format!("broker {id} leads {} per `brokers`, {led} per TopicCommand", b["leads"]));
            }
        }
        let seen = format!("{} partitions; {}", kafka.len(), diffs.join("; "));
        Ok((diffs.is_empty().then_some(()), seen))
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "starts its own three-broker stack; scripts/test.sh runs it in its own phase"]
async fn a_three_broker_cluster_survives_its_leader_and_shows_what_kafka_shows() -> Result<()> {
    let s = ClusterStack::up().await?;

    // Three live brokers, one active controller, every topic replicated three times.
    let brokers = s.json(&["brokers"]).await?;
    let list = brokers.as_array().context("brokers")?;
    ensure!(list.len() == 3 && list.iter().all(|b| b["alive"] == true), "three live brokers: {brokers}");
    ensure!(list.iter().filter(|b| b["controller"] == true).count() == 1, "one active controller: {brokers}");
    let topics = s.json(&["topics", "describe", "chat-events"]).await?;
    for p in topics["partitions"].as_array().context("partitions")? {
        ensure!(p["replicas"].as_array().map(Vec::len) == Some(3), "RF 3: {p}");
    }
    views_equal_kafkas(&s).await?;

    // The leader of chat-events-0 dies under 1,000 msg/s.
    let run = s.ctl(&["drill", "kill-broker", "--rate", "1000", "--down", "8s", "-o", "json"]).await?;
    let report: Value = serde_json::from_str(&run.stdout)
        .with_context(|| format!("kill-broker printed no report (exit {}): {}", run.code, run.stderr))?;
    ensure!(run.code == 0, "drill exited {}: {}", run.code, report["criteria"]);
    let c = &report["counts"];
    ensure!(c["lost"] == 0 && c["duplicateDeliveries"] == 0, "lost or duplicated: {c}");
    ensure!(report["drained"] == true, "not every delivery reached a final state");
    ensure!(report["traffic"]["failed"] == 0, "failed requests: {}", report["traffic"]);
    let rate = report["traffic"]["acceptedPerSec"].as_f64().unwrap_or(0.0);
    ensure!(rate >= 800.0, "only {rate:.0} msg/s accepted: not the load asked for");
    let k = &report["broker"]["leaderKill"];
    let victim = k["victimId"].as_i64().context("victim")?;
    ensure!(k["newLeader"].as_i64().is_some_and(|l| l != victim), "no new leader: {k}");
    ensure!(k["leaderElectionMs"].as_i64().is_some_and(|ms| ms < 30_000), "election: {k}");
    ensure!(k["underReplicatedPartitions"].as_u64().is_some_and(|n| n > 0), "nothing was under-replicated: {k}");
    ensure!(k["underReplicatedMs"].as_i64().is_some(), "the ISR never filled again: {k}");
    // The relay waits for every record of a round: while chat-events-0 has no leader (the
    // controller fences the dead one after 3 s) it publishes nothing, and the routers, which
    // route only what was published, route nothing either.
    let b = &report["broker"];
    for stall in ["producerStallMs", "consumerStallMs"] {
        ensure!(b[stall].as_i64().is_some_and(|ms| ms >= 1_000), "{stall} under a second with no leader: {b}");
    }
    eprintln!(
        "kill-broker: {} accepted at {rate:.0} msg/s, election {} ms, under-replicated {} ms, stalls: producer {} ms, consumer {} ms",
        report["traffic"]["accepted"], k["leaderElectionMs"], k["underReplicatedMs"], b["producerStallMs"], b["consumerStallMs"]
    );

    // A real Prometheus over the cluster's exporter, with the emitted rules at test durations:
    // the under-replicated and broker-down alerts fire while a broker is dead and resolve after
    // it returns.
    let prom = match prometheus::find()? {
        Some(bin) => {
            let rules = s.ctl(&["alerts", "emit", "--down-for", "3s", "--eval-interval", "1s"]).await?;
            ensure!(rules.code == 0, "alerts emit: {}", rules.stderr);
            let jobs = [Job { name: "chat4all-exporter".into(), targets: vec![(s.exporter_port()?, None)] }];
            let p = Prometheus::start(&bin, &rules.stdout, &jobs).await?;
            p.wait_for(&[UNDER_REPLICATED, BROKER_DOWN], &any, None, Duration::from_secs(30)).await?;
            Some(p)
        }
        None => None,
    };

    // A dead broker: not alive in `brokers`, out of every ISR in both views.
    let run = s.ctl(&["kill", "broker-3"]).await?;
    ensure!(run.code == 0, "kill broker-3: {}", run.stderr);
    wait_for("broker 3 shown dead", Duration::from_secs(30), || async {
        let b = s.json(&["brokers"]).await?;
        let dead = b.as_array().and_then(|l| l.iter().find(|x| x["id"] == 3)).map(|x| x["alive"] == false);
        Ok((dead.filter(|d| *d).map(|_| ()), b.to_string()))
    })
    .await?;
    views_equal_kafkas(&s).await?;
    let under = s.json(&["topics", "describe", "--under-replicated"]).await?;
    ensure!(under["partitions"].as_array().is_some_and(|p| !p.is_empty()), "nothing under-replicated: {under}");
    if let Some(p) = &prom {
        let fired = p.wait_for(&[UNDER_REPLICATED, BROKER_DOWN], &any, Some("firing"), Duration::from_secs(60)).await?;
        eprintln!("under-replicated and broker-down alerts firing {fired:?} after broker 3 was checked dead");
    }
    let run = s.ctl(&["start", "broker-3"]).await?;
    ensure!(run.code == 0, "start broker-3: {}", run.stderr);
    if let Some(p) = &prom {
        let resolved = p.wait_for(&[UNDER_REPLICATED, BROKER_DOWN], &any, None, Duration::from_secs(90)).await?;
        eprintln!("both resolved {resolved:?} after broker 3 started");
    }
    Ok(())
}

const UNDER_REPLICATED: &str = "Chat4allKafkaUnderReplicatedPartitions";
const BROKER_DOWN: &str = "Chat4allKafkaBrokerDown";

/// Any series of an alert.
fn any(_: &Value) -> bool {
    true
}

#[tokio::test]
async fn bad_broker_counts_exit_2() -> Result<()> {
    let cfg = Config::from_env();
    let home = workspace_dir().join("target").join("cluster-bad-input");
    let home = home.display().to_string();
    for n in ["2", "0", "5"] {
        let run = ctl_run(&cfg, &["up", "--brokers", n, "--detach"], &[("CHAT4ALL_HOME", home.as_str())]).await?;
        ensure!(run.code == 2, "--brokers {n} exited {}: {}", run.code, run.stderr);
        ensure!(run.stderr.contains("--brokers") && run.stderr.trim().lines().count() == 1, "{}", run.stderr);
    }
    Ok(())
}
