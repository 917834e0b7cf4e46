//! The dashboard in a real terminal (tmux) against the live stack: the partition table shows the
//! owner; `x` on the owning router plus `y` moves ownership to another router within the session
//! timeout (6 s) + 5 s, and a new timeline entry (the takeover, attributed to the kill) is on
//! screen; `q` exits 0 with the terminal restored (alternate screen left, raw mode off).
//!
//! Needs tmux (scripts/bootstrap.sh installs it) and target/debug/chat4all-tui (`cargo build
//! --workspace`); fails, never skips, without them. Restarts the killed router at the end.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{ensure, Context, Result};
use chat4all_tests::{workspace_dir, Config};

#[path = "support/tmux.rs"]
mod tmux;
use tmux::{wait_screen, Tmux};

/// Session timeout of the routers (6 s) + 5 s.
const TAKEOVER_WITHIN: Duration = Duration::from_secs(11);

fn tokens(line: &str) -> Vec<&str> {
    line.split(|c: char| c.is_whitespace() || c == '│' || c == '┃').filter(|t| !t.is_empty()).collect()
}

/// The owner of the first chat-events partition in the partition table: the token after
/// `chat-events[.gN]-P` when it names a router.
fn chat_events_owner(screen: &str) -> Option<(String, String)> {
    screen.lines().find_map(|line| {
        let t = tokens(line);
        t.windows(2).find_map(|w| {
            (w[0].starts_with("chat-events") && w[1].starts_with("router-service-"))
                .then(|| (w[0].to_string(), w[1].to_string()))
        })
    })
}

/// Seconds since midnight UTC (the timeline prints UTC HH:MM:SS).
fn utc_seconds_of_day(t: SystemTime) -> i64 {
    (t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() % 86_400) as i64
}

fn parse_hms(s: &str) -> Option<i64> {
    let mut it = s.split(':').map(|p| p.parse::<i64>().ok());
    Some(it.next()??.checked_mul(3600)? + it.next()?? * 60 + it.next()??)
}

/// A timeline line at or after `since` (seconds of day) in which another router is assigned a
/// chat-events partition because of an action on `killed`.
fn takeover_entry(screen: &str, since: i64, killed: &str) -> Option<String> {
    screen.lines().find_map(|line| {
        let t = tokens(line);
        let at = parse_hms(t.first()?)?;
        let recent = (at - since).rem_euclid(86_400) < 600;
        let assigned = t.windows(3).any(|w| {
            w[0].starts_with("router-service-")
                && w[0] != killed
                && w[1] == "assigned"
                && w[2].starts_with("chat-events")
        });
        // The cause is the operator's kill, or the LeaveGroup the supervisor sends for the
        // killed member right after it: either way an action on the killed router.
        let cause = t.windows(3).any(|w| w[0] == "←" && w[2] == killed);
        (recent && assigned && cause).then(|| line.trim().to_string())
    })
}

fn tui_binary() -> PathBuf {
    std::env::var_os("CHAT4ALL_TUI")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_dir().join("target").join("debug").join("chat4all-tui"))
}

