//! The embedded broker: Apache Kafka in KRaft combined mode (broker and controller in one JVM),
//! installed from Maven Central by `scripts/bootstrap.sh` into
//! `$CHAT4ALL_TOOLS/kafka-<version>/libs`. This module finds the installation, writes the node's
//! configuration (every setting with the reason it is there), formats its storage once, and says
//! how to launch it. Nothing here talks to a running broker.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// The version the set-up path installs (scripts/kafka/pom.xml).
pub const KAFKA_VERSION: &str = "4.1.1";

/// Heap of the broker JVM. The whole stack shares 2 cores and the broker's working set at
/// 2,000 msg/s is far below this; a fixed heap (`-Xms` = `-Xmx`) avoids resize pauses.
const HEAP: &str = "512m";

/// Where `scripts/bootstrap.sh` installs tools: `$CHAT4ALL_TOOLS` or `~/.cache/chat4all/tools`.
pub fn tools_root() -> PathBuf {
    if let Ok(p) = std::env::var("CHAT4ALL_TOOLS") {
        return PathBuf::from(p);
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    PathBuf::from(home).join(".cache/chat4all/tools")
}

/// The directory of Kafka's jars: `$CHAT4ALL_KAFKA_LIBS`, else the tools cache. None when it
/// holds no Kafka broker jar (not installed, or an interrupted install).
pub fn locate_libs() -> Option<PathBuf> {
    let dir = match std::env::var("CHAT4ALL_KAFKA_LIBS") {
        Ok(p) if !p.is_empty() => PathBuf::from(p),
        _ => tools_root().join(format!("kafka-{KAFKA_VERSION}/libs")),
    };
    let has_broker = std::fs::read_dir(&dir)
        .ok()?
        .filter_map(Result::ok)
        .any(|e| e.file_name().to_string_lossy().starts_with("kafka_2.13-"));
    has_broker.then_some(dir)
}

/// `$JAVA_HOME/bin/java` when set, else `java` from `PATH`.
pub fn java() -> PathBuf {
    match std::env::var_os("JAVA_HOME") {
        Some(home) if !home.is_empty() => PathBuf::from(home).join("bin/java"),
        _ => PathBuf::from("java"),
    }
}

/// The Java classpath of an installation: every jar of `libs`.
pub fn classpath(libs: &Path) -> String {
    format!("{}/*", libs.display())
}

/// One KRaft node of the local stack.
#[derive(Debug, Clone)]
pub struct Node {
    pub id: u32,
    /// Client listener (PLAINTEXT).
    pub port: u16,
    /// Controller listener (KRaft quorum).
    pub controller_port: u16,
    /// This node's directory: `server.properties`, `log4j2.properties`, `data/`.
    pub dir: PathBuf,
    /// The controller quorum of a cluster: (node id, controller port) of every voter, this node
    /// included. Empty for a single node (a standalone quorum of itself).
    pub voters: Vec<(u32, u16)>,
}

/// Client and controller ports of node `id` (1-based) of a local cluster: node 1 keeps the single
/// node's ports (9092/9093 + offset), node 2 takes the next two (9094/9095), node 3 the two after.
pub fn node_ports(id: u32, kafka: u16, controller: u16) -> (u16, u16) {
    let step = 2 * (id.saturating_sub(1) as u16);
    (kafka + step, controller + step)
}

impl Node {
    pub fn config_file(&self) -> PathBuf {
        self.dir.join("server.properties")
    }
    pub fn log4j_file(&self) -> PathBuf {
        self.dir.join("log4j2.properties")
    }
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }
    /// Written by `kafka-storage format`; its presence means the storage is formatted.
    fn meta_file(&self) -> PathBuf {
        self.data_dir().join("meta.properties")
    }

    fn is_cluster(&self) -> bool {
        self.voters.len() > 1
    }

    /// `server.properties` of a combined node: the single node of the default stack, or one of
    /// the nodes of `up --brokers 3`.
    pub fn server_properties(&self) -> String {
        if self.is_cluster() {
            self.properties(&self.cluster_part())
        } else {
            self.properties(&single_part(self.controller_port))
        }
    }

    /// The settings of a node of a cluster: the static quorum and three replicas of everything.
    fn cluster_part(&self) -> String {
        let voters: Vec<String> = self.voters.iter().map(|(id, p)| format!("{id}@127.0.0.1:{p}")).collect();
        let n = self.voters.len();
        format!(
            "\
# One JVM is both broker and KRaft controller (combined mode), one of {n} nodes; the controllers
# form a static quorum (a majority must run for the cluster to take writes).
controller.quorum.voters={voters}
",
            voters = voters.join(",")
        ) + "
# Every partition has three replicas and an acknowledged write (acks=all) is on at least two:
# one broker may die without losing a record or refusing a write.
default.replication.factor=3
min.insync.replicas=2
offsets.topic.replication.factor=3
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
share.coordinator.state.topic.replication.factor=3
share.coordinator.state.topic.min.isr=2
# A crashed broker is fenced (its partitions get new leaders) when it misses heartbeats for
# this long; Kafka's 9 s would be a 9 s write stall per crash. Heartbeats every 500 ms.
broker.session.timeout.ms=3000
broker.heartbeat.interval.ms=500
# A broker back from a crash takes its partitions' leadership back once in sync (the default,
# spelled out: `topics describe` shows whether each leader is the preferred one).
auto.leader.rebalance.enable=true
leader.imbalance.check.interval.seconds=30
"
    }

    fn properties(&self, roles_and_replication: &str) -> String {
        let data = self.data_dir().display().to_string();
        let (port, cport, id) = (self.port, self.controller_port, self.id);
        format!(
            "\
# Written by chat4allctl at every start of the broker; edit ctl/src/broker.rs instead.
process.roles=broker,controller
node.id={id}
{roles_and_replication}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}
advertised.listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs={data}

# Group offsets and coordinators live in __consumer_offsets; the stack has a handful of groups,
# and each partition is a log with its own segment files and coordinator shard to load at start.
offsets.topic.num.partitions=4

# 2 cores for the whole stack: Kafka's defaults (8 I/O, 3 network threads) only add context
# switches here.
num.io.threads=2
num.network.threads=2
background.threads=2
num.replica.fetchers=1

# Topics are created by the platform (message-service at start) with the partitions it wants;
# a typo in a topic name must fail, not create a new topic.
auto.create.topics.enable=false

# Fast group failover. Classic protocol: the first join of a group is not held back (Kafka's 3 s
# delay waits for more members to arrive, which costs every test and every `up`), and clients
# may ask for session timeouts down to 1 s (the routers use 3 s with a heartbeat a third of
# that; Kafka's floor of 6 s would make a crash cost at least 6 s).
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=1000
# KIP-848 (group.protocol=consumer): the broker owns the timeouts. A member that stops
# heartbeating is fenced after 3 s (default 45 s), and members heartbeat every 500 ms, so a
# survivor learns of a new assignment within half a second of the coordinator computing it.
group.consumer.min.session.timeout.ms=1000
group.consumer.session.timeout.ms=3000
group.consumer.min.heartbeat.interval.ms=500
group.consumer.heartbeat.interval.ms=500
"
        )
    }

    /// The KRaft cluster id to format with: a new one for a single node; for a cluster the one
    /// every node shares, written once beside the nodes' directories (`broker-cluster.id`).
    fn cluster_id(&self) -> anyhow::Result<String> {
        if !self.is_cluster() {
            return Ok(new_cluster_id());
        }
        let file = self.dir.with_file_name("broker-cluster.id");
        if let Ok(id) = std::fs::read_to_string(&file) {
            return Ok(id.trim().to_string());
        }
        // Nodes are prepared at once: write aside and link, so the first wins and nobody reads a
        // half-written id.
        let tmp = self.dir.with_file_name(format!("broker-cluster.id.{}", self.id));
        std::fs::write(&tmp, new_cluster_id()).with_context(|| format!("writing {}", tmp.display()))?;
        let linked = std::fs::hard_link(&tmp, &file);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).with_context(|| format!("writing {}", file.display())),
        }
        Ok(std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?.trim().to_string())
    }

    /// Kafka logs through SLF4J to log4j2; this config sends everything to stdout, which the
    /// supervisor writes to `logs/broker.log`. Group coordinator lines (members joining,
    /// leaving, rebalances with their reasons) stay at INFO: they are what an operator reads.
    pub fn log4j_properties(&self) -> String {
        "\
status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = out
# Per-request and client-side chatter of the broker's own clients.
logger.clients.name = org.apache.kafka.clients
logger.clients.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
"
        .to_string()
    }

    /// Writes the node's configuration (again at every start, so a changed setting applies).
    pub fn write_config(&self) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.dir).with_context(|| format!("creating {}", self.dir.display()))?;
        std::fs::write(self.config_file(), self.server_properties())
            .with_context(|| format!("writing {}", self.config_file().display()))?;
        std::fs::write(self.log4j_file(), self.log4j_properties())
            .with_context(|| format!("writing {}", self.log4j_file().display()))?;
        Ok(())
    }

    pub fn is_formatted(&self) -> bool {
        self.meta_file().is_file()
    }

    /// JVM arguments that run this node.
    pub fn jvm_args(&self, libs: &Path) -> Vec<String> {
        vec![
            format!("-Xms{HEAP}"),
            format!("-Xmx{HEAP}"),
            // Kafka's own launcher defaults (kafka-run-class.sh): G1 with short pauses.
            "-XX:+UseG1GC".into(),
            "-XX:MaxGCPauseMillis=20".into(),
            "-XX:InitiatingHeapOccupancyPercent=35".into(),
            "-XX:+ExplicitGCInvokesConcurrent".into(),
            // A broker out of memory is dead; let the supervisor see it exit.
            "-XX:+ExitOnOutOfMemoryError".into(),
            "-Djava.awt.headless=true".into(),
            format!("-Dlog4j2.configurationFile={}", self.log4j_file().display()),
            "-cp".into(),
            classpath(libs),
            "kafka.Kafka".into(),
            self.config_file().display().to_string(),
        ]
    }

    /// Arguments of `kafka-storage format` for this node (a single node is `--standalone`: the
    /// whole controller quorum, named by `controller.quorum.bootstrap.servers`; a cluster node
    /// takes no flag, its quorum is `controller.quorum.voters`).
    pub fn format_args(&self, libs: &Path, cluster_id: &str) -> Vec<String> {
        let mut args = vec![
            format!("-Dlog4j2.configurationFile={}", self.log4j_file().display()),
            "-cp".into(),
            classpath(libs),
            "kafka.tools.StorageTool".into(),
            "format".into(),
            "-t".into(),
            cluster_id.into(),
            "-c".into(),
            self.config_file().display().to_string(),
        ];
        if !self.is_cluster() {
            args.push("--standalone".into());
        }
        args
    }

    /// Formats the node's storage unless it already is: a stack's topics, messages and offsets
    /// survive `down` and `up`. Blocking (one short JVM run).
    pub fn ensure_formatted(&self, libs: &Path) -> anyhow::Result<()> {
        self.write_config()?;
        if self.is_formatted() {
            return Ok(());
        }
        let out = std::process::Command::new(java())
            .args(self.format_args(libs, &self.cluster_id()?))
            .output()
            .with_context(|| format!("running {} (is a Java 17+ runtime installed?)", java().display()))?;
        if !out.status.success() {
            let text = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
            let last = text.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("").to_string();
            anyhow::bail!(
                "formatting the broker's storage in {} failed ({}): {last}",
                self.data_dir().display(),
                out.status
            );
        }
        Ok(())
    }
}

