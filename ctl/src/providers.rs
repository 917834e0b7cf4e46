//! The simulated providers of the local stack, seen from the console: their faults, their
//! record, and the ground truth the drills and benchmarks count from it.
//!
//! What a device got is what a provider's record says it did (`accepted` entries), never what the
//! platform's own tables say: `duplicateRequests` are items beyond one per (message, recipient),
//! `duplicateDeliveries` effects beyond one, and `orderViolations` count, per (channel,
//! conversation, recipient), a first effect of message k+1 before message k's, k and k+1 being
//! consecutive in the order the platform accepted the conversation's messages (`messages.seq`,
//! the order `GET /api/v1/conversations/{id}/messages` lists) among the messages with an effect.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;
use chat4all_contract::channel::Channel;
use chat4all_contract::provider::{
    Faults, RecordEntry, RecordOutcome, RecordResponse, RecordSummary, FAULTS_PATH, RECORD_PATH, SUMMARY_PATH,
};
use serde::Serialize;
use uuid::Uuid;

use crate::control::SupervisorFile;

/// The providers' default ports (before the stack's port offset).
pub fn default_port(channel: Channel) -> u16 {
    match channel {
        Channel::Whatsapp => 8075,
        Channel::Telegram => 8076,
        Channel::Instagram => 8077,
    }
}

/// The providers of one stack, by channel.
#[derive(Debug, Clone)]
pub struct Providers {
    http: reqwest::Client,
    urls: Vec<(Channel, String)>,
}

impl Providers {
    pub fn new(urls: Vec<(Channel, String)>, timeout: Duration) -> Self {
        let http = reqwest::Client::builder().timeout(timeout).build().unwrap_or_default();
        Self { http, urls }
    }

    /// The providers a running supervisor wrote down, else the defaults shifted by
    /// `CHAT4ALL_PORT_OFFSET`.
    pub fn of_stack(info: Option<&SupervisorFile>, timeout: Duration) -> Self {
        let offset: u16 = std::env::var("CHAT4ALL_PORT_OFFSET").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
        let urls = Channel::ALL
            .into_iter()
            .map(|ch| {
                let url = info
                    .and_then(|i| i.provider_urls.get(ch.label()).cloned())
                    .unwrap_or_else(|| format!("http://127.0.0.1:{}", default_port(ch) + offset));
                (ch, url)
            })
            .collect();
        Self::new(urls, timeout)
    }

    pub fn channels(&self) -> Vec<Channel> {
        self.urls.iter().map(|(c, _)| *c).collect()
    }

    pub fn url(&self, channel: Channel) -> anyhow::Result<&str> {
        self.urls
            .iter()
            .find(|(c, _)| *c == channel)
            .map(|(_, u)| u.as_str())
            .with_context(|| format!("no provider for {channel}"))
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, channel: Channel, path: &str) -> anyhow::Result<T> {
        let url = format!("{}{path}", self.url(channel)?);
        let resp = self.http.get(&url).send().await.with_context(|| format!("the {channel} provider ({url})"))?;
        let status = resp.status();
        let body = resp.text().await.with_context(|| format!("reading {url}"))?;
        if !status.is_success() {
            anyhow::bail!("the {channel} provider answered {status} to GET {path}: {body}");
        }
        serde_json::from_str(&body).with_context(|| format!("decoding the answer of {url}"))
    }

    pub async fn faults(&self, channel: Channel) -> anyhow::Result<Faults> {
        self.get(channel, FAULTS_PATH).await
    }

