//! The provider's storage: the record of every request item received (arrival order) and, per
//! idempotency key, the first answer.
//!
//! It lives in memory and is lost when the process stops. That is fine for a simulation: the
//! record is read by the drill or benchmark that ran against this process, and a provider
//! restart is not one of the faults we simulate (a real provider keeps its keys for a day or
//! more; we keep them for the life of the process, which is longer than any run).

use std::collections::HashMap;

use chat4all_contract::channel::Channel;
use chat4all_contract::provider::{
    Metadata, RecordEntry, RecordOutcome, RecordSummary, SendRequest, SendResult, SendStatus,
};
use chrono::Utc;
use uuid::Uuid;

/// The error text of a simulated rejection.
pub const REJECTED: &str = "provider rejected the request (simulated)";

/// The first answer given to a key, and what it was for.
#[derive(Debug, Clone)]
struct Remembered {
    metadata: Metadata,
    result: SendResult,
}

/// A key seen before with a different message: the request is refused, nothing is done.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("idempotency key {key:?} was used for message {first} and cannot be reused for another")]
pub struct KeyConflict {
    pub key: String,
    pub first: Uuid,
}

/// How one item is handled (decided by the caller from the faults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ItemFaults {
    /// Reject it (retryable, nothing done), unless it is a replay.
    pub reject: bool,
    /// Honour its key.
    pub idempotency: bool,
}

#[derive(Debug)]
pub struct Store {
    channel: Channel,
    entries: Vec<RecordEntry>,
    keys: HashMap<String, Remembered>,
    effects: u64,
}

impl Store {
    pub fn new(channel: Channel) -> Self {
        Self { channel, entries: Vec::new(), keys: HashMap::new(), effects: 0 }
    }

    fn push(&mut self, key: Option<String>, metadata: Metadata, outcome: RecordOutcome) {
        let seq = self.entries.len() as u64;
        self.entries.push(RecordEntry {
            seq,
            at: Utc::now(),
            channel: self.channel,
            idempotency_key: key,
            metadata,
            outcome,
        });
    }

    /// Records an item of a request that failed as a whole (outage, 500): nothing done.
    pub fn failed(&mut self, key: Option<String>, req: &SendRequest) {
        self.push(key, req.metadata.clone(), RecordOutcome::Failed);
    }

    /// Handles one item: a replay of its key's first answer, a rejection, or a new effect.
    pub fn apply(
        &mut self,
        key: Option<String>,
        req: &SendRequest,
        faults: ItemFaults,
    ) -> Result<SendResult, KeyConflict> {
        if faults.idempotency {
            if let Some(first) = key.as_deref().and_then(|k| self.keys.get(k)) {
                if first.metadata != req.metadata {
                    let conflict =
                        KeyConflict { key: key.clone().unwrap_or_default(), first: first.metadata.message_id };
                    self.push(key, req.metadata.clone(), RecordOutcome::Rejected);
                    return Err(conflict);
                }
                let result = SendResult { replayed: true, ..first.result.clone() };
                self.push(key, req.metadata.clone(), RecordOutcome::Replayed);
                return Ok(result);
            }
        }
        if faults.reject {
            // Not remembered: asking again with the same key may succeed.
            self.push(key, req.metadata.clone(), RecordOutcome::Rejected);
            return Ok(SendResult {
                status: SendStatus::Rejected,
                id: None,
                error: Some(REJECTED.into()),
                retryable: true,
                replayed: false,
            });
        }
        self.effects += 1;
        let result = SendResult {
            status: SendStatus::Accepted,
            id: Some(format!("{}-{:08}", self.channel.label(), self.effects)),
            error: None,
            retryable: false,
            replayed: false,
        };
        if faults.idempotency {
            if let Some(k) = &key {
                self.keys.insert(k.clone(), Remembered { metadata: req.metadata.clone(), result: result.clone() });
            }
        }
        self.push(key, req.metadata.clone(), RecordOutcome::Accepted);
        Ok(result)
    }

    /// The first answer a key produced.
    pub fn lookup(&self, key: &str) -> Option<SendResult> {
        self.keys.get(key).map(|r| r.result.clone())
    }

    /// The record (arrival order), only conversations starting with `prefix` if given.
    pub fn entries(&self, prefix: Option<&str>) -> Vec<RecordEntry> {
        self.entries.iter().filter(|e| matches(e, prefix)).cloned().collect()
    }

