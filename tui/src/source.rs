//! The background source: every interval it takes one look at the platform through the ctl
//! library (runtime, group view, rebalance timeline, health) plus the services' counters, and
//! publishes it on a `watch` channel, which keeps only the latest value (a slow screen never
//! queues stale data). Every dependency may be down; the snapshot then says why.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use chat4all_ctl::lag::{LagHistory, Rules};
use chat4all_ctl::ownership;
use chat4all_ctl::paths::DataDir;
use chat4all_ctl::runtime::{self, InstanceInfo, Runtime, RuntimeKind};
use chat4all_ctl::timeline;
use chat4all_ctl::view::GroupReader;

use crate::snapshot::{InstanceRow, Reach, Snapshot};
use crate::throughput::{self, Counters};

/// Rebalance reports read per look.
const TIMELINE_LEN: usize = 50;

/// Where the stack is: the environment first, then the running supervisor, then the defaults
/// (the same order chat4allctl follows).
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoints {
    pub bootstrap: String,
    pub redis_url: String,
    pub database_url: String,
}

impl Endpoints {
    /// From what the running stack wrote in `data` (a supervisor's or a docker stack's file).
    pub fn resolve(data: &DataDir) -> Self {
        let stack = chat4all_ctl::stack::Stack::find(data);
        Self { bootstrap: stack.bootstrap, redis_url: stack.redis_url, database_url: stack.database_url }
    }
}

pub struct Source {
    data: DataDir,
    timeout: Duration,
    http: reqwest::Client,
    runtime: Option<Box<dyn Runtime>>,
    reader: Option<(Endpoints, GroupReader)>,
    redis: Option<(String, redis::aio::MultiplexedConnection)>,
    /// The message-service's admin client (by its URL), the dead-letter reader (by bootstrap)
    /// and the connectors' previous counters, for the pipeline pane.
    admin: Option<(String, chat4all_ctl::admin::Admin)>,
    dlq: Option<(String, Option<chat4all_ctl::dlq::DlqReader>)>,
    rates: chat4all_ctl::rates::RateTracker,
}

