//! Logging: JSON lines through `tracing` (set `CHAT4ALL_LOG_FORMAT=text` for humans),
//! filtered by `RUST_LOG` (default `info`).

use tracing_subscriber::EnvFilter;

pub fn init(service: &str, instance: &str) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,rdkafka=warn,sqlx=warn,h2=warn,hyper=warn"));
    let text = std::env::var("CHAT4ALL_LOG_FORMAT").is_ok_and(|v| v == "text");
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let result =
        if text { builder.try_init() } else { builder.json().flatten_event(true).with_current_span(false).try_init() };
    if result.is_ok() {
        tracing::info!(service, instance, "starting");
    }
}
