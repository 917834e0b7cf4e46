//! PostgreSQL access of the message-service.

use std::collections::{HashMap, HashSet};

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

/// One accepted message as it is written: the message row, one delivery row per recipient and
/// the outbox record (the serialized event), prepared before it reaches the database.
#[derive(Debug)]
pub struct NewRow {
    pub id: Uuid,
    conversation_id: String,
    sender_id: String,
    channel: &'static str,
    content: serde_json::Value,
    created_at: DateTime<Utc>,
    recipients: Vec<(String, &'static str)>,
    payload: Vec<u8>,
    request_id: Option<String>,
}

impl NewRow {
    pub fn conversation_id(&self) -> &str {
        &self.conversation_id
    }

    /// Size of the chat event the relay publishes for this message.
    pub fn payload_len(&self) -> usize {
        self.payload.len()
    }

    /// The message's deliveries: (message, recipient, channel).
    pub fn keys(&self) -> impl Iterator<Item = (Uuid, String, Channel)> + '_ {
        self.recipients.iter().filter_map(|(user, ch)| Some((self.id, user.clone(), ch.parse().ok()?)))
    }

    /// `request_id`: the caller's request id (from the api-gateway), published as a Kafka header.
    pub fn new(id: Uuid, msg: &NewMessage, request_id: Option<&str>) -> Self {
        let created_at = Utc::now();
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
        Self {
            id,
            conversation_id: msg.conversation_id.clone(),
            sender_id: msg.sender_id.clone(),
            channel: msg.channel.as_str(),
            content: serde_json::to_value(&msg.content).expect("content serializes"),
            created_at,
            recipients: msg.recipients.iter().map(|r| (r.user_id.clone(), r.channel.as_str())).collect(),
            payload: serde_json::to_vec(&event).expect("event serializes"),
            request_id: request_id.map(str::to_owned),
        }
    }
}

/// Writes the messages, their delivery rows and their outbox records in one statement (so
/// atomically, and in one round trip), in the order given. A message whose id exists already
/// writes nothing; the ids actually inserted are returned.
///
/// One statement per message cost a round trip and a commit each; at 1,000 messages/s those
/// were most of the service's CPU (loopback TCP) and a good share of PostgreSQL's, so the
/// [`super::writer`] hands this function every message that arrived while the last batch ran.
pub async fn insert_rows(pool: &PgPool, rows: &[&NewRow]) -> Result<HashSet<Uuid>, sqlx::Error> {
    let mut ids = Vec::with_capacity(rows.len());
    let mut convs = Vec::with_capacity(rows.len());
    let mut senders = Vec::with_capacity(rows.len());
    let mut channels = Vec::with_capacity(rows.len());
    let mut contents = Vec::with_capacity(rows.len());
    let mut created = Vec::with_capacity(rows.len());
    let mut payloads = Vec::with_capacity(rows.len());
    let mut request_ids = Vec::with_capacity(rows.len());
    let (mut d_ids, mut d_users, mut d_channels) = (Vec::new(), Vec::new(), Vec::new());
    for r in rows {
        ids.push(r.id);
        convs.push(r.conversation_id.as_str());
        senders.push(r.sender_id.as_str());
        channels.push(r.channel);
        contents.push(&r.content);
        created.push(r.created_at);
        payloads.push(r.payload.as_slice());
        request_ids.push(r.request_id.as_deref());
        for (user, channel) in &r.recipients {
            d_ids.push(r.id);
            d_users.push(user.as_str());
            d_channels.push(*channel);
        }
    }
    let inserted: Vec<Uuid> = sqlx::query_scalar(
        "WITH input AS (
             SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::jsonb[],
                                  $6::timestamptz[], $7::bytea[], $8::text[])
                 WITH ORDINALITY AS t(id, conversation_id, sender_id, channel, content, created_at,
                                      payload, request_id, ord)
         ), m AS (
             INSERT INTO messages (id, conversation_id, sender_id, channel, content, created_at)
             SELECT id, conversation_id, sender_id, channel, content, created_at FROM input ORDER BY ord
             ON CONFLICT (id) DO NOTHING
             RETURNING id
         ), d AS (
             INSERT INTO deliveries (message_id, recipient_id, channel)
             SELECT r.message_id, r.recipient_id, r.channel
             FROM UNNEST($9::uuid[], $10::text[], $11::text[]) AS r(message_id, recipient_id, channel)
             JOIN m ON m.id = r.message_id
         ), o AS (
             INSERT INTO outbox (topic, key, payload, request_id)
             SELECT $12, i.conversation_id, i.payload, i.request_id
             FROM input i JOIN m ON m.id = i.id ORDER BY i.ord
         )
         SELECT id FROM m",
    )
    .bind(&ids)
    .bind(&convs)
    .bind(&senders)
    .bind(&channels)
    .bind(&contents)
    .bind(&created)
    .bind(&payloads)
    .bind(&request_ids)
    .bind(&d_ids)
    .bind(&d_users)
    .bind(&d_channels)
    .bind(topics::CHAT_EVENTS)
    .fetch_all(pool)
    .await?;
    Ok(inserted.into_iter().collect())
}

/// What a resubmitted id means: the same request again, or another one under a taken id.
pub async fn existing_outcome(pool: &PgPool, id: Uuid, msg: &NewMessage) -> Result<InsertOutcome, sqlx::Error> {
    Ok(match load(pool, id).await? {
        Some(existing) if existing.same_request(msg) => InsertOutcome::Replayed,
        _ => InsertOutcome::Conflict,
    })
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

/// The message's status: its least advanced recipient's, leaving out the failed ones (FAILED
/// when every one failed).
fn overall(recipients: &[RecipientView]) -> String {
    recipients
        .iter()
        .filter_map(|r| DeliveryStatus::from_name(&r.status))
        .filter(|s| *s != DeliveryStatus::Failed)
        .min()
        .unwrap_or(DeliveryStatus::Failed)
        .as_str()
        .to_string()
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
        ranks.push(status.rank());
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
           AND u.rank > array_position($11::text[], d.status) - 1",
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
    .bind(DeliveryStatus::ALL.map(DeliveryStatus::as_str).as_slice())
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}
