//! Dead letters as the control plane reads them: straight from the `chat-events-dlq` topic (a
//! topic, not a table), each with its id `<partition>:<offset>`; and the DLQ depth, the letters
//! whose delivery is still FAILED (asked of the message-service, which owns `deliveries`).

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::Context;
use chat4all_contract::admin::dlq::{LetterKey, StatusResponse};
use chat4all_contract::channel::Channel;
use chat4all_contract::events::{DeadLetter, DeliveryStatus};
use chat4all_contract::names::topics;
use chrono::{DateTime, Utc};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde::Serialize;

use crate::admin::{Admin, AdminError};

/// Characters of a message's text `dlq list` shows.
pub const EXCERPT_CHARS: usize = 40;

/// One record of the dead-letter topic.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Letter {
    /// `<partition>:<offset>`.
    pub id: String,
    pub partition: i32,
    pub offset: i64,
    /// When it was dead-lettered (the record's `at`, else the Kafka timestamp).
    pub at: Option<DateTime<Utc>>,
    /// The record, when it is a [`DeadLetter`] (a malformed chat event is dead-lettered raw).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub letter: Option<DeadLetter>,
    /// The start of a record that is not a dead letter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
}

impl Letter {
    fn from_record(partition: i32, offset: i64, timestamp: Option<i64>, payload: &[u8]) -> Self {
        let letter = serde_json::from_slice::<DeadLetter>(payload).ok();
        let kafka_at = timestamp.and_then(DateTime::from_timestamp_millis);
        let raw = letter.is_none().then(|| excerpt(&String::from_utf8_lossy(payload), 80));
        Self {
            id: format!("{partition}:{offset}"),
            partition,
            offset,
            at: letter.as_ref().map(|l| l.at).or(kafka_at),
            letter,
            raw,
        }
    }

    /// The delivery it names, if it is a dead letter.
    pub fn key(&self) -> Option<LetterKey> {
        self.letter.as_ref().map(|l| LetterKey::of(self.id.clone(), l))
    }

    pub fn channel(&self) -> Option<Channel> {
        self.letter.as_ref().map(|l| l.recipient.channel)
    }
}

/// The first `n` characters of `text` on one line, `…` when cut.
pub fn excerpt(text: &str, n: usize) -> String {
    let one_line: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if one_line.chars().count() <= n {
        one_line
    } else {
        format!("{}…", one_line.chars().take(n).collect::<String>())
    }
}

/// Which letters a command looks at.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub channel: Option<Channel>,
    /// Only letters dead-lettered within this long before now.
    pub since: Option<Duration>,
}

impl Filter {
    pub fn keeps(&self, l: &Letter, now: DateTime<Utc>) -> bool {
        if let Some(c) = self.channel {
            if l.channel() != Some(c) {
                return false;
            }
        }
        if let Some(since) = self.since {
            let Ok(span) = chrono::Duration::from_std(since) else { return true };
            if l.at.is_none_or(|at| at < now - span) {
                return false;
            }
        }
        true
    }
}

/// Reads the dead-letter topic, remembering how far it got: each [`DlqReader::refresh`] reads only
/// the records added since (the exporter and the dashboard refresh every few seconds).
pub struct DlqReader {
    consumer: BaseConsumer,
    timeout: Duration,
    next: BTreeMap<i32, i64>,
    letters: Vec<Letter>,
}

impl DlqReader {
    pub fn new(bootstrap: &str, timeout: Duration) -> anyhow::Result<Self> {
        // librdkafka's assign() needs a group id, but nothing joins it (partitions are assigned,
        // never subscribed) and nothing is committed, so no group shows up on the broker.
        let consumer: BaseConsumer = crate::kafka::client_config(bootstrap, "chat4allctl-dlq")
            .set("group.id", "chat4allctl-dlq-reader")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .create()
            .context("creating Kafka client")?;
        Ok(Self { consumer, timeout, next: BTreeMap::new(), letters: Vec::new() })
    }

    /// Every letter read so far, in (partition, offset) order.
    pub fn letters(&self) -> &[Letter] {
        &self.letters
    }

