//! `up` and `down`: the local stack's lifecycle.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tokio::sync::Notify;

use super::Cli;
use chat4all_contract::group::GroupProtocol;
use chat4all_ctl::control::{self, SupervisorFile};
use chat4all_ctl::error::usage;
use chat4all_ctl::exporter::collect::InstanceSource;
use chat4all_ctl::exporter::{Exporter, DEFAULT_PORT as EXPORTER_PORT};
use chat4all_ctl::output::Format;
use chat4all_ctl::paths::DataDir;
use chat4all_ctl::runtime::client::ProcessRuntime;
use chat4all_ctl::runtime::supervisor::{tail_file, Supervisor};
use chat4all_ctl::runtime::{InstanceState, RuntimeKind};
use chat4all_ctl::sampler::Observations;
use chat4all_ctl::spec::{Ports, StackSpec};

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Router instances to start (consumer group `router-service`).
    #[arg(long, default_value_t = 3)]
    pub routers: u32,
    /// Kafka nodes to run: 1 (instance `broker`) or 3 (`broker-1..3`: one KRaft quorum,
    /// replication factor 3 and min.insync.replicas 2 for every topic; node N listens on
    /// 9092 + 2(N-1) + port offset). A stack keeps its data per node count: `--brokers 3` on a
    /// stack that ran with one starts an empty cluster.
    #[arg(long, env = "CHAT4ALL_BROKERS", default_value_t = 1)]
    pub brokers: u32,
    /// Start in the background and return once every instance is healthy.
    #[arg(short, long)]
    pub detach: bool,
    /// Port of the supervisor's control API (loopback only; default 7070 + port offset).
    #[arg(long, env = "CHAT4ALL_CONTROL_PORT")]
    pub control_port: Option<u16>,
    /// Shift every port of the stack (broker 9092, services 808x, routers 809x, control 7070) by
    /// this much (exporter 9308 too), to run a second stack beside the first (use its own --data-dir
    /// and database).
    #[arg(long, env = "CHAT4ALL_PORT_OFFSET", default_value_t = 0, value_parser = clap::value_parser!(u16).range(0..=1000))]
    pub port_offset: u16,
    /// How long `--detach` waits for the stack to become healthy.
    #[arg(long, default_value = "180s", value_parser = chat4all_ctl::output::parse_duration)]
    pub wait: Duration,
    /// Consumer group protocol of the routers and the status consumer: `consumer` (KIP-848, the
    /// broker assigns) or `classic`. BENCHMARKS.md (failover) compares them.
    #[arg(long, env = "CHAT4ALL_GROUP_PROTOCOL", value_enum, default_value_t = DEFAULT_GROUP_PROTOCOL)]
    pub group_protocol: GroupProtocol,
    /// The simulated providers' initial share of rejected items (0 to 1; retryable, nothing
    /// done). Change it while running with `chat4allctl provider faults`.
    #[arg(long, env = "CHAT4ALL_PROVIDER_FAILURE_RATE", default_value_t = 0.0, value_parser = parse_rate)]
    pub provider_failure_rate: f64,
    /// With `--runtime docker`: build the images and write the stack's files, start nothing, and
    /// write to this file the variables of compose/docker-compose.local.yml; then
    /// `docker-compose --env-file FILE -f compose/docker-compose.local.yml -p PROJECT up -d`
    /// starts the stack, and the ctl drives it (`chat4allctl scale router=3`).
    #[arg(long, value_name = "FILE")]
    pub compose_env: Option<std::path::PathBuf>,
    /// Run the supervisor in this process without interaction (what --detach starts).
    #[arg(long, hide = true)]
    pub supervise: bool,
}

/// The local stack's group protocol (the faster failover of the two, BENCHMARKS.md).
pub const DEFAULT_GROUP_PROTOCOL: GroupProtocol = GroupProtocol::Classic;

/// How often the supervisor samples group offsets (lag history for `lag`, the exporter).
const SAMPLE_INTERVAL: Duration = Duration::from_secs(2);

/// Aborts a background task when the supervisor returns.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn env_or(key: &str, default: &str) -> String {
    std::env::var(key).ok().filter(|v| !v.is_empty()).unwrap_or_else(|| default.to_string())
}

/// A share from 0 to 1.
pub fn parse_rate(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!("{s:?} is not a rate from 0 to 1")),
    }
}

