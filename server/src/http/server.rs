use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use prometheus_client::registry::Registry;
use serde_json::json;

use super::Health;
use crate::metrics::{HttpLabels, HttpMetrics};
use crate::shutdown::Shutdown;

/// What /health and /metrics need.
#[derive(Clone)]
pub struct OpsState {
    pub service: String,
    pub instance: String,
    pub started: Instant,
    pub registry: Arc<Registry>,
    pub health: Health,
}

impl OpsState {
    /// The ops endpoints' state of a service starting now.
    pub fn new(common: &crate::config::Common, registry: Registry, health: Health) -> Self {
        Self {
            service: common.service.clone(),
            instance: common.instance.clone(),
            started: Instant::now(),
            registry: Arc::new(registry),
            health,
        }
    }
}

/// `/health` (readiness with dependency checks), `/health/live` and `/metrics`.
pub fn ops_routes(state: OpsState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/health/live", get(live))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn health(State(s): State<OpsState>) -> Response {
    let (ready, mut body) = s.health.run().await;
    body["service"] = json!(s.service);
    body["instance"] = json!(s.instance);
    body["pid"] = json!(std::process::id());
    body["uptimeSeconds"] = json!(s.started.elapsed().as_secs());
    let code = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, Json(body)).into_response()
}

async fn live(State(s): State<OpsState>) -> Response {
    Json(json!({"status": "up", "instance": s.instance})).into_response()
}

async fn metrics(State(s): State<OpsState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        crate::metrics::encode(&s.registry),
    )
        .into_response()
}

/// Middleware recording request count and latency by route template.
pub async fn track_metrics(State(m): State<HttpMetrics>, req: Request, next: Next) -> Response {
    let route =
        req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "unmatched".into());
    let method = req.method().as_str().to_owned();
    let start = Instant::now();
    let resp = next.run(req).await;
    let labels = HttpLabels { method, route, status: resp.status().as_u16() };
    m.requests.get_or_create(&labels).inc();
    m.duration.get_or_create(&labels).observe(start.elapsed().as_secs_f64());
    resp
}

/// Binds `listen` and serves `app` until shutdown.
pub async fn serve(listen: SocketAddr, app: Router, shutdown: Shutdown) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
    tracing::info!(%listen, "listening");
    axum::serve(listener, app).with_graceful_shutdown(async move { shutdown.wait().await }).await.context("HTTP server")
}
