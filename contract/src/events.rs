//! Wire formats on the Kafka topics and the ops channel. Field names are camelCase like the API.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::channel::Channel;

/// Message content as accepted by the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Content {
    #[serde(rename = "type")]
    pub kind: String,
    pub text: String,
    /// Files of the file-service attached to the message (checked to exist when accepted).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub file_ids: Vec<uuid::Uuid>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Recipient {
    pub user_id: String,
    pub channel: Channel,
}

/// Published on `chat-events` (key = conversation id) once per accepted message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatEvent {
    pub event_type: String,
    pub message_id: Uuid,
    pub conversation_id: String,
    pub sender_id: String,
    pub channel: Channel,
    pub content: Content,
    pub recipients: Vec<Recipient>,
    pub created_at: DateTime<Utc>,
}

pub const MESSAGE_CREATED: &str = "message.created";

/// Delivery status of one recipient. Ordered: a status only ever moves forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum DeliveryStatus {
    Pending,
    Sent,
    Delivered,
    Read,
    Failed,
}

impl DeliveryStatus {
    /// Every status, in the order a status moves (its rank is its index here).
    pub const ALL: [DeliveryStatus; 5] = [Self::Pending, Self::Sent, Self::Delivered, Self::Read, Self::Failed];

    /// The status named `s` as stored and sent (`PENDING`, ...).
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.as_str() == s)
    }

    /// Where it stands in [`Self::ALL`]: a status only moves to a higher rank.
    pub fn rank(self) -> i32 {
        self as i32
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "PENDING",
            DeliveryStatus::Sent => "SENT",
            DeliveryStatus::Delivered => "DELIVERED",
            DeliveryStatus::Read => "READ",
            DeliveryStatus::Failed => "FAILED",
        }
    }
}

/// Published on `status-updates` (key = message id) by connectors and the router.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusUpdate {
    pub message_id: Uuid,
    pub recipient_id: String,
    pub channel: Channel,
    pub status: DeliveryStatus,
    pub at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub source: String,
}

/// One record on `status-updates`: every receipt of one connector call. Batching receipts keeps
/// the broker's record rate at the message rate instead of twice the delivery rate; order across
/// records does not matter because statuses only move forward.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReceiptBatch {
    pub updates: Vec<StatusUpdate>,
}

/// What changed in an instance's assignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RebalanceKind {
    Assigned,
    Revoked,
    /// Partitions lost without a clean revoke (session expired under us).
    Lost,
    /// The instance left the group (graceful shutdown).
    Left,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

/// Reported by every consumer instance on each rebalance, read by the control plane: the
/// rebalance timeline, and partition ownership where the broker does not return assignments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RebalanceEvent {
    pub at: DateTime<Utc>,
    pub group: String,
    pub instance: String,
    pub member_id: String,
    pub kind: RebalanceKind,
    pub partitions: Vec<TopicPartition>,
    /// The instance's whole assignment after this change.
    pub assignment: Vec<TopicPartition>,
}

/// The current assignment of an instance, kept in a Redis hash per group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssignmentReport {
    pub at: DateTime<Utc>,
    pub instance: String,
    pub member_id: String,
    pub pid: u32,
    pub assignment: Vec<TopicPartition>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_order_only_moves_forward() {
        assert!(DeliveryStatus::Pending < DeliveryStatus::Sent);
        assert!(DeliveryStatus::Sent < DeliveryStatus::Delivered);
        assert!(DeliveryStatus::Delivered < DeliveryStatus::Read);
    }

    #[test]
    fn chat_event_round_trips_in_camel_case() {
        let ev = ChatEvent {
            event_type: MESSAGE_CREATED.into(),
            message_id: Uuid::nil(),
            conversation_id: "c1".into(),
            sender_id: "s1".into(),
            channel: Channel::Whatsapp,
            content: Content { kind: "TEXT".into(), text: "hi".into(), file_ids: Vec::new() },
            recipients: vec![Recipient { user_id: "u1".into(), channel: Channel::Telegram }],
            created_at: Utc::now(),
        };
        let json = serde_json::to_string(&ev).unwrap();
        assert!(json.contains("\"conversationId\":\"c1\""));
        assert!(json.contains("\"type\":\"TEXT\""));
        assert_eq!(serde_json::from_str::<ChatEvent>(&json).unwrap(), ev);
    }
}

/// One record on `chat-events-dlq` (key = conversation id): a recipient of an event that could
/// not be delivered, after its attempts, or that resolved to no identity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    pub event: ChatEvent,
    pub recipient: Recipient,
    /// The last error (the provider's rejection, or why the recipient did not resolve).
    pub reason: String,
    /// The instance that gave up on it (`router-service-1`, or a connector's name).
    #[serde(alias = "router")]
    pub instance: String,
    pub at: DateTime<Utc>,
}
