//! Dead letters an operator can act on: the message-service (owner of `deliveries` and the
//! outbox) answers which dead letters still stand (their delivery is still FAILED) and replays
//! them without a second delivery of anything already delivered.
//!
//! The letters themselves live on the `chat-events-dlq` topic (the control plane reads it
//! directly); a letter's id is `<partition>:<offset>` there. These endpoints only take the
//! delivery each letter names.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::channel::Channel;
use crate::events::{DeadLetter, DeliveryStatus};

/// `POST` [`StatusRequest`] -> [`StatusResponse`]: the delivery status of each letter's delivery.
pub const DLQ_STATUS_PATH: &str = "/v1/admin/dlq/status";
/// `POST` [`ReplayRequest`] -> [`ReplayResponse`]: reset the FAILED deliveries of the letters to
/// PENDING and publish them again through the outbox (one transaction); `dryRun` changes nothing.
pub const DLQ_REPLAY_PATH: &str = "/v1/admin/dlq/replay";

/// Most letters one request may name.
pub const MAX_LETTERS: usize = 10_000;

/// The delivery a dead letter names, with the letter's id on the topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LetterKey {
    /// `<partition>:<offset>` on `chat-events-dlq`.
    pub id: String,
    pub message_id: Uuid,
    pub recipient_id: String,
    pub channel: Channel,
}

impl LetterKey {
    /// The key of `letter`, stored at `id`.
    pub fn of(id: impl Into<String>, letter: &DeadLetter) -> Self {
        Self {
            id: id.into(),
            message_id: letter.event.message_id,
            recipient_id: letter.recipient.user_id.clone(),
            channel: letter.recipient.channel,
        }
    }

    /// (message, recipient, channel): the delivery, whatever letter names it.
    pub fn delivery(&self) -> (Uuid, &str, Channel) {
        (self.message_id, self.recipient_id.as_str(), self.channel)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusRequest {
    pub letters: Vec<LetterKey>,
}

impl StatusRequest {
    pub fn problem(&self) -> Option<String> {
        too_many(self.letters.len())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LetterStatus {
    pub id: String,
    /// The delivery's status now; `None` when no such delivery exists.
    pub status: Option<DeliveryStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusResponse {
    /// One per letter asked, in the order asked.
    pub letters: Vec<LetterStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplayRequest {
    pub letters: Vec<LetterKey>,
    /// Report what would be replayed and skipped; change nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Who asks (logged).
    pub by: String,
}

impl ReplayRequest {
    /// The request's problem, if it has one (the service answers it `400`).
    pub fn problem(&self) -> Option<String> {
        if self.letters.is_empty() {
            return Some("letters must name at least one dead letter".into());
        }
        if self.by.trim().is_empty() || self.by.len() > 200 {
            return Some("by must name who replays (1-200 characters)".into());
        }
        too_many(self.letters.len())
    }
}

fn too_many(n: usize) -> Option<String> {
    (n > MAX_LETTERS).then(|| format!("at most {MAX_LETTERS} letters per request, got {n}"))
}

/// A letter not replayed, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Skipped {
    #[serde(flatten)]
    pub letter: LetterKey,
    /// The delivery's status now (`None`: no such delivery).
    pub status: Option<DeliveryStatus>,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplayResponse {
    pub dry_run: bool,
    /// The letters whose delivery was (or, in a dry run, would be) reset and published again.
    pub replayed: Vec<LetterKey>,
    pub skipped: Vec<Skipped>,
    /// Outbox rows written (one per message; 0 in a dry run).
    pub outbox_rows: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> LetterKey {
        LetterKey { id: "0:1".into(), message_id: Uuid::nil(), recipient_id: "bob".into(), channel: Channel::Telegram }
    }

    #[test]
    fn replay_requests_are_checked() {
        let ok = ReplayRequest { letters: vec![key()], dry_run: false, by: "ops".into() };
        assert_eq!(ok.problem(), None);
        assert!(ReplayRequest { letters: Vec::new(), ..ok.clone() }.problem().is_some());
        assert!(ReplayRequest { by: " ".into(), ..ok.clone() }.problem().is_some());
        assert!(ReplayRequest { letters: vec![key(); MAX_LETTERS + 1], ..ok }.problem().is_some());
    }

    #[test]
    fn keys_travel_in_camel_case() {
        let v = serde_json::to_value(Skipped { letter: key(), status: None, reason: "x".into() }).unwrap();
        assert_eq!(
            (v["messageId"].as_str(), v["channel"].as_str()),
            (Some(Uuid::nil().to_string().as_str()), Some("TELEGRAM"))
        );
        assert!(v["status"].is_null());
    }
}
