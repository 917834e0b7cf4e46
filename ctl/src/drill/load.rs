//! Traffic through the public API (`POST /api/v1/messages`) while the drill runs. Sends go out on
//! a fixed schedule (open loop, like `bench`), each message to one WHATSAPP and one TELEGRAM
//! recipient of the drill's own; every outcome is kept: accepted ids for the count, and every
//! refused or failed request, which is API downtime.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use uuid::Uuid;

/// Conversations the messages are spread over (so several partitions get traffic).
pub const CONVERSATIONS: u64 = 64;
/// Most requests in flight.
const CONCURRENCY: usize = 256;
/// Failed requests kept verbatim for the report.
const SAMPLES: usize = 5;

/// The recipients of every drill message: (user id suffix, channel).
pub const RECIPIENTS: [(&str, &str); 2] = [("u0", "WHATSAPP"), ("u1", "TELEGRAM")];

/// One message accepted by the API.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub id: Uuid,
    pub at: DateTime<Utc>,
}

/// What a stream of sends saw.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub sent: u64,
    pub accepted: Vec<Accepted>,
    /// Non-202 answers and transport errors.
    pub failed: u64,
    pub failed_at: Vec<DateTime<Utc>>,
    pub samples: Vec<String>,
    /// Sends that found every connection slot busy (the client fell behind the schedule).
    pub behind: u64,
}

impl Tally {
    pub fn merge(&mut self, other: Tally) {
        self.sent += other.sent;
        self.accepted.extend(other.accepted);
        self.failed += other.failed;
        self.failed_at.extend(other.failed_at);
        self.behind += other.behind;
        for s in other.samples {
            if self.samples.len() < SAMPLES {
                self.samples.push(s);
            }
        }
    }
}

/// The body of message `i` of run `run`.
pub fn body(run: &str, id: Uuid, i: u64) -> String {
    let conv = i % CONVERSATIONS;
    let recipients: Vec<String> =
        RECIPIENTS.iter().map(|(u, ch)| format!(r#"{{"userId":"{run}-{u}","channel":"{ch}"}}"#)).collect();
    format!(
        r#"{{"messageId":"{id}","conversationId":"{run}-c{conv}","senderId":"{run}-s{conv}","channel":"WHATSAPP","content":{{"type":"TEXT","text":"drill {run} #{i}"}},"recipients":[{}]}}"#,
        recipients.join(",")
    )
}

enum Outcome {
    Accepted(Accepted),
    Failed(String),
}

/// A running stream of sends; [`Load::sent`] tells how far it got.
pub struct Load {
    sent: Arc<AtomicU64>,
    stop: watch::Sender<bool>,
    handle: JoinHandle<Tally>,
}

impl Load {
    /// Starts sending `limit` messages (None: until stopped), one every `interval`, numbered from
    /// `first` (so recovery messages do not reuse the main stream's numbers).
    pub fn start(
        client: reqwest::Client,
        url: reqwest::Url,
        run: String,
        interval: Duration,
        first: u64,
        limit: Option<u64>,
    ) -> Self {
        let sent = Arc::new(AtomicU64::new(0));
        let (stop, stop_rx) = watch::channel(false);
        let counter = sent.clone();
        let handle = tokio::spawn(send_loop(client, url, run, interval, first, limit, counter, stop_rx));
        Self { sent, stop, handle }
    }

    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }

    /// Waits until the stream has sent everything, then for every answer.
    pub async fn join(self) -> Tally {
        self.handle.await.unwrap_or_default()
    }

    /// Stops sending now and waits for the answers of what was sent.
    pub async fn stop(self) -> Tally {
        let _ = self.stop.send(true);
        self.join().await
    }
}

#[allow(clippy::too_many_arguments)]
async fn send_loop(
    client: reqwest::Client,
    url: reqwest::Url,
    run: String,
    interval: Duration,
    first: u64,
    limit: Option<u64>,
    counter: Arc<AtomicU64>,
    mut stop: watch::Receiver<bool>,
) -> Tally {
    let sem = Arc::new(Semaphore::new(CONCURRENCY));
    let (tx, mut rx) = mpsc::unbounded_channel::<Outcome>();
    let collector = tokio::spawn(async move {
        let mut t = Tally::default();
        while let Some(o) = rx.recv().await {
            match o {
                Outcome::Accepted(a) => t.accepted.push(a),
                Outcome::Failed(e) => {
                    t.failed += 1;
                    t.failed_at.push(Utc::now());
                    if t.samples.len() < SAMPLES {
                        t.samples.push(e);
                    }
                }
            }
        }
        t
    });
    let start = Instant::now();
    let mut i = 0u64;
    let mut behind = 0u64;
    'send: while limit.is_none_or(|l| i < l) {
        let due = start + due_after(interval, i);
        tokio::select! {
            _ = tokio::time::sleep_until(due) => {}
            _ = stop.changed() => break 'send,
        }
        if *stop.borrow() {
            break;
        }
        let now = Instant::now();
        // Everything due by now goes out without waiting for answers.
        while limit.is_none_or(|l| i < l) && start + due_after(interval, i) <= now {
            let permit = match sem.clone().try_acquire_owned() {
                Ok(p) => p,
                Err(_) => {
                    behind += 1;
                    sem.clone().acquire_owned().await.expect("semaphore never closed")
                }
            };
            let id = Uuid::now_v7();
            let req = client.post(url.clone()).header(reqwest::header::CONTENT_TYPE, "application/json").body(body(
                &run,
                id,
                first + i,
            ));
            let tx = tx.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let outcome = match req.send().await {
                    Ok(resp) if resp.status().as_u16() == 202 => {
                        let _ = resp.bytes().await;
                        Outcome::Accepted(Accepted { id, at: Utc::now() })
                    }
                    Ok(resp) => {
                        let status = resp.status();
                        let text = resp.text().await.unwrap_or_default();
                        Outcome::Failed(format!("HTTP {status}: {}", text.chars().take(200).collect::<String>()))
                    }
                    Err(e) => Outcome::Failed(format!("request failed: {}", error_chain(&e.without_url()))),
                };
                let _ = tx.send(outcome);
            });
            i += 1;
            counter.store(i, Ordering::Relaxed);
        }
    }
    drop(tx);
    let mut t = collector.await.unwrap_or_default();
    t.sent = i;
    t.behind = behind;
    t
}

/// When send `i` is due, relative to the start.
fn due_after(interval: Duration, i: u64) -> Duration {
    interval * u32::try_from(i).unwrap_or(u32::MAX)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_valid_json_with_both_recipients() {
        let id = Uuid::now_v7();
        let v: serde_json::Value = serde_json::from_str(&body("drill-ab", id, 70)).expect("json");
        assert_eq!(v["messageId"], id.to_string());
        assert_eq!(v["conversationId"], "drill-ab-c6");
        assert_eq!(v["recipients"][0]["userId"], "drill-ab-u0");
        assert_eq!(v["recipients"][1]["channel"], "TELEGRAM");
    }

    #[test]
    fn tallies_merge() {
        let mut a = Tally { sent: 2, failed: 1, samples: vec!["x".into()], ..Tally::default() };
        a.merge(Tally { sent: 3, behind: 1, ..Tally::default() });
        assert_eq!((a.sent, a.failed, a.behind, a.samples.len()), (5, 1, 1, 1));
    }
}
