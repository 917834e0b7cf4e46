//! The reverse proxy: picks the upstream by path prefix and streams request and response
//! bodies through, with a timeout on the upstream's answer.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};

use super::keys::KeyInfo;
use crate::http::AppError;

/// One upstream service.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub name: &'static str,
    pub base_url: String,
    pub timeout: Duration,
    /// Largest request body forwarded (None: the upstream decides alone).
    pub max_body: Option<u64>,
}

#[derive(Clone)]
pub struct ProxyState {
    pub http: reqwest::Client,
    pub messages: Upstream,
    pub users: Upstream,
    pub files: Upstream,
}

impl ProxyState {
    /// The upstream serving `path`, by its first segment after `/api/v1/`.
    pub fn upstream_for(&self, path: &str) -> Option<&Upstream> {
        let rest = path.strip_prefix("/api/v1/")?;
        match rest.split('/').next()? {
            "messages" | "conversations" => Some(&self.messages),
            "users" | "identities" => Some(&self.users),
            "files" => Some(&self.files),
            _ => None,
        }
    }
}

/// Headers that describe one connection, not the message, and the client's credentials: never
/// forwarded.
fn skip_header(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
            | "authorization"
    )
}

fn copy_headers(from: &HeaderMap, to: &mut HeaderMap) {
    for (name, value) in from {
        if !skip_header(name) {
            to.append(name.clone(), value.clone());
        }
    }
}

/// Forwards the request to its upstream.
pub async fn forward(State(s): State<ProxyState>, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    let Some(up) = s.upstream_for(&path) else {
        return AppError::not_found(format!("no route for {path}")).into_response();
    };
    let path_and_query = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or(&path).to_owned();
    let url = format!("{}{}", up.base_url, path_and_query);
    let (parts, body) = req.into_parts();
    let mut headers = HeaderMap::with_capacity(parts.headers.len() + 1);
    copy_headers(&parts.headers, &mut headers);
    if let Some(key) = parts.extensions.get::<KeyInfo>() {
        if let Ok(v) = key.name.parse() {
            headers.insert("x-chat4all-key", v);
        }
    }
    let has_body = parts.headers.contains_key(header::CONTENT_LENGTH)
        && parts.headers.get(header::CONTENT_LENGTH).is_some_and(|v| v != "0")
        || parts.headers.contains_key(header::TRANSFER_ENCODING);
    let declared = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if let (Some(max), Some(n)) = (up.max_body, declared) {
        if n > max {
            return too_large(max);
        }
    }
    let watch = BodyWatch::default();
    let mut rb = s.http.request(parts.method.clone(), &url).headers(headers);
    if has_body {
        rb = rb.body(reqwest::Body::wrap_stream(watch.wrap(body, up.max_body)));
    }
    let sent = tokio::time::timeout(up.timeout, rb.send()).await;
    let resp = match sent {
        Err(_) => {
            tracing::warn!(upstream = up.name, %url, timeout_ms = up.timeout.as_millis() as u64, "upstream timed out");
            return AppError::new(
                StatusCode::GATEWAY_TIMEOUT,
                format!("{} did not answer within {} ms", up.name, up.timeout.as_millis()),
            )
            .into_response();
        }
        Ok(Err(e)) if watch.over_limit() => {
            tracing::info!(upstream = up.name, %url, error = %e, "request body over the limit: 413");
            return too_large(up.max_body.unwrap_or_default());
        }
        Ok(Err(e)) if watch.client_broke() => {
            tracing::info!(upstream = up.name, %url, error = %e, "the client's body broke off");
            return AppError::bad_request("upload interrupted: the request body ended early", None).into_response();
        }
        Ok(Err(e)) => {
            tracing::warn!(upstream = up.name, %url, error = %e, "upstream unavailable");
            return AppError::new(StatusCode::BAD_GATEWAY, format!("{} is unavailable", up.name)).into_response();
        }
        Ok(Ok(resp)) => resp,
    };
    let status = resp.status();
    let mut out_headers = HeaderMap::with_capacity(resp.headers().len());
    copy_headers(resp.headers(), &mut out_headers);
    let mut out = Response::new(Body::from_stream(resp.bytes_stream()));
    *out.status_mut() = status;
    *out.headers_mut() = out_headers;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> ProxyState {
        let up = |name, port: u16| Upstream {
            name,
            base_url: format!("http://127.0.0.1:{port}"),
            timeout: Duration::from_secs(1),
            max_body: None,
        };
        ProxyState {
            http: reqwest::Client::new(),
            messages: up("message-service", 1),
            users: up("user-service", 2),
            files: up("file-service", 3),
        }
    }

    #[test]
    fn routes_by_first_segment() {
        let s = state();
        let name = |p: &str| s.upstream_for(p).map(|u| u.name);
        assert_eq!(name("/api/v1/messages"), Some("message-service"));
        assert_eq!(name("/api/v1/messages/abc"), Some("message-service"));
        assert_eq!(name("/api/v1/conversations/c/messages"), Some("message-service"));
        assert_eq!(name("/api/v1/users/u/identities"), Some("user-service"));
        assert_eq!(name("/api/v1/identities/resolve"), Some("user-service"));
        assert_eq!(name("/api/v1/files/f/content"), Some("file-service"));
        assert_eq!(name("/api/v1/filesystem"), None);
        assert_eq!(name("/api/v2/messages"), None);
        assert_eq!(name("/health"), None);
    }

    #[test]
    fn drops_hop_by_hop_and_credentials() {
        let mut from = HeaderMap::new();
        from.insert("authorization", "Bearer x".parse().unwrap());
        from.insert("connection", "keep-alive".parse().unwrap());
        from.insert("content-type", "application/json".parse().unwrap());
        from.insert("x-request-id", "r1".parse().unwrap());
        let mut to = HeaderMap::new();
        copy_headers(&from, &mut to);
        assert!(to.get("authorization").is_none());
        assert!(to.get("connection").is_none());
        assert_eq!(to.get("content-type").unwrap(), "application/json");
        assert_eq!(to.get("x-request-id").unwrap(), "r1");
    }
}

fn too_large(max: u64) -> Response {
    AppError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("the file exceeds the limit of {max} bytes")).into_response()
}

/// What happened to a request body on its way through: over the limit, or broken off by the
/// client. Either makes the upstream request fail; these tell the two apart from an upstream
/// that is really unavailable.
#[derive(Clone, Default)]
struct BodyWatch {
    over: Arc<AtomicBool>,
    broke: Arc<AtomicBool>,
}

impl BodyWatch {
    fn over_limit(&self) -> bool {
        self.over.load(Ordering::SeqCst)
    }

    fn client_broke(&self) -> bool {
        self.broke.load(Ordering::SeqCst)
    }

    /// The body as a stream that counts its bytes and fails once past `max`.
    fn wrap(
        &self,
        body: Body,
        max: Option<u64>,
    ) -> impl futures::Stream<Item = Result<axum::body::Bytes, std::io::Error>> + Send + 'static {
        let watch = self.clone();
        let mut total = 0u64;
        body.into_data_stream().map(move |chunk| match chunk {
            Ok(c) => {
                total += c.len() as u64;
                if max.is_some_and(|m| total > m) {
                    watch.over.store(true, Ordering::SeqCst);
                    return Err(std::io::Error::other("request body over the limit"));
                }
                Ok(c)
            }
            Err(e) => {
                watch.broke.store(true, Ordering::SeqCst);
                Err(std::io::Error::other(e))
            }
        })
    }
}
