//! `repartition TOPIC --partitions N`: more partitions without breaking per-conversation order.
//!
//! The outbox relay is paused (the API keeps accepting; messages wait in the outbox), the router
//! group drains the topic to lag 0, partitions are added in place (CreatePartitions), the relay
//! resumes (and re-reads the partition count before it publishes). A conversation's key may map
//! to a new partition afterwards, but only once every older event of it has been routed, so no
//! message of a conversation is routed before an older one.

use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;
use serde::Serialize;
use sqlx::PgPool;

use crate::error::{usage, ConditionNotMet};
use crate::kafka::Observer;

/// The logical topic our relay publishes to, and the group that consumes it.
pub const CHAT_EVENTS: &str = "chat-events";
pub const ROUTER_GROUP: &str = "router-service";

/// Where the stack is.
#[derive(Debug, Clone)]
pub struct Target {
    pub bootstrap: String,
    pub database_url: String,
    pub timeout: Duration,
}

/// How many conversation keys land on another partition after the change.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyMoves {
    /// `conversations` (the keys in PostgreSQL) or `synthetic` (none stored yet).
    pub source: &'static str,
    pub keys: usize,
    pub moved: usize,
    pub share: f64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub topic: String,
    pub from: i32,
    pub to: i32,
    pub key_moves: KeyMoves,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    pub plan: Plan,
    /// Time from pausing the relay to the group's lag reaching 0.
    pub drain_ms: u64,
    /// Time the relay was paused (messages waited in the outbox, none refused).
    pub paused_ms: u64,
    /// Messages that waited in the outbox when the relay resumed.
    pub backlog_at_resume: i64,
}

/// The action log's line for a repartition (the timeline names it as the cause of the
/// rebalances that follow).
pub fn action_detail(plan: &Plan, outcome: &anyhow::Result<Outcome>) -> String {
    match outcome {
        Ok(o) => format!("{} -> {} partitions, relay paused {} ms", plan.from, plan.to, o.paused_ms),
        Err(e) => format!("failed: {e:#}"),
    }
}

/// Validates the request and computes the plan; a usage error (exit 2) for bad input.
pub async fn plan(target: &Target, topic: &str, partitions: i32) -> anyhow::Result<Plan> {
    if partitions < 1 {
        return Err(usage(format!("--partitions must be at least 1, got {partitions}")));
    }
    if topic != CHAT_EVENTS {
        return Err(usage(format!(
            "unknown topic {topic:?}: chat4allctl repartitions {CHAT_EVENTS} (the topic the platform routes); \
             other topics are not drained by the platform"
        )));
    }
    let pool = connect(&target.database_url).await?;
    let (bootstrap, timeout) = (target.bootstrap.clone(), target.timeout);
    let cur = topic.to_string();
    let from = tokio::task::spawn_blocking(move || -> anyhow::Result<Option<i32>> {
        let obs = Observer::new(&bootstrap, timeout)?;
        Ok(obs.topics()?.into_iter().find(|(t, _)| *t == cur).map(|(_, n)| n))
    })
    .await??
    .ok_or_else(|| usage(format!("topic {topic:?} does not exist on the broker yet (start the stack first)")))?;
    if partitions <= from {
        return Err(usage(format!(
            "{topic} has {from} partitions; repartition only increases (asked for {partitions})"
        )));
    }
    let key_moves = key_moves(&pool, from, partitions).await?;
    Ok(Plan { topic: topic.to_string(), from, to: partitions, key_moves })
}

/// Carries out `plan`; `progress` receives one line per step. On failure after the pause the
/// relay is resumed and nothing else has changed.
///
/// `interrupt` resolving (the CLI passes SIGINT and SIGTERM) stops the drain where it is and
/// resumes the relay like any other failure: an interrupted repartition never leaves the relay
/// paused.
pub async fn execute(
    target: &Target,
    plan: &Plan,
    drain_timeout: Duration,
    progress: &(dyn Fn(&str) + Send + Sync),
    interrupt: impl std::future::Future<Output = ()>,
) -> anyhow::Result<Outcome> {
    let pool = connect(&target.database_url).await?;
    let started = Instant::now();
    set_paused(&pool, true).await?;
    progress("outbox relay paused; the API keeps accepting");
    let result = tokio::select! {
        r = drain_and_change(target, plan, drain_timeout, progress) => r,
        _ = interrupt => Err(ConditionNotMet(format!(
            "interrupted after {} ms: the relay resumes; the partitions are as they were unless a line above says they were added",
            started.elapsed().as_millis()
        ))
        .into()),
    };
    let resumed = resume(&pool, &target.database_url).await;
    let paused_ms = started.elapsed().as_millis() as u64;
    resumed.context(
        "resuming the outbox relay failed for 60 s; resume it by hand: \
         UPDATE relay_control SET paused = false",
    )?;
    progress(&format!("outbox relay resumed after {paused_ms} ms"));
    let drain_ms = result?;
    let backlog_at_resume: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox").fetch_one(&pool).await.unwrap_or(0);
    Ok(Outcome { plan: plan.clone(), drain_ms, paused_ms, backlog_at_resume })
}

