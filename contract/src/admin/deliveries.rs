//! What the message-service knows about a set of messages' deliveries: how far they are
//! (progress, polled by a drill or a bench while it drains) and the facts each count is made
//! of (order, times, statuses, who routed). One answer, used by the drill, the bench and the
//! tests alike; the providers' own records say what reached a device.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::channel::Channel;
use crate::events::DeliveryStatus;

/// `POST` [`Messages`] → [`Progress`].
pub const PROGRESS_PATH: &str = "/v1/admin/deliveries/progress";
/// `POST` [`Messages`] → [`Facts`].
pub const FACTS_PATH: &str = "/v1/admin/deliveries/facts";
/// Most message ids one request may carry (clients split larger sets).
pub const MAX_IDS: usize = 10_000;

/// The messages asked about.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Messages {
    pub message_ids: Vec<Uuid>,
}

impl Messages {
    /// Why the request is refused, if it is.
    pub fn problem(&self) -> Option<String> {
        (self.message_ids.len() > MAX_IDS)
            .then(|| format!("at most {MAX_IDS} message ids per request, got {}", self.message_ids.len()))
    }
}

/// How far the asked messages are.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    /// Asked messages the service stored.
    pub stored: u64,
    /// Their deliveries (one per recipient).
    pub deliveries: u64,
    /// Deliveries in a final state: delivered (or read), or FAILED.
    pub finished: u64,
    /// Asked messages not finished: not stored, or with a delivery not final yet.
    pub unfinished_message_ids: Vec<Uuid>,
}

/// One delivery of a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryFact {
    pub recipient_id: String,
    pub channel: Channel,
    pub status: DeliveryStatus,
    pub delivered_at: Option<DateTime<Utc>>,
    /// When a router handed it on, and which.
    pub routed_at: Option<DateTime<Utc>>,
    pub routed_by: Option<String>,
}

impl DeliveryFact {
    /// Delivered (or read): a final success.
    pub fn delivered(&self) -> bool {
        self.delivered_at.is_some()
    }

    /// Finished: delivered or given up on.
    pub fn finished(&self) -> bool {
        self.delivered() || self.status == DeliveryStatus::Failed
    }
}

/// One stored message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageFact {
    pub id: Uuid,
    pub conversation_id: String,
    /// The platform's order of the message (within its conversation it is the accept order).
    pub seq: i64,
    pub created_at: DateTime<Utc>,
    pub deliveries: Vec<DeliveryFact>,
}

/// The stored ones among the asked messages (an unknown id is simply absent).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Facts {
    pub messages: Vec<MessageFact>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_many_ids_are_refused_with_the_limit() {
        let m = Messages { message_ids: vec![Uuid::nil(); MAX_IDS + 1] };
        assert!(m.problem().unwrap().contains("at most 10000"));
        assert_eq!(Messages { message_ids: vec![Uuid::nil(); MAX_IDS] }.problem(), None);
    }
}
