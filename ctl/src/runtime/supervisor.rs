//! The process runtime's supervisor: runs the platform as child processes of `chat4allctl up`.
//! Kill = SIGKILL (like `docker kill`); stop and scale-down = SIGTERM, so a consumer commits and
//! leaves its group at once; nothing restarts an instance behind the operator's back.

use std::collections::{BTreeMap, VecDeque};
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use chrono::Utc;
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::{Action, InstanceInfo, InstanceState, ScaleResult};
use crate::error::usage;
use crate::paths::DataDir;
use crate::spec::{Launch, ServiceKind, StackSpec};

const START_TIMEOUT: Duration = Duration::from_secs(90);
const STOP_GRACE: Duration = Duration::from_secs(15);
const MAX_ACTIONS: usize = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Intent {
    Run,
    Stop,
    Kill,
}

#[derive(Debug)]
struct Slot {
    kind: ServiceKind,
    n: u32,
    port: u16,
    state: InstanceState,
    pid: Option<u32>,
    started_at: Option<chrono::DateTime<Utc>>,
    last_exit: Option<String>,
    intent: Intent,
    /// Incremented per start, so a late exit of an old run never overwrites a new one.
    run: u64,
}

pub struct Supervisor {
    spec: StackSpec,
    data: DataDir,
    slots: Mutex<BTreeMap<String, Slot>>,
    actions: Mutex<VecDeque<Action>>,
    http: reqwest::Client,
}

impl Supervisor {
    pub fn new(spec: StackSpec, data: DataDir) -> Self {
        Self {
            spec,
            data,
            slots: Mutex::new(BTreeMap::new()),
            actions: Mutex::new(VecDeque::new()),
            http: reqwest::Client::builder().timeout(Duration::from_millis(800)).build().expect("http client"),
        }
    }

    pub fn spec(&self) -> &StackSpec {
        &self.spec
    }

    /// Appends to the operator action log (also for actions taken outside the supervisor, such
    /// as a repartition, so the timeline can name them as a cause).
    pub fn record(&self, action: &str, target: &str, detail: impl Into<String>) {
        let a = Action { at: Utc::now(), action: action.into(), target: target.into(), detail: detail.into() };
        tracing::info!(action = %a.action, target = %a.target, detail = %a.detail, "operator action");
        let mut actions = self.actions.lock().expect("actions lock");
        actions.push_back(a);
        while actions.len() > MAX_ACTIONS {
            actions.pop_front();
        }
    }

    pub fn actions(&self) -> Vec<Action> {
        self.actions.lock().expect("actions lock").iter().cloned().collect()
    }

    pub fn list(&self) -> Vec<InstanceInfo> {
        let slots = self.slots.lock().expect("slots lock");
        let mut v: Vec<InstanceInfo> = slots
            .iter()
            .map(|(name, s)| InstanceInfo {
                name: name.clone(),
                service: s.kind.name().into(),
                state: s.state,
                pid: s.pid,
                port: s.port,
                started_at: s.started_at,
                last_exit: s.last_exit.clone(),
                container: None,
            })
            .collect();
        v.sort_by_key(|i| {
            let s = &slots[&i.name];
            (s.kind, s.n)
        });
        v
    }

    fn lookup(&self, name: &str) -> anyhow::Result<(ServiceKind, u32)> {
        let slots = self.slots.lock().expect("slots lock");
        match slots.get(name) {
            Some(s) => Ok((s.kind, s.n)),
            None => {
                let known: Vec<&str> = slots.keys().map(String::as_str).collect();
                Err(usage(format!("unknown instance {name:?} (known: {})", known.join(", "))))
            }
        }
    }

    fn state_of(&self, name: &str) -> Option<InstanceState> {
        self.slots.lock().expect("slots lock").get(name).map(|s| s.state)
    }