async fn drain_and_change(
    target: &Target,
    plan: &Plan,
    drain_timeout: Duration,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> anyhow::Result<u64> {
    let started = Instant::now();
    // A publish round that read the outbox before the pause may still be in flight: the drain
    // below only counts once the log end has stopped moving as well.
    wait_drained(target, &plan.topic, drain_timeout, progress).await?;
    let drain_ms = started.elapsed().as_millis() as u64;
    progress(&format!("{ROUTER_GROUP} drained {} to lag 0 in {drain_ms} ms", plan.topic));
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &target.bootstrap)
        .set("client.id", "chat4allctl")
        .set("log_level", "3")
        .create()
        .context("creating Kafka admin client")?;
    let opts = AdminOptions::new().operation_timeout(Some(target.timeout));
    let np = NewPartitions::new(&plan.topic, plan.to as usize);
    let res = admin.create_partitions([&np], &opts).await.context("CreatePartitions")?;
    for r in res {
        r.map_err(|(t, e)| anyhow::anyhow!("adding partitions to {t}: {e}"))?;
    }
    progress(&format!("{} now has {} partitions", plan.topic, plan.to));
    Ok(drain_ms)
}

/// Waits until every partition of `topic` is committed up to its log end by the router group
/// and the log end has not moved for a second.
async fn wait_drained(
    target: &Target,
    topic: &str,
    timeout: Duration,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let (bootstrap, t) = (target.bootstrap.clone(), target.timeout);
    let obs = std::sync::Arc::new(tokio::task::spawn_blocking(move || Observer::new(&bootstrap, t)).await??);
    let mut last_end: Option<i64> = None;
    let mut stable_since = Instant::now();
    let mut last_report = Instant::now();
    loop {
        let o = obs.clone();
        let tp = topic.to_string();
        let offsets = tokio::task::spawn_blocking(move || {
            let topics = o.topics()?;
            let n = topics.iter().find(|(name, _)| *name == tp).map(|(_, n)| *n).unwrap_or(0);
            o.offsets(ROUTER_GROUP, &[(tp, n)])
        })
        .await??;
        let end: i64 = offsets.iter().map(|p| p.log_end).sum();
        let lag: i64 = offsets.iter().map(|p| p.log_end - p.committed.unwrap_or(0)).sum();
        if last_end != Some(end) {
            last_end = Some(end);
            stable_since = Instant::now();
        }
        if lag == 0 && stable_since.elapsed() >= Duration::from_secs(1) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(ConditionNotMet(format!(
                "{ROUTER_GROUP} did not drain {topic} within {timeout:?} (lag {lag}); nothing was changed, the relay resumes"
            ))
            .into());
        }
        if last_report.elapsed() >= Duration::from_secs(5) {
            progress(&format!("draining {topic}: lag {lag}"));
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn connect(url: &str) -> anyhow::Result<PgPool> {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(5))
        .connect(url)
        .await
        .map_err(|e| usage(format!("PostgreSQL unreachable at {url}: {e}")))
}

/// Un-pauses the relay, insisting: a PostgreSQL at its connection limit or restarting must not
/// leave the platform's relay paused. Retries on the pool, then on fresh connections, for 60 s.
async fn resume(pool: &PgPool, url: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = match set_paused(pool, false).await {
        Ok(()) => return Ok(()),
        Err(e) => e,
    };
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let attempt = async {
            let fresh = sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .acquire_timeout(Duration::from_secs(5))
                .connect(url)
                .await?;
            set_paused(&fresh, false).await
        };
        match attempt.await {
            Ok(()) => return Ok(()),
            Err(e) => last = e,
        }
    }
    Err(last)
}

async fn set_paused(pool: &PgPool, paused: bool) -> anyhow::Result<()> {
    sqlx::query("UPDATE relay_control SET paused = $1, updated_at = now() WHERE id = 1")
        .bind(paused)
        .execute(pool)
        .await
        .context("updating relay_control")?;
    Ok(())
}

/// Share of conversation keys whose partition changes from `from` to `to` partitions, over the
/// stored conversations (up to 100,000), or over synthetic keys when none is stored yet.
async fn key_moves(pool: &PgPool, from: i32, to: i32) -> anyhow::Result<KeyMoves> {
    let keys: Vec<String> =
        sqlx::query_scalar("SELECT conversation_id FROM messages GROUP BY conversation_id LIMIT 100000")
            .fetch_all(pool)
            .await
            .context("reading conversation ids")?;
    let (source, keys) = if keys.is_empty() {
        ("synthetic", (0..10_000).map(|i| format!("conversation-{i}")).collect())
    } else {
        ("conversations", keys)
    };
    let moved = keys.iter().filter(|k| partition_for(k.as_bytes(), from) != partition_for(k.as_bytes(), to)).count();
    Ok(KeyMoves { source, keys: keys.len(), moved, share: moved as f64 / keys.len() as f64 })
}

pub use chat4all_contract::partition::{murmur2, partition_for};
