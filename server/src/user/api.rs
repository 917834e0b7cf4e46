//! HTTP API of the user-service.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use super::cache::{identity_key, user_key, Cache};
use super::domain::{self, NewIdentity, NewUser};
use super::store::{self, UserView, WriteError};
use crate::channel::Channel;
use crate::http::{AppError, Page, PageQuery};

const MAX_BODY_BYTES: usize = 64 * 1024;

#[derive(Clone)]
pub struct ApiState {
    pub pool: sqlx::PgPool,
    pub cache: Arc<Cache>,
}

pub fn routes(state: ApiState) -> Router {
    Router::new()
        .route("/api/v1/users", post(create_user).get(list_users))
        .route("/api/v1/users/{id}", get(get_user))
        .route("/api/v1/users/{id}/identities", post(add_identity))
        .route("/api/v1/users/{id}/identities/{channel}", delete(remove_identity))
        .route("/api/v1/identities/resolve", get(resolve))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

impl From<WriteError> for AppError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::IdentityTaken { .. } => {
                AppError { status: StatusCode::CONFLICT, error: e.to_string(), field: Some("externalId".into()) }
            }
            WriteError::NoSuchUser => AppError::not_found("user not found"),
            WriteError::Db(e) => e.into(),
        }
    }
}

fn body(body: Result<Bytes, BytesRejection>) -> Result<Bytes, AppError> {
    body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            AppError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("request body exceeds {MAX_BODY_BYTES} bytes"))
        } else {
            AppError::bad_request(format!("unreadable body: {e}"), None)
        }
    })
}

fn user_id(raw: &str) -> Result<Uuid, AppError> {
    Uuid::parse_str(raw).map_err(|_| AppError::bad_request("userId must be a UUID", Some("userId")))
}

fn channel(raw: &str, field: &str) -> Result<Channel, AppError> {
    raw.parse().map_err(|e: crate::channel::UnknownChannel| AppError::bad_request(e.to_string(), Some(field)))
}

async fn create_user(State(s): State<ApiState>, b: Result<Bytes, BytesRejection>) -> Result<Response, AppError> {
    let b = body(b)?;
    let user = NewUser::parse(&b).map_err(|e| AppError::bad_request(e.error, e.field.as_deref()))?;
    let view = store::create(&s.pool, &user).await?;
    tracing::info!(user_id = %view.user_id, identities = view.identities.len(), "user created");
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

async fn list_users(State(s): State<ApiState>, Query(q): Query<PageQuery>) -> Result<Response, AppError> {
    let Page { limit, after } = Page::parse(&q)?;
    let users = store::page(&s.pool, after, limit).await?;
    let next = if users.len() as i64 == limit { users.last().map(|u| u.seq.to_string()) } else { None };
    Ok(Json(json!({"users": users, "nextCursor": next})).into_response())
}

async fn get_user(State(s): State<ApiState>, Path(id): Path<String>) -> Result<Response, AppError> {
    let id = user_id(&id)?;
    let key = user_key(&id);
    if let Some(hit) = s.cache.get(&key).await {
        if let Ok(view) = serde_json::from_str::<UserView>(&hit) {
            return Ok(([("x-cache", "hit")], Json(view)).into_response());
        }
    }
    let view = store::get(&s.pool, id).await?.ok_or_else(|| AppError::not_found(format!("user {id} not found")))?;
    if let Ok(text) = serde_json::to_string(&view) {
        s.cache.set(&key, &text).await;
    }
    Ok(([("x-cache", "miss")], Json(view)).into_response())
}

async fn add_identity(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, AppError> {
    let id = user_id(&id)?;
    let b = body(b)?;
    let identity = NewIdentity::parse(&b).map_err(|e| AppError::bad_request(e.error, e.field.as_deref()))?;
    let replaced = store::set_identity(&s.pool, id, &identity).await?;
    let mut stale = vec![user_key(&id), identity_key(identity.channel.as_str(), &identity.external_id)];
    if let Some(old) = replaced {
        stale.push(identity_key(identity.channel.as_str(), &old));
    }
    s.cache.invalidate(&stale).await;
    Ok((
        StatusCode::CREATED,
        Json(json!({"userId": id, "channel": identity.channel, "externalId": identity.external_id})),
    )
        .into_response())
}

async fn remove_identity(
    State(s): State<ApiState>,
    Path((id, ch)): Path<(String, String)>,
) -> Result<Response, AppError> {
    let id = user_id(&id)?;
    let ch = channel(&ch, "channel")?;
    match store::remove_identity(&s.pool, id, ch).await? {
        Some(external) => {
            s.cache.invalidate(&[user_key(&id), identity_key(ch.as_str(), &external)]).await;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        None => Err(AppError::not_found(format!("user {id} has no {ch} identity"))),
    }
}

#[derive(Debug, Deserialize)]
struct ResolveQuery {
    channel: Option<String>,
    id: Option<String>,
}

async fn resolve(State(s): State<ApiState>, Query(q): Query<ResolveQuery>) -> Result<Response, AppError> {
    let ch = domain::channel(q.channel.as_ref().map(|c| serde_json::Value::String(c.clone())).as_ref(), "channel")
        .map_err(|e| AppError::bad_request(e.error, e.field.as_deref()))?;
    let external =
        q.id.filter(|i| !i.trim().is_empty()).ok_or_else(|| AppError::bad_request("id is required", Some("id")))?;
    let key = identity_key(ch.as_str(), &external);
    let (user, cache) = match s.cache.get(&key).await.and_then(|v| Uuid::parse_str(&v).ok()) {
        Some(u) => (u, "hit"),
        None => {
            let u = store::resolve(&s.pool, ch, &external)
                .await?
                .ok_or_else(|| AppError::not_found(format!("no user has {ch} identity {external:?}")))?;
            s.cache.set(&key, &u.to_string()).await;
            (u, "miss")
        }
    };
    Ok(([("x-cache", cache)], Json(json!({"userId": user, "channel": ch, "externalId": external}))).into_response())
}
