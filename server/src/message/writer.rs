//! Group commit for accepted messages.
//!
//! Every `POST /api/v1/messages` hands its prepared row to a writer task and waits for the
//! answer. A writer takes whatever is queued (up to `max_batch`) and writes it with one
//! statement ([`store::insert_rows`]): at low load a batch is one message and costs what a
//! direct insert did; under load the batches grow by themselves while the previous statement
//! runs, so the round trips and commits per message fall instead of queueing. There is no timer:
//! nothing waits for a batch to fill.
//!
//! A batch that fails for another reason than an unreachable database is retried one message at
//! a time, so one message PostgreSQL refuses fails alone and never takes its neighbours with it.
//!
//! Each writer owns a share of the conversations (by a hash of the conversation id). Two writers
//! sharing one queue would commit concurrent statements, and a message of a conversation could
//! then take a lower `seq` than its predecessor's in the other statement yet commit after it:
//! the conversation's listing (by `seq`) and its delivery order (the outbox's, by id) would
//! disagree. With one writer per conversation, its messages are numbered and committed in the
//! order they were accepted.

use std::collections::HashSet;
use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::store::{self, NewRow};

/// Why a message could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// PostgreSQL could not be reached (the whole batch failed with it).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// The writer tasks are gone (the service is shutting down).
    #[error("the message writer stopped")]
    Stopped,
}

/// What an operator needs to see the group commit working (batch sizes grow with load) and a
/// refused batch falling back to one-by-one writes.
#[derive(Clone)]
pub struct WriterMetrics {
    pub batch_messages: Histogram,
    pub fallbacks: Counter,
}

impl WriterMetrics {
    pub fn register(reg: &mut Registry) -> Self {
        let m =
            Self { batch_messages: Histogram::new(exponential_buckets(1.0, 2.0, 10)), fallbacks: Counter::default() };
        reg.register(
            "chat4all_message_insert_batch_messages",
            "Accepted messages written per INSERT (group commit)",
            m.batch_messages.clone(),
        );
        reg.register(
            "chat4all_message_insert_fallbacks",
            "Batches PostgreSQL refused, then written one message at a time",
            m.fallbacks.clone(),
        );
        m
    }
}

struct Job {
    row: NewRow,
    /// `Ok(true)`: inserted; `Ok(false)`: the id existed already.
    reply: oneshot::Sender<Result<bool, WriteError>>,
}

/// Handle of the writer tasks; cheap to clone.
#[derive(Clone)]
pub struct Writer {
    /// One queue per writer task; a conversation always goes to the same one.
    jobs: Arc<[mpsc::Sender<Job>]>,
}

/// Requests waiting for a writer before new ones wait for room (back pressure).
const QUEUE: usize = 8192;

impl Writer {
    /// Starts `writers` tasks (two let one batch be built and sent while the other commits).
    pub fn spawn(pool: PgPool, writers: usize, max_batch: usize, metrics: WriterMetrics) -> Self {
        let jobs: Vec<mpsc::Sender<Job>> = (0..writers.max(1))
            .map(|_| {
                let (tx, rx) = mpsc::channel(QUEUE / writers.max(1));
                tokio::spawn(run(pool.clone(), rx, max_batch.max(1), metrics.clone()));
                tx
            })
            .collect();
        Self { jobs: jobs.into() }
    }

    /// Writes one message; `Ok(false)` when its id exists already (nothing was written).
    pub async fn write(&self, row: NewRow) -> Result<bool, WriteError> {
        let (reply, answer) = oneshot::channel();
        let queue = &self.jobs[shard(row.conversation_id(), self.jobs.len())];
        queue.send(Job { row, reply }).await.map_err(|_| WriteError::Stopped)?;
        answer.await.map_err(|_| WriteError::Stopped)?
    }
}

/// The writer of a conversation.
fn shard(conversation_id: &str, writers: usize) -> usize {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    conversation_id.hash(&mut h);
    (h.finish() % writers.max(1) as u64) as usize
}

async fn run(pool: PgPool, mut rx: mpsc::Receiver<Job>, max_batch: usize, metrics: WriterMetrics) {
    let mut held = Vec::new();
    loop {
        let batch = match next_batch(&mut rx, &mut held, max_batch).await {
            Some(batch) => batch,
            None => return,
        };
        metrics.batch_messages.observe(batch.len() as f64);
        write_batch(&pool, batch, &metrics).await;
    }
}

