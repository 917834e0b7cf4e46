//! The message-service's admin endpoints (control token required): the outbox relay's state,
//! its pause lease, and the key moves of a repartition. `relay_control` and the outbox belong to
//! this service; the control plane changes them only through here.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use chat4all_contract::admin::pipeline::{Pipeline, PIPELINE_PATH};
use chat4all_contract::admin::relay::{
    KeyMoves, Pause, PauseRequest, RelayState, ResumeRequest, KEY_MOVES_PATH, PAUSE_PATH, RELAY_PATH, RESUME_PATH,
};
use chat4all_contract::partition::partition_for;
use serde::Deserialize;
use sqlx::{PgPool, Row};

use super::freshness::Tracker;
use crate::http::{AdminToken, AppError};

/// Most stored conversation keys a key-moves answer looks at.
const KEY_MOVES_SAMPLE: i64 = 100_000;

pub fn routes(pool: PgPool, freshness: Tracker, token: &AdminToken) -> Router {
    let pipeline_route = Router::new().route(PIPELINE_PATH, get(pipeline)).with_state((pool.clone(), freshness));
    let router = Router::new()
        .route(RELAY_PATH, get(relay))
        .route(PAUSE_PATH, post(pause))
        .route(RESUME_PATH, post(resume))
        .route(KEY_MOVES_PATH, get(key_moves))
        .with_state(pool.clone())
        .merge(pipeline_route)
        .merge(super::facts::routes(pool));
    crate::http::guard(router, token)
}

async fn pipeline(State((pool, freshness)): State<(PgPool, Tracker)>) -> Result<Json<Pipeline>, AppError> {
    let relay = load_state(&pool).await?;
    let (channels, measured_at) = freshness.snapshot();
    Ok(Json(Pipeline { relay, channels, measured_at }))
}

async fn relay(State(pool): State<PgPool>) -> Result<Json<RelayState>, AppError> {
    Ok(Json(load_state(&pool).await?))
}

type JsonBody<T> = Result<Json<T>, axum::extract::rejection::JsonRejection>;

async fn pause(State(pool): State<PgPool>, body: JsonBody<PauseRequest>) -> Result<Json<RelayState>, AppError> {
    let Json(req) = body.map_err(|e| AppError::bad_request(e.body_text(), None))?;
    if let Some(problem) = req.problem() {
        return Err(AppError::bad_request(problem, None));
    }
    match take_pause(&pool, &req.by, req.ttl_seconds).await? {
        true => {
            tracing::info!(by = %req.by, ttl_seconds = req.ttl_seconds, "outbox relay pause lease taken");
            Ok(Json(load_state(&pool).await?))
        }
        false => Err(held_by_other(&pool).await),
    }
}

async fn resume(State(pool): State<PgPool>, body: JsonBody<ResumeRequest>) -> Result<Json<RelayState>, AppError> {
    let Json(req) = body.map_err(|e| AppError::bad_request(e.body_text(), None))?;
    match end_pause(&pool, &req.by, req.force).await? {
        true => {
            tracing::info!(by = %req.by, force = req.force, "outbox relay pause ended");
            Ok(Json(load_state(&pool).await?))
        }
        false => Err(held_by_other(&pool).await),
    }
}

async fn held_by_other(pool: &PgPool) -> AppError {
    match load_state(pool).await {
        Ok(RelayState { paused: Some(p), .. }) => AppError::new(
            StatusCode::CONFLICT,
            format!("the relay is paused by {} until {}; only that holder may renew or end it", p.by, p.until),
        ),
        // The other lease ended in between: the caller may simply ask again.
        Ok(_) => AppError::new(StatusCode::CONFLICT, "the pause lease changed hands; try again"),
        Err(e) => e.into(),
    }
}

