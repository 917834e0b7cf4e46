//! Accepted vs delivered vs delivered twice: the one delivery count of the drill, the bench and
//! the tests. The providers' records (read over their HTTP API, [`crate::providers`]) are the
//! ground truth: a delivery counts only when the message-service says DELIVERED (its admin
//! deliveries facts, [`crate::admin::Admin::delivery_facts`]) *and* a provider's record holds an
//! effect for it; requests and effects beyond the first per (message, recipient, channel) are
//! `duplicateRequests` and `duplicateDeliveries`; `orderViolations` judge first effects against
//! `seq`, the order the platform accepted each conversation's messages in.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::time::Instant;
use uuid::Uuid;

use chat4all_contract::admin::deliveries::MessageFact;
use chat4all_contract::provider::RecordEntry;

use crate::admin::{Admin, AdminError};
use crate::providers;

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RecipientCount {
    pub recipient: String,
    pub channel: String,
    /// Messages accepted by the API for this recipient.
    pub accepted: u64,
    /// DELIVERED (or READ) and an effect in the provider's record.
    pub delivered: u64,
    /// Provider requests beyond one per message (retries, replays: harmless with keys).
    pub duplicate_requests: u64,
    /// Provider effects beyond one per message (the recipient got it twice).
    pub duplicate_deliveries: u64,
    pub failed: u64,
    pub lost: u64,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    pub accepted_messages: u64,
    /// Accepted messages the messages table holds (should be all).
    pub stored_messages: u64,
    pub recipients: Vec<RecipientCount>,
    pub delivered: u64,
    pub duplicate_requests: u64,
    pub duplicate_deliveries: u64,
    /// Per (conversation, recipient): first effects of consecutive messages the other way round.
    pub order_violations: u64,
    pub lost: u64,
    pub failed: u64,
}

/// Waits until every delivery of `ids` is final (delivered or FAILED) or `timeout` passes;
/// returns whether all were. Each poll asks only about the messages not finished yet.
pub async fn wait_finished(admin: &Admin, ids: &[Uuid], timeout: Duration) -> Result<bool, AdminError> {
    let deadline = Instant::now() + timeout;
    let mut pending: Vec<Uuid> = ids.to_vec();
    loop {
        pending = admin.delivery_progress(&pending).await?.unfinished_message_ids;
        if pending.is_empty() {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(250).min(deadline - Instant::now())).await;
    }
}

/// Each message's position in the platform's order (`seq`).
pub fn platform_order(facts: &[MessageFact]) -> HashMap<Uuid, i64> {
    facts.iter().map(|m| (m.id, m.seq)).collect()
}

/// Counts per recipient for the accepted `ids`; `facts` what the message-service holds of them;
/// `recipients` are (user id, channel) pairs every message was addressed to; `record` the
/// providers' entries of the run.
pub fn count(ids: &[Uuid], facts: &[MessageFact], recipients: &[(String, String)], record: &[RecordEntry]) -> Counts {
    let mut c = Counts { accepted_messages: ids.len() as u64, ..Counts::default() };
    let truth = providers::tally(record);
    let mut per: Vec<RecipientCount> = recipients
        .iter()
        .map(|(r, ch)| RecipientCount {
            recipient: r.clone(),
            channel: ch.clone(),
            accepted: ids.len() as u64,
            ..RecipientCount::default()
        })
        .collect();
    let wanted: std::collections::HashSet<Uuid> = ids.iter().copied().collect();
    for m in facts.iter().filter(|m| wanted.contains(&m.id)) {
        c.stored_messages += 1;
        for d in &m.deliveries {
            let Some(p) = per.iter_mut().find(|p| p.recipient == d.recipient_id && p.channel == d.channel.as_str())
            else {
                continue;
            };
            let on_device = truth.get(&(d.channel, m.id, d.recipient_id.clone())).is_some_and(|t| t.effects > 0);
            p.delivered += u64::from(d.delivered() && on_device);
            p.failed += u64::from(d.status == chat4all_contract::events::DeliveryStatus::Failed);
        }
    }
    for ((channel, m, r), t) in &truth {
        if !wanted.contains(m) {
            continue;
        }
        if let Some(p) = per.iter_mut().find(|p| &p.recipient == r && p.channel == channel.as_str()) {
            p.duplicate_requests += t.requests.saturating_sub(1);
            p.duplicate_deliveries += t.effects.saturating_sub(1);
        }
    }
    for p in &mut per {
        p.lost = p.accepted.saturating_sub(p.delivered);
        c.delivered += p.delivered;
        c.duplicate_requests += p.duplicate_requests;
        c.duplicate_deliveries += p.duplicate_deliveries;
        c.failed += p.failed;
        c.lost += p.lost;
    }
    c.order_violations = providers::order_violations(record, &platform_order(facts));
    c.recipients = per;
    c
}

