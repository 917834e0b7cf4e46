//! The connector's delivery API, shared by the connector (server) and the router (client).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::channel::Channel;

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
    /// Test-only (the router's `CHAT4ALL_UNSAFE_NO_HOLDBACK`): send every item at once, with no
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
