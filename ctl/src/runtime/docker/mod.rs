//! The `docker` runtime: the platform's containers on a Docker engine, through its API (bollard).
//!
//! Containers are found by their Compose labels (`com.docker.compose.project`, `.service`,
//! `.container-number`), so a stack started by `docker-compose -p chat4all up` and one started by
//! `chat4allctl up --runtime docker` (module [`stack`]) are the same here. Instance names are the
//! Compose ones, `<service>-<number>` (`router-service-1`, `kafka-1`); the Compose service `kafka`
//! is the ctl's `broker`. `scale` does what Compose does: clone the service's container with the
//! next numbers and the same labels, or gracefully stop and remove the highest numbers.

pub mod compose;
pub mod image;
pub mod stack;
pub mod watch;

use std::collections::HashMap;
use std::time::Duration;

use bollard::models::{ContainerCreateBody, ContainerInspectResponse, EndpointSettings, NetworkingConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, EventsOptionsBuilder, KillContainerOptionsBuilder, ListContainersOptionsBuilder,
    LogsOptionsBuilder, RemoveContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use bollard::{ClientVersion, Docker};
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt, TryStreamExt};

use super::{
    EngineInfo, EventKind, InstanceEvent, InstanceInfo, InstanceState, LogStream, Runtime, RuntimeKind, ScaleResult,
    Verb,
};
use crate::error::usage;
use crate::spec::{Probe, ServiceKind};

pub const LABEL_PROJECT: &str = "com.docker.compose.project";
pub const LABEL_SERVICE: &str = "com.docker.compose.service";
pub const LABEL_NUMBER: &str = "com.docker.compose.container-number";
pub const LABEL_ONEOFF: &str = "com.docker.compose.oneoff";
/// The port an instance serves on the host (containers of `up --runtime docker` run on the host
/// network); without it, the port of `CHAT4ALL_LISTEN` or `--listen`.
pub const LABEL_PORT: &str = "chat4all.port";

/// The engine's socket when `DOCKER_HOST` does not name one.
pub const DEFAULT_SOCKET: &str = "unix:///var/run/docker.sock";

/// The oldest engine API we speak: Debian's dockerd 20.10 (bollard negotiates down to it).
const MIN_API: ClientVersion = ClientVersion { major_version: 1, minor_version: 41 };

/// How long a stop waits for a graceful exit before the engine sends SIGKILL (a consumer
/// commits and leaves its group within it; Compose's `stop_grace_period` in compose/).
const STOP_GRACE_SECS: i32 = 20;

/// How long a started container has to pass its readiness probe.
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// The engine's socket: `DOCKER_HOST` (a `unix://` address), else the default.
pub fn socket() -> String {
    std::env::var("DOCKER_HOST").ok().filter(|s| !s.is_empty()).unwrap_or_else(|| DEFAULT_SOCKET.to_string())
}

/// The Compose project of the stack: `CHAT4ALL_COMPOSE_PROJECT`, else `COMPOSE_PROJECT_NAME`, else
/// `chat4all`.
pub fn default_project() -> String {
    ["CHAT4ALL_COMPOSE_PROJECT", "COMPOSE_PROJECT_NAME"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "chat4all".to_string())
}

/// The Compose service of a ctl service (`broker` runs as `kafka`).
pub fn compose_service(kind: ServiceKind) -> &'static str {
    match kind {
        ServiceKind::Broker => "kafka",
        k => k.name(),
    }
}

/// The ctl service of a Compose service, when it is one of the platform's.
pub fn service_kind(compose: &str) -> Option<ServiceKind> {
    ServiceKind::ALL.into_iter().find(|k| compose_service(*k) == compose)
}

/// One of the project's containers, as its labels and state say.
#[derive(Debug, Clone)]
pub struct Container {
    pub id: String,
    /// The engine's name, without the leading `/` (`chat4all-router-service-1`).
    pub container_name: String,
    pub service: String,
    pub number: u32,
    pub inspect: ContainerInspectResponse,
}

impl Container {
    pub fn instance(&self) -> String {
        format!("{}-{}", self.service, self.number)
    }

    fn labels(&self) -> HashMap<String, String> {
        self.inspect.config.as_ref().and_then(|c| c.labels.clone()).unwrap_or_default()
    }

    fn env(&self) -> Vec<String> {
        self.inspect.config.as_ref().and_then(|c| c.env.clone()).unwrap_or_default()
    }

    fn cmd(&self) -> Vec<String> {
        self.inspect.config.as_ref().and_then(|c| c.cmd.clone()).unwrap_or_default()
    }

