//! The api-gateway's admin endpoints (control token required): API keys. `api_keys` belongs to
//! this service; `chat4allctl apikey` and the benchmarks create and revoke keys through here.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use chat4all_contract::admin::api_keys::{CreateKey, CreatedKey, KeyList, KeySummary, API_KEYS_PATH};
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};

use super::keys::{display_prefix, generate_key, hash_key};
use crate::http::{AdminToken, AppError};

pub fn routes(pool: PgPool, token: &AdminToken) -> Router {
    let router = Router::new()
        .route(API_KEYS_PATH, get(list).post(create))
        .route(&format!("{API_KEYS_PATH}/{{name}}"), delete(revoke))
        .with_state(pool);
    crate::http::guard(router, token)
}

const COLUMNS: &str = "name, prefix, rate_per_second, burst, created_at, revoked_at";

fn summary(r: &PgRow) -> KeySummary {
    KeySummary {
        name: r.get("name"),
        prefix: r.get("prefix"),
        rate_per_second: r.get("rate_per_second"),
        burst: r.get("burst"),
        created_at: r.get("created_at"),
        revoked_at: r.get("revoked_at"),
    }
}

async fn list(State(pool): State<PgPool>) -> Result<Json<KeyList>, AppError> {
    let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM api_keys ORDER BY id")).fetch_all(&pool).await?;
    Ok(Json(KeyList { keys: rows.iter().map(summary).collect() }))
}

async fn create(
    State(pool): State<PgPool>,
    body: Result<Json<CreateKey>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<CreatedKey>), AppError> {
    let Json(req) = body.map_err(|e| AppError::bad_request(e.body_text(), None))?;
    if let Some(problem) = req.problem() {
        return Err(AppError::bad_request(problem, None));
    }
    let key = generate_key();
    let row = sqlx::query(&format!(
        "INSERT INTO api_keys (name, key_hash, prefix, rate_per_second, burst) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (name) DO NOTHING RETURNING {COLUMNS}"
    ))
    .bind(&req.name)
    .bind(hash_key(&key))
    .bind(display_prefix(&key))
    .bind(req.rate_per_second)
    .bind(req.burst.map(|b| b as i32))
    .fetch_optional(&pool)
    .await?;
    let Some(row) = row else {
        return Err(AppError::new(
            StatusCode::CONFLICT,
            format!("a key named {:?} exists already (revoked keys keep their name)", req.name),
        ));
    };
    tracing::info!(name = %req.name, "api key created");
    Ok((StatusCode::CREATED, Json(CreatedKey { key, summary: summary(&row) })))
}

async fn revoke(State(pool): State<PgPool>, Path(name): Path<String>) -> Result<Json<KeySummary>, AppError> {
    let row = sqlx::query(&format!(
        "UPDATE api_keys SET revoked_at = now() WHERE name = $1 AND revoked_at IS NULL RETURNING {COLUMNS}"
    ))
    .bind(&name)
    .fetch_optional(&pool)
    .await?;
    match row {
        Some(r) => {
            tracing::info!(%name, "api key revoked");
            Ok(Json(summary(&r)))
        }
        None => Err(AppError::not_found(format!("no active key named {name:?}"))),
    }
}
