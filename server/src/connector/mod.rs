//! Channel connectors (WhatsApp, Telegram, Instagram): each channel's connectors are the
//! consumer group `<channel>-connector` on `deliveries-<channel>`, where the routers hand over
//! their recipients (`consume.rs`). They deliver to the channel's provider over HTTP
//! (`chat4all_contract::provider`), exactly once in effect thanks to the delivery ledger and the
//! idempotency key, report receipts (SENT, DELIVERED) and failures (FAILED) on `status-updates`,
//! and dead-letter what is out of attempts. `POST /v1/deliveries` delivers the same way on request.

mod batch;
mod client;
mod consume;
mod deliver;
mod ledger;
mod receipts;
pub use chat4all_contract::connector as wire;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

pub use self::client::{CallError, ProviderClient};
use self::deliver::{DeliverError, Deliverer};
pub use self::ledger::idempotency_key;
use self::ledger::Ledger;
use self::wire::{DeliveryRequest, DeliveryResponse, DELIVERIES_PATH};
use crate::config::{topics, Common, ConnectorArgs};
use crate::http::{self, AppError, Health, OpsState};
use crate::kafka::{Batching, ConsumerSpec, GroupMember, Producer};
use crate::metrics::{ChannelResultLabels, HttpMetrics, KafkaMetrics};
use crate::shutdown::Shutdown;

#[derive(Clone)]
struct ConnectorState {
    deliverer: Arc<Deliverer>,
    instance: String,
    producer: Producer,
    deliveries: Family<ChannelResultLabels, Counter>,
}

pub async fn run(common: Common, args: ConnectorArgs, shutdown: Shutdown) -> anyhow::Result<()> {
    let pool = crate::db::connect_and_migrate(&common.database_url, 8).await?;
    let producer = Producer::new(&common.kafka_bootstrap, &common.instance)?;
    let mut registry = crate::metrics::registry(&common);
    let http_metrics = HttpMetrics::register(&mut registry);
    let deliveries = Family::<ChannelResultLabels, Counter>::default();
    registry.register(
        "chat4all_connector_deliveries",
        "Deliveries by channel and result (sent, duplicate, failed, held, unavailable)",
        deliveries.clone(),
    );
    let unknown_resends = Counter::default();
    registry.register(
        "chat4all_connector_unknown_outcome_resends",
        "Provider sends repeated after an attempt whose outcome was unknown (timeout, reset, dead claimer): \
         harmless with idempotency keys, the one duplicate a provider without keys could see",
        unknown_resends.clone(),
    );
    let timeout = Duration::from_millis(args.provider_timeout_ms);
    let provider_url = args.provider_url();
    if args.unsafe_no_ledger || args.unsafe_no_idempotency_key {
        tracing::warn!(
            no_ledger = args.unsafe_no_ledger,
            no_idempotency_key = args.unsafe_no_idempotency_key,
            "UNSAFE test-only delivery settings: duplicates are possible"
        );
    }
    tracing::info!(provider = %provider_url, "delivering to the provider");
    let deliverer = Deliverer {
        channel: args.channel,
        client: ProviderClient::new(&provider_url, timeout)?,
        ledger: (!args.unsafe_no_ledger).then(|| Ledger {
            pool: pool.clone(),
            channel: args.channel,
            instance: common.instance.clone(),
            stale_after: timeout + Duration::from_secs(1) + Duration::from_millis(args.claim_margin_ms),
        }),
        send_keys: !args.unsafe_no_idempotency_key,
        retries: args.provider_retries,
        retry_backoff: Duration::from_millis(100),
        unknown_resends,
    };
    let deliverer = Arc::new(deliverer);
    let state = ConnectorState {
        deliverer: deliverer.clone(),
        instance: common.instance.clone(),
        producer: producer.clone(),
        deliveries: deliveries.clone(),
    };
    let kafka_metrics = KafkaMetrics::register(&mut registry);
    let pipeline_metrics = consume::PipelineMetrics::register(&mut registry);
    let dead_letters = crate::dead_letters::DeadLetters {
        producer: producer.clone(),
        instance: common.instance.clone(),
        counter: pipeline_metrics.dead_lettered.clone(),
    };
    let pipeline = consume::Pipeline {
        deliverer,
        producer: producer.clone(),
        instance: common.instance.clone(),
        attempts: args.attempts.max(1),
        unordered: args.unsafe_no_holdback,
        deliveries,
        metrics: pipeline_metrics,
        dead_letters,
    };
    if args.unsafe_no_holdback {
        tracing::warn!("UNSAFE test-only setting: no hold-back, a rejection can reorder a conversation");
    }
    let ops = OpsState::new(&common, registry, Health::default().postgres(pool).kafka(producer.clone()));
    let app = Router::new()
        .route(DELIVERIES_PATH, post(deliver))
        .with_state(state)
        .merge(http::ops_routes(ops))
        .layer(axum::middleware::from_fn_with_state(http_metrics, http::track_metrics));
    let server = tokio::spawn(http::serve(common.listen, app, shutdown.clone()));

    let group = topics::connector_group(args.channel);
    let topic = topics::deliveries(args.channel);
    let member = GroupMember::join(
        &ConsumerSpec {
            bootstrap: &common.kafka_bootstrap,
            group,
            instance: &common.instance,
            topics: &[topic.as_str()],
            protocol: common.group_protocol,
            tuning: &args.consumer,
        },
        common.redis_url.clone(),
        kafka_metrics,
    )?;
    tracing::info!(%topic, group, "delivering from the channel's topic");
    let batching = Batching { max: args.batch, linger: Duration::from_millis(5) };
    member.run(&pipeline, batching, &shutdown).await;
    producer.flush(Duration::from_secs(5));
    let _ = server.await;
    Ok(())
}

