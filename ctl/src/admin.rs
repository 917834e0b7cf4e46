//! Client of the services' admin endpoints (`chat4all_contract::admin`): the control plane's one
//! way into the tables the services own. Used by `chat4allctl`, the dashboard and the tests.

use std::time::Duration;

use chat4all_contract::admin::api_keys::{CreateKey, CreatedKey, KeyList, KeySummary, API_KEYS_PATH};
use chat4all_contract::admin::deliveries::{
    Facts, MessageFact, Messages, Progress, FACTS_PATH, MAX_IDS, PROGRESS_PATH,
};
use chat4all_contract::admin::relay::{
    KeyMoves, PauseRequest, RelayState, ResumeRequest, KEY_MOVES_PATH, PAUSE_PATH, RELAY_PATH, RESUME_PATH,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use uuid::Uuid;

use crate::stack::Stack;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The service answered and said no (4xx): bad request, wrong token, a lease held by another.
    #[error("{service} refused: {message} ({status})")]
    Refused { service: &'static str, status: u16, message: String },
    #[error("{service} unreachable at {url}: {reason}")]
    Unreachable { service: &'static str, url: String, reason: String },
    #[error("{service} failed: {message} ({status})")]
    Failed { service: &'static str, status: u16, message: String },
    #[error(
        "no control token: set CHAT4ALL_ADMIN_TOKEN or run against a stack whose data directory holds control.token"
    )]
    NoToken,
}

impl AdminError {
    /// A lease held by someone else (`409`).
    pub fn is_conflict(&self) -> bool {
        matches!(self, AdminError::Refused { status: 409, .. })
    }
}

/// One service's admin endpoints.
#[derive(Clone)]
struct Endpoint {
    service: &'static str,
    base: String,
}

#[derive(Clone)]
pub struct Admin {
    http: reqwest::Client,
    token: String,
    message: Endpoint,
    gateway: Endpoint,
}

impl Admin {
    pub fn for_stack(stack: &Stack, timeout: Duration) -> Result<Self, AdminError> {
        let token = stack.admin_token.clone().ok_or(AdminError::NoToken)?;
        let http = reqwest::Client::builder().timeout(timeout).build().map_err(|e| AdminError::Unreachable {
            service: "message-service",
            url: stack.api_url.clone(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            http,
            token,
            message: Endpoint { service: "message-service", base: stack.api_url.trim_end_matches('/').to_string() },
            gateway: Endpoint { service: "api-gateway", base: stack.gateway_url.trim_end_matches('/').to_string() },
        })
    }

    pub async fn relay(&self) -> Result<RelayState, AdminError> {
        self.call(&self.message, reqwest::Method::GET, RELAY_PATH, None::<&()>).await
    }

    /// Takes or renews the pause lease for `by`.
    pub async fn pause_relay(&self, by: &str, lease: Duration) -> Result<RelayState, AdminError> {
        let req = PauseRequest { by: by.to_string(), ttl_seconds: lease.as_secs().max(1) };
        self.call(&self.message, reqwest::Method::POST, PAUSE_PATH, Some(&req)).await
    }

    pub async fn resume_relay(&self, by: &str, force: bool) -> Result<RelayState, AdminError> {
        let req = ResumeRequest { by: by.to_string(), force };
        self.call(&self.message, reqwest::Method::POST, RESUME_PATH, Some(&req)).await
    }

    /// The outbox relay and, per channel, the oldest delivery not final yet.
    pub async fn pipeline(&self) -> Result<chat4all_contract::admin::pipeline::Pipeline, AdminError> {
        let path = chat4all_contract::admin::pipeline::PIPELINE_PATH;
        self.call(&self.message, reqwest::Method::GET, path, None::<&()>).await
    }

    /// The delivery status of each dead letter's delivery (`letters` at most
    /// [`chat4all_contract::admin::dlq::MAX_LETTERS`]).
    pub async fn dlq_status(
        &self,
        letters: &[chat4all_contract::admin::dlq::LetterKey],
    ) -> Result<chat4all_contract::admin::dlq::StatusResponse, AdminError> {
        use chat4all_contract::admin::dlq::{StatusRequest, DLQ_STATUS_PATH};
        let req = StatusRequest { letters: letters.to_vec() };
        self.call(&self.message, reqwest::Method::POST, DLQ_STATUS_PATH, Some(&req)).await
    }

    /// Replays dead letters: their deliveries still FAILED go back through the pipeline (none in
    /// a dry run); the others are reported skipped.
    pub async fn dlq_replay(
        &self,
        req: &chat4all_contract::admin::dlq::ReplayRequest,
    ) -> Result<chat4all_contract::admin::dlq::ReplayResponse, AdminError> {
        let path = chat4all_contract::admin::dlq::DLQ_REPLAY_PATH;
        self.call(&self.message, reqwest::Method::POST, path, Some(req)).await
    }

    pub async fn key_moves(&self, from: i32, to: i32) -> Result<KeyMoves, AdminError> {
        let path = format!("{KEY_MOVES_PATH}?from={from}&to={to}");
        self.call(&self.message, reqwest::Method::GET, &path, None::<&()>).await
    }

    /// A new API key of the api-gateway (the key is in this answer only).
    pub async fn create_api_key(&self, req: &CreateKey) -> Result<CreatedKey, AdminError> {
        self.call(&self.gateway, reqwest::Method::POST, API_KEYS_PATH, Some(req)).await
    }

    pub async fn api_keys(&self) -> Result<KeyList, AdminError> {
        self.call(&self.gateway, reqwest::Method::GET, API_KEYS_PATH, None::<&()>).await
    }

    pub async fn revoke_api_key(&self, name: &str) -> Result<KeySummary, AdminError> {
        // Names are letters, digits, '-', '_', '.': nothing to escape in a path segment.
        let path = format!("{API_KEYS_PATH}/{name}");
        self.call(&self.gateway, reqwest::Method::DELETE, &path, None::<&()>).await
    }

    /// How far `ids`' deliveries are, asked [`MAX_IDS`] at a time.
    pub async fn delivery_progress(&self, ids: &[Uuid]) -> Result<Progress, AdminError> {
        let mut total = Progress::default();
        for chunk in ids.chunks(MAX_IDS) {
            let req = Messages { message_ids: chunk.to_vec() };
            let p: Progress = self.call(&self.message, reqwest::Method::POST, PROGRESS_PATH, Some(&req)).await?;
            total.stored += p.stored;
            total.deliveries += p.deliveries;
            total.finished += p.finished;
            total.unfinished_message_ids.extend(p.unfinished_message_ids);
        }
        Ok(total)
    }

    /// The stored messages among `ids` with their deliveries, asked [`MAX_IDS`] at a time.
    pub async fn delivery_facts(&self, ids: &[Uuid]) -> Result<Vec<MessageFact>, AdminError> {
        let mut all = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(MAX_IDS) {
            let req = Messages { message_ids: chunk.to_vec() };
            let f: Facts = self.call(&self.message, reqwest::Method::POST, FACTS_PATH, Some(&req)).await?;
            all.extend(f.messages);
        }
        Ok(all)
    }

    async fn call<T: DeserializeOwned, B: Serialize>(
        &self,
        at: &Endpoint,
        method: reqwest::Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, AdminError> {
        let url = format!("{}{path}", at.base);
        let mut req = self.http.request(method, &url).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(b);
        }
        let unreachable = |e: reqwest::Error| AdminError::Unreachable {
            service: at.service,
            url: url.clone(),
            reason: error_chain(&e),
        };
        let resp = req.send().await.map_err(unreachable)?;
        let status = resp.status();
        if status.is_success() {
            return resp.json().await.map_err(|e| AdminError::Failed {
                service: at.service,
                status: status.as_u16(),
                message: format!("unreadable answer: {}", error_chain(&e)),
            });
        }
        let text = resp.text().await.unwrap_or_default();
        let message = serde_json::from_str::<chat4all_contract::admin::ErrorBody>(&text)
            .map(|b| b.error)
            .unwrap_or_else(|_| text.chars().take(200).collect());
        let (service, status) = (at.service, status.as_u16());
        Err(if (400..500).contains(&status) {
            AdminError::Refused { service, status, message }
        } else {
            AdminError::Failed { service, status, message }
        })
    }
}

/// The error and its causes on one line ("connection refused" is in a source, not the top).
fn error_chain(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    text
}