/// A workspace binary: `$env`, else beside chat4allctl.
pub(crate) fn sibling_bin(env: &str, name: &str) -> anyhow::Result<PathBuf> {
    if let Ok(p) = std::env::var(env) {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().context("locating chat4allctl")?;
    let bin = exe.with_file_name(name);
    if !bin.is_file() {
        return Err(usage(format!("{} not found: build the platform first (cargo build --workspace)", bin.display())));
    }
    Ok(bin)
}

/// Where PostgreSQL or Redis listen, from their URLs, for a reachability check.
fn host_port(url: &str, default_port: u16) -> (String, u16) {
    let rest = url.split("://").nth(1).unwrap_or(url);
    let rest = rest.rsplit('@').next().unwrap_or(rest);
    let hostport = rest.split(['/', '?']).next().unwrap_or(rest);
    match hostport.rsplit_once(':') {
        Some((h, p)) => (h.to_string(), p.parse().unwrap_or(default_port)),
        None => (hostport.to_string(), default_port),
    }
}

async fn require_reachable(what: &str, url: &str, default_port: u16) -> anyhow::Result<()> {
    let (host, port) = host_port(url, default_port);
    let ok = tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect((host.as_str(), port)))
        .await
        .is_ok_and(|r| r.is_ok());
    if ok {
        Ok(())
    } else {
        Err(usage(format!(
            "{what} is not reachable at {host}:{port}: start it (scripts/bootstrap.sh installs and starts it) or set its URL"
        )))
    }
}

fn is_running(data: &DataDir) -> Option<SupervisorFile> {
    let text = std::fs::read_to_string(data.supervisor_file()).ok()?;
    let info: SupervisorFile = serde_json::from_str(&text).ok()?;
    pid_alive(info.pid).then_some(info)
}