    pub fn port(&self) -> u16 {
        if let Some(p) = self.labels().get(LABEL_PORT).and_then(|p| p.parse().ok()) {
            return p;
        }
        let from_env = self.env().iter().find_map(|e| e.strip_prefix("CHAT4ALL_LISTEN=").and_then(port_of_addr));
        let cmd = self.cmd();
        let from_args = cmd.windows(2).find(|w| w[0] == "--listen").and_then(|w| port_of_addr(&w[1]));
        from_env.or(from_args).unwrap_or(0)
    }

    pub fn running(&self) -> bool {
        self.inspect.state.as_ref().and_then(|s| s.running).unwrap_or(false)
    }

    pub fn info(&self) -> InstanceInfo {
        let st = self.inspect.state.clone().unwrap_or_default();
        let status = st.status.map(|s| s.to_string()).unwrap_or_default();
        let started_at = st.started_at.as_deref().and_then(parse_time).filter(|t| t.timestamp() > 0);
        let finished = st.finished_at.as_deref().and_then(parse_time).is_some_and(|t| t.timestamp() > 0);
        let code = st.exit_code.unwrap_or(0);
        let state = match status.as_str() {
            "running" if st.health.as_ref().and_then(|h| h.status).is_some_and(|h| h.to_string() == "starting") => {
                InstanceState::Starting
            }
            "running" | "paused" => InstanceState::Running,
            "restarting" => InstanceState::Starting,
            "removing" => InstanceState::Stopping,
            "exited" | "dead" if code == 137 => InstanceState::Killed,
            "exited" | "dead" if code == 0 || code == 143 => InstanceState::Stopped,
            "exited" | "dead" => InstanceState::Exited,
            _ => InstanceState::Stopped, // created, never started
        };
        let last_exit = (finished && !state.is_alive()).then(|| exit_words(code));
        InstanceInfo {
            name: self.instance(),
            service: service_kind(&self.service).map(|k| k.name().to_string()).unwrap_or_else(|| self.service.clone()),
            state,
            pid: st.pid.filter(|p| *p > 0).map(|p| p as u32),
            port: self.port(),
            started_at,
            last_exit,
            container: Some(self.id.chars().take(12).collect()),
        }
    }
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&Utc))
}

fn port_of_addr(addr: &str) -> Option<u16> {
    addr.rsplit_once(':').and_then(|(_, p)| p.parse().ok())
}

/// The signal of an exit code above 128 (a process killed by a signal: 137 is SIGKILL).
pub fn signal_of(code: i64) -> Option<String> {
    match code {
        137 => Some("SIGKILL".into()),
        143 => Some("SIGTERM".into()),
        130 => Some("SIGINT".into()),
        c if (129..160).contains(&c) => Some(format!("signal {}", c - 128)),
        _ => None,
    }
}

/// `exit code 137 (SIGKILL)`, in the supervisor's words where they fit.
fn exit_words(code: i64) -> String {
    match signal_of(code) {
        Some(sig) => format!("exit code {code} (killed by {sig})"),
        None => format!("exit code {code}"),
    }
}

/// A value from a bollard error: an engine's 404 is an unknown name (exit 2), the rest is an error.
fn engine_error(e: bollard::errors::Error, what: &str) -> anyhow::Error {
    match e {
        bollard::errors::Error::DockerResponseServerError { status_code: 404, message } => {
            usage(format!("{what}: {message}"))
        }
        bollard::errors::Error::DockerResponseServerError { status_code, message } => {
            anyhow::anyhow!("{what}: the engine answered {status_code}: {message}")
        }
        e => anyhow::Error::new(e).context(what.to_string()),
    }
}

/// Rewrites `KEY=value` in an environment list (added when missing).
fn set_env(env: &mut Vec<String>, key: &str, value: &str) {
    let prefix = format!("{key}=");
    env.retain(|e| !e.starts_with(&prefix));
    env.push(format!("{prefix}{value}"));
}

