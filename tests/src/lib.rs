//! Harness of the chat4all end-to-end tests.
//!
//! The tests run against a stack that is already up (`chat4allctl up --detach`); they never start
//! it themselves. Every test connects through [`Stack::connect`], which fails with a clear
//! "stack is not running" message when the message-service or PostgreSQL cannot be reached, so
//! a missing stack is a failure, never a silent pass.
//!
//! Every test works in its own conversations, senders and recipients ([`unique`]), so tests in
//! one binary can run in parallel against the one shared stack, and their assertions only look
//! at the rows they produced.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use sqlx::postgres::{PgPool, PgPoolOptions};
use uuid::Uuid;

/// How often the `wait_*` helpers poll.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// The seed scenario: this many messages, each to one WHATSAPP and one TELEGRAM recipient.
pub const SEED_MESSAGES: usize = 20;

/// The channels of the platform, in their wire spelling.
pub const WHATSAPP: &str = "WHATSAPP";
pub const TELEGRAM: &str = "TELEGRAM";
pub const INSTAGRAM: &str = "INSTAGRAM";

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

/// Where the stack under test is, from the environment (with the local-stack defaults).
#[derive(Debug, Clone)]
pub struct Config {
    /// Base URL of the message-service (`CHAT4ALL_API_URL`).
    pub api_url: String,
    /// PostgreSQL of the platform (`DATABASE_URL`).
    pub database_url: String,
    /// Kafka bootstrap address (`KAFKA_BOOTSTRAP`).
    pub kafka_bootstrap: String,
    /// The control-plane binary (`CHAT4ALL_CTL`).
    pub ctl: PathBuf,
    /// The stack's data directory (`CHAT4ALL_HOME`).
    pub home: PathBuf,
}

impl Config {
    /// Environment variables win; then the running stack's `supervisor.json` in `CHAT4ALL_HOME`
    /// (so a stack started with `--port-offset` is found); then the local-stack defaults.
    pub fn from_env() -> Self {
        let workspace = workspace_dir();
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let home = var("CHAT4ALL_HOME").map(PathBuf::from).unwrap_or_else(|| workspace.join(".chat4all"));
        // The control plane's own way to find a stack: one order of precedence for everyone.
        let stack = chat4all_ctl::stack::Stack::find(&chat4all_ctl::paths::DataDir::new(&home));
        Self {
            api_url: stack.api_url.trim_end_matches('/').to_string(),
            database_url: stack.database_url,
            kafka_bootstrap: stack.bootstrap,
            ctl: var("CHAT4ALL_CTL")
                .map(PathBuf::from)
                .unwrap_or_else(|| workspace.join("target").join("debug").join("chat4allctl")),
            home,
        }
    }
}

/// The Cargo workspace root (the parent of this crate).
pub fn workspace_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

fn not_running(what: &str, detail: impl std::fmt::Display) -> anyhow::Error {
    anyhow!(
        "the chat4all stack is not running: {what} ({detail}). Start it before the tests, e.g. \
         `target/debug/chat4allctl up --detach --data-dir DIR`, and point CHAT4ALL_API_URL / \
         DATABASE_URL / CHAT4ALL_HOME at it"
    )
}

/// Everything a test needs: configuration, API client and database pool.
#[derive(Clone)]
pub struct Stack {
    pub cfg: Config,
    pub api: Api,
    pub db: PgPool,
}

impl Stack {
    /// Connects to the running stack; fails (never skips) when it is not there.
    pub async fn connect() -> Result<Self> {
        let cfg = Config::from_env();
        let api = Api::connect(&cfg.api_url).await?;
        let db = connect_db(&cfg.database_url).await?;
        Ok(Self { cfg, api, db })
    }

    /// Runs the control plane with `args` against this stack's data directory; see [`ctl`].
    pub async fn ctl(&self, args: &[&str]) -> Result<String> {
        ctl(&self.cfg, args).await
    }

    /// The stack's exporter (`chat4allctl up` serves it), from `supervisor.json`.
    pub fn exporter_url(&self) -> Result<String> {
        let file = self.cfg.home.join("supervisor.json");
        let sup: Value = serde_json::from_str(
            &std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?,
        )?;
        sup["exporterUrl"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow!("{} has no exporterUrl: is it an older `up`? {sup}", file.display()))
    }
}

