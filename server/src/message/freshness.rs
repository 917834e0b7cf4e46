//! End-to-end freshness: per channel, the age of the oldest delivery that is not final
//! (PENDING or SENT; DELIVERED, READ and FAILED are final).
//!
//! `deliveries` has no index on its status on purpose (every status change would then be a
//! non-HOT update; see migration 0004), so the oldest pending delivery is found by walking
//! messages in `seq` order from a watermark per channel: everything below the watermark is
//! final. Each look reads from the watermark up to the first pending delivery (one index range
//! over `messages` and primary-key lookups of their deliveries on the channel, so an idle
//! channel's watermark passes the messages too), and the watermark moves over the final messages
//! it passes. It stops only
//! where a message may still come in behind it: at a gap in `seq` (a transaction that took the
//! number has not committed, or rolled back) followed by a message younger than [`SETTLE`]. So
//! the cost of a look follows the messages accepted since the last one, not the table. A fresh
//! instance starts at the beginning and catches up window by window.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chat4all_contract::admin::pipeline::ChannelFreshness;
use chrono::{DateTime, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use sqlx::{PgPool, Row};
use uuid::Uuid;

use crate::channel::Channel;
use crate::shutdown::Shutdown;

/// How often the figures are refreshed.
const INTERVAL: Duration = Duration::from_secs(2);
/// Messages read per channel per look.
const WINDOW: i64 = 20_000;
/// The watermark does not pass a gap in `seq` followed by a message younger than this: the
/// transaction that took the missing number may still commit.
const SETTLE: Duration = Duration::from_secs(5);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChannelLabel {
    channel: String,
}

/// The figures of one look, and when it was taken.
pub type Figures = (Vec<ChannelFreshness>, Option<DateTime<Utc>>);

/// The latest figures, shared with the admin endpoints.
#[derive(Clone, Default)]
pub struct Tracker {
    inner: Arc<RwLock<Figures>>,
    /// The lowest `seq` made pending again since the last look (a dead-letter replay): the
    /// watermark goes back to it, or the replayed deliveries would be below it and unseen.
    rewind: Arc<std::sync::Mutex<Option<i64>>>,
}

impl Tracker {
    pub fn snapshot(&self) -> Figures {
        self.inner.read().map(|g| g.clone()).unwrap_or_default()
    }

    /// Deliveries of the message `seq` are not final any more.
    pub fn pending_again(&self, seq: i64) {
        if let Ok(mut r) = self.rewind.lock() {
            *r = Some(r.map_or(seq, |s| s.min(seq)));
        }
    }

    fn take_rewind(&self) -> Option<i64> {
        self.rewind.lock().ok().and_then(|mut r| r.take())
    }
}

#[derive(Clone)]
pub struct FreshnessMetrics {
    oldest: Family<ChannelLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
}

impl FreshnessMetrics {
    pub fn register(reg: &mut Registry) -> Self {
        let m = Self { oldest: Family::default() };
        reg.register(
            "chat4all_delivery_oldest_pending_seconds",
            "Age of the oldest delivery of the channel that is not final yet (accepted, not delivered, failed or dead-lettered)",
            m.oldest.clone(),
        );
        m
    }
}

/// One channel's oldest pending delivery at or above its watermark.
#[derive(Debug, Clone, PartialEq)]
struct Oldest {
    seq: i64,
    message: Uuid,
    created_at: DateTime<Utc>,
    status: String,
}

/// What one look found for a channel, and where its next look starts.
#[derive(Debug, PartialEq)]
enum Look {
    /// The first pending delivery from the watermark on.
    Pending { oldest: Oldest, watermark: i64 },
    /// Nothing pending from the watermark to the newest message.
    Final { watermark: i64 },
    /// [`MAX_WINDOWS`] windows read and all final, with more after them: no figure yet (a fresh
    /// instance catching up over a large table; saying 0 here would hide a stall).
    Unfinished { watermark: i64 },
}

/// One window of messages from `from` on, in `seq` order, with their deliveries on the channel.
#[derive(Debug)]
struct Window {
    pending: Option<Oldest>,
    /// Everything below is final and settled, counting from `from`.
    settled: i64,
    /// A gap followed by a message younger than [`SETTLE`] was met: the watermark may not pass
    /// it (the scan goes on: a pending delivery may come after it).
    open_gap: bool,
    /// Where the next window starts, when this one was full.
    next: Option<i64>,
}

async fn window(pool: &PgPool, channel: Channel, from: i64, size: i64) -> Result<Window, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT w.seq, w.id, w.created_at, d.status, w.created_at > now() - make_interval(secs => $4) AS young
           FROM (SELECT seq, id, created_at FROM messages WHERE seq >= $1 ORDER BY seq LIMIT $3) w
           LEFT JOIN deliveries d ON d.message_id = w.id AND d.channel = $2
          ORDER BY w.seq",
    )
    .bind(from)
    .bind(channel.as_str())
    .bind(size)
    .bind(SETTLE.as_secs_f64())
    .fetch_all(pool)
    .await?;
    let mut w = Window { pending: None, settled: from, open_gap: false, next: None };
    let (mut expected, mut messages) = (from, 0);
    // A message with two recipients on the channel has two rows, one without any has one
    // without a status (final for this channel).
    for message in rows.chunk_by(|a, b| a.get::<i64, _>("seq") == b.get::<i64, _>("seq")) {
        let r = &message[0];
        let seq: i64 = r.get("seq");
        w.open_gap |= seq > expected && r.get::<bool, _>("young");
        let pending = message.iter().find_map(|r| {
            let status: Option<String> = r.get("status");
            status.filter(|s| matches!(s.as_str(), "PENDING" | "SENT"))
        });
        if let Some(status) = pending {
            w.pending = Some(Oldest { seq, message: r.get("id"), created_at: r.get("created_at"), status });
            return Ok(w);
        }
        if !w.open_gap {
            w.settled = seq + 1;
        }
        expected = seq + 1;
        messages += 1;
    }
    if messages == size {
        w.next = Some(expected);
    }
    Ok(w)
}