/// The settings of the single node of the default stack.
fn single_part(cport: u16) -> String {
    format!(
        "\
# One JVM is both broker and KRaft controller (combined mode): the local stack has one node.
controller.quorum.bootstrap.servers=127.0.0.1:{cport}
# One node: every internal topic has one replica.
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1"
    )
}

/// A new KRaft cluster id: 16 random bytes in URL-safe base64 without padding, as
/// `kafka-storage random-uuid` prints them (Kafka refuses ids that start with '-').
pub fn new_cluster_id() -> String {
    use base64::Engine;
    loop {
        let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(uuid::Uuid::new_v4().as_bytes());
        if !id.starts_with('-') {
            return id;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> Node {
        Node { id: 1, port: 9592, controller_port: 9593, dir: PathBuf::from("/tmp/stack/broker"), voters: vec![] }
    }

    fn cluster_node(id: u32) -> Node {
        let (port, controller_port) = node_ports(id, 9592, 9593);
        let voters = (1..=3).map(|i| (i, node_ports(i, 9592, 9593).1)).collect();
        Node { id, port, controller_port, dir: PathBuf::from(format!("/tmp/stack/broker-{id}")), voters }
    }

    #[test]
    fn cluster_nodes_have_their_own_ports_and_one_quorum() {
        let p = cluster_node(2).server_properties();
        assert!(p.contains("node.id=2\n"), "{p}");
        assert!(p.contains("listeners=PLAINTEXT://127.0.0.1:9594,CONTROLLER://127.0.0.1:9595\n"), "{p}");
        assert!(p.contains("controller.quorum.voters=1@127.0.0.1:9593,2@127.0.0.1:9595,3@127.0.0.1:9597\n"), "{p}");
        assert!(!p.contains("controller.quorum.bootstrap.servers"), "a static quorum names its voters only");
        for line in ["default.replication.factor=3", "min.insync.replicas=2", "offsets.topic.replication.factor=3"] {
            assert!(p.lines().any(|l| l == line), "{line} missing");
        }
        assert!(!cluster_node(3).format_args(Path::new("/l"), "id").contains(&"--standalone".to_string()));
        assert!(node().format_args(Path::new("/l"), "id").contains(&"--standalone".to_string()));
        // The single node stays as it was: one replica of everything.
        let single = node().server_properties();
        assert!(single.lines().any(|l| l == "offsets.topic.replication.factor=1"));
        assert!(!single.contains("default.replication.factor"));
    }

    #[test]
    fn cluster_nodes_share_one_cluster_id() {
        let root = std::env::temp_dir().join(format!("c4a-cid-{}", std::process::id()));
        std::fs::create_dir_all(&root).unwrap();
        let ids: Vec<String> = (1..=3)
            .map(|i| Node { dir: root.join(format!("broker-{i}")), ..cluster_node(i) }.cluster_id().unwrap())
            .collect();
        std::fs::remove_dir_all(&root).unwrap();
        assert_eq!(ids[0].len(), 22);
        assert!(ids.iter().all(|i| *i == ids[0]), "{ids:?}");
    }

    #[test]
    fn cluster_ids_look_like_kafkas() {
        for _ in 0..100 {
            let id = new_cluster_id();
            assert_eq!(id.len(), 22, "{id}");
            assert!(!id.starts_with('-'));
            assert!(id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'), "{id}");
        }
    }

    #[test]
    fn config_names_the_nodes_ports_and_data() {
        let p = node().server_properties();
        assert!(p.contains("listeners=PLAINTEXT://127.0.0.1:9592,CONTROLLER://127.0.0.1:9593\n"));
        assert!(p.contains("controller.quorum.bootstrap.servers=127.0.0.1:9593\n"));
        assert!(p.contains("log.dirs=/tmp/stack/broker/data\n"));
        assert!(p.contains("node.id=1\n"));
        // Every setting is on a line of its own, key=value.
        for line in p.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
            assert!(line.split_once('=').is_some_and(|(k, v)| !k.is_empty() && !v.is_empty()), "{line}");
        }
    }

    #[test]
    fn jvm_runs_kafka_with_our_config() {
        let args = node().jvm_args(Path::new("/opt/kafka/libs"));
        assert!(args.contains(&"/opt/kafka/libs/*".to_string()));
        let main = args.iter().position(|a| a == "kafka.Kafka").expect("main class");
        assert_eq!(args[main + 1], "/tmp/stack/broker/server.properties");
    }
}
