//! Typed configuration. Every setting is a flag with an environment-variable fallback, so the
//! supervisor, Compose and a human at a shell all configure the services the same way.

use std::net::SocketAddr;

use clap::{Args, Parser, Subcommand};

use crate::channel::Channel;

/// Topic names shared by every service and the control plane.
pub use chat4all_contract::{ops_keys, topics};

#[derive(Debug, Parser)]
#[command(
    name = "chat4all-server",
    version,
    about = "Runs one chat4all platform service",
    long_about = "Runs one chat4all platform service. Normally started by `chat4allctl up`, \
                  which sets every option below; run it by hand to debug one service."
)]
pub struct Cli {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(subcommand)]
    pub service: Service,
}

#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// Stable instance name, used as Kafka client.id and in logs and metrics.
    #[arg(long, env = "CHAT4ALL_INSTANCE", global = true)]
    pub instance: Option<String>,
    /// Address of the service's HTTP listener (API, /health, /metrics).
    #[arg(long, env = "CHAT4ALL_LISTEN", global = true)]
    pub listen: Option<SocketAddr>,
    #[arg(long, env = "DATABASE_URL", default_value = "postgres://postgres@127.0.0.1:5432/chat4all", global = true)]
    pub database_url: String,
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379", global = true)]
    pub redis_url: String,
    #[arg(long, env = "KAFKA_BOOTSTRAP", default_value = "127.0.0.1:9092", global = true)]
    pub kafka_bootstrap: String,
    /// Consumer group protocol of the service's consumers: `consumer` (KIP-848: the broker
    /// assigns and owns the session timeout) or `classic`. BENCHMARKS.md (failover) has the
    /// measurements behind the default.
    #[arg(long, env = "CHAT4ALL_GROUP_PROTOCOL", value_enum, default_value_t = crate::kafka::GroupProtocol::default(), global = true)]
    pub group_protocol: crate::kafka::GroupProtocol,
    /// The control token that admin endpoints (`/v1/admin/...`) require as a bearer token; the
    /// supervisor passes the stack's `control.token`. Without one, admin endpoints answer 503.
    #[arg(long, env = chat4all_contract::admin::ADMIN_TOKEN_ENV, hide_env_values = true, global = true)]
    pub admin_token: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Service {
    /// POST /api/v1/messages, message queries, the outbox relay and the status consumer.
    MessageService(MessageArgs),
    /// Consumer group `router-service` on chat-events: hands each recipient to its channel's topic.
    RouterService(RouterArgs),
    /// Consumer group `<channel>-connector` on `deliveries-<channel>`: delivers to the channel's
    /// provider (HTTP); reports receipts and failures on `status-updates`.
    Connector(ConnectorArgs),
    /// The public entry: API keys, request ids, rate limits, reverse proxy to the services.
    ApiGateway(GatewayArgs),
    /// Users and their identity per channel, cached in Redis.
    UserService(UserArgs),
    /// Uploads and downloads, content-addressed by SHA-256 on disk, metadata in PostgreSQL.
    FileService(FileArgs),
    /// Not a service: measures PostgreSQL's rate for the platform's accept and routing
    /// statements alone on a scratch database (`<name>_ceiling`, dropped after) and prints it as
    /// JSON (`chat4allctl bench --ceilings` runs it).
    DbCeiling(crate::ceiling::CeilingArgs),
    /// Not a service: GET a URL and exit 0 on a 2xx answer, 1 otherwise (a container
    /// healthcheck for images without a shell: compose/docker-compose.local.yml).
    Probe(crate::probe::ProbeArgs),
}

impl Service {
    pub fn name(&self) -> String {
        match self {
            Service::MessageService(_) => "message-service".into(),
            Service::RouterService(_) => "router-service".into(),
            Service::Connector(c) => c.channel.connector_service().into(),
            Service::ApiGateway(_) => "api-gateway".into(),
            Service::UserService(_) => "user-service".into(),
            Service::FileService(_) => "file-service".into(),
            Service::DbCeiling(_) => "db-ceiling".into(),
            Service::Probe(_) => "probe".into(),
        }
    }