/// Windows read per channel per look at most.
const MAX_WINDOWS: usize = 25;

/// The channel's first pending delivery from the watermark `low` on, window after window; the
/// watermark moves over the settled final deliveries it passes, and no further.
async fn look(pool: &PgPool, channel: Channel, low: i64, size: i64) -> Result<Look, sqlx::Error> {
    let (mut watermark, mut from, mut moving) = (low, low, true);
    for _ in 0..MAX_WINDOWS {
        let w = window(pool, channel, from, size).await?;
        if moving {
            watermark = w.settled;
            moving = !w.open_gap;
        }
        if let Some(oldest) = w.pending {
            return Ok(Look::Pending { oldest, watermark });
        }
        match w.next {
            Some(next) => from = next,
            None => return Ok(Look::Final { watermark }),
        }
    }
    Ok(Look::Unfinished { watermark })
}

/// Refreshes the figures every [`INTERVAL`] until shutdown.
pub async fn run(pool: PgPool, tracker: Tracker, metrics: FreshnessMetrics, shutdown: Shutdown) {
    let mut low: BTreeMap<Channel, i64> = Channel::ALL.iter().map(|c| (*c, 0)).collect();
    while !shutdown.is_triggered() {
        if let Some(seq) = tracker.take_rewind() {
            for w in low.values_mut() {
                *w = (*w).min(seq);
            }
        }
        let mut figures = Vec::with_capacity(Channel::ALL.len());
        let mut failed = false;
        for channel in Channel::ALL {
            let from = low[&channel];
            match look(&pool, channel, from, WINDOW).await {
                Ok(Look::Pending { oldest: o, watermark }) => {
                    low.insert(channel, watermark);
                    let age = (Utc::now() - o.created_at).to_std().unwrap_or_default().as_secs_f64();
                    figures.push(ChannelFreshness {
                        channel,
                        oldest_pending_seconds: age,
                        oldest_pending_message: Some(o.message),
                        oldest_pending_status: Some(o.status),
                    });
                }
                Ok(Look::Final { watermark }) => {
                    low.insert(channel, watermark);
                    figures.push(ChannelFreshness {
                        channel,
                        oldest_pending_seconds: 0.0,
                        oldest_pending_message: None,
                        oldest_pending_status: None,
                    });
                }
                Ok(Look::Unfinished { watermark }) => {
                    // Still catching up: keep the progress, publish nothing this round.
                    low.insert(channel, watermark);
                    failed = true;
                }
                Err(e) => {
                    tracing::warn!(error = %e, %channel, "measuring delivery freshness failed");
                    failed = true;
                }
            }
        }
        if !failed {
            for f in &figures {
                metrics
                    .oldest
                    .get_or_create(&ChannelLabel { channel: f.channel.label().into() })
                    .set(f.oldest_pending_seconds);
            }
            if let Ok(mut g) = tracker.inner.write() {
                *g = (figures, Some(Utc::now()));
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(INTERVAL) => {}
            _ = shutdown.wait() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replay_rewinds_the_watermark_to_its_lowest_message_once() {
        let t = Tracker::default();
        assert_eq!(t.take_rewind(), None);
        t.pending_again(40);
        t.pending_again(12);
        t.pending_again(30);
        assert_eq!(t.take_rewind(), Some(12));
        assert_eq!(t.take_rewind(), None, "taken once");
    }

    async fn message(pool: &PgPool, conversation: &str, channel: &str, status: &str, age_s: f64) -> (i64, Uuid) {
        message_at(pool, None, conversation, channel, status, age_s).await
    }

    /// A message at `seq` (a number a transaction took earlier, committing now), or at the next.
    async fn message_at(
        pool: &PgPool,
        seq: Option<i64>,
        conversation: &str,
        channel: &str,
        status: &str,
        age_s: f64,
    ) -> (i64, Uuid) {
        let id = Uuid::new_v4();
        let seq: i64 = sqlx::query_scalar(
            "INSERT INTO messages (id, seq, conversation_id, sender_id, channel, content, created_at)
             VALUES ($1, COALESCE($5, nextval('messages_seq_seq')), $2, 's', $3, '{}'::jsonb,
                     now() - make_interval(secs => $4)) RETURNING seq",
        )
        .bind(id)
        .bind(conversation)
        .bind(channel)
        .bind(age_s)
        .bind(seq)
        .fetch_one(pool)
        .await
        .unwrap();
        sqlx::query("INSERT INTO deliveries (message_id, recipient_id, channel, status) VALUES ($1, 'r', $2, $3)")
            .bind(id)
            .bind(channel)
            .bind(status)
            .execute(pool)
            .await
            .unwrap();
        (seq, id)
    }

    /// A number taken from the sequence by a transaction that has not committed (or never will).
    async fn gap(pool: &PgPool) -> i64 {
        sqlx::query_scalar("SELECT nextval('messages_seq_seq')").fetch_one(pool).await.unwrap()
    }

    #[tokio::test]
    async fn the_oldest_pending_delivery_is_found_and_the_watermark_stops_only_at_an_open_gap() {
        let pool = crate::db::test_pool("freshness").await;
        sqlx::query("TRUNCATE messages CASCADE").execute(&pool).await.unwrap();
        let (first, _) = message(&pool, "c", "TELEGRAM", "DELIVERED", 60.0).await;
        message(&pool, "c", "TELEGRAM", "FAILED", 50.0).await;
        let (pending_seq, pending) = message(&pool, "c", "TELEGRAM", "SENT", 40.0).await;
        message(&pool, "c", "TELEGRAM", "PENDING", 30.0).await;
        // Another channel's pending delivery does not count for this one.
        message(&pool, "c", "WHATSAPP", "PENDING", 100.0).await;

        match look(&pool, Channel::Telegram, 0, WINDOW).await.unwrap() {
            Look::Pending { oldest: o, watermark } => {
                assert_eq!((o.seq, o.message, o.status.as_str()), (pending_seq, pending, "SENT"));
                assert_eq!(watermark, pending_seq, "moved over the final ones");
                let age = (Utc::now() - o.created_at).num_seconds();
                assert!((39..=42).contains(&age), "age {age}");
            }
            other => panic!("expected the SENT delivery, got {other:?}"),
        }
        // Everything final, young messages too: the watermark passes them all (no gap before them).
        sqlx::query("UPDATE deliveries SET status = 'DELIVERED' WHERE channel = 'TELEGRAM'")
            .execute(&pool)
            .await
            .unwrap();
        let (young, _) = message(&pool, "c", "TELEGRAM", "DELIVERED", 0.0).await;
        assert_eq!(look(&pool, Channel::Telegram, first, WINDOW).await.unwrap(), Look::Final { watermark: young + 1 });
        // An idle channel's watermark passes every message too (the window is over messages).
        assert_eq!(look(&pool, Channel::Instagram, 0, WINDOW).await.unwrap(), Look::Final { watermark: young + 1 });

        // A gap followed by a young message: the watermark waits at the gap.
        let open = gap(&pool).await;
        let (after, _) = message(&pool, "c", "TELEGRAM", "DELIVERED", 0.0).await;
        assert_eq!(look(&pool, Channel::Telegram, young + 1, WINDOW).await.unwrap(), Look::Final { watermark: open });
        // A pending delivery behind it is still found (the scan goes past what the watermark may
        // not), and so is the late message when it commits into the gap.
        let (behind, _) = message(&pool, "c", "TELEGRAM", "PENDING", 0.0).await;
        match look(&pool, Channel::Telegram, open, WINDOW).await.unwrap() {
            Look::Pending { oldest, watermark } => assert_eq!((oldest.seq, watermark), (behind, open)),
            other => panic!("expected the pending delivery behind the gap, got {other:?}"),
        }
        message_at(&pool, Some(open), "c", "TELEGRAM", "PENDING", 0.0).await;
        match look(&pool, Channel::Telegram, open, WINDOW).await.unwrap() {
            Look::Pending { oldest, watermark } => assert_eq!((oldest.seq, watermark), (open, open)),
            other => panic!("expected the message committed into the gap, got {other:?}"),
        }
        // A gap followed by a settled message (a rolled-back number) is passed.
        sqlx::query("UPDATE deliveries SET status = 'DELIVERED' WHERE channel = 'TELEGRAM'")
            .execute(&pool)
            .await
            .unwrap();
        gap(&pool).await;
        let (old, _) = message(&pool, "c", "TELEGRAM", "DELIVERED", 10.0).await;
        assert_eq!(
            look(&pool, Channel::Telegram, after + 1, WINDOW).await.unwrap(),
            Look::Final { watermark: old + 1 }
        );
    }

    #[tokio::test]
    async fn a_message_with_two_recipients_on_the_channel_is_pending_while_either_is() {
        let pool = crate::db::test_pool("freshness_two").await;
        sqlx::query("TRUNCATE messages CASCADE").execute(&pool).await.unwrap();
        let (seq, id) = message(&pool, "t", "TELEGRAM", "DELIVERED", 10.0).await;
        sqlx::query(
            "INSERT INTO deliveries (message_id, recipient_id, channel, status) VALUES ($1, 'r2', 'TELEGRAM', 'SENT')",
        )
        .bind(id)
        .execute(&pool)
        .await
        .unwrap();
        match look(&pool, Channel::Telegram, 0, WINDOW).await.unwrap() {
            Look::Pending { oldest, watermark } => {
                assert_eq!((oldest.seq, oldest.status.as_str(), watermark), (seq, "SENT", 0))
            }
            other => panic!("expected the second recipient's delivery, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_pending_delivery_past_whole_windows_of_final_ones_is_found() {
        let pool = crate::db::test_pool("freshness_windows").await;
        sqlx::query("TRUNCATE messages CASCADE").execute(&pool).await.unwrap();
        let mut seqs = Vec::new();
        for _ in 0..30 {
            seqs.push(message(&pool, "w", "WHATSAPP", "DELIVERED", 60.0).await.0);
        }
        let (pending_seq, _) = message(&pool, "w", "WHATSAPP", "PENDING", 30.0).await;
        match look(&pool, Channel::Whatsapp, 0, 3).await.unwrap() {
            Look::Pending { oldest, watermark } => assert_eq!((oldest.seq, watermark), (pending_seq, seqs[29] + 1)),
            other => panic!("expected the pending delivery past 30 final ones, got {other:?}"),
        }
        // Past MAX_WINDOWS full windows: no figure rather than a wrong 0, and the progress kept.
        assert_eq!(
            look(&pool, Channel::Whatsapp, 0, 1).await.unwrap(),
            Look::Unfinished { watermark: seqs[MAX_WINDOWS - 1] + 1 }
        );
    }
}
