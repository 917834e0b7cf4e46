//! One delivery request, item by item: the ledger first (claim), then the provider (one batch
//! call per wave), then the ledger again (record).
//!
//! Order per (conversation, recipient): a provider processes a batch in order but rejects items
//! one by one, so message k+1 of a conversation in the same call as k could take effect while k
//! is rejected. Each wave therefore carries at most one item per (conversation, recipient); once
//! an item of a pair fails, the pair's later items are answered `held_back` and the router asks
//! again, in order.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use chat4all_contract::provider::{Metadata, SendRequest, SendResult, SendStatus};
use prometheus_client::metrics::counter::Counter;

use super::client::{CallError, ProviderClient};
use super::ledger::{idempotency_key, Claim, Entry, Ledger};
use super::wire::{DeliveryItem, DeliveryResult};
use crate::channel::Channel;

/// What happened to one item.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The provider accepted it now.
    Sent,
    /// It had been delivered already (ledger, reconciliation, or the provider's replay).
    AlreadySent,
    /// Attempted, and not delivered (`error`); counts as an attempt at the router.
    Failed(String),
    /// Not attempted: behind an earlier failure of its pair, or in flight elsewhere.
    Held(String),
    /// Not attempted: the provider is down (an outage, no fault of the message).
    Unavailable(String),
}

impl Outcome {
    pub fn delivered(&self) -> bool {
        matches!(self, Outcome::Sent | Outcome::AlreadySent)
    }

    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Sent => "sent",
            Outcome::AlreadySent => "duplicate",
            Outcome::Failed(_) => "failed",
            Outcome::Held(_) => "held",
            Outcome::Unavailable(_) => "unavailable",
        }
    }

    pub fn to_result(&self, item: &DeliveryItem) -> DeliveryResult {
        let (ok, duplicate, held_back, error) = match self {
            Outcome::Sent => (true, false, false, None),
            Outcome::AlreadySent => (true, true, false, None),
            Outcome::Failed(e) => (false, false, false, Some(e.clone())),
            Outcome::Held(e) | Outcome::Unavailable(e) => (false, false, true, Some(e.clone())),
        };
        DeliveryResult {
            message_id: item.message_id,
            recipient_id: item.recipient_id.clone(),
            ok,
            duplicate,
            error,
            held_back,
        }
    }
}

/// Infrastructure failures that end a request without an answer per item (the router retries).
#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    #[error("delivery ledger: {0}")]
    Ledger(#[from] sqlx::Error),
}

pub struct Deliverer {
    pub channel: Channel,
    pub client: ProviderClient,
    /// `None`: `CHAT4ALL_UNSAFE_NO_LEDGER` (test only).
    pub ledger: Option<Ledger>,
    /// False: `CHAT4ALL_UNSAFE_NO_IDEMPOTENCY_KEY` (test only).
    pub send_keys: bool,
    /// Provider calls retried (same key) after an unknown outcome, within one request.
    pub retries: u32,
    pub retry_backoff: Duration,
    /// `chat4all_connector_unknown_outcome_resends_total`.
    pub unknown_resends: Counter,
}

impl Deliverer {
    /// Delivers `items` (one channel's, in the router's order) and answers one outcome each.
    pub async fn deliver(&self, items: &[DeliveryItem], unordered: bool) -> Result<Vec<Outcome>, DeliverError> {
        let mut outcomes: Vec<Option<Outcome>> = vec![None; items.len()];
        let waves = plan_waves(items, unordered);
        let mut blocked: HashMap<usize, String> = HashMap::new(); // pair -> why
        let mut down: Option<String> = None;
        for wave in waves {
            if let Some(why) = &down {
                for (_, i) in wave {
                    outcomes[i] = Some(Outcome::Unavailable(why.clone()));
                }
                continue;
            }
            let mut todo = Vec::new();
            for (pair, i) in wave {
                match blocked.get(&pair) {
                    Some(why) => outcomes[i] = Some(Outcome::Held(why.clone())),
                    None => todo.push((pair, i)),
                }
            }
            let idx: Vec<usize> = todo.iter().map(|(_, i)| *i).collect();
            let done = self.deliver_wave(items, &idx).await?;
            for ((pair, i), outcome) in todo.into_iter().zip(done) {
                match &outcome {
                    Outcome::Unavailable(why) => down = Some(why.clone()),
                    Outcome::Failed(_) | Outcome::Held(_) => {
                        let m = items[i].message_id;
                        blocked.insert(pair, format!("held back behind message {m} of the same conversation"));
                    }
                    _ => {}
                }
                outcomes[i] = Some(outcome);
            }
        }
        Ok(outcomes.into_iter().map(|o| o.unwrap_or_else(|| Outcome::Held("not attempted".into()))).collect())
    }