#[test]
fn kill_the_owner_from_the_dashboard_and_watch_the_takeover() -> Result<()> {
    let cfg = Config::from_env();
    let tui = tui_binary();
    ensure!(tui.exists(), "{} does not exist: build it with `cargo build -p chat4all-tui`", tui.display());
    ensure!(
        Command::new("tmux").arg("-V").output().is_ok_and(|o| o.status.success()),
        "tmux is not installed (scripts/bootstrap.sh installs it: apt-get install -y tmux)"
    );
    let tmux = Tmux { socket: format!("chat4all-tui-e2e-{}", std::process::id()), target: "dash".into() };
    // The dashboard runs under a shell that records how it exited and the terminal mode after it.
    let script = format!(
        "env CHAT4ALL_HOME='{home}' '{tui}' --interval 1s; echo \"tui-exit=$?\"; echo \"modes: $(stty -a | tr ' ;' '\\n\\n' | grep -E '^-?(icanon|echo|isig)$' | tr '\\n' ' ')\"; echo stty-done; sleep 600",
        home = cfg.home.display(),
        tui = tui.display()
    );
    tmux.run(&["new-session", "-d", "-s", "dash", "-x", "160", "-y", "45", "sh", "-c", &script])?;

    let (partition, owner) = wait_screen(
        &tmux,
        "a chat-events partition with its owning router",
        Duration::from_secs(30),
        chat_events_owner,
    )?;
    assert_eq!(tmux.format("#{alternate_on}")?, "1", "the dashboard draws on the alternate screen");

    // Focus the partition table (the router group's partitions come first) and kill its owner.
    tmux.keys(&["Tab"])?;
    std::thread::sleep(Duration::from_millis(300));
    tmux.keys(&["x"])?;
    wait_screen(&tmux, "the kill confirmation", Duration::from_secs(5), |s| {
        s.contains(&format!("Kill {owner} (SIGKILL")).then_some(())
    })?;
    let killed_at = Instant::now();
    let since = utc_seconds_of_day(SystemTime::now()) - 1;
    tmux.keys(&["y"])?;

    let outcome = (|| -> Result<()> {
        let new_owner = wait_screen(&tmux, &format!("another owner of {partition}"), TAKEOVER_WITHIN, |s| {
            chat_events_owner(s).filter(|(p, o)| *p == partition && *o != owner).map(|(_, o)| o)
        })?;
        let took = killed_at.elapsed();
        let remaining = TAKEOVER_WITHIN.saturating_sub(took);
        let entry =
            wait_screen(&tmux, "the takeover in the timeline", remaining, |s| takeover_entry(s, since, &owner))?;
        eprintln!("{partition}: {owner} -> {new_owner} on screen {took:?} after the kill; timeline: {entry}");
        Ok(())
    })();

    // `q` exits 0 and leaves the terminal as it found it, whatever happened above.
    tmux.keys(&["q"])?;
    let after = wait_screen(&tmux, "the dashboard's exit", Duration::from_secs(10), |s| {
        s.contains("stty-done").then(|| s.to_string())
    });
    let restart = Command::new(&cfg.ctl)
        .args(["start", &owner])
        .env("CHAT4ALL_HOME", &cfg.home)
        .output()
        .context("restarting the killed router")?;
    outcome?;
    let after = after?;
    assert!(after.contains("tui-exit=0"), "the dashboard did not exit 0:\n{after}");
    assert_eq!(tmux.format("#{alternate_on}")?, "0", "still on the alternate screen after q:\n{after}");
    let modes = tokens(&after);
    for mode in ["icanon", "echo", "isig"] {
        assert!(modes.contains(&mode), "terminal left in raw mode ({mode} off):\n{after}");
    }
    assert!(!after.contains("Partitions"), "the dashboard is still drawn after q:\n{after}");
    ensure!(restart.status.success(), "chat4allctl start {owner}: {}", String::from_utf8_lossy(&restart.stderr));
    Ok(())
}

#[test]
fn a_panic_restores_the_terminal() -> Result<()> {
    let cfg = Config::from_env();
    let tui = tui_binary();
    ensure!(tui.exists(), "{} does not exist: build it with `cargo build -p chat4all-tui`", tui.display());
    let tmux = Tmux { socket: format!("chat4all-tui-e2e-panic-{}", std::process::id()), target: "dash".into() };
    let script = format!(
        "env CHAT4ALL_HOME='{home}' '{tui}' --panic-after 3s 2>/dev/null; echo \"tui-exit=$?\"; echo \"modes: $(stty -a | tr ' ;' '\\n\\n' | grep -E '^-?(icanon|echo|isig)$' | tr '\\n' ' ')\"; echo stty-done; sleep 600",
        home = cfg.home.display(),
        tui = tui.display()
    );
    tmux.run(&["new-session", "-d", "-s", "dash", "-x", "120", "-y", "40", "sh", "-c", &script])?;
    wait_screen(&tmux, "the dashboard", Duration::from_secs(10), |s| s.contains("Partitions").then_some(()))?;
    assert_eq!(tmux.format("#{alternate_on}")?, "1");
    let after = wait_screen(&tmux, "the panic's exit", Duration::from_secs(15), |s| {
        s.contains("stty-done").then(|| s.to_string())
    })?;
    assert!(after.contains("tui-exit=101"), "expected the panic exit code 101:\n{after}");
    assert_eq!(tmux.format("#{alternate_on}")?, "0", "still on the alternate screen after the panic:\n{after}");
    let modes = tokens(&after);
    for mode in ["icanon", "echo", "isig"] {
        assert!(modes.contains(&mode), "terminal left in raw mode after the panic ({mode} off):\n{after}");
    }
    Ok(())
}
