//! Shared by the gateway, users and files tests: the api-gateway's address and an HTTP client
//! that sends a real API key created with `chat4allctl apikey create`.

#![allow(dead_code)]

use anyhow::{anyhow, bail, Context, Result};
use chat4all_tests::{unique, Config, Reply};
use serde_json::Value;

/// The gateway of the stack under test: `CHAT4ALL_GATEWAY_URL`, else `gatewayUrl` of the
/// running supervisor's `supervisor.json`.
pub fn gateway_url(cfg: &Config) -> Result<String> {
    if let Ok(u) = std::env::var("CHAT4ALL_GATEWAY_URL") {
        if !u.trim().is_empty() {
            return Ok(u.trim_end_matches('/').to_string());
        }
    }
    let path = cfg.home.join("supervisor.json");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!("the chat4all stack is not running: no {} (start it with `chat4allctl up --detach`)", path.display())
    })?;
    let v: Value = serde_json::from_str(&text)?;
    v.get("gatewayUrl")
        .and_then(Value::as_str)
        .map(|s| s.trim_end_matches('/').to_string())
        .ok_or_else(|| anyhow!("{} has no gatewayUrl: the stack predates the api-gateway", path.display()))
}

/// Creates a key named `prefix-<unique>` with the given limits; returns (name, key).
pub async fn create_key(cfg: &Config, prefix: &str, rate: f64, burst: u32) -> Result<(String, String)> {
    let name = unique(prefix);
    let out = chat4all_tests::ctl(
        cfg,
        &["apikey", "create", &name, "--rate", &rate.to_string(), "--burst", &burst.to_string()],
    )
    .await?;
    let key = out.trim().to_string();
    if !key.starts_with("c4a_") {
        bail!("apikey create printed {out:?}, not a key");
    }
    Ok((name, key))
}

/// A client of the gateway with one API key.
#[derive(Clone)]
pub struct Gw {
    pub base: String,
    pub key: Option<String>,
    pub http: reqwest::Client,
}

impl Gw {
    /// With a fresh key allowing `rate` requests/s (burst `burst`).
    pub async fn with_key(cfg: &Config, rate: f64, burst: u32) -> Result<Self> {
        let base = gateway_url(cfg)?;
        let (_, key) = create_key(cfg, "test", rate, burst).await?;
        Ok(Self { base, key: Some(key), http: reqwest::Client::new() })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let rb = self.http.request(method, self.url(path));
        match &self.key {
            Some(k) => rb.bearer_auth(k),
            None => rb,
        }
    }

    pub async fn get(&self, path: &str) -> Result<Reply> {
        reply(self.req(reqwest::Method::GET, path).send().await?).await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Result<Reply> {
        reply(self.req(reqwest::Method::POST, path).json(body).send().await?).await
    }

    pub async fn delete(&self, path: &str) -> Result<Reply> {
        reply(self.req(reqwest::Method::DELETE, path).send().await?).await
    }
}

/// Status and body of an answer (body parsed as JSON when it is JSON).
pub async fn reply(resp: reqwest::Response) -> Result<Reply> {
    let status = resp.status().as_u16();
    let raw = resp.text().await?;
    let body = serde_json::from_str(&raw).unwrap_or(Value::Null);
    Ok(Reply { status, body, raw })
}