    /// Claims, sends and records the items `idx` (at most one per pair).
    async fn deliver_wave(&self, items: &[DeliveryItem], idx: &[usize]) -> Result<Vec<Outcome>, DeliverError> {
        let entries: Vec<Entry> = idx
            .iter()
            .map(|&i| Entry { message_id: items[i].message_id, recipient_id: items[i].recipient_id.clone() })
            .collect();
        let claims = match &self.ledger {
            Some(l) => l.claim(&entries).await?,
            None => vec![Claim::Fresh; entries.len()],
        };
        let mut out: Vec<Option<Outcome>> = vec![None; idx.len()];
        let mut to_send: Vec<usize> = Vec::new(); // positions in idx
        let mut to_reconcile: Vec<usize> = Vec::new();
        for (pos, claim) in claims.into_iter().enumerate() {
            match claim {
                Claim::Fresh => to_send.push(pos),
                Claim::Unknown => to_reconcile.push(pos),
                Claim::Sent { .. } => out[pos] = Some(Outcome::AlreadySent),
                Claim::Busy { by } => out[pos] = Some(Outcome::Held(format!("in flight at {by}"))),
            }
        }
        // Reconcile: did an earlier attempt whose answer we never got reach the provider?
        let mut reconciled_sent = Vec::new();
        let mut reconcile_failed: Vec<(usize, CallError)> = Vec::new();
        for pos in to_reconcile {
            let item = &items[idx[pos]];
            if !self.send_keys {
                // No key, no lookup: sending again is the duplicate a provider may see.
                self.unknown_resends.inc();
                to_send.push(pos);
                continue;
            }
            match self.client.lookup(&self.key(item)).await {
                Ok(Some(r)) if r.status == SendStatus::Accepted => {
                    reconciled_sent.push((entries[pos].clone(), r.id));
                    out[pos] = Some(Outcome::AlreadySent);
                }
                Ok(_) => to_send.push(pos),
                Err(e) => reconcile_failed.push((pos, e)),
            }
        }
        if let Some(l) = &self.ledger {
            l.record_sent(&reconciled_sent).await?;
        }
        for (pos, e) in reconcile_failed {
            if let Some(l) = &self.ledger {
                l.record_failed(std::slice::from_ref(&entries[pos]), true, &e.to_string()).await?;
            }
            out[pos] = Some(match e {
                CallError::Down(_) => Outcome::Unavailable(e.to_string()),
                _ => Outcome::Failed(format!("reconciling: {e}")),
            });
        }
        to_send.sort_unstable();
        if !to_send.is_empty() {
            let messages: Vec<SendRequest> = to_send.iter().map(|&pos| self.request(&items[idx[pos]])).collect();
            let answer = self.send_with_retries(messages).await;
            let sent_entries: Vec<Entry> = to_send.iter().map(|&p| entries[p].clone()).collect();
            match answer {
                Ok(results) => {
                    let mut sent = Vec::new();
                    let mut rejected: Vec<(Entry, String)> = Vec::new();
                    for ((&pos, entry), r) in to_send.iter().zip(sent_entries).zip(results) {
                        let (outcome, id) = map_result(r);
                        match &outcome {
                            Outcome::Sent | Outcome::AlreadySent => sent.push((entry, id)),
                            Outcome::Failed(e) => rejected.push((entry, e.clone())),
                            Outcome::Held(_) | Outcome::Unavailable(_) => {}
                        }
                        out[pos] = Some(outcome);
                    }
                    if let Some(l) = &self.ledger {
                        l.record_sent(&sent).await?;
                        let mut by_error: HashMap<String, Vec<Entry>> = HashMap::new();
                        for (entry, error) in rejected {
                            by_error.entry(error).or_default().push(entry);
                        }
                        for (error, entries) in by_error {
                            l.record_failed(&entries, false, &error).await?;
                        }
                    }
                }
                Err(e) => {
                    if let Some(l) = &self.ledger {
                        l.record_failed(&sent_entries, e.outcome_unknown(), &e.to_string()).await?;
                    }
                    for &pos in &to_send {
                        out[pos] = Some(match &e {
                            CallError::Down(_) => Outcome::Unavailable(e.to_string()),
                            _ => Outcome::Failed(e.to_string()),
                        });
                    }
                }
            }
        }
        Ok(out.into_iter().map(|o| o.unwrap_or_else(|| Outcome::Failed("no outcome".into()))).collect())
    }

