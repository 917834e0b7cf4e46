//! Client of a running supervisor's control API (the `process` runtime as the CLI sees it).

use std::time::Duration;

use anyhow::Context;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{Action, InstanceInfo, ScaleRequest, ScaleResult};
use crate::control::SupervisorFile;
use crate::error::{usage, UsageError};
use crate::paths::DataDir;

#[derive(Clone)]
pub struct ProcessRuntime {
    base: String,
    token: String,
    http: reqwest::Client,
    pub info: SupervisorFile,
}

impl ProcessRuntime {
    /// Connects to the supervisor of `data`; a clear error when none runs there.
    pub fn connect(data: &DataDir, timeout: Duration) -> anyhow::Result<Self> {
        let file = data.supervisor_file();
        let text = std::fs::read_to_string(&file).map_err(|_| {
            usage(format!("no local stack is running in {} (start it with `chat4allctl up`)", data.root().display()))
        })?;
        let info: SupervisorFile =
            serde_json::from_str(&text).with_context(|| format!("reading {}", file.display()))?;
        let token = std::fs::read_to_string(data.token_file())
            .with_context(|| format!("reading {}", data.token_file().display()))?;
        let http = reqwest::Client::builder().timeout(timeout).build()?;
        Ok(Self { base: info.control_url.clone(), token: token.trim().to_string(), http, info })
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<T> {
        let text = self.send(method, path, body).await?;
        if text.is_empty() || !text.trim_start().starts_with(['{', '[', '"']) {
            return serde_json::from_value(Value::String(text)).context("decoding the supervisor's answer");
        }
        serde_json::from_str(&text).context("decoding the supervisor's answer")
    }

    /// The answer's body as text, or the supervisor's error.
    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> anyhow::Result<String> {
        let mut req = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.map_err(|e| {
            usage(format!("the supervisor at {} does not answer ({e}); is the stack still up?", self.base))
        })?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if status.is_success() {
            return Ok(text);
        }
        let msg = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or(text);
        if status == reqwest::StatusCode::BAD_REQUEST {
            Err(UsageError(msg).into())
        } else {
            Err(anyhow::anyhow!("supervisor: {status}: {msg}"))
        }
    }

    /// The supervisor's offset history (empty from a supervisor that keeps none).
    pub async fn lag_history(&self) -> anyhow::Result<crate::lag::LagHistory> {
        self.call(reqwest::Method::GET, "/v1/lag/history", None).await
    }

    /// Adds an action taken by this client to the supervisor's action log.
    pub async fn record_action(&self, action: &str, target: &str, detail: &str) -> anyhow::Result<()> {
        let body = serde_json::json!({"action": action, "target": target, "detail": detail});
        let _: Value = self.call(reqwest::Method::POST, "/v1/actions", Some(body)).await?;
        Ok(())
    }

    pub async fn list(&self) -> anyhow::Result<Vec<InstanceInfo>> {
        self.call(reqwest::Method::GET, "/v1/instances", None).await
    }

    pub async fn actions(&self) -> anyhow::Result<Vec<Action>> {
        self.call(reqwest::Method::GET, "/v1/actions", None).await
    }

    /// `kill`, `stop`, `start` or `restart` one instance; returns what was done.
    pub async fn act(&self, name: &str, action: &str) -> anyhow::Result<String> {
        let v: Value = self.call(reqwest::Method::POST, &format!("/v1/instances/{name}/{action}"), None).await?;
        Ok(v["message"].as_str().unwrap_or_default().to_string())
    }

    pub async fn scale(&self, service: &str, replicas: u32) -> anyhow::Result<ScaleResult> {
        let body = serde_json::to_value(ScaleRequest { service: service.into(), replicas })?;
        self.call(reqwest::Method::POST, "/v1/scale", Some(body)).await
    }

    pub async fn logs(&self, name: &str, lines: usize) -> anyhow::Result<String> {
        // Plain text, never decoded: the services log JSON lines, which would look like a JSON answer.
        self.send(reqwest::Method::GET, &format!("/v1/instances/{name}/logs?lines={lines}"), None).await
    }

    pub async fn shutdown(&self) -> anyhow::Result<()> {
        let _: Value = self.call(reqwest::Method::POST, "/v1/shutdown", None).await?;
        Ok(())
    }
}
