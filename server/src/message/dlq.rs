//! The message-service's dead-letter endpoints (control token required): which dead letters
//! still stand, and their replay.
//!
//! A replay never delivers anything twice: in one transaction it resets only the deliveries of
//! the chosen letters that are still FAILED (locked, so a receipt arriving meanwhile waits) to
//! PENDING with `routed_at` NULL, and writes one outbox row per message whose event carries only
//! those recipients. The pipeline then routes them again; the connector's ledger answers any of
//! them that was in fact sent without calling the provider. A letter whose delivery is no longer
//! FAILED (delivered since, or replayed already) is reported as skipped and left alone.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use chat4all_contract::admin::dlq::{
    LetterKey, LetterStatus, ReplayRequest, ReplayResponse, Skipped, StatusRequest, StatusResponse, DLQ_REPLAY_PATH,
    DLQ_STATUS_PATH,
};
use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, Row, Transaction};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::channel::Channel;
use crate::config::topics;
use crate::events::{ChatEvent, Content, DeliveryStatus, Recipient, MESSAGE_CREATED};
use crate::http::{AdminToken, AppError};

#[derive(Clone)]
struct DlqState {
    pool: PgPool,
    relay_wakeup: Arc<Notify>,
    freshness: super::freshness::Tracker,
}

pub fn routes(
    pool: PgPool,
    relay_wakeup: Arc<Notify>,
    freshness: super::freshness::Tracker,
    token: &AdminToken,
) -> Router {
    let router = Router::new()
        .route(DLQ_STATUS_PATH, post(status))
        .route(DLQ_REPLAY_PATH, post(replay))
        .with_state(DlqState { pool, relay_wakeup, freshness });
    crate::http::guard(router, token)
}

type JsonBody<T> = Result<Json<T>, axum::extract::rejection::JsonRejection>;

async fn status(State(s): State<DlqState>, body: JsonBody<StatusRequest>) -> Result<Json<StatusResponse>, AppError> {
    let Json(req) = body.map_err(|e| AppError::bad_request(e.body_text(), None))?;
    if let Some(problem) = req.problem() {
        return Err(AppError::bad_request(problem, None));
    }
    let found = statuses(&s.pool, &req.letters, false, None).await?;
    let letters =
        req.letters.iter().map(|l| LetterStatus { id: l.id.clone(), status: found.get(&owned(l)).copied() }).collect();
    Ok(Json(StatusResponse { letters }))
}

async fn replay(State(s): State<DlqState>, body: JsonBody<ReplayRequest>) -> Result<Json<ReplayResponse>, AppError> {
    let Json(req) = body.map_err(|e| AppError::bad_request(e.body_text(), None))?;
    if let Some(problem) = req.problem() {
        return Err(AppError::bad_request(problem, None));
    }
    let mut tx = s.pool.begin().await?;
    let found = statuses(&s.pool, &req.letters, !req.dry_run, Some(&mut tx)).await?;
    let (replayed, skipped) = decide(&req.letters, &found);
    let (mut outbox_rows, mut lowest) = (0, None);
    if !req.dry_run && !replayed.is_empty() {
        (outbox_rows, lowest) = reset_and_publish(&mut tx, &replayed).await?;
    }
    tx.commit().await?;
    if let Some(seq) = lowest {
        s.freshness.pending_again(seq);
    }
    if outbox_rows > 0 {
        s.relay_wakeup.notify_one();
    }
    tracing::info!(by = %req.by, dry_run = req.dry_run, replayed = replayed.len(), skipped = skipped.len(),
        outbox_rows, "dead letters replayed");
    Ok(Json(ReplayResponse { dry_run: req.dry_run, replayed, skipped, outbox_rows }))
}

type Delivery = (Uuid, String, Channel);

fn owned(l: &LetterKey) -> Delivery {
    (l.message_id, l.recipient_id.clone(), l.channel)
}

/// Which letters are replayed: the first letter of each delivery that is still FAILED. The
/// others are skipped with the reason.
fn decide(letters: &[LetterKey], found: &HashMap<Delivery, DeliveryStatus>) -> (Vec<LetterKey>, Vec<Skipped>) {
    let mut first: HashMap<Delivery, &str> = HashMap::new();
    let (mut replayed, mut skipped) = (Vec::new(), Vec::new());
    for l in letters {
        let key = owned(l);
        let status = found.get(&key).copied();
        let reason = match status {
            None => Some("no such delivery".to_string()),
            Some(DeliveryStatus::Failed) => first.get(&key).map(|other| format!("the same delivery as letter {other}")),
            Some(s) => Some(format!("the delivery is {} now, not FAILED", s.as_str())),
        };
        match reason {
            Some(reason) => skipped.push(Skipped { letter: l.clone(), status, reason }),
            None => {
                first.insert(key, l.id.as_str());
                replayed.push(l.clone());
            }
        }
    }
    (replayed, skipped)
}