    /// Blocking: reads the records added since the last call (all of them the first time). A
    /// topic that does not exist yet has no letters.
    pub fn refresh(&mut self) -> anyhow::Result<()> {
        let md = self
            .consumer
            .fetch_metadata(Some(topics::DEAD_LETTERS), self.timeout)
            .context("reading the dead-letter topic's metadata")?;
        let Some(topic) = md.topics().iter().find(|t| t.name() == topics::DEAD_LETTERS) else { return Ok(()) };
        if topic.error().is_some() {
            return Ok(());
        }
        let mut want: BTreeMap<i32, i64> = BTreeMap::new();
        let mut tpl = TopicPartitionList::new();
        for p in topic.partitions() {
            let (low, high) = self
                .consumer
                .fetch_watermarks(topics::DEAD_LETTERS, p.id(), self.timeout)
                .context("reading the dead-letter topic's offsets")?;
            let from = self.next.get(&p.id()).copied().unwrap_or(low).max(low);
            if from < high {
                want.insert(p.id(), high);
                tpl.add_partition_offset(topics::DEAD_LETTERS, p.id(), Offset::Offset(from))?;
            }
        }
        if want.is_empty() {
            return Ok(());
        }
        self.consumer.assign(&tpl).context("assigning the dead-letter topic")?;
        let deadline = Instant::now() + self.timeout;
        let mut fresh = Vec::new();
        while !want.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                anyhow::bail!("reading the dead-letter topic timed out ({} partitions not at their end)", want.len());
            }
            let Some(m) = self.consumer.poll(left.min(Duration::from_millis(200))) else { continue };
            let m = m.context("reading the dead-letter topic")?;
            let (p, o) = (m.partition(), m.offset());
            fresh.push(Letter::from_record(p, o, m.timestamp().to_millis(), m.payload().unwrap_or_default()));
            self.next.insert(p, o + 1);
            if want.get(&p).is_some_and(|high| o + 1 >= *high) {
                want.remove(&p);
            }
        }
        let _ = self.consumer.unassign();
        self.letters.extend(fresh);
        self.letters.sort_by_key(|l| (l.partition, l.offset));
        self.letters.dedup_by_key(|l| (l.partition, l.offset));
        Ok(())
    }
}

/// Every letter on the topic now (blocking).
pub fn read_all(bootstrap: &str, timeout: Duration) -> anyhow::Result<Vec<Letter>> {
    let mut r = DlqReader::new(bootstrap, timeout)?;
    r.refresh()?;
    Ok(r.letters)
}

/// [`read_all`] off the async runtime.
pub async fn read_all_async(bootstrap: &str, timeout: Duration) -> anyhow::Result<Vec<Letter>> {
    let bootstrap = bootstrap.to_string();
    tokio::task::spawn_blocking(move || read_all(&bootstrap, timeout)).await.context("reading the dead-letter topic")?
}

/// The DLQ depth: per channel, the deliveries dead-lettered whose status is still FAILED (a
/// delivery dead-lettered twice counts once).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Depth {
    /// Records on the topic.
    pub letters: usize,
    /// Still FAILED, all channels.
    pub total: u64,
    /// Still FAILED, by channel label (`whatsapp`), every channel present.
    pub channels: BTreeMap<String, u64>,
}

/// The status of each letter's delivery, from the message-service (in the letters' order; `None`
/// for a record that is not a dead letter or a delivery that does not exist).
pub async fn statuses(admin: &Admin, letters: &[Letter]) -> Result<Vec<Option<DeliveryStatus>>, AdminError> {
    let keys: Vec<LetterKey> = letters.iter().filter_map(Letter::key).collect();
    let mut by_id: BTreeMap<String, Option<DeliveryStatus>> = BTreeMap::new();
    for chunk in keys.chunks(chat4all_contract::admin::dlq::MAX_LETTERS) {
        let StatusResponse { letters } = admin.dlq_status(chunk).await?;
        by_id.extend(letters.into_iter().map(|l| (l.id, l.status)));
    }
    Ok(letters.iter().map(|l| by_id.get(&l.id).copied().flatten()).collect())
}

/// The depth, given each letter's delivery status (as [`statuses`] returns them).
pub fn depth(letters: &[Letter], statuses: &[Option<DeliveryStatus>]) -> Depth {
    let mut d = Depth { letters: letters.len(), ..Default::default() };
    for c in Channel::ALL {
        d.channels.insert(c.label().to_string(), 0);
    }
    let mut seen = HashSet::new();
    for (l, s) in letters.iter().zip(statuses) {
        let Some(key) = l.key() else { continue };
        if *s == Some(DeliveryStatus::Failed) && seen.insert((key.message_id, key.recipient_id.clone(), key.channel)) {
            d.total += 1;
            *d.channels.entry(key.channel.label().to_string()).or_default() += 1;
        }
    }
    d
}

