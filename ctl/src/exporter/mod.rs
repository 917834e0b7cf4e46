//! The metrics exporter of the control plane (`chat4allctl exporter`, and inside `up`): consumer
//! lag and offsets under kafka_exporter's names, partition ownership, rebalance counts,
//! instance states, and the pipeline's health before and after the topic (outbox, oldest pending
//! delivery per channel, DLQ depth). A scrape renders the latest observation: it never waits for the broker.

pub mod bench;
pub mod brokers;
pub mod collect;
pub mod render;

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::sampler::{Latest, Observations};
use collect::{Extras, InstanceSource};

/// The content type of OpenMetrics text, which Prometheus negotiates.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Default port of the exporter (kafka_exporter's); `up` adds its port offset.
pub const DEFAULT_PORT: u16 = 9308;

/// Where the broker observation comes from.
#[derive(Clone)]
enum Feed {
    /// The sampler's latest observation.
    Live(Observations),
    /// A fixed one (benchmarks, tests).
    Fixed(Arc<Latest>),
}

/// What a scrape renders: the broker observation and the collected extras.
#[derive(Clone)]
pub struct Exporter {
    feed: Feed,
    pub extras: Arc<RwLock<Extras>>,
}

impl Exporter {
    /// Serves the observations a sampler (`sampler::run`) keeps up to date.
    pub fn new(obs: Observations) -> Self {
        Self { feed: Feed::Live(obs), extras: Arc::default() }
    }

    /// Serves one fixed observation.
    pub fn fixed(latest: Latest, extras: Extras) -> Self {
        Self { feed: Feed::Fixed(Arc::new(latest)), extras: Arc::new(RwLock::new(extras)) }
    }

    /// The metrics text now.
    pub fn scrape(&self) -> String {
        let extras = self.extras.read().unwrap_or_else(|e| e.into_inner()).clone();
        let now = chrono::Utc::now();
        match &self.feed {
            Feed::Live(obs) => render::render(&obs.get(), &extras, now),
            // Cloned like the live feed's `Observations::get`, so benchmarks pay what scrapes pay.
            Feed::Fixed(latest) => render::render(&Latest::clone(latest), &extras, now),
        }
    }

    /// Starts collecting instance states and rebalance counts in the background; the task stops
    /// when the handle is aborted.
    pub fn collect(
        &self,
        source: InstanceSource,
        redis_url: String,
        bootstrap: String,
        interval: Duration,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(collect::run(source, redis_url, bootstrap, interval, self.extras.clone()))
    }

    /// Starts keeping the pipeline's figures of the stack in `data` up to date (outbox, oldest
    /// pending per channel, DLQ depth); the task stops when the handle is aborted.
    pub fn collect_pipeline(&self, data: crate::paths::DataDir, interval: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(collect::run_pipeline(data, interval, self.extras.clone()))
    }

    pub fn router(&self) -> Router {
        Router::new().route("/metrics", get(metrics)).route("/", get(index)).with_state(self.clone())
    }

    /// Binds `addr` and serves `/metrics` until the handle is aborted.
    pub async fn serve(&self, addr: SocketAddr) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
        let listener =
            tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding the exporter on {addr}"))?;
        let local = listener.local_addr()?;
        let app = self.router();
        let handle = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "exporter stopped");
            }
        });
        Ok((local, handle))
    }
}

async fn metrics(State(e): State<Exporter>) -> Response {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], e.scrape()).into_response()
}

async fn index() -> &'static str {
    "chat4allctl exporter: metrics at /metrics\n"
}
