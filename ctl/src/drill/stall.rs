//! Producer and consumer stalls during a broker fault: the longest time without progress.
//!
//! The producer's progress is the outbox relay's `chat4all_outbox_published_total` (records the
//! broker acknowledged), read from every message-service every [`EVERY`] while the fault runs;
//! the consumer's is the router group's `routed_at` of each delivery (the facts). A stall is the
//! longest interval, from the fault until the traffic stopped, in which the figure did not move:
//! traffic flows the whole time, so an interval without progress is the pipeline waiting.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{watch, Mutex};
use tokio::task::JoinHandle;

use crate::runtime::{InstanceInfo, Runtime};

/// Pause between two reads of the relay's counter (the producer stall's resolution).
pub const EVERY: Duration = Duration::from_millis(50);

/// Samples the relay's published counter in the background.
pub struct PublishSampler {
    progress: Arc<Mutex<Vec<DateTime<Utc>>>>,
    stop: watch::Sender<bool>,
    handle: JoinHandle<()>,
}

impl PublishSampler {
    /// Starts reading the message-services the runtime lists now.
    pub async fn start(rt: &dyn Runtime) -> anyhow::Result<Self> {
        let services: Vec<InstanceInfo> =
            rt.list().await?.into_iter().filter(|i| i.service == "message-service" && i.state.is_alive()).collect();
        if services.is_empty() {
            anyhow::bail!("no running message-service to read the outbox relay's progress from");
        }
        let http = reqwest::Client::builder().timeout(Duration::from_secs(1)).build()?;
        let progress = Arc::new(Mutex::new(Vec::new()));
        let (stop, mut stop_rx) = watch::channel(false);
        let out = progress.clone();
        let handle = tokio::spawn(async move {
            let mut counter = Progress::default();
            let mut tick = tokio::time::interval(EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop_rx.changed() => break,
                }
                let pages = crate::health::metrics_pages(&http, &services).await;
                let now = Utc::now();
                let read = pages.iter().map(|(i, p)| (i.name.clone(), crate::rates::parse(p).outbox_published));
                if counter.advanced(read) {
                    out.lock().await.push(now);
                }
            }
        });
        Ok(Self { progress, stop, handle })
    }

    /// The instants at which the counter was seen higher than before.
    pub async fn finish(self) -> Vec<DateTime<Utc>> {
        let _ = self.stop.send(true);
        let _ = self.handle.await;
        std::mem::take(&mut *self.progress.lock().await)
    }
}

/// Per instance, the last value read of a counter.
#[derive(Debug, Default)]
struct Progress(BTreeMap<String, f64>);

impl Progress {
    /// Whether any instance's counter went up since its last read (a lower value is a restart:
    /// it counts from there; an instance's first read sets its base).
    fn advanced(&mut self, read: impl IntoIterator<Item = (String, f64)>) -> bool {
        let mut moved = false;
        for (instance, v) in read {
            match self.0.insert(instance, v) {
                Some(before) if v > before => moved = true,
                Some(before) if v < before && v > 0.0 => moved = true,
                _ => {}
            }
        }
        moved
    }
}

/// The longest time in `[from, until]` without an instant of `progress` (milliseconds): from
/// `from` to the first progress, between two, and from the last to `until`. `None` when the
/// window is empty.
pub fn longest_gap(progress: &[DateTime<Utc>], from: DateTime<Utc>, until: DateTime<Utc>) -> Option<i64> {
    if until <= from {
        return None;
    }
    let mut inside: Vec<DateTime<Utc>> = progress.iter().copied().filter(|t| *t > from && *t <= until).collect();
    inside.sort();
    let mut last = from;
    let mut longest = 0;
    for t in inside.into_iter().chain(std::iter::once(until)) {
        longest = longest.max((t - last).num_milliseconds());
        last = t;
    }
    Some(longest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap() + chrono::Duration::milliseconds(ms)
    }

    #[test]
    fn the_longest_gap_counts_from_the_fault_and_up_to_the_end() {
        let p: Vec<_> = [0, 50, 100, 3_200, 3_250, 3_300].into_iter().map(at).collect();
        // The stall: 100 -> 3,200.
        assert_eq!(longest_gap(&p, at(0), at(3_400)), Some(3_100));
        // From the fault to the first progress.
        assert_eq!(longest_gap(&p, at(120), at(3_300)), Some(3_080));
        // Still stalled when the traffic stopped: the gap runs to the end.
        assert_eq!(longest_gap(&p[..3], at(0), at(2_000)), Some(1_900));
        // Progress outside the window does not count.
        assert_eq!(longest_gap(&p, at(3_300), at(3_500)), Some(200));
        assert_eq!(longest_gap(&p, at(10), at(10)), None);
        // Unordered input.
        let mut q = p.clone();
        q.reverse();
        assert_eq!(longest_gap(&q, at(0), at(3_400)), Some(3_100));
    }

    #[test]
    fn progress_is_any_instance_moving_and_a_restart_counts() {
        let mut c = Progress::default();
        let read = |a: f64, b: f64| vec![("m-1".to_string(), a), ("m-2".to_string(), b)];
        assert!(!c.advanced(read(10.0, 0.0)), "the first read is the base");
        assert!(!c.advanced(read(10.0, 0.0)));
        assert!(c.advanced(read(10.0, 3.0)), "the other instance took the relay over");
        assert!(!c.advanced(read(10.0, 3.0)));
        assert!(c.advanced(read(2.0, 3.0)), "a restarted instance that published again");
        assert!(!c.advanced(read(0.0, 3.0)), "a restarted instance at zero has published nothing");
    }
}
