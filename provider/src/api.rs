//! The HTTP API: send, batch, lookup by key, faults, record, summary, `/health`, `/metrics`.
//!
//! A request goes: latency, then its request-level fault is drawn. Down / error: every item is
//! recorded `failed`, nothing done, 503 / 500. Otherwise the items are handled in order under
//! one lock ([`Store::apply`]), and the answer suffers the fault: timeout (answered after
//! `hangMs`), garbage (200, not JSON), reset (the body stream breaks after its first bytes).

use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chat4all_contract::channel::Channel;
use chat4all_contract::provider::{
    BatchRequest, BatchResponse, Faults, RecordResponse, SendRequest, SendResult, SendStatus, BATCH_PATH, FAULTS_PATH,
    IDEMPOTENCY_KEY_HEADER, LOOKUP_PATH, RECORD_PATH, SEND_PATH, SUMMARY_PATH,
};
use prometheus_client::registry::Registry;
use serde::Deserialize;
use serde_json::json;

use crate::faults::{self, RequestFault};
use crate::metrics::{self, Metrics, OutcomeLabels, RequestLabels};
use crate::record::{ItemFaults, KeyConflict, Store};

/// Most items in one batch.
pub const MAX_BATCH: usize = 1_000;
/// Longest idempotency key.
pub const MAX_KEY_LEN: usize = 255;

#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    channel: Channel,
    service: String,
    instance: String,
    started: Instant,
    store: Mutex<Store>,
    faults: RwLock<Faults>,
    metrics: Metrics,
    registry: Registry,
}

impl AppState {
    pub fn new(channel: Channel, service: &str, instance: &str, initial: Faults) -> Self {
        let mut registry = metrics::registry(service, instance, channel.label());
        let metrics = Metrics::register(&mut registry);
        Self {
            inner: Arc::new(Inner {
                channel,
                service: service.to_string(),
                instance: instance.to_string(),
                started: Instant::now(),
                store: Mutex::new(Store::new(channel)),
                faults: RwLock::new(initial),
                metrics,
                registry,
            }),
        }
    }

    fn store(&self) -> MutexGuard<'_, Store> {
        // A panic while holding the lock leaves a record that is still consistent (entries are
        // pushed whole), so a poisoned lock is used as is.
        self.inner.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn faults(&self) -> Faults {
        self.inner.faults.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set_faults(&self, f: Faults) {
        *self.inner.faults.write().unwrap_or_else(|p| p.into_inner()) = f;
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route(SEND_PATH, post(send))
        .route(BATCH_PATH, post(batch))
        .route(&format!("{LOOKUP_PATH}/{{key}}"), get(lookup))
        .route(FAULTS_PATH, get(get_faults).put(put_faults))
        .route(RECORD_PATH, get(record))
        .route(SUMMARY_PATH, get(summary))
        .route("/health", get(health))
        .route("/health/live", get(health))
        .route("/metrics", get(metrics_text))
        .fallback(not_found)
        .with_state(state)
}

/// `{"error": ..}` with a status.
#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub String);

impl ApiError {
    fn bad(msg: impl Into<String>) -> Self {
        Self(StatusCode::BAD_REQUEST, msg.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({"error": self.1}))).into_response()
    }
}

fn parse<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad(format!("invalid JSON body: {e}")))
}

fn check_key(key: &str) -> Result<(), ApiError> {
    if key.is_empty() || key.len() > MAX_KEY_LEN || key.chars().any(|c| c.is_control()) {
        return Err(ApiError::bad(format!("an idempotency key is 1 to {MAX_KEY_LEN} printable characters")));
    }
    Ok(())
}

fn check_item(req: &SendRequest, key: Option<&str>) -> Result<(), ApiError> {
    if let Some(k) = key {
        check_key(k)?;
    }
    if req.to.trim().is_empty() {
        return Err(ApiError::bad("`to` must not be empty"));
    }
    if req.metadata.recipient_id.is_empty() || req.metadata.conversation_id.is_empty() {
        return Err(ApiError::bad("metadata.recipientId and metadata.conversationId must not be empty"));
    }
    Ok(())
}

