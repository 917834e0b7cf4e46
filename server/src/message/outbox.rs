//! The outbox relay: publishes committed messages to Kafka in commit order, then deletes them.
//! One relay leads at a time (PostgreSQL advisory lock) so per-conversation order holds even
//! with several message-service instances. While the control plane pauses it (repartition),
//! the API keeps accepting and the outbox simply grows; on resume the relay re-reads the
//! partitions of chat-events before it publishes again, so that no record is keyed by the
//! partition count from before a repartition. The pause is a lease (`relay_control.pause_until`,
//! see `message::admin`): a holder that dies stops renewing it and the relay resumes by itself.

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
    pub oldest_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub paused: Gauge,
    pub leader: Gauge,
    pub leadership_lost: Counter,
}

impl RelayMetrics {
    pub fn register(reg: &mut Registry) -> Self {
        let m = Self {
            published: Counter::default(),
            errors: Counter::default(),
            backlog: Gauge::default(),
            oldest_seconds: Gauge::default(),
            paused: Gauge::default(),
            leader: Gauge::default(),
            leadership_lost: Counter::default(),
        };
        reg.register("chat4all_outbox_published", "Outbox records published to Kafka", m.published.clone());
        reg.register("chat4all_outbox_publish_errors", "Failed outbox publish rounds", m.errors.clone());
        reg.register(
            "chat4all_outbox_backlog",
            "Outbox records not yet published (reported by the relay leader)",
            m.backlog.clone(),
        );
        reg.register(
            "chat4all_outbox_oldest_seconds",
            "Age of the oldest unpublished outbox record (reported by the relay leader; 0 when empty)",
            m.oldest_seconds.clone(),
        );
        reg.register(
            "chat4all_outbox_paused",
            "1 while a pause lease holds the relay (reported by the relay leader)",
            m.paused.clone(),
        );
        reg.register("chat4all_outbox_relay_leader", "1 while this instance leads the outbox relay", m.leader.clone());
        reg.register(
            "chat4all_outbox_relay_leadership_lost",
            "Times this instance found it no longer led the relay (lock connection lost or superseded)",
            m.leadership_lost.clone(),
        );
        m
    }

    /// A follower reports nothing about the outbox: only the leader's series are the truth.
    fn step_down(&self) {
        self.leader.set(0);
        self.paused.set(0);
        self.backlog.set(0);
        self.oldest_seconds.set(0.0);
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
    /// This message-service instance (recorded as the leader).
    pub instance: String,
    /// Set while paused: the partitions must be re-read before the next publish.
    pub was_paused: bool,
}

/// Why the relay stopped leading.
enum StepDown {
    Shutdown,
    Lost(String),
}

impl Relay {
    pub async fn run(mut self, shutdown: Shutdown) {
        loop {
            let Some(mut leadership) = Leadership::acquire(&self.pool, &self.instance, &shutdown).await else {
                break;
            };
            tracing::info!(epoch = leadership.epoch, "outbox relay leading");
            self.metrics.leader.set(1);
            // A new leader re-reads the partitions first: they may have changed meanwhile.
            self.was_paused = true;
            let why = self.lead(&mut leadership, &shutdown).await;
            self.metrics.step_down();
            match why {
                StepDown::Shutdown => {
                    leadership.release().await;
                    break;
                }
                StepDown::Lost(reason) => {
                    self.metrics.leadership_lost.inc();
                    tracing::warn!(epoch = leadership.epoch, %reason, "outbox relay lost its leadership; stepping down");
                }
            }
        }
        self.producer.flush(Duration::from_secs(5));
    }