/// Reads the topic and asks the statuses: the depth now.
pub async fn depth_now(admin: &Admin, reader: &mut Option<DlqReader>, bootstrap: &str) -> anyhow::Result<Depth> {
    let mut r = match reader.take() {
        Some(r) => r,
        None => DlqReader::new(bootstrap, Duration::from_secs(5))?,
    };
    let (r, read) = tokio::task::spawn_blocking(move || {
        let res = r.refresh();
        (r, res)
    })
    .await
    .context("reading the dead-letter topic")?;
    let letters = r.letters().to_vec();
    *reader = Some(r);
    read?;
    let s = statuses(admin, &letters).await?;
    Ok(depth(&letters, &s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat4all_contract::events::{ChatEvent, Content, Recipient};
    use uuid::Uuid;

    fn letter(offset: i64, msg: Uuid, channel: Channel, at: DateTime<Utc>) -> Letter {
        let dl = DeadLetter {
            event: ChatEvent {
                event_type: "message.created".into(),
                message_id: msg,
                conversation_id: "c".into(),
                sender_id: "s".into(),
                channel,
                content: Content { kind: "TEXT".into(), text: "hello there".into(), file_ids: Vec::new() },
                recipients: vec![Recipient { user_id: "bob".into(), channel }],
                created_at: at,
            },
            recipient: Recipient { user_id: "bob".into(), channel },
            reason: "rejected".into(),
            instance: "telegram-connector-1".into(),
            at,
        };
        Letter::from_record(0, offset, None, &serde_json::to_vec(&dl).unwrap())
    }

    #[test]
    fn records_become_letters_and_raw_ones_stay_raw() {
        let now = Utc::now();
        let l = letter(7, Uuid::nil(), Channel::Telegram, now);
        assert_eq!((l.id.as_str(), l.at), ("0:7", Some(now)));
        assert_eq!(l.key().map(|k| k.recipient_id), Some("bob".into()));
        // An old record with `router` instead of `instance` still reads.
        let old = br#"{"event":{"eventType":"message.created","messageId":"00000000-0000-0000-0000-000000000000","conversationId":"c","senderId":"s","channel":"WHATSAPP","content":{"type":"TEXT","text":"x"},"recipients":[],"createdAt":"2026-01-01T00:00:00Z"},"recipient":{"userId":"u","channel":"WHATSAPP"},"reason":"r","router":"router-service-1","at":"2026-01-01T00:00:00Z"}"#;
        let l = Letter::from_record(0, 1, None, old);
        assert_eq!(l.letter.map(|d| d.instance), Some("router-service-1".into()));
        let raw = Letter::from_record(0, 2, Some(1_700_000_000_000), b"not json\n");
        assert!(raw.letter.is_none() && raw.key().is_none());
        assert_eq!((raw.raw.as_deref(), raw.at.is_some()), (Some("not json "), true));
    }

    #[test]
    fn filters_by_channel_and_age() {
        let now = Utc::now();
        let fresh = letter(1, Uuid::new_v4(), Channel::Telegram, now - chrono::Duration::minutes(5));
        let old = letter(2, Uuid::new_v4(), Channel::Whatsapp, now - chrono::Duration::hours(3));
        let f = Filter { channel: Some(Channel::Telegram), since: None };
        assert!(f.keeps(&fresh, now) && !f.keeps(&old, now));
        let f = Filter { channel: None, since: Some(Duration::from_secs(3600)) };
        assert!(f.keeps(&fresh, now) && !f.keeps(&old, now));
    }

    #[test]
    fn depth_counts_each_failed_delivery_once() {
        let now = Utc::now();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let letters = [
            letter(1, a, Channel::Telegram, now),
            letter(2, a, Channel::Telegram, now),
            letter(3, b, Channel::Whatsapp, now),
            Letter::from_record(0, 4, None, b"x"),
        ];
        let s = [Some(DeliveryStatus::Failed), Some(DeliveryStatus::Failed), Some(DeliveryStatus::Delivered), None];
        let d = depth(&letters, &s);
        assert_eq!((d.letters, d.total), (4, 1));
        assert_eq!(d.channels["telegram"], 1);
        assert_eq!((d.channels["whatsapp"], d.channels["instagram"]), (0, 0));
    }

    #[test]
    fn excerpts_are_one_line_and_cut() {
        assert_eq!(excerpt("a\nb", 10), "a b");
        assert_eq!(excerpt("abcdef", 3), "abc…");
    }
}