/// The container configuration of replica `number`, cloned from `template` (replica
/// `template.number`): the same image, command, environment, host config, networks and labels;
/// the container number, the instance name and the listening port follow the new number (a port
/// shifts by the difference, so `router-service-1` on 8091 makes `router-service-4` on 8094).
pub fn clone_config(template: &Container, number: u32) -> ContainerCreateBody {
    let cfg = template.inspect.config.clone().unwrap_or_default();
    let shift = |port: u16| (port as i64 + number as i64 - template.number as i64).clamp(1, 65535) as u16;
    let shift_addr = |addr: &str| match addr.rsplit_once(':') {
        Some((host, p)) => {
            p.parse::<u16>().map(|p| format!("{host}:{}", shift(p))).unwrap_or_else(|_| addr.to_string())
        }
        None => addr.to_string(),
    };
    let instance = format!("{}-{number}", template.service);
    let mut env = cfg.env.clone().unwrap_or_default();
    if let Some(listen) = env.iter().find_map(|e| e.strip_prefix("CHAT4ALL_LISTEN=")).map(str::to_owned) {
        set_env(&mut env, "CHAT4ALL_LISTEN", &shift_addr(&listen));
    }
    if env.iter().any(|e| e.starts_with("CHAT4ALL_INSTANCE=")) {
        set_env(&mut env, "CHAT4ALL_INSTANCE", &instance);
    }
    let mut cmd = cfg.cmd.clone();
    if let Some(args) = cmd.as_mut() {
        for i in 1..args.len() {
            match args[i - 1].as_str() {
                "--instance" => args[i] = instance.clone(),
                "--listen" => args[i] = shift_addr(&args[i]),
                _ => {}
            }
        }
    }
    // A healthcheck that probes the template's port probes the clone's.
    let old_port = template.port();
    let healthcheck = cfg.healthcheck.map(|mut h| {
        if old_port > 0 {
            let (from, to) = (format!(":{old_port}"), format!(":{}", shift(old_port)));
            h.test = h.test.map(|t| t.into_iter().map(|a| replace_port(&a, &from, &to)).collect());
        }
        h
    });
    let mut labels = cfg.labels.clone().unwrap_or_default();
    labels.insert(LABEL_NUMBER.into(), number.to_string());
    if let Some(p) = labels.get(LABEL_PORT).and_then(|p| p.parse::<u16>().ok()) {
        labels.insert(LABEL_PORT.into(), shift(p).to_string());
    }
    let host_config = template.inspect.host_config.clone();
    let mode = host_config.as_ref().and_then(|h| h.network_mode.clone()).unwrap_or_default();
    // A user network: the same networks, each with the service's name as an alias (what Compose
    // sets, so `kafka` or `router-service` resolve). The host and default networks take none.
    let networking_config = (!matches!(mode.as_str(), "host" | "bridge" | "default" | "none" | "")).then(|| {
        let networks = template.inspect.network_settings.as_ref().and_then(|n| n.networks.clone()).unwrap_or_default();
        let endpoints = networks
            .into_keys()
            .map(|net| {
                let settings = EndpointSettings { aliases: Some(vec![template.service.clone()]), ..Default::default() };
                (net, settings)
            })
            .collect();
        NetworkingConfig { endpoints_config: Some(endpoints) }
    });
    ContainerCreateBody {
        user: cfg.user,
        env: Some(env),
        cmd,
        healthcheck,
        image: cfg.image,
        working_dir: cfg.working_dir,
        entrypoint: cfg.entrypoint,
        labels: Some(labels),
        stop_signal: cfg.stop_signal,
        stop_timeout: cfg.stop_timeout,
        host_config,
        networking_config,
        ..Default::default()
    }
}

/// `from` (`:8091`) replaced by `to` where it is a whole port: at the end or before `/`.
fn replace_port(arg: &str, from: &str, to: &str) -> String {
    let mut out = String::with_capacity(arg.len());
    let mut rest = arg;
    while let Some(i) = rest.find(from) {
        let after = &rest[i + from.len()..];
        let whole = after.is_empty() || after.starts_with('/');
        out.push_str(&rest[..i]);
        out.push_str(if whole { to } else { from });
        rest = after;
    }
    out.push_str(rest);
    out
}

/// The engine's name of replica `number`, from the template's: its number at the end replaced
/// (Compose v1 `project_service_1`, v2 `project-service-1`).
pub fn clone_name(template: &Container, number: u32) -> String {
    let name = &template.container_name;
    let suffix = template.number.to_string();
    match name.strip_suffix(&suffix) {
        Some(stem) if stem.ends_with(['-', '_']) => format!("{stem}{number}"),
        _ => format!("{name}-{number}"),
    }
}

#[derive(Clone)]
pub struct DockerRuntime {
    docker: Docker,
    project: String,
    socket: String,
    version: String,
    http: reqwest::Client,
    /// Kafka and Redis of the stack, for the LeaveGroup on behalf of a killed member.
    failover: Option<Failover>,
}

/// Where a killed member's group and its reports are (see [`crate::failover`]).
#[derive(Debug, Clone)]
pub struct Failover {
    pub bootstrap: String,
    pub redis_url: String,
}

