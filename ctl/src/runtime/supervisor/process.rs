//! Child processes: how an instance is launched (its log file, the control token, death with its
//! parent), how its end is described, and the checks before a start.

use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use nix::sys::signal::Signal;

use crate::error::usage;
use crate::paths::DataDir;
use crate::spec::Launch;

/// Starts `launch` as instance `name`, stdout and stderr appended to its log file.
pub fn spawn(data: &DataDir, name: &str, launch: &Launch) -> anyhow::Result<tokio::process::Child> {
    std::fs::create_dir_all(data.logs_dir()).context("creating the logs directory")?;
    let log_path = data.log_file(name);
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
    if let Ok(token) = std::fs::read_to_string(data.token_file()) {
        cmd.env(chat4all_contract::admin::ADMIN_TOKEN_ENV, token.trim());
    }
    // SAFETY: prctl is async-signal-safe; the child only asks to get SIGTERM when we die, so
    // a crashed supervisor never leaves orphans holding the ports.
    unsafe {
        cmd.pre_exec(|| nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).map_err(std::io::Error::from));
    }
    cmd.spawn().with_context(|| format!("starting {} ({})", name, launch.program.display()))
}

/// How a child ended, as the action log and `status` say it.
pub fn describe_exit(status: std::io::Result<std::process::ExitStatus>) -> String {
    match status {
        Ok(st) => match (st.code(), st.signal()) {
            (_, Some(sig)) => {
                let name = Signal::try_from(sig).map(|s| s.as_str().to_string()).unwrap_or(sig.to_string());
                format!("killed by {name}")
            }
            (Some(code), _) => format!("exit code {code}"),
            _ => "exited".to_string(),
        },
        Err(e) => format!("wait failed: {e}"),
    }
}

/// Refuses ports something else answers on: a health probe would talk to that other process
/// (another stack's broker, say) and call this instance healthy.
pub async fn ports_free(ports: &[u16]) -> anyhow::Result<()> {
    for &port in ports {
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

/// The last lines `name` wrote to its log since byte `from`, joined with ` | ` (why a start failed).
pub fn last_lines_since(data: &DataDir, name: &str, from: u64, lines: usize) -> String {
    let log = std::fs::read(data.log_file(name)).unwrap_or_default();
    let this_run = String::from_utf8_lossy(log.get(from as usize..).unwrap_or_default());
    let last: Vec<&str> = this_run.lines().rev().take(lines).collect();
    last.into_iter().rev().collect::<Vec<_>>().join(" | ")
}

/// The last `lines` lines of a file (empty if it does not exist).
pub fn tail_file(path: &std::path::Path, lines: usize) -> String {
    let Ok(text) = std::fs::read_to_string(path) else { return String::new() };
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_are_described_by_signal_or_code() {
        let killed = std::process::ExitStatus::from_raw(9);
        assert_eq!(describe_exit(Ok(killed)), "killed by SIGKILL");
        let code = std::process::ExitStatus::from_raw(3 << 8);
        assert_eq!(describe_exit(Ok(code)), "exit code 3");
    }
}