    /// Starts the whole stack in dependency order and waits until every instance is live.
    pub async fn start_stack(self: &Arc<Self>, routers: u32) -> anyhow::Result<()> {
        if self.spec.embedded_broker {
            // Together: a node of a cluster serves requests only once a majority of the
            // controller quorum runs, so waiting for each in turn would wait forever.
            let nodes = (1..=self.spec.brokers.max(1)).map(|n| self.start(ServiceKind::Broker, n));
            for r in futures::future::join_all(nodes).await {
                r?;
            }
        }
        // The providers first: they depend on nothing, and the connectors call them.
        let providers = [ServiceKind::WhatsappProvider, ServiceKind::TelegramProvider, ServiceKind::InstagramProvider];
        for r in futures::future::join_all(providers.iter().map(|k| self.start(*k, 1))).await {
            r?;
        }
        self.start(ServiceKind::MessageService, 1).await?;
        let platform = [ServiceKind::UserService, ServiceKind::FileService];
        for r in futures::future::join_all(platform.iter().map(|k| self.start(*k, 1))).await {
            r?;
        }
        // The gateway last of the three: it proxies to them.
        self.start(ServiceKind::ApiGateway, 1).await?;
        let connectors =
            [ServiceKind::WhatsappConnector, ServiceKind::TelegramConnector, ServiceKind::InstagramConnector];
        let starts = connectors.iter().map(|k| self.start(*k, 1));
        for r in futures::future::join_all(starts).await {
            r?;
        }
        let starts = (1..=routers).map(|n| self.start(ServiceKind::RouterService, n));
        for r in futures::future::join_all(starts).await {
            r?;
        }
        Ok(())
    }

    /// Starts replica `n` of `kind` and waits until it answers its health probe.
    pub async fn start(self: &Arc<Self>, kind: ServiceKind, n: u32) -> anyhow::Result<()> {
        let name = self.spec.instance_name(kind, n);
        let launch = self.spec.launch(kind, n)?;
        let run = {
            let mut slots = self.slots.lock().expect("slots lock");
            let slot = slots.entry(name.clone()).or_insert(Slot {
                kind,
                n,
                port: launch.port,
                state: InstanceState::Stopped,
                pid: None,
                started_at: None,
                last_exit: None,
                intent: Intent::Run,
                run: 0,
            });
            if slot.state.is_alive() {
                return Err(usage(format!("{name} is already running (pid {})", slot.pid.unwrap_or(0))));
            }
            slot.run += 1;
            slot.intent = Intent::Run;
            slot.state = InstanceState::Starting;
            slot.run
        };
        let log_start = std::fs::metadata(self.data.log_file(&name)).map(|m| m.len()).unwrap_or(0);
        if let Err(e) = self.ports_free(kind, n, &launch).await {
            self.set_exit(&name, run, InstanceState::Exited, format!("failed to start: {e:#}"));
            return Err(e);
        }
        if kind == ServiceKind::Broker {
            if let Err(e) = self.prepare_broker(n).await {
                self.set_exit(&name, run, InstanceState::Exited, format!("failed to start: {e:#}"));
                return Err(e);
            }
        }
        let child = match self.spawn(&name, &launch) {
            Ok(c) => c,
            Err(e) => {
                self.set_exit(&name, run, InstanceState::Exited, format!("failed to start: {e:#}"));
                return Err(e);
            }
        };
        let pid = child.id();
        {
            let mut slots = self.slots.lock().expect("slots lock");
            if let Some(s) = slots.get_mut(&name) {
                s.pid = pid;
                s.started_at = Some(Utc::now());
            }
        }
        self.watch(name.clone(), kind, run, child);
        self.record("start", &name, format!("pid {}", pid.unwrap_or(0)));
        self.wait_live(&name, &launch, log_start).await?;
        let mut slots = self.slots.lock().expect("slots lock");
        if let Some(s) = slots.get_mut(&name) {
            if s.run == run && s.state == InstanceState::Starting {
                s.state = InstanceState::Running;
            }
        }
        Ok(())
    }

