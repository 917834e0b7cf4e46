//! Client of a running supervisor's control API (the `process` runtime as the CLI sees it).

use std::time::Duration;

use anyhow::Context;
use serde::de::DeserializeOwned;
use serde_json::Value;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};

use super::{
    Action, EngineInfo, EventKind, InstanceEvent, InstanceInfo, InstanceState, LogStream, Runtime, RuntimeKind,
    ScaleRequest, ScaleResult, Verb,
};
use crate::control::SupervisorFile;
use crate::error::{usage, UsageError};
use crate::paths::DataDir;

#[derive(Clone)]
pub struct ProcessRuntime {
    base: String,
    token: String,
    http: reqwest::Client,
    data: DataDir,
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
        Ok(Self { base: info.control_url.clone(), token: token.trim().to_string(), http, data: data.clone(), info })
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

    /// The supervisor's offset history of one group.
    pub async fn lag_history_of(&self, group: &str) -> anyhow::Result<crate::lag::LagHistory> {
        let mut url = reqwest::Url::parse("http://supervisor/v1/lag/history").expect("a valid URL");
        url.query_pairs_mut().append_pair("group", group);
        let path = format!("{}?{}", url.path(), url.query().unwrap_or_default());
        self.call(reqwest::Method::GET, &path, None).await
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
    pub async fn act(&self, name: &str, verb: Verb) -> anyhow::Result<String> {
        let path = format!("/v1/instances/{name}/{}", verb.as_str());
        let v: Value = self.call(reqwest::Method::POST, &path, None).await?;
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

/// How often the process runtime's event stream compares the supervisor's instance list.
const EVENT_POLL: Duration = Duration::from_millis(250);

impl Runtime for ProcessRuntime {
    fn engine(&self) -> EngineInfo {
        EngineInfo {
            runtime: RuntimeKind::Process,
            engine: format!("supervisor pid {}", self.info.pid),
            endpoint: self.base.clone(),
        }
    }

    fn list(&self) -> BoxFuture<'_, anyhow::Result<Vec<InstanceInfo>>> {
        ProcessRuntime::list(self).boxed()
    }

    fn act<'a>(&'a self, name: &'a str, verb: Verb) -> BoxFuture<'a, anyhow::Result<String>> {
        ProcessRuntime::act(self, name, verb).boxed()
    }

    fn scale<'a>(&'a self, service: &'a str, replicas: u32) -> BoxFuture<'a, anyhow::Result<ScaleResult>> {
        ProcessRuntime::scale(self, service, replicas).boxed()
    }

    fn logs<'a>(&'a self, name: &'a str, lines: usize) -> BoxFuture<'a, anyhow::Result<String>> {
        ProcessRuntime::logs(self, name, lines).boxed()
    }

    fn record_action<'a>(
        &'a self,
        action: &'a str,
        target: &'a str,
        detail: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        ProcessRuntime::record_action(self, action, target, detail).boxed()
    }

    /// The supervisor's action log: the timeline attributes rebalances to these.
    fn actions(&self) -> BoxFuture<'_, anyhow::Result<Vec<Action>>> {
        ProcessRuntime::actions(self).boxed()
    }

