//! api-gateway: the one public entry. API keys, request ids, per-key rate limits, and a
//! streaming reverse proxy to the message-, user- and file-service.

pub mod admin;
pub mod auth;
pub mod keys;
pub mod proxy;
pub mod rate_limit;
pub mod request_id;

use std::sync::Arc;
use std::time::Duration;

use axum::routing::any;
use axum::Router;

use crate::config::{Common, GatewayArgs};
use crate::http::{self, AppError, Health, OpsState};
use crate::metrics::HttpMetrics;
use crate::shutdown::Shutdown;

/// The proxied route templates (also the metric labels).
const ROUTES: [&str; 5] = ["messages", "conversations", "users", "identities", "files"];

pub async fn run(common: Common, args: GatewayArgs, shutdown: Shutdown) -> anyhow::Result<()> {
    let pool = crate::db::connect_and_migrate(&common.database_url, 4).await?;
    let mut registry = crate::metrics::registry(&common);
    let http_metrics = HttpMetrics::register(&mut registry);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(2))
        .build()?;
    let timeout = Duration::from_millis(args.upstream_timeout_ms);
    let trim = |u: &str| u.trim_end_matches('/').to_string();
    let proxy = proxy::ProxyState {
        http,
        messages: proxy::Upstream {
            name: "message-service",
            base_url: trim(&args.message_service_url),
            timeout,
            max_body: None,
        },
        users: proxy::Upstream {
            name: "user-service",
            base_url: trim(&args.user_service_url),
            timeout,
            max_body: None,
        },
        files: proxy::Upstream {
            name: "file-service",
            base_url: trim(&args.file_service_url),
            timeout: Duration::from_millis(args.files_timeout_ms),
            max_body: Some(args.files_max_bytes),
        },
    };
    let key_store = Arc::new(keys::KeyStore::new(pool.clone(), Duration::from_millis(args.key_cache_ms)));
    tokio::spawn(key_store.clone().refresh_every(shutdown.clone()));
    let auth = auth::AuthState {
        keys: key_store,
        limiter: Arc::new(rate_limit::RateLimiter::default()),
        default_limit: rate_limit::Limit { rate_per_second: args.rate_per_second, burst: args.burst },
    };
    let ops = OpsState::new(&common, registry, Health::default().postgres(pool.clone()));
    let app = app(proxy, auth)
        .merge(admin::routes(pool, &common.admin_token))
        .merge(http::ops_routes(ops))
        .layer(axum::middleware::from_fn_with_state(http_metrics, http::track_metrics))
        .layer(axum::middleware::from_fn(request_id::assign));
    http::serve(common.listen, app, shutdown).await
}

/// The authenticated API routes.
pub fn app(proxy: proxy::ProxyState, auth: auth::AuthState) -> Router {
    let mut api = Router::new();
    for r in ROUTES {
        api = api
            .route(&format!("/api/v1/{r}"), any(proxy::forward))
            .route(&format!("/api/v1/{r}/{{*rest}}"), any(proxy::forward));
    }
    api.fallback(|| async { AppError::not_found("no such route") })
        .with_state(proxy)
        .layer(axum::middleware::from_fn_with_state(auth, auth::require_key))
}