/// Alive and not a zombie (an orphaned supervisor may wait for a reaper that never comes).
fn pid_alive(pid: u32) -> bool {
    if nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_err() {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit_once(") ").is_none_or(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

pub async fn up(cli: &Cli, args: &UpArgs) -> anyhow::Result<()> {
    let data = cli.data();
    if let Some(info) = is_running(&data) {
        return Err(usage(format!(
            "a stack is already running in {} (supervisor pid {}); `chat4allctl down` stops it",
            data.root().display(),
            info.pid
        )));
    }
    if args.routers == 0 || args.routers > 32 {
        return Err(usage("--routers must be from 1 to 32"));
    }
    if args.brokers != 1 && args.brokers != 3 {
        return Err(usage(format!("--brokers {} is not supported: 1 or 3", args.brokers)));
    }
    let database_url = env_or("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/chat4all");
    let redis_url = env_or("REDIS_URL", "redis://127.0.0.1:6379");
    require_reachable("PostgreSQL", &database_url, 5432).await?;
    require_reachable("Redis", &redis_url, 6379).await?;
    let server_bin = sibling_bin("CHAT4ALL_SERVER_BIN", "chat4all-server")?;
    let provider_bin = sibling_bin("CHAT4ALL_PROVIDER_BIN", "chat4all-provider")?;
    let external = std::env::var("KAFKA_BOOTSTRAP").ok().filter(|v| !v.is_empty());
    let kafka_libs = chat4all_ctl::broker::locate_libs();
    if external.is_none() && kafka_libs.is_none() {
        return Err(usage(format!(
            "Apache Kafka {} is not installed in {}: run scripts/bootstrap.sh (it fetches it from Maven Central once), \
             or set KAFKA_BOOTSTRAP to an existing Kafka",
            chat4all_ctl::broker::KAFKA_VERSION,
            chat4all_ctl::broker::tools_root().display()
        )));
    }
    if external.is_some() && args.brokers != 1 {
        return Err(usage("--brokers runs embedded Kafka nodes; with KAFKA_BOOTSTRAP set the stack uses that cluster"));
    }
    std::fs::create_dir_all(data.logs_dir()).with_context(|| format!("creating {}", data.root().display()))?;
    std::fs::create_dir_all(data.broker_dir())?;
    if cli.runtime == Some(RuntimeKind::Docker) {
        if args.brokers != 1 {
            return Err(usage(
                "--brokers 3 runs on the process runtime only (the docker runtime runs one Kafka container)",
            ));
        }
        let offset = if args.port_offset == 0 { DOCKER_PORT_OFFSET } else { args.port_offset };
        let spec = StackSpec {
            ports: Ports::with_offset(offset),
            broker_data: data.root().join("docker/broker"),
            kafka_bootstrap: external
                .clone()
                .unwrap_or_else(|| format!("127.0.0.1:{}", Ports::with_offset(offset).kafka)),
            embedded_broker: external.is_none(),
            brokers: 1,
            server_bin,
            provider_bin,
            provider_reject_rate: args.provider_failure_rate,
            kafka_libs,
            group_protocol: args.group_protocol,
            database_url,
            redis_url,
        };
        return match &args.compose_env {
            Some(file) => compose_env(cli, &data, spec, file).await,
            None => docker_up(cli, args, &data, spec).await,
        };
    }
    if args.compose_env.is_some() {
        return Err(usage("--compose-env writes the local Compose file's variables: it needs --runtime docker"));
    }
    if args.detach && !args.supervise {
        return detach(cli, args, &data).await;
    }
    let mut spec = StackSpec {
        server_bin,
        provider_bin,
        provider_reject_rate: args.provider_failure_rate,
        kafka_libs,
        broker_data: data.broker_dir(),
        brokers: args.brokers,
        kafka_bootstrap: String::new(),
        embedded_broker: external.is_none(),
        group_protocol: args.group_protocol,
        ports: Ports::with_offset(args.port_offset),
        database_url,
        redis_url,
    };
    spec.kafka_bootstrap = external.unwrap_or_else(|| spec.broker_addresses().join(","));
    supervise(&data, spec, args).await
}

async fn supervise(data: &DataDir, spec: StackSpec, args: &UpArgs) -> anyhow::Result<()> {
    let token = control::write_token(data)?;
    let sup = Arc::new(Supervisor::new(spec.clone(), data.clone()));
    let stop = Arc::new(Notify::new());
    let obs = Observations::default();
    let (addr, _api) = control::serve(
        sup.clone(),
        token,
        args.control_port.unwrap_or(7070 + args.port_offset),
        stop.clone(),
        obs.clone(),
    )
    .await?;
    // Offset history for lag status and lag seconds; it retries until the broker answers.
    let _sampler = AbortOnDrop(tokio::spawn(chat4all_ctl::sampler::run(
        spec.kafka_bootstrap.clone(),
        spec.redis_url.clone(),
        SAMPLE_INTERVAL,
        Duration::from_secs(5),
        obs.clone(),
    )));
    // The Prometheus exporter over the same observations (a busy port costs the exporter only).
    let exporter = Exporter::new(obs);
    let exporter_port = EXPORTER_PORT + args.port_offset;
    let (exporter_url, _exporter_tasks) = match exporter.serve(([127, 0, 0, 1], exporter_port).into()).await {
        Ok((addr, server)) => {
            let collector = exporter.collect(
                InstanceSource::Supervisor(sup.clone()),
                spec.redis_url.clone(),
                spec.kafka_bootstrap.clone(),
                SAMPLE_INTERVAL,
            );
            let pipeline = exporter.collect_pipeline(data.clone(), SAMPLE_INTERVAL);
            (
                Some(format!("http://{addr}/metrics")),
                Some((AbortOnDrop(server), AbortOnDrop(collector), AbortOnDrop(pipeline))),
            )
        }
        Err(e) => {
            tracing::warn!(error = format!("{e:#}"), "the exporter is not served");
            (None, None)
        }
    };
    let info = stack_file(&spec, std::process::id(), format!("http://{addr}"), exporter_url);
    let tmp = data.supervisor_file().with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&info)?)?;
    std::fs::rename(&tmp, data.supervisor_file())?;
    let signal = chat4all_ctl::signals::Interrupt::install();

    let started = tokio::select! {
        r = sup.start_stack(args.routers) => r,
        _ = signal.wait() => Err(anyhow::anyhow!("interrupted while starting")),
        _ = stop.notified() => Err(anyhow::anyhow!("shut down while starting")),
    };
    if let Err(e) = started {
        tracing::error!(error = format!("{e:#}"), "the stack did not start; stopping what did");
        sup.stop_all().await;
        cleanup(data);
        return Err(e);
    }
    if !args.supervise {
        println!(
            "chat4all is up: API {}  control {}  ({} routers). Ctrl-C stops it; `chat4allctl status` in another shell.",
            info.api_url, info.control_url, args.routers
        );
    }
    tracing::info!("stack up");
    tokio::select! {
        _ = signal.wait() => {}
        _ = stop.notified() => {}
    }
    tracing::info!("stopping the stack");
    sup.stop_all().await;
    cleanup(data);
    Ok(())
}

/// What a stack writes about itself for every client (`stack::Stack::find`).
fn stack_file(spec: &StackSpec, pid: u32, control_url: String, exporter_url: Option<String>) -> SupervisorFile {
    SupervisorFile {
        pid,
        control_url,
        started_at: chrono::Utc::now(),
        kafka_bootstrap: spec.kafka_bootstrap.clone(),
        api_url: format!("http://127.0.0.1:{}", spec.ports.message_service),
        database_url: Some(spec.database_url.clone()),
        redis_url: Some(spec.redis_url.clone()),
        exporter_url,
        gateway_url: Some(format!("http://127.0.0.1:{}", spec.ports.api_gateway)),
        group_protocol: Some(spec.group_protocol.as_str().into()),
        provider_urls: chat4all_contract::channel::Channel::ALL
            .into_iter()
            .map(|ch| (ch.label().to_string(), format!("http://127.0.0.1:{}", spec.ports.provider(ch))))
            .collect(),
    }
}

/// The docker stack's ports: the process stack's shifted by this unless `--port-offset` says.
pub const DOCKER_PORT_OFFSET: u16 = 600;

/// `up --runtime docker`: builds the images, starts the labelled containers, writes the stack's
/// file; the containers run on without the ctl.
async fn docker_up(cli: &Cli, args: &UpArgs, data: &DataDir, spec: StackSpec) -> anyhow::Result<()> {
    use chat4all_ctl::runtime::docker::{stack, DockerRuntime};
    let rt = DockerRuntime::connect(&cli.project).await?;
    let token = control::write_token(data)?;
    let report = stack::up(&rt, &spec, args.routers, data, &token).await?;
    let info = stack_file(&spec, 0, rt.socket().to_string(), None);
    std::fs::write(data.docker_stack_file(), serde_json::to_vec_pretty(&info)?)?;
    match cli.output {
        Format::Json => println!("{}", chat4all_ctl::output::json(&report)),
        Format::Table => println!(
            "chat4all is up on Docker (project {}, {}): {} containers in {:.1}s; API {}",
            report.project,
            rt.socket(),
            report.containers.len(),
            report.seconds,
            info.api_url
        ),
    }
    Ok(())
}

/// `up --runtime docker --compose-env FILE`: the images and the stack's files of `docker_up`, and
/// the variables of compose/docker-compose.local.yml in FILE; docker-compose starts the
/// containers.
async fn compose_env(cli: &Cli, data: &DataDir, spec: StackSpec, file: &std::path::Path) -> anyhow::Result<()> {
    use chat4all_ctl::runtime::docker::{compose, stack, DockerRuntime};
    if !spec.embedded_broker {
        return Err(usage("the local Compose file runs its own Kafka: unset KAFKA_BOOTSTRAP for --compose-env"));
    }
    let rt = DockerRuntime::connect(&cli.project).await?;
    let token = control::write_token(data)?;
    let images = stack::build_images(&rt, &spec, data).await?;
    let file = std::path::absolute(file).with_context(|| format!("locating {}", file.display()))?;
    let vars = compose::variables(&spec, &images, &token, &file, rt.project(), rt.socket())?;
    compose::write(&file, &vars)?;
    let info = stack_file(&spec, 0, rt.socket().to_string(), None);
    std::fs::write(data.docker_stack_file(), serde_json::to_vec_pretty(&info)?)?;
    let command = format!(
        "docker-compose --env-file {} -f compose/docker-compose.local.yml -p {} up -d",
        file.display(),
        rt.project()
    );
    match cli.output {
        Format::Json => println!(
            "{}",
            chat4all_ctl::output::json(&serde_json::json!({
                "envFile": file, "project": rt.project(), "images": [Some(&images.platform), images.broker.as_ref().map(|(t, _)| t)], "command": command
            }))
        ),
        Format::Table => println!("images built; variables in {}\nstart the stack with:\n  {command}", file.display()),
    }
    Ok(())
}

async fn docker_down(cli: &Cli, data: &DataDir) -> anyhow::Result<()> {
    use chat4all_ctl::runtime::docker::{stack, DockerRuntime};
    let rt = DockerRuntime::connect(&cli.project).await?;
    let removed = stack::down(&rt).await?;
    let _ = std::fs::remove_file(data.docker_stack_file());
    let _ = std::fs::remove_file(data.token_file());
    match cli.output {
        Format::Json => println!("{}", chat4all_ctl::output::json(&serde_json::json!({"removed": removed}))),
        Format::Table => println!("removed {} container(s) of project {}", removed.len(), rt.project()),
    }
    Ok(())
}

fn cleanup(data: &DataDir) {
    let _ = std::fs::remove_file(data.supervisor_file());
    let _ = std::fs::remove_file(data.token_file());
}

async fn detach(cli: &Cli, args: &UpArgs, data: &DataDir) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe()?;
    let log_path = data.logs_dir().join("supervisor.log");
    let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path)?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--data-dir")
        .arg(data.root())
        .arg("up")
        .arg("--supervise")
        .arg("--routers")
        .arg(args.routers.to_string())
        .arg("--brokers")
        .arg(args.brokers.to_string())
        .arg("--control-port")
        .arg(args.control_port.unwrap_or(7070 + args.port_offset).to_string())
        .arg("--port-offset")
        .arg(args.port_offset.to_string())
        .arg("--group-protocol")
        .arg(args.group_protocol.as_str())
        .arg("--provider-failure-rate")
        .arg(args.provider_failure_rate.to_string())
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    if cli.verbose {
        cmd.arg("--verbose");
    }
    // SAFETY: setsid is async-signal-safe; the supervisor gets its own session so closing this
    // terminal does not stop the stack.
    unsafe {
        cmd.pre_exec(|| nix::unistd::setsid().map(|_| ()).map_err(std::io::Error::from));
    }
    let mut child = cmd.spawn().context("starting the supervisor")?;
    let deadline = tokio::time::Instant::now() + args.wait;
    loop {
        if let Some(status) = child.try_wait()? {
            let tail = tail_file(&log_path, 1);
            return Err(anyhow::anyhow!(
                "the stack did not start ({status}): {tail} (full log: {})",
                log_path.display()
            ));
        }
        if let Ok(rt) = ProcessRuntime::connect(data, Duration::from_secs(2)) {
            if let Ok(list) = rt.list().await {
                let all_up = !list.is_empty()
                    && list.iter().all(|i| i.state == InstanceState::Running)
                    && list.iter().filter(|i| i.service == "router-service").count() as u32 == args.routers;
                if all_up {
                    println!(
                        "chat4all is up in the background: {} instances, API {}, supervisor pid {}",
                        list.len(),
                        rt.info.api_url,
                        rt.info.pid
                    );
                    return Ok(());
                }
            }
        }
        if tokio::time::Instant::now() > deadline {
            return Err(anyhow::anyhow!(
                "the stack did not become healthy within {}s; see {}",
                args.wait.as_secs(),
                log_path.display()
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

pub async fn down(cli: &Cli) -> anyhow::Result<()> {
    let data = cli.data();
    let docker_stack = data.docker_stack_file().exists() && !data.supervisor_file().exists();
    if cli.runtime == Some(RuntimeKind::Docker) || (cli.runtime.is_none() && docker_stack) {
        return docker_down(cli, &data).await;
    }
    let Some(info) = is_running(&data) else {
        cleanup(&data);
        println!("no stack running in {}", data.root().display());
        return Ok(());
    };
    let rt = ProcessRuntime::connect(&data, cli.timeout)?;
    rt.shutdown().await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while pid_alive(info.pid) {
        if tokio::time::Instant::now() > deadline {
            return Err(anyhow::anyhow!("the supervisor (pid {}) is still stopping after 60s", info.pid));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("chat4all stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::host_port;

    #[test]
    fn finds_host_and_port_in_urls() {
        assert_eq!(host_port("postgres://postgres@127.0.0.1:5432/chat4all", 5432), ("127.0.0.1".into(), 5432));
        assert_eq!(host_port("redis://127.0.0.1:6380", 6379), ("127.0.0.1".into(), 6380));
        assert_eq!(host_port("redis://localhost", 6379), ("localhost".into(), 6379));
    }
}
