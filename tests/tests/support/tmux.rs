//! A terminal for the dashboard: a tmux server of its own, its screen and its keys.

#![allow(dead_code)]

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

pub struct Tmux {
    pub socket: String,
    pub target: String,
}

impl Tmux {
    pub fn run(&self, args: &[&str]) -> Result<String> {
        let out = Command::new("tmux").arg("-L").arg(&self.socket).args(args).output().context("running tmux")?;
        ensure!(out.status.success(), "tmux {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
    pub fn screen(&self) -> Result<String> {
        self.run(&["capture-pane", "-p", "-t", &self.target])
    }
    pub fn keys(&self, keys: &[&str]) -> Result<()> {
        let mut args = vec!["send-keys", "-t", self.target.as_str()];
        args.extend_from_slice(keys);
        self.run(&args).map(|_| ())
    }
    pub fn format(&self, f: &str) -> Result<String> {
        Ok(self.run(&["display-message", "-p", "-t", &self.target, f])?.trim().to_string())
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["-L", &self.socket, "kill-server"]).output();
    }
}

/// Polls the screen until `found` returns Some, or fails with the last screen.
pub fn wait_screen<T>(tmux: &Tmux, what: &str, within: Duration, found: impl Fn(&str) -> Option<T>) -> Result<T> {
    let deadline = Instant::now() + within;
    loop {
        let screen = tmux.screen()?;
        if let Some(v) = found(&screen) {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            bail!("{what}: not on screen within {within:?}; screen:\n{screen}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