    pub async fn set_faults(&self, channel: Channel, faults: &Faults) -> anyhow::Result<Faults> {
        let url = format!("{}{FAULTS_PATH}", self.url(channel)?);
        let resp =
            self.http.put(&url).json(faults).send().await.with_context(|| format!("the {channel} provider ({url})"))?;
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            anyhow::bail!("the {channel} provider refused the faults ({status}): {body}");
        }
        serde_json::from_str(&body).with_context(|| format!("decoding the answer of {url}"))
    }

    pub async fn summary(&self, channel: Channel, prefix: Option<&str>) -> anyhow::Result<RecordSummary> {
        self.get(channel, &with_prefix(SUMMARY_PATH, prefix)).await
    }

    pub async fn record(&self, channel: Channel, prefix: Option<&str>) -> anyhow::Result<Vec<RecordEntry>> {
        let r: RecordResponse = self.get(channel, &with_prefix(RECORD_PATH, prefix)).await?;
        Ok(r.entries)
    }

    /// Every provider's record for `prefix` (entries keep their channel).
    pub async fn records(&self, prefix: Option<&str>) -> anyhow::Result<Vec<RecordEntry>> {
        let mut all = Vec::new();
        for ch in self.channels() {
            all.extend(self.record(ch, prefix).await?);
        }
        Ok(all)
    }

    /// Sets `reject_rate` on every provider for a run; [`FaultsRestore::restore`] puts the
    /// previous faults back.
    pub async fn with_reject_rate(&self, rate: f64) -> anyhow::Result<FaultsRestore> {
        let mut previous = Vec::new();
        for ch in self.channels() {
            let before = self.faults(ch).await?;
            self.set_faults(ch, &Faults { reject_rate: rate, ..before.clone() }).await?;
            previous.push((ch, before));
        }
        Ok(FaultsRestore { providers: self.clone(), previous })
    }
}

/// The faults to put back after a run.
#[must_use = "restore() puts the previous faults back"]
pub struct FaultsRestore {
    providers: Providers,
    previous: Vec<(Channel, Faults)>,
}

impl FaultsRestore {
    pub async fn restore(self) -> anyhow::Result<()> {
        for (ch, f) in &self.previous {
            self.providers.set_faults(*ch, f).await?;
        }
        Ok(())
    }
}

fn with_prefix(path: &str, prefix: Option<&str>) -> String {
    match prefix.filter(|p| !p.is_empty()) {
        Some(p) => format!("{path}?conversationPrefix={}", urlencode(p)),
        None => path.to_string(),
    }
}

/// Percent-encodes everything but unreserved characters.
fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Requests and effects of one (channel, message, recipient).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyTally {
    pub requests: u64,
    pub effects: u64,
}

/// The ground truth of a run, from the providers' records.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroundTruth {
    /// Request items the providers received.
    pub requests: u64,
    /// Distinct (message, recipient) with at least one effect.
    pub delivered: u64,
    pub duplicate_requests: u64,
    pub duplicate_deliveries: u64,
    pub order_violations: u64,
}

/// Requests and effects per (channel, message, recipient).
pub fn tally(entries: &[RecordEntry]) -> HashMap<(Channel, Uuid, String), KeyTally> {
    let mut per: HashMap<(Channel, Uuid, String), KeyTally> = HashMap::new();
    for e in entries {
        let t = per.entry((e.channel, e.metadata.message_id, e.metadata.recipient_id.clone())).or_default();
        t.requests += 1;
        if e.outcome == RecordOutcome::Accepted {
            t.effects += 1;
        }
    }
    per
}

/// The counts over `entries`; `order` is each message's position in its conversation as the
/// platform accepted it (messages absent from it are not judged for order).
pub fn ground_truth(entries: &[RecordEntry], order: &HashMap<Uuid, i64>) -> GroundTruth {
    let mut g = GroundTruth { requests: entries.len() as u64, ..GroundTruth::default() };
    for t in tally(entries).values() {
        g.duplicate_requests += t.requests.saturating_sub(1);
        if t.effects > 0 {
            g.delivered += 1;
            g.duplicate_deliveries += t.effects - 1;
        }
    }
    g.order_violations = order_violations(entries, order);
    g
}

