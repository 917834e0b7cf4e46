//! The messaging providers' HTTP API: what a connector calls to hand a message to WhatsApp,
//! Telegram or Instagram, and what the simulated providers of the local stack serve.
//!
//! It is shaped like the real APIs: a provider does what it is asked, twice if asked twice,
//! unless the request carries an [`IDEMPOTENCY_KEY_HEADER`] (or, in a batch, an item's
//! `idempotencyKey`) it has seen before; then it answers what it answered the first time and does
//! nothing again (`replayed: true`). Our identifiers travel as client metadata, which real APIs
//! echo back and which the simulated provider keeps in its record.
//!
//! The record (every request received, in arrival order) is the ground truth of the drills and
//! benchmarks: requests per (message, recipient), effects per (message, recipient), and the order
//! of first effects per conversation and recipient.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::channel::Channel;

/// `POST`: send one message ([`SendRequest`] -> [`SendResult`]); the key in the header.
///
/// A [`SendResult`] (accepted or rejected) comes with 200; a key reused for another message is
/// 422, bad input 400, a failed request 500 or 503 (outage), each with `{"error": ".."}`.
pub const SEND_PATH: &str = "/v1/messages";
/// `POST`: send several, in order ([`BatchRequest`] -> [`BatchResponse`]); keys per item.
pub const BATCH_PATH: &str = "/v1/messages/batch";
/// `GET /v1/messages/by-key/{key}`: what a key produced ([`SendResult`]), 404 if never seen. The
/// connector asks this before re-sending a claim whose outcome it does not know.
pub const LOOKUP_PATH: &str = "/v1/messages/by-key";
/// `GET` / `PUT` the fault injection ([`Faults`]).
pub const FAULTS_PATH: &str = "/v1/admin/faults";
/// `GET ?conversationPrefix=P`: the record ([`RecordResponse`]), arrival order.
pub const RECORD_PATH: &str = "/v1/admin/record";
/// `GET ?conversationPrefix=P`: counts over the record ([`RecordSummary`]).
pub const SUMMARY_PATH: &str = "/v1/admin/summary";

pub const IDEMPOTENCY_KEY_HEADER: &str = "Idempotency-Key";

/// Our identifiers, carried as client metadata.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    pub message_id: Uuid,
    pub recipient_id: String,
    pub conversation_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendRequest {
    /// Absent on the single-send endpoint (the header carries it) and from a connector that
    /// runs without keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// The recipient's address on the channel.
    pub to: String,
    pub text: String,
    pub metadata: Metadata,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchRequest {
    /// Processed in this order.
    pub messages: Vec<SendRequest>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SendStatus {
    /// Done: the message is on its way to the device.
    Accepted,
    /// Not done; `retryable` says whether asking again may succeed.
    Rejected,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendResult {
    pub status: SendStatus,
    /// The provider's id of the message (accepted only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default)]
    pub retryable: bool,
    /// The idempotency key was seen before: this is the first answer again, nothing was done.
    #[serde(default)]
    pub replayed: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchResponse {
    /// One per message, in the request's order.
    pub results: Vec<SendResult>,
}

/// How the simulated provider misbehaves. Rates are shares of requests (or of batch items for
/// `reject_rate`), from 0 to 1; the default is a healthy provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Faults {
    /// Added to every request.
    pub latency_ms: u64,
    /// Items rejected (retryable, nothing done).
    pub reject_rate: f64,
    /// Requests done, then answered only after `hang_ms` (past the caller's timeout).
    pub timeout_rate: f64,
    pub hang_ms: u64,
    /// Requests answered 500 without doing anything.
    pub error_rate: f64,
    /// Requests done, then answered 200 with a body that is not JSON.
    pub garbage_rate: f64,
    /// Requests done, then the connection closed in the middle of the answer.
    pub reset_rate: f64,
    /// Every request answered 503, nothing done (an outage).
    pub down: bool,
    /// Honour idempotency keys. Off: a provider without keys, which sends again what it is asked
    /// again.
    pub idempotency: bool,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            latency_ms: 0,
            reject_rate: 0.0,
            timeout_rate: 0.0,
            hang_ms: 5_000,
            error_rate: 0.0,
            garbage_rate: 0.0,
            reset_rate: 0.0,
            down: false,
            idempotency: true,
        }
    }
}

/// One request item the provider received.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordEntry {
    /// Arrival order across the provider (0, 1, 2, ...).
    pub seq: u64,
    pub at: DateTime<Utc>,
    pub channel: Channel,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    pub metadata: Metadata,
    /// What the provider did: `accepted` (a new effect), `replayed` (key seen, nothing done),
    /// `rejected` (nothing done), `failed` (the request failed before the item was looked at).
    pub outcome: RecordOutcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordOutcome {
    Accepted,
    Replayed,
    Rejected,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordResponse {
    pub entries: Vec<RecordEntry>,
}

/// Counts over the record (optionally only conversations with a prefix).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordSummary {
    /// Request items received.
    pub requests: u64,
    /// Distinct (message, recipient) with at least one effect.
    pub delivered: u64,
    /// Requests beyond the first per (message, recipient): retries, replays. Harmless with keys.
    pub duplicate_requests: u64,
    /// Effects beyond the first per (message, recipient): a device got it twice.
    pub duplicate_deliveries: u64,
    /// Items by outcome (they add up to `requests`).
    #[serde(default)]
    pub accepted: u64,
    #[serde(default)]
    pub replayed: u64,
    #[serde(default)]
    pub rejected: u64,
    #[serde(default)]
    pub failed: u64,
}

impl std::ops::AddAssign<&RecordSummary> for RecordSummary {
    /// Adds another provider's counts (the channels' records are disjoint).
    fn add_assign(&mut self, o: &RecordSummary) {
        self.requests += o.requests;
        self.delivered += o.delivered;
        self.duplicate_requests += o.duplicate_requests;
        self.duplicate_deliveries += o.duplicate_deliveries;
        self.accepted += o.accepted;
        self.replayed += o.replayed;
        self.rejected += o.rejected;
        self.failed += o.failed;
    }
}
