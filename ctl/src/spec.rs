//! What the local stack runs: every instance, its command, port and health probe.

use std::path::PathBuf;

use chat4all_contract::channel::Channel;
use serde::{Deserialize, Serialize};

/// Services the supervisor knows, in start order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum ServiceKind {
    Broker,
    /// The simulated providers (`chat4all-provider`), one per channel: the connectors call them.
    WhatsappProvider,
    TelegramProvider,
    InstagramProvider,
    MessageService,
    WhatsappConnector,
    TelegramConnector,
    InstagramConnector,
    RouterService,
    UserService,
    FileService,
    ApiGateway,
}

impl ServiceKind {
    pub const ALL: [ServiceKind; 12] = [
        ServiceKind::Broker,
        ServiceKind::WhatsappProvider,
        ServiceKind::TelegramProvider,
        ServiceKind::InstagramProvider,
        ServiceKind::MessageService,
        ServiceKind::WhatsappConnector,
        ServiceKind::TelegramConnector,
        ServiceKind::InstagramConnector,
        ServiceKind::RouterService,
        ServiceKind::UserService,
        ServiceKind::FileService,
        ServiceKind::ApiGateway,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ServiceKind::Broker => "broker",
            ServiceKind::WhatsappProvider => "whatsapp-provider",
            ServiceKind::TelegramProvider => "telegram-provider",
            ServiceKind::InstagramProvider => "instagram-provider",
            ServiceKind::MessageService => "message-service",
            ServiceKind::WhatsappConnector => "whatsapp-connector",
            ServiceKind::TelegramConnector => "telegram-connector",
            ServiceKind::InstagramConnector => "instagram-connector",
            ServiceKind::RouterService => "router-service",
            ServiceKind::UserService => "user-service",
            ServiceKind::FileService => "file-service",
            ServiceKind::ApiGateway => "api-gateway",
        }
    }

    /// Accepts the service name and its short forms (`router`, `message`, `whatsapp`; a channel's
    /// name alone is its connector, a provider is named in full: `whatsapp-provider`).
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim().to_ascii_lowercase();
        ServiceKind::ALL.into_iter().find(|k| k.name() == s).or_else(|| {
            ServiceKind::ALL.into_iter().find(|k| {
                !k.is_provider()
                    && (k.name().split('-').next() == Some(s.as_str()) || (s == "kafka" && *k == ServiceKind::Broker))
            })
        })
    }

    /// The simulated provider of `channel`.
    pub fn provider(channel: Channel) -> Self {
        match channel {
            Channel::Whatsapp => ServiceKind::WhatsappProvider,
            Channel::Telegram => ServiceKind::TelegramProvider,
            Channel::Instagram => ServiceKind::InstagramProvider,
        }
    }

    pub fn is_provider(self) -> bool {
        self.provider_channel().is_some()
    }

    /// The channel a provider simulates.
    pub fn provider_channel(self) -> Option<Channel> {
        match self {
            ServiceKind::WhatsappProvider => Some(Channel::Whatsapp),
            ServiceKind::TelegramProvider => Some(Channel::Telegram),
            ServiceKind::InstagramProvider => Some(Channel::Instagram),
            _ => None,
        }
    }

    /// The channel a connector delivers to.
    pub fn connector_channel(self) -> Option<Channel> {
        match self {
            ServiceKind::WhatsappConnector => Some(Channel::Whatsapp),
            ServiceKind::TelegramConnector => Some(Channel::Telegram),
            ServiceKind::InstagramConnector => Some(Channel::Instagram),
            _ => None,
        }
    }

    /// Whether its instances are members of a consumer group (the supervisor removes a dead
    /// one from its group at once; see `failover`): the routers, the message-service's status
    /// consumer, and each channel's connectors (`<channel>-connector` on `deliveries-<channel>`).
    pub fn is_group_member(self) -> bool {
        matches!(self, ServiceKind::RouterService | ServiceKind::MessageService) || self.connector_channel().is_some()
    }

    /// Whether `scale` may run more than one instance of it.
    pub fn scalable(self) -> bool {
        matches!(self, ServiceKind::RouterService)
    }

    /// Instance name of replica `n` (1-based): `router-service-2`, `broker-3`. The single broker of
    /// a one-node stack is `broker` ([`StackSpec::instance_name`]).
    pub fn instance_name(self, n: u32) -> String {
        format!("{}-{n}", self.name())
    }
}