/// The first delivery routed by one of `instances` at or after `after` (when a survivor
/// processed its first event), with the instance.
pub fn first_routed(
    facts: &[MessageFact],
    instances: &[String],
    after: DateTime<Utc>,
) -> Option<(DateTime<Utc>, String)> {
    facts
        .iter()
        .flat_map(|m| &m.deliveries)
        .filter_map(|d| Some((d.routed_at?, d.routed_by.as_ref()?)))
        .filter(|(at, by)| *at >= after && instances.contains(by))
        .min_by_key(|(at, _)| *at)
        .map(|(at, by)| (at, by.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat4all_contract::admin::deliveries::DeliveryFact;
    use chat4all_contract::channel::Channel;
    use chat4all_contract::events::DeliveryStatus;

    fn fact(id: Uuid, seq: i64, status: DeliveryStatus, routed: Option<(i64, &str)>) -> MessageFact {
        let t0 = DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap();
        MessageFact {
            id,
            conversation_id: "c".into(),
            seq,
            created_at: t0,
            deliveries: vec![DeliveryFact {
                recipient_id: "r".into(),
                channel: Channel::Whatsapp,
                status,
                delivered_at: (status == DeliveryStatus::Delivered).then_some(t0),
                routed_at: routed.map(|(ms, _)| t0 + chrono::Duration::milliseconds(ms)),
                routed_by: routed.map(|(_, by)| by.to_string()),
            }],
        }
    }

    #[test]
    fn without_a_providers_effect_a_delivered_status_is_lost_and_unstored_messages_count_as_lost() {
        let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let facts = vec![fact(a, 1, DeliveryStatus::Delivered, None), fact(b, 2, DeliveryStatus::Failed, None)];
        let counts = count(&[a, b, c], &facts, &[("r".into(), "WHATSAPP".into())], &[]);
        assert_eq!((counts.accepted_messages, counts.stored_messages), (3, 2));
        // The status says DELIVERED for a, but no provider recorded it: not delivered.
        assert_eq!((counts.delivered, counts.failed, counts.lost), (0, 1, 3));
    }

    #[test]
    fn the_first_routed_delivery_is_the_earliest_of_the_named_instances_after_the_moment() {
        let t0 = DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap();
        let facts = vec![
            fact(Uuid::new_v4(), 1, DeliveryStatus::Delivered, Some((100, "router-service-1"))),
            fact(Uuid::new_v4(), 2, DeliveryStatus::Delivered, Some((900, "router-service-2"))),
            fact(Uuid::new_v4(), 3, DeliveryStatus::Delivered, Some((700, "router-service-2"))),
            fact(Uuid::new_v4(), 4, DeliveryStatus::Pending, None),
        ];
        let got = first_routed(&facts, &["router-service-2".into()], t0 + chrono::Duration::milliseconds(200));
        assert_eq!(got, Some((t0 + chrono::Duration::milliseconds(700), "router-service-2".into())));
        assert_eq!(first_routed(&facts, &["router-service-3".into()], t0), None);
    }
}
