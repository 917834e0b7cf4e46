//! What a drill does: the scenario, the traffic and the criteria it is judged by.

use std::time::Duration;

use serde::Serialize;

/// How the victim dies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KillMethod {
    /// Through the control plane (`act kill`): SIGKILL, then the supervisor sends LeaveGroup on
    /// the dead member's behalf, so the group need not wait for the session timeout.
    Operator,
    /// SIGKILL of the pid straight from the drill, behind the control plane's back: an
    /// unannounced crash. The supervisor still sees its child exit and removes the member, so it
    /// recovers like an operator kill.
    Crash,
    /// SIGSTOP of the pid (a host that stops answering without exiting): only the session
    /// timeout finds it. SIGCONT after `freeze_for`: the zombie must find itself fenced.
    Freeze,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum Scenario {
    /// Kill the router owning the most partitions once, while traffic flows.
    KillActive,
    /// `count` kills of a random router, `interval` apart, each restarted before the next.
    KillRandom { count: u32, interval_secs: f64 },
    /// Stop and start the broker under load.
    BrokerRestart { down_secs: f64 },
    /// On a cluster: SIGKILL the broker leading `leader_of` (`chat-events-0`) under load, start
    /// it again after `down_secs`.
    KillBroker { leader_of: String, down_secs: f64 },
}

impl Scenario {
    pub fn name(&self) -> &'static str {
        match self {
            Scenario::KillActive => "kill-active",
            Scenario::KillRandom { .. } => "kill-random",
            Scenario::BrokerRestart { .. } => "broker-restart",
            Scenario::KillBroker { .. } => "kill-broker",
        }
    }
}

/// Everything a drill needs besides the stack it runs on.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DrillPlan {
    pub scenario: Scenario,
    /// Router instances ensured (scaled to) before the drill.
    pub routers: u32,
    /// Messages of the main stream (ignored when `rate` is set: then `duration` decides).
    pub messages: u64,
    /// Pause between two messages of the main stream.
    #[serde(with = "secs")]
    pub every: Duration,
    /// Sustained load in messages per second, instead of `messages` x `every`.
    pub rate: Option<u32>,
    /// Length of the main stream under `rate`.
    #[serde(with = "secs")]
    pub duration: Duration,
    /// Messages sent after the main stream, once the survivors took over.
    pub recovery_messages: u64,
    pub kill: KillMethod,
    /// How long a `Freeze` victim stays stopped before SIGCONT.
    #[serde(with = "secs")]
    pub freeze_for: Duration,
    /// Criterion: kill -> first event processed by a survivor.
    #[serde(with = "secs")]
    pub max_recovery: Duration,
    /// How long to wait for every accepted message to be delivered.
    #[serde(with = "secs")]
    pub drain_timeout: Duration,
    /// The providers' reject rate during the drill (restored after); None leaves them as they are.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_failure_rate: Option<f64>,
}

impl DrillPlan {
    /// The classic drill: 3 routers, 20 messages 0.5 s apart, kill the owner, 60 s to recover.
    pub fn kill_active() -> Self {
        Self {
            scenario: Scenario::KillActive,
            routers: 3,
            messages: 20,
            every: Duration::from_millis(500),
            rate: None,
            duration: Duration::from_secs(10),
            recovery_messages: 5,
            kill: KillMethod::Operator,
            freeze_for: Duration::from_secs(10),
            max_recovery: Duration::from_secs(60),
            drain_timeout: Duration::from_secs(120),
            provider_failure_rate: None,
        }
    }

    /// Interval between two sends of the main stream.
    pub fn interval(&self) -> Duration {
        match self.rate {
            Some(r) => Duration::from_nanos(1_000_000_000 / u64::from(r.max(1))),
            None => self.every,
        }
    }

    /// Messages of the main stream.
    pub fn planned(&self) -> u64 {
        match self.rate {
            Some(r) => (u128::from(r) * self.duration.as_millis() / 1000) as u64,
            None => self.messages,
        }
    }

    /// Rejects plans that cannot run, with the reason.
    pub fn validate(&self) -> Result<(), String> {
        if self.routers < 2 {
            return Err(format!("--routers {} leaves no survivor: use at least 2", self.routers));
        }
        if self.routers > 32 {
            return Err(format!("--routers {} is more than this machine should run (max 32)", self.routers));
        }
        if self.rate == Some(0) {
            return Err("--rate must be at least 1 message per second".into());
        }
        if self.rate.is_some_and(|r| r > 20_000) {
            return Err("--rate above 20000 msg/s is beyond what the API client here can send".into());
        }
        if self.planned() < 2 {
            return Err("the main stream needs at least 2 messages (the kill happens in its middle)".into());
        }
        if self.every.is_zero() && self.rate.is_none() {
            return Err("--every must be more than 0".into());
        }
        if self.kill == KillMethod::Freeze && self.freeze_for < Duration::from_millis(100) {
            return Err("--freeze-for must be at least 100ms".into());
        }
        if let Some(r) = self.provider_failure_rate {
            if !(0.0..=1.0).contains(&r) {
                return Err(format!("--provider-failure-rate must be from 0 to 1, got {r}"));
            }
            if r >= 1.0 {
                return Err("--provider-failure-rate 1 rejects everything: nothing could be delivered".into());
            }
        }
        if let Scenario::KillRandom { count, .. } = self.scenario {
            if count == 0 {
                return Err("--count must be at least 1".into());
            }
        }
        Ok(())
    }
}

/// Durations as fractional seconds in JSON.
mod secs {
    pub fn serialize<S: serde::Serializer>(d: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_plan_is_the_classic_drill() {
        let p = DrillPlan::kill_active();
        assert_eq!((p.routers, p.planned(), p.interval()), (3, 20, Duration::from_millis(500)));
        assert!(p.validate().is_ok());
    }

    #[test]
    fn rate_decides_the_stream() {
        let p = DrillPlan { rate: Some(1000), duration: Duration::from_secs(30), ..DrillPlan::kill_active() };
        assert_eq!(p.planned(), 30_000);
        assert_eq!(p.interval(), Duration::from_millis(1));
    }

    #[test]
    fn rejects_unrunnable_plans() {
        let base = DrillPlan::kill_active();
        assert!(DrillPlan { routers: 1, ..base.clone() }.validate().unwrap_err().contains("survivor"));
        assert!(DrillPlan { rate: Some(0), ..base.clone() }.validate().is_err());
        assert!(DrillPlan { messages: 1, ..base.clone() }.validate().is_err());
        let random = Scenario::KillRandom { count: 0, interval_secs: 5.0 };
        assert!(DrillPlan { scenario: random, ..base }.validate().unwrap_err().contains("--count"));
    }
}
