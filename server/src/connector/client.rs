//! HTTP client of a messaging provider (`chat4all_contract::provider`): one batch call per
//! request, a lookup by idempotency key for reconciliation, and the mapping of everything a
//! provider can answer (or fail to answer) onto what the connector does next.

use std::time::Duration;

use chat4all_contract::provider::{BatchRequest, BatchResponse, SendRequest, SendResult, BATCH_PATH, LOOKUP_PATH};
use reqwest::StatusCode;

/// Why a provider call did not produce one result per message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The provider is unreachable or says it is down (503, connection refused): nothing was
    /// done. An outage: wait for it, it is no fault of the messages.
    #[error("provider unavailable: {0}")]
    Down(String),
    /// The provider may or may not have done the work (timeout, 5xx, a reset or garbled answer):
    /// retry with the same idempotency key, or reconcile by key before sending again.
    #[error("provider outcome unknown: {0}")]
    Unknown(String),
    /// The provider refused the request as a whole (4xx): nothing was done.
    #[error("provider refused the request: {0}")]
    Refused(String),
}

impl CallError {
    /// Whether the provider may have done the work.
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, CallError::Unknown(_))
    }
}

/// The connector's view of one provider.
#[derive(Clone)]
pub struct ProviderClient {
    http: reqwest::Client,
    base: String,
}

impl ProviderClient {
    pub fn new(base: &str, timeout: Duration) -> reqwest::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(1))
            .timeout(timeout)
            .pool_max_idle_per_host(8)
            .build()?;
        Ok(Self { http, base: base.trim_end_matches('/').to_string() })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends `messages` in order, as one batch. `Ok` carries one result per message.
    pub async fn send_batch(&self, messages: Vec<SendRequest>) -> Result<Vec<SendResult>, CallError> {
        let n = messages.len();
        let resp = self
            .http
            .post(format!("{}{BATCH_PATH}", self.base))
            .json(&BatchRequest { messages })
            .send()
            .await
            .map_err(transport_error)?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| CallError::Unknown(format!("reading the answer: {e}")))?;
        let parsed: BatchResponse = parse_answer(status, &body)?;
        if parsed.results.len() != n {
            return Err(CallError::Unknown(format!("{} results for {n} messages", parsed.results.len())));
        }
        Ok(parsed.results)
    }

    /// What the provider did with `key`: `None` if it never saw it.
    pub async fn lookup(&self, key: &str) -> Result<Option<SendResult>, CallError> {
        let resp = self
            .http
            .get(format!("{}{LOOKUP_PATH}/{}", self.base, encode_segment(key)))
            .send()
            .await
            .map_err(transport_error)?;
        let status = resp.status();
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let body = resp.bytes().await.map_err(|e| CallError::Unknown(format!("reading the answer: {e}")))?;
        parse_answer(status, &body).map(Some)
    }
}

/// Maps an answer (status and body) onto a result or a [`CallError`].
pub fn parse_answer<T: serde::de::DeserializeOwned>(status: StatusCode, body: &[u8]) -> Result<T, CallError> {
    let excerpt = || String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        return Err(CallError::Down(format!("{status}: {}", excerpt())));
    }
    if status.is_server_error() {
        return Err(CallError::Unknown(format!("{status}: {}", excerpt())));
    }
    if status == StatusCode::TOO_MANY_REQUESTS {
        return Err(CallError::Down(format!("{status}: {}", excerpt())));
    }
    if status.is_client_error() {
        return Err(CallError::Refused(format!("{status}: {}", excerpt())));
    }
    if !status.is_success() {
        return Err(CallError::Unknown(format!("unexpected {status}")));
    }
    serde_json::from_slice(body).map_err(|e| CallError::Unknown(format!("answer is not the expected JSON ({e})")))
}

/// A request that failed in transport: refused connections did nothing, everything else may
/// have reached the provider.
fn transport_error(e: reqwest::Error) -> CallError {
    if e.is_connect() {
        CallError::Down(format!("connecting: {e}"))
    } else if e.is_timeout() {
        CallError::Unknown(format!("timed out: {e}"))
    } else {
        CallError::Unknown(format!("{e}"))
    }
}

