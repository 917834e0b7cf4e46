//! What the exporter adds to the broker observation (`sampler`): the runtime's instances and
//! their health, and the rebalance reports per group counted from the ops stream in Redis.
//! Collected in the background so that a scrape only renders.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chat4all_contract::events::RebalanceEvent;
use chat4all_contract::ops_keys;

use crate::runtime::supervisor::Supervisor;
use crate::runtime::{InstanceInfo, InstanceState};

/// Where the instance list comes from.
#[derive(Clone)]
pub enum InstanceSource {
    /// In-process: the exporter served by `up`.
    Supervisor(Arc<Supervisor>),
    /// A runtime of the stack: a running supervisor's control API, or the Docker engine
    /// (standalone exporter beside `up` or a docker stack).
    Remote(Arc<dyn crate::runtime::Runtime>),
    /// No runtime to ask: no instance metrics.
    None,
}

impl InstanceSource {
    async fn list(&self) -> anyhow::Result<Option<Vec<InstanceInfo>>> {
        match self {
            InstanceSource::Supervisor(s) => Ok(Some(s.list())),
            InstanceSource::Remote(rt) => rt.list().await.map(Some),
            InstanceSource::None => Ok(None),
        }
    }
}

/// The latest collection.
#[derive(Debug, Clone, Default)]
pub struct Extras {
    pub instances: Vec<InstanceInfo>,
    /// Instance name -> health check passed (running instances only).
    pub ready: BTreeMap<String, bool>,
    /// Consumer group -> assignment changes reported since the exporter started counting.
    pub rebalances: BTreeMap<String, u64>,
    /// (topic, partition) -> log-end offset of every partition of every topic, so that topics no
    /// group reads (the dead-letter topic) have `kafka_topic_partition_current_offset` too.
    pub log_ends: BTreeMap<(String, i32), i64>,
    /// The brokers and replicas (kafka_exporter's broker series); None when unreadable.
    pub cluster: Option<crate::cluster::ClusterView>,
    /// The DLQ depth (`dlq::Depth`), when the pipeline collector has one.
    pub dlq: Option<crate::dlq::Depth>,
    /// The message-service's pipeline view (outbox relay, oldest pending per channel), when the
    /// pipeline collector has one.
    pub pipeline: Option<chat4all_contract::admin::pipeline::Pipeline>,
    pub error: Option<String>,
}

/// Counts rebalance reports per group, reading only the entries added since the last call, so the
/// counts only grow (a counter) even though the stream is capped.
#[derive(Debug, Default)]
pub struct RebalanceCounter {
    last_id: Option<String>,
    counts: BTreeMap<String, u64>,
}

/// Entries read per round trip.
const PAGE: usize = 1000;

impl RebalanceCounter {
    pub fn counts(&self) -> &BTreeMap<String, u64> {
        &self.counts
    }

    /// Reads the new entries of the stream and adds them to the counts.
    pub async fn poll(&mut self, conn: &mut redis::aio::MultiplexedConnection) -> anyhow::Result<()> {
        loop {
            let start = match &self.last_id {
                Some(id) => format!("({id}"),
                None => "-".to_string(),
            };
            let page: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
                .arg(ops_keys::REBALANCE_STREAM)
                .arg(&start)
                .arg("+")
                .arg("COUNT")
                .arg(PAGE)
                .query_async(conn)
                .await?;
            let n = page.len();
            for (id, fields) in page {
                for (k, v) in fields {
                    if k != "event" {
                        continue;
                    }
                    if let Ok(ev) = serde_json::from_str::<RebalanceEvent>(&v) {
                        *self.counts.entry(ev.group).or_default() += 1;
                    }
                }
                self.last_id = Some(id);
            }
            if n < PAGE {
                return Ok(());
            }
        }
    }
}

/// Log-end offsets of every partition of every (non-internal) topic.
pub struct LogEnds {
    client: rdkafka::consumer::BaseConsumer,
    timeout: Duration,
}

impl LogEnds {
    pub fn new(bootstrap: &str, timeout: Duration) -> anyhow::Result<Self> {
        use anyhow::Context;
        let client =
            crate::kafka::client_config(bootstrap, "chat4allctl-exporter").create().context("creating Kafka client")?;
        Ok(Self { client, timeout })
    }

    /// Blocking: one metadata request and one offsets request per partition.
    pub fn read(&self) -> anyhow::Result<BTreeMap<(String, i32), i64>> {
        use rdkafka::consumer::Consumer;
        let md = self.client.fetch_metadata(None, self.timeout)?;
        let mut out = BTreeMap::new();
        for t in md.topics().iter().filter(|t| !t.name().starts_with("__")) {
            for p in t.partitions() {
                let (_, high) = self.client.fetch_watermarks(t.name(), p.id(), self.timeout)?;
                out.insert((t.name().to_string(), p.id()), high);
            }
        }
        Ok(out)
    }
}

/// Health of one running instance: HTTP 200 from `/health` for a service, a TCP connect for the
/// broker.
async fn probe(http: &reqwest::Client, i: &InstanceInfo) -> bool {
    if i.service == "broker" {
        return tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(("127.0.0.1", i.port)))
            .await
            .is_ok_and(|r| r.is_ok());
    }
    match http.get(format!("http://127.0.0.1:{}/health", i.port)).send().await {
        Ok(r) => r.status().is_success(),
        Err(_) => false,
    }
}