async fn deliver(
    State(s): State<ConnectorState>,
    body: Result<Json<DeliveryRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<DeliveryResponse>, AppError> {
    let Json(req) = body.map_err(|e| AppError::bad_request(e.body_text(), None))?;
    let channel = s.deliverer.channel;
    if let Some(bad) = req.items.iter().find(|i| i.channel != channel) {
        return Err(AppError::bad_request(
            format!("this connector delivers {channel} only, got {}", bad.channel),
            Some("items.channel"),
        ));
    }
    // The work runs on a task of its own: a caller that goes away mid-request (a router killed
    // during the call) must not cancel it between the ledger's claim and its record, or the
    // claim would hold the next router's retry back until it is presumed dead (seconds).
    tokio::spawn(settle(s, req)).await.map_err(|e| AppError::internal(format!("delivery task: {e}")))?
}

/// Delivers `req`'s items, publishes their receipts, and answers one result per item.
async fn settle(s: ConnectorState, req: DeliveryRequest) -> Result<Json<DeliveryResponse>, AppError> {
    let channel = s.deliverer.channel;
    let outcomes = s.deliverer.deliver(&req.items, req.unordered).await.map_err(|e| match e {
        DeliverError::Ledger(e) => AppError::from(e),
    })?;
    // Receipts for everything the provider has (re-sent for duplicates: a crash between the
    // send and the receipt must not leave a delivery PENDING forever).
    if let Err(e) = receipts::publish_delivered(&s.producer, &s.instance, &req.items, &outcomes).await {
        tracing::warn!(error = format!("{e:#}"), "publishing receipts failed");
        // The ledger has the sends; asked again, we answer from it and re-send receipts.
        return Err(AppError::new(StatusCode::SERVICE_UNAVAILABLE, "receipts could not be published"));
    }
    let label = channel.label();
    let mut results = Vec::with_capacity(outcomes.len());
    for (item, outcome) in req.items.iter().zip(&outcomes) {
        s.deliveries
            .get_or_create(&ChannelResultLabels { channel: label.into(), result: outcome.label().into() })
            .inc();
        results.push(outcome.to_result(item));
    }
    Ok(Json(DeliveryResponse { results }))
}
