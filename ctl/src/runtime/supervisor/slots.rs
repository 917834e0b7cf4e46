//! The instances the supervisor knows and the intent machine over them: what the operator asked
//! for (run, stop, kill) decides what an exit means (stopped, killed, or exited on its own).

use std::collections::BTreeMap;
use std::sync::Mutex;

use anyhow::Context;
use chrono::Utc;
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::error::usage;
use crate::runtime::{InstanceInfo, InstanceState};
use crate::spec::ServiceKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
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

#[derive(Default)]
pub struct Slots(Mutex<BTreeMap<String, Slot>>);

impl Slots {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Slot>> {
        self.0.lock().expect("slots lock")
    }

    /// Every instance, in the stack's order (by service, then replica).
    pub fn list(&self) -> Vec<InstanceInfo> {
        let slots = self.lock();
        let mut v: Vec<(&String, &Slot)> = slots.iter().collect();
        v.sort_by_key(|(_, s)| (s.kind, s.n));
        v.into_iter()
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
            .collect()
    }

    /// The service and replica of `name`; a usage error naming the known ones when unknown.
    pub fn lookup(&self, name: &str) -> anyhow::Result<(ServiceKind, u32)> {
        let slots = self.lock();
        match slots.get(name) {
            Some(s) => Ok((s.kind, s.n)),
            None => {
                let known: Vec<&str> = slots.keys().map(String::as_str).collect();
                Err(usage(format!("unknown instance {name:?} (known: {})", known.join(", "))))
            }
        }
    }

    pub fn state_of(&self, name: &str) -> Option<InstanceState> {
        self.lock().get(name).map(|s| s.state)
    }

    /// Replicas of `kind` alive now, ascending.
    pub fn alive(&self, kind: ServiceKind) -> Vec<u32> {
        let mut v: Vec<u32> =
            self.lock().values().filter(|s| s.kind == kind && s.state.is_alive()).map(|s| s.n).collect();
        v.sort_unstable();
        v
    }

    /// A new run of `name` is starting; its run number. Refused while one is alive.
    pub fn begin_start(&self, name: &str, kind: ServiceKind, n: u32, port: u16) -> anyhow::Result<u64> {
        let mut slots = self.lock();
        let slot = slots.entry(name.to_owned()).or_insert(Slot {
            kind,
            n,
            port,
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
        Ok(slot.run)
    }

    /// The process of the current run has pid `pid`.
    pub fn spawned(&self, name: &str, pid: Option<u32>) {
        if let Some(s) = self.lock().get_mut(name) {
            s.pid = pid;
            s.started_at = Some(Utc::now());
        }
    }

    /// Run `run` of `name` answered its health probe.
    pub fn running(&self, name: &str, run: u64) {
        if let Some(s) = self.lock().get_mut(name) {
            if s.run == run && s.state == InstanceState::Starting {
                s.state = InstanceState::Running;
            }
        }
    }

    /// Records how run `run` of `name` ended; true when nobody asked it to end.
    pub fn exited(&self, name: &str, run: u64, how: String) -> bool {
        let mut slots = self.lock();
        let Some(s) = slots.get_mut(name) else { return false };
        if s.run != run {
            return false;
        }
        s.state = match s.intent {
            Intent::Kill => InstanceState::Killed,
            Intent::Stop => InstanceState::Stopped,
            Intent::Run => InstanceState::Exited,
        };
        let unasked = s.intent == Intent::Run;
        if unasked {
            tracing::warn!(instance = name, how = %how, "instance exited on its own");
        }
        s.last_exit = Some(how);
        s.pid = None;
        unasked
    }

    /// Sends `sig` to `name` with the operator's `intent`; its pid, or None when it is not alive.
    pub fn signal(&self, name: &str, intent: Intent, sig: Signal) -> anyhow::Result<Option<u32>> {
        let mut slots = self.lock();
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exit_means_what_the_operator_asked_for() {
        let slots = Slots::default();
        let run = slots.begin_start("router-service-1", ServiceKind::RouterService, 1, 8100).unwrap();
        assert!(slots.begin_start("router-service-1", ServiceKind::RouterService, 1, 8100).is_err(), "started twice");
        slots.running("router-service-1", run);
        assert_eq!(slots.state_of("router-service-1"), Some(InstanceState::Running));
        // Nobody asked: a crash.
        assert!(slots.exited("router-service-1", run, "killed by SIGKILL".into()));
        assert_eq!(slots.state_of("router-service-1"), Some(InstanceState::Exited));
        // A late exit of an old run changes nothing.
        let run2 = slots.begin_start("router-service-1", ServiceKind::RouterService, 1, 8100).unwrap();
        assert!(!slots.exited("router-service-1", run, "exit code 0".into()));
        assert_eq!(slots.state_of("router-service-1"), Some(InstanceState::Starting));
        assert!(run2 > run);
        assert!(slots.lookup("router-service-9").is_err());
    }
}
