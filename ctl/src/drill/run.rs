//! The scenarios: prepare (ensure N routers, a stable group), traffic, the fault, recovery
//! messages, the drain, then the timeline and the counts.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::Parser;
use tokio::time::Instant;

use chat4all_contract::events::RebalanceEvent;
use chat4all_contract::group::ConsumerTuning;
use chat4all_contract::topics;

use super::analysis;
use super::count;
use super::load::{self, Load, Tally};
use super::observe::{self, Observer, Sample};
use super::plan::{DrillPlan, KillMethod, Scenario};
use super::report::{self, DrillReport, Environment, Phase, Traffic};
use super::stall::PublishSampler;
use super::timeline::{self, Kill};
use crate::admin::Admin;
use crate::error::usage;
use crate::lag::{LagHistory, Rules};
use crate::providers::Providers;
use crate::runtime::{fault, InstanceState, Runtime, Verb};
use crate::view::GroupReader;

const GROUP: &str = topics::ROUTER_GROUP;
/// How long the group may take to settle with N live members before the drill.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(90);
/// How long after the drain the lag may take to return to its baseline.
const LAG_GRACE: Duration = Duration::from_secs(15);

/// Where the stack is.
#[derive(Clone)]
pub struct Stack {
    /// The runtime the drill kills and starts through (process or docker).
    pub rt: std::sync::Arc<dyn Runtime>,
    /// What the running stack wrote about itself (the providers' URLs).
    pub info: Option<crate::control::SupervisorFile>,
    pub api_url: String,
    /// The message-service's admin API: the deliveries' progress and facts.
    pub admin: Admin,
    pub redis_url: String,
    pub bootstrap: String,
    pub timeout: Duration,
}

struct Ctx<'a> {
    stack: &'a Stack,
    plan: &'a DrillPlan,
    run_id: String,
    client: reqwest::Client,
    url: reqwest::Url,
    reader: GroupReader,
    phases: Vec<Phase>,
    /// SIGCONTs due for frozen victims.
    thaws: Vec<tokio::task::JoinHandle<()>>,
}