impl Source {
    pub fn new(data: DataDir, timeout: Duration) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder().timeout(timeout).build()?;
        Ok(Self {
            data,
            timeout,
            http,
            runtime: None,
            reader: None,
            redis: None,
            admin: None,
            dlq: None,
            rates: Default::default(),
        })
    }

    /// One look at everything.
    pub async fn snapshot(&mut self) -> Snapshot {
        let started = Instant::now();
        let mut s = Snapshot::empty(chrono::Utc::now());
        if self.runtime.is_none() {
            let target = runtime::Target {
                data: self.data.clone(),
                project: runtime::docker::default_project(),
                timeout: self.timeout,
            };
            self.runtime = runtime::connect(None, &target).await.ok();
        }
        // While the supervisor is away, keep looking where it last said the stack is (not at the
        // defaults, which may be another stack on this machine).
        let endpoints = match (&self.runtime, &self.reader) {
            (None, Some((last, _))) => last.clone(),
            _ => Endpoints::resolve(&self.data),
        };
        let (instances, actions) = match &self.runtime {
            Some(rt) => {
                let (l, a) = tokio::join!(rt.list(), rt.actions());
                match l {
                    Ok(list) => {
                        let e = rt.engine();
                        s.runtime = Ok(match e.runtime {
                            RuntimeKind::Process => format!("process ({} at {})", e.engine, e.endpoint),
                            RuntimeKind::Docker => format!("{} at {}", e.engine, e.endpoint),
                        });
                        (list, a.unwrap_or_default())
                    }
                    Err(e) => {
                        s.runtime = Err(format!("{e:#}"));
                        self.runtime = None;
                        (Vec::new(), Vec::new())
                    }
                }
            }
            None => {
                s.runtime = Err(format!(
                    "no supervisor in {} and no containers of Compose project {} (start it with chat4allctl up)",
                    self.data.root().display(),
                    runtime::docker::default_project()
                ));
                (Vec::new(), Vec::new())
            }
        };
        self.prime_reader(&endpoints).await;
        let stack = chat4all_ctl::stack::Stack::find(&self.data);
        if self.admin.as_ref().is_none_or(|(url, _)| *url != stack.api_url) {
            self.admin = chat4all_ctl::admin::Admin::for_stack(&stack, self.timeout.min(Duration::from_secs(2)))
                .ok()
                .map(|a| (stack.api_url.clone(), a));
        }
        if self.dlq.as_ref().is_none_or(|(b, _)| *b != endpoints.bootstrap) {
            self.dlq = Some((endpoints.bootstrap.clone(), None));
        }
        let Self { reader, redis, http, timeout, admin, dlq, .. } = self;
        let observer = reader.as_ref().map(|(_, r)| r.observer());
        let (groups, events, health, counters, postgres, connectors, pipeline, depth, cluster) = tokio::join!(
            read_groups(reader),
            read_timeline(redis, &endpoints.redis_url),
            probe_all(http, &instances, *timeout),
            scrape_all(http, &instances),
            postgres_reachable(&endpoints.database_url, *timeout),
            chat4all_ctl::rates::scrape(http, &instances),
            read_pipeline(admin.as_ref().map(|(_, a)| a)),
            read_depth(admin.as_ref().map(|(_, a)| a), dlq),
            read_cluster(observer, *timeout),
        );
        let rates = self.rates.record(connectors);
        match groups {
            Ok(g) => {
                s.groups = g;
                s.broker = Ok(endpoints.bootstrap.clone());
            }
            Err(e) => s.broker = Err(e),
        }
        match events {
            Ok(ev) => {
                s.events = timeline::attribute(ev, &actions);
                s.redis = Ok(endpoints.redis_url.clone());
            }
            Err(e) => s.redis = Err(e),
        }
        s.postgres = postgres;
        s.instances = instances.into_iter().zip(health).map(|(info, health)| InstanceRow { info, health }).collect();
        s.pipeline = pipeline.map(|p| {
            let router_lag =
                s.groups.iter().find(|g| g.group == chat4all_ctl::repartition::ROUTER_GROUP).map(|g| g.total_lag);
            let (dlq, dlq_error) = match depth {
                Ok(d) => (Some(d), None),
                Err(e) => (None, Some(e)),
            };
            crate::snapshot::PipelineSnap {
                stalls: chat4all_ctl::stalls::find(&p, router_lag, &services_down(&s.instances)),
                channels: chat4all_ctl::pipeline::channel_rows(&p, rates.as_ref().map(|r| &r.channels), dlq.as_ref()),
                outbox_published_per_second: rates.as_ref().map(|r| r.outbox_published_per_second),
                relay: p.relay,
                dlq,
                dlq_error,
            }
        });
        s.cluster = cluster;
        s.actions = actions;
        s.counters = counters;
        s.took_ms = started.elapsed().as_millis() as u64;
        s
    }

    /// (Re)creates the group reader when the endpoints change, primed with the supervisor's
    /// offset history so lag status has a window from the first look.
    async fn prime_reader(&mut self, endpoints: &Endpoints) {
        if self.reader.as_ref().is_some_and(|(e, _)| e == endpoints) {
            return;
        }
        let mut history = LagHistory::new(Rules::default());
        if let Some(rt) = &self.runtime {
            if let Ok(h) = rt.lag_history().await {
                history.merge(&h);
            }
        }
        self.reader = GroupReader::new(&endpoints.bootstrap, &endpoints.redis_url, self.timeout, history)
            .ok()
            .map(|r| (endpoints.clone(), r));
    }
}

async fn read_groups(
    reader: &mut Option<(Endpoints, GroupReader)>,
) -> Result<Vec<chat4all_ctl::view::GroupView>, String> {
    let Some((_, r)) = reader.as_mut() else { return Err("no broker client".into()) };
    r.all().await.map_err(|e| format!("{e:#}"))
}

async fn read_cluster(
    observer: Option<std::sync::Arc<chat4all_ctl::kafka::Observer>>,
    timeout: Duration,
) -> Result<chat4all_ctl::cluster::ClusterView, String> {
    let Some(o) = observer else { return Err("no broker client".into()) };
    chat4all_ctl::cluster::observe(o, timeout).await.map_err(|e| format!("{e:#}"))
}