    /// Refuses to start an instance whose port something else answers on: its health probe would
    /// talk to that other process (another stack's broker, say) and call this one healthy.
    async fn ports_free(&self, kind: ServiceKind, n: u32, launch: &Launch) -> anyhow::Result<()> {
        let mut ports = vec![launch.port];
        if kind == ServiceKind::Broker {
            ports.push(self.spec.broker_node(n).controller_port);
        }
        for port in ports {
            let probe =
                tokio::time::timeout(Duration::from_millis(500), tokio::net::TcpStream::connect(("127.0.0.1", port)));
            if matches!(probe.await, Ok(Ok(_))) {
                return Err(usage(format!(
                    "port {port} is in use by another process (another stack? `up --port-offset N` moves this one)"
                )));
            }
        }
        Ok(())
    }

    /// Writes the broker's configuration and formats its storage on first use.
    async fn prepare_broker(&self, n: u32) -> anyhow::Result<()> {
        let node = self.spec.broker_node(n);
        let libs = self.spec.kafka_libs.clone().ok_or_else(|| anyhow::anyhow!("Apache Kafka is not installed"))?;
        tokio::task::spawn_blocking(move || node.ensure_formatted(&libs)).await.context("formatting task")?
    }

    fn spawn(&self, name: &str, launch: &Launch) -> anyhow::Result<tokio::process::Child> {
        std::fs::create_dir_all(self.data.logs_dir()).context("creating the logs directory")?;
        let log_path = self.data.log_file(name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        let mut cmd = tokio::process::Command::new(&launch.program);
        cmd.args(&launch.args)
            .envs(launch.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .kill_on_drop(false);
        if let Some(dir) = &launch.cwd {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            cmd.current_dir(dir);
        }
        // The stack's control token opens the services' admin endpoints to the control plane.
        if let Ok(token) = std::fs::read_to_string(self.data.token_file()) {
            cmd.env(chat4all_contract::admin::ADMIN_TOKEN_ENV, token.trim());
        }
        // SAFETY: prctl is async-signal-safe; the child only asks to get SIGTERM when we die, so
        // a crashed supervisor never leaves orphans holding the ports.
        unsafe {
            cmd.pre_exec(|| nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).map_err(std::io::Error::from));
        }
        cmd.spawn().with_context(|| format!("starting {} ({})", name, launch.program.display()))
    }

    fn watch(self: &Arc<Self>, name: String, kind: ServiceKind, run: u64, mut child: tokio::process::Child) {
        let sup = Arc::clone(self);
        let pid = child.id().unwrap_or(0);
        tokio::spawn(async move {
            let status = child.wait().await;
            let (state, how) = match status {
                Ok(st) => match (st.code(), st.signal()) {
                    (_, Some(sig)) => {
                        let name = Signal::try_from(sig).map(|s| s.as_str().to_string()).unwrap_or(sig.to_string());
                        (InstanceState::Exited, format!("killed by {name}"))
                    }
                    (Some(code), _) => (InstanceState::Exited, format!("exit code {code}")),
                    _ => (InstanceState::Exited, "exited".to_string()),
                },
                Err(e) => (InstanceState::Exited, format!("wait failed: {e}")),
            };
            let crashed = sup.set_exit(&name, run, state, how.clone());
            // Nobody asked for this exit (a crash, an OOM kill, a `kill -9` from a shell): the
            // member it held is as dead as after an operator kill, so remove it the same way
            // instead of letting its partitions wait for the session timeout.
            if crashed && kind.is_group_member() && pid != 0 {
                sup.record("exit", &name, format!("pid {pid} {how} (not asked for)"));
                sup.leave_on_behalf(&name, pid).await;
            }
        });
    }

    /// Records how run `run` of `name` ended; true when nobody asked it to end.
    fn set_exit(&self, name: &str, run: u64, state: InstanceState, how: String) -> bool {
        let mut slots = self.slots.lock().expect("slots lock");
        let mut unasked = false;
        if let Some(s) = slots.get_mut(name) {
            if s.run != run {
                return false;
            }
            s.state = match s.intent {
                Intent::Kill => InstanceState::Killed,
                Intent::Stop => InstanceState::Stopped,
                Intent::Run => state,
            };
            if s.intent == Intent::Run {
                tracing::warn!(instance = name, how = %how, "instance exited on its own");
                unasked = true;
            }
            s.last_exit = Some(how);
            s.pid = None;
        }
        unasked
    }

    async fn wait_live(&self, name: &str, launch: &Launch, log_start: u64) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            match self.state_of(name) {
                Some(InstanceState::Starting) => {}
                _ => {
                    let log = std::fs::read(self.data.log_file(name)).unwrap_or_default();
                    let this_run = String::from_utf8_lossy(log.get(log_start as usize..).unwrap_or_default());
                    let last: Vec<&str> = this_run.lines().rev().take(3).collect();
                    let last: Vec<&str> = last.into_iter().rev().collect();
                    bail!("{name} exited while starting: {}", last.join(" | "));
                }
            }
            if self.probe(launch).await {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "{name} did not become healthy within {}s (see {})",
                    START_TIMEOUT.as_secs(),
                    self.data.log_file(name).display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn probe(&self, launch: &Launch) -> bool {
        crate::health::ready(&self.http, launch.port, launch.probe).await
    }

    fn signal(&self, name: &str, intent: Intent, sig: Signal) -> anyhow::Result<Option<u32>> {
        let mut slots = self.slots.lock().expect("slots lock");
        let s = slots.get_mut(name).ok_or_else(|| usage(format!("unknown instance {name:?}")))?;
        if !s.state.is_alive() {
            return Ok(None);
        }
        let Some(pid) = s.pid else { return Ok(None) };
        s.intent = intent;
        if intent == Intent::Stop {
            s.state = InstanceState::Stopping;
        }
        nix::sys::signal::kill(Pid::from_raw(pid as i32), sig).with_context(|| format!("signalling {name}"))?;
        Ok(Some(pid))
    }

    async fn wait_dead(&self, name: &str, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            if !self.state_of(name).is_some_and(|s| s.is_alive()) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    /// SIGKILL, like `docker kill`: the process says no goodbye to its consumer group. Since the
    /// operator knows it is dead, the supervisor then says it on its behalf (LeaveGroup with the
    /// member id of its last report, see `failover`), so the survivors take over after one
    /// rebalance instead of the session timeout.
    pub async fn kill(&self, name: &str) -> anyhow::Result<String> {
        let (kind, _) = self.lookup(name)?;
        match self.signal(name, Intent::Kill, Signal::SIGKILL)? {
            None => Err(usage(format!("{name} is not running"))),
            Some(pid) => {
                self.wait_dead(name, Duration::from_secs(5)).await;
                self.record("kill", name, format!("SIGKILL pid {pid}"));
                let mut msg = format!("killed {name} (pid {pid}, SIGKILL)");
                if kind.is_group_member() {
                    for line in self.leave_on_behalf(name, pid).await {
                        msg.push_str("; ");
                        msg.push_str(&line);
                    }
                }
                Ok(msg)
            }
        }
    }

    /// LeaveGroup for every group the killed instance `name` (pid `pid`) was a member of; each
    /// outcome goes to the action log. Failures only cost the fast path: the session timeout
    /// still removes the member.
    async fn leave_on_behalf(&self, name: &str, pid: u32) -> Vec<String> {
        let r = crate::failover::leave_for_dead(
            &self.spec.kafka_bootstrap,
            &self.spec.redis_url,
            name,
            pid,
            Duration::from_secs(3),
        )
        .await;
        let outcomes = match r {
            Ok(o) if o.is_empty() => vec![Err("no group membership reported by this run of it".to_string())],
            Ok(o) => o,
            Err(e) => vec![Err(format!("{e:#}"))],
        };
        outcomes
            .into_iter()
            .map(|o| {
                let line = match o {
                    Ok(o) => o.describe(),
                    Err(e) => format!("LeaveGroup failed ({e}); the group waits for the session timeout"),
                };
                self.record("leave-group", name, line.clone());
                line
            })
            .collect()
    }

    /// SIGTERM and wait (then SIGKILL after the grace period).
    pub async fn stop(&self, name: &str) -> anyhow::Result<String> {
        self.lookup(name)?;
        match self.signal(name, Intent::Stop, Signal::SIGTERM)? {
            None => Ok(format!("{name} was not running")),
            Some(pid) => {
                if self.wait_dead(name, STOP_GRACE).await {
                    self.record("stop", name, format!("SIGTERM pid {pid}"));
                    Ok(format!("stopped {name} (pid {pid}, SIGTERM)"))
                } else {
                    let _ = self.signal(name, Intent::Stop, Signal::SIGKILL);
                    self.wait_dead(name, Duration::from_secs(5)).await;
                    self.record("stop", name, format!("SIGKILL pid {pid} after {}s grace", STOP_GRACE.as_secs()));
                    Ok(format!("stopped {name} (pid {pid}, SIGKILL after {}s)", STOP_GRACE.as_secs()))
                }
            }
        }
    }

    pub async fn start_named(self: &Arc<Self>, name: &str) -> anyhow::Result<String> {
        let (kind, n) = self.lookup(name)?;
        self.start(kind, n).await?;
        Ok(format!("started {name}"))
    }

    pub async fn restart(self: &Arc<Self>, name: &str) -> anyhow::Result<String> {
        let (kind, n) = self.lookup(name)?;
        self.stop(name).await?;
        self.start(kind, n).await?;
        self.record("restart", name, "");
        Ok(format!("restarted {name}"))
    }

    /// Starts or gracefully stops replicas until `replicas` are alive.
    pub async fn scale(self: &Arc<Self>, kind: ServiceKind, replicas: u32) -> anyhow::Result<ScaleResult> {
        if !kind.scalable() {
            return Err(usage(format!("{} cannot be scaled (only router-service can)", kind.name())));
        }
        if replicas > 32 {
            return Err(usage(format!("{replicas} replicas is more than this machine should run (max 32)")));
        }
        let alive: Vec<u32> = {
            let slots = self.slots.lock().expect("slots lock");
            let mut v: Vec<u32> =
                slots.values().filter(|s| s.kind == kind && s.state.is_alive()).map(|s| s.n).collect();
            v.sort_unstable();
            v
        };
        let before = alive.len() as u32;
        let mut result =
            ScaleResult { service: kind.name().into(), before, after: before, started: vec![], stopped: vec![] };
        if replicas > before {
            let mut n = 1;
            let mut to_start = Vec::new();
            while (alive.len() + to_start.len()) < replicas as usize {
                if !alive.contains(&n) {
                    to_start.push(n);
                }
                n += 1;
            }
            let starts = to_start.iter().map(|n| self.start(kind, *n));
            for (n, r) in to_start.iter().zip(futures::future::join_all(starts).await) {
                r?;
                result.started.push(self.spec.instance_name(kind, *n));
            }
        } else {
            let to_stop: Vec<u32> = alive.iter().rev().take((before - replicas) as usize).copied().collect();
            let stops = to_stop.iter().map(|n| {
                let name = self.spec.instance_name(kind, *n);
                async move { self.stop(&name).await.map(|_| name) }
            });
            for r in futures::future::join_all(stops).await {
                result.stopped.push(r?);
            }
        }
        result.after = replicas;
        self.record("scale", kind.name(), format!("{before} -> {replicas}"));
        Ok(result)
    }

    pub fn logs(&self, name: &str, lines: usize) -> anyhow::Result<String> {
        self.lookup(name)?;
        Ok(tail_file(&self.data.log_file(name), lines))
    }

    /// Stops everything, consumers first and the broker last.
    pub async fn stop_all(&self) {
        let mut by_kind: BTreeMap<ServiceKind, Vec<String>> = BTreeMap::new();
        for i in self.list() {
            if i.state.is_alive() {
                if let Some(k) = ServiceKind::parse(&i.service) {
                    by_kind.entry(k).or_default().push(i.name);
                }
            }
        }
        for (_, names) in by_kind.into_iter().rev() {
            let stops = names.iter().map(|n| self.stop(n));
            for r in futures::future::join_all(stops).await {
                if let Err(e) = r {
                    tracing::warn!(error = format!("{e:#}"), "stopping");
                }
            }
        }
    }
}

/// The last `lines` lines of a file (empty if it does not exist).
pub fn tail_file(path: &std::path::Path, lines: usize) -> String {
    let Ok(text) = std::fs::read_to_string(path) else { return String::new() };
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