/// Ports of the local stack.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ports {
    pub kafka: u16,
    /// The broker's KRaft controller listener.
    #[serde(default = "default_controller_port")]
    pub kafka_controller: u16,
    pub message_service: u16,
    pub whatsapp: u16,
    pub telegram: u16,
    pub instagram: u16,
    /// router-service-N listens on `router_base + N`.
    pub router_base: u16,
    #[serde(default = "default_gateway_port")]
    pub api_gateway: u16,
    #[serde(default = "default_user_port")]
    pub user_service: u16,
    #[serde(default = "default_file_port")]
    pub file_service: u16,
    /// The simulated providers (8075 / 8076 / 8077).
    #[serde(default = "default_whatsapp_provider_port")]
    pub whatsapp_provider: u16,
    #[serde(default = "default_telegram_provider_port")]
    pub telegram_provider: u16,
    #[serde(default = "default_instagram_provider_port")]
    pub instagram_provider: u16,
    /// A docker stack's `failover watch` (/health, /metrics): 7071, beside the control port.
    #[serde(default = "default_failover_port")]
    pub failover_watch: u16,
}

fn default_failover_port() -> u16 {
    7071
}

fn default_controller_port() -> u16 {
    9093
}
fn default_gateway_port() -> u16 {
    8080
}
fn default_user_port() -> u16 {
    8083
}
fn default_file_port() -> u16 {
    8084
}
fn default_whatsapp_provider_port() -> u16 {
    8075
}
fn default_telegram_provider_port() -> u16 {
    8076
}
fn default_instagram_provider_port() -> u16 {
    8077
}

impl Default for Ports {
    fn default() -> Self {
        Self {
            kafka: 9092,
            kafka_controller: default_controller_port(),
            message_service: 8081,
            whatsapp: 8085,
            telegram: 8086,
            instagram: 8087,
            router_base: 8090,
            api_gateway: default_gateway_port(),
            user_service: default_user_port(),
            file_service: default_file_port(),
            whatsapp_provider: default_whatsapp_provider_port(),
            telegram_provider: default_telegram_provider_port(),
            instagram_provider: default_instagram_provider_port(),
            failover_watch: default_failover_port(),
        }
    }
}

impl Ports {
    /// The default ports shifted by `offset`, so that several stacks share one machine
    /// (`up --port-offset 100`: broker 9192, message-service 8181, ...).
    pub fn with_offset(offset: u16) -> Self {
        let d = Self::default();
        Self {
            kafka: d.kafka + offset,
            kafka_controller: d.kafka_controller + offset,
            message_service: d.message_service + offset,
            whatsapp: d.whatsapp + offset,
            telegram: d.telegram + offset,
            instagram: d.instagram + offset,
            router_base: d.router_base + offset,
            api_gateway: d.api_gateway + offset,
            user_service: d.user_service + offset,
            file_service: d.file_service + offset,
            whatsapp_provider: d.whatsapp_provider + offset,
            telegram_provider: d.telegram_provider + offset,
            instagram_provider: d.instagram_provider + offset,
            failover_watch: d.failover_watch + offset,
        }
    }

    /// The port of `channel`'s simulated provider.
    pub fn provider(&self, channel: Channel) -> u16 {
        match channel {
            Channel::Whatsapp => self.whatsapp_provider,
            Channel::Telegram => self.telegram_provider,
            Channel::Instagram => self.instagram_provider,
        }
    }
}

