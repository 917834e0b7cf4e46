//! The runtime the platform runs on, behind one interface ([`Runtime`]): list, kill, stop, start,
//! restart, scale, logs (with follow) and a stream of instance events. `process` talks to the
//! local supervisor started by `chat4allctl up`; `docker` talks to a Docker engine and finds the
//! platform's containers by their Compose labels. [`connect`] picks one (`--runtime`,
//! `CHAT4ALL_RUNTIME`, or whichever is found).

pub mod client;
pub mod docker;
pub mod fault;
pub mod supervisor;

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

use crate::error::usage;
use crate::paths::DataDir;

/// One instance as the runtime sees it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct InstanceInfo {
    pub name: String,
    pub service: String,
    pub state: InstanceState,
    pub pid: Option<u32>,
    pub port: u16,
    pub started_at: Option<DateTime<Utc>>,
    /// How the last run ended (`exit code 1`, `killed by SIGKILL`), if it ended.
    pub last_exit: Option<String>,
    /// The container's id (docker runtime); None for a process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum InstanceState {
    Starting,
    Running,
    Stopping,
    Stopped,
    Killed,
    Exited,
}

impl InstanceState {
    pub fn is_alive(self) -> bool {
        matches!(self, InstanceState::Starting | InstanceState::Running | InstanceState::Stopping)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceState::Starting => "starting",
            InstanceState::Running => "running",
            InstanceState::Stopping => "stopping",
            InstanceState::Stopped => "stopped",
            InstanceState::Killed => "killed",
            InstanceState::Exited => "exited",
        }
    }
}

/// An operator action the runtime carried out (the timeline shows them).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Action {
    pub at: DateTime<Utc>,
    pub action: String,
    pub target: String,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScaleRequest {
    pub service: String,
    pub replicas: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScaleResult {
    pub service: String,
    pub before: u32,
    pub after: u32,
    pub started: Vec<String>,
    pub stopped: Vec<String>,
}

/// What an operator does to one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verb {
    /// SIGKILL, no graceful leave (`docker kill`: the container exits with 137).
    Kill,
    /// SIGTERM, then SIGKILL after a grace period.
    Stop,
    Start,
    Restart,
}

impl Verb {
    pub const ALL: [Verb; 4] = [Verb::Kill, Verb::Stop, Verb::Start, Verb::Restart];

    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Kill => "kill",
            Verb::Stop => "stop",
            Verb::Start => "start",
            Verb::Restart => "restart",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Verb::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// Which runtime runs the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeKind {
    /// Local processes under `chat4allctl up`'s supervisor.
    Process,
    /// Containers on a Docker engine (Compose labels).
    Docker,
}

impl RuntimeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RuntimeKind::Process => "process",
            RuntimeKind::Docker => "docker",
        }
    }
}

/// The runtime and the engine behind it, as `status` and the dashboard show them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EngineInfo {
    pub runtime: RuntimeKind,
    /// `supervisor pid 1234` or `docker 20.10.24`.
    pub engine: String,
    /// The control URL or the engine's socket.
    pub endpoint: String,
}

/// Something that happened to an instance.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct InstanceEvent {
    pub at: DateTime<Utc>,
    pub instance: String,
    pub service: String,
    pub kind: EventKind,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", tag = "event")]
pub enum EventKind {
    Started,
    /// The instance ended: its exit code, or the signal that killed it, when known.
    Exited {
        code: Option<i64>,
        signal: Option<String>,
    },
}

/// Bytes of an instance's log as they arrive.
pub type LogStream<'a> = BoxStream<'a, anyhow::Result<bytes::Bytes>>;

/// One interface over the process supervisor and a Docker engine. Instance names are the
/// runtime's own (`router-service-1` in both; `broker` or `kafka-1` for the broker).
pub trait Runtime: Send + Sync {
    fn engine(&self) -> EngineInfo;

    fn list(&self) -> BoxFuture<'_, anyhow::Result<Vec<InstanceInfo>>>;

    /// Carries out `verb` on one instance; returns what was done, in a sentence.
    fn act<'a>(&'a self, name: &'a str, verb: Verb) -> BoxFuture<'a, anyhow::Result<String>>;

    /// Runs `replicas` instances of `service`, adding the next numbers or gracefully stopping the
    /// highest ones.
    fn scale<'a>(&'a self, service: &'a str, replicas: u32) -> BoxFuture<'a, anyhow::Result<ScaleResult>>;