impl DockerRuntime {
    /// Connects to the engine at [`socket`]; a one-line usage error naming the socket when none
    /// answers there.
    pub async fn connect(project: &str) -> anyhow::Result<Self> {
        let socket = socket();
        if !socket.starts_with("unix://") && !socket.starts_with('/') {
            return Err(usage(format!("DOCKER_HOST={socket}: only a unix:// socket is supported")));
        }
        let unreachable = |e: &dyn std::fmt::Display| {
            usage(format!(
                "no Docker engine answers at {socket} ({e}); start one (scripts/bootstrap.sh --docker) or set DOCKER_HOST"
            ))
        };
        let docker = Docker::connect_with_socket(&socket, 120, &MIN_API).map_err(|e| unreachable(&e))?;
        let docker = docker.negotiate_version().await.map_err(|e| unreachable(&e))?;
        let version = docker.version().await.map_err(|e| unreachable(&e))?;
        let version = version.version.unwrap_or_else(|| "unknown".into());
        let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
        Ok(Self { docker, project: project.to_string(), socket, version, http, failover: None })
    }

    /// Removes a killed instance's members from their groups at once (as the supervisor does).
    pub fn with_failover(mut self, failover: Failover) -> Self {
        self.failover = Some(failover);
        self
    }

    /// LeaveGroup for every group the dead instance (host pid `pid`) was a member of; one line
    /// per outcome. The containers of `up --runtime docker` share the host's pid namespace, so
    /// the pid a router reports is the engine's.
    pub async fn leave_on_behalf(&self, instance: &str, service: &str, pid: u32) -> Vec<String> {
        let (Some(f), Some(kind)) = (&self.failover, service_kind(service)) else { return vec![] };
        if !kind.is_group_member() {
            return vec![];
        }
        crate::failover::leave_for_dead_lines(&f.bootstrap, &f.redis_url, instance, pid).await
    }

    pub fn socket(&self) -> &str {
        &self.socket
    }

    pub fn project(&self) -> &str {
        &self.project
    }

    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// Whether the project has any container, running or not.
    pub async fn has_containers(&self) -> bool {
        self.containers().await.is_ok_and(|c| !c.is_empty())
    }

    fn project_filter(&self) -> HashMap<String, Vec<String>> {
        HashMap::from([("label".to_string(), vec![format!("{LABEL_PROJECT}={}", self.project)])])
    }

    /// The project's containers (one-off ones left out), by service and number.
    pub async fn containers(&self) -> anyhow::Result<Vec<Container>> {
        let filters = self.project_filter();
        let opts = ListContainersOptionsBuilder::default().all(true).filters(&filters).build();
        let list = self.docker.list_containers(Some(opts)).await.map_err(|e| engine_error(e, "listing containers"))?;
        let inspects = list.into_iter().filter_map(|c| {
            let labels = c.labels.unwrap_or_default();
            if labels.get(LABEL_ONEOFF).is_some_and(|v| v.eq_ignore_ascii_case("true")) {
                return None;
            }
            let service = labels.get(LABEL_SERVICE)?.clone();
            let number = labels.get(LABEL_NUMBER).and_then(|n| n.parse().ok()).unwrap_or(1);
            let id = c.id?;
            Some(async move {
                let inspect = self.docker.inspect_container(&id, None).await.ok()?;
                let container_name = inspect.name.clone().unwrap_or_default().trim_start_matches('/').to_string();
                Some(Container { id, container_name, service, number, inspect })
            })
        });
        let mut out: Vec<Container> = futures::future::join_all(inspects).await.into_iter().flatten().collect();
        out.sort_by_key(|c| (service_kind(&c.service), c.service.clone(), c.number));
        Ok(out)
    }

    /// The container of an instance (`router-service-1`), or a usage error naming the known ones.
    pub async fn find(&self, instance: &str) -> anyhow::Result<Container> {
        let all = self.containers().await?;
        let names: Vec<String> = all.iter().map(Container::instance).collect();
        all.into_iter().find(|c| c.instance() == instance).ok_or_else(|| {
            usage(format!(
                "unknown instance {instance:?} in Compose project {:?} (known: {})",
                self.project,
                if names.is_empty() { "none".to_string() } else { names.join(", ") }
            ))
        })
    }

    async fn inspect(&self, id: &str) -> anyhow::Result<ContainerInspectResponse> {
        self.docker.inspect_container(id, None).await.map_err(|e| engine_error(e, "inspecting a container"))
    }

