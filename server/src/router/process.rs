//! Routing one batch of chat events: dedup, deliver per channel, record, dead-letter.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use chrono::Utc;
use rdkafka::message::{Message, OwnedMessage};
use sqlx::PgPool;

use super::batch::{self, Pending};
use super::metrics::RouterMetrics;
use super::store::{self, Key};
use crate::channel::Channel;
use crate::config::{topics, RouterArgs};
use crate::connector::wire::{DeliveryItem, DeliveryRequest, DeliveryResponse, DELIVERIES_PATH};
use crate::events::ChatEvent;
use crate::kafka::{Producer, REQUEST_ID_HEADER};
use crate::metrics::ChannelResultLabels;
use crate::shutdown::Shutdown;
use crate::user::resolve::Resolution;

pub struct Router {
    pub pool: PgPool,
    pub producer: Producer,
    pub http: reqwest::Client,
    pub args: RouterArgs,
    pub instance: String,
    pub metrics: RouterMetrics,
}

/// Why a batch was not finished: its offsets are not stored and the next owner redoes it.
#[derive(Debug, thiserror::Error)]
#[error("batch interrupted by shutdown")]
pub struct Interrupted;

struct Work<'a> {
    key: Key,
    event: &'a ChatEvent,
    /// The identity a user-id recipient resolved to (see `user::resolve`).
    address: Option<String>,
}

