//! user-service: users and their identity per channel, with lookups cached in Redis.

pub mod api;
pub mod cache;
pub mod domain;
pub mod resolve;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use crate::config::{Common, UserArgs};
use crate::http::{self, Health, OpsState};
use crate::metrics::HttpMetrics;
use crate::shutdown::Shutdown;

pub async fn run(common: Common, args: UserArgs, shutdown: Shutdown) -> anyhow::Result<()> {
    let pool = crate::db::connect_and_migrate(&common.database_url, 4).await?;
    let cache =
        Arc::new(cache::Cache::new(&common.redis_url, args.cache_ttl_s, Duration::from_millis(args.cache_timeout_ms)));
    let mut registry = crate::metrics::registry(&common);
    let http_metrics = HttpMetrics::register(&mut registry);
    let ops = OpsState::new(&common, registry, Health::default().postgres(pool.clone()));
    let app = api::routes(api::ApiState { pool, cache })
        .merge(http::ops_routes(ops))
        .layer(axum::middleware::from_fn_with_state(http_metrics, http::track_metrics))
        .layer(axum::middleware::from_fn(crate::gateway::request_id::assign));
    http::serve(common.listen, app, shutdown).await
}