/// Takes the pause lease for `by`, or renews it when `by` holds it. False when someone else
/// holds a lease still in force.
pub async fn take_pause(pool: &PgPool, by: &str, ttl_seconds: u64) -> Result<bool, sqlx::Error> {
    let n = sqlx::query(
        "UPDATE relay_control SET
                paused_at = CASE WHEN paused_by = $1 AND pause_until > now() THEN paused_at ELSE now() END,
                paused_by = $1,
                pause_until = now() + make_interval(secs => $2),
                updated_at = now()
          WHERE id = 1 AND (pause_until IS NULL OR pause_until <= now() OR paused_by = $1)",
    )
    .bind(by)
    .bind(ttl_seconds as f64)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// Ends the lease if `by` holds it, it has expired, there is none, or `force`. False when
/// someone else holds a lease in force.
pub async fn end_pause(pool: &PgPool, by: &str, force: bool) -> Result<bool, sqlx::Error> {
    let n = sqlx::query(
        "UPDATE relay_control SET paused_by = NULL, paused_at = NULL, pause_until = NULL, updated_at = now()
          WHERE id = 1 AND (pause_until IS NULL OR pause_until <= now() OR paused_by = $1 OR $2)",
    )
    .bind(by)
    .bind(force)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// The relay as `relay_control` and the outbox say it is now.
pub async fn load_state(pool: &PgPool) -> Result<RelayState, sqlx::Error> {
    let row = sqlx::query(
        "SELECT paused_by, paused_at, pause_until, pause_until > now() AS in_force, leader, leader_since, leader_epoch
           FROM relay_control WHERE id = 1",
    )
    .fetch_one(pool)
    .await?;
    let in_force: Option<bool> = row.get("in_force");
    let paused = match (in_force, row.get("paused_by"), row.get("paused_at"), row.get("pause_until")) {
        (Some(true), Some(by), Some(since), Some(until)) => Some(Pause { by, since, until }),
        _ => None,
    };
    let outbox = super::outbox::backlog(pool).await?;
    Ok(RelayState {
        paused,
        backlog: outbox.rows,
        oldest_seconds: outbox.oldest_seconds,
        leader: row.get("leader"),
        leader_since: row.get("leader_since"),
        leader_epoch: row.get("leader_epoch"),
    })
}

#[derive(Debug, Deserialize)]
struct MovesQuery {
    from: i32,
    to: i32,
}

async fn key_moves(
    State(pool): State<PgPool>,
    q: Result<Query<MovesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<KeyMoves>, AppError> {
    let Query(q) = q.map_err(|e| AppError::bad_request(e.body_text(), None))?;
    if q.from < 1 || q.to < 1 {
        return Err(AppError::bad_request("from and to must be partition counts of at least 1", None));
    }
    let keys: Vec<String> =
        sqlx::query_scalar("SELECT conversation_id FROM messages GROUP BY conversation_id LIMIT $1")
            .bind(KEY_MOVES_SAMPLE)
            .fetch_all(&pool)
            .await?;
    Ok(Json(count_moves(keys, q.from, q.to)))
}

/// Share of `keys` whose partition changes from `from` to `to` partitions; synthetic keys when
/// none is stored yet.
fn count_moves(keys: Vec<String>, from: i32, to: i32) -> KeyMoves {
    let (source, keys) = if keys.is_empty() {
        ("synthetic", (0..10_000).map(|i| format!("conversation-{i}")).collect())
    } else {
        ("conversations", keys)
    };
    let moved = keys.iter().filter(|k| partition_for(k.as_bytes(), from) != partition_for(k.as_bytes(), to)).count();
    KeyMoves { source: source.into(), keys: keys.len(), moved, share: moved as f64 / keys.len() as f64 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_moves_count_changed_partitions() {
        let same = count_moves(vec!["a".into(), "b".into()], 3, 3);
        assert_eq!((same.source.as_str(), same.keys, same.moved), ("conversations", 2, 0));
        let synthetic = count_moves(Vec::new(), 1, 2);
        assert_eq!(synthetic.source, "synthetic");
        assert!(synthetic.moved > 4_000 && synthetic.moved < 6_000, "about half move from 1 to 2: {}", synthetic.moved);
    }

    #[tokio::test]
    async fn a_pause_is_a_lease_with_one_holder() {
        let pool = crate::db::test_pool("relay_lease").await;
        end_pause(&pool, "test", true).await.unwrap();
        assert!(take_pause(&pool, "alice", 30).await.unwrap());
        assert!(take_pause(&pool, "alice", 30).await.unwrap(), "the holder renews");
        assert!(!take_pause(&pool, "bob", 30).await.unwrap(), "another holder is refused");
        assert!(!end_pause(&pool, "bob", false).await.unwrap(), "and may not end it");
        let state = load_state(&pool).await.unwrap();
        assert_eq!(state.paused.as_ref().map(|p| p.by.as_str()), Some("alice"));
        assert!(end_pause(&pool, "alice", false).await.unwrap());
        assert!(load_state(&pool).await.unwrap().paused.is_none());

        // A lease nobody renews ends by itself, and then anyone may take it.
        assert!(take_pause(&pool, "alice", 1).await.unwrap());
        tokio::time::sleep(std::time::Duration::from_millis(1_200)).await;
        assert!(load_state(&pool).await.unwrap().paused.is_none(), "an expired lease is no pause");
        assert!(take_pause(&pool, "bob", 30).await.unwrap());
        assert!(end_pause(&pool, "someone", true).await.unwrap(), "force ends anyone's lease");
    }
}