impl Router {
    /// Routes every recipient of every event in `batch`. Returns only when each one is
    /// delivered, dead-lettered, or skipped as already routed, so the caller may store offsets.
    pub async fn route_batch(&self, batch: &[OwnedMessage], shutdown: &Shutdown) -> Result<(), Interrupted> {
        let start = Instant::now();
        let mut events = Vec::with_capacity(batch.len());
        // Message id -> the api-gateway's request id, for the log lines about its recipients.
        let mut request_ids: std::collections::HashMap<uuid::Uuid, String> = std::collections::HashMap::new();
        for m in batch {
            match serde_json::from_slice::<ChatEvent>(m.payload().unwrap_or_default()) {
                Ok(ev) => {
                    tracing::debug!(request_id = request_id(m).unwrap_or("-"), message_id = %ev.message_id,
                        topic = m.topic(), partition = m.partition(), offset = m.offset(), "routing event");
                    if let Some(id) = request_id(m) {
                        request_ids.insert(ev.message_id, id.to_string());
                    }
                    events.push(ev)
                }
                Err(e) => {
                    self.metrics.malformed.inc();
                    tracing::warn!(topic = m.topic(), partition = m.partition(), offset = m.offset(), error = %e,
                        "malformed chat event: dead-lettered");
                    let key = m.key().map(|k| String::from_utf8_lossy(k).into_owned()).unwrap_or_default();
                    let payload = m.payload().unwrap_or_default().to_vec();
                    self.until_ok(shutdown, "dead-lettering", || self.dead_letter_raw(&key, &payload)).await?;
                }
            }
        }
        let work: Vec<Work<'_>> = events
            .iter()
            .flat_map(|ev| {
                ev.recipients.iter().map(move |r| Work {
                    key: (ev.message_id, r.user_id.clone(), r.channel),
                    event: ev,
                    address: None,
                })
            })
            .collect();
        let keys: Vec<Key> = work.iter().map(|w| w.key.clone()).collect();
        let routed = self.until_ok(shutdown, "dedup lookup", || store::already_routed(&self.pool, &keys)).await?;
        let pairs: Vec<(String, Channel)> = keys.iter().map(|k| (k.1.clone(), k.2)).collect();
        let resolved = self
            .until_ok(shutdown, "resolving recipients", || crate::user::resolve::resolve(&self.pool, &pairs))
            .await?;
        let mut unresolved: Vec<(Work<'_>, String)> = Vec::new();
        let mut by_channel: BTreeMap<Channel, Vec<Work<'_>>> = BTreeMap::new();
        for mut w in work {
            if routed.contains(&w.key) {
                self.metrics.dedup_skipped.inc();
                continue;
            }
            match resolved.get(&(w.key.1.clone(), w.key.2)) {
                Some(Resolution::Unknown(reason)) => {
                    let reason = reason.clone();
                    unresolved.push((w, reason));
                }
                Some(Resolution::Address(a)) => {
                    w.address = Some(a.clone());
                    by_channel.entry(w.key.2).or_default().push(w);
                }
                None => by_channel.entry(w.key.2).or_default().push(w),
            }
        }
        let outcomes = futures::future::join_all(
            by_channel.into_iter().map(|(channel, items)| self.deliver_channel(channel, items, shutdown)),
        )
        .await;
        for outcome in outcomes {
            let (delivered, failed) = outcome?;
            self.until_ok(shutdown, "recording deliveries", || {
                store::mark_routed(&self.pool, &delivered, &self.instance, None)
            })
            .await?;
            for (w, reason) in failed {
                self.until_ok(shutdown, "dead-lettering", || self.dead_letter(w.event, &w.key, &reason)).await?;
                self.until_ok(shutdown, "recording a failure", || {
                    store::mark_routed(&self.pool, std::slice::from_ref(&w.key), &self.instance, Some(&reason))
                })
                .await?;
            }
        }
        // Recipients that resolve to no identity fail alone, like a provider rejection.
        for (w, reason) in unresolved {
            tracing::warn!(message_id = %w.key.0, recipient = %w.key.1, request_id = request_ids.get(&w.key.0).map(String::as_str).unwrap_or("-"),
                %reason, "recipient failed");
            self.until_ok(shutdown, "dead-lettering", || self.dead_letter(w.event, &w.key, &reason)).await?;
            self.until_ok(shutdown, "recording a failure", || {
                store::mark_routed(&self.pool, std::slice::from_ref(&w.key), &self.instance, Some(&reason))
            })
            .await?;
        }
        let now = Utc::now();
        for ev in &events {
            let age = (now - ev.created_at).to_std().unwrap_or_default();
            self.metrics.end_to_end_seconds.observe(age.as_secs_f64());
        }
        self.metrics.events.inc_by(events.len() as u64);
        self.metrics.batch_seconds.observe(start.elapsed().as_secs_f64());
        Ok(())
    }

    /// Delivers one channel's items in order. A rejection uses up one of `attempts` (then the
    /// item is dead-lettered); items the connector holds back (behind an earlier failure of the
    /// same conversation and recipient, or an outage) are asked again, in order, at no cost; an
    /// unreachable connector is an outage, retried until it returns (or shutdown).
    async fn deliver_channel<'a>(
        &self,
        channel: Channel,
        items: Vec<Work<'a>>,
        shutdown: &Shutdown,
    ) -> Result<(Vec<Key>, Vec<(Work<'a>, String)>), Interrupted> {
        let label = channel.label();
        let url = format!("{}{}", self.args.connector_url(channel), DELIVERIES_PATH);
        let mut pending: Vec<Pending<Work<'a>>> = items.into_iter().map(Pending::new).collect();
        let mut delivered = Vec::new();
        let mut failed = Vec::new();
        let initial_backoff = Duration::from_millis(50);
        let mut backoff = initial_backoff;
        while !pending.is_empty() {
            let request = DeliveryRequest {
                items: pending
                    .iter()
                    .map(|p| DeliveryItem {
                        message_id: p.item.key.0,
                        recipient_id: p.item.key.1.clone(),
                        channel,
                        conversation_id: p.item.event.conversation_id.clone(),
                        text: p.item.event.content.text.clone(),
                        address: p.item.address.clone(),
                    })
                    .collect(),
                unordered: self.args.unsafe_no_holdback,
            };
            match self.call(&url, &request).await {
                Ok(resp) if batch::answers(&pending, &resp.results, |w| (w.key.0, w.key.1.as_str())) => {
                    let settled = batch::settle(&mut pending, resp.results, self.args.attempts);
                    let count = |result: &str, n: usize| {
                        self.metrics
                            .deliveries
                            .get_or_create(&ChannelResultLabels { channel: label.into(), result: result.into() })
                            .inc_by(n as u64)
                    };
                    count("delivered", settled.delivered.len());
                    count("failed", settled.failed.len());
                    let progressed = settled.progressed();
                    delivered.extend(settled.delivered.into_iter().map(|w| w.key));
                    failed.extend(settled.failed);
                    if pending.is_empty() {
                        break;
                    }
                    if progressed {
                        backoff = initial_backoff;
                    }
                    tracing::debug!(
                        channel = label,
                        rejected = settled.rejected,
                        held = settled.held,
                        pending = pending.len(),
                        "asking the connector again"
                    );
                }
                Ok(_) => tracing::warn!(%url, "connector answered results that do not match the items; retrying"),
                Err(e) => tracing::warn!(%url, error = format!("{e:#}"), "connector unavailable; retrying"),
            }
            self.metrics.retries.inc();
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = shutdown.wait() => return Err(Interrupted),
            }
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
        Ok((delivered, failed))
    }

    async fn call(&self, url: &str, request: &DeliveryRequest) -> anyhow::Result<DeliveryResponse> {
        let resp = self.http.post(url).json(request).send().await?;
        if !resp.status().is_success() {
            let status = resp.status();
            let body = resp.text().await.unwrap_or_default();
            return Err(anyhow!("{status}: {body}"));
        }
        Ok(resp.json().await?)
    }

    async fn dead_letter(&self, event: &ChatEvent, key: &Key, reason: &str) -> anyhow::Result<()> {
        let letter = crate::events::DeadLetter {
            event: event.clone(),
            recipient: crate::events::Recipient { user_id: key.1.clone(), channel: key.2 },
            reason: reason.to_string(),
            instance: self.instance.clone(),
            at: Utc::now(),
        };
        self.producer.send(topics::DEAD_LETTERS, &event.conversation_id, &serde_json::to_vec(&letter)?).await?;
        self.metrics.dead_lettered.inc();
        Ok(())
    }

    async fn dead_letter_raw(&self, key: &str, payload: &[u8]) -> anyhow::Result<()> {
        self.producer.send(topics::DEAD_LETTERS, key, payload).await?;
        self.metrics.dead_lettered.inc();
        Ok(())
    }

    /// Retries `op` with backoff until it succeeds; gives up only on shutdown.
    async fn until_ok<T, E, F, Fut>(&self, shutdown: &Shutdown, what: &str, mut op: F) -> Result<T, Interrupted>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
        E: std::fmt::Display,
    {
        let mut backoff = Duration::from_millis(100);
        loop {
            match op().await {
                Ok(v) => return Ok(v),
                Err(e) => tracing::warn!(error = %e, "{what} failed; retrying"),
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = shutdown.wait() => return Err(Interrupted),
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }
}

/// The api-gateway's request id a chat event carries as a Kafka header, if any.
fn request_id(m: &OwnedMessage) -> Option<&str> {
    use rdkafka::message::Headers;
    m.headers()?.iter().find(|h| h.key == REQUEST_ID_HEADER).and_then(|h| std::str::from_utf8(h.value?).ok())
}
