use std::time::Duration;

use anyhow::Context;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::util::Timeout;
use rdkafka::ClientContext;

/// Counts librdkafka's client errors in `chat4all_kafka_client_errors_total{kind="client"}`.
#[derive(Clone, Default)]
pub struct CountingContext;

impl ClientContext for CountingContext {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        crate::metrics::record_kafka_error("client");
        tracing::warn!(error = %error, reason, "Kafka client error");
    }
}

/// The Kafka header carrying the api-gateway's request id.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// One record for [`Producer::send_all`].
#[derive(Debug, Clone, Copy)]
pub struct OutRecord<'a> {
    pub topic: &'a str,
    pub key: &'a str,
    pub payload: &'a [u8],
    pub request_id: Option<&'a str>,
}

/// Idempotent, `acks=all` producer: a retried send never duplicates or reorders a partition.
#[derive(Clone)]
pub struct Producer {
    inner: FutureProducer<CountingContext>,
}

impl Producer {
    pub fn new(bootstrap: &str, client_id: &str) -> anyhow::Result<Self> {
        let inner: FutureProducer<CountingContext> = super::base_config(bootstrap, client_id)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            // Every sender here enqueues a whole batch at once and waits for its acks, so the
            // batch forms without lingering; 5 ms cost a quiet pipeline 5 ms per hop
            // (BENCHMARKS.md, "100 messages a second").
            .set("linger.ms", "1")
            .set("compression.type", "none")
            // The Java client's key hash, so a key lands on the same partition whichever client
            // produced it, and `repartition --dry-run` can tell which keys move.
            .set("partitioner", "murmur2_random")
            // A send that cannot reach the broker fails after this long; the caller keeps the
            // record (outbox) and tries again, so nothing is lost by giving up.
            .set("message.timeout.ms", "10000")
            .create_with_context(CountingContext)
            .context("creating Kafka producer")?;
        Ok(Self { inner })
    }

    /// Sends one record and waits for the broker's acknowledgement.
    pub async fn send(&self, topic: &str, key: &str, payload: &[u8]) -> anyhow::Result<(i32, i64)> {
        let record = FutureRecord::to(topic).key(key).payload(payload);
        self.inner
            .send(record, Timeout::After(Duration::from_secs(10)))
            .await
            .map(|delivery| (delivery.partition, delivery.offset))
            .map_err(|(e, _)| {
                crate::metrics::record_kafka_error("produce");
                anyhow::Error::new(e).context(format!("producing to {topic}"))
            })
    }

    /// Sends many records, keeping their order per partition, and waits for every ack.
    /// Returns how many were acknowledged before the first failure.
    pub async fn send_all(&self, records: &[OutRecord<'_>]) -> (usize, Option<anyhow::Error>) {
        let mut pending = Vec::with_capacity(records.len());
        for r in records {
            let (topic, key, payload) = (r.topic, r.key, r.payload);
            let mut record = FutureRecord::to(topic).key(key).payload(payload);
            if let Some(id) = r.request_id {
                record = record.headers(OwnedHeaders::new().insert(Header { key: REQUEST_ID_HEADER, value: Some(id) }));
            }
            match self.inner.send_result(record) {
                Ok(fut) => pending.push(fut),
                Err((e, _)) => {
                    let err = anyhow::Error::new(e).context(format!("queueing record for {topic}"));
                    return (Self::count_acked(pending).await.0, Some(err));
                }
            }
        }
        Self::count_acked(pending).await
    }

    async fn count_acked(pending: Vec<rdkafka::producer::DeliveryFuture>) -> (usize, Option<anyhow::Error>) {
        let mut acked = 0;
        let mut first_err = None;
        for fut in pending {
            match fut.await {
                Ok(Ok(_)) if first_err.is_none() => acked += 1,
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => {
                    first_err.get_or_insert_with(|| anyhow::Error::new(e).context("producing"));
                }
                Err(_) => {
                    first_err.get_or_insert_with(|| anyhow::anyhow!("producer dropped the record"));
                }
            }
        }
        (acked, first_err)
    }

    /// Re-reads `topic`'s metadata now (librdkafka otherwise refreshes it every 5 minutes) and
    /// returns its partition count: the partitioner keys records by the count it knows, so after
    /// partitions were added it must know them before it sends anything. Blocking.
    pub fn refresh_partitions(&self, topic: &str, timeout: Duration) -> anyhow::Result<usize> {
        let md = self
            .inner
            .client()
            .fetch_metadata(Some(topic), timeout)
            .with_context(|| format!("reading the metadata of {topic}"))?;
        md.topics()
            .iter()
            .find(|t| t.name() == topic)
            .filter(|t| t.error().is_none())
            .map(|t| t.partitions().len())
            .ok_or_else(|| anyhow::anyhow!("the broker does not know {topic}"))
    }

    /// Whether the broker answers a metadata request within `timeout`.
    pub fn broker_reachable(&self, timeout: Duration) -> bool {
        self.inner.client().fetch_metadata(None, timeout).is_ok()
    }

    pub fn flush(&self, timeout: Duration) {
        let _ = self.inner.flush(timeout);
    }
}