/// Per (channel, conversation, recipient): consecutive messages (by `order`) among those with an
/// effect whose first effects arrived the other way round.
pub fn order_violations(entries: &[RecordEntry], order: &HashMap<Uuid, i64>) -> u64 {
    // (channel, conversation, recipient) -> message -> arrival seq of its first effect
    let mut first: HashMap<(Channel, &str, &str), HashMap<Uuid, u64>> = HashMap::new();
    for e in entries.iter().filter(|e| e.outcome == RecordOutcome::Accepted) {
        let m = e.metadata.message_id;
        if !order.contains_key(&m) {
            continue;
        }
        let group = first
            .entry((e.channel, e.metadata.conversation_id.as_str(), e.metadata.recipient_id.as_str()))
            .or_default();
        let slot = group.entry(m).or_insert(e.seq);
        *slot = (*slot).min(e.seq);
    }
    let mut violations = 0;
    for group in first.values() {
        let mut seq: Vec<(i64, u64)> = group.iter().map(|(m, at)| (order[m], *at)).collect();
        seq.sort_unstable();
        violations += seq.windows(2).filter(|w| w[1].1 < w[0].1).count() as u64;
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat4all_contract::provider::Metadata;

    fn entry(seq: u64, channel: Channel, conv: &str, m: Uuid, r: &str, outcome: RecordOutcome) -> RecordEntry {
        RecordEntry {
            seq,
            at: chrono::Utc::now(),
            channel,
            idempotency_key: None,
            metadata: Metadata { message_id: m, recipient_id: r.into(), conversation_id: conv.into() },
            outcome,
        }
    }

    #[test]
    fn duplicates_of_requests_and_of_effects_are_told_apart() {
        use RecordOutcome::*;
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let w = Channel::Whatsapp;
        let entries = vec![
            entry(0, w, "c", a, "u", Rejected),
            entry(1, w, "c", a, "u", Accepted),
            entry(2, w, "c", a, "u", Replayed),
            entry(3, w, "c", b, "u", Accepted),
            entry(4, w, "c", b, "u", Accepted),
            // the same message on another channel is another delivery
            entry(0, Channel::Telegram, "c", a, "u", Accepted),
        ];
        let g = ground_truth(&entries, &HashMap::new());
        assert_eq!(
            g,
            GroundTruth {
                requests: 6,
                delivered: 3,
                duplicate_requests: 3,
                duplicate_deliveries: 1,
                order_violations: 0
            }
        );
    }

    #[test]
    fn a_later_message_reaching_a_recipient_first_is_an_order_violation() {
        use RecordOutcome::*;
        let (m1, m2, m3) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let order: HashMap<Uuid, i64> = [(m1, 10), (m2, 11), (m3, 12)].into();
        let w = Channel::Whatsapp;
        let in_order = vec![
            entry(0, w, "c", m1, "u", Accepted),
            entry(1, w, "c", m2, "u", Accepted),
            entry(2, w, "c", m1, "u", Accepted), // a duplicate later does not move the first effect
            entry(3, w, "c", m3, "u", Accepted),
        ];
        assert_eq!(order_violations(&in_order, &order), 0);
        let swapped = vec![
            entry(0, w, "c", m1, "u", Rejected), // m1 rejected first, retried after m2: held back? no
            entry(1, w, "c", m2, "u", Accepted),
            entry(2, w, "c", m1, "u", Accepted),
            entry(3, w, "c", m3, "u", Accepted),
        ];
        assert_eq!(order_violations(&swapped, &order), 1);
        // Another recipient, conversation or channel is judged on its own.
        let separate = vec![
            entry(0, w, "c", m2, "u1", Accepted),
            entry(1, w, "c", m1, "u2", Accepted),
            entry(2, Channel::Telegram, "c", m1, "u1", Accepted),
        ];
        assert_eq!(order_violations(&separate, &order), 0);
        // Messages of other runs are not judged.
        assert_eq!(order_violations(&swapped, &HashMap::new()), 0);
    }

    #[test]
    fn prefixes_are_url_encoded() {
        assert_eq!(
            with_prefix(SUMMARY_PATH, Some("run a&b")),
            format!("{SUMMARY_PATH}?conversationPrefix=run%20a%26b")
        );
        assert_eq!(with_prefix(SUMMARY_PATH, None), SUMMARY_PATH);
        assert_eq!(with_prefix(SUMMARY_PATH, Some("")), SUMMARY_PATH);
    }
}