/// The status of each letter's delivery (absent: no such delivery); with `lock`, the rows are
/// locked in `tx` until it ends.
async fn statuses(
    pool: &PgPool,
    letters: &[LetterKey],
    lock: bool,
    tx: Option<&mut Transaction<'_, Postgres>>,
) -> Result<HashMap<Delivery, DeliveryStatus>, sqlx::Error> {
    let (ids, users, chans) = columns(letters.iter());
    let sql = format!(
        "SELECT d.message_id, d.recipient_id, d.channel, d.status FROM deliveries d
           JOIN UNNEST($1::uuid[], $2::text[], $3::text[]) AS k(message_id, recipient_id, channel)
             ON d.message_id = k.message_id AND d.recipient_id = k.recipient_id AND d.channel = k.channel
         ORDER BY d.message_id, d.recipient_id, d.channel{}",
        if lock { " FOR UPDATE OF d" } else { "" }
    );
    let q = sqlx::query(&sql).bind(&ids).bind(&users).bind(&chans);
    let rows = match tx {
        Some(tx) => q.fetch_all(&mut **tx).await?,
        None => q.fetch_all(pool).await?,
    };
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            let chan: String = r.get("channel");
            let status: String = r.get("status");
            Some(((r.get("message_id"), r.get("recipient_id"), chan.parse().ok()?), parse_status(&status)?))
        })
        .collect())
}

fn parse_status(s: &str) -> Option<DeliveryStatus> {
    [
        DeliveryStatus::Pending,
        DeliveryStatus::Sent,
        DeliveryStatus::Delivered,
        DeliveryStatus::Read,
        DeliveryStatus::Failed,
    ]
    .into_iter()
    .find(|d| d.as_str() == s)
}

fn columns<'a>(letters: impl Iterator<Item = &'a LetterKey>) -> (Vec<Uuid>, Vec<&'a str>, Vec<&'a str>) {
    let (mut ids, mut users, mut chans) = (Vec::new(), Vec::new(), Vec::new());
    for l in letters {
        ids.push(l.message_id);
        users.push(l.recipient_id.as_str());
        chans.push(l.channel.as_str());
    }
    (ids, users, chans)
}

