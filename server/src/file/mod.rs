//! file-service: streaming uploads content-addressed by SHA-256 on disk, metadata in PostgreSQL.

pub mod api;
pub mod blob;
pub mod meta;

use std::sync::Arc;

use anyhow::Context;

use crate::config::{Common, FileArgs};
use crate::http::{self, Health, OpsState};
use crate::metrics::HttpMetrics;
use crate::shutdown::Shutdown;

pub async fn run(common: Common, args: FileArgs, shutdown: Shutdown) -> anyhow::Result<()> {
    let pool = crate::db::connect_and_migrate(&common.database_url, 4).await?;
    let store = blob::DiskStore::open(&args.data_dir)
        .with_context(|| format!("opening the file store at {}", args.data_dir.display()))?;
    tracing::info!(dir = %args.data_dir.display(), max_bytes = args.max_bytes, "file store ready");
    let mut registry = crate::metrics::registry(&common);
    let http_metrics = HttpMetrics::register(&mut registry);
    let ops = OpsState::new(&common, registry, Health::default().postgres(pool.clone()));
    let allowed: Vec<String> =
        args.allowed_types.iter().map(|t| api::media_type(t)).filter(|t| !t.is_empty()).collect();
    let state =
        api::ApiState { pool, store: Arc::new(store), max_bytes: args.max_bytes, allowed_types: Arc::new(allowed) };
    let app = api::routes(state)
        .merge(http::ops_routes(ops))
        .layer(axum::middleware::from_fn_with_state(http_metrics, http::track_metrics))
        .layer(axum::middleware::from_fn(crate::gateway::request_id::assign));
    http::serve(common.listen, app, shutdown).await
}
