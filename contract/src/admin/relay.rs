//! The message-service's outbox relay, as the control plane sees and steers it.
//!
//! A pause is a **lease**: it names its holder and ends by itself at `until` unless the holder
//! renews it (`repartition` renews every third of the lease while it drains). A holder that dies
//! (SIGKILL, a closed laptop) therefore leaves the relay paused for at most one lease.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// `GET`: the relay's state ([`RelayState`]).
pub const RELAY_PATH: &str = "/v1/admin/relay";
/// `POST` [`PauseRequest`] -> [`RelayState`]: take or renew the pause lease. `409` when another
/// holder has it.
pub const PAUSE_PATH: &str = "/v1/admin/relay/pause";
/// `POST` [`ResumeRequest`] -> [`RelayState`]: end the lease (idempotent; `409` when another
/// holder has it, unless `force`).
pub const RESUME_PATH: &str = "/v1/admin/relay/resume";
/// `GET ?from=N&to=M` -> [`KeyMoves`]: how many stored conversations change partition.
pub const KEY_MOVES_PATH: &str = "/v1/admin/key-moves";

/// Longest lease one request may take.
pub const MAX_LEASE_SECONDS: u64 = 3600;
/// Lease when the request names none.
pub const DEFAULT_LEASE_SECONDS: u64 = 30;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PauseRequest {
    /// Who holds the pause (shown in `status`; only the same holder may renew or end it).
    pub by: String,
    /// How long the lease lasts from now, 1 to [`MAX_LEASE_SECONDS`].
    #[serde(default = "default_lease")]
    pub ttl_seconds: u64,
}

fn default_lease() -> u64 {
    DEFAULT_LEASE_SECONDS
}

impl PauseRequest {
    /// The request's problem, if it has one (the service answers it `400`).
    pub fn problem(&self) -> Option<String> {
        if self.by.trim().is_empty() || self.by.len() > 200 {
            return Some("by must name the holder (1-200 characters)".into());
        }
        if !(1..=MAX_LEASE_SECONDS).contains(&self.ttl_seconds) {
            return Some(format!("ttlSeconds must be 1..={MAX_LEASE_SECONDS}, got {}", self.ttl_seconds));
        }
        None
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResumeRequest {
    pub by: String,
    /// End a lease held by someone else (an operator clearing a stuck pause).
    #[serde(default)]
    pub force: bool,
}

/// A pause lease in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pause {
    pub by: String,
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RelayState {
    /// The lease in force; `None` when the relay runs (an expired lease is no pause).
    pub paused: Option<Pause>,
    /// Outbox rows not yet published.
    pub backlog: i64,
    /// Age of the oldest unpublished row, in seconds (0 when the outbox is empty).
    pub oldest_seconds: f64,
    /// The message-service instance leading the relay, if one is.
    pub leader: Option<String>,
    pub leader_since: Option<DateTime<Utc>>,
    /// Bumped by every new leader; a leader whose epoch is no longer current stops publishing.
    pub leader_epoch: i64,
}

impl RelayState {
    pub fn label(&self) -> String {
        match &self.paused {
            Some(p) => format!("paused by {} until {}", p.by, p.until.format("%H:%M:%S")),
            None if self.leader.is_some() => "running".into(),
            None => "no leader".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyMoves {
    /// `conversations` (the stored keys) or `synthetic` (none stored yet).
    pub source: String,
    pub keys: usize,
    pub moved: usize,
    pub share: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pause_requests_are_checked() {
        let ok = PauseRequest { by: "repartition".into(), ttl_seconds: 30 };
        assert_eq!(ok.problem(), None);
        assert!(PauseRequest { by: " ".into(), ..ok.clone() }.problem().is_some());
        assert!(PauseRequest { ttl_seconds: 0, ..ok.clone() }.problem().is_some());
        assert!(PauseRequest { ttl_seconds: MAX_LEASE_SECONDS + 1, ..ok }.problem().is_some());
        let parsed: PauseRequest = serde_json::from_str(r#"{"by":"x"}"#).unwrap();
        assert_eq!(parsed.ttl_seconds, DEFAULT_LEASE_SECONDS);
    }
}
