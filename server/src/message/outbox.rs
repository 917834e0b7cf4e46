//! The outbox relay: publishes committed messages to Kafka in commit order, then deletes them.
//! One relay leads at a time (PostgreSQL advisory lock) so per-conversation order holds even
//! with several message-service instances. While the control plane pauses it (repartition),
//! the API keeps accepting and the outbox simply grows; on resume the relay re-reads the
//! partitions of chat-events before it publishes again, so that no record is keyed by the
//! partition count from before a repartition.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use sqlx::{PgPool, Row};
use tokio::sync::Notify;

use crate::config::topics;
use crate::kafka::{OutRecord, Producer};
use crate::shutdown::Shutdown;

const LEADER_LOCK: i64 = 0x0c4a_7411;

/// Deleted rows after which the relay vacuums the outbox itself.
const VACUUM_AFTER_DELETES: u64 = 10_000;
/// ... or this long after the last vacuum, when anything was deleted at all.
const VACUUM_AFTER: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub struct RelayMetrics {
    pub published: Counter,
    pub errors: Counter,
    pub backlog: Gauge,
    pub paused: Gauge,
}

impl RelayMetrics {
    pub fn register(reg: &mut Registry) -> Self {
        let m = Self {
            published: Counter::default(),
            errors: Counter::default(),
            backlog: Gauge::default(),
            paused: Gauge::default(),
        };
        reg.register("chat4all_outbox_published", "Outbox records published to Kafka", m.published.clone());
        reg.register("chat4all_outbox_publish_errors", "Failed outbox publish rounds", m.errors.clone());
        reg.register("chat4all_outbox_backlog", "Outbox records not yet published", m.backlog.clone());
        reg.register("chat4all_outbox_paused", "1 while the control plane pauses the relay", m.paused.clone());
        m
    }
}

/// One outbox row on its way to Kafka.
struct Pending {
    id: i64,
    topic: String,
    key: String,
    payload: Vec<u8>,
    request_id: Option<String>,
}

pub struct Relay {
    pub pool: PgPool,
    pub producer: Producer,
    pub batch: i64,
    pub wakeup: Arc<Notify>,
    pub metrics: RelayMetrics,
    /// Set while paused: the partitions must be re-read before the next publish.
    pub was_paused: bool,
}

impl Relay {
    pub async fn run(mut self, shutdown: Shutdown) {
        let Some(_leader) = self.become_leader(&shutdown).await else { return };
        tracing::info!("outbox relay leading");
        let mut last_backlog = std::time::Instant::now() - Duration::from_secs(60);
        let mut vacuum = Vacuum::new();
        while !shutdown.is_triggered() {
            if last_backlog.elapsed() > Duration::from_secs(2) {
                self.refresh_backlog().await;
                last_backlog = std::time::Instant::now();
            }
            if vacuum.due() {
                vacuum.run(&self.pool).await;
            }
            let idle = match self.round().await {
                Ok(n) => {
                    vacuum.deleted += n as u64;
                    n == 0
                }
                Err(e) => {
                    self.metrics.errors.inc();
                    tracing::warn!(error = format!("{e:#}"), "outbox publish failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                        _ = shutdown.wait() => {}
                    }
                    false
                }
            };
            if idle {
                tokio::select! {
                    _ = self.wakeup.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    _ = shutdown.wait() => {}
                }
            }
        }
        self.producer.flush(Duration::from_secs(5));
    }

    /// Holds the leader lock on a dedicated connection for as long as it is returned.
    async fn become_leader(&self, shutdown: &Shutdown) -> Option<sqlx::pool::PoolConnection<sqlx::Postgres>> {
        loop {
            if shutdown.is_triggered() {
                return None;
            }
            match self.pool.acquire().await {
                Ok(mut conn) => {
                    let got: Result<bool, _> = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                        .bind(LEADER_LOCK)
                        .fetch_one(&mut *conn)
                        .await;
                    if let Ok(true) = got {
                        return Some(conn);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "outbox relay cannot reach PostgreSQL"),
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.wait() => {}
            }
        }
    }

    async fn refresh_backlog(&self) {
        if let Ok(n) = sqlx::query_scalar::<_, i64>("SELECT count(*) FROM outbox").fetch_one(&self.pool).await {
            self.metrics.backlog.set(n);
        }
    }

    /// Publishes one batch; returns how many records were published.
    async fn round(&mut self) -> anyhow::Result<usize> {
        let paused: bool =
            sqlx::query_scalar("SELECT paused FROM relay_control WHERE id = 1").fetch_one(&self.pool).await?;
        self.metrics.paused.set(paused as i64);
        if paused {
            self.was_paused = true;
            return Ok(0);
        }
        let rows = sqlx::query("SELECT id, topic, key, payload, request_id FROM outbox ORDER BY id LIMIT $1")
            .bind(self.batch)
            .fetch_all(&self.pool)
            .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        if self.was_paused {
            let producer = self.producer.clone();
            let n = tokio::task::spawn_blocking(move || {
                producer.refresh_partitions(topics::CHAT_EVENTS, Duration::from_secs(5))
            })
            .await??;
            tracing::info!(partitions = n, "outbox relay resumed");
            self.was_paused = false;
        }
        let records: Vec<Pending> = rows
            .into_iter()
            .map(|r| Pending {
                id: r.get("id"),
                topic: r.get("topic"),
                key: r.get("key"),
                payload: r.get("payload"),
                request_id: r.get("request_id"),
            })
            .collect();
        let refs: Vec<OutRecord<'_>> = records
            .iter()
            .map(|p| OutRecord {
                topic: &p.topic,
                key: &p.key,
                payload: &p.payload,
                request_id: p.request_id.as_deref(),
            })
            .collect();
        let (acked, err) = self.producer.send_all(&refs).await;
        if acked > 0 {
            // Delete exactly what was published, never a range: ids are taken at insert but
            // transactions commit in any order, so a lower id may become visible after we read.
            let ids: Vec<i64> = records[..acked].iter().map(|r| r.id).collect();
            sqlx::query("DELETE FROM outbox WHERE id = ANY($1)").bind(&ids).execute(&self.pool).await?;
            self.metrics.published.inc_by(acked as u64);
        }
        match err {
            Some(e) => Err(e),
            None => Ok(acked),
        }
    }
}

/// The outbox is a queue: every row is deleted within milliseconds of its insert, so it is
/// almost all dead tuples unless vacuumed often. Autovacuum's default thresholds are made for
/// ordinary tables, and some servers run with it off (this project's CI machines do): then the
/// relay's ordered read and its deletes slowed from under a millisecond to tens of milliseconds
/// within minutes at 2,000 messages/s. The relay leader therefore vacuums the table itself.
struct Vacuum {
    deleted: u64,
    last: std::time::Instant,
}

impl Vacuum {
    fn new() -> Self {
        Self { deleted: 0, last: std::time::Instant::now() }
    }

    fn due(&self) -> bool {
        self.deleted >= VACUUM_AFTER_DELETES || (self.deleted > 0 && self.last.elapsed() >= VACUUM_AFTER)
    }

    async fn run(&mut self, pool: &PgPool) {
        let started = std::time::Instant::now();
        match sqlx::raw_sql("VACUUM (ANALYZE, TRUNCATE false) outbox").execute(pool).await {
            Ok(_) => tracing::debug!(
                deleted = self.deleted,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "outbox vacuumed"
            ),
            Err(e) => tracing::warn!(error = %e, "vacuuming the outbox failed"),
        }
        self.deleted = 0;
        self.last = std::time::Instant::now();
    }
}
