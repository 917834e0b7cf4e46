//! Samples of the router group while the drill runs: the broker's member list (DescribeGroups:
//! who the coordinator still counts as a member) and the committed-offset lag, a few times a
//! second. The timeline reads broker-side detection and lag recovery from them.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{watch, Mutex};
use tokio::task::JoinHandle;

use crate::view::GroupReader;

/// Pause between two samples.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Sample {
    pub at: DateTime<Utc>,
    pub state: String,
    pub members: Vec<String>,
    /// Sum of the committed-offset lag (None when the offsets could not be read).
    pub lag: Option<i64>,
    /// (topic, partition) -> owning instance.
    #[serde(skip)]
    pub owners: Vec<((String, i32), String, String)>,
}

/// A background sampler of one group.
pub struct Observer {
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: watch::Sender<bool>,
    handle: JoinHandle<()>,
}

/// One sample now.
pub async fn sample(reader: &mut GroupReader, group: &str) -> anyhow::Result<Sample> {
    let view = reader.describe(group).await?;
    let obs = reader.observer();
    let name = group.to_string();
    let info = tokio::task::spawn_blocking(move || obs.group(&name)).await??;
    let members = info.map(|g| g.members.into_iter().map(|m| m.member_id).collect()).unwrap_or_default();
    let owners = view
        .partitions
        .iter()
        .filter_map(|p| {
            p.owner
                .as_ref()
                .map(|o| ((p.offsets.topic.clone(), p.offsets.partition), o.instance.clone(), o.member_id.clone()))
        })
        .collect();
    let lag = view.partitions.iter().map(|p| p.offsets.lag.unwrap_or(0)).sum();
    Ok(Sample { at: Utc::now(), state: view.state, members, lag: Some(lag), owners })
}

impl Observer {
    pub fn start(mut reader: GroupReader, group: &str) -> Self {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let (stop, mut stop_rx) = watch::channel(false);
        let out = samples.clone();
        let group = group.to_string();
        let handle = tokio::spawn(async move {
            loop {
                match sample(&mut reader, &group).await {
                    Ok(s) => out.lock().await.push(s),
                    Err(e) => tracing::debug!(error = format!("{e:#}"), "drill sample"),
                }
                tokio::select! {
                    _ = tokio::time::sleep(SAMPLE_EVERY) => {}
                    _ = stop_rx.changed() => break,
                }
            }
        });
        Self { samples, stop, handle }
    }

    /// The samples so far.
    pub async fn samples(&self) -> Vec<Sample> {
        self.samples.lock().await.clone()
    }

    pub async fn finish(self) -> Vec<Sample> {
        let _ = self.stop.send(true);
        let _ = self.handle.await;
        let s = self.samples.lock().await;
        s.clone()
    }
}