/// Everything needed to start any instance of the stack.
#[derive(Debug, Clone)]
pub struct StackSpec {
    pub server_bin: PathBuf,
    /// The simulated providers' binary (`chat4all-provider`).
    pub provider_bin: PathBuf,
    /// The providers' initial share of rejected items (`up --provider-failure-rate`).
    pub provider_reject_rate: f64,
    /// Kafka's jars (`broker::locate_libs`); None when not installed.
    pub kafka_libs: Option<PathBuf>,
    /// The broker node's directory (config, log4j2 config, data); the nodes of a cluster live
    /// beside it in `broker-1`, `broker-2`, ...
    pub broker_data: PathBuf,
    /// Embedded Kafka nodes: 1 (the default, instance `broker`) or 3 (`broker-1..3`).
    pub brokers: u32,
    pub ports: Ports,
    pub database_url: String,
    pub redis_url: String,
    pub kafka_bootstrap: String,
    /// False when KAFKA_BOOTSTRAP points at an external Kafka: no broker process.
    pub embedded_broker: bool,
    /// The consumer group protocol of every consumer of the stack.
    pub group_protocol: chat4all_contract::group::GroupProtocol,
}

/// How to tell an instance is up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// An HTTP GET of this path answers 2xx.
    Http(&'static str),
    /// The port answers a Kafka ApiVersions request (a broker accepts TCP connections before it
    /// serves requests, so a connect proves nothing).
    Kafka,
}

/// How to start one instance and how to tell it is up.
#[derive(Debug, Clone)]
pub struct Launch {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub port: u16,
    pub cwd: Option<PathBuf>,
    pub probe: Probe,
}

impl StackSpec {
    /// The name of replica `n` of `kind`; a one-node stack's broker is `broker`, as it always was.
    pub fn instance_name(&self, kind: ServiceKind, n: u32) -> String {
        if kind == ServiceKind::Broker && self.brokers <= 1 {
            return "broker".into();
        }
        kind.instance_name(n)
    }

    /// The client addresses of the embedded nodes, in node order (the services' bootstrap list).
    pub fn broker_addresses(&self) -> Vec<String> {
        (1..=self.brokers.max(1)).map(|n| format!("127.0.0.1:{}", self.port_of(ServiceKind::Broker, n))).collect()
    }

    pub fn port_of(&self, kind: ServiceKind, n: u32) -> u16 {
        match kind {
            ServiceKind::Broker => crate::broker::node_ports(n, self.ports.kafka, self.ports.kafka_controller).0,
            ServiceKind::WhatsappProvider => self.ports.whatsapp_provider,
            ServiceKind::TelegramProvider => self.ports.telegram_provider,
            ServiceKind::InstagramProvider => self.ports.instagram_provider,
            ServiceKind::MessageService => self.ports.message_service,
            ServiceKind::WhatsappConnector => self.ports.whatsapp,
            ServiceKind::TelegramConnector => self.ports.telegram,
            ServiceKind::InstagramConnector => self.ports.instagram,
            ServiceKind::RouterService => self.ports.router_base + n as u16,
            ServiceKind::ApiGateway => self.ports.api_gateway,
            ServiceKind::UserService => self.ports.user_service,
            ServiceKind::FileService => self.ports.file_service,
        }
    }

    /// Node `n` (1-based) of the embedded broker.
    pub fn broker_node(&self, n: u32) -> crate::broker::Node {
        let (kafka, controller) = (self.ports.kafka, self.ports.kafka_controller);
        let (port, controller_port) = crate::broker::node_ports(n, kafka, controller);
        if self.brokers <= 1 {
            return crate::broker::Node { id: 1, port, controller_port, dir: self.broker_data.clone(), voters: vec![] };
        }
        crate::broker::Node {
            id: n,
            port,
            controller_port,
            dir: self.broker_data.with_file_name(format!("broker-{n}")),
            voters: (1..=self.brokers).map(|i| (i, crate::broker::node_ports(i, kafka, controller).1)).collect(),
        }
    }

