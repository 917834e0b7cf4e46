//! Request ids: taken from `x-request-id` when the client sends a usable one, generated
//! otherwise; set on the request (so upstreams see it), on the response, and on the tracing span
//! every log line of the request is written in.

use std::time::Instant;

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The id of the request being handled, as a request extension.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// A client-supplied id is kept when it is 1-128 visible ASCII characters.
fn usable(v: &HeaderValue) -> Option<String> {
    let s = v.to_str().ok()?;
    (!s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic())).then(|| s.to_string())
}

/// Middleware: assigns the id, logs one access line per request with it.
pub async fn assign(mut req: Request, next: Next) -> Response {
    let id = req.headers().get(&REQUEST_ID).and_then(usable).unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let value = HeaderValue::from_str(&id).expect("checked visible ASCII");
    req.headers_mut().insert(REQUEST_ID.clone(), value.clone());
    req.extensions_mut().insert(RequestId(id.clone()));
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let span = tracing::info_span!("request", request_id = %id);
    let start = Instant::now();
    let mut resp = next.run(req).instrument(span.clone()).await;
    resp.headers_mut().insert(REQUEST_ID.clone(), value);
    let status = resp.status().as_u16();
    let micros = start.elapsed().as_micros() as u64;
    span.in_scope(|| {
        // Failures at info; successes (1,000s per second under load) and probes at debug: one
        // synchronous log write per request would cost more than the proxying itself.
        if status < 400 {
            tracing::debug!(%method, path, status, micros, "request");
        } else {
            tracing::info!(%method, path, status, micros, "request");
        }
    });
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_sane_ids_only() {
        assert_eq!(usable(&HeaderValue::from_static("abc-123")), Some("abc-123".into()));
        assert_eq!(usable(&HeaderValue::from_static("")), None);
        assert_eq!(usable(&HeaderValue::from_static("has space")), None);
        assert_eq!(usable(&HeaderValue::from_str(&"x".repeat(129)).unwrap()), None);
    }
}
