//! The supervisor's control API: loopback only, bearer token from `control.token` (mode 0600).

use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Arc;

use anyhow::Context;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::Notify;

use crate::error::UsageError;
use crate::paths::DataDir;
use crate::runtime::supervisor::Supervisor;
use crate::runtime::ScaleRequest;
use crate::sampler::Observations;
use crate::spec::ServiceKind;

/// Written to `supervisor.json` by a running supervisor.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SupervisorFile {
    pub pid: u32,
    pub control_url: String,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub kafka_bootstrap: String,
    pub api_url: String,
    /// PostgreSQL and Redis of this stack, so that every client reads the same ones.
    #[serde(default)]
    pub database_url: Option<String>,
    #[serde(default)]
    pub redis_url: Option<String>,
    /// The Prometheus exporter served by the supervisor (`/metrics`), when it could bind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exporter_url: Option<String>,
    /// The api-gateway, the public entry (API key required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_url: Option<String>,
    /// The group protocol the stack's consumers speak (`classic` or `consumer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_protocol: Option<String>,
    /// The simulated providers by channel label (`whatsapp` -> `http://127.0.0.1:8075`).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub provider_urls: std::collections::BTreeMap<String, String>,
}

/// A fresh random token, written with mode 0600.
pub fn write_token(data: &DataDir) -> anyhow::Result<String> {
    use rand::Rng;
    use std::io::Write;
    let token: String =
        rand::thread_rng().sample_iter(&rand::distributions::Alphanumeric).take(40).map(char::from).collect();
    let path = data.token_file();
    let _ = std::fs::remove_file(&path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(token.as_bytes())?;
    Ok(token)
}

#[derive(Clone)]
struct ApiState {
    sup: Arc<Supervisor>,
    token: Arc<String>,
    shutdown: Arc<Notify>,
    obs: Observations,
}

struct ApiError(anyhow::Error);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = if self.0.downcast_ref::<UsageError>().is_some() {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
        (code, Json(json!({"error": format!("{:#}", self.0)}))).into_response()
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        Self(e)
    }
}

type ApiResult = Result<Response, ApiError>;

/// Binds the control API on loopback; `shutdown` is notified by `POST /v1/shutdown`.
pub async fn serve(
    sup: Arc<Supervisor>,
    token: String,
    port: u16,
    shutdown: Arc<Notify>,
    obs: Observations,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("binding the control API on 127.0.0.1:{port}"))?;
    let addr = listener.local_addr()?;
    let state = ApiState { sup, token: Arc::new(token), shutdown, obs };
    let app = Router::new()
        .route("/v1/instances", get(list))
        .route("/v1/instances/{name}/{action}", post(act))
        .route("/v1/instances/{name}/logs", get(logs))
        .route("/v1/scale", post(scale))
        .route("/v1/actions", get(actions).post(record_action))
        .route("/v1/lag/history", get(lag_history))
        .route("/v1/shutdown", post(shutdown_handler))
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth))
        .with_state(state);
    let handle = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "control API stopped");
        }
    });
    Ok((addr, handle))
}

async fn auth(State(s): State<ApiState>, req: Request, next: Next) -> Response {
    let ok = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| constant_time_eq(t.as_bytes(), s.token.as_bytes()));
    if !ok {
        return (StatusCode::UNAUTHORIZED, Json(json!({"error": "missing or wrong bearer token"}))).into_response();
    }
    next.run(req).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn list(State(s): State<ApiState>) -> ApiResult {
    Ok(Json(s.sup.list()).into_response())
}

/// The supervisor's offset history, so that a one-shot `lag` has a window to judge by.
#[derive(Deserialize)]
struct HistoryQuery {
    /// Only this group's samples (a describe of one group on a cluster of many).
    group: Option<String>,
}

async fn lag_history(State(s): State<ApiState>, Query(q): Query<HistoryQuery>) -> ApiResult {
    let history = s.obs.history();
    Ok(match q.group {
        Some(g) => Json(history.only(&[g])).into_response(),
        None => Json(history).into_response(),
    })
}

#[derive(Deserialize)]
struct RecordAction {
    action: String,
    target: String,
    #[serde(default)]
    detail: String,
}

/// Records an action another client carried out (a repartition), for cause attribution.
async fn record_action(State(s): State<ApiState>, Json(a): Json<RecordAction>) -> ApiResult {
    if a.action.is_empty() || a.action.len() > 64 || a.target.len() > 256 || a.detail.len() > 1024 {
        return Err(crate::error::usage("action must be 1-64 characters, target at most 256, detail 1024").into());
    }
    s.sup.record(&a.action, &a.target, a.detail);
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn actions(State(s): State<ApiState>) -> ApiResult {
    Ok(Json(s.sup.actions()).into_response())
}

async fn act(State(s): State<ApiState>, Path((name, action)): Path<(String, String)>) -> ApiResult {
    let message = match action.as_str() {
        "kill" => s.sup.kill(&name).await?,
        "stop" => s.sup.stop(&name).await?,
        "start" => s.sup.start_named(&name).await?,
        "restart" => s.sup.restart(&name).await?,
        other => return Err(crate::error::usage(format!("unknown action {other:?}")).into()),
    };
    Ok(Json(json!({"message": message})).into_response())
}

#[derive(Deserialize)]
struct LogsQuery {
    lines: Option<usize>,
}

async fn logs(State(s): State<ApiState>, Path(name): Path<String>, Query(q): Query<LogsQuery>) -> ApiResult {
    Ok(s.sup.logs(&name, q.lines.unwrap_or(100))?.into_response())
}

async fn scale(State(s): State<ApiState>, Json(req): Json<ScaleRequest>) -> ApiResult {
    let kind = ServiceKind::parse(&req.service)
        .ok_or_else(|| crate::error::usage(format!("unknown service {:?}", req.service)))?;
    Ok(Json(s.sup.scale(kind, req.replicas).await?).into_response())
}

async fn shutdown_handler(State(s): State<ApiState>) -> ApiResult {
    s.shutdown.notify_one();
    Ok(Json(json!({"message": "shutting down"})).into_response())
}
