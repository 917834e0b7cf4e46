//! The runtime the platform runs on, behind one interface: list, kill, stop, start, restart,
//! scale, logs. `process` (default) talks to the local supervisor started by `chat4allctl up`.

pub mod client;
pub mod supervisor;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

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
