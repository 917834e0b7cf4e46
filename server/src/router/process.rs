//! Routing one batch of chat events: dedup, resolve, hand each recipient to its channel's topic
//! (`deliveries-<channel>`), record the hand-off, dead-letter the unresolvable. Nothing here
//! waits for a connector: a channel whose connector or provider is down holds only its topic.

use std::time::{Duration, Instant};

use chrono::Utc;
use rdkafka::message::{Message, OwnedMessage};
use sqlx::PgPool;

use super::metrics::RouterMetrics;
use super::store::{self, Key};
use crate::channel::Channel;
use crate::config::{topics, RouterArgs};
use crate::connector::wire::{Handoff, HandoffRecipient};
use crate::dead_letters::DeadLetters;
use crate::events::ChatEvent;
use crate::kafka::{BatchWork, OutRecord, Producer, REQUEST_ID_HEADER};
use crate::metrics::ChannelResultLabels;
use crate::retry::{self, Backoff, Interrupted};
use crate::shutdown::Shutdown;
use crate::user::resolve::Resolution;

pub struct Router {
    pub pool: PgPool,
    pub producer: Producer,
    pub args: RouterArgs,
    pub instance: String,
    pub metrics: RouterMetrics,
    pub dead_letters: DeadLetters,
}

/// One hand-off record to produce: an event's recipients on one channel.
struct Out {
    topic: String,
    key: String,
    payload: Vec<u8>,
    request_id: Option<String>,
    channel: Channel,
    keys: Vec<Key>,
}

impl BatchWork for Router {
    async fn work(&self, batch: &[OwnedMessage], shutdown: &Shutdown) -> Result<(), Interrupted> {
        self.route_batch(batch, shutdown).await
    }
}

