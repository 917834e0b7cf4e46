//! The deliveries of a set of messages, for the control plane (control token required): how
//! far they are, and the facts a drill's or a bench's counts are made of. `messages` and
//! `deliveries` belong to this service; the drill, the bench and the tests read them only here.

use std::collections::HashMap;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use chat4all_contract::admin::deliveries::{
    DeliveryFact, Facts, MessageFact, Messages, Progress, FACTS_PATH, PROGRESS_PATH,
};
use chat4all_contract::events::DeliveryStatus;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::channel::Channel;
use crate::http::AppError;

type JsonBody<T> = Result<Json<T>, axum::extract::rejection::JsonRejection>;

pub fn routes(pool: PgPool) -> Router {
    Router::new().route(PROGRESS_PATH, post(progress)).route(FACTS_PATH, post(facts)).with_state(pool)
}

fn messages(body: JsonBody<Messages>) -> Result<Vec<Uuid>, AppError> {
    let Json(req) = body.map_err(|e| AppError::bad_request(e.body_text(), None))?;
    if let Some(problem) = req.problem() {
        return Err(AppError::bad_request(problem, Some("messageIds")));
    }
    Ok(req.message_ids)
}

async fn progress(State(pool): State<PgPool>, body: JsonBody<Messages>) -> Result<Json<Progress>, AppError> {
    let ids = messages(body)?;
    let rows: Vec<(Uuid, i64, i64)> = sqlx::query_as(
        "SELECT message_id, count(*), count(*) FILTER (WHERE delivered_at IS NOT NULL OR status = 'FAILED')
         FROM deliveries WHERE message_id = ANY($1) GROUP BY message_id",
    )
    .bind(&ids)
    .fetch_all(&pool)
    .await?;
    let mut p = Progress { stored: rows.len() as u64, ..Progress::default() };
    let mut done = std::collections::HashSet::with_capacity(rows.len());
    for (id, deliveries, finished) in rows {
        p.deliveries += deliveries as u64;
        p.finished += finished as u64;
        if finished == deliveries {
            done.insert(id);
        }
    }
    p.unfinished_message_ids = ids.into_iter().filter(|id| !done.contains(id)).collect();
    Ok(Json(p))
}

type FactRow = (
    Uuid,
    String,
    i64,
    DateTime<Utc>,
    String,
    String,
    String,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    Option<String>,
);

async fn facts(State(pool): State<PgPool>, body: JsonBody<Messages>) -> Result<Json<Facts>, AppError> {
    let ids = messages(body)?;
    let rows: Vec<FactRow> = sqlx::query_as(
        "SELECT m.id, m.conversation_id, m.seq, m.created_at,
                d.recipient_id, d.channel, d.status, d.delivered_at, d.routed_at, d.routed_by
         FROM messages m JOIN deliveries d ON d.message_id = m.id
         WHERE m.id = ANY($1) ORDER BY m.seq",
    )
    .bind(&ids)
    .fetch_all(&pool)
    .await?;
    let mut out: Vec<MessageFact> = Vec::new();
    let mut at: HashMap<Uuid, usize> = HashMap::new();
    for (id, conversation_id, seq, created_at, recipient_id, channel, status, delivered_at, routed_at, routed_by) in
        rows
    {
        let fact = DeliveryFact {
            recipient_id,
            channel: channel.parse::<Channel>().map_err(|e| AppError::internal(format!("stored channel: {e}")))?,
            status: DeliveryStatus::from_name(&status)
                .ok_or_else(|| AppError::internal(format!("stored status {status:?}")))?,
            delivered_at,
            routed_at,
            routed_by,
        };
        let i = *at.entry(id).or_insert_with(|| {
            out.push(MessageFact { id, conversation_id, seq, created_at, deliveries: Vec::new() });
            out.len() - 1
        });
        out[i].deliveries.push(fact);
    }
    Ok(Json(Facts { messages: out }))
}