    /// Waits until the container is no longer running.
    async fn wait_exited(&self, id: &str, timeout: Duration) -> anyhow::Result<Option<i64>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let st = self.inspect(id).await?.state.unwrap_or_default();
            if !st.running.unwrap_or(false) {
                return Ok(st.exit_code);
            }
            if tokio::time::Instant::now() > deadline {
                anyhow::bail!("container {id} still runs after {}s", timeout.as_secs());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until a started container is ready: its healthcheck says healthy where it has one,
    /// else the service's probe answers (`/health/live`, `/health`, or Kafka ApiVersions).
    pub async fn wait_ready(&self, c: &Container) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        let port = c.port();
        // One of ours that is no platform service (the failover watcher) answers /health.
        let probe = service_kind(&c.service).map(probe_of).or((port > 0).then_some(Probe::Http("/health")));
        loop {
            let st = self.inspect(&c.id).await?.state.unwrap_or_default();
            if !st.running.unwrap_or(false) && st.restarting != Some(true) {
                anyhow::bail!(
                    "{} exited while starting ({}); see `chat4allctl logs {} --runtime docker`",
                    c.instance(),
                    exit_words(st.exit_code.unwrap_or(0)),
                    c.instance()
                );
            }
            let ready = match st.health.and_then(|h| h.status) {
                Some(h) if h.to_string() != "none" && !h.to_string().is_empty() => h.to_string() == "healthy",
                _ => match probe {
                    Some(p) if port > 0 => crate::health::ready(&self.http, port, p).await,
                    _ => true,
                },
            };
            if ready {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                anyhow::bail!("{} did not become ready within {}s", c.instance(), START_TIMEOUT.as_secs());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn start_container(&self, c: &Container) -> anyhow::Result<()> {
        self.docker.start_container(&c.id, None).await.map_err(|e| engine_error(e, "starting a container"))?;
        self.wait_ready(c).await
    }

    pub(crate) async fn stop_container(&self, c: &Container) -> anyhow::Result<Option<i64>> {
        let opts = StopContainerOptionsBuilder::default().t(STOP_GRACE_SECS).build();
        self.docker.stop_container(&c.id, Some(opts)).await.map_err(|e| engine_error(e, "stopping a container"))?;
        self.wait_exited(&c.id, Duration::from_secs(STOP_GRACE_SECS as u64 + 5)).await
    }

    async fn do_act(&self, name: &str, verb: Verb) -> anyhow::Result<String> {
        let c = self.find(name).await?;
        let short: String = c.id.chars().take(12).collect();
        match verb {
            Verb::Kill => {
                if !c.running() {
                    return Err(usage(format!("{name} is not running")));
                }
                let pid = c.inspect.state.as_ref().and_then(|s| s.pid).unwrap_or(0) as u32;
                let opts = KillContainerOptionsBuilder::default().signal("SIGKILL").build();
                self.docker.kill_container(&c.id, Some(opts)).await.map_err(|e| engine_error(e, "killing"))?;
                let code = self.wait_exited(&c.id, Duration::from_secs(10)).await?;
                let mut msg = format!("killed {name} (container {short}, SIGKILL; exit code {})", code.unwrap_or(-1));
                for line in self.leave_on_behalf(name, &c.service, pid).await {
                    msg.push_str("; ");
                    msg.push_str(&line);
                }
                Ok(msg)
            }
            Verb::Stop => {
                if !c.running() {
                    return Ok(format!("{name} is not running"));
                }
                let code = self.stop_container(&c).await?;
                Ok(format!("stopped {name} (container {short}, SIGTERM; exit code {})", code.unwrap_or(-1)))
            }
            Verb::Start => {
                if c.running() {
                    return Err(usage(format!("{name} is already running (container {short})")));
                }
                self.start_container(&c).await?;
                Ok(format!("started {name} (container {short})"))
            }
            Verb::Restart => {
                if c.running() {
                    self.stop_container(&c).await?;
                }
                self.start_container(&c).await?;
                Ok(format!("restarted {name} (container {short})"))
            }
        }
    }

    async fn do_scale(&self, service: &str, replicas: u32) -> anyhow::Result<ScaleResult> {
        let compose = ServiceKind::parse(service).map(compose_service).unwrap_or(service);
        let all: Vec<Container> = self.containers().await?.into_iter().filter(|c| c.service == compose).collect();
        let template = all.first().cloned().ok_or_else(|| {
            usage(format!("no container of service {compose:?} in Compose project {:?} to scale from", self.project))
        })?;
        let before = all.iter().filter(|c| c.running()).count() as u32;
        let mut started = Vec::new();
        let mut stopped = Vec::new();
        // Numbers 1..=replicas run; the ones above stop and go (Compose removes them too).
        for n in 1..=replicas {
            let c = match all.iter().find(|c| c.number == n) {
                Some(c) => c.clone(),
                None => {
                    let opts = CreateContainerOptionsBuilder::default().name(&clone_name(&template, n)).build();
                    let created = self
                        .docker
                        .create_container(Some(opts), clone_config(&template, n))
                        .await
                        .map_err(|e| engine_error(e, "creating a container"))?;
                    let inspect = self.inspect(&created.id).await?;
                    let container_name = inspect.name.clone().unwrap_or_default().trim_start_matches('/').to_string();
                    Container { id: created.id, container_name, service: compose.to_string(), number: n, inspect }
                }
            };
            if !c.running() {
                self.start_container(&c).await?;
                started.push(c.instance());
            }
        }
        let mut extra: Vec<&Container> = all.iter().filter(|c| c.number > replicas).collect();
        extra.sort_by_key(|c| std::cmp::Reverse(c.number));
        for c in extra {
            if c.running() {
                self.stop_container(c).await?;
                stopped.push(c.instance());
            }
            let opts = RemoveContainerOptionsBuilder::default().force(true).build();
            self.docker.remove_container(&c.id, Some(opts)).await.map_err(|e| engine_error(e, "removing"))?;
        }
        let service = service_kind(compose).map(|k| k.name().to_string()).unwrap_or_else(|| compose.to_string());
        Ok(ScaleResult { service, before, after: replicas, started, stopped })
    }

    fn log_stream(&self, name: &str, follow: bool, tail: String) -> LogStream<'static> {
        let docker = self.docker.clone();
        let this = self.clone();
        let name = name.to_string();
        futures::stream::once(async move { this.find(&name).await })
            .map_ok(move |c| {
                let opts = LogsOptionsBuilder::default().stdout(true).stderr(true).follow(follow).tail(&tail).build();
                docker.logs(&c.id, Some(opts)).map_ok(|o| o.into_bytes()).map_err(|e| engine_error(e, "reading logs"))
            })
            .try_flatten()
            .boxed()
    }

    /// The container's log from now on, across its restarts (the engine ends a follow when the
    /// container stops; this waits for the next run and attaches again). Lines carry the engine's
    /// timestamps while read, so a line is never shown twice; they are stripped before output.
    fn follow_across_runs(&self, name: &str) -> LogStream<'static> {
        let (tx, rx) = tokio::sync::mpsc::channel::<anyhow::Result<bytes::Bytes>>(64);
        let this = self.clone();
        let name = name.to_string();
        tokio::spawn(async move {
            let mut last = Utc::now();
            loop {
                let c = match this.find(&name).await {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                if !c.running() {
                    if tx.is_closed() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    continue;
                }
                let since = last.timestamp() as i32;
                let opts = LogsOptionsBuilder::default()
                    .stdout(true)
                    .stderr(true)
                    .follow(true)
                    .timestamps(true)
                    .since(since)
                    .build();
                let mut logs = this.docker.logs(&c.id, Some(opts));
                while let Some(chunk) = logs.next().await {
                    let chunk = match chunk {
                        Ok(o) => o.into_bytes(),
                        Err(e) => {
                            let _ = tx.send(Err(engine_error(e, "reading logs"))).await;
                            return;
                        }
                    };
                    let (fresh, newest) = strip_seen(&chunk, last);
                    last = newest;
                    if !fresh.is_empty() && tx.send(Ok(fresh.into())).await.is_err() {
                        return;
                    }
                }
            }
        });
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) }).boxed()
    }
}

