//! router-service: a member of consumer group `router-service` on chat-events. Hands each
//! recipient to its channel's topic `deliveries-<channel>` (the connectors' consumer groups
//! deliver from there); stores offsets once the hand-offs are acknowledged and recorded, without
//! waiting for any connector; reports every rebalance on the ops channel.

mod metrics;
mod process;
mod store;

use std::time::Duration;

use crate::config::{topics, Common, RouterArgs};
use crate::events::{RebalanceEvent, RebalanceKind};
use crate::http::{self, Health, OpsState};
use crate::kafka::{BatchConsumer, ConsumerSpec, Producer};
use crate::metrics::{HttpMetrics, KafkaMetrics};
use crate::shutdown::Shutdown;

pub use process::Router;

pub async fn run(common: Common, args: RouterArgs, shutdown: Shutdown) -> anyhow::Result<()> {
    let pool = crate::db::connect_and_migrate(&common.database_url, 8).await?;
    let producer = Producer::new(&common.kafka_bootstrap, &common.instance)?;
    let mut registry = crate::metrics::registry(&common);
    let http_metrics = HttpMetrics::register(&mut registry);
    let kafka_metrics = KafkaMetrics::register(&mut registry);
    let router_metrics = metrics::RouterMetrics::register(&mut registry);

    // The consumer context reports rebalances; a clone of the sender carries the final `left`.
    let (rebalance_tx, rebalances) = tokio::sync::mpsc::unbounded_channel::<RebalanceEvent>();
    let consumer = BatchConsumer::subscribe(
        &ConsumerSpec {
            bootstrap: &common.kafka_bootstrap,
            group: topics::ROUTER_GROUP,
            instance: &common.instance,
            topics: &[topics::CHAT_EVENTS],
            protocol: common.group_protocol,
            session_timeout_ms: args.consumer.session_timeout_ms,
            heartbeat_interval_ms: args.consumer.heartbeat_interval_ms,
            assignment_strategy: &args.consumer.assignment_strategy,
            metadata_refresh_ms: args.consumer.metadata_refresh_ms,
        },
        rebalance_tx.clone(),
    )?;
    let reporter = tokio::spawn(crate::ops::run_reporter(common.redis_url.clone(), rebalances, kafka_metrics));

    let ops = OpsState::new(&common, registry, Health::default().postgres(pool.clone()).kafka(producer.clone()));
    let app = http::ops_routes(ops).layer(axum::middleware::from_fn_with_state(http_metrics, http::track_metrics));
    let server = tokio::spawn(http::serve(common.listen, app, shutdown.clone()));

    let router =
        Router { pool, producer: producer.clone(), args, instance: common.instance.clone(), metrics: router_metrics };
    while !shutdown.is_triggered() {
        let batch = consumer.next_batch(router.args.batch, Duration::from_millis(5), &shutdown).await;
        if batch.is_empty() {
            continue;
        }
        if router.route_batch(&batch, &shutdown).await.is_err() {
            break;
        }
        if let Err(e) = consumer.store(&batch) {
            tracing::warn!(error = format!("{e:#}"), "offsets not stored; the next owner re-routes (dedup'd)");
        }
    }
    tracing::info!("leaving the consumer group");
    consumer.close();
    let _ = rebalance_tx.send(RebalanceEvent {
        at: chrono::Utc::now(),
        group: topics::ROUTER_GROUP.into(),
        instance: common.instance.clone(),
        member_id: String::new(),
        kind: RebalanceKind::Left,
        partitions: Vec::new(),
        assignment: Vec::new(),
    });
    drop(rebalance_tx);
    let _ = tokio::time::timeout(Duration::from_secs(3), reporter).await;
    producer.flush(Duration::from_secs(5));
    let _ = server.await;
    Ok(())
}