/// Resets the (locked, FAILED) deliveries of `letters` to PENDING, unrouted, and writes one
/// outbox row per message carrying only those recipients, in the messages' accept order.
/// Returns the rows written.
/// Resets and republishes `letters`; returns the outbox rows written and the lowest `seq` of
/// the messages made pending again.
async fn reset_and_publish(
    tx: &mut Transaction<'_, Postgres>,
    letters: &[LetterKey],
) -> Result<(usize, Option<i64>), AppError> {
    let (ids, users, chans) = columns(letters.iter());
    sqlx::query(
        "UPDATE deliveries d SET status = 'PENDING', routed_at = NULL, routed_by = NULL,
                failed_at = NULL, failure_reason = NULL, updated_at = now()
           FROM UNNEST($1::uuid[], $2::text[], $3::text[]) AS k(message_id, recipient_id, channel)
          WHERE d.message_id = k.message_id AND d.recipient_id = k.recipient_id AND d.channel = k.channel
            AND d.status = 'FAILED'",
    )
    .bind(&ids)
    .bind(&users)
    .bind(&chans)
    .execute(&mut **tx)
    .await?;
    let mut recipients: BTreeMap<Uuid, Vec<Recipient>> = BTreeMap::new();
    let mut seen: HashSet<(Uuid, &str, Channel)> = HashSet::new();
    for l in letters {
        if seen.insert(l.delivery()) {
            recipients
                .entry(l.message_id)
                .or_default()
                .push(Recipient { user_id: l.recipient_id.clone(), channel: l.channel });
        }
    }
    let message_ids: Vec<Uuid> = recipients.keys().copied().collect();
    let rows = sqlx::query(
        "SELECT id, seq, conversation_id, sender_id, channel, content, created_at FROM messages
          WHERE id = ANY($1) ORDER BY seq",
    )
    .bind(&message_ids)
    .fetch_all(&mut **tx)
    .await?;
    let (mut keys, mut payloads) = (Vec::with_capacity(rows.len()), Vec::with_capacity(rows.len()));
    let lowest: Option<i64> = rows.first().map(|r| r.get("seq"));
    for r in rows {
        let id: Uuid = r.get("id");
        let channel: String = r.get("channel");
        let content: serde_json::Value = r.get("content");
        let created_at: DateTime<Utc> = r.get("created_at");
        let event = ChatEvent {
            event_type: MESSAGE_CREATED.into(),
            message_id: id,
            conversation_id: r.get("conversation_id"),
            sender_id: r.get("sender_id"),
            channel: channel.parse().map_err(|e| AppError::internal(format!("stored message {id}: {e}")))?,
            content: serde_json::from_value::<Content>(content)
                .map_err(|e| AppError::internal(format!("stored content of {id}: {e}")))?,
            recipients: recipients.remove(&id).unwrap_or_default(),
            created_at,
        };
        payloads.push(serde_json::to_vec(&event).map_err(|e| AppError::internal(e.to_string()))?);
        keys.push(event.conversation_id);
    }
    let written = sqlx::query(
        "INSERT INTO outbox (topic, key, payload)
         SELECT $1, k, p FROM UNNEST($2::text[], $3::bytea[]) WITH ORDINALITY AS t(k, p, ord) ORDER BY ord",
    )
    .bind(topics::CHAT_EVENTS)
    .bind(&keys)
    .bind(&payloads)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok((written as usize, lowest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(id: &str, msg: Uuid, user: &str) -> LetterKey {
        LetterKey { id: id.into(), message_id: msg, recipient_id: user.into(), channel: Channel::Telegram }
    }

    #[test]
    fn only_the_first_letter_of_a_failed_delivery_is_replayed() {
        let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let found: HashMap<Delivery, DeliveryStatus> = [
            ((a, "bob".to_string(), Channel::Telegram), DeliveryStatus::Failed),
            ((b, "bob".to_string(), Channel::Telegram), DeliveryStatus::Delivered),
        ]
        .into_iter()
        .collect();
        let letters =
            [letter("0:1", a, "bob"), letter("0:2", b, "bob"), letter("0:3", a, "bob"), letter("0:4", c, "x")];
        let (replayed, skipped) = decide(&letters, &found);
        assert_eq!(replayed.iter().map(|l| l.id.as_str()).collect::<Vec<_>>(), ["0:1"]);
        let why: Vec<(&str, &str)> = skipped.iter().map(|s| (s.letter.id.as_str(), s.reason.as_str())).collect();
        assert_eq!(
            why,
            [
                ("0:2", "the delivery is DELIVERED now, not FAILED"),
                ("0:3", "the same delivery as letter 0:1"),
                ("0:4", "no such delivery")
            ]
        );
    }

    async fn failed_message(pool: &PgPool, conv: &str) -> Uuid {
        let id = Uuid::new_v4();
        sqlx::query(
            "INSERT INTO messages (id, conversation_id, sender_id, channel, content)
             VALUES ($1, $2, 's', 'TELEGRAM', '{\"type\":\"TEXT\",\"text\":\"hi\"}')",
        )
        .bind(id)
        .bind(conv)
        .execute(pool)
        .await
        .unwrap();
        for (user, status) in [("bob", "FAILED"), ("carol", "DELIVERED")] {
            sqlx::query(
                "INSERT INTO deliveries (message_id, recipient_id, channel, status, routed_at, failed_at, failure_reason)
                 VALUES ($1, $2, 'TELEGRAM', $3, now(), now(), 'rejected')",
            )
            .bind(id)
            .bind(user)
            .bind(status)
            .execute(pool)
            .await
            .unwrap();
        }
        id
    }

    #[tokio::test]
    async fn a_replay_resets_only_failed_deliveries_and_publishes_only_them() {
        let pool = crate::db::test_pool("dlq_replay").await;
        let conv = format!("dlq-{}", Uuid::new_v4().simple());
        let id = failed_message(&pool, &conv).await;
        let letters = vec![letter("0:1", id, "bob"), letter("0:2", id, "carol")];
        let mut tx = pool.begin().await.unwrap();
        let found = statuses(&pool, &letters, true, Some(&mut tx)).await.unwrap();
        let (replayed, skipped) = decide(&letters, &found);
        assert_eq!((replayed.len(), skipped.len()), (1, 1));
        assert_eq!(reset_and_publish(&mut tx, &replayed).await.unwrap().0, 1);
        tx.commit().await.unwrap();

        let row = sqlx::query("SELECT status, routed_at IS NULL AS unrouted FROM deliveries WHERE message_id = $1 AND recipient_id = 'bob'")
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!((row.get::<String, _>("status").as_str(), row.get::<bool, _>("unrouted")), ("PENDING", true));
        let payload: Vec<u8> =
            sqlx::query_scalar("SELECT payload FROM outbox WHERE key = $1").bind(&conv).fetch_one(&pool).await.unwrap();
        let event: ChatEvent = serde_json::from_slice(&payload).unwrap();
        assert_eq!(event.recipients, vec![Recipient { user_id: "bob".into(), channel: Channel::Telegram }]);
        assert_eq!((event.message_id, event.content.text.as_str()), (id, "hi"));

        // A second look finds the delivery PENDING: nothing to replay.
        let found = statuses(&pool, &letters, false, None).await.unwrap();
        assert!(decide(&letters, &found).0.is_empty());
        sqlx::query("DELETE FROM outbox WHERE key = $1").bind(&conv).execute(&pool).await.unwrap();
        sqlx::query("DELETE FROM messages WHERE id = $1").bind(id).execute(&pool).await.unwrap();
    }
}
