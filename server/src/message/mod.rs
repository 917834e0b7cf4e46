//! message-service: the API that accepts messages, the outbox relay, and the status consumer.

pub mod admin;
pub mod api;
pub mod dlq;
pub mod facts;
pub mod freshness;
pub use chat4all_contract::message as domain;
pub mod outbox;
pub mod status;
pub mod store;
pub mod writer;

use std::sync::Arc;

use tokio::sync::Notify;

use crate::config::{topics, Common, MessageArgs};
use crate::http::{self, Health, OpsState};
use crate::kafka::{self, ConsumerSpec, ConsumerTuning, GroupMember, Producer, TopicSpec};
use crate::metrics::{HttpMetrics, KafkaMetrics};
use crate::shutdown::Shutdown;

pub async fn run(common: Common, args: MessageArgs, shutdown: Shutdown) -> anyhow::Result<()> {
    let pool = crate::db::connect_and_migrate(&common.database_url, 24).await?;
    let producer = Producer::new(&common.kafka_bootstrap, &common.instance)?;
    // Topics are created in the background: the API must accept messages (into the outbox)
    // even while the broker is still starting or down. Readiness waits for them, so that a stack
    // reported up can carry messages end to end (a cluster registers its brokers one by one and
    // refuses replication factor 3 until the third has).
    let topics_state: Arc<std::sync::Mutex<Result<(), String>>> =
        Arc::new(std::sync::Mutex::new(Err("not created yet".into())));
    {
        let bootstrap = common.kafka_bootstrap.clone();
        let instance = common.instance.clone();
        let mut specs = vec![
            TopicSpec { name: topics::CHAT_EVENTS.into(), partitions: args.chat_events_partitions },
            TopicSpec { name: topics::STATUS_UPDATES.into(), partitions: 3 },
            TopicSpec { name: topics::DEAD_LETTERS.into(), partitions: 1 },
        ];
        specs.extend(
            crate::channel::Channel::ALL
                .map(|c| TopicSpec { name: topics::deliveries(c), partitions: args.deliveries_partitions }),
        );
        let shutdown = shutdown.clone();
        let state = topics_state.clone();
        tokio::spawn(async move {
            let create = || async {
                let r = kafka::ensure_topics(&bootstrap, &instance, &specs).await.map_err(|e| format!("{e:#}"));
                *state.lock().expect("topics state") = r.clone();
                r
            };
            let _ = crate::retry::until_ok(&shutdown, "creating topics", create).await;
        });
    }

    let mut registry = crate::metrics::registry(&common);
    let http_metrics = HttpMetrics::register(&mut registry);
    let relay_metrics = outbox::RelayMetrics::register(&mut registry);
    let status_metrics = status::StatusMetrics::register(&mut registry);
    let writer_metrics = writer::WriterMetrics::register(&mut registry);
    let freshness_metrics = freshness::FreshnessMetrics::register(&mut registry);
    let kafka_metrics = KafkaMetrics::register(&mut registry);

    let wakeup = Arc::new(Notify::new());
    let relay = outbox::Relay {
        pool: pool.clone(),
        producer: producer.clone(),
        batch: args.relay_batch,
        wakeup: wakeup.clone(),
        metrics: relay_metrics,
        instance: common.instance.clone(),
        // Re-read the partitions before the first publish too (they may have changed while
        // this instance was down).
        was_paused: true,
    };
    let relay_task = tokio::spawn(relay.run(shutdown.clone()));

    // Receipts are applied by whichever message-service holds the partition; a failover of
    // this group costs seconds of status lag, not messages, so it keeps Kafka-like timeouts.
    let status_tuning = ConsumerTuning {
        session_timeout_ms: 10_000,
        heartbeat_interval_ms: 3_000,
        assignment_strategy: "cooperative-sticky".into(),
        metadata_refresh_ms: 10_000,
    };
    let member = GroupMember::join(
        &ConsumerSpec {
            bootstrap: &common.kafka_bootstrap,
            group: topics::STATUS_GROUP,
            instance: &common.instance,
            topics: &[topics::STATUS_UPDATES],
            protocol: common.group_protocol,
            tuning: &status_tuning,
        },
        common.redis_url.clone(),
        kafka_metrics,
    )?;
    let applier = status::StatusApplier { pool: pool.clone(), metrics: status_metrics };
    let status_shutdown = shutdown.clone();
    let status_task = tokio::spawn(async move { member.run(&applier, status::BATCHING, &status_shutdown).await });

    let tracker = freshness::Tracker::default();
    let freshness_task =
        tokio::spawn(freshness::run(pool.clone(), tracker.clone(), freshness_metrics, shutdown.clone()));

    let topics_check: http::Check = Arc::new(move || {
        let r = topics_state.lock().expect("topics state").clone();
        Box::pin(async move { r })
    });
    let health = Health::default().postgres(pool.clone()).kafka(producer.clone()).with("topics", topics_check);
    let ops = OpsState::new(&common, registry, health);
    let writer = writer::Writer::spawn(pool.clone(), 2, args.insert_batch, writer_metrics);
    let app = api::routes(api::ApiState { pool: pool.clone(), writer, relay_wakeup: wakeup.clone() })
        .merge(dlq::routes(pool.clone(), wakeup, tracker.clone(), &common.admin_token))
        .merge(admin::routes(pool, tracker, &common.admin_token))
        .merge(http::ops_routes(ops))
        .layer(axum::middleware::from_fn_with_state(http_metrics, http::track_metrics));
    http::serve(common.listen, app, shutdown.clone()).await?;
    shutdown.trigger();
    let _ = relay_task.await;
    let _ = status_task.await;
    let _ = freshness_task.await;
    Ok(())
}
