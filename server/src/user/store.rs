//! PostgreSQL access of the user-service.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgPool, Row};
use uuid::Uuid;

use super::domain::{NewIdentity, NewUser};
use crate::channel::Channel;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IdentityView {
    pub channel: String,
    pub external_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UserView {
    pub user_id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub identities: Vec<IdentityView>,
    #[serde(skip)]
    pub seq: i64,
}

/// Why a write was refused.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{channel} identity {external_id:?} belongs to another user")]
    IdentityTaken { channel: String, external_id: String },
    #[error("user not found")]
    NoSuchUser,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

fn unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.code().as_deref() == Some("23505"))
}

/// Creates the user and its identities in one transaction.
pub async fn create(pool: &PgPool, user: &NewUser) -> Result<UserView, WriteError> {
    let id = Uuid::now_v7();
    let mut tx = pool.begin().await?;
    let row = sqlx::query("INSERT INTO users (id, name) VALUES ($1, $2) RETURNING seq, created_at")
        .bind(id)
        .bind(&user.name)
        .fetch_one(&mut *tx)
        .await?;
    for i in &user.identities {
        sqlx::query("INSERT INTO identities (user_id, channel, external_id) VALUES ($1, $2, $3)")
            .bind(id)
            .bind(i.channel.as_str())
            .bind(&i.external_id)
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                if unique_violation(&e) {
                    WriteError::IdentityTaken { channel: i.channel.to_string(), external_id: i.external_id.clone() }
                } else {
                    e.into()
                }
            })?;
    }
    tx.commit().await?;
    Ok(UserView {
        user_id: id,
        name: user.name.clone(),
        created_at: row.get("created_at"),
        identities: user
            .identities
            .iter()
            .map(|i| IdentityView { channel: i.channel.to_string(), external_id: i.external_id.clone() })
            .collect(),
        seq: row.get("seq"),
    })
}

async fn identities_of(pool: &PgPool, ids: &[Uuid]) -> Result<Vec<(Uuid, IdentityView)>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT user_id, channel, external_id FROM identities WHERE user_id = ANY($1) ORDER BY user_id, channel",
    )
    .bind(ids)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get("user_id"), IdentityView { channel: r.get("channel"), external_id: r.get("external_id") }))
        .collect())
}

async fn with_identities(pool: &PgPool, rows: Vec<sqlx::postgres::PgRow>) -> Result<Vec<UserView>, sqlx::Error> {
    let ids: Vec<Uuid> = rows.iter().map(|r| r.get("id")).collect();
    let idents = identities_of(pool, &ids).await?;
    Ok(rows
        .iter()
        .map(|r| {
            let id: Uuid = r.get("id");
            UserView {
                user_id: id,
                name: r.get("name"),
                created_at: r.get("created_at"),
                identities: idents.iter().filter(|(u, _)| *u == id).map(|(_, i)| i.clone()).collect(),
                seq: r.get("seq"),
            }
        })
        .collect())
}

pub async fn get(pool: &PgPool, id: Uuid) -> Result<Option<UserView>, sqlx::Error> {
    let rows =
        sqlx::query("SELECT id, seq, name, created_at FROM users WHERE id = $1").bind(id).fetch_all(pool).await?;
    Ok(with_identities(pool, rows).await?.pop())
}

/// Users after the `after` cursor (a `seq`), oldest first.
pub async fn page(pool: &PgPool, after: i64, limit: i64) -> Result<Vec<UserView>, sqlx::Error> {
    let rows = sqlx::query("SELECT id, seq, name, created_at FROM users WHERE seq > $1 ORDER BY seq LIMIT $2")
        .bind(after)
        .bind(limit)
        .fetch_all(pool)
        .await?;
    with_identities(pool, rows).await
}

/// Sets the user's identity on a channel (replacing the previous one on that channel).
/// Returns the replaced external id, if any, so its cache entry can be dropped.
pub async fn set_identity(pool: &PgPool, user: Uuid, identity: &NewIdentity) -> Result<Option<String>, WriteError> {
    let mut tx = pool.begin().await?;
    let exists =
        sqlx::query("SELECT 1 FROM users WHERE id = $1 FOR UPDATE").bind(user).fetch_optional(&mut *tx).await?;
    if exists.is_none() {
        return Err(WriteError::NoSuchUser);
    }
    let previous: Option<String> =
        sqlx::query_scalar("SELECT external_id FROM identities WHERE user_id = $1 AND channel = $2")
            .bind(user)
            .bind(identity.channel.as_str())
            .fetch_optional(&mut *tx)
            .await?;
    sqlx::query(
        "INSERT INTO identities (user_id, channel, external_id) VALUES ($1, $2, $3)
         ON CONFLICT (user_id, channel) DO UPDATE SET external_id = EXCLUDED.external_id, created_at = now()",
    )
    .bind(user)
    .bind(identity.channel.as_str())
    .bind(&identity.external_id)
    .execute(&mut *tx)
    .await
    .map_err(|e| {
        if unique_violation(&e) {
            WriteError::IdentityTaken {
                channel: identity.channel.to_string(),
                external_id: identity.external_id.clone(),
            }
        } else {
            e.into()
        }
    })?;
    tx.commit().await?;
    Ok(previous.filter(|p| *p != identity.external_id))
}

/// Removes the user's identity on `channel`; its external id when there was one.
pub async fn remove_identity(pool: &PgPool, user: Uuid, channel: Channel) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("DELETE FROM identities WHERE user_id = $1 AND channel = $2 RETURNING external_id")
        .bind(user)
        .bind(channel.as_str())
        .fetch_optional(pool)
        .await
}

/// The user owning `external_id` on `channel`.
pub async fn resolve(pool: &PgPool, channel: Channel, external_id: &str) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar("SELECT user_id FROM identities WHERE channel = $1 AND external_id = $2")
        .bind(channel.as_str())
        .bind(external_id)
        .fetch_optional(pool)
        .await
}
