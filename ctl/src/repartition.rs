//! `repartition TOPIC --partitions N`: more partitions without breaking per-conversation order.
//!
//! The outbox relay is paused (the API keeps accepting; messages wait in the outbox), the router
//! group drains the topic to lag 0, partitions are added in place (CreatePartitions), the relay
//! resumes (and re-reads the partition count before it publishes). A conversation's key may map
//! to a new partition afterwards, but only once every older event of it has been routed, so no
//! message of a conversation is routed before an older one.

use std::time::{Duration, Instant};

use std::sync::Arc;

use anyhow::Context;
use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;
use serde::Serialize;
use tokio::sync::watch;

use crate::admin::Admin;
use crate::error::{usage, ConditionNotMet};
use crate::kafka::Observer;

pub use chat4all_contract::admin::relay::KeyMoves;

/// The logical topic our relay publishes to, and the group that consumes it.
pub const CHAT_EVENTS: &str = "chat-events";
pub const ROUTER_GROUP: &str = "router-service";

/// Where the stack is.
#[derive(Clone)]
pub struct Target {
    pub bootstrap: String,
    /// The message-service's admin endpoints (relay pause lease, key moves).
    pub admin: Admin,
    pub timeout: Duration,
    /// The pause lease: renewed every third of it while the repartition runs, so that if this
    /// process dies the relay resumes by itself within one lease.
    pub lease: Duration,
}

/// Shortest and longest pause lease `--pause-lease` accepts.
pub const MIN_LEASE: Duration = Duration::from_secs(3);
pub const MAX_LEASE: Duration = Duration::from_secs(3600);

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
    let key_moves =
        target.admin.key_moves(from, partitions).await.context("asking the message-service for key moves")?;
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
    let holder = holder();
    let started = Instant::now();
    target.admin.pause_relay(&holder, target.lease).await.context("pausing the outbox relay (nothing was changed)")?;
    progress(&format!(
        "outbox relay paused (lease {}s, renewed while this runs); the API keeps accepting",
        target.lease.as_secs()
    ));
    let (lease_tx, lease) = watch::channel(Some(Instant::now() + target.lease));
    let renewer = tokio::spawn(hold_lease(target.admin.clone(), holder.clone(), target.lease, lease_tx));
    let result = tokio::select! {
        r = drain_and_change(target, plan, drain_timeout, progress, &lease) => r,
        _ = interrupt => Err(ConditionNotMet(format!(
            "interrupted after {} ms: the relay resumes; the partitions are as they were unless a line above says they were added",
            started.elapsed().as_millis()
        ))
        .into()),
    };
    renewer.abort();
    let resumed = resume(&target.admin, &holder).await;
    let paused_ms = started.elapsed().as_millis() as u64;
    let state = resumed.with_context(|| {
        format!(
            "resuming the outbox relay failed for 20 s; its lease ends by itself within {}s, or resume it now: chat4allctl relay resume --force",
            target.lease.as_secs()
        )
    })?;
    progress(&format!("outbox relay resumed after {paused_ms} ms"));
    let drain_ms = result?;
    Ok(Outcome { plan: plan.clone(), drain_ms, paused_ms, backlog_at_resume: state.backlog })
}

/// Who holds the pause: this process, by host and pid, so `status` can name it.
fn holder() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
    format!("repartition@{host}:{}", std::process::id())
}

/// Renews the lease every third of it. `valid_until` says until when the lease surely holds:
/// `None` once a renewal was refused (someone else took it, or the operator resumed).
async fn hold_lease(admin: Admin, holder: String, lease: Duration, valid_until: watch::Sender<Option<Instant>>) {
    loop {
        tokio::time::sleep(lease / 3).await;
        let asked = Instant::now();
        match admin.pause_relay(&holder, lease).await {
            Ok(_) => {
                let _ = valid_until.send(Some(asked + lease));
            }
            Err(e) if e.is_conflict() => {
                tracing::warn!(error = %e, "the pause lease was taken over");
                let _ = valid_until.send(None);
            }
            // Unreachable for a moment: the lease we had still runs until its end.
            Err(e) => tracing::warn!(error = %e, "renewing the pause lease failed; retrying"),
        }
    }
}

/// Ends the pause, insisting for 20 s: a message-service restarting must not leave the relay
/// paused until the lease runs out.
async fn resume(admin: &Admin, holder: &str) -> anyhow::Result<chat4all_contract::admin::relay::RelayState> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match admin.resume_relay(holder, false).await {
            Ok(state) => return Ok(state),
            Err(e) if Instant::now() >= deadline || e.is_conflict() => return Err(e.into()),
            Err(e) => tracing::warn!(error = %e, "resuming the relay failed; retrying"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn drain_and_change(
    target: &Target,
    plan: &Plan,
    drain_timeout: Duration,
    progress: &(dyn Fn(&str) + Send + Sync),
    lease: &watch::Receiver<Option<Instant>>,
) -> anyhow::Result<u64> {
    let started = Instant::now();
    // A publish round that read the outbox before the pause may still be in flight: the drain
    // below only counts once the log end has stopped moving as well.
    wait_drained(target, &plan.topic, drain_timeout, progress).await?;
    let drain_ms = started.elapsed().as_millis() as u64;
    progress(&format!("{ROUTER_GROUP} drained {} to lag 0 in {drain_ms} ms", plan.topic));
    // Adding partitions while the relay publishes would key new records by the new count before
    // the group has routed the old ones: only with a lease that surely outlasts the change.
    let margin = Duration::from_secs(1);
    match *lease.borrow() {
        Some(until) if until > Instant::now() + margin => {}
        _ => {
            return Err(ConditionNotMet(
                "the relay's pause lease could not be renewed (or was taken over); nothing was changed".into(),
            )
            .into())
        }
    }
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
    let obs = Arc::new(tokio::task::spawn_blocking(move || Observer::new(&bootstrap, t)).await??);
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

pub use chat4all_contract::partition::{murmur2, partition_for};