/// What a request produced before its answer is shaped.
enum Served {
    /// Down or error: nothing done.
    Failed(RequestFault),
    /// Items handled; the answer then suffers `fault` (None, Timeout, Garbage, Reset).
    Done { fault: RequestFault, hang: Duration, results: Vec<Result<SendResult, KeyConflict>> },
}

impl AppState {
    async fn serve(&self, endpoint: &str, items: Vec<(Option<String>, SendRequest)>) -> Served {
        let f = self.faults();
        if f.latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(f.latency_ms)).await;
        }
        // Draws before the lock (ThreadRng is not Send, so it never lives across an await).
        let (fault, rejects) = {
            let mut rng = rand::thread_rng();
            let fault = faults::draw(&f, &mut rng);
            let rejects: Vec<bool> = items.iter().map(|_| faults::reject(&f, &mut rng)).collect();
            (fault, rejects)
        };
        let m = &self.inner.metrics;
        m.requests.get_or_create(&RequestLabels { endpoint: endpoint.into(), fault: fault.label().into() }).inc();
        let mut store = self.store();
        if !fault.does_work() {
            for (key, req) in items {
                store.failed(key, &req);
            }
            self.count(&store, "failed", rejects.len() as u64);
            return Served::Failed(fault);
        }
        let mut results = Vec::with_capacity(items.len());
        for ((key, req), reject) in items.into_iter().zip(rejects) {
            let r = store.apply(key, &req, ItemFaults { reject, idempotency: f.idempotency });
            let outcome = match &r {
                Ok(r) if r.replayed => "replayed",
                Ok(r) if r.status == SendStatus::Accepted => "accepted",
                _ => "rejected",
            };
            self.count(&store, outcome, 1);
            results.push(r);
        }
        drop(store);
        Served::Done { fault, hang: Duration::from_millis(f.hang_ms), results }
    }

    fn count(&self, store: &Store, outcome: &str, n: u64) {
        let m = &self.inner.metrics;
        m.items.get_or_create(&OutcomeLabels { outcome: outcome.into() }).inc_by(n);
        m.record_entries.set(store.len() as i64);
    }
}

/// The answer of a request that was handled, shaped by its fault.
async fn answer(fault: RequestFault, hang: Duration, status: StatusCode, body: serde_json::Value) -> Response {
    match fault {
        RequestFault::Timeout => {
            tokio::time::sleep(hang).await;
            (status, Json(body)).into_response()
        }
        RequestFault::Garbage => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/html")],
            "<html><body>502 Bad Gateway (simulated)</body></html>",
        )
            .into_response(),
        RequestFault::Reset => {
            let bytes = serde_json::to_vec(&body).unwrap_or_default();
            let first = Bytes::copy_from_slice(&bytes[..bytes.len().div_ceil(2)]);
            // The status line, headers and first bytes go out; a moment later the stream fails
            // and the server closes the connection.
            let chunks = futures::stream::unfold(Some(first), |first| async move {
                match first {
                    Some(bytes) => Some((Ok(bytes), None)),
                    None => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        let reset =
                            std::io::Error::new(std::io::ErrorKind::ConnectionReset, "simulated connection reset");
                        Some((Err::<Bytes, _>(reset), None))
                    }
                }
            });
            let mut resp = Response::new(Body::from_stream(chunks));
            resp.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
            resp
        }
        _ => (status, Json(body)).into_response(),
    }
}

fn failed(fault: RequestFault) -> Response {
    match fault {
        RequestFault::Down => {
            ApiError(StatusCode::SERVICE_UNAVAILABLE, "provider unavailable (simulated outage)".into()).into_response()
        }
        _ => ApiError(StatusCode::INTERNAL_SERVER_ERROR, "provider internal error (simulated)".into()).into_response(),
    }
}

async fn send(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let mut req: SendRequest = parse(&body)?;
    let header_key = match headers.get(IDEMPOTENCY_KEY_HEADER) {
        Some(v) => Some(v.to_str().map_err(|_| ApiError::bad("the Idempotency-Key header is not text"))?.to_string()),
        None => None,
    };
    let key = header_key.or(req.idempotency_key.take());
    check_item(&req, key.as_deref())?;
    match s.serve("send", vec![(key, req)]).await {
        Served::Failed(fault) => Ok(failed(fault)),
        Served::Done { fault, hang, mut results } => {
            let (status, body) = match results.pop() {
                Some(Ok(r)) => (StatusCode::OK, serde_json::to_value(r).unwrap_or_default()),
                Some(Err(conflict)) => (StatusCode::UNPROCESSABLE_ENTITY, json!({"error": conflict.to_string()})),
                None => (StatusCode::INTERNAL_SERVER_ERROR, json!({"error": "no result"})),
            };
            Ok(answer(fault, hang, status, body).await)
        }
    }
}

