//! PostgreSQL access of the message-service.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgPool, Row};
use uuid::Uuid;

use super::domain::NewMessage;
use crate::channel::Channel;
use crate::config::topics;
use crate::events::{ChatEvent, Content, DeliveryStatus, StatusUpdate, MESSAGE_CREATED};

pub enum InsertOutcome {
    Created,
    /// The id exists already with the same content: the same answer again.
    Replayed,
    /// The id exists already with other content.
    Conflict,
}

/// Writes the message, one delivery row per recipient and the outbox record in one transaction.
/// `request_id`: the caller's request id (from the api-gateway), published as a Kafka header.
pub async fn insert(
    pool: &PgPool,
    id: Uuid,
    msg: &NewMessage,
    request_id: Option<&str>,
) -> Result<InsertOutcome, sqlx::Error> {
    let created_at = Utc::now();
    let mut tx = pool.begin().await?;
    let content = serde_json::to_value(&msg.content).expect("content serializes");
    let inserted = sqlx::query(
        "INSERT INTO messages (id, conversation_id, sender_id, channel, content, created_at)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
    )
    .bind(id)
    .bind(&msg.conversation_id)
    .bind(&msg.sender_id)
    .bind(msg.channel.as_str())
    .bind(&content)
    .bind(created_at)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        tx.rollback().await?;
        return Ok(match load(pool, id).await? {
            Some(existing) if existing.same_request(msg) => InsertOutcome::Replayed,
            _ => InsertOutcome::Conflict,
        });
    }
    let users: Vec<&str> = msg.recipients.iter().map(|r| r.user_id.as_str()).collect();
    let channels: Vec<&str> = msg.recipients.iter().map(|r| r.channel.as_str()).collect();
    sqlx::query(
        "INSERT INTO deliveries (message_id, recipient_id, channel)
         SELECT $1, u, c FROM UNNEST($2::text[], $3::text[]) AS t(u, c)",
    )
    .bind(id)
    .bind(&users)
    .bind(&channels)
    .execute(&mut *tx)
    .await?;
    let event = ChatEvent {
        event_type: MESSAGE_CREATED.into(),
        message_id: id,
        conversation_id: msg.conversation_id.clone(),
        sender_id: msg.sender_id.clone(),
        channel: msg.channel,
        content: msg.content.clone(),
        recipients: msg.recipients.clone(),
        created_at,
    };
    sqlx::query("INSERT INTO outbox (topic, key, payload, request_id) VALUES ($1, $2, $3, $4)")
        .bind(topics::CHAT_EVENTS)
        .bind(&msg.conversation_id)
        .bind(serde_json::to_vec(&event).expect("event serializes"))
        .bind(request_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(InsertOutcome::Created)
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecipientView {
    pub user_id: String,
    pub channel: String,
    pub status: String,
    pub sent_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub read_at: Option<DateTime<Utc>>,
    pub failed_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageView {
    pub message_id: Uuid,
    pub conversation_id: String,
    pub sender_id: String,
    pub channel: String,
    pub content: serde_json::Value,
    pub created_at: DateTime<Utc>,
    /// The least advanced status of the non-failed recipients (FAILED when all failed).
    pub status: String,
    pub recipients: Vec<RecipientView>,
    #[serde(skip)]
    pub seq: i64,
}

impl MessageView {
    fn same_request(&self, msg: &NewMessage) -> bool {
        let content: Option<Content> = serde_json::from_value(self.content.clone()).ok();
        let mut mine: Vec<(String, String)> =
            msg.recipients.iter().map(|r| (r.user_id.clone(), r.channel.as_str().to_string())).collect();
        let mut theirs: Vec<(String, String)> =
            self.recipients.iter().map(|r| (r.user_id.clone(), r.channel.clone())).collect();
        mine.sort();
        theirs.sort();
        self.conversation_id == msg.conversation_id
            && self.sender_id == msg.sender_id
            && self.channel == msg.channel.as_str()
            && content.as_ref() == Some(&msg.content)
            && mine == theirs
    }
}

fn overall(recipients: &[RecipientView]) -> String {
    let rank = |s: &str| match s {
        "PENDING" => 0,
        "SENT" => 1,
        "DELIVERED" => 2,
        "READ" => 3,
        _ => 4,
    };
    recipients
        .iter()
        .filter(|r| r.status != "FAILED")
        .min_by_key(|r| rank(&r.status))
        .map(|r| r.status.clone())
        .unwrap_or_else(|| "FAILED".into())
}

pub async fn load(pool: &PgPool, id: Uuid) -> Result<Option<MessageView>, sqlx::Error> {
    let mut found = load_many(pool, "WHERE id = $1", |q| q.bind(id)).await?;
    Ok(found.pop())
}

/// One page of a conversation, oldest first, after the `after` cursor.
pub async fn conversation_page(
    pool: &PgPool,
    conversation_id: &str,
    after: i64,
    limit: i64,
) -> Result<Vec<MessageView>, sqlx::Error> {
    load_many(pool, "WHERE conversation_id = $1 AND seq > $2 ORDER BY seq LIMIT $3", |q| {
        q.bind(conversation_id.to_owned()).bind(after).bind(limit)
    })
    .await
}

type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

async fn load_many(
    pool: &PgPool,
    filter: &str,
    bind: impl for<'q> FnOnce(PgQuery<'q>) -> PgQuery<'q>,
) -> Result<Vec<MessageView>, sqlx::Error> {
    let sql =
        format!("SELECT id, seq, conversation_id, sender_id, channel, content, created_at FROM messages {filter}");
    let rows = bind(sqlx::query(&sql)).fetch_all(pool).await?;
    let ids: Vec<Uuid> = rows.iter().map(|r| r.get("id")).collect();
    let drows = sqlx::query(
        "SELECT message_id, recipient_id, channel, status, sent_at, delivered_at, read_at, failed_at, failure_reason
         FROM deliveries WHERE message_id = ANY($1) ORDER BY recipient_id, channel",
    )
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    let mut by_message: HashMap<Uuid, Vec<RecipientView>> = HashMap::new();
    for d in drows {
        by_message.entry(d.get("message_id")).or_default().push(RecipientView {
            user_id: d.get("recipient_id"),
            channel: d.get("channel"),
            status: d.get("status"),
            sent_at: d.get("sent_at"),
            delivered_at: d.get("delivered_at"),
            read_at: d.get("read_at"),
            failed_at: d.get("failed_at"),
            reason: d.get("failure_reason"),
        });
    }
    Ok(rows
        .into_iter()
        .map(|r| {
            let id: Uuid = r.get("id");
            let recipients = by_message.remove(&id).unwrap_or_default();
            MessageView {
                message_id: id,
                seq: r.get("seq"),
                conversation_id: r.get("conversation_id"),
                sender_id: r.get("sender_id"),
                channel: r.get("channel"),
                content: r.get("content"),
                created_at: r.get("created_at"),
                status: overall(&recipients),
                recipients,
            }
        })
        .collect())
}

/// The furthest status seen per recipient in a batch of receipts, with the first time of each step.
#[derive(Debug, Default, Clone)]
struct Folded {
    status: Option<DeliveryStatus>,
    sent_at: Option<DateTime<Utc>>,
    delivered_at: Option<DateTime<Utc>>,
    read_at: Option<DateTime<Utc>>,
    failed_at: Option<DateTime<Utc>>,
    reason: Option<String>,
}

/// Applies receipts; a status only ever moves forward. Returns the rows changed.
pub async fn apply_status_updates(pool: &PgPool, updates: &[StatusUpdate]) -> Result<u64, sqlx::Error> {
    let mut folded: HashMap<(Uuid, String, Channel), Folded> = HashMap::new();
    for u in updates {
        let f = folded.entry((u.message_id, u.recipient_id.clone(), u.channel)).or_default();
        f.status = f.status.max(Some(u.status));
        let first = |slot: &mut Option<DateTime<Utc>>| *slot = Some(slot.map_or(u.at, |t| t.min(u.at)));
        match u.status {
            DeliveryStatus::Pending => {}
            DeliveryStatus::Sent => first(&mut f.sent_at),
            DeliveryStatus::Delivered => first(&mut f.delivered_at),
            DeliveryStatus::Read => first(&mut f.read_at),
            DeliveryStatus::Failed => {
                first(&mut f.failed_at);
                f.reason = u.reason.clone();
            }
        }
    }
    if folded.is_empty() {
        return Ok(0);
    }
    let n = folded.len();
    let (mut ids, mut users, mut chans, mut statuses, mut ranks) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut sent, mut delivered, mut read, mut failed, mut reasons) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for ((id, user, chan), f) in folded {
        let status = f.status.unwrap_or(DeliveryStatus::Pending);
        ids.push(id);
        users.push(user);
        chans.push(chan.as_str());
        statuses.push(status.as_str());
        ranks.push(status as i32);
        sent.push(f.sent_at);
        delivered.push(f.delivered_at);
        read.push(f.read_at);
        failed.push(f.failed_at);
        reasons.push(f.reason);
    }
    let done = sqlx::query(
        "UPDATE deliveries d SET
            status = u.status,
            sent_at = COALESCE(d.sent_at, u.sent_at, u.delivered_at, u.read_at),
            delivered_at = COALESCE(d.delivered_at, u.delivered_at, u.read_at),
            read_at = COALESCE(d.read_at, u.read_at),
            failed_at = COALESCE(d.failed_at, u.failed_at),
            failure_reason = COALESCE(u.reason, d.failure_reason),
            updated_at = now()
         FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::int[],
                     $6::timestamptz[], $7::timestamptz[], $8::timestamptz[], $9::timestamptz[], $10::text[])
              AS u(message_id, recipient_id, channel, status, rank, sent_at, delivered_at, read_at, failed_at, reason)
         WHERE d.message_id = u.message_id AND d.recipient_id = u.recipient_id AND d.channel = u.channel
           AND u.rank > CASE d.status WHEN 'PENDING' THEN 0 WHEN 'SENT' THEN 1 WHEN 'DELIVERED' THEN 2
                                      WHEN 'READ' THEN 3 ELSE 4 END",
    )
    .bind(&ids)
    .bind(&users)
    .bind(&chans)
    .bind(&statuses)
    .bind(&ranks)
    .bind(&sent)
    .bind(&delivered)
    .bind(&read)
    .bind(&failed)
    .bind(&reasons)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}
