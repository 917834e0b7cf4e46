//! The one open-loop load generator of the bench, the drill and the gateway bench.
//!
//! Send `i` is due at `i / rate` seconds after the start, whatever the answers: everything due
//! goes out at once, each request on its own task, at most `concurrency` in flight. A send that
//! finds every slot busy waits for one and counts as `behind` (the client, not the server, was
//! late). Every answer is kept, with when it was due, sent and answered, so each caller makes its
//! own figures (accepted ids, latencies, downtime) from one record.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use uuid::Uuid;

/// Builds request `i`, whose message id (if it has one) is `id`.
pub type MakeRequest = Arc<dyn Fn(Uuid, u64) -> reqwest::RequestBuilder + Send + Sync>;

/// The schedule: how fast, how many, how much in flight.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// `sends` sends every `period`, evenly spaced, with no drift (send `i` is due at exactly
    /// `i * period / sends`).
    pub period: Duration,
    pub sends: u64,
    /// Sends in all; `None` sends until [`Load::stop`].
    pub limit: Option<u64>,
    /// Most requests in flight.
    pub concurrency: usize,
}

impl Schedule {
    /// `rate` sends a second.
    pub fn per_second(rate: u32, limit: Option<u64>, concurrency: usize) -> Self {
        Self { period: Duration::from_secs(1), sends: u64::from(rate.max(1)), limit, concurrency }
    }

    /// One send every `interval`.
    pub fn every(interval: Duration, limit: Option<u64>, concurrency: usize) -> Self {
        Self { period: interval, sends: 1, limit, concurrency }
    }

    /// When send `i` is due, relative to the start.
    pub fn due(&self, i: u64) -> Duration {
        let nanos = u128::from(i) * self.period.as_nanos() / u128::from(self.sends.max(1));
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

/// How a request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// An HTTP answer: its status and (for one that is not a success) the start of its body.
    Status { code: u16, body: String },
    /// No HTTP answer: the error and its causes.
    Failed(String),
}

/// One request and its answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub i: u64,
    pub id: Uuid,
    pub due: Instant,
    pub sent: Instant,
    pub answered: Instant,
    pub answered_at: DateTime<Utc>,
    pub answer: Answer,
}

impl Reply {
    pub fn status(&self) -> Option<u16> {
        match self.answer {
            Answer::Status { code, .. } => Some(code),
            Answer::Failed(_) => None,
        }
    }

    pub fn latency(&self) -> Duration {
        self.answered - self.sent
    }

    /// How late the client sent it against its schedule.
    pub fn schedule_lag(&self) -> Duration {
        self.sent.saturating_duration_since(self.due)
    }

    /// One line for a report: `HTTP 503: ...` or `request failed: ...`.
    pub fn describe(&self) -> String {
        match &self.answer {
            Answer::Status { code, body } => format!("HTTP {code}: {body}"),
            Answer::Failed(e) => format!("request failed: {e}"),
        }
    }
}

/// What a run of sends saw.
#[derive(Debug, Clone)]
pub struct Run {
    pub started: Instant,
    pub sent: u64,
    /// Sends that found every slot busy.
    pub behind: u64,
    /// In the order the answers came.
    pub replies: Vec<Reply>,
}

/// A running stream of sends.
pub struct Load {
    sent: Arc<AtomicU64>,
    stop: watch::Sender<bool>,
    handle: JoinHandle<Run>,
}

impl Load {
    /// Starts sending on `schedule`, numbering the sends from `first`.
    pub fn start(make: MakeRequest, schedule: Schedule, first: u64) -> Self {
        let sent = Arc::new(AtomicU64::new(0));
        let (stop, stop_rx) = watch::channel(false);
        let handle = tokio::spawn(send_loop(make, schedule, first, sent.clone(), stop_rx));
        Self { sent, stop, handle }
    }

    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }

    /// Waits until everything is sent and answered.
    pub async fn join(self) -> Run {
        self.handle.await.unwrap_or_else(|_| Run { started: Instant::now(), sent: 0, behind: 0, replies: Vec::new() })
    }

    /// Stops sending now and waits for the answers of what was sent.
    pub async fn stop(self) -> Run {
        let _ = self.stop.send(true);
        self.join().await
    }
}

/// Sends on `schedule` and waits for every answer (a run with a limit).
pub async fn run(make: MakeRequest, schedule: Schedule) -> Run {
    Load::start(make, schedule, 0).join().await
}