async fn batch(State(s): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let req: BatchRequest = parse(&body)?;
    if req.messages.is_empty() || req.messages.len() > MAX_BATCH {
        return Err(ApiError::bad(format!("a batch has 1 to {MAX_BATCH} messages, got {}", req.messages.len())));
    }
    let mut items = Vec::with_capacity(req.messages.len());
    for (i, mut m) in req.messages.into_iter().enumerate() {
        let key = m.idempotency_key.take();
        check_item(&m, key.as_deref()).map_err(|e| ApiError(e.0, format!("messages[{i}]: {}", e.1)))?;
        items.push((key, m));
    }
    match s.serve("batch", items).await {
        Served::Failed(fault) => Ok(failed(fault)),
        Served::Done { fault, hang, results } => {
            let results = results
                .into_iter()
                .map(|r| {
                    r.unwrap_or_else(|conflict| SendResult {
                        status: SendStatus::Rejected,
                        id: None,
                        error: Some(conflict.to_string()),
                        retryable: false,
                        replayed: false,
                    })
                })
                .collect();
            let body = serde_json::to_value(BatchResponse { results }).unwrap_or_default();
            Ok(answer(fault, hang, StatusCode::OK, body).await)
        }
    }
}

async fn lookup(State(s): State<AppState>, Path(key): Path<String>) -> Result<Response, ApiError> {
    check_key(&key)?;
    let f = s.faults();
    if f.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(f.latency_ms)).await;
    }
    if f.down {
        return Ok(failed(RequestFault::Down));
    }
    match s.store().lookup(&key) {
        Some(r) => Ok(Json(r).into_response()),
        None => Err(ApiError(StatusCode::NOT_FOUND, format!("no message was sent with idempotency key {key:?}"))),
    }
}

async fn get_faults(State(s): State<AppState>) -> Json<Faults> {
    Json(s.faults())
}

/// Replaces the faults; fields left out take their default (a healthy provider).
async fn put_faults(State(s): State<AppState>, body: Bytes) -> Result<Json<Faults>, ApiError> {
    let f: Faults = parse(&body)?;
    faults::validate(&f).map_err(|e| ApiError::bad(e.to_string()))?;
    tracing::info!(faults = ?f, "faults set");
    s.set_faults(f.clone());
    Ok(Json(f))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrefixQuery {
    conversation_prefix: Option<String>,
}

fn prefix(q: Result<Query<PrefixQuery>, QueryRejection>) -> Result<Option<String>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad(format!("invalid query: {e}")))?;
    Ok(q.conversation_prefix.filter(|p| !p.is_empty()))
}

async fn record(
    State(s): State<AppState>,
    q: Result<Query<PrefixQuery>, QueryRejection>,
) -> Result<Json<RecordResponse>, ApiError> {
    let p = prefix(q)?;
    Ok(Json(RecordResponse { entries: s.store().entries(p.as_deref()) }))
}

async fn summary(
    State(s): State<AppState>,
    q: Result<Query<PrefixQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let p = prefix(q)?;
    Ok(Json(s.store().summary(p.as_deref())).into_response())
}

async fn health(State(s): State<AppState>) -> Response {
    let i = &s.inner;
    Json(json!({
        "status": "up",
        "service": i.service,
        "instance": i.instance,
        "channel": i.channel,
        "pid": std::process::id(),
        "uptimeSeconds": i.started.elapsed().as_secs(),
        "faults": s.faults(),
    }))
    .into_response()
}

async fn metrics_text(State(s): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        metrics::encode(&s.inner.registry),
    )
        .into_response()
}

async fn not_found() -> ApiError {
    ApiError(StatusCode::NOT_FOUND, "no such endpoint".into())
}