    async fn lead(&mut self, leadership: &mut Leadership, shutdown: &Shutdown) -> StepDown {
        let mut last_backlog = std::time::Instant::now() - Duration::from_secs(60);
        let mut vacuum = Vacuum::new();
        while !shutdown.is_triggered() {
            let paused = match leadership.check().await {
                Ok(Check::Lead { paused }) => paused,
                Ok(Check::Superseded(by)) => return StepDown::Lost(format!("superseded by epoch {by}")),
                Err(e) => return StepDown::Lost(format!("lock connection failed: {e}")),
            };
            self.metrics.paused.set(paused as i64);
            if last_backlog.elapsed() > Duration::from_secs(2) {
                self.refresh_backlog().await;
                last_backlog = std::time::Instant::now();
            }
            if vacuum.due() {
                vacuum.run(&self.pool).await;
            }
            let idle = if paused {
                self.was_paused = true;
                true
            } else {
                match self.round(leadership.epoch).await {
                    Ok(Round::Published(n)) => {
                        vacuum.deleted += n as u64;
                        n == 0
                    }
                    Ok(Round::Fenced) => return StepDown::Lost("fenced: a newer leader holds the epoch".into()),
                    Err(e) => {
                        self.metrics.errors.inc();
                        tracing::warn!(error = format!("{e:#}"), "outbox publish failed; retrying");
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                            _ = shutdown.wait() => {}
                        }
                        false
                    }
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
        StepDown::Shutdown
    }

    async fn refresh_backlog(&self) {
        if let Ok(b) = backlog(&self.pool).await {
            self.metrics.backlog.set(b.rows);
            self.metrics.oldest_seconds.set(b.oldest_seconds);
        }
    }

    /// Publishes one batch as the leader of `epoch`.
    async fn round(&mut self, epoch: i64) -> anyhow::Result<Round> {
        let rows = sqlx::query("SELECT id, topic, key, payload, request_id FROM outbox ORDER BY id LIMIT $1")
            .bind(self.batch)
            .fetch_all(&self.pool)
            .await?;
        if rows.is_empty() {
            return Ok(Round::Published(0));
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
            if !delete_published(&self.pool, &ids, epoch).await? {
                return Ok(Round::Fenced);
            }
            self.metrics.published.inc_by(acked as u64);
        }
        match err {
            Some(e) => Err(e),
            None => Ok(Round::Published(acked)),
        }
    }
}

enum Round {
    Published(usize),
    /// A newer leader's epoch is current: nothing was deleted.
    Fenced,
}

/// Deletes the published rows, only while `epoch` is still the current leader's (one statement,
/// so a superseded leader can never delete rows the new leader has yet to publish). False when
/// fenced.
async fn delete_published(pool: &PgPool, ids: &[i64], epoch: i64) -> Result<bool, sqlx::Error> {
    let current: Option<i64> = sqlx::query_scalar(
        "WITH fence AS (SELECT leader_epoch FROM relay_control WHERE id = 1 AND leader_epoch = $2 FOR SHARE),
              gone AS (DELETE FROM outbox WHERE id = ANY($1) AND EXISTS (SELECT 1 FROM fence) RETURNING 1)
         SELECT leader_epoch FROM fence",
    )
    .bind(ids)
    .bind(epoch)
    .fetch_optional(pool)
    .await?;
    Ok(current.is_some())
}

/// What waits in the outbox.
pub struct Backlog {
    pub rows: i64,
    /// Age of the oldest row (0 when empty).
    pub oldest_seconds: f64,
}

/// The outbox's rows and the age of its oldest one (the relay's gauges and the admin view).
pub async fn backlog(pool: &PgPool) -> Result<Backlog, sqlx::Error> {
    let row = sqlx::query(
        "SELECT (SELECT count(*) FROM outbox) AS n,
                COALESCE(EXTRACT(EPOCH FROM now() - (SELECT created_at FROM outbox ORDER BY id LIMIT 1)), 0)::float8 AS oldest",
    )
    .fetch_one(pool)
    .await?;
    Ok(Backlog { rows: row.get("n"), oldest_seconds: row.get::<f64, _>("oldest").max(0.0) })
}

/// The relay's leadership: a session advisory lock held on a connection of its own (taken out of
/// the pool), plus an epoch in `relay_control` that every new leader bumps.
///
/// The lock alone is not enough: if PostgreSQL ends the lock's session (a restart, an operator's
/// `pg_terminate_backend`, a network cut), another instance takes the lock while this one still
/// believes it leads. So every round re-checks on the lock's own connection (a failed query means
/// the lock is gone) and compares the epoch; and deletes are fenced by the epoch.
struct Leadership {
    conn: sqlx::PgConnection,
    epoch: i64,
}

enum Check {
    Lead { paused: bool },
    Superseded(i64),
}

impl Leadership {
    /// Waits until this instance leads; `None` on shutdown.
    async fn acquire(pool: &PgPool, instance: &str, shutdown: &Shutdown) -> Option<Self> {
        loop {
            if shutdown.is_triggered() {
                return None;
            }
            match Self::try_acquire(pool, instance).await {
                Ok(Some(l)) => return Some(l),
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "outbox relay cannot reach PostgreSQL"),
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.wait() => {}
            }
        }
    }

    async fn try_acquire(pool: &PgPool, instance: &str) -> Result<Option<Self>, sqlx::Error> {
        let mut conn = pool.acquire().await?.detach();
        let got: bool =
            sqlx::query_scalar("SELECT pg_try_advisory_lock($1)").bind(LEADER_LOCK).fetch_one(&mut conn).await?;
        if !got {
            let _ = sqlx::Connection::close(conn).await;
            return Ok(None);
        }
        let epoch: i64 = sqlx::query_scalar(
            "UPDATE relay_control SET leader = $1, leader_since = now(), leader_epoch = leader_epoch + 1, updated_at = now()
              WHERE id = 1 RETURNING leader_epoch",
        )
        .bind(instance)
        .fetch_one(&mut conn)
        .await?;
        Ok(Some(Self { conn, epoch }))
    }

    /// Whether this instance still leads, and whether a pause lease is in force.
    async fn check(&mut self) -> Result<Check, sqlx::Error> {
        let row = sqlx::query(
            "SELECT leader_epoch, COALESCE(pause_until > now(), false) AS paused FROM relay_control WHERE id = 1",
        )
        .fetch_one(&mut self.conn)
        .await?;
        let epoch: i64 = row.get("leader_epoch");
        if epoch != self.epoch {
            return Ok(Check::Superseded(epoch));
        }
        Ok(Check::Lead { paused: row.get("paused") })
    }

    /// Steps down on shutdown: clears the leader (if still ours) and unlocks at once, so a
    /// successor takes over without waiting for the session to end.
    async fn release(mut self) {
        let _ = sqlx::query(
            "UPDATE relay_control SET leader = NULL, leader_since = NULL WHERE id = 1 AND leader_epoch = $1",
        )
        .bind(self.epoch)
        .execute(&mut self.conn)
        .await;
        let _ = sqlx::query("SELECT pg_advisory_unlock($1)").bind(LEADER_LOCK).execute(&mut self.conn).await;
        let _ = sqlx::Connection::close(self.conn).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    async fn outbox_row(pool: &PgPool) -> i64 {
        sqlx::query_scalar("INSERT INTO outbox (topic, key, payload) VALUES ('t', 'k', 'p') RETURNING id")
            .fetch_one(pool)
            .await
            .unwrap()
    }

    /// One test, not several: the leader lock and `relay_control` are one per database.
    #[tokio::test]
    async fn leadership_is_exclusive_rechecked_and_fenced() {
        let pool = crate::db::test_pool("relay_leader").await;
        let mut a = Leadership::try_acquire(&pool, "a").await.unwrap().expect("a leads");
        assert!(Leadership::try_acquire(&pool, "b").await.unwrap().is_none(), "one leader at a time");
        assert!(matches!(a.check().await.unwrap(), Check::Lead { .. }));

        // Superseded while its connection lives (another epoch is current): the check says so,
        // and its deletes are fenced.
        let row = outbox_row(&pool).await;
        sqlx::query("UPDATE relay_control SET leader_epoch = leader_epoch + 1").execute(&pool).await.unwrap();
        assert!(matches!(a.check().await.unwrap(), Check::Superseded(_)));
        assert!(!delete_published(&pool, &[row], a.epoch).await.unwrap(), "a superseded leader is fenced");
        let left: i64 =
            sqlx::query_scalar("SELECT count(*) FROM outbox WHERE id = $1").bind(row).fetch_one(&pool).await.unwrap();
        assert_eq!(left, 1, "and deletes nothing");
        let current: i64 = sqlx::query_scalar("SELECT leader_epoch FROM relay_control").fetch_one(&pool).await.unwrap();
        assert!(delete_published(&pool, &[row], current).await.unwrap());

        // Its session ended by PostgreSQL: the lock goes to the next instance at once, and the old
        // leader's next check fails instead of publishing on.
        let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&mut a.conn).await.unwrap();
        sqlx::query("SELECT pg_terminate_backend($1)").bind(pid).execute(&pool).await.unwrap();
        let mut b = None;
        for _ in 0..50 {
            b = Leadership::try_acquire(&pool, "b").await.unwrap();
            if b.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let b = b.expect("b leads once a's session is gone");
        assert!(b.epoch > a.epoch);
        assert!(a.check().await.is_err(), "the old leader learns it lost the lock");
        b.release().await;
        let leader: Option<String> =
            sqlx::query_scalar("SELECT leader FROM relay_control").fetch_one(&pool).await.unwrap();
        assert_eq!(leader, None, "a released leadership leaves no leader named");
    }
}
