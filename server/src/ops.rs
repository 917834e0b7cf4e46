//! The ops channel: every consumer instance reports its rebalances to Redis, where the control
//! plane reads the timeline (a stream) and the current ownership (a hash per group).
//! Redis being down costs the control plane its timeline, never the pipeline its messages.

use std::time::Duration;

use redis::aio::ConnectionManager;
use tokio::sync::mpsc;

use crate::config::ops_keys;
use crate::events::{AssignmentReport, RebalanceEvent, RebalanceKind};
use crate::metrics::{KafkaMetrics, KindLabels};

/// Most entries kept in the rebalance stream.
const STREAM_MAXLEN: usize = 10_000;

/// Forwards rebalance reports to Redis (and the log, and metrics) until the sender closes.
pub async fn run_reporter(redis_url: String, mut rx: mpsc::UnboundedReceiver<RebalanceEvent>, metrics: KafkaMetrics) {
    let mut conn: Option<ConnectionManager> = None;
    while let Some(ev) = rx.recv().await {
        let kind = match ev.kind {
            RebalanceKind::Assigned => "assigned",
            RebalanceKind::Revoked => "revoked",
            RebalanceKind::Lost => "lost",
            RebalanceKind::Left => "left",
        };
        metrics.rebalances.get_or_create(&KindLabels { kind: kind.into() }).inc();
        metrics.assigned_partitions.set(ev.assignment.len() as i64);
        tracing::info!(
            event = "rebalance",
            group = %ev.group,
            kind,
            member_id = %ev.member_id,
            partitions = ?ev.partitions.iter().map(|p| format!("{}-{}", p.topic, p.partition)).collect::<Vec<_>>(),
            assignment = ev.assignment.len(),
            "rebalance"
        );
        for attempt in 0..3 {
            if conn.is_none() {
                conn = connect(&redis_url).await;
            }
            let Some(c) = conn.as_mut() else {
                tokio::time::sleep(Duration::from_millis(200 * (attempt + 1))).await;
                continue;
            };
            match publish(c, &ev).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "publishing rebalance report to Redis");
                    conn = None;
                }
            }
        }
    }
}

async fn connect(url: &str) -> Option<ConnectionManager> {
    let client = redis::Client::open(url).ok()?;
    match tokio::time::timeout(Duration::from_secs(2), client.get_connection_manager()).await {
        Ok(Ok(c)) => Some(c),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "Redis unavailable; rebalance reports are only logged");
            None
        }
        Err(_) => None,
    }
}

async fn publish(conn: &mut ConnectionManager, ev: &RebalanceEvent) -> redis::RedisResult<()> {
    let json = serde_json::to_string(ev).expect("event serializes");
    let report = AssignmentReport {
        at: ev.at,
        instance: ev.instance.clone(),
        member_id: ev.member_id.clone(),
        pid: std::process::id(),
        assignment: ev.assignment.clone(),
    };
    let hash = ops_keys::assignment_hash(&ev.group);
    let mut pipe = redis::pipe();
    pipe.cmd("XADD")
        .arg(ops_keys::REBALANCE_STREAM)
        .arg("MAXLEN")
        .arg("~")
        .arg(STREAM_MAXLEN)
        .arg("*")
        .arg("event")
        .arg(&json)
        .ignore();
    if ev.kind == RebalanceKind::Left {
        pipe.cmd("HDEL").arg(&hash).arg(&ev.instance).ignore();
    } else {
        pipe.cmd("HSET")
            .arg(&hash)
            .arg(&ev.instance)
            .arg(serde_json::to_string(&report).expect("report serializes"))
            .ignore();
    }
    pipe.query_async::<()>(conn).await
}
