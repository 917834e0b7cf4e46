//! HTTP API of the message-service.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use tokio::sync::Notify;
use uuid::Uuid;

use super::domain::{NewMessage, MAX_BODY_BYTES};
use super::store::{self, InsertOutcome, NewRow};
use super::writer::{WriteError, Writer};
use crate::http::{AppError, Page, PageQuery};

#[derive(Clone)]
pub struct ApiState {
    pub pool: sqlx::PgPool,
    /// Group commit of accepted messages.
    pub writer: Writer,
    /// Wakes the outbox relay as soon as a message is committed.
    pub relay_wakeup: Arc<Notify>,
}

pub fn routes(state: ApiState) -> Router {
    Router::new()
        .route("/api/v1/messages", post(create_message))
        .route("/api/v1/messages/{id}", get(get_message))
        .route("/api/v1/conversations/{id}/messages", get(conversation_messages))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

async fn create_message(
    State(s): State<ApiState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, AppError> {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            AppError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("request body exceeds {MAX_BODY_BYTES} bytes"))
        } else {
            AppError::bad_request(format!("unreadable body: {e}"), None)
        }
    })?;
    if let Some(ct) = headers.get(axum::http::header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or_default();
        if !ct.starts_with("application/json") {
            return Err(AppError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("content-type must be application/json, got {ct:?}"),
            ));
        }
    }
    let msg = NewMessage::parse(&body).map_err(|e| AppError::bad_request(e.error, e.field.as_deref()))?;
    if !msg.content.file_ids.is_empty() {
        let unknown = crate::file::meta::unknown(&s.pool, &msg.content.file_ids).await?;
        if let Some(id) = unknown.first() {
            return Err(AppError::bad_request(format!("unknown file id {id}"), Some("content.fileIds")));
        }
    }
    let id = msg.message_id.unwrap_or_else(Uuid::now_v7);
    let request_id = request_id(&headers);
    let outcome = if s.writer.write(NewRow::new(id, &msg, request_id)).await? {
        InsertOutcome::Created
    } else {
        store::existing_outcome(&s.pool, id, &msg).await?
    };
    match outcome {
        InsertOutcome::Created => s.relay_wakeup.notify_one(),
        InsertOutcome::Replayed => {}
        InsertOutcome::Conflict => {
            return Err(AppError {
                status: StatusCode::CONFLICT,
                error: format!("message {id} exists with different content"),
                field: Some("messageId".into()),
            })
        }
    }
    Ok((StatusCode::ACCEPTED, Json(json!({"messageId": id, "status": "PENDING"}))).into_response())
}

impl From<WriteError> for AppError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Database(e) => e.into(),
            WriteError::Unavailable(reason) => AppError::database_unavailable(reason),
            WriteError::Stopped => AppError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting down, try again"),
        }
    }
}

/// The caller's `x-request-id` when it is a usable one (1-128 visible ASCII characters, as the
/// api-gateway sends); anything else is ignored, never refused.
fn request_id(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get("x-request-id")?.to_str().ok()?;
    (!v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic())).then_some(v)
}

fn parse_uuid(raw: &str, what: &str) -> Result<Uuid, AppError> {
    Uuid::parse_str(raw).map_err(|_| AppError::bad_request(format!("{what} must be a UUID"), Some(what)))
}

async fn get_message(State(s): State<ApiState>, Path(id): Path<String>) -> Result<Response, AppError> {
    let id = parse_uuid(&id, "messageId")?;
    match store::load(&s.pool, id).await? {
        Some(view) => Ok(Json(view).into_response()),
        None => Err(AppError::not_found(format!("message {id} not found"))),
    }
}

async fn conversation_messages(
    State(s): State<ApiState>,
    Path(conversation_id): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Response, AppError> {
    let Page { limit, after } = Page::parse(&q)?;
    let page = store::conversation_page(&s.pool, &conversation_id, after, limit).await?;
    let next = if page.len() as i64 == limit { page.last().map(|m| m.seq.to_string()) } else { None };
    Ok(Json(json!({
        "conversationId": conversation_id,
        "messages": page,
        "nextCursor": next,
    }))
    .into_response())
}
