//! File metadata in PostgreSQL.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgPool, Row};
use uuid::Uuid;

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FileMeta {
    pub file_id: Uuid,
    pub sha256: String,
    pub size: i64,
    pub content_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub created_at: DateTime<Utc>,
}

pub async fn insert(
    pool: &PgPool,
    sha256: &str,
    size: u64,
    content_type: &str,
    name: Option<&str>,
) -> Result<FileMeta, sqlx::Error> {
    let id = Uuid::now_v7();
    let created_at: DateTime<Utc> = sqlx::query_scalar(
        "INSERT INTO files (id, sha256, size_bytes, content_type, name) VALUES ($1, $2, $3, $4, $5) RETURNING created_at",
    )
    .bind(id)
    .bind(sha256)
    .bind(size as i64)
    .bind(content_type)
    .bind(name)
    .fetch_one(pool)
    .await?;
    Ok(FileMeta {
        file_id: id,
        sha256: sha256.to_string(),
        size: size as i64,
        content_type: content_type.to_string(),
        name: name.map(str::to_owned),
        created_at,
    })
}

pub async fn get(pool: &PgPool, id: Uuid) -> Result<Option<FileMeta>, sqlx::Error> {
    let row = sqlx::query("SELECT id, sha256, size_bytes, content_type, name, created_at FROM files WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await?;
    Ok(row.map(|r| FileMeta {
        file_id: r.get("id"),
        sha256: r.get("sha256"),
        size: r.get("size_bytes"),
        content_type: r.get("content_type"),
        name: r.get("name"),
        created_at: r.get("created_at"),
    }))
}

/// The ids among `ids` that have no file (for message validation).
pub async fn unknown(pool: &PgPool, ids: &[Uuid]) -> Result<Vec<Uuid>, sqlx::Error> {
    let found: Vec<Uuid> =
        sqlx::query_scalar("SELECT id FROM files WHERE id = ANY($1)").bind(ids).fetch_all(pool).await?;
    Ok(ids.iter().filter(|i| !found.contains(i)).copied().collect())
}
