//! Traffic through the public API (`POST /api/v1/messages`) while the drill runs. Sends go out on
//! a fixed schedule ([`crate::load`], as the bench's), each message to one WHATSAPP and one TELEGRAM
//! recipient of the drill's own; every outcome is kept: accepted ids for the count, and every
//! refused or failed request, which is API downtime.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::load::Schedule;

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

/// A running stream of sends; [`Load::sent`] tells how far it got.
pub struct Load(crate::load::Load);

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
        let make: crate::load::MakeRequest = Arc::new(move |id, i| {
            client.post(url.clone()).header(reqwest::header::CONTENT_TYPE, "application/json").body(body(&run, id, i))
        });
        Self(crate::load::Load::start(make, Schedule::every(interval, limit, CONCURRENCY), first))
    }

    pub fn sent(&self) -> u64 {
        self.0.sent()
    }

    pub fn is_finished(&self) -> bool {
        self.0.is_finished()
    }

    /// Waits until the stream has sent everything, then for every answer.
    pub async fn join(self) -> Tally {
        tally(self.0.join().await)
    }

    /// Stops sending now and waits for the answers of what was sent.
    pub async fn stop(self) -> Tally {
        tally(self.0.stop().await)
    }
}

/// A 202 is accepted; anything else (another status, no answer) is API downtime.
fn tally(run: crate::load::Run) -> Tally {
    let mut t = Tally { sent: run.sent, behind: run.behind, ..Tally::default() };
    for r in run.replies {
        if r.status() == Some(202) {
            t.accepted.push(Accepted { id: r.id, at: r.answered_at });
        } else {
            t.failed += 1;
            t.failed_at.push(r.answered_at);
            if t.samples.len() < SAMPLES {
                t.samples.push(r.describe());
            }
        }
    }
    t
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