async fn send_loop(
    make: MakeRequest,
    schedule: Schedule,
    first: u64,
    counter: Arc<AtomicU64>,
    mut stop: watch::Receiver<bool>,
) -> Run {
    let sem = Arc::new(Semaphore::new(schedule.concurrency.max(1)));
    let (tx, mut rx) = mpsc::unbounded_channel::<Reply>();
    let capacity = schedule.limit.unwrap_or(0).min(10_000_000) as usize;
    let collector = tokio::spawn(async move {
        let mut replies = Vec::with_capacity(capacity);
        while let Some(r) = rx.recv().await {
            replies.push(r);
        }
        replies
    });
    let start = Instant::now();
    let mut i = 0u64;
    let mut behind = 0u64;
    let more = |i: u64| schedule.limit.is_none_or(|l| i < l);
    'send: while more(i) {
        let due = start + schedule.due(i);
        tokio::select! {
            _ = tokio::time::sleep_until(due) => {}
            _ = stop.changed() => break 'send,
        }
        if *stop.borrow() {
            break;
        }
        let now = Instant::now();
        // Everything due by now goes out without waiting for answers.
        while more(i) && start + schedule.due(i) <= now {
            let due = start + schedule.due(i);
            let permit = match sem.clone().try_acquire_owned() {
                Ok(p) => p,
                Err(_) => {
                    behind += 1;
                    sem.clone().acquire_owned().await.expect("semaphore never closed")
                }
            };
            let id = Uuid::now_v7();
            let request = make(id, first + i);
            let tx = tx.clone();
            let n = first + i;
            tokio::spawn(async move {
                let _permit = permit;
                let sent = Instant::now();
                let answer = match request.send().await {
                    Ok(resp) => {
                        let code = resp.status().as_u16();
                        // Read the body so the connection goes back to the pool.
                        let body = resp.text().await.unwrap_or_default();
                        let body = if (200..300).contains(&code) { String::new() } else { excerpt(&body) };
                        Answer::Status { code, body }
                    }
                    Err(e) => Answer::Failed(error_chain(&e.without_url())),
                };
                let _ =
                    tx.send(Reply { i: n, id, due, sent, answered: Instant::now(), answered_at: Utc::now(), answer });
            });
            i += 1;
            counter.store(i, Ordering::Relaxed);
        }
    }
    drop(tx);
    let replies = collector.await.unwrap_or_default();
    Run { started: start, sent: i, behind, replies }
}

fn excerpt(body: &str) -> String {
    body.chars().take(200).collect()
}

/// An error and its causes on one line: reqwest's own message alone says little.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    use std::fmt::Write as _;
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let _ = write!(s, ": {c}");
        cause = c.source();
    }
    s
}

/// `len` deterministic pseudo-random bytes (xorshift64 from `seed`): upload bodies that no
/// layer can compress or deduplicate, reproducible from their seed.
pub fn pseudo_random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_are_due_at_i_over_rate() {
        let s = Schedule::per_second(4000, None, 1);
        assert_eq!(s.due(0), Duration::ZERO);
        assert_eq!(s.due(1), Duration::from_micros(250));
        assert_eq!(s.due(4000), Duration::from_secs(1));
        let slow = Schedule::every(Duration::from_secs(2), None, 1);
        assert_eq!(slow.due(3), Duration::from_secs(6));
        // No drift: send 3,000,000 at 3/s is exactly at 1,000,000 s.
        assert_eq!(Schedule::per_second(3, None, 1).due(1), Duration::from_nanos(333_333_333));
        assert_eq!(Schedule::per_second(3, None, 1).due(3_000_000), Duration::from_secs(1_000_000));
    }

    #[tokio::test]
    async fn every_send_is_answered_and_a_refused_connection_is_a_failure() {
        // Nothing listens on port 9 of loopback: every request fails at once, none is lost.
        let client = reqwest::Client::new();
        let make: MakeRequest = Arc::new(move |_, _| client.get("http://127.0.0.1:9/"));
        let run = run(make, Schedule::per_second(200, Some(20), 4)).await;
        assert_eq!((run.sent, run.replies.len()), (20, 20));
        assert!(run.replies.iter().all(|r| matches!(r.answer, Answer::Failed(_))), "{:?}", run.replies[0]);
        let mut seen: Vec<u64> = run.replies.iter().map(|r| r.i).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..20).collect::<Vec<_>>());
    }
}
