//! Faults the drill injects behind the runtime's own handling: a crash (SIGKILL with no
//! LeaveGroup on the member's behalf) and a freeze (SIGSTOP, SIGCONT after). Both runtimes report
//! host pids (the docker runtime's containers share the host's pid namespace), so both act on
//! the instance's pid; a freeze is a guard that thaws the process when dropped, so a drill that
//! fails or a ctl that exits never leaves an instance frozen.

use anyhow::Context;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::Runtime;
use crate::error::usage;

/// A process stopped with SIGSTOP; dropping it sends SIGCONT.
#[derive(Debug)]
pub struct Frozen {
    pub pid: u32,
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.pid as i32), Signal::SIGCONT);
    }
}

/// The host pid of a running instance.
async fn pid_of(rt: &dyn Runtime, name: &str) -> anyhow::Result<u32> {
    rt.list()
        .await?
        .into_iter()
        .find(|i| i.name == name && i.state.is_alive())
        .and_then(|i| i.pid)
        .ok_or_else(|| usage(format!("{name} is not running")))
}

/// Sends `signal` to the running instance's process; returns the pid.
async fn signal(rt: &dyn Runtime, name: &str, signal: Signal) -> anyhow::Result<u32> {
    let pid = pid_of(rt, name).await?;
    kill(Pid::from_raw(pid as i32), signal).with_context(|| format!("{signal} {name} (pid {pid})"))?;
    Ok(pid)
}

/// SIGKILL of the instance's process, not through the runtime's kill (so no LeaveGroup); the
/// runtime's log records it. Returns the pid.
pub async fn crash(rt: &dyn Runtime, name: &str) -> anyhow::Result<u32> {
    let pid = signal(rt, name, Signal::SIGKILL).await?;
    let _ =
        rt.record_action("crash", name, &format!("drill: SIGKILL pid {pid} outside the runtime (no LeaveGroup)")).await;
    Ok(pid)
}

/// SIGSTOP of the instance's process until the guard is dropped.
pub async fn freeze(rt: &dyn Runtime, name: &str, why: &str) -> anyhow::Result<Frozen> {
    let pid = signal(rt, name, Signal::SIGSTOP).await?;
    // The guard first: a drill cancelled while the action is recorded still thaws the process.
    let frozen = Frozen { pid };
    let _ = rt.record_action("freeze", name, &format!("drill: SIGSTOP pid {pid} {why}")).await;
    Ok(frozen)
}
