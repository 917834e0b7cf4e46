//! Channel connectors (WhatsApp, Telegram, Instagram): deliver through a simulated provider and
//! report receipts (SENT, DELIVERED) on `status-updates`.

mod provider;
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

use self::provider::{Outcome, Provider};
use self::wire::{DeliveryRequest, DeliveryResponse, DELIVERIES_PATH};
use crate::config::{topics, Common, ConnectorArgs};
use crate::events::{DeliveryStatus, ReceiptBatch, StatusUpdate};
use crate::http::{self, AppError, Health, OpsState};
use crate::kafka::Producer;
use crate::metrics::{ChannelResultLabels, HttpMetrics};
use crate::shutdown::Shutdown;

#[derive(Clone)]
struct ConnectorState {
    provider: Arc<Provider>,
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
        "Provider deliveries by channel and result (sent, duplicate, failed)",
        deliveries.clone(),
    );
    let state = ConnectorState {
        provider: Arc::new(Provider {
            pool: pool.clone(),
            channel: args.channel,
            instance: common.instance.clone(),
            latency: Duration::from_millis(args.latency_ms),
            failure_rate: args.failure_rate,
        }),
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
    if let Some(bad) = req.items.iter().find(|i| i.channel != s.provider.channel) {
        return Err(AppError::bad_request(
            format!("this connector delivers {} only, got {}", s.provider.channel, bad.channel),
            Some("items.channel"),
        ));
    }
    let outcomes = s.provider.send(&req.items).await?;
    // Receipts for everything the provider has (re-sent for duplicates: a crash between the
    // send and the receipt must not leave a delivery PENDING forever).
    let now = Utc::now();
    let mut updates = Vec::with_capacity(req.items.len() * 2);
    for (item, outcome) in req.items.iter().zip(&outcomes) {
        if matches!(outcome, Outcome::Failed(_)) {
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
                source: s.provider.instance.clone(),
            });
        }
    }
    if !updates.is_empty() {
        let payload = serde_json::to_vec(&ReceiptBatch { updates }).expect("receipts serialize");
        if let Err(e) = s.producer.send(topics::STATUS_UPDATES, &s.provider.instance, &payload).await {
            tracing::warn!(error = format!("{e:#}"), "publishing receipts failed");
            // The provider already has the messages; the router retries and we re-send receipts.
            return Err(AppError::new(StatusCode::SERVICE_UNAVAILABLE, "receipts could not be published"));
        }
    }
    let label = s.provider.channel.label();
    let mut results = Vec::with_capacity(outcomes.len());
    for (item, outcome) in req.items.iter().zip(&outcomes) {
        let result = match outcome {
            Outcome::Sent => "sent",
            Outcome::AlreadySent => "duplicate",
            Outcome::Failed(_) => "failed",
        };
        s.deliveries.get_or_create(&ChannelResultLabels { channel: label.into(), result: result.into() }).inc();
        results.push(outcome.to_result(item));
    }
    Ok(Json(DeliveryResponse { results }))
}
