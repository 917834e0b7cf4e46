//! One look at the platform, as the background source delivers it to the dashboard.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use chat4all_ctl::runtime::{Action, InstanceInfo};
use chat4all_ctl::timeline::EventRow;
use chat4all_ctl::view::GroupView;

use crate::throughput::Counters;

/// The pipeline as the pipeline pane shows it (the message-service's view, the connectors'
/// rates, the DLQ depth, and where it stalls).
#[derive(Debug, Clone)]
pub struct PipelineSnap {
    pub relay: chat4all_ctl::contract::admin::relay::RelayState,
    /// Outbox records published per second (`None` until two scrapes).
    pub outbox_published_per_second: Option<f64>,
    pub channels: Vec<chat4all_ctl::pipeline::ChannelRow>,
    pub stalls: Vec<chat4all_ctl::stalls::Stall>,
    pub dlq: Option<chat4all_ctl::dlq::Depth>,
    pub dlq_error: Option<String>,
}

/// Reachability of one dependency: `Ok(detail)` or `Err(reason)`.
pub type Reach = Result<String, String>;

#[derive(Debug, Clone)]
pub struct InstanceRow {
    pub info: InstanceInfo,
    /// `up`, `down (postgres)`, `unreachable`, `-` (see chat4all_ctl::health).
    pub health: String,
}

#[derive(Debug, Clone)]
pub struct Snapshot {
    pub at: DateTime<Utc>,
    pub instances: Vec<InstanceRow>,
    pub groups: Vec<GroupView>,
    /// Rebalance reports with their causes, oldest first (as the library returns them).
    pub events: Vec<EventRow>,
    /// Operator actions the runtime carried out, oldest first.
    pub actions: Vec<Action>,
    /// Cumulative counters per instance (scraped from /metrics), for throughput.
    pub counters: BTreeMap<String, Counters>,
    pub broker: Reach,
    pub postgres: Reach,
    pub redis: Reach,
    /// The runtime in use (`process, supervisor pid 123`) or why it cannot be reached.
    pub runtime: Reach,
    /// How long gathering this snapshot took, in milliseconds.
    pub took_ms: u64,
    /// The pipeline, or why the message-service's view of it is unknown.
    pub pipeline: Result<PipelineSnap, String>,
    /// The Kafka cluster (brokers, replicas), or why it could not be read.
    pub cluster: Result<chat4all_ctl::cluster::ClusterView, String>,
}

impl Snapshot {
    /// An empty snapshot at `at` with every dependency unknown.
    pub fn empty(at: DateTime<Utc>) -> Self {
        let unknown = || Err("not checked yet".to_string());
        Self {
            at,
            instances: Vec::new(),
            groups: Vec::new(),
            events: Vec::new(),
            actions: Vec::new(),
            counters: BTreeMap::new(),
            broker: unknown(),
            postgres: unknown(),
            redis: unknown(),
            runtime: unknown(),
            took_ms: 0,
            pipeline: Err("not checked yet".to_string()),
            cluster: Err("not checked yet".to_string()),
        }
    }

    /// The first failing dependency's error, for the status bar.
    pub fn first_error(&self) -> Option<String> {
        [("runtime", &self.runtime), ("broker", &self.broker), ("redis", &self.redis), ("postgres", &self.postgres)]
            .into_iter()
            .find_map(|(name, r)| r.as_ref().err().map(|e| format!("{name}: {e}")))
    }
}