    pub fn default_port(&self) -> u16 {
        match self {
            Service::MessageService(_) => 8081,
            Service::RouterService(_) => 8082,
            Service::Connector(c) => match c.channel {
                Channel::Whatsapp => 8085,
                Channel::Telegram => 8086,
                Channel::Instagram => 8087,
            },
            Service::ApiGateway(_) => 8080,
            Service::UserService(_) => 8083,
            Service::FileService(_) => 8084,
            Service::DbCeiling(_) | Service::Probe(_) => 0,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct MessageArgs {
    /// Partitions given to chat-events when it is created at start.
    #[arg(long, env = "CHAT4ALL_CHAT_EVENTS_PARTITIONS", default_value_t = 1)]
    pub chat_events_partitions: i32,
    /// Partitions given to each channel's `deliveries-<channel>` topic when it is created at
    /// start: the most connectors of one channel that can share its deliveries.
    #[arg(long, env = "CHAT4ALL_DELIVERIES_PARTITIONS", default_value_t = 3)]
    pub deliveries_partitions: i32,
    /// Most outbox rows published per relay round trip.
    #[arg(long, env = "CHAT4ALL_RELAY_BATCH", default_value_t = 1000)]
    pub relay_batch: i64,
    /// Most accepted messages written by one INSERT (group commit; batches form only under load).
    #[arg(long, env = "CHAT4ALL_INSERT_BATCH", default_value_t = 256)]
    pub insert_batch: usize,
}

#[derive(Debug, Clone, Args)]
pub struct RouterArgs {
    #[command(flatten)]
    pub consumer: ConsumerTuning,
    /// Most events handled per batch (one dedup query, one resolve query, one hand-off round to
    /// the channels' topics, one record of the hand-offs).
    #[arg(long, env = "CHAT4ALL_ROUTER_BATCH", default_value_t = 2000)]
    pub batch: usize,
}

pub use chat4all_contract::group::ConsumerTuning;

#[derive(Debug, Clone, Args)]
pub struct ConnectorArgs {
    /// The channel this connector delivers to.
    #[arg(long, env = "CHAT4ALL_CHANNEL")]
    pub channel: Channel,
    /// Base URL of the channel's provider API; default `http://127.0.0.1:{8075|8076|8077 +
    /// CHAT4ALL_PORT_OFFSET}` by channel.
    #[arg(long, env = "CHAT4ALL_PROVIDER_URL")]
    pub provider_url: Option<String>,
    /// How long one provider call may take before its outcome counts as unknown.
    #[arg(long, env = "CHAT4ALL_PROVIDER_TIMEOUT_MS", default_value_t = 2000)]
    pub provider_timeout_ms: u64,
    /// Times a provider call whose outcome is unknown is repeated (same idempotency keys) before
    /// the items are answered failed (the router retries them later).
    #[arg(long, env = "CHAT4ALL_PROVIDER_RETRIES", default_value_t = 2)]
    pub provider_retries: u32,
    /// A ledger claim older than the provider timeout + 1 s + this is presumed dead: the next
    /// attempt reconciles it with the provider (lookup by key) before sending again.
    #[arg(long, env = "CHAT4ALL_CLAIM_MARGIN_MS", default_value_t = 1000)]
    pub claim_margin_ms: u64,
    #[command(flatten)]
    pub consumer: ConsumerTuning,
    /// Most hand-offs taken from `deliveries-<channel>` per batch.
    #[arg(long, env = "CHAT4ALL_CONNECTOR_BATCH", default_value_t = 500)]
    pub batch: usize,
    /// Provider attempts per recipient (rejections; outages and hold-backs cost none) before it
    /// is dead-lettered to chat-events-dlq and reported FAILED.
    #[arg(long, env = "CHAT4ALL_CONNECTOR_ATTEMPTS", default_value_t = 5)]
    pub attempts: u32,
    /// TEST ONLY: send a conversation's later messages while an earlier one is rejected (the
    /// old, reordering behaviour: one wave, no hold-back).
    #[arg(long, env = "CHAT4ALL_UNSAFE_NO_HOLDBACK", hide = true, value_parser = clap::builder::BoolishValueParser::new())]
    pub unsafe_no_holdback: bool,
    /// TEST ONLY: skip the delivery ledger (redeliveries reach the provider again).
    #[arg(long, env = "CHAT4ALL_UNSAFE_NO_LEDGER", hide = true, value_parser = clap::builder::BoolishValueParser::new())]
    pub unsafe_no_ledger: bool,
    /// TEST ONLY: send no idempotency keys (a retried or reconciled send may take effect twice).
    #[arg(long, env = "CHAT4ALL_UNSAFE_NO_IDEMPOTENCY_KEY", hide = true, value_parser = clap::builder::BoolishValueParser::new())]
    pub unsafe_no_idempotency_key: bool,
}

impl ConnectorArgs {
    pub fn provider_url(&self) -> String {
        if let Some(url) = &self.provider_url {
            return url.clone();
        }
        let offset: u16 = std::env::var("CHAT4ALL_PORT_OFFSET").ok().and_then(|v| v.trim().parse().ok()).unwrap_or(0);
        format!("http://127.0.0.1:{}", default_provider_port(self.channel) + offset)
    }
}

/// The local stack's provider port of `channel` (before the port offset).
pub fn default_provider_port(channel: Channel) -> u16 {
    match channel {
        Channel::Whatsapp => 8075,
        Channel::Telegram => 8076,
        Channel::Instagram => 8077,
    }
}

#[derive(Debug, Clone, Args)]
pub struct GatewayArgs {
    /// Base URL of the message-service (/api/v1/messages, /api/v1/conversations).
    #[arg(long, env = "CHAT4ALL_MESSAGE_SERVICE_URL", default_value = "http://127.0.0.1:8081")]
    pub message_service_url: String,
    /// Base URL of the user-service (/api/v1/users, /api/v1/identities).
    #[arg(long, env = "CHAT4ALL_USER_SERVICE_URL", default_value = "http://127.0.0.1:8083")]
    pub user_service_url: String,
    /// Base URL of the file-service (/api/v1/files).
    #[arg(long, env = "CHAT4ALL_FILE_SERVICE_URL", default_value = "http://127.0.0.1:8084")]
    pub file_service_url: String,
    /// How long an upstream may take to answer (response headers) before the gateway answers 504.
    #[arg(long, env = "CHAT4ALL_UPSTREAM_TIMEOUT_MS", default_value_t = 10_000)]
    pub upstream_timeout_ms: u64,
    /// The same for /api/v1/files, whose uploads are read whole before the answer.
    #[arg(long, env = "CHAT4ALL_FILES_TIMEOUT_MS", default_value_t = 300_000)]
    pub files_timeout_ms: u64,
    /// Largest upload the gateway lets through to the file-service, in bytes: the same setting
    /// (and default) as the file-service's own limit, enforced here too so that an oversized
    /// upload gets its 413 even when the file-service stops reading mid-body.
    #[arg(long, env = "CHAT4ALL_FILE_MAX_BYTES", default_value_t = 100 * 1024 * 1024)]
    pub files_max_bytes: u64,
    /// Default sustained request rate per API key (token bucket refill, requests per second);
    /// a key created with `apikey create --rate` overrides it.
    #[arg(long, env = "CHAT4ALL_RATE_LIMIT_RPS", default_value_t = 100.0)]
    pub rate_per_second: f64,
    /// Default bucket size per API key (requests allowed in a burst).
    #[arg(long, env = "CHAT4ALL_RATE_LIMIT_BURST", default_value_t = 200)]
    pub burst: u32,
    /// How long a key lookup is cached in the gateway: a revocation takes effect within this.
    #[arg(long, env = "CHAT4ALL_KEY_CACHE_MS", default_value_t = 2_000)]
    pub key_cache_ms: u64,
}

#[derive(Debug, Clone, Args)]
pub struct UserArgs {
    /// Lifetime of a cached user or identity lookup in Redis (entries are also deleted on change).
    #[arg(long, env = "CHAT4ALL_USER_CACHE_TTL_S", default_value_t = 300)]
    pub cache_ttl_s: u64,
    /// Longest wait for one Redis operation before the cache is skipped for that request.
    #[arg(long, env = "CHAT4ALL_USER_CACHE_TIMEOUT_MS", default_value_t = 100)]
    pub cache_timeout_ms: u64,
}

#[derive(Debug, Clone, Args)]
pub struct FileArgs {
    /// Directory of the blobs (`blobs/ab/<sha256>`) and of in-flight uploads (`tmp/`).
    #[arg(long, env = "CHAT4ALL_FILES_DIR", default_value = "files")]
    pub data_dir: std::path::PathBuf,
    /// Largest upload, in bytes (default 100 MiB).
    #[arg(long, env = "CHAT4ALL_FILE_MAX_BYTES", default_value_t = 100 * 1024 * 1024)]
    pub max_bytes: u64,
    /// Content types accepted for upload (comma-separated, parameters such as `; charset` ignored).
    #[arg(
        long,
        env = "CHAT4ALL_FILE_TYPES",
        value_delimiter = ',',
        default_value = "image/png,image/jpeg,image/gif,image/webp,application/pdf,text/plain,audio/mpeg,audio/ogg,video/mp4,application/zip,application/octet-stream"
    )]
    pub allowed_types: Vec<String>,
}

/// Settings every service resolves from the common arguments.
#[derive(Debug, Clone)]
pub struct Common {
    pub service: String,
    pub instance: String,
    pub listen: SocketAddr,
    pub database_url: String,
    pub redis_url: String,
    pub kafka_bootstrap: String,
    pub group_protocol: crate::kafka::GroupProtocol,
    pub admin_token: crate::http::AdminToken,
}

impl Common {
    pub fn resolve(args: CommonArgs, service: &Service) -> Self {
        let name = service.name();
        Self {
            instance: args.instance.unwrap_or_else(|| format!("{name}-1")),
            listen: args.listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], service.default_port()))),
            service: name,
            database_url: args.database_url,
            redis_url: args.redis_url,
            kafka_bootstrap: args.kafka_bootstrap,
            group_protocol: args.group_protocol,
            admin_token: crate::http::AdminToken::new(args.admin_token),
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn breakers_default_off_and_provider_settings_parse() {
        let cli = Cli::try_parse_from(["chat4all-server", "connector", "--channel", "WHATSAPP"]).expect("parse");
        let Service::Connector(c) = cli.service else { panic!("connector") };
        assert!(!c.unsafe_no_ledger && !c.unsafe_no_idempotency_key && !c.unsafe_no_holdback);
        assert_eq!(c.attempts, 5);
        assert_eq!(c.provider_timeout_ms, 2000);
        let cli = Cli::try_parse_from([
            "chat4all-server",
            "connector",
            "--channel",
            "TELEGRAM",
            "--unsafe-no-ledger",
            "--provider-url",
            "http://p:1",
        ])
        .expect("parse");
        let Service::Connector(c) = cli.service else { panic!("connector") };
        assert!(c.unsafe_no_ledger);
        assert_eq!(c.provider_url(), "http://p:1");
        assert_eq!(default_provider_port(Channel::Instagram), 8077);
    }
}