/// The jobs held back last time, then what is queued, up to `max`; waits only when there is
/// nothing at all. A second job with an id already in the batch is held for the next one (one
/// statement cannot insert the same id twice and report both). `None` once the queue is closed
/// and drained.
async fn next_batch(rx: &mut mpsc::Receiver<Job>, held: &mut Vec<Job>, max: usize) -> Option<Vec<Job>> {
    let mut batch: Vec<Job> = Vec::new();
    let mut ids: HashSet<Uuid> = HashSet::new();
    let mut later = Vec::new();
    for job in held.drain(..) {
        if batch.len() < max && ids.insert(job.row.id) {
            batch.push(job);
        } else {
            later.push(job);
        }
    }
    if batch.is_empty() {
        let job = rx.recv().await?;
        ids.insert(job.row.id);
        batch.push(job);
    }
    while batch.len() < max {
        let Ok(job) = rx.try_recv() else { break };
        if ids.insert(job.row.id) {
            batch.push(job);
        } else {
            later.push(job);
        }
    }
    *held = later;
    Some(batch)
}

async fn write_batch(pool: &PgPool, batch: Vec<Job>, metrics: &WriterMetrics) {
    let rows: Vec<&NewRow> = batch.iter().map(|j| &j.row).collect();
    match store::insert_rows(pool, &rows).await {
        Ok(inserted) => {
            for job in batch {
                let created = inserted.contains(&job.row.id);
                let _ = job.reply.send(Ok(created));
            }
        }
        Err(e) if crate::db::is_unavailable(&e) => {
            let reason = e.to_string();
            for job in batch {
                let _ = job.reply.send(Err(WriteError::Unavailable(reason.clone())));
            }
        }
        Err(e) if batch.len() == 1 => {
            let job = batch.into_iter().next().expect("one job");
            let _ = job.reply.send(Err(WriteError::Database(e)));
        }
        Err(e) => {
            metrics.fallbacks.inc();
            tracing::warn!(error = %e, messages = batch.len(), "batch insert failed; writing its messages one by one");
            for job in batch {
                let result = store::insert_rows(pool, &[&job.row])
                    .await
                    .map(|inserted| inserted.contains(&job.row.id))
                    .map_err(WriteError::from);
                let _ = job.reply.send(result);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::domain::NewMessage;

    fn row(id: Uuid) -> NewRow {
        let body = format!(
            r#"{{"messageId":"{id}","conversationId":"c","senderId":"s","channel":"WHATSAPP",
                "content":{{"type":"TEXT","text":"hi"}},"recipients":[{{"userId":"u","channel":"WHATSAPP"}}]}}"#
        );
        NewRow::new(id, &NewMessage::parse(body.as_bytes()).expect("valid"), None)
    }

    fn job(id: Uuid) -> (Job, oneshot::Receiver<Result<bool, WriteError>>) {
        let (reply, rx) = oneshot::channel();
        (Job { row: row(id), reply }, rx)
    }

    #[tokio::test]
    async fn a_batch_takes_what_is_queued_up_to_the_cap_without_waiting() {
        let (tx, mut rx) = mpsc::channel(16);
        let mut answers = Vec::new();
        for _ in 0..5 {
            let (j, a) = job(Uuid::now_v7());
            answers.push(a);
            tx.send(j).await.unwrap();
        }
        let mut held = Vec::new();
        assert_eq!(next_batch(&mut rx, &mut held, 3).await.unwrap().len(), 3);
        assert_eq!(next_batch(&mut rx, &mut held, 3).await.unwrap().len(), 2);
        drop(tx);
        assert!(next_batch(&mut rx, &mut held, 3).await.is_none(), "closed and drained");
    }

    #[tokio::test]
    async fn a_repeated_id_waits_for_the_next_batch() {
        let (tx, mut rx) = mpsc::channel(16);
        let id = Uuid::now_v7();
        let other = Uuid::now_v7();
        for i in [id, id, other] {
            tx.send(job(i).0).await.unwrap();
        }
        let mut held = Vec::new();
        let first: Vec<Uuid> = next_batch(&mut rx, &mut held, 10).await.unwrap().iter().map(|j| j.row.id).collect();
        assert_eq!(first, vec![id, other]);
        let second: Vec<Uuid> = next_batch(&mut rx, &mut held, 10).await.unwrap().iter().map(|j| j.row.id).collect();
        assert_eq!(second, vec![id], "the repeat comes next, without waiting for a new job");
    }
}

#[cfg(test)]
mod shard_tests {
    use super::shard;

    #[test]
    fn a_conversation_always_has_the_same_writer_and_conversations_spread() {
        let first: Vec<usize> = (0..1000).map(|i| shard(&format!("c-{i}"), 2)).collect();
        let again: Vec<usize> = (0..1000).map(|i| shard(&format!("c-{i}"), 2)).collect();
        assert_eq!(first, again);
        let ones = first.iter().filter(|w| **w == 1).count();
        assert!((400..600).contains(&ones), "{ones} of 1000 on writer 1");
        assert_eq!(shard("anything", 1), 0);
    }
}