    /// The last `lines` lines of an instance's log.
    fn logs<'a>(&'a self, name: &'a str, lines: usize) -> BoxFuture<'a, anyhow::Result<String>>;

    /// The instance's log from now on, until the caller drops the stream.
    fn follow<'a>(&'a self, name: &'a str) -> LogStream<'a>;

    /// Started / exited events of every instance from now on.
    fn events(&self) -> BoxStream<'_, anyhow::Result<InstanceEvent>>;

    /// The offset history the supervisor samples (the docker runtime runs no sampler: empty).
    /// No default: a runtime that forgot it would silently cost lag status its window.
    fn lag_history(&self) -> BoxFuture<'_, anyhow::Result<crate::lag::LagHistory>>;

    /// The runtime's log of operator actions (the supervisor's; the docker runtime keeps none).
    /// No default: the timeline attributes rebalances to these.
    fn actions(&self) -> BoxFuture<'_, anyhow::Result<Vec<Action>>>;

    /// Adds an operator action to the runtime's action log (the supervisor keeps one, which the
    /// timeline shows; the engine keeps none of ours, so the docker runtime drops it).
    fn record_action<'a>(
        &'a self,
        action: &'a str,
        target: &'a str,
        detail: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<()>>;

    fn kill<'a>(&'a self, name: &'a str) -> BoxFuture<'a, anyhow::Result<String>> {
        self.act(name, Verb::Kill)
    }
    fn stop<'a>(&'a self, name: &'a str) -> BoxFuture<'a, anyhow::Result<String>> {
        self.act(name, Verb::Stop)
    }
    fn start<'a>(&'a self, name: &'a str) -> BoxFuture<'a, anyhow::Result<String>> {
        self.act(name, Verb::Start)
    }
    fn restart<'a>(&'a self, name: &'a str) -> BoxFuture<'a, anyhow::Result<String>> {
        self.act(name, Verb::Restart)
    }
}

/// Where to look for a stack: the process runtime's data directory and the Compose project.
#[derive(Debug, Clone)]
pub struct Target {
    pub data: DataDir,
    pub project: String,
    pub timeout: Duration,
}

/// The runtime asked for, or the one found: a supervisor for this data directory, or containers
/// of the Compose project. Both or neither found without `--runtime`: a usage error.
pub async fn connect(kind: Option<RuntimeKind>, target: &Target) -> anyhow::Result<Box<dyn Runtime>> {
    match kind {
        Some(RuntimeKind::Process) => Ok(Box::new(client::ProcessRuntime::connect(&target.data, target.timeout)?)),
        Some(RuntimeKind::Docker) => Ok(Box::new(connect_docker(target).await?)),
        None => {
            let has_supervisor = target.data.supervisor_file().exists();
            let docker = match connect_docker(target).await {
                Ok(d) if d.has_containers().await => Some(d),
                _ => None,
            };
            match (has_supervisor, docker) {
                (true, Some(d)) => Err(usage(format!(
                    "both a local stack in {} and containers of Compose project {:?} ({}) run: choose one with --runtime process|docker",
                    target.data.root().display(),
                    target.project,
                    d.socket()
                ))),
                (false, Some(d)) => Ok(Box::new(d)),
                // A supervisor, or nothing: the process runtime says clearly that none runs.
                (_, None) => Ok(Box::new(client::ProcessRuntime::connect(&target.data, target.timeout)?)),
            }
        }
    }
}

/// The docker runtime of `target`'s project, with the stack's Kafka and Redis for failover.
async fn connect_docker(target: &Target) -> anyhow::Result<docker::DockerRuntime> {
    let stack = crate::stack::Stack::find(&target.data);
    let failover = docker::Failover { bootstrap: stack.bootstrap, redis_url: stack.redis_url };
    Ok(docker::DockerRuntime::connect(&target.project).await?.with_failover(failover))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_round_trip() {
        for v in Verb::ALL {
            assert_eq!(Verb::parse(v.as_str()), Some(v));
        }
        assert_eq!(Verb::parse("explode"), None);
    }

    #[test]
    fn old_instance_info_still_decodes() {
        let old = r#"{"name":"router-service-1","service":"router-service","state":"running","pid":7,"port":8091,"startedAt":null,"lastExit":null}"#;
        let i: InstanceInfo = serde_json::from_str(old).unwrap();
        assert_eq!(i.container, None);
        assert!(!serde_json::to_string(&i).unwrap().contains("container"));
    }
}
