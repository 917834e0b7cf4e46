//! The supervisor's (and the exporter's) periodic look at the broker: every group described
//! every interval, the offset history kept, the latest result shared with the control API
//! (`GET /v1/lag/history`) and the metrics exporter.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::lag::{LagHistory, Rules};
use crate::view::{GroupReader, GroupView};

/// The latest observation.
#[derive(Debug, Clone, Default)]
pub struct Latest {
    pub at: Option<DateTime<Utc>>,
    /// How long the last observation took.
    pub took: Duration,
    pub groups: Vec<GroupView>,
    /// Topic -> partition count.
    pub topics: Vec<(String, i32)>,
    pub history: LagHistory,
    /// The last error, cleared by the next success.
    pub error: Option<String>,
    /// Observations made since start.
    pub rounds: u64,
}

/// Shared, cheaply cloned handle on the latest observation.
#[derive(Clone, Default)]
pub struct Observations(Arc<RwLock<Latest>>);

impl Observations {
    pub fn get(&self) -> Latest {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn history(&self) -> LagHistory {
        self.0.read().unwrap_or_else(|e| e.into_inner()).history.clone()
    }

    fn update(&self, f: impl FnOnce(&mut Latest)) {
        f(&mut self.0.write().unwrap_or_else(|e| e.into_inner()));
    }
}

/// Observes every `interval` until the task is dropped.
pub async fn run(bootstrap: String, redis_url: String, interval: Duration, timeout: Duration, out: Observations) {
    let mut reader = loop {
        match GroupReader::new(&bootstrap, &redis_url, timeout, LagHistory::new(Rules::default())) {
            Ok(r) => break r,
            Err(e) => {
                out.update(|l| l.error = Some(format!("{e:#}")));
                tokio::time::sleep(interval).await;
            }
        }
    };
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let started = std::time::Instant::now();
        let result = reader.all_with_topics().await;
        let took = started.elapsed();
        let horizon = Utc::now().timestamp_millis() - reader.history.rules().window.as_millis() as i64;
        reader.history.prune(horizon);
        match result {
            Ok((groups, topics)) => out.update(|l| {
                l.at = Some(Utc::now());
                l.took = took;
                l.groups = groups;
                l.topics = topics;
                l.history = reader.history.clone();
                l.error = None;
                l.rounds += 1;
            }),
            Err(e) => {
                tracing::debug!(error = format!("{e:#}"), "observation failed");
                out.update(|l| l.error = Some(format!("{e:#}")));
            }
        }
    }
}