impl Router {
    /// Routes every recipient of every event in `batch`. Returns only when each one is handed to
    /// its channel's topic (acknowledged by the broker) and recorded, dead-lettered, or skipped
    /// as already routed, so the caller may store offsets.
    pub async fn route_batch(&self, batch: &[OwnedMessage], shutdown: &Shutdown) -> Result<(), Interrupted> {
        let start = Instant::now();
        let mut events: Vec<(ChatEvent, Option<String>)> = Vec::with_capacity(batch.len());
        for m in batch {
            match serde_json::from_slice::<ChatEvent>(m.payload().unwrap_or_default()) {
                Ok(ev) => {
                    tracing::debug!(request_id = request_id(m).unwrap_or("-"), message_id = %ev.message_id,
                        topic = m.topic(), partition = m.partition(), offset = m.offset(), "routing event");
                    events.push((ev, request_id(m).map(str::to_string)));
                }
                Err(e) => {
                    self.metrics.malformed.inc();
                    tracing::warn!(topic = m.topic(), partition = m.partition(), offset = m.offset(), error = %e,
                        "malformed chat event: dead-lettered");
                    let key = m.key().map(|k| String::from_utf8_lossy(k).into_owned()).unwrap_or_default();
                    let payload = m.payload().unwrap_or_default().to_vec();
                    self.until_ok(shutdown, "dead-lettering", || self.dead_letters.unparseable(&key, &payload)).await?;
                }
            }
        }
        let keys: Vec<Key> = events
            .iter()
            .flat_map(|(ev, _)| ev.recipients.iter().map(move |r| (ev.message_id, r.user_id.clone(), r.channel)))
            .collect();
        let routed = self.until_ok(shutdown, "dedup lookup", || store::already_routed(&self.pool, &keys)).await?;
        let pairs: Vec<(String, Channel)> = keys.iter().map(|k| (k.1.clone(), k.2)).collect();
        let resolved = self
            .until_ok(shutdown, "resolving recipients", || crate::user::resolve::resolve(&self.pool, &pairs))
            .await?;
        let mut unresolved: Vec<(&ChatEvent, Key, String)> = Vec::new();
        let mut outs: Vec<Out> = Vec::new();
        for (ev, request_id) in &events {
            // This event's recipients per channel, in the event's order.
            let mut per_channel: Vec<(Channel, Vec<HandoffRecipient>, Vec<Key>)> = Vec::new();
            for r in &ev.recipients {
                let key: Key = (ev.message_id, r.user_id.clone(), r.channel);
                if routed.contains(&key) {
                    self.metrics.dedup_skipped.inc();
                    continue;
                }
                let address = match resolved.get(&(key.1.clone(), key.2)) {
                    Some(Resolution::Unknown(reason)) => {
                        unresolved.push((ev, key, reason.clone()));
                        continue;
                    }
                    Some(Resolution::Address(a)) => Some(a.clone()),
                    None => None,
                };
                let slot = match per_channel.iter().position(|(c, _, _)| *c == r.channel) {
                    Some(i) => i,
                    None => {
                        per_channel.push((r.channel, Vec::new(), Vec::new()));
                        per_channel.len() - 1
                    }
                };
                per_channel[slot].1.push(HandoffRecipient { user_id: r.user_id.clone(), address });
                per_channel[slot].2.push(key);
            }
            for (channel, recipients, keys) in per_channel {
                let handoff = Handoff { event: ev.clone(), channel, recipients, router: self.instance.clone() };
                let payload = match serde_json::to_vec(&handoff) {
                    Ok(p) => p,
                    Err(e) => {
                        // A ChatEvent we just parsed always serializes; keep going if not.
                        tracing::error!(error = %e, "hand-off not serializable");
                        continue;
                    }
                };
                outs.push(Out {
                    topic: topics::deliveries(channel),
                    key: ev.conversation_id.clone(),
                    payload,
                    request_id: request_id.clone(),
                    channel,
                    keys,
                });
            }
        }
        self.hand_off(&outs, shutdown).await?;
        let handed: Vec<Key> = outs.iter().flat_map(|o| o.keys.iter().cloned()).collect();
        self.until_ok(shutdown, "recording hand-offs", || {
            store::mark_routed(&self.pool, &handed, &self.instance, None)
        })
        .await?;
        for o in &outs {
            self.metrics
                .deliveries
                .get_or_create(&ChannelResultLabels { channel: o.channel.label().into(), result: "delivered".into() })
                .inc_by(o.keys.len() as u64);
        }
        // Recipients that resolve to no identity fail alone, like a provider rejection.
        for (ev, key, reason) in unresolved {
            let request_id = events.iter().find(|(e, _)| e.message_id == key.0).and_then(|(_, r)| r.as_deref());
            tracing::warn!(message_id = %key.0, recipient = %key.1, request_id = request_id.unwrap_or("-"),
                %reason, "recipient failed");
            let recipient = crate::events::Recipient { user_id: key.1.clone(), channel: key.2 };
            self.until_ok(shutdown, "dead-lettering", || self.dead_letters.give_up(ev, recipient.clone(), &reason))
                .await?;
            self.until_ok(shutdown, "recording a failure", || {
                store::mark_routed(&self.pool, std::slice::from_ref(&key), &self.instance, Some(&reason))
            })
            .await?;
            self.metrics
                .deliveries
                .get_or_create(&ChannelResultLabels { channel: key.2.label().into(), result: "failed".into() })
                .inc();
        }
        let now = Utc::now();
        for (ev, _) in &events {
            let age = (now - ev.created_at).to_std().unwrap_or_default();
            self.metrics.end_to_end_seconds.observe(age.as_secs_f64());
        }
        self.metrics.events.inc_by(events.len() as u64);
        self.metrics.batch_seconds.observe(start.elapsed().as_secs_f64());
        Ok(())
    }

    /// Produces `outs` in order and waits for every acknowledgement; what the broker did not
    /// acknowledge is sent again (a repeat is harmless: the connector's ledger answers it).
    async fn hand_off(&self, outs: &[Out], shutdown: &Shutdown) -> Result<(), Interrupted> {
        let records: Vec<OutRecord<'_>> = outs
            .iter()
            .map(|o| OutRecord {
                topic: &o.topic,
                key: &o.key,
                payload: &o.payload,
                request_id: o.request_id.as_deref(),
            })
            .collect();
        let mut from = 0;
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        while from < records.len() {
            let (acked, err) = self.producer.send_all(&records[from..]).await;
            from += acked;
            let Some(e) = err else { break };
            tracing::warn!(
                error = format!("{e:#}"),
                left = records.len() - from,
                "hand-off not acknowledged; retrying"
            );
            self.metrics.retries.inc();
            backoff.wait(shutdown).await?;
        }
        Ok(())
    }

    /// Retries `op` with backoff until it succeeds; gives up only on shutdown.
    async fn until_ok<T, E, F, Fut>(&self, shutdown: &Shutdown, what: &str, op: F) -> Result<T, Interrupted>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
        E: std::fmt::Display,
    {
        retry::until_ok(shutdown, what, op).await
    }
}

/// The api-gateway's request id a chat event carries as a Kafka header, if any.
fn request_id(m: &OwnedMessage) -> Option<&str> {
    use rdkafka::message::Headers;
    m.headers()?.iter().find(|h| h.key == REQUEST_ID_HEADER).and_then(|h| std::str::from_utf8(h.value?).ok())
}
