//! The consumer group protocol a member speaks (chosen per stack, reported by the console).

use std::fmt;
use std::str::FromStr;

/// The consumer group protocol a member speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum GroupProtocol {
    /// The classic protocol: members join, the leader assigns, heartbeats carry the session.
    #[default]
    Classic,
    /// KIP-848: the broker assigns and owns the session and heartbeat settings.
    Consumer,
}

impl GroupProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            GroupProtocol::Classic => "classic",
            GroupProtocol::Consumer => "consumer",
        }
    }
}

impl fmt::Display for GroupProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown group protocol {0:?} (expected classic or consumer)")]
pub struct UnknownGroupProtocol(pub String);

impl FromStr for GroupProtocol {
    type Err = UnknownGroupProtocol;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "classic" => Ok(GroupProtocol::Classic),
            "consumer" => Ok(GroupProtocol::Consumer),
            _ => Err(UnknownGroupProtocol(s.into())),
        }
    }
}

/// Consumer-group settings of the router (classic protocol; a KIP-848 member takes its session
/// and heartbeat from the broker's `group.consumer.*` settings, see `ctl/src/broker.rs`). The
/// defaults trade a few heartbeats for fast failover; docs/ARCHITECTURE.md and BENCHMARKS.md
/// (failover) have the measurements behind them. Every one is overridable by flag or env var.
#[cfg(feature = "clap")]
#[derive(Debug, Clone, clap::Args)]
pub struct ConsumerTuning {
    /// How long the coordinator waits for heartbeats before it declares a member dead. Kafka's
    /// default (45 s) makes a frozen or partitioned router cost 45 s of stalled partitions; 3 s
    /// finds one quickly while staying far above the pauses of a GC-free process (a 60 s run at
    /// 2,000 msg/s saw no rebalance that nobody caused, BENCHMARKS.md). A crash or an operator
    /// kill does not wait for it at all: the supervisor removes the dead member at once.
    #[arg(long, env = "CHAT4ALL_SESSION_TIMEOUT_MS", default_value_t = 3000)]
    pub session_timeout_ms: u32,
    /// A survivor learns that the group is rebalancing only from its next heartbeat answer, so
    /// this interval adds up to itself to every failover. 500 ms (a sixth of the session
    /// timeout) leaves five heartbeats to lose before the session expires, for one tiny request
    /// per member every half second.
    #[arg(long, env = "CHAT4ALL_HEARTBEAT_MS", default_value_t = 500)]
    pub heartbeat_interval_ms: u32,
    /// `cooperative-sticky` moves only the partitions that must move: survivors keep consuming
    /// through a rebalance instead of stopping the world (their own partitions are never revoked
    /// when a member dies). A group has one strategy: Kafka refuses a member offering another.
    #[arg(long, env = "CHAT4ALL_ASSIGNMENT_STRATEGY", default_value = "cooperative-sticky")]
    pub assignment_strategy: String,
    /// How often the consumer re-reads topic metadata: partitions added by a repartition are
    /// assigned within about this long (librdkafka's default is 5 minutes).
    #[arg(long, env = "CHAT4ALL_METADATA_REFRESH_MS", default_value_t = 3000)]
    pub metadata_refresh_ms: u32,
}
