//! Runtime-assisted failover on Docker: follow the engine's events and, when a container of a
//! group member dies without a graceful stop (a `docker kill` from a shell, a crash, the OOM
//! killer), send the LeaveGroup on its behalf at once, as the supervisor does for its children
//! and the ctl's own `kill` does ([`crate::failover`]). The group then rebalances now rather than
//! after the session timeout.
//!
//! `chatallctl failover watch` runs it (the `failover-1` container of a docker stack), serving
//! `/health` and `/metrics` (`chat4all_failover_leaves_total{outcome}`).
//!
//! A dead container's pid is gone from the engine's answer, and the member's report in Redis is
//! matched by the pid of the run that wrote it, so the watcher remembers each container's pid
//! from its start (or from the list it read when it began).

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio::sync::Mutex;

use super::DockerRuntime;
use crate::runtime::{EventKind, Runtime};
use crate::spec::ServiceKind;

/// How a dead member's removal went.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    /// `removed`, `already_gone` (the ctl's own kill, or the session timeout, came first),
    /// `refused`, `failed`, or `no_member` (nothing reported by that run).
    pub outcome: String,
}

/// The watcher's counters.
#[derive(Clone, Default)]
pub struct WatchMetrics {
    pub leaves: Family<Outcome, Counter>,
    pub deaths: Counter,
}

impl WatchMetrics {
    pub fn register(&self, reg: &mut Registry) {
        reg.register(
            "chat4all_failover_leaves",
            "LeaveGroup requests sent on behalf of dead group members, by outcome",
            self.leaves.clone(),
        );
        reg.register(
            "chat4all_failover_ungraceful_exits",
            "Group members' containers seen dying without a graceful stop",
            self.deaths.clone(),
        );
    }

    fn count(&self, outcome: &str) {
        self.leaves.get_or_create(&Outcome { outcome: outcome.into() }).inc();
    }
}

/// An exit that needs the fast path: not a graceful stop (0, or 143 for SIGTERM's default).
pub fn ungraceful(code: Option<i64>) -> bool {
    !matches!(code, Some(0) | Some(143))
}

/// Follows the engine's events until the stream ends (an error: the caller restarts it).
pub async fn follow(
    rt: &DockerRuntime,
    bootstrap: &str,
    redis_url: &str,
    metrics: &WatchMetrics,
) -> anyhow::Result<()> {
    let pids: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let mut events = rt.events();
    // The list after subscribing: a container that starts in between is in one or the other.
    for c in rt.containers().await? {
        if let Some(pid) = c.info().pid {
            pids.lock().await.insert(c.instance(), pid);
        }
    }
    while let Some(e) = events.next().await {
        let e = e?;
        match e.kind {
            EventKind::Started => {
                if let Ok(c) = rt.find(&e.instance).await {
                    if let Some(pid) = c.info().pid {
                        pids.lock().await.insert(e.instance.clone(), pid);
                    }
                }
            }
            EventKind::Exited { code, .. } => {
                let member = ServiceKind::parse(&e.service).is_some_and(ServiceKind::is_group_member);
                let pid = pids.lock().await.remove(&e.instance);
                let (true, true, Some(pid)) = (member, ungraceful(code), pid) else { continue };
                metrics.deaths.inc();
                let outcomes =
                    crate::failover::leave_for_dead(bootstrap, redis_url, &e.instance, pid, LEAVE_TIMEOUT).await;
                match outcomes {
                    Ok(o) if o.is_empty() => {
                        metrics.count("no_member");
                        tracing::info!(instance = %e.instance, pid, "died; no membership reported by that run");
                    }
                    Ok(o) => {
                        for r in o {
                            match r {
                                Ok(o) => {
                                    metrics.count(match o.error_code {
                                        0 => "removed",
                                        crate::failover::UNKNOWN_MEMBER_ID => "already_gone",
                                        _ => "refused",
                                    });
                                    tracing::info!(instance = %e.instance, pid, exit = ?code, "{}", o.describe());
                                }
                                Err(err) => {
                                    metrics.count("failed");
                                    tracing::warn!(instance = %e.instance, error = %err, "LeaveGroup on its behalf failed");
                                }
                            }
                        }
                    }
                    Err(err) => {
                        metrics.count("failed");
                        tracing::warn!(instance = %e.instance, error = %format!("{err:#}"), "LeaveGroup on its behalf failed");
                    }
                }
            }
        }
    }
    anyhow::bail!("the engine's event stream ended")
}

const LEAVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_ungraceful_exit_takes_the_fast_path() {
        assert!(ungraceful(Some(137)), "docker kill");
        assert!(ungraceful(Some(101)), "a panic");
        assert!(ungraceful(None), "no code: assume the worst");
        assert!(!ungraceful(Some(0)) && !ungraceful(Some(143)), "a graceful stop left its group itself");
    }
}
