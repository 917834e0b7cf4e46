//! router-service: a member of consumer group `router-service` on chat-events. Hands each
//! recipient to its channel's topic `deliveries-<channel>` (the connectors' consumer groups
//! deliver from there); stores offsets once the hand-offs are acknowledged and recorded, without
//! waiting for any connector; reports every rebalance on the ops channel.

mod metrics;
mod process;
pub(crate) mod store;

use std::time::Duration;

use crate::config::{topics, Common, RouterArgs};
use crate::http::{self, Health, OpsState};
use crate::kafka::{Batching, ConsumerSpec, GroupMember, Producer};
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

    let member = GroupMember::join(
        &ConsumerSpec {
            bootstrap: &common.kafka_bootstrap,
            group: topics::ROUTER_GROUP,
            instance: &common.instance,
            topics: &[topics::CHAT_EVENTS],
            protocol: common.group_protocol,
            tuning: &args.consumer,
        },
        common.redis_url.clone(),
        kafka_metrics,
    )?;

    let ops = OpsState::new(&common, registry, Health::default().postgres(pool.clone()).kafka(producer.clone()));
    let app = http::ops_routes(ops).layer(axum::middleware::from_fn_with_state(http_metrics, http::track_metrics));
    let server = tokio::spawn(http::serve(common.listen, app, shutdown.clone()));

    let batching = Batching { max: args.batch, linger: Duration::from_millis(5) };
    let dead_letters = crate::dead_letters::DeadLetters {
        producer: producer.clone(),
        instance: common.instance.clone(),
        counter: router_metrics.dead_lettered.clone(),
    };
    let router = Router {
        pool,
        producer: producer.clone(),
        args,
        instance: common.instance.clone(),
        metrics: router_metrics,
        dead_letters,
    };
    member.run(&router, batching, &shutdown).await;
    producer.flush(Duration::from_secs(5));
    let _ = server.await;
    Ok(())
}