    /// One batch call, retried with the same keys while its outcome is unknown.
    async fn send_with_retries(&self, messages: Vec<SendRequest>) -> Result<Vec<SendResult>, CallError> {
        let mut attempt = 0;
        loop {
            match self.client.send_batch(messages.clone()).await {
                Err(e) if e.outcome_unknown() && attempt < self.retries => {
                    attempt += 1;
                    tracing::warn!(error = %e, attempt, n = messages.len(), "provider outcome unknown; sending again (same idempotency keys, unless disabled)");
                    self.unknown_resends.inc_by(messages.len() as u64);
                    tokio::time::sleep(self.retry_backoff * attempt).await;
                }
                other => return other,
            }
        }
    }

    fn key(&self, item: &DeliveryItem) -> String {
        idempotency_key(item.message_id, &item.recipient_id, self.channel)
    }

    fn request(&self, item: &DeliveryItem) -> SendRequest {
        SendRequest {
            idempotency_key: self.send_keys.then(|| self.key(item)),
            to: item.address.clone().unwrap_or_else(|| item.recipient_id.clone()),
            text: item.text.clone(),
            metadata: Metadata {
                message_id: item.message_id,
                recipient_id: item.recipient_id.clone(),
                conversation_id: item.conversation_id.clone(),
            },
        }
    }
}

/// What one provider result means, with the provider's message id when accepted.
pub fn map_result(r: SendResult) -> (Outcome, Option<String>) {
    match r.status {
        SendStatus::Accepted if r.replayed => (Outcome::AlreadySent, r.id),
        SendStatus::Accepted => (Outcome::Sent, r.id),
        SendStatus::Rejected => {
            let why = r.error.unwrap_or_else(|| "provider rejected the message".into());
            let why = if r.retryable { format!("{why} (retryable)") } else { why };
            (Outcome::Failed(why), None)
        }
    }
}

