//! The pipeline's health as the message-service sees it: what Kafka lag cannot see. The outbox
//! (before the topic) and, per channel, the oldest delivery that is not final yet (accepted but
//! not delivered, failed or dead-lettered): one age that grows wherever the pipeline stalls
//! (relay, broker, routers, connectors or providers).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::relay::RelayState;
use crate::channel::Channel;

/// `GET` -> [`Pipeline`].
pub const PIPELINE_PATH: &str = "/v1/admin/pipeline";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pipeline {
    pub relay: RelayState,
    /// One per channel, in [`Channel::ALL`] order.
    pub channels: Vec<ChannelFreshness>,
    /// When the freshness figures were computed (they are refreshed every few seconds).
    pub measured_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelFreshness {
    pub channel: Channel,
    /// Age of the oldest delivery of this channel that is not final; 0 when none is pending.
    pub oldest_pending_seconds: f64,
    /// That delivery's message, and its status (PENDING or SENT).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_pending_message: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_pending_status: Option<String>,
}