impl Ctx<'_> {
    fn phase(&mut self, name: &str, start: DateTime<Utc>, detail: impl Into<String>) {
        self.phases.push(Phase { name: name.into(), start, end: Utc::now(), detail: detail.into() });
    }

    fn load(&self, interval: Duration, first: u64, limit: Option<u64>) -> Load {
        Load::start(self.client.clone(), self.url.clone(), self.run_id.clone(), interval, first, limit)
    }

    async fn sample(&mut self) -> anyhow::Result<Sample> {
        observe::sample(&mut self.reader, GROUP).await
    }

    /// Scales the routers to N and waits until the group is stable with N members and every
    /// partition has a live owner (a crashed member of an earlier drill may linger until its
    /// session expires).
    async fn prepare(&mut self) -> anyhow::Result<Sample> {
        let start = Utc::now();
        let scaled = self.stack.rt.scale(GROUP, self.plan.routers).await?;
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        loop {
            let s = self.sample().await;
            if let Ok(s) = &s {
                let owners_live = s.owners.iter().all(|(_, _, m)| s.members.contains(m));
                let settled = s.state == "Stable"
                    && s.members.len() == self.plan.routers as usize
                    && !s.owners.is_empty()
                    && owners_live;
                // A drill measures a failover, not a cold start: every running instance (the
                // connectors and providers an earlier test restarted, say) must answer first.
                if settled && self.unhealthy().await.is_empty() {
                    let s = s.clone();
                    self.phase(
                        "prepare",
                        start,
                        format!(
                            "router-service {} -> {} instances; group Stable with {} members",
                            scaled.before,
                            scaled.after,
                            s.members.len()
                        ),
                    );
                    return Ok(s);
                }
            }
            if Instant::now() > deadline {
                let unhealthy = self.unhealthy().await;
                let what = match s {
                    Ok(s) => format!(
                        "state {}, {} members, {} owned partitions, not healthy: {}",
                        s.state,
                        s.members.len(),
                        s.owners.len(),
                        if unhealthy.is_empty() { "none".to_string() } else { unhealthy.join(", ") }
                    ),
                    Err(e) => format!("{e:#}"),
                };
                anyhow::bail!(
                    "the router group did not settle with {} members within {:?}: {what}",
                    self.plan.routers,
                    SETTLE_TIMEOUT
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Instances that are starting, or running without answering their health check.
    async fn unhealthy(&self) -> Vec<String> {
        let Ok(list) = self.stack.rt.list().await else { return vec!["the supervisor".into()] };
        let probes = list.iter().map(|i| crate::health::probe(&self.client, i, Duration::from_secs(1)));
        let health = futures::future::join_all(probes).await;
        list.iter()
            .zip(health)
            .filter(|(i, h)| i.state == InstanceState::Starting || (i.state.is_alive() && h != "up"))
            .map(|(i, h)| format!("{} ({h})", i.name))
            .collect()
    }

    /// Kills `victim` (its ownership as `before` shows it) by the plan's method.
    async fn kill(&mut self, victim: &str, before: &Sample) -> anyhow::Result<Kill> {
        let partitions: Vec<(String, i32)> =
            before.owners.iter().filter(|(_, i, _)| i == victim).map(|(tp, _, _)| tp.clone()).collect();
        let member_id = before.owners.iter().find(|(_, i, _)| i == victim).map(|(_, _, m)| m.clone());
        let member_id = match member_id {
            Some(m) => Some(m),
            None => self.reported_member(victim).await,
        };
        let (at, detail) = match self.plan.kill {
            KillMethod::Operator => {
                let at = Utc::now();
                (at, self.stack.rt.act(victim, Verb::Kill).await?)
            }
            KillMethod::Freeze => {
                let thaw_after = self.plan.freeze_for;
                let at = Utc::now();
                let why = format!("for {:.1} s", thaw_after.as_secs_f64());
                let frozen = fault::freeze(self.stack.rt.as_ref(), victim, &why).await?;
                let pid = frozen.pid;
                self.thaws.push(tokio::spawn(async move {
                    tokio::time::sleep(thaw_after).await;
                    drop(frozen);
                }));
                (at, format!("SIGSTOP pid {pid} by the drill, SIGCONT after {:.1} s", thaw_after.as_secs_f64()))
            }
            KillMethod::Crash => {
                let at = Utc::now();
                let pid = fault::crash(self.stack.rt.as_ref(), victim).await?;
                (at, format!("SIGKILL pid {pid} by the drill, not through the control plane"))
            }
        };
        Ok(Kill { victim: victim.into(), method: self.plan.kill, at, member_id, partitions, detail })
    }

    /// The scenario's traffic and its fault; what was killed or restarted, and when.
    async fn traffic_and_fault(&mut self, before: &Sample) -> anyhow::Result<Fault> {
        let mut f = Fault::default();
        f.tally = match &self.plan.scenario {
            Scenario::KillActive => {
                let load = self.load(self.plan.interval(), 0, Some(self.plan.planned()));
                sent_at_least(&load, self.plan.planned() / 2).await;
                let now = self.sample().await.unwrap_or_else(|_| before.clone());
                let mut per: BTreeMap<&str, usize> = BTreeMap::new();
                for (_, inst, m) in &now.owners {
                    if now.members.contains(m) {
                        *per.entry(inst.as_str()).or_default() += 1;
                    }
                }
                let victim = per
                    .iter()
                    .max_by_key(|(i, n)| (**n, std::cmp::Reverse(**i)))
                    .map(|(i, _)| i.to_string())
                    .ok_or_else(|| anyhow::anyhow!("no live instance owns a partition of {GROUP}"))?;
                f.kills.push(self.kill(&victim, &now).await?);
                load.join().await
            }
            Scenario::KillRandom { count, interval_secs } => {
                let every = Duration::from_secs_f64(*interval_secs);
                let load = self.load(self.plan.interval(), 0, None);
                for _ in 0..*count {
                    tokio::time::sleep(every / 2).await;
                    let alive = self.alive_routers().await?;
                    let victim = {
                        use rand::seq::SliceRandom;
                        alive.choose(&mut rand::thread_rng()).cloned()
                    }
                    .ok_or_else(|| anyhow::anyhow!("no running router to kill"))?;
                    let now = self.sample().await.unwrap_or_else(|_| before.clone());
                    f.kills.push(self.kill(&victim, &now).await?);
                    tokio::time::sleep(every / 2).await;
                    let r = self.stack.rt.act(&victim, Verb::Start).await;
                    f.restarts.push(Utc::now());
                    r.with_context(|| format!("restarting {victim} after the kill"))?;
                }
                tokio::time::sleep(every / 2).await;
                load.stop().await
            }
            Scenario::BrokerRestart { down_secs } => {
                let publish = PublishSampler::start(self.stack.rt.as_ref()).await?;
                let load = self.load(self.plan.interval(), 0, None);
                tokio::time::sleep(Duration::from_secs(3)).await;
                let stopped = Utc::now();
                let nodes = super::broker::broker_instances(self.stack.rt.as_ref()).await?;
                if nodes.len() > 1 {
                    // A cluster: rolling, one node at a time, each back in sync before the next.
                    let (bootstrap, timeout) = (&self.stack.bootstrap, self.stack.timeout);
                    super::broker::rolling_restart(self.stack.rt.as_ref(), bootstrap, timeout, &nodes).await?;
                } else {
                    self.stack.rt.act("broker", Verb::Stop).await.context("stopping the broker")?;
                    tokio::time::sleep(Duration::from_secs_f64(*down_secs)).await;
                    self.stack.rt.act("broker", Verb::Start).await.context("starting the broker")?;
                }
                let started = Utc::now();
                f.broker = Some((stopped, started));
                tokio::time::sleep(Duration::from_secs(5)).await;
                let tally = load.stop().await;
                f.traffic_end = Some(Utc::now());
                f.published = publish.finish().await;
                tally
            }
            Scenario::KillBroker { leader_of, down_secs } => {
                let publish = PublishSampler::start(self.stack.rt.as_ref()).await?;
                let load = self.load(self.plan.interval(), 0, None);
                tokio::time::sleep(Duration::from_secs(3)).await;
                let down = Duration::from_secs_f64(*down_secs);
                let (k, started, isr) = super::broker::kill_leader(
                    self.stack.rt.as_ref(),
                    &self.stack.bootstrap,
                    self.stack.timeout,
                    leader_of,
                    down,
                )
                .await?;
                f.broker = Some((k.killed_at, started));
                tokio::time::sleep(Duration::from_secs(5)).await;
                let tally = load.stop().await;
                f.traffic_end = Some(Utc::now());
                f.published = publish.finish().await;
                f.leader_kill = Some(isr.await.unwrap_or(k));
                tally
            }
        };
        Ok(f)
    }

    /// The member id of `instance`'s current report (for a standby, which owns nothing).
    async fn reported_member(&self, instance: &str) -> Option<String> {
        let mut conn = crate::ownership::redis(&self.stack.redis_url).await.ok()?;
        let reports = crate::ownership::reports(&mut conn, GROUP).await.ok()?;
        reports.into_iter().find(|r| r.instance == instance).map(|r| r.member_id)
    }

    async fn alive_routers(&self) -> anyhow::Result<Vec<String>> {
        Ok(self
            .stack
            .rt
            .list()
            .await?
            .into_iter()
            .filter(|i| i.service == GROUP && i.state == InstanceState::Running)
            .map(|i| i.name)
            .collect())
    }
}

/// What the traffic-and-fault phase did.
#[derive(Default)]
struct Fault {
    tally: Tally,
    kills: Vec<Kill>,
    /// When each killed router was started again (kill-random).
    restarts: Vec<DateTime<Utc>>,
    /// A broker's outage: stopped (or killed) and started again.
    broker: Option<(DateTime<Utc>, DateTime<Utc>)>,
    leader_kill: Option<super::broker::LeaderKill>,
    /// When the traffic stopped (broker scenarios: the end of the stall window).
    traffic_end: Option<DateTime<Utc>>,
    /// When the outbox relay's published counter was seen to move (broker scenarios).
    published: Vec<DateTime<Utc>>,
}

/// Waits until the stream has sent `n` messages (or finished).
async fn sent_at_least(load: &Load, n: u64) {
    while load.sent() < n && !load.is_finished() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn consumer_tuning() -> ConsumerTuning {
    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        c: ConsumerTuning,
    }
    T::try_parse_from(["drill"]).map(|t| t.c).unwrap_or(ConsumerTuning {
        session_timeout_ms: 0,
        heartbeat_interval_ms: 0,
        assignment_strategy: "unknown".into(),
        metadata_refresh_ms: 0,
    })
}

/// Runs the drill of `plan` on `stack`: with `provider_failure_rate`, the providers reject that
/// share for the run and get their faults back after it (also when the drill fails).
pub async fn run(stack: &Stack, plan: &DrillPlan) -> anyhow::Result<DrillReport> {
    plan.validate().map_err(usage)?;
    let providers = Providers::of_stack(stack.info.as_ref(), stack.timeout);
    let Some(rate) = plan.provider_failure_rate else { return run_drill(stack, plan, &providers).await };
    let restore = providers.with_reject_rate(rate).await.context("setting the providers' reject rate")?;
    let result = run_drill(stack, plan, &providers).await;
    let restored = restore.restore().await.context("restoring the providers' faults");
    let report = result?;
    restored?;
    Ok(report)
}

async fn run_drill(stack: &Stack, plan: &DrillPlan, providers: &Providers) -> anyhow::Result<DrillReport> {
    let started_at = Utc::now();
    let admin = &stack.admin;
    let url = reqwest::Url::parse(&format!("{}/api/v1/messages", stack.api_url.trim_end_matches('/')))
        .map_err(|e| usage(format!("invalid API URL {:?}: {e}", stack.api_url)))?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(10))
        .build()?;
    let new_reader =
        || GroupReader::new(&stack.bootstrap, &stack.redis_url, stack.timeout, LagHistory::new(Rules::default()));
    let simple = uuid::Uuid::new_v4().simple().to_string();
    let mut ctx = Ctx {
        stack,
        plan,
        run_id: format!("drill-{}", &simple[..8]),
        client,
        url,
        reader: new_reader()?,
        phases: Vec::new(),
        thaws: Vec::new(),
    };

    let before = ctx.prepare().await?;
    let observer = Observer::start(new_reader()?, GROUP);
    let traffic_start = Utc::now();
    let Fault { mut tally, kills, restarts, broker, leader_kill, traffic_end, published } =
        ctx.traffic_and_fault(&before).await?;
    let traffic_detail = format!("{} sent, {} accepted, {} failed", tally.sent, tally.accepted.len(), tally.failed);
    let fault_detail = describe_fault(&plan.scenario, &kills);
    ctx.phase("traffic and fault", traffic_start, format!("{traffic_detail}; {fault_detail}"));
    let send_window = (Utc::now() - traffic_start).num_milliseconds().max(1) as f64 / 1000.0;

    if plan.recovery_messages > 0 {
        let start = Utc::now();
        let rec =
            ctx.load(plan.every.min(Duration::from_millis(500)), tally.sent, Some(plan.recovery_messages)).join().await;
        ctx.phase(
            "recovery messages",
            start,
            format!("{} sent, {} accepted, {} failed", rec.sent, rec.accepted.len(), rec.failed),
        );
        tally.merge(rec);
    }

    for thaw in std::mem::take(&mut ctx.thaws) {
        let _ = thaw.await;
    }
    let ids: Vec<uuid::Uuid> = tally.accepted.iter().map(|a| a.id).collect();
    let start = Utc::now();
    let drained = count::wait_finished(admin, &ids, plan.drain_timeout).await.context("polling the deliveries")?;
    ctx.phase(
        "drain",
        start,
        if drained {
            "every delivery final".to_string()
        } else {
            format!("not all final after {:?}", plan.drain_timeout)
        },
    );

    wait_lag_back(&observer, kills.last().map(|k| k.at)).await;
    let samples = observer.finish().await;
    let facts = admin.delivery_facts(&ids).await.context("reading the deliveries' facts")?;

    let mut conn = crate::ownership::redis(&stack.redis_url).await?;
    let events: Vec<RebalanceEvent> = crate::ownership::timeline(&mut conn, 5000)
        .await?
        .into_iter()
        .filter(|e| e.group == GROUP && e.at >= started_at)
        .collect();

    let (outcomes, mut entries) = analysis::failovers(&kills, &restarts, &samples, &events, &facts);
    let progress = analysis::Progress { published: &published, traffic_end };
    let outage = analysis::broker_outage(broker, leader_kill, progress, &facts, &events, &mut entries);

    let record = providers
        .records(Some(&format!("{}-c", ctx.run_id)))
        .await
        .context("reading the providers' records (the ground truth)")?;
    let counts = count::count(
        &ids,
        &facts,
        &load::RECIPIENTS.iter().map(|(u, ch)| (format!("{}-{u}", ctx.run_id), ch.to_string())).collect::<Vec<_>>(),
        &record,
    );

    let traffic = Traffic {
        sent: tally.sent,
        accepted: tally.accepted.len() as u64,
        failed: tally.failed,
        failure_samples: tally.samples.clone(),
        client_behind: tally.behind,
        accepted_per_sec: tally.accepted.len() as f64 / send_window,
    };
    let criteria = report::judge(plan, &outcomes, outage.as_ref(), &traffic, &counts, drained);
    let environment = environment(stack, plan, &ctx.reader).await?;
    Ok(DrillReport {
        scenario: plan.scenario.name().into(),
        run_id: ctx.run_id.clone(),
        started_at,
        finished_at: Utc::now(),
        plan: plan.clone(),
        environment,
        phases: ctx.phases,
        kills: outcomes,
        broker: outage,
        timeline: entries,
        traffic,
        passed: criteria.iter().all(|c| c.passed),
        criteria,
        counts,
        drained,
    })
}

/// The fault of a scenario, in one line of the phase list.
fn describe_fault(scenario: &Scenario, kills: &[Kill]) -> String {
    match scenario {
        Scenario::BrokerRestart { .. } => "broker stopped and started while traffic flowed".to_string(),
        Scenario::KillBroker { leader_of, .. } => format!("the leader of {leader_of} killed and started again"),
        _ => kills
            .iter()
            .map(|k| format!("{} {:?} at {}", k.victim, k.method, k.at.format("%T%.3f")))
            .collect::<Vec<_>>()
            .join("; "),
    }
}

/// Gives the lag samples time (up to [`LAG_GRACE`]) to show the return to the baseline of the
/// last kill.
async fn wait_lag_back(observer: &Observer, last_kill: Option<DateTime<Utc>>) {
    let Some(at) = last_kill else { return };
    let deadline = Instant::now() + LAG_GRACE;
    while Instant::now() < deadline {
        let s = observer.samples().await;
        let b = timeline::baseline(&s, at, chrono::Duration::seconds(analysis::BASELINE_WINDOW)).unwrap_or(0);
        if s.last().is_some_and(|l| l.at > at && l.lag.is_some_and(|x| x <= b)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Where the drill ran: the machine, the stack, the topics and the consumer settings.
async fn environment(stack: &Stack, plan: &DrillPlan, reader: &GroupReader) -> anyhow::Result<Environment> {
    let tuning = consumer_tuning();
    let observer = reader.observer();
    let topics_now = tokio::task::spawn_blocking(move || observer.topics()).await??;
    Ok(Environment {
        host: std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default(),
        cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        api_url: stack.api_url.clone(),
        kafka_bootstrap: stack.bootstrap.clone(),
        routers: plan.routers,
        topics: topics_now
            .into_iter()
            .filter(|(t, _)| t.starts_with(topics::CHAT_EVENTS) && t != topics::DEAD_LETTERS)
            .collect(),
        group_protocol: stack.info.as_ref().and_then(|i| i.group_protocol.clone()).unwrap_or_else(|| "classic".into()),
        session_timeout_ms: tuning.session_timeout_ms,
        heartbeat_interval_ms: tuning.heartbeat_interval_ms,
        assignment_strategy: tuning.assignment_strategy,
    })
}