/// Percent-encodes a key for one path segment (keys hold ':' and user ids).
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b':') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use axum::extract::{Path, State};
    use axum::http::StatusCode as AxStatus;
    use axum::response::IntoResponse;
    use axum::routing::{get, post};
    use axum::{Json, Router};
    use chat4all_contract::provider::{Metadata, SendStatus};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use uuid::Uuid;

    use super::*;

    #[derive(Clone, Copy)]
    enum Mode {
        Ok,
        Down,
        Error,
        Garbage,
        Hang,
        Short,
        BadRequest,
    }

    async fn serve(mode: Mode, calls: Arc<AtomicUsize>) -> String {
        let app = Router::new()
            .route(
                BATCH_PATH,
                post(move |State(calls): State<Arc<AtomicUsize>>, Json(req): Json<BatchRequest>| async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    match mode {
                        Mode::Ok => Json(BatchResponse {
                            results: req
                                .messages
                                .iter()
                                .map(|m| SendResult {
                                    status: SendStatus::Accepted,
                                    id: Some(format!("p-{}", m.metadata.message_id)),
                                    error: None,
                                    retryable: false,
                                    replayed: false,
                                })
                                .collect(),
                        })
                        .into_response(),
                        Mode::Down => (AxStatus::SERVICE_UNAVAILABLE, "down").into_response(),
                        Mode::Error => (AxStatus::INTERNAL_SERVER_ERROR, "boom").into_response(),
                        Mode::Garbage => (AxStatus::OK, "<html>not json").into_response(),
                        Mode::Hang => {
                            tokio::time::sleep(Duration::from_secs(5)).await;
                            (AxStatus::OK, "late").into_response()
                        }
                        Mode::Short => Json(BatchResponse { results: vec![] }).into_response(),
                        Mode::BadRequest => (AxStatus::BAD_REQUEST, "{\"error\":\"no\"}").into_response(),
                    }
                }),
            )
            .route(
                &format!("{LOOKUP_PATH}/{{key}}"),
                get(|Path(key): Path<String>| async move {
                    if key == "m:u:WHATSAPP" {
                        Json(SendResult {
                            status: SendStatus::Accepted,
                            id: Some("p-1".into()),
                            error: None,
                            retryable: false,
                            replayed: true,
                        })
                        .into_response()
                    } else {
                        AxStatus::NOT_FOUND.into_response()
                    }
                }),
            )
            .with_state(calls);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    /// A peer that reads the request, starts an answer and closes the connection mid-body.
    async fn serve_reset() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let mut buf = vec![0u8; 65536];
                let _ = sock.read(&mut buf).await;
                let _ = sock.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 500\r\n\r\n{\"results\":[").await;
                drop(sock);
            }
        });
        format!("http://{addr}")
    }

    fn message(n: u8) -> SendRequest {
        SendRequest {
            idempotency_key: Some(format!("k{n}")),
            to: format!("+55{n}"),
            text: "hi".into(),
            metadata: Metadata {
                message_id: Uuid::new_v4(),
                recipient_id: format!("u{n}"),
                conversation_id: "c".into(),
            },
        }
    }

    async fn call(mode: Mode) -> (Result<Vec<SendResult>, CallError>, usize) {
        let calls = Arc::new(AtomicUsize::new(0));
        let base = serve(mode, calls.clone()).await;
        let client = ProviderClient::new(&base, Duration::from_millis(300)).expect("client");
        let r = client.send_batch(vec![message(1), message(2)]).await;
        (r, calls.load(Ordering::SeqCst))
    }

    #[tokio::test]
    async fn a_healthy_provider_answers_one_result_per_message() {
        let (r, calls) = call(Mode::Ok).await;
        let results = r.expect("ok");
        assert_eq!(results.len(), 2);
        assert!(results.iter().all(|r| r.status == SendStatus::Accepted && r.id.is_some()));
        assert_eq!(calls, 1);
    }

    #[tokio::test]
    async fn faults_map_onto_down_unknown_and_refused() {
        assert!(matches!(call(Mode::Down).await.0, Err(CallError::Down(_))));
        assert!(matches!(call(Mode::Error).await.0, Err(CallError::Unknown(_))));
        assert!(matches!(call(Mode::Garbage).await.0, Err(CallError::Unknown(_))));
        assert!(matches!(call(Mode::Short).await.0, Err(CallError::Unknown(_))));
        assert!(matches!(call(Mode::BadRequest).await.0, Err(CallError::Refused(_))));
        let started = std::time::Instant::now();
        let (hang, calls) = call(Mode::Hang).await;
        assert!(matches!(hang, Err(CallError::Unknown(ref e)) if e.contains("timed out")), "{hang:?}");
        assert!(started.elapsed() < Duration::from_secs(2), "the request timeout applies");
        assert_eq!(calls, 1, "the hanging provider got the request (the work may be done)");
    }

    #[tokio::test]
    async fn a_reset_mid_answer_is_an_unknown_outcome() {
        let base = serve_reset().await;
        let client = ProviderClient::new(&base, Duration::from_millis(500)).expect("client");
        let r = client.send_batch(vec![message(1)]).await;
        assert!(matches!(r, Err(CallError::Unknown(_))), "{r:?}");
    }

    #[tokio::test]
    async fn a_refused_connection_is_an_outage() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let client = ProviderClient::new(&format!("http://{addr}"), Duration::from_millis(500)).expect("client");
        let r = client.send_batch(vec![message(1)]).await;
        assert!(matches!(r, Err(CallError::Down(_))), "{r:?}");
    }

    #[tokio::test]
    async fn lookup_finds_a_key_or_answers_none() {
        let base = serve(Mode::Ok, Arc::new(AtomicUsize::new(0))).await;
        let client = ProviderClient::new(&base, Duration::from_millis(500)).expect("client");
        let found = client.lookup("m:u:WHATSAPP").await.expect("lookup");
        assert_eq!(found.map(|r| r.status), Some(SendStatus::Accepted));
        assert_eq!(client.lookup("other:u 1/x:WHATSAPP").await.expect("lookup"), None);
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(encode_segment("a-1:u/2 x:WHATSAPP"), "a-1:u%2F2%20x:WHATSAPP");
    }
}