/// The lines of a timestamped log chunk written after `seen`, without their timestamps, and the
/// newest timestamp in it (`2026-12-03T19:17:08.745276123Z message`).
pub fn strip_seen(chunk: &[u8], seen: DateTime<Utc>) -> (Vec<u8>, DateTime<Utc>) {
    let mut out = Vec::new();
    let mut newest = seen;
    for line in chunk.split_inclusive(|b| *b == b'\n') {
        let text = String::from_utf8_lossy(line);
        let Some((ts, rest)) = text.split_once(' ') else { continue };
        let Some(at) = parse_time(ts) else {
            out.extend_from_slice(line);
            continue;
        };
        if at > seen {
            out.extend_from_slice(rest.as_bytes());
            newest = newest.max(at);
        }
    }
    (out, newest)
}

/// How a ctl service tells it is ready (the supervisor's probes).
pub fn probe_of(kind: ServiceKind) -> Probe {
    match kind {
        ServiceKind::Broker => Probe::Kafka,
        k if k.is_provider() => Probe::Http("/health"),
        _ => Probe::Http("/health/live"),
    }
}

impl Runtime for DockerRuntime {
    /// No sampler runs beside containers: lag status starts from its first look.
    fn lag_history(&self) -> BoxFuture<'_, anyhow::Result<crate::lag::LagHistory>> {
        Box::pin(async { Ok(crate::lag::LagHistory::default()) })
    }

    /// The engine keeps no log of our actions.
    fn actions(&self) -> BoxFuture<'_, anyhow::Result<Vec<super::Action>>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn record_action<'a>(&'a self, _: &'a str, _: &'a str, _: &'a str) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async { Ok(()) })
    }

    fn engine(&self) -> EngineInfo {
        EngineInfo {
            runtime: RuntimeKind::Docker,
            engine: format!("docker {} (project {})", self.version, self.project),
            endpoint: self.socket.clone(),
        }
    }

    fn list(&self) -> BoxFuture<'_, anyhow::Result<Vec<InstanceInfo>>> {
        async move { Ok(self.containers().await?.iter().map(Container::info).collect()) }.boxed()
    }

    fn act<'a>(&'a self, name: &'a str, verb: Verb) -> BoxFuture<'a, anyhow::Result<String>> {
        self.do_act(name, verb).boxed()
    }

    fn scale<'a>(&'a self, service: &'a str, replicas: u32) -> BoxFuture<'a, anyhow::Result<ScaleResult>> {
        self.do_scale(service, replicas).boxed()
    }

    fn logs<'a>(&'a self, name: &'a str, lines: usize) -> BoxFuture<'a, anyhow::Result<String>> {
        async move {
            let chunks: Vec<bytes::Bytes> = self.log_stream(name, false, lines.to_string()).try_collect().await?;
            let text: String = chunks.iter().map(|b| String::from_utf8_lossy(b)).collect();
            Ok(text.trim_end_matches('\n').to_string())
        }
        .boxed()
    }

    fn follow<'a>(&'a self, name: &'a str) -> LogStream<'a> {
        self.follow_across_runs(name)
    }

    /// The engine's `start` and `die` events of the project's containers.
    fn events(&self) -> BoxStream<'_, anyhow::Result<InstanceEvent>> {
        let mut filters = self.project_filter();
        filters.insert("type".into(), vec!["container".into()]);
        filters.insert("event".into(), vec!["start".into(), "die".into()]);
        let opts = EventsOptionsBuilder::default().filters(&filters).build();
        self.docker
            .events(Some(opts))
            .map_err(|e| engine_error(e, "reading the engine's events"))
            .try_filter_map(|m| async move { Ok(event_of(&m)) })
            .boxed()
    }
}

