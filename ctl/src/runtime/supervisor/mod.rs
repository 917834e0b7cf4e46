//! The process runtime's supervisor: runs the platform as child processes of `chat4allctl up`.
//! Kill = SIGKILL (like `docker kill`); stop and scale-down = SIGTERM, so a consumer commits and
//! leaves its group at once; nothing restarts an instance behind the operator's back.

mod actions;
mod process;
mod slots;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use nix::sys::signal::Signal;

pub use process::tail_file;
use slots::{Intent, Slots};

use super::{Action, InstanceInfo, InstanceState, ScaleResult};
use crate::error::usage;
use crate::paths::DataDir;
use crate::spec::{Launch, ServiceKind, StackSpec};

const START_TIMEOUT: Duration = Duration::from_secs(90);
const STOP_GRACE: Duration = Duration::from_secs(15);

pub struct Supervisor {
    spec: StackSpec,
    data: DataDir,
    slots: Slots,
    actions: actions::ActionLog,
    http: reqwest::Client,
}

impl Supervisor {
    pub fn new(spec: StackSpec, data: DataDir) -> Self {
        Self {
            spec,
            data,
            slots: Slots::default(),
            actions: actions::ActionLog::default(),
            http: reqwest::Client::builder().timeout(Duration::from_millis(800)).build().expect("http client"),
        }
    }

    pub fn spec(&self) -> &StackSpec {
        &self.spec
    }

    /// Appends to the operator action log (also for actions taken outside the supervisor, such
    /// as a repartition, so the timeline can name them as a cause).
    pub fn record(&self, action: &str, target: &str, detail: impl Into<String>) {
        self.actions.record(action, target, detail);
    }

    pub fn actions(&self) -> Vec<Action> {
        self.actions.list()
    }

    pub fn list(&self) -> Vec<InstanceInfo> {
        self.slots.list()
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
        let run = self.slots.begin_start(&name, kind, n, launch.port)?;
        let log_start = std::fs::metadata(self.data.log_file(&name)).map(|m| m.len()).unwrap_or(0);
        let launched = async {
            let mut ports = vec![launch.port];
            if kind == ServiceKind::Broker {
                ports.push(self.spec.broker_node(n).controller_port);
            }
            process::ports_free(&ports).await?;
            if kind == ServiceKind::Broker {
                self.prepare_broker(n).await?;
            }
            process::spawn(&self.data, &name, &launch)
        };
        let child = match launched.await {
            Ok(c) => c,
            Err(e) => {
                self.slots.exited(&name, run, format!("failed to start: {e:#}"));
                return Err(e);
            }
        };
        let pid = child.id();
        self.slots.spawned(&name, pid);
        self.watch(name.clone(), kind, run, child);
        self.record("start", &name, format!("pid {}", pid.unwrap_or(0)));
        self.wait_live(&name, &launch, log_start).await?;
        self.slots.running(&name, run);
        Ok(())
    }

    /// Writes the broker's configuration and formats its storage on first use.
    async fn prepare_broker(&self, n: u32) -> anyhow::Result<()> {
        let node = self.spec.broker_node(n);
        let libs = self.spec.kafka_libs.clone().ok_or_else(|| anyhow::anyhow!("Apache Kafka is not installed"))?;
        tokio::task::spawn_blocking(move || node.ensure_formatted(&libs)).await.context("formatting task")?
    }

    fn watch(self: &Arc<Self>, name: String, kind: ServiceKind, run: u64, mut child: tokio::process::Child) {
        let sup = Arc::clone(self);
        let pid = child.id().unwrap_or(0);
        tokio::spawn(async move {
            let how = process::describe_exit(child.wait().await);
            let crashed = sup.slots.exited(&name, run, how.clone());
            // Nobody asked for this exit (a crash, an OOM kill, a `kill -9` from a shell): the
            // member it held is as dead as after an operator kill, so remove it the same way
            // instead of letting its partitions wait for the session timeout.
            if crashed && kind.is_group_member() && pid != 0 {
                sup.record("exit", &name, format!("pid {pid} {how} (not asked for)"));
                sup.leave_on_behalf(&name, pid).await;
            }
        });
    }

    async fn wait_live(&self, name: &str, launch: &Launch, log_start: u64) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            if self.slots.state_of(name) != Some(InstanceState::Starting) {
                bail!("{name} exited while starting: {}", process::last_lines_since(&self.data, name, log_start, 3));
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

    async fn wait_dead(&self, name: &str, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            if !self.slots.state_of(name).is_some_and(|s| s.is_alive()) {
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
        let (kind, _) = self.slots.lookup(name)?;
        match self.slots.signal(name, Intent::Kill, Signal::SIGKILL)? {
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
        let lines =
            crate::failover::leave_for_dead_lines(&self.spec.kafka_bootstrap, &self.spec.redis_url, name, pid).await;
        for line in &lines {
            self.record("leave-group", name, line.clone());
        }
        lines
    }

    /// SIGTERM and wait (then SIGKILL after the grace period).
    pub async fn stop(&self, name: &str) -> anyhow::Result<String> {
        self.slots.lookup(name)?;
        match self.slots.signal(name, Intent::Stop, Signal::SIGTERM)? {
            None => Ok(format!("{name} was not running")),
            Some(pid) => {
                if self.wait_dead(name, STOP_GRACE).await {
                    self.record("stop", name, format!("SIGTERM pid {pid}"));
                    Ok(format!("stopped {name} (pid {pid}, SIGTERM)"))
                } else {
                    let _ = self.slots.signal(name, Intent::Stop, Signal::SIGKILL);
                    self.wait_dead(name, Duration::from_secs(5)).await;
                    self.record("stop", name, format!("SIGKILL pid {pid} after {}s grace", STOP_GRACE.as_secs()));
                    Ok(format!("stopped {name} (pid {pid}, SIGKILL after {}s)", STOP_GRACE.as_secs()))
                }
            }
        }
    }

    pub async fn start_named(self: &Arc<Self>, name: &str) -> anyhow::Result<String> {
        let (kind, n) = self.slots.lookup(name)?;
        self.start(kind, n).await?;
        Ok(format!("started {name}"))
    }

    pub async fn restart(self: &Arc<Self>, name: &str) -> anyhow::Result<String> {
        let (kind, n) = self.slots.lookup(name)?;
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
        let alive = self.slots.alive(kind);
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
        self.slots.lookup(name)?;
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