/// Collects every `interval` into `out` until the task is dropped.
pub async fn run(
    source: InstanceSource,
    redis_url: String,
    bootstrap: String,
    interval: Duration,
    out: Arc<RwLock<Extras>>,
) {
    let log_ends = match LogEnds::new(&bootstrap, Duration::from_secs(5)) {
        Ok(l) => Some(Arc::new(l)),
        Err(e) => {
            tracing::warn!(error = format!("{e:#}"), "no log-end offsets of unconsumed topics");
            None
        }
    };
    let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().expect("HTTP client builds");
    let cluster_observer = crate::kafka::Observer::new(&bootstrap, Duration::from_secs(2)).ok().map(Arc::new);
    let mut counter = RebalanceCounter::default();
    let mut redis: Option<redis::aio::MultiplexedConnection> = None;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let mut errors = Vec::new();
        let instances = match source.list().await {
            Ok(list) => list,
            Err(e) => {
                errors.push(format!("instances: {e:#}"));
                None
            }
        };
        let mut ready = BTreeMap::new();
        if let Some(list) = &instances {
            let running: Vec<&InstanceInfo> = list.iter().filter(|i| i.state == InstanceState::Running).collect();
            let results = futures::future::join_all(running.iter().map(|i| probe(&http, i))).await;
            ready = running.iter().zip(results).map(|(i, ok)| (i.name.clone(), ok)).collect();
        }
        if redis.is_none() {
            match crate::ownership::redis(&redis_url).await {
                Ok(c) => redis = Some(c),
                Err(e) => errors.push(format!("redis: {e:#}")),
            }
        }
        if let Some(conn) = redis.as_mut() {
            if let Err(e) = counter.poll(conn).await {
                errors.push(format!("rebalance stream: {e:#}"));
                redis = None;
            }
        }
        let ends = match &log_ends {
            Some(l) => {
                let l = l.clone();
                match tokio::task::spawn_blocking(move || l.read()).await {
                    Ok(Ok(ends)) => ends,
                    Ok(Err(e)) => {
                        errors.push(format!("log-end offsets: {e:#}"));
                        BTreeMap::new()
                    }
                    Err(e) => {
                        errors.push(format!("log-end offsets: {e}"));
                        BTreeMap::new()
                    }
                }
            }
            None => BTreeMap::new(),
        };
        let cluster = match &cluster_observer {
            Some(o) => match crate::cluster::observe(o.clone(), Duration::from_secs(2)).await {
                Ok(v) => Some(v),
                Err(e) => {
                    errors.push(format!("cluster: {e:#}"));
                    None
                }
            },
            None => None,
        };
        let mut w = out.write().unwrap_or_else(|e| e.into_inner());
        w.log_ends = ends;
        w.cluster = cluster;
        // A runtime that does not answer reports no instances (rather than the last known states).
        w.instances = instances.unwrap_or_default();
        w.ready = ready;
        w.rebalances = counter.counts().clone();
        w.error = (!errors.is_empty()).then(|| errors.join("; "));
    }
}

/// A figure read, or `None` (logged) when it could not be.
fn known<T>(what: &str, r: anyhow::Result<T>) -> Option<T> {
    r.map_err(|e| tracing::debug!(error = format!("{e:#}"), "{what} unknown")).ok()
}

/// Keeps the pipeline's figures in `out` up to date: the message-service's pipeline view (relay
/// state, outbox backlog and oldest row, oldest pending delivery per channel) and the DLQ depth.
/// A figure that cannot be read is absent (no series) rather than stale.
pub async fn run_pipeline(data: crate::paths::DataDir, interval: Duration, out: Arc<RwLock<Extras>>) {
    let mut reader: Option<(String, Option<crate::dlq::DlqReader>)> = None;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let stack = crate::stack::Stack::find(&data);
        // Until the supervisor has written where the stack is, the defaults may name another
        // stack on this machine: no figure rather than someone else's.
        if stack.supervisor.is_none() && std::env::var_os("KAFKA_BOOTSTRAP").is_none() {
            let mut o = out.write().unwrap_or_else(|e| e.into_inner());
            (o.dlq, o.pipeline) = (None, None);
            continue;
        }
        if reader.as_ref().is_none_or(|(b, _)| *b != stack.bootstrap) {
            reader = Some((stack.bootstrap.clone(), None));
        }
        let (depth, pipeline) = match crate::admin::Admin::for_stack(&stack, Duration::from_secs(5)) {
            Ok(admin) => {
                let (bootstrap, r) = reader.as_mut().expect("set above");
                tokio::join!(crate::dlq::depth_now(&admin, r, bootstrap), async {
                    admin.pipeline().await.map_err(anyhow::Error::from)
                })
            }
            Err(e) => (Err(anyhow::Error::from(e)), Err(anyhow::anyhow!("no admin client"))),
        };
        let depth = known("DLQ depth", depth);
        let pipeline = known("pipeline", pipeline);
        let mut o = out.write().unwrap_or_else(|e| e.into_inner());
        (o.dlq, o.pipeline) = (depth, pipeline);
    }
}