/// A platform instance's event from an engine event (`start`, or `die` with its `exitCode`).
pub fn event_of(m: &bollard::models::EventMessage) -> Option<InstanceEvent> {
    let attrs = m.actor.as_ref()?.attributes.clone().unwrap_or_default();
    let compose = attrs.get(LABEL_SERVICE)?;
    let number = attrs.get(LABEL_NUMBER).map(String::as_str).unwrap_or("1");
    let kind = match m.action.as_deref()? {
        "start" => EventKind::Started,
        "die" => {
            let code = attrs.get("exitCode").and_then(|c| c.parse::<i64>().ok());
            EventKind::Exited { code, signal: code.and_then(signal_of) }
        }
        _ => return None,
    };
    let at = m
        .time_nano
        .map(DateTime::from_timestamp_nanos)
        .or_else(|| m.time.and_then(|t| DateTime::from_timestamp(t, 0)))
        .unwrap_or_else(Utc::now);
    Some(InstanceEvent {
        at,
        instance: format!("{compose}-{number}"),
        service: service_kind(compose).map(|k| k.name().to_string()).unwrap_or_else(|| compose.clone()),
        kind,
    })
}

impl std::fmt::Debug for DockerRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerRuntime").field("socket", &self.socket).field("project", &self.project).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{ContainerConfig, HostConfig};

    fn template(name: &str, number: u32, env: &[&str], cmd: &[&str], port_label: Option<u16>) -> Container {
        let mut labels = HashMap::from([
            (LABEL_PROJECT.to_string(), "p".to_string()),
            (LABEL_SERVICE.to_string(), "router-service".to_string()),
            (LABEL_NUMBER.to_string(), number.to_string()),
        ]);
        if let Some(p) = port_label {
            labels.insert(LABEL_PORT.into(), p.to_string());
        }
        Container {
            id: "abc".into(),
            container_name: name.into(),
            service: "router-service".into(),
            number,
            inspect: ContainerInspectResponse {
                config: Some(ContainerConfig {
                    env: Some(env.iter().map(|s| s.to_string()).collect()),
                    cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
                    image: Some("chat4all-server:local".into()),
                    labels: Some(labels),
                    ..Default::default()
                }),
                host_config: Some(HostConfig { network_mode: Some("host".into()), ..Default::default() }),
                ..Default::default()
            },
        }
    }

    #[test]
    fn a_clone_takes_the_next_number_name_and_port() {
        let t = template(
            "p-router-service-1",
            1,
            &["CHAT4ALL_INSTANCE=router-service-1", "CHAT4ALL_LISTEN=127.0.0.1:8691", "KAFKA_BOOTSTRAP=k:1"],
            &["router-service"],
            Some(8691),
        );
        assert_eq!(t.port(), 8691);
        let c = clone_config(&t, 4);
        let env = c.env.unwrap();
        assert!(env.contains(&"CHAT4ALL_INSTANCE=router-service-4".to_string()), "{env:?}");
        assert!(env.contains(&"CHAT4ALL_LISTEN=127.0.0.1:8694".to_string()), "{env:?}");
        assert!(env.contains(&"KAFKA_BOOTSTRAP=k:1".to_string()));
        let labels = c.labels.unwrap();
        assert_eq!(labels[LABEL_NUMBER], "4");
        assert_eq!(labels[LABEL_PORT], "8694");
        assert_eq!(labels[LABEL_PROJECT], "p");
        assert!(c.networking_config.is_none(), "host network: no endpoints");
        assert_eq!(clone_name(&t, 4), "p-router-service-4");
        let v1 = template("p_router-service_1", 1, &[], &[], None);
        assert_eq!(clone_name(&v1, 12), "p_router-service_12");
    }

    #[test]
    fn a_clone_rewrites_compose_style_arguments() {
        let t = template(
            "x_router-service_2",
            2,
            &[],
            &["--instance", "router-service-2", "--listen", "0.0.0.0:8092", "router-service"],
            None,
        );
        assert_eq!(t.port(), 8092);
        let c = clone_config(&t, 3);
        assert_eq!(c.cmd.unwrap(), ["--instance", "router-service-3", "--listen", "0.0.0.0:8093", "router-service"]);
    }

    #[test]
    fn a_clone_probes_its_own_port() {
        let mut t = template("x_router-service_1", 1, &[], &["--listen", "127.0.0.1:8691", "router-service"], None);
        let probe = ["CMD", "/bin/server", "probe", "http://127.0.0.1:8691/health/live"].map(String::from).to_vec();
        if let Some(cfg) = t.inspect.config.as_mut() {
            cfg.healthcheck = Some(bollard::models::HealthConfig { test: Some(probe), ..Default::default() });
        }
        let c = clone_config(&t, 3);
        assert_eq!(c.healthcheck.and_then(|h| h.test).unwrap()[3], "http://127.0.0.1:8693/health/live");
        assert_eq!(replace_port("a:86910 b:8691", ":8691", ":8693"), "a:86910 b:8693");
    }

    #[test]
    fn a_followed_log_drops_what_was_seen_and_the_timestamps() {
        let seen = parse_time("2026-12-03T19:17:08.5Z").unwrap();
        let chunk = b"2026-12-03T19:17:08.4Z old\n2026-12-03T19:17:08.6Z new one\n2026-12-03T19:17:09Z two\n";
        let (out, newest) = strip_seen(chunk, seen);
        assert_eq!(String::from_utf8(out).unwrap(), "new one\ntwo\n");
        assert_eq!(newest, parse_time("2026-12-03T19:17:09Z").unwrap());
        let (again, _) = strip_seen(chunk, newest);
        assert!(again.is_empty());
    }

    #[test]
    fn exit_codes_name_their_signal() {
        assert_eq!(signal_of(137).as_deref(), Some("SIGKILL"));
        assert_eq!(signal_of(143).as_deref(), Some("SIGTERM"));
        assert_eq!(signal_of(1), None);
        assert_eq!(exit_words(137), "exit code 137 (killed by SIGKILL)");
    }

    #[test]
    fn engine_events_become_instance_events() {
        let m = bollard::models::EventMessage {
            action: Some("die".into()),
            actor: Some(bollard::models::EventActor {
                id: Some("abc".into()),
                attributes: Some(HashMap::from([
                    (LABEL_SERVICE.to_string(), "kafka".to_string()),
                    (LABEL_NUMBER.to_string(), "1".to_string()),
                    ("exitCode".to_string(), "137".to_string()),
                ])),
            }),
            time: Some(1_700_000_000),
            ..Default::default()
        };
        let e = event_of(&m).unwrap();
        assert_eq!(e.instance, "kafka-1");
        assert_eq!(e.service, "broker");
        assert_eq!(e.kind, EventKind::Exited { code: Some(137), signal: Some("SIGKILL".into()) });
    }

    #[test]
    fn compose_services_map_to_ctl_services() {
        assert_eq!(service_kind("kafka"), Some(ServiceKind::Broker));
        assert_eq!(compose_service(ServiceKind::Broker), "kafka");
        assert_eq!(service_kind("router-service"), Some(ServiceKind::RouterService));
        assert_eq!(service_kind("postgres"), None);
    }
}