    pub fn summary(&self, prefix: Option<&str>) -> RecordSummary {
        summarize(self.entries.iter().filter(|e| matches(e, prefix)))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn matches(e: &RecordEntry, prefix: Option<&str>) -> bool {
    prefix.is_none_or(|p| e.metadata.conversation_id.starts_with(p))
}

/// Counts over record entries: requests, distinct (message, recipient) delivered, requests and
/// effects beyond the first per (message, recipient).
pub fn summarize<'a>(entries: impl IntoIterator<Item = &'a RecordEntry>) -> RecordSummary {
    // (requests, effects) per (message, recipient)
    let mut per: HashMap<(Uuid, &str), (u64, u64)> = HashMap::new();
    let mut s = RecordSummary::default();
    for e in entries {
        s.requests += 1;
        let slot = per.entry((e.metadata.message_id, e.metadata.recipient_id.as_str())).or_default();
        slot.0 += 1;
        match e.outcome {
            RecordOutcome::Accepted => {
                slot.1 += 1;
                s.accepted += 1;
            }
            RecordOutcome::Replayed => s.replayed += 1,
            RecordOutcome::Rejected => s.rejected += 1,
            RecordOutcome::Failed => s.failed += 1,
        }
    }
    for (requests, effects) in per.values() {
        s.duplicate_requests += requests - 1;
        if *effects > 0 {
            s.delivered += 1;
            s.duplicate_deliveries += effects - 1;
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn req(conversation: &str, message: Uuid, recipient: &str) -> SendRequest {
        SendRequest {
            idempotency_key: None,
            to: format!("+{recipient}"),
            text: "hi".into(),
            metadata: Metadata {
                message_id: message,
                recipient_id: recipient.into(),
                conversation_id: conversation.into(),
            },
        }
    }

    const OK: ItemFaults = ItemFaults { reject: false, idempotency: true };

    #[test]
    fn a_key_seen_before_replays_the_first_answer_and_does_nothing() {
        let mut s = Store::new(Channel::Whatsapp);
        let r = req("c1", Uuid::new_v4(), "u1");
        let first = s.apply(Some("k1".into()), &r, OK).unwrap();
        let again = s.apply(Some("k1".into()), &r, OK).unwrap();
        assert_eq!(first.status, SendStatus::Accepted);
        assert!(!first.replayed);
        assert!(again.replayed);
        assert_eq!(again.id, first.id);
        assert_eq!(s.lookup("k1").and_then(|r| r.id), first.id);
        let sum = s.summary(None);
        assert_eq!((sum.requests, sum.delivered, sum.duplicate_requests, sum.duplicate_deliveries), (2, 1, 1, 0));
        assert_eq!(s.entries(None)[1].outcome, RecordOutcome::Replayed);
    }

    #[test]
    fn without_keys_a_second_request_is_a_second_effect() {
        let mut s = Store::new(Channel::Telegram);
        let r = req("c1", Uuid::new_v4(), "u1");
        s.apply(None, &r, OK).unwrap();
        s.apply(None, &r, OK).unwrap();
        let sum = s.summary(None);
        assert_eq!((sum.requests, sum.delivered, sum.duplicate_requests, sum.duplicate_deliveries), (2, 1, 1, 1));
    }

    #[test]
    fn with_idempotency_off_a_key_does_not_protect() {
        let mut s = Store::new(Channel::Telegram);
        let r = req("c1", Uuid::new_v4(), "u1");
        let off = ItemFaults { reject: false, idempotency: false };
        let a = s.apply(Some("k".into()), &r, off).unwrap();
        let b = s.apply(Some("k".into()), &r, off).unwrap();
        assert!(!b.replayed);
        assert_ne!(a.id, b.id);
        assert_eq!(s.summary(None).duplicate_deliveries, 1);
        assert!(s.lookup("k").is_none());
    }

    #[test]
    fn a_rejection_does_nothing_and_the_key_can_succeed_later() {
        let mut s = Store::new(Channel::Instagram);
        let r = req("c1", Uuid::new_v4(), "u1");
        let rej = s.apply(Some("k".into()), &r, ItemFaults { reject: true, idempotency: true }).unwrap();
        assert_eq!(rej.status, SendStatus::Rejected);
        assert!(rej.retryable);
        assert!(s.lookup("k").is_none());
        let sum = s.summary(None);
        assert_eq!((sum.requests, sum.delivered, sum.rejected), (1, 0, 1));
        let ok = s.apply(Some("k".into()), &r, OK).unwrap();
        assert_eq!(ok.status, SendStatus::Accepted);
        assert!(!ok.replayed);
        let sum = s.summary(None);
        assert_eq!((sum.requests, sum.delivered, sum.duplicate_requests, sum.duplicate_deliveries), (2, 1, 1, 0));
    }

    #[test]
    fn a_key_reused_for_another_message_is_refused() {
        let mut s = Store::new(Channel::Whatsapp);
        s.apply(Some("k".into()), &req("c1", Uuid::new_v4(), "u1"), OK).unwrap();
        let err = s.apply(Some("k".into()), &req("c1", Uuid::new_v4(), "u1"), OK).unwrap_err();
        assert_eq!(err.key, "k");
        assert_eq!(s.summary(None).delivered, 1);
    }

    #[test]
    fn failed_requests_are_recorded_without_effect() {
        let mut s = Store::new(Channel::Whatsapp);
        let r = req("c1", Uuid::new_v4(), "u1");
        s.failed(Some("k".into()), &r);
        let sum = s.summary(None);
        assert_eq!((sum.requests, sum.delivered, sum.failed), (1, 0, 1));
        assert!(s.lookup("k").is_none());
    }

    #[test]
    fn summary_and_record_filter_by_conversation_prefix() {
        let mut s = Store::new(Channel::Whatsapp);
        let m1 = Uuid::new_v4();
        s.apply(None, &req("run-a-1", m1, "u1"), OK).unwrap();
        s.apply(None, &req("run-a-1", m1, "u1"), OK).unwrap();
        s.apply(None, &req("run-a-2", Uuid::new_v4(), "u2"), OK).unwrap();
        s.apply(None, &req("run-b-1", Uuid::new_v4(), "u1"), OK).unwrap();
        let a = s.summary(Some("run-a-"));
        assert_eq!((a.requests, a.delivered, a.duplicate_deliveries), (3, 2, 1));
        let b = s.summary(Some("run-b-"));
        assert_eq!((b.requests, b.delivered, b.duplicate_deliveries), (1, 1, 0));
        assert_eq!(s.summary(None).requests, 4);
        assert_eq!(s.entries(Some("run-b-")).len(), 1);
        assert_eq!(s.entries(Some("run-b-"))[0].seq, 3, "seq is arrival order across the provider");
        assert_eq!(s.summary(Some("nothing")), RecordSummary::default());
    }
}
