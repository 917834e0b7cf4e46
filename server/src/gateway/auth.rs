//! Authentication (`Authorization: Bearer <key>`) and the per-key rate limit.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::keys::{KeyInfo, KeyStore};
use super::rate_limit::{retry_after_secs, Limit, RateLimiter};
use crate::http::AppError;

#[derive(Clone)]
pub struct AuthState {
    pub keys: Arc<KeyStore>,
    pub limiter: Arc<RateLimiter>,
    pub default_limit: Limit,
}

fn bearer(req: &Request) -> Option<&str> {
    let v = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, key) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| key.trim()).filter(|k| !k.is_empty())
}

fn unauthorized(msg: &str) -> Response {
    let mut resp = AppError::new(StatusCode::UNAUTHORIZED, msg).into_response();
    resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    resp
}

/// Middleware: 401 without a valid key, 429 (with `Retry-After`) over the key's rate.
pub async fn require_key(State(s): State<AuthState>, mut req: Request, next: Next) -> Response {
    let Some(key) = bearer(&req) else {
        return unauthorized("missing API key: send Authorization: Bearer <key>");
    };
    let info: KeyInfo = match s.keys.lookup(key).await {
        Ok(Some(info)) => info,
        Ok(None) => return unauthorized("invalid or revoked API key"),
        Err(e) => return AppError::from(e).into_response(),
    };
    let limit = Limit {
        rate_per_second: info.rate_per_second.unwrap_or(s.default_limit.rate_per_second),
        burst: info.burst.unwrap_or(s.default_limit.burst),
    };
    if let Err(wait) = s.limiter.check(info.id, limit, Instant::now()) {
        let secs = retry_after_secs(wait);
        tracing::info!(key = %info.name, retry_after = secs, "rate limited");
        let mut resp = AppError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "rate limit of {} requests/s (burst {}) exceeded for key {}",
                limit.rate_per_second, limit.burst, info.name
            ),
        )
        .into_response();
        resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        return resp;
    }
    req.extensions_mut().insert(info);
    next.run(req).await
}