/// Splits `items` into waves of (pair, index): wave n holds the n-th item of every
/// (conversation, recipient) pair, in request order. `unordered`: one wave, each item its own
/// pair (no hold-back).
pub fn plan_waves(items: &[DeliveryItem], unordered: bool) -> Vec<Vec<(usize, usize)>> {
    if unordered {
        return if items.is_empty() { Vec::new() } else { vec![(0..items.len()).map(|i| (i, i)).collect()] };
    }
    let mut pair_of: HashMap<(&str, &str), usize> = HashMap::new();
    let mut queues: Vec<VecDeque<usize>> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let next = queues.len();
        let pair = *pair_of.entry((item.conversation_id.as_str(), item.recipient_id.as_str())).or_insert(next);
        if pair == next {
            queues.push(VecDeque::new());
        }
        queues[pair].push_back(i);
    }
    let mut waves = Vec::new();
    loop {
        let wave: Vec<(usize, usize)> =
            queues.iter_mut().enumerate().filter_map(|(p, q)| q.pop_front().map(|i| (p, i))).collect();
        if wave.is_empty() {
            return waves;
        }
        let mut wave = wave;
        wave.sort_by_key(|&(_, i)| i);
        waves.push(wave);
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    fn item(conv: &str, user: &str) -> DeliveryItem {
        DeliveryItem {
            message_id: Uuid::new_v4(),
            recipient_id: user.into(),
            channel: Channel::Whatsapp,
            conversation_id: conv.into(),
            text: "t".into(),
            address: None,
        }
    }

    #[test]
    fn waves_carry_one_item_per_conversation_and_recipient_in_order() {
        let items = vec![item("c1", "a"), item("c1", "a"), item("c2", "a"), item("c1", "b"), item("c1", "a")];
        let waves = plan_waves(&items, false);
        let idx: Vec<Vec<usize>> = waves.iter().map(|w| w.iter().map(|&(_, i)| i).collect()).collect();
        assert_eq!(idx, vec![vec![0, 2, 3], vec![1], vec![4]]);
        for w in &waves {
            let pairs: std::collections::HashSet<usize> = w.iter().map(|&(p, _)| p).collect();
            assert_eq!(pairs.len(), w.len(), "one item per pair in a wave: {w:?}");
        }
        assert_eq!(waves[1][0].0, waves[0][0].0, "items 0 and 1 are the same pair");
        assert_eq!(plan_waves(&items, true).len(), 1);
        assert!(plan_waves(&[], false).is_empty());
    }

    #[test]
    fn provider_results_map_onto_outcomes() {
        let r = |status, replayed, retryable| SendResult {
            status,
            id: Some("p".into()),
            error: Some("nope".into()),
            retryable,
            replayed,
        };
        assert_eq!(map_result(r(SendStatus::Accepted, false, false)), (Outcome::Sent, Some("p".into())));
        assert_eq!(map_result(r(SendStatus::Accepted, true, false)).0, Outcome::AlreadySent);
        assert_eq!(map_result(r(SendStatus::Rejected, false, true)).0, Outcome::Failed("nope (retryable)".into()));
        let i = item("c", "u");
        let held = Outcome::Held("x".into()).to_result(&i);
        assert!(!held.ok && held.held_back);
        let failed = Outcome::Failed("x".into()).to_result(&i);
        assert!(!failed.ok && !failed.held_back);
        assert!(Outcome::AlreadySent.to_result(&i).duplicate);
    }

    /// A scripted provider (a real HTTP peer): keys honoured, every request and effect recorded.
    mod scripted {
        use std::collections::{HashMap, HashSet};
        use std::sync::{Arc, Mutex};

        use axum::extract::{Path, State};
        use axum::http::StatusCode;
        use axum::response::IntoResponse;
        use axum::routing::{get, post};
        use axum::{Json, Router};
        use chat4all_contract::provider::{BatchRequest, BatchResponse, BATCH_PATH, LOOKUP_PATH};

        use super::*;

        #[derive(Default)]
        pub struct Script {
            /// Message ids rejected (retryable) the first time they are seen.
            pub reject_once: HashSet<Uuid>,
            /// Requests to do, then to hang past the caller's timeout (counted down).
            pub hang_after_work: usize,
            pub keys: HashMap<String, SendResult>,
            /// Effects in arrival order.
            pub effects: Vec<Uuid>,
            pub requests: usize,
            /// Answer 503 to everything, doing nothing.
            pub down: bool,
        }

        pub type Shared = Arc<Mutex<Script>>;

        pub async fn serve(script: Shared) -> String {
            let app = Router::new()
                .route(BATCH_PATH, post(batch))
                .route(&format!("{LOOKUP_PATH}/{{key}}"), get(lookup))
                .with_state(script);
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("addr");
            tokio::spawn(async move { axum::serve(listener, app).await });
            format!("http://{addr}")
        }

        async fn batch(State(s): State<Shared>, Json(req): Json<BatchRequest>) -> axum::response::Response {
            let (results, hang) = {
                let mut s = s.lock().expect("lock");
                if s.down {
                    return (StatusCode::SERVICE_UNAVAILABLE, "down").into_response();
                }
                let mut results = Vec::new();
                for m in req.messages {
                    s.requests += 1;
                    if let Some(r) = m.idempotency_key.as_ref().and_then(|k| s.keys.get(k)) {
                        results.push(SendResult { replayed: true, ..r.clone() });
                        continue;
                    }
                    if s.reject_once.remove(&m.metadata.message_id) {
                        results.push(SendResult {
                            status: SendStatus::Rejected,
                            id: None,
                            error: Some("try later".into()),
                            retryable: true,
                            replayed: false,
                        });
                        continue;
                    }
                    s.effects.push(m.metadata.message_id);
                    let r = SendResult {
                        status: SendStatus::Accepted,
                        id: Some(format!("p-{}", s.effects.len())),
                        error: None,
                        retryable: false,
                        replayed: false,
                    };
                    if let Some(k) = m.idempotency_key {
                        s.keys.insert(k, r.clone());
                    }
                    results.push(r);
                }
                let hang = s.hang_after_work > 0;
                if hang {
                    s.hang_after_work -= 1;
                }
                (results, hang)
            };
            if hang {
                tokio::time::sleep(Duration::from_secs(3)).await;
            }
            Json(BatchResponse { results }).into_response()
        }

        async fn lookup(State(s): State<Shared>, Path(key): Path<String>) -> axum::response::Response {
            match s.lock().expect("lock").keys.get(&key) {
                Some(r) => Json(r.clone()).into_response(),
                None => StatusCode::NOT_FOUND.into_response(),
            }
        }
    }

    async fn deliverer(base: &str, instance: &str) -> Deliverer {
        let url = std::env::var("CHAT4ALL_UNIT_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/chat4all_unit_ledger".into());
        let pool = crate::db::connect_and_migrate(&url, 4).await.expect("the unit-test database");
        Deliverer {
            channel: Channel::Whatsapp,
            client: ProviderClient::new(base, Duration::from_millis(400)).expect("client"),
            ledger: Some(Ledger {
                pool,
                channel: Channel::Whatsapp,
                instance: instance.into(),
                stale_after: Duration::from_millis(600),
            }),
            send_keys: true,
            retries: 2,
            retry_backoff: Duration::from_millis(10),
            unknown_resends: Counter::default(),
        }
    }

    fn conv(tag: &str) -> String {
        format!("{tag}-{}", Uuid::new_v4().simple())
    }

    #[tokio::test]
    async fn a_rejection_holds_back_the_rest_of_its_conversation_only() {
        let script = scripted::Shared::default();
        let base = scripted::serve(script.clone()).await;
        let d = deliverer(&base, "wa-test").await;
        let (c1, c2) = (conv("c1"), conv("c2"));
        let items = vec![item(&c1, "a"), item(&c1, "a"), item(&c2, "a"), item(&c1, "b")];
        script.lock().expect("lock").reject_once.insert(items[0].message_id);
        let out = d.deliver(&items, false).await.expect("deliver");
        assert!(matches!(out[0], Outcome::Failed(_)), "{out:?}");
        assert!(matches!(out[1], Outcome::Held(_)), "k+1 waits for k: {out:?}");
        assert_eq!((&out[2], &out[3]), (&Outcome::Sent, &Outcome::Sent), "other pairs go on");
        // The router asks again, in order: now both go, k first.
        let again = d.deliver(&items[..2], false).await.expect("deliver");
        assert_eq!(again, vec![Outcome::Sent, Outcome::Sent]);
        let effects = script.lock().expect("lock").effects.clone();
        let pos = |i: usize| effects.iter().position(|m| *m == items[i].message_id).expect("delivered");
        assert!(pos(0) < pos(1), "order kept: {effects:?}");
        assert_eq!(effects.len(), 4);
    }

    #[tokio::test]
    async fn unordered_sends_the_later_message_first() {
        let script = scripted::Shared::default();
        let base = scripted::serve(script.clone()).await;
        let d = deliverer(&base, "wa-test").await;
        let c = conv("c");
        let items = vec![item(&c, "a"), item(&c, "a")];
        script.lock().expect("lock").reject_once.insert(items[0].message_id);
        let out = d.deliver(&items, true).await.expect("deliver");
        assert_eq!(out[1], Outcome::Sent, "the breaker restores the reordering");
    }

    #[tokio::test]
    async fn a_timeout_after_the_work_is_resent_with_the_same_key_and_takes_effect_once() {
        let script = scripted::Shared::default();
        let base = scripted::serve(script.clone()).await;
        let d = deliverer(&base, "wa-test").await;
        let c = conv("t");
        let items = vec![item(&c, "a"), item(&c, "b")];
        script.lock().expect("lock").hang_after_work = 1;
        let out = d.deliver(&items, false).await.expect("deliver");
        assert_eq!(out, vec![Outcome::AlreadySent, Outcome::AlreadySent], "the resend was replayed");
        assert_eq!(d.unknown_resends.get(), 2);
        let s = script.lock().expect("lock");
        assert_eq!((s.effects.len(), s.requests), (2, 4));
    }

    #[tokio::test]
    async fn without_keys_the_same_timeout_delivers_twice() {
        let script = scripted::Shared::default();
        let base = scripted::serve(script.clone()).await;
        let mut d = deliverer(&base, "wa-test").await;
        d.send_keys = false;
        let items = vec![item(&conv("n"), "a")];
        script.lock().expect("lock").hang_after_work = 1;
        d.deliver(&items, false).await.expect("deliver");
        assert_eq!(script.lock().expect("lock").effects.len(), 2, "the duplicate the metric counts");
        assert_eq!(d.unknown_resends.get(), 1);
    }

    #[tokio::test]
    async fn a_redelivery_is_answered_from_the_ledger_without_a_call() {
        let script = scripted::Shared::default();
        let base = scripted::serve(script.clone()).await;
        let d = deliverer(&base, "wa-test").await;
        let items = vec![item(&conv("r"), "a")];
        assert_eq!(d.deliver(&items, false).await.expect("deliver"), vec![Outcome::Sent]);
        assert_eq!(d.deliver(&items, false).await.expect("deliver"), vec![Outcome::AlreadySent]);
        assert_eq!(script.lock().expect("lock").requests, 1, "the provider was asked once");
    }

    #[tokio::test]
    async fn a_dead_claimers_send_is_reconciled_by_key_not_repeated() {
        let script = scripted::Shared::default();
        let base = scripted::serve(script.clone()).await;
        let dead = deliverer(&base, "wa-dead").await;
        let d = deliverer(&base, "wa-next").await;
        let items = vec![item(&conv("s"), "a"), item(&conv("s"), "b")];
        let entries: Vec<Entry> =
            items.iter().map(|i| Entry { message_id: i.message_id, recipient_id: i.recipient_id.clone() }).collect();
        // The dead connector claimed both and sent the first, then died before recording.
        let ledger = dead.ledger.as_ref().expect("ledger");
        ledger.claim(&entries).await.expect("claim");
        dead.client.send_batch(vec![dead.request(&items[0])]).await.expect("send");
        assert!(matches!(d.deliver(&items, false).await.expect("deliver")[0], Outcome::Held(_)), "live claim");
        tokio::time::sleep(Duration::from_millis(700)).await;
        let out = d.deliver(&items, false).await.expect("deliver");
        assert_eq!(out, vec![Outcome::AlreadySent, Outcome::Sent]);
        let s = script.lock().expect("lock");
        assert_eq!(s.effects.len(), 2, "one effect each");
        assert_eq!(s.requests, 2, "the reconciled one was not sent again");
    }

    #[tokio::test]
    async fn an_outage_holds_everything_back_and_costs_no_attempt() {
        let script = scripted::Shared::default();
        let base = scripted::serve(script.clone()).await;
        let d = deliverer(&base, "wa-test").await;
        let c = conv("o");
        let items = vec![item(&c, "a"), item(&c, "a"), item(&conv("o"), "b")];
        script.lock().expect("lock").down = true;
        let out = d.deliver(&items, false).await.expect("deliver");
        assert!(out.iter().all(|o| matches!(o, Outcome::Unavailable(_))), "{out:?}");
        assert!(out.iter().all(|o| o.to_result(&items[0]).held_back));
        assert_eq!(d.unknown_resends.get(), 0, "a 503 did nothing: no unknown outcome");
        // Back up: everything goes, in order, once.
        script.lock().expect("lock").down = false;
        assert_eq!(d.deliver(&items, false).await.expect("deliver"), vec![Outcome::Sent; 3]);
        let s = script.lock().expect("lock");
        let ids: Vec<Uuid> = [0, 2, 1].iter().map(|&i| items[i].message_id).collect();
        assert_eq!(s.effects, ids, "wave by wave: conversation o's second message after its first");
    }
}