async fn read_timeline(
    redis: &mut Option<(String, redis::aio::MultiplexedConnection)>,
    url: &str,
) -> Result<Vec<chat4all_ctl::contract::events::RebalanceEvent>, String> {
    if redis.as_ref().is_none_or(|(u, _)| u != url) {
        let conn = ownership::redis(url).await.map_err(|e| format!("{e:#}"))?;
        *redis = Some((url.to_string(), conn));
    }
    let (_, conn) = redis.as_mut().expect("connected above");
    match tokio::time::timeout(Duration::from_secs(3), ownership::timeline(conn, TIMELINE_LEN)).await {
        Ok(Ok(ev)) => Ok(ev),
        Ok(Err(e)) => {
            *redis = None;
            Err(format!("{e:#}"))
        }
        Err(_) => {
            *redis = None;
            Err("Redis did not answer".into())
        }
    }
}

async fn probe_all(http: &reqwest::Client, instances: &[InstanceInfo], timeout: Duration) -> Vec<String> {
    let t = timeout.min(Duration::from_secs(1));
    futures::future::join_all(instances.iter().map(|i| chat4all_ctl::health::probe(http, i, t))).await
}

/// Counters of the services that count messages (the API and the routers).
async fn scrape_all(http: &reqwest::Client, instances: &[InstanceInfo]) -> BTreeMap<String, Counters> {
    let counting = instances
        .iter()
        .filter(|i| i.state.is_alive() && matches!(i.service.as_str(), "message-service" | "router-service"));
    chat4all_ctl::health::metrics_pages(http, counting)
        .await
        .into_iter()
        .map(|(i, page)| (i.name.clone(), throughput::parse(&page)))
        .collect()
}

async fn read_pipeline(
    admin: Option<&chat4all_ctl::admin::Admin>,
) -> Result<chat4all_ctl::contract::admin::pipeline::Pipeline, String> {
    let admin = admin.ok_or("no control token for the message-service's admin endpoints")?;
    admin.pipeline().await.map_err(|e| e.to_string())
}

async fn read_depth(
    admin: Option<&chat4all_ctl::admin::Admin>,
    dlq: &mut Option<(String, Option<chat4all_ctl::dlq::DlqReader>)>,
) -> Result<chat4all_ctl::dlq::Depth, String> {
    let admin = admin.ok_or("no control token")?;
    let (bootstrap, reader) = dlq.as_mut().ok_or("no broker")?;
    chat4all_ctl::dlq::depth_now(admin, reader, bootstrap).await.map_err(|e| format!("{e:#}"))
}

/// Services none of whose instances is running and healthy (the stalls name them).
fn services_down(rows: &[InstanceRow]) -> Vec<String> {
    let mut services: BTreeMap<&str, bool> = BTreeMap::new();
    for r in rows {
        let ok = r.info.state.is_alive() && r.health == "up";
        *services.entry(r.info.service.as_str()).or_default() |= ok;
    }
    services.into_iter().filter(|(_, ok)| !ok).map(|(s, _)| s.to_string()).collect()
}

/// PostgreSQL reachability: a TCP connection to the host and port of `url`.
async fn postgres_reachable(url: &str, timeout: Duration) -> Reach {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("invalid DATABASE_URL: {e}"))?;
    let host = parsed.host_str().filter(|h| !h.is_empty()).unwrap_or("127.0.0.1").to_string();
    let port = parsed.port().unwrap_or(5432);
    match tokio::time::timeout(
        timeout.min(Duration::from_secs(1)),
        tokio::net::TcpStream::connect((host.as_str(), port)),
    )
    .await
    {
        Ok(Ok(_)) => Ok(format!("{host}:{port}")),
        Ok(Err(e)) => Err(format!("{host}:{port}: {e}")),
        Err(_) => Err(format!("{host}:{port}: no answer")),
    }
}

/// Publishes a snapshot every `interval` until every receiver is gone.
pub async fn run(mut source: Source, interval: Duration, tx: watch::Sender<Option<Snapshot>>) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let s = source.snapshot().await;
        if tx.send(Some(s)).is_err() {
            return;
        }
    }
}