    pub fn launch(&self, kind: ServiceKind, n: u32) -> anyhow::Result<Launch> {
        let port = self.port_of(kind, n);
        if kind == ServiceKind::Broker {
            let libs = self.kafka_libs.clone().ok_or_else(|| {
                anyhow::anyhow!(
                    "Apache Kafka {} is not installed: run scripts/bootstrap.sh (or set KAFKA_BOOTSTRAP to an existing Kafka)",
                    crate::broker::KAFKA_VERSION
                )
            })?;
            let node = self.broker_node(n);
            return Ok(Launch {
                program: crate::broker::java(),
                args: node.jvm_args(&libs),
                env: vec![],
                port,
                cwd: Some(node.dir.clone()),
                probe: Probe::Kafka,
            });
        }
        let instance = self.instance_name(kind, n);
        if let Some(channel) = kind.provider_channel() {
            let args = vec![
                "--instance".to_string(),
                instance,
                "--listen".into(),
                format!("127.0.0.1:{port}"),
                "--channel".into(),
                channel.as_str().into(),
                "--reject-rate".into(),
                self.provider_reject_rate.to_string(),
            ];
            return Ok(Launch {
                program: self.provider_bin.clone(),
                args,
                env: vec![],
                port,
                cwd: None,
                probe: Probe::Http("/health"),
            });
        }
        let mut args = vec!["--instance".to_string(), instance, "--listen".into(), format!("127.0.0.1:{port}")];
        match kind {
            ServiceKind::MessageService => args.push("message-service".into()),
            ServiceKind::RouterService => args.push("router-service".into()),
            ServiceKind::WhatsappConnector => args.extend(["connector".into(), "--channel".into(), "WHATSAPP".into()]),
            ServiceKind::TelegramConnector => args.extend(["connector".into(), "--channel".into(), "TELEGRAM".into()]),
            ServiceKind::InstagramConnector => {
                args.extend(["connector".into(), "--channel".into(), "INSTAGRAM".into()])
            }
            ServiceKind::ApiGateway => args.push("api-gateway".into()),
            ServiceKind::UserService => args.push("user-service".into()),
            ServiceKind::FileService => args.push("file-service".into()),
            ServiceKind::Broker
            | ServiceKind::WhatsappProvider
            | ServiceKind::TelegramProvider
            | ServiceKind::InstagramProvider => unreachable!("handled above"),
        }
        let url = |p: u16| format!("http://127.0.0.1:{p}");
        // The file-service keeps its blobs beside the broker's data, in the stack's directory.
        let files_dir = self.broker_data.parent().unwrap_or(&self.broker_data).join("files");
        let mut env: Vec<(String, String)> = vec![
            ("DATABASE_URL".into(), self.database_url.clone()),
            ("REDIS_URL".into(), self.redis_url.clone()),
            ("KAFKA_BOOTSTRAP".into(), self.kafka_bootstrap.clone()),
            ("CHAT4ALL_GROUP_PROTOCOL".into(), self.group_protocol.as_str().into()),
            ("CHAT4ALL_WHATSAPP_URL".into(), url(self.ports.whatsapp)),
            ("CHAT4ALL_TELEGRAM_URL".into(), url(self.ports.telegram)),
            ("CHAT4ALL_INSTAGRAM_URL".into(), url(self.ports.instagram)),
            ("CHAT4ALL_MESSAGE_SERVICE_URL".into(), url(self.ports.message_service)),
            ("CHAT4ALL_USER_SERVICE_URL".into(), url(self.ports.user_service)),
            ("CHAT4ALL_FILE_SERVICE_URL".into(), url(self.ports.file_service)),
            ("CHAT4ALL_FILES_DIR".into(), files_dir.to_string_lossy().into_owned()),
        ];
        if let Some(channel) = kind.connector_channel() {
            env.push(("CHAT4ALL_PROVIDER_URL".into(), url(self.ports.provider(channel))));
        }
        Ok(Launch { program: self.server_bin.clone(), args, env, port, cwd: None, probe: Probe::Http("/health/live") })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_service_short_forms() {
        assert_eq!(ServiceKind::parse("router"), Some(ServiceKind::RouterService));
        assert_eq!(ServiceKind::parse("router-service"), Some(ServiceKind::RouterService));
        assert_eq!(ServiceKind::parse("whatsapp"), Some(ServiceKind::WhatsappConnector));
        assert_eq!(ServiceKind::parse("kafka"), Some(ServiceKind::Broker));
        assert_eq!(ServiceKind::parse("nope"), None);
    }

    #[test]
    fn instance_names() {
        assert_eq!(ServiceKind::RouterService.instance_name(2), "router-service-2");
        assert_eq!(ServiceKind::Broker.instance_name(1), "broker-1");
        assert_eq!(spec(0).instance_name(ServiceKind::Broker, 1), "broker", "one node keeps its name");
        let cluster = StackSpec { brokers: 3, ..spec(0) };
        assert_eq!(cluster.instance_name(ServiceKind::Broker, 3), "broker-3");
        assert_eq!(cluster.instance_name(ServiceKind::RouterService, 1), "router-service-1");
        assert_eq!(ServiceKind::ApiGateway.instance_name(1), "api-gateway-1");
    }

    #[test]
    fn platform_services_shift_with_the_offset() {
        let p = Ports::with_offset(400);
        assert_eq!((p.api_gateway, p.user_service, p.file_service), (8480, 8483, 8484));
        assert_eq!(ServiceKind::parse("gateway"), None);
        assert_eq!(ServiceKind::parse("api-gateway"), Some(ServiceKind::ApiGateway));
        assert_eq!(ServiceKind::parse("user"), Some(ServiceKind::UserService));
        assert_eq!(ServiceKind::parse("file"), Some(ServiceKind::FileService));
    }

    fn spec(offset: u16) -> StackSpec {
        StackSpec {
            server_bin: "/bin/chat4all-server".into(),
            provider_bin: "/bin/chat4all-provider".into(),
            provider_reject_rate: 0.1,
            kafka_libs: None,
            broker_data: "/tmp/stack/broker".into(),
            brokers: 1,
            ports: Ports::with_offset(offset),
            database_url: "postgres://x".into(),
            redis_url: "redis://x".into(),
            kafka_bootstrap: "127.0.0.1:9092".into(),
            embedded_broker: true,
            group_protocol: Default::default(),
        }
    }

    #[test]
    fn a_cluster_has_three_nodes_with_their_own_ports_and_dirs() {
        let s = StackSpec { brokers: 3, ..spec(700) };
        assert_eq!(s.broker_addresses(), ["127.0.0.1:9792", "127.0.0.1:9794", "127.0.0.1:9796"]);
        let n2 = s.broker_node(2);
        assert_eq!((n2.id, n2.port, n2.controller_port), (2, 9794, 9795));
        assert_eq!(n2.dir, PathBuf::from("/tmp/stack/broker-2"));
        assert_eq!(n2.voters, vec![(1, 9793), (2, 9795), (3, 9797)]);
        let one = spec(700);
        assert_eq!(one.broker_addresses(), ["127.0.0.1:9792"]);
        assert_eq!(one.broker_node(1).dir, PathBuf::from("/tmp/stack/broker"));
        assert!(one.broker_node(1).voters.is_empty());
    }

    #[test]
    fn providers_have_their_own_names_ports_and_binary() {
        assert_eq!(ServiceKind::parse("whatsapp-provider"), Some(ServiceKind::WhatsappProvider));
        assert_eq!(ServiceKind::parse("whatsapp"), Some(ServiceKind::WhatsappConnector), "a channel is its connector");
        assert_eq!(ServiceKind::TelegramProvider.instance_name(1), "telegram-provider-1");
        let s = spec(100);
        let l = s.launch(ServiceKind::InstagramProvider, 1).unwrap();
        assert_eq!(l.program, PathBuf::from("/bin/chat4all-provider"));
        assert_eq!(l.port, 8177);
        assert_eq!(l.probe, Probe::Http("/health"));
        assert!(l.args.windows(2).any(|w| w == ["--channel", "INSTAGRAM"]), "{:?}", l.args);
        assert!(l.args.windows(2).any(|w| w == ["--reject-rate", "0.1"]), "{:?}", l.args);
    }

    #[test]
    fn each_connector_is_pointed_at_its_channels_provider() {
        let s = spec(100);
        for (kind, port) in [
            (ServiceKind::WhatsappConnector, 8175),
            (ServiceKind::TelegramConnector, 8176),
            (ServiceKind::InstagramConnector, 8177),
        ] {
            let l = s.launch(kind, 1).unwrap();
            let url = l.env.iter().find(|(k, _)| k == "CHAT4ALL_PROVIDER_URL").map(|(_, v)| v.clone());
            assert_eq!(url, Some(format!("http://127.0.0.1:{port}")), "{kind:?}");
        }
        let router = s.launch(ServiceKind::RouterService, 1).unwrap();
        assert!(!router.env.iter().any(|(k, _)| k == "CHAT4ALL_PROVIDER_URL"));
    }
}
