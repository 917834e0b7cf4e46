//! What the routers hand to the connectors: one [`Handoff`] record per event and channel on
//! `deliveries-<channel>` (key = conversation id). And the connector's HTTP delivery API
//! (`POST /v1/deliveries`), which delivers the same way, for operators and tests.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::channel::Channel;
use crate::events::ChatEvent;

/// One record on `deliveries-<channel>`: the recipients of `event` on that channel, in the
/// event's order, handed over by router `router`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Handoff {
    /// The whole event as the router read it (a dead letter carries it).
    pub event: ChatEvent,
    pub channel: Channel,
    pub recipients: Vec<HandoffRecipient>,
    pub router: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HandoffRecipient {
    pub user_id: String,
    /// The address a user-id recipient resolved to (see [`DeliveryItem::address`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

impl Handoff {
    /// The items to deliver, one per recipient, in order.
    pub fn items(&self) -> Vec<DeliveryItem> {
        self.recipients
            .iter()
            .map(|r| DeliveryItem {
                message_id: self.event.message_id,
                recipient_id: r.user_id.clone(),
                channel: self.channel,
                conversation_id: self.event.conversation_id.clone(),
                text: self.event.content.text.clone(),
                address: r.address.clone(),
            })
            .collect()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryItem {
    pub message_id: Uuid,
    pub recipient_id: String,
    pub channel: Channel,
    pub conversation_id: String,
    pub text: String,
    /// The recipient's address on the channel when the recipient is a user of the user-service
    /// (resolved by the router); absent when `recipient_id` is the address itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryRequest {
    /// Delivered in this order (it is the partition's order).
    pub items: Vec<DeliveryItem>,
    /// Test-only (the connector's `CHAT4ALL_UNSAFE_NO_HOLDBACK`): send every item at once, with no
    /// hold-back behind a rejected earlier message of the same conversation and recipient.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unordered: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryResult {
    pub message_id: Uuid,
    pub recipient_id: String,
    pub ok: bool,
    /// The provider had this (message, recipient) already: nothing was sent again.
    #[serde(default)]
    pub duplicate: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Not attempted (`ok` is false): an earlier item of the same conversation and recipient
    /// failed in this request, the item is in flight elsewhere, or the provider is down. Ask
    /// again, in order; it costs no attempt.
    #[serde(default)]
    pub held_back: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryResponse {
    pub results: Vec<DeliveryResult>,
}

pub const DELIVERIES_PATH: &str = "/v1/deliveries";