    fn lag_history(&self) -> BoxFuture<'_, anyhow::Result<crate::lag::LagHistory>> {
        ProcessRuntime::lag_history(self).boxed()
    }

    /// Tails the instance's log file (the supervisor appends every run's output to it).
    fn follow<'a>(&'a self, name: &'a str) -> LogStream<'a> {
        let path = self.data.log_file(name);
        let pos = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        futures::stream::unfold((path, pos), |(path, mut pos)| async move {
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                if len < pos {
                    pos = 0; // truncated or replaced
                }
                if len > pos {
                    let chunk = read_from(&path, pos);
                    return Some((chunk.map(bytes::Bytes::from), (path, len)));
                }
            }
        })
        .boxed()
    }

    /// The supervisor's instance list, compared every 250 ms: a state that becomes alive (or a
    /// new run) is a start, one that stops being alive is an exit (code or signal from `last_exit`).
    fn events(&self) -> BoxStream<'_, anyhow::Result<InstanceEvent>> {
        let seen = std::collections::HashMap::<String, InstanceInfo>::new();
        futures::stream::unfold((seen, true), move |(mut seen, first)| async move {
            if !first {
                tokio::time::sleep(EVENT_POLL).await;
            }
            let batch: Vec<anyhow::Result<InstanceEvent>> = match ProcessRuntime::list(self).await {
                Err(e) => vec![Err(e)],
                Ok(now) => now
                    .into_iter()
                    .filter_map(|i| {
                        let before = seen.get(&i.name).map(|p| (p.state.is_alive(), p.started_at));
                        let event = transition(before, &i).map(|kind| InstanceEvent {
                            at: chrono::Utc::now(),
                            instance: i.name.clone(),
                            service: i.service.clone(),
                            kind,
                        });
                        seen.insert(i.name.clone(), i);
                        event.filter(|_| !first).map(Ok)
                    })
                    .collect(),
            };
            Some((futures::stream::iter(batch), (seen, false)))
        })
        .flatten()
        .boxed()
    }
}

/// The event between two looks at one instance (`before`: alive and started at, if seen).
fn transition(before: Option<(bool, Option<chrono::DateTime<chrono::Utc>>)>, now: &InstanceInfo) -> Option<EventKind> {
    let alive = now.state.is_alive();
    match before {
        None => alive.then_some(EventKind::Started),
        Some((was, started)) if alive && (!was || started != now.started_at) => Some(EventKind::Started),
        Some((true, _)) if !alive => Some(exit_of(now)),
        _ => None,
    }
}

/// `exit code 1` / `killed by SIGKILL` (the supervisor's words) as a code and a signal.
fn exit_of(i: &InstanceInfo) -> EventKind {
    let last = i.last_exit.as_deref().unwrap_or_default();
    let code = last.strip_prefix("exit code ").and_then(|c| c.trim().parse().ok());
    let signal = last.strip_prefix("killed by ").map(|s| s.trim().to_string());
    let signal = signal.or_else(|| (i.state == InstanceState::Killed && code.is_none()).then(|| "SIGKILL".into()));
    EventKind::Exited { code, signal }
}

fn read_from(path: &std::path::Path, pos: u64) -> anyhow::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    f.seek(SeekFrom::Start(pos))?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(state: InstanceState, started: i64, last_exit: Option<&str>) -> InstanceInfo {
        InstanceInfo {
            name: "router-service-1".into(),
            service: "router-service".into(),
            state,
            pid: None,
            port: 8091,
            started_at: chrono::DateTime::from_timestamp(started, 0),
            last_exit: last_exit.map(str::to_owned),
            container: None,
        }
    }

    #[test]
    fn transitions_are_starts_and_exits() {
        let t = chrono::DateTime::from_timestamp(10, 0);
        assert_eq!(transition(None, &info(InstanceState::Running, 10, None)), Some(EventKind::Started));
        assert_eq!(transition(Some((true, t)), &info(InstanceState::Running, 10, None)), None);
        // Restarted between two looks: a new start time is a new run.
        assert_eq!(transition(Some((true, t)), &info(InstanceState::Running, 11, None)), Some(EventKind::Started));
        assert_eq!(
            transition(Some((true, t)), &info(InstanceState::Exited, 10, Some("killed by SIGKILL"))),
            Some(EventKind::Exited { code: None, signal: Some("SIGKILL".into()) })
        );
        assert_eq!(
            transition(Some((true, t)), &info(InstanceState::Exited, 10, Some("exit code 1"))),
            Some(EventKind::Exited { code: Some(1), signal: None })
        );
        assert_eq!(transition(Some((false, t)), &info(InstanceState::Stopped, 10, None)), None);
    }
}
