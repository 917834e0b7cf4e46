//! Channel connectors (WhatsApp, Telegram, Instagram): deliver to the channel's provider over
//! HTTP (`chat4all_contract::provider`), exactly once in effect thanks to the delivery ledger and
//! the idempotency key, and report receipts (SENT, DELIVERED) on `status-updates`.

mod client;
mod deliver;
mod ledger;
pub use chat4all_contract::connector as wire;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use chrono::Utc;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

pub use self::client::{CallError, ProviderClient};
use self::deliver::{DeliverError, Deliverer};
pub use self::ledger::idempotency_key;
use self::ledger::Ledger;
use self::wire::{DeliveryRequest, DeliveryResponse, DELIVERIES_PATH};
use crate::config::{topics, Common, ConnectorArgs};
use crate::events::{DeliveryStatus, ReceiptBatch, StatusUpdate};
use crate::http::{self, AppError, Health, OpsState};
use crate::kafka::Producer;
use crate::metrics::{ChannelResultLabels, HttpMetrics};
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
    let state = ConnectorState {
        deliverer: Arc::new(deliverer),
        instance: common.instance.clone(),
        producer: producer.clone(),
        deliveries,
    };
    let ops = OpsState::new(&common, registry, Health::default().postgres(pool).kafka(producer.clone()));
    let app = Router::new()
        .route(DELIVERIES_PATH, post(deliver))
        .with_state(state)
        .merge(http::ops_routes(ops))
        .layer(axum::middleware::from_fn_with_state(http_metrics, http::track_metrics));
    http::serve(common.listen, app, shutdown).await?;
    producer.flush(Duration::from_secs(5));
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
    let now = Utc::now();
    let mut updates = Vec::with_capacity(req.items.len() * 2);
    for (item, outcome) in req.items.iter().zip(&outcomes) {
        if !outcome.delivered() {
            continue;
        }
        for status in [DeliveryStatus::Sent, DeliveryStatus::Delivered] {
            updates.push(StatusUpdate {
                message_id: item.message_id,
                recipient_id: item.recipient_id.clone(),
                channel: item.channel,
                status,
                at: now,
                reason: None,
                source: s.instance.clone(),
            });
        }
    }
    if !updates.is_empty() {
        let payload = serde_json::to_vec(&ReceiptBatch { updates }).map_err(AppError::internal)?;
        if let Err(e) = s.producer.send(topics::STATUS_UPDATES, &s.instance, &payload).await {
            tracing::warn!(error = format!("{e:#}"), "publishing receipts failed");
            // The ledger has the sends; the router retries and we re-send receipts.
            return Err(AppError::new(StatusCode::SERVICE_UNAVAILABLE, "receipts could not be published"));
        }
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