/// The value of the first series on a Prometheus text page whose name and labels start with
/// `series` (`chat4all_outbox_paused`, `chat4all_dlq_depth{channel="telegram"`).
pub fn metric(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with([' ', '{', ',', '}']))
        .and_then(|l| l.rsplit_once(' '))
        .and_then(|(_, v)| v.trim().parse().ok())
}

/// A small pool on the platform's database; fails with "stack is not running" when unreachable.
pub async fn connect_db(url: &str) -> Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(5))
        .connect(url)
        .await
        .map_err(|e| not_running(&format!("PostgreSQL at {url} is not reachable"), e))
}

/// A fresh id with a readable prefix, unique across tests and runs.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", Uuid::new_v4().simple())
}

// ---------------------------------------------------------------------------------------------
// Control plane
// ---------------------------------------------------------------------------------------------

/// Runs `chat4allctl ARGS --data-dir HOME` and returns its stdout; an error (with stdout and
/// stderr) unless it exits successfully within three minutes.
pub async fn ctl(cfg: &Config, args: &[&str]) -> Result<String> {
    if !cfg.ctl.exists() {
        bail!(
            "the control plane binary {} does not exist (build it with `cargo build -p chat4all-ctl` \
             or set CHAT4ALL_CTL)",
            cfg.ctl.display()
        );
    }
    let home = cfg.home.to_string_lossy().into_owned();
    let mut cmd = tokio::process::Command::new(&cfg.ctl);
    cmd.args(args)
        .arg("--data-dir")
        .arg(&home)
        .env("CHAT4ALL_HOME", &home)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let shown = format!("{} {} --data-dir {home}", cfg.ctl.display(), args.join(" "));
    let out = tokio::time::timeout(Duration::from_secs(180), cmd.output())
        .await
        .map_err(|_| anyhow!("`{shown}` did not finish within 180 s"))?
        .with_context(|| format!("running `{shown}`"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        bail!("`{shown}` failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}", out.status);
    }
    Ok(stdout)
}

/// What a `chat4allctl` run printed and how it exited.
#[derive(Debug)]
pub struct CtlRun {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `chat4allctl ARGS` against the stack whatever it exits with, with extra environment
/// variables (e.g. a `KAFKA_BOOTSTRAP` nothing listens on).
pub async fn ctl_run(cfg: &Config, args: &[&str], env: &[(&str, &str)]) -> Result<CtlRun> {
    let home = cfg.home.to_string_lossy().into_owned();
    let mut cmd = tokio::process::Command::new(&cfg.ctl);
    cmd.args(args).env("CHAT4ALL_HOME", &home).stdin(std::process::Stdio::null()).kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(Duration::from_secs(180), cmd.output())
        .await
        .map_err(|_| anyhow!("`chat4allctl {}` did not finish within 180 s", args.join(" ")))?
        .context("running chat4allctl")?;
    Ok(CtlRun {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Polls `check` every 250 ms until it returns `Some`, or fails after `within` with the last
/// observation in the message.
pub async fn wait_for<T, F, Fut>(what: &str, within: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(Option<T>, String)>>,
{
    let deadline = Instant::now() + within;
    loop {
        let last = match check().await {
            Ok((Some(v), _)) => return Ok(v),
            Ok((None, seen)) => seen,
            Err(e) => format!("{e:#}"),
        };
        if Instant::now() >= deadline {
            bail!("{what}: not within {within:?}; last seen: {last}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits until the broker reports `group` Stable with `members` members on two polls a second
/// apart: a test that counts owners and standbys starts from a settled group.
pub async fn wait_group_stable(stack: &Stack, group: &str, members: usize, within: Duration) -> Result<()> {
    let deadline = Instant::now() + within;
    let mut in_a_row = 0;
    loop {
        let out = stack.ctl(&["groups", "list", "-o", "json"]).await?;
        let v: Value = serde_json::from_str(&out).with_context(|| format!("groups list -o json: {out}"))?;
        let g = v.as_array().and_then(|l| l.iter().find(|g| g["group"] == group)).cloned().unwrap_or_default();
        let n = g["members"].as_array().map(Vec::len).unwrap_or(0);
        in_a_row = if g["state"] == "Stable" && n == members { in_a_row + 1 } else { 0 };
        if in_a_row >= 2 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("group {group} not Stable with {members} members within {within:?}: {g}");
        }
        tokio::time::sleep(Duration::from_millis(750)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// API client
// ---------------------------------------------------------------------------------------------

/// One HTTP answer: status, body parsed as JSON (`Null` when it is not JSON) and the raw text.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub raw: String,
}

impl Reply {
    /// The `error` member of an error body.
    pub fn error(&self) -> Option<&str> {
        self.body.get("error").and_then(Value::as_str)
    }

    /// The `field` member of an error body.
    pub fn field(&self) -> Option<&str> {
        self.body.get("field").and_then(Value::as_str)
    }

    /// Errors unless the status is `expected`.
    pub fn expect(&self, expected: u16, what: &str) -> Result<&Self> {
        if self.status != expected {
            bail!("{what}: expected HTTP {expected}, got {} with body {}", self.status, self.raw);
        }
        Ok(self)
    }

    /// The `messageId` of a 202 answer.
    pub fn message_id(&self) -> Result<Uuid> {
        let raw = self
            .body
            .get("messageId")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("answer without a messageId: {}", self.raw))?;
        Uuid::parse_str(raw).with_context(|| format!("messageId {raw:?} is not a UUID"))
    }
}

/// Client of the message-service API.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    client: reqwest::Client,
}

impl Api {
    /// A client for `base`, after checking the service answers `/health/live`.
    pub async fn connect(base: &str) -> Result<Self> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(32)
            .build()?;
        let api = Self { base: base.trim_end_matches('/').to_string(), client };
        let url = format!("{}/health/live", api.base);
        match api.client.get(&url).send().await {
            Ok(r) if r.status().is_success() => Ok(api),
            Ok(r) => Err(not_running(
                &format!("the message-service at {} is not live", api.base),
                format!("GET /health/live answered {}", r.status()),
            )),
            Err(e) => Err(not_running(&format!("the message-service at {} is not reachable", api.base), e)),
        }
    }

    async fn reply(resp: reqwest::Response) -> Result<Reply> {
        let status = resp.status().as_u16();
        let raw = resp.text().await.context("reading the answer")?;
        let body = serde_json::from_str(&raw).unwrap_or(Value::Null);
        Ok(Reply { status, body, raw })
    }

    /// `POST /api/v1/messages` with a JSON body.
    pub async fn post_message(&self, body: &Value) -> Result<Reply> {
        let resp = self
            .client
            .post(format!("{}/api/v1/messages", self.base))
            .json(body)
            .send()
            .await
            .context("POST /api/v1/messages")?;
        Self::reply(resp).await
    }

    /// Posts a message and returns its id; errors unless the answer is 202 PENDING.
    pub async fn send(&self, body: &Value) -> Result<Uuid> {
        let reply = self.post_message(body).await?;
        reply.expect(202, "POST /api/v1/messages")?;
        if reply.body.get("status").and_then(Value::as_str) != Some("PENDING") {
            bail!("202 answer without status PENDING: {}", reply.raw);
        }
        reply.message_id()
    }

    /// `POST /api/v1/messages` with arbitrary bytes and content type (None: no header).
    pub async fn post_raw(&self, body: Vec<u8>, content_type: Option<&str>) -> Result<Reply> {
        let mut req = self.client.post(format!("{}/api/v1/messages", self.base)).body(body);
        if let Some(ct) = content_type {
            req = req.header(reqwest::header::CONTENT_TYPE, ct);
        }
        Self::reply(req.send().await.context("POST /api/v1/messages")?).await
    }

    /// `GET {path}` (path starting with `/`).
    pub async fn get(&self, path: &str) -> Result<Reply> {
        let resp =
            self.client.get(format!("{}{path}", self.base)).send().await.with_context(|| format!("GET {path}"))?;
        Self::reply(resp).await
    }

    /// `GET /api/v1/messages/{id}`.
    pub async fn get_message(&self, id: &str) -> Result<Reply> {
        self.get(&format!("/api/v1/messages/{id}")).await
    }

    /// `GET /api/v1/conversations/{id}/messages?limit=&cursor=`.
    pub async fn conversation_page(
        &self,
        conversation: &str,
        limit: Option<&str>,
        cursor: Option<&str>,
    ) -> Result<Reply> {
        let mut req = self.client.get(format!("{}/api/v1/conversations/{conversation}/messages", self.base));
        let mut query = Vec::new();
        if let Some(l) = limit {
            query.push(("limit", l));
        }
        if let Some(c) = cursor {
            query.push(("cursor", c));
        }
        req = req.query(&query);
        Self::reply(req.send().await.context("GET conversation messages")?).await
    }

    /// Polls (every [`POLL_INTERVAL`]) until every recipient of every message in `ids` is
    /// DELIVERED; returns the final views. Fails at `deadline` listing what is still missing,
    /// and at once when a recipient FAILED.
    pub async fn wait_delivered(&self, ids: &[Uuid], deadline: Instant) -> Result<HashMap<Uuid, Value>> {
        let mut pending: Vec<Uuid> = ids.to_vec();
        let mut done: HashMap<Uuid, Value> = HashMap::with_capacity(ids.len());
        let mut last_seen: HashMap<Uuid, Value> = HashMap::new();
        loop {
            let mut still = Vec::new();
            for chunk in pending.chunks(16) {
                let mut set = tokio::task::JoinSet::new();
                for &id in chunk {
                    let api = self.clone();
                    set.spawn(async move { (id, api.get_message(&id.to_string()).await) });
                }
                while let Some(joined) = set.join_next().await {
                    let (id, reply) = joined.context("status poll task")?;
                    let view = match reply {
                        Ok(r) if r.status == 200 => r.body,
                        // The API's "try again" (its database briefly unreachable or at its
                        // connection limit) is retried on the next round, like a transport error.
                        Ok(r) if r.status == 503 => {
                            last_seen.insert(id, json!({"status503": r.raw}));
                            still.push(id);
                            continue;
                        }
                        Ok(r) => {
                            bail!("GET /api/v1/messages/{id} answered {}: {}", r.status, r.raw)
                        }
                        // A transient transport error is retried on the next round.
                        Err(e) => {
                            last_seen.insert(id, json!({"pollError": format!("{e:#}")}));
                            still.push(id);
                            continue;
                        }
                    };
                    let recipients = view.get("recipients").and_then(Value::as_array).cloned().unwrap_or_default();
                    if let Some(failed) = recipients.iter().find(|r| r["status"] == "FAILED") {
                        bail!("message {id}: recipient {failed} FAILED (message: {view})");
                    }
                    if !recipients.is_empty() && recipients.iter().all(|r| r["status"] == "DELIVERED") {
                        done.insert(id, view);
                    } else {
                        last_seen.insert(id, view);
                        still.push(id);
                    }
                }
            }
            pending = still;
            if pending.is_empty() {
                return Ok(done);
            }
            if Instant::now() >= deadline {
                let sample: Vec<String> = pending
                    .iter()
                    .take(5)
                    .map(|id| format!("  {id}: {}", last_seen.get(id).cloned().unwrap_or(Value::Null)))
                    .collect();
                bail!(
                    "{} of {} messages not DELIVERED to every recipient by the deadline; e.g.:\n{}",
                    pending.len(),
                    ids.len(),
                    sample.join("\n")
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Message bodies
// ---------------------------------------------------------------------------------------------

/// Builds a `POST /api/v1/messages` body.
#[derive(Debug, Clone)]
pub struct MessageBuilder {
    pub conversation_id: String,
    pub sender_id: String,
    pub channel: String,
    pub text: String,
    pub recipients: Vec<(String, String)>,
    pub message_id: Option<Uuid>,
}

impl MessageBuilder {
    /// A WHATSAPP text message in `conversation_id` from a fresh sender, without recipients yet.
    pub fn new(conversation_id: &str) -> Self {
        Self {
            conversation_id: conversation_id.to_string(),
            sender_id: unique("sender"),
            channel: WHATSAPP.into(),
            text: "hello from the e2e tests".into(),
            recipients: Vec::new(),
            message_id: None,
        }
    }

    pub fn sender(mut self, sender_id: &str) -> Self {
        self.sender_id = sender_id.to_string();
        self
    }

    pub fn channel(mut self, channel: &str) -> Self {
        self.channel = channel.to_string();
        self
    }

    pub fn text(mut self, text: impl Into<String>) -> Self {
        self.text = text.into();
        self
    }

    pub fn to(mut self, user_id: &str, channel: &str) -> Self {
        self.recipients.push((user_id.to_string(), channel.to_string()));
        self
    }

    pub fn message_id(mut self, id: Uuid) -> Self {
        self.message_id = Some(id);
        self
    }

    pub fn build(&self) -> Value {
        let mut v = json!({
            "conversationId": self.conversation_id,
            "senderId": self.sender_id,
            "content": {"type": "TEXT", "text": self.text},
            "channel": self.channel,
            "recipients": self.recipients.iter()
                .map(|(u, c)| json!({"userId": u, "channel": c}))
                .collect::<Vec<_>>(),
        });
        if let Some(id) = self.message_id {
            v["messageId"] = json!(id.to_string());
        }
        v
    }

    /// The (message, recipient, channel) deliveries this message should produce once accepted
    /// as `id`, channels in their canonical upper-case spelling.
    pub fn deliveries(&self, id: Uuid) -> Vec<DeliveryKey> {
        self.recipients.iter().map(|(u, c)| (id, u.clone(), c.to_ascii_uppercase())).collect()
    }
}

/// The seed scenario of test run `run`: [`SEED_MESSAGES`] messages spread over four
/// conversations, each to `{run}-alice` on WHATSAPP and `{run}-bob` on TELEGRAM.
pub fn seed_messages(run: &str) -> Vec<MessageBuilder> {
    let sender = format!("{run}-sender");
    (0..SEED_MESSAGES)
        .map(|i| {
            MessageBuilder::new(&format!("{run}-conv-{}", i % 4))
                .sender(&sender)
                .text(format!("seed message {i} of {run}"))
                .to(&format!("{run}-alice"), WHATSAPP)
                .to(&format!("{run}-bob"), TELEGRAM)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The simulated providers (the ground truth of what reached a device)
// ---------------------------------------------------------------------------------------------

pub use chat4all_contract::provider::{Faults, RecordEntry, RecordOutcome, RecordSummary};

/// The channels' providers of the stack under test: `providerUrls` of `supervisor.json`, else
/// `http://127.0.0.1:{8075|8076|8077 + CHAT4ALL_PORT_OFFSET}`.
pub fn provider_url(cfg: &Config, channel: &str) -> String {
    let label = channel.to_ascii_lowercase();
    let sup: Value = std::fs::read_to_string(cfg.home.join("supervisor.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    if let Some(url) = sup["providerUrls"][label.as_str()].as_str() {
        return url.trim_end_matches('/').to_string();
    }
    let offset: u16 = std::env::var("CHAT4ALL_PORT_OFFSET").ok().and_then(|v| v.trim().parse().ok()).unwrap_or(0);
    let port = match label.as_str() {
        "telegram" => 8076,
        "instagram" => 8077,
        _ => 8075,
    };
    format!("http://127.0.0.1:{}", port + offset)
}

fn provider_http() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap_or_default()
}

async fn provider_get<T: serde::de::DeserializeOwned>(cfg: &Config, channel: &str, path: &str) -> Result<T> {
    let url = format!("{}{path}", provider_url(cfg, channel));
    let resp = provider_http()
        .get(&url)
        .send()
        .await
        .map_err(|e| not_running(&format!("the {channel} provider is unreachable at {url}"), e))?;
    let status = resp.status();
    let body = resp.text().await.context("reading a provider answer")?;
    ensure_ok(status, &url, &body)?;
    serde_json::from_str(&body).with_context(|| format!("decoding {url}: {body}"))
}

fn ensure_ok(status: reqwest::StatusCode, url: &str, body: &str) -> Result<()> {
    if !status.is_success() {
        bail!("{url} answered {status}: {body}");
    }
    Ok(())
}

fn prefix_query(path: &str, prefix: &str) -> String {
    let enc: String = prefix
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!("{path}?conversationPrefix={enc}")
}

/// One channel's provider summary for the conversations starting with `prefix`.
pub async fn provider_summary_of(cfg: &Config, channel: &str, prefix: &str) -> Result<RecordSummary> {
    provider_get(cfg, channel, &prefix_query(chat4all_contract::provider::SUMMARY_PATH, prefix)).await
}

/// The three providers' summaries for `prefix`, added up (the ground truth of a test's
/// conversations: `delivered`, `duplicateRequests`, `duplicateDeliveries`).
pub async fn provider_summary(cfg: &Config, prefix: &str) -> Result<RecordSummary> {
    let mut t = RecordSummary::default();
    for ch in [WHATSAPP, TELEGRAM, INSTAGRAM] {
        let s = provider_summary_of(cfg, ch, prefix).await?;
        t += &s;
    }
    Ok(t)
}

/// The three providers' record entries for `prefix` (each provider's in arrival order).
pub async fn provider_record(cfg: &Config, prefix: &str) -> Result<Vec<RecordEntry>> {
    let mut all = Vec::new();
    for ch in [WHATSAPP, TELEGRAM, INSTAGRAM] {
        let r: chat4all_contract::provider::RecordResponse =
            provider_get(cfg, ch, &prefix_query(chat4all_contract::provider::RECORD_PATH, prefix)).await?;
        all.extend(r.entries);
    }
    Ok(all)
}

/// A provider's faults now.
pub async fn provider_faults(cfg: &Config, channel: &str) -> Result<Faults> {
    provider_get(cfg, channel, chat4all_contract::provider::FAULTS_PATH).await
}

/// Replaces a provider's faults (tests that change them put the old ones back).
pub async fn set_provider_faults(cfg: &Config, channel: &str, faults: &Faults) -> Result<()> {
    let url = format!("{}{}", provider_url(cfg, channel), chat4all_contract::provider::FAULTS_PATH);
    let resp = provider_http().put(&url).json(faults).send().await.with_context(|| format!("PUT {url}"))?;
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    ensure_ok(status, &url, &body)
}

/// Puts providers back to healthy (no faults) when dropped: a test that sets faults holds one,
/// so they end with the test even when it fails.
pub struct HealthyOnDrop {
    cfg: Config,
    channels: Vec<&'static str>,
}

impl HealthyOnDrop {
    pub fn new(cfg: &Config, channels: &[&'static str]) -> Self {
        Self { cfg: cfg.clone(), channels: channels.to_vec() }
    }

    /// Every channel's provider.
    pub fn all(cfg: &Config) -> Self {
        Self::new(cfg, &[WHATSAPP, TELEGRAM, INSTAGRAM])
    }
}

impl Drop for HealthyOnDrop {
    fn drop(&mut self) {
        let cfg = self.cfg.clone();
        let channels = std::mem::take(&mut self.channels);
        // A test's runtime may be shutting down: a thread of its own with a runtime of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async {
                for ch in channels {
                    let _ = set_provider_faults(&cfg, ch, &Faults::default()).await;
                }
            })
        })
        .join();
    }
}

// ---------------------------------------------------------------------------------------------
// Database checks
// ---------------------------------------------------------------------------------------------

/// One delivery: (message id, recipient id, channel).
pub type DeliveryKey = (Uuid, String, String);

/// The providers' record entries of the messages `ids` (their conversations are read from
/// `messages`, so only those conversations' records are fetched), in each provider's order.
pub async fn provider_entries(db: &PgPool, ids: &[Uuid]) -> Result<Vec<RecordEntry>> {
    let cfg = Config::from_env();
    let conversations: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT conversation_id FROM messages WHERE id = ANY($1)")
            .bind(ids)
            .fetch_all(db)
            .await
            .context("reading the messages' conversations")?;
    let wanted: HashSet<Uuid> = ids.iter().copied().collect();
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for conv in conversations {
        for e in provider_record(&cfg, &conv).await? {
            // A prefix also matches longer ids: keep each entry once, and only these messages.
            if e.metadata.conversation_id == conv
                && wanted.contains(&e.metadata.message_id)
                && seen.insert((e.channel, e.seq))
            {
                out.push(e);
            }
        }
    }
    Ok(out)
}

/// Effects (accepted entries in the providers' records) per (message, recipient, channel) among
/// the messages `ids`: what reached a device.
pub async fn provider_send_counts(db: &PgPool, ids: &[Uuid]) -> Result<HashMap<DeliveryKey, i64>> {
    let mut counts: HashMap<DeliveryKey, i64> = HashMap::new();
    for e in provider_entries(db, ids).await? {
        if e.outcome == RecordOutcome::Accepted {
            let key = (e.metadata.message_id, e.metadata.recipient_id, e.channel.as_str().to_string());
            *counts.entry(key).or_default() += 1;
        }
    }
    Ok(counts)
}

/// Checks the providers' records hold exactly one effect for each of `expected` and nothing else
/// for those messages. The error lists missing, duplicated and unexpected deliveries.
pub async fn assert_delivered_exactly_once(db: &PgPool, expected: &[DeliveryKey]) -> Result<()> {
    let ids: Vec<Uuid> = expected.iter().map(|k| k.0).collect::<HashSet<_>>().into_iter().collect();
    let counts = provider_send_counts(db, &ids).await?;
    let wanted: HashSet<&DeliveryKey> = expected.iter().collect();
    let missing: Vec<&DeliveryKey> = expected.iter().filter(|k| !counts.contains_key(*k)).collect();
    let duplicated: BTreeMap<String, i64> =
        counts.iter().filter(|(_, &n)| n > 1).map(|(k, &n)| (format!("{k:?}"), n)).collect();
    let unexpected: Vec<&DeliveryKey> = counts.keys().filter(|k| !wanted.contains(k)).collect();
    let total: i64 = counts.values().sum();
    if !missing.is_empty() || !duplicated.is_empty() || !unexpected.is_empty() || total != expected.len() as i64 {
        bail!(
            "the providers' records are not exactly-once: expected {} effects, found {total}; {} missing \
             (e.g. {:?}), {} duplicated (effect counts: {:?}), {} unexpected (e.g. {:?})",
            expected.len(),
            missing.len(),
            missing.iter().take(5).collect::<Vec<_>>(),
            duplicated.len(),
            duplicated.iter().take(5).collect::<Vec<_>>(),
            unexpected.len(),
            unexpected.iter().take(5).collect::<Vec<_>>(),
        );
    }
    Ok(())
}

/// `messages` rows of a conversation or written by a sender.
pub async fn message_rows(db: &PgPool, conversation_id: &str, sender_id: &str) -> Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM messages WHERE conversation_id = $1 OR sender_id = $2")
        .bind(conversation_id)
        .bind(sender_id)
        .fetch_one(db)
        .await
        .context("counting messages")
}

/// `outbox` rows (not yet published to Kafka) of the given conversations (the record key).
pub async fn outbox_rows(db: &PgPool, conversations: &[String]) -> Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM outbox WHERE key = ANY($1)")
        .bind(conversations)
        .fetch_one(db)
        .await
        .map_err(|e| anyhow!("counting outbox rows: {e:?}"))
}

/// Waits until the outbox holds nothing of `conversations`.
pub async fn wait_outbox_drained(db: &PgPool, conversations: &[String], deadline: Instant) -> Result<()> {
    loop {
        let n = outbox_rows(db, conversations).await?;
        if n == 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("the outbox still holds {n} records of these conversations after the deadline");
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// `deliveries.route_count` of every delivery of `ids`.
pub async fn route_counts(db: &PgPool, ids: &[Uuid]) -> Result<HashMap<DeliveryKey, i32>> {
    let rows: Vec<(Uuid, String, String, i32)> = sqlx::query_as(
        "SELECT message_id, recipient_id, channel, route_count FROM deliveries WHERE message_id = ANY($1)",
    )
    .bind(ids)
    .fetch_all(db)
    .await
    .context("reading deliveries")?;
    Ok(rows.into_iter().map(|(m, r, c, n)| ((m, r, c), n)).collect())
}

// ---------------------------------------------------------------------------------------------
// The outbox relay (through the message-service's admin endpoints, as an operator sees it)
// ---------------------------------------------------------------------------------------------

/// `chat4allctl relay -o json`: leader, pause lease, backlog, oldest row.
pub async fn relay_state(stack: &Stack) -> Result<Value> {
    Ok(serde_json::from_str(&stack.ctl(&["relay", "-o", "json"]).await?)?)
}

/// Whether a pause lease holds the relay now.
pub async fn relay_paused(stack: &Stack) -> Result<bool> {
    Ok(!relay_state(stack).await?["paused"].is_null())
}

/// Waits until the relay is paused (`want`) or running (`!want`).
pub async fn wait_relay(stack: &Stack, want: bool, timeout: Duration) -> Result<Value> {
    let what = if want { "the relay paused" } else { "the relay running" };
    wait_for(what, timeout, || async {
        let state = relay_state(stack).await?;
        Ok(((state["paused"].is_null() != want).then(|| state.clone()), state.to_string()))
    })
    .await
}
