//! The data directory of a local stack: `$CHAT4ALL_HOME`, or `.chat4all` in the current directory.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        let root =
            if root.is_absolute() { root } else { std::env::current_dir().map(|d| d.join(&root)).unwrap_or(root) };
        Self { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    /// Written by a running supervisor: pid, control API address.
    pub fn supervisor_file(&self) -> PathBuf {
        self.root.join("supervisor.json")
    }
    /// Written by `up --runtime docker`: where the docker stack's broker and services are (the
    /// supervisor file's fields; pid 0, the engine's socket as the control URL).
    pub fn docker_stack_file(&self) -> PathBuf {
        self.root.join("docker-stack.json")
    }
    /// Bearer token of the control API (mode 0600).
    pub fn token_file(&self) -> PathBuf {
        self.root.join("control.token")
    }
    pub fn logs_dir(&self) -> PathBuf {
        self.root.join("logs")
    }
    pub fn log_file(&self, instance: &str) -> PathBuf {
        self.logs_dir().join(format!("{instance}.log"))
    }
    pub fn broker_dir(&self) -> PathBuf {
        self.root.join("broker")
    }
}
