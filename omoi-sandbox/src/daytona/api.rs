//! The slice of Daytona's REST API the adapter uses, with typed errors and bounded retries for
//! idempotent calls.

use std::collections::BTreeMap;
use std::time::Duration;

use omoi_core::SandboxError;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::{Deserialize, Serialize};

use super::Secret;

/// `POST /sandbox` body (the fields this adapter sets).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CreateSandbox {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) snapshot: Option<String>,
    pub(crate) env: BTreeMap<String, String>,
    pub(crate) labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) cpu: Option<u64>,
    /// GiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) memory: Option<u64>,
    /// Minutes; 0 disables auto-stop.
    pub(crate) auto_stop_interval: u32,
    pub(crate) network_block_all: bool,
}

/// The parts of a sandbox this adapter reads.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SandboxInfo {
    pub(crate) id: String,
    #[serde(default)]
    pub(crate) state: Option<String>,
    #[serde(default)]
    pub(crate) error_reason: Option<String>,
}

/// `POST /process/execute` body.
#[derive(Debug, Serialize)]
pub(crate) struct ExecuteRequest<'a> {
    pub(crate) command: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) cwd: Option<&'a str>,
    /// Seconds.
    pub(crate) timeout: u32,
}

/// `POST /process/execute` answer.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ExecuteResponse {
    pub(crate) exit_code: i64,
    #[serde(default)]
    pub(crate) result: String,
}

/// An HTTP client bound to one Daytona deployment.
pub(crate) struct Api {
    http: reqwest::Client,
    api_url: String,
    toolbox_url: String,
    key: Secret,
    organization: Option<String>,
    retries: u32,
    request_timeout: Duration,
}

/// Why a call failed, before it is turned into a [`SandboxError`].
#[derive(Debug)]
pub(crate) enum CallError {
    /// The server answered with this status.
    Status(StatusCode, String),
    /// No usable answer (connection, timeout, body).
    Transport(String),
}

impl CallError {
    fn retryable(&self) -> bool {
        match self {
            CallError::Transport(_) => true,
            CallError::Status(s, _) => s.is_server_error() || *s == StatusCode::TOO_MANY_REQUESTS,
        }
    }

    pub(crate) fn status(&self) -> Option<StatusCode> {
        match self {
            CallError::Status(s, _) => Some(*s),
            CallError::Transport(_) => None,
        }
    }

    /// The typed error: auth failures are permanent, server errors and transport failures
    /// retryable, other answers permanent.
    pub(crate) fn into_error(self, what: &str) -> SandboxError {
        let retryable = self.retryable();
        match self {
            CallError::Transport(m) => {
                SandboxError::Unavailable { provider: "daytona", message: format!("{what}: {m}") }
            }
            CallError::Status(s, m) if s == StatusCode::UNAUTHORIZED || s == StatusCode::FORBIDDEN => {
                SandboxError::Backend {
                    provider: "daytona",
                    message: format!("{what}: not authorized ({}): {m}", s.as_u16()),
                }
            }
            CallError::Status(s, m) if retryable => {
                SandboxError::Unavailable { provider: "daytona", message: format!("{what}: {} {m}", s.as_u16()) }
            }
            CallError::Status(s, m) => {
                SandboxError::Backend { provider: "daytona", message: format!("{what}: {} {m}", s.as_u16()) }
            }
        }
    }
}

/// Whether a request may be sent again after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Idempotent {
    Yes,
    No,
}

impl Api {
    pub(crate) fn new(
        api_url: String,
        toolbox_url: String,
        key: Secret,
        organization: Option<String>,
        retries: u32,
        request_timeout: Duration,
    ) -> Result<Self, SandboxError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| SandboxError::InvalidRequest(format!("HTTP client: {e}")))?;
        Ok(Self {
            http,
            api_url: api_url.trim_end_matches('/').to_owned(),
            toolbox_url: toolbox_url.trim_end_matches('/').to_owned(),
            key,
            organization,
            retries,
            request_timeout,
        })
    }

    pub(crate) fn api(&self, path: &str) -> String {
        format!("{}{path}", self.api_url)
    }

    pub(crate) fn toolbox_base(&self) -> &str {
        &self.toolbox_url
    }

    pub(crate) fn organization(&self) -> Option<&str> {
        self.organization.as_deref()
    }

    pub(crate) fn toolbox(&self, sandbox: &str, path: &str) -> String {
        format!("{}/{sandbox}{path}", self.toolbox_url)
    }

    fn request(&self, method: Method, url: &str, timeout: Option<Duration>) -> RequestBuilder {
        let mut req = self
            .http
            .request(method, url)
            .bearer_auth(self.key.expose())
            .timeout(timeout.unwrap_or(self.request_timeout));
        if let Some(org) = &self.organization {
            req = req.header("X-Daytona-Organization-ID", org);
        }
        req
    }

    /// Sends a request built by `build` (called again for each retry) and returns a successful
    /// response. Idempotent requests are retried on retryable failures with backoff.
    pub(crate) async fn send(
        &self,
        method: Method,
        url: &str,
        idempotent: Idempotent,
        timeout: Option<Duration>,
        build: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<Response, CallError> {
        let attempts = if idempotent == Idempotent::Yes { self.retries + 1 } else { 1 };
        let mut backoff = Duration::from_millis(100);
        let mut attempt = 1;
        loop {
            let err = match build(self.request(method.clone(), url, timeout)).send().await {
                Ok(resp) if resp.status().is_success() => return Ok(resp),
                Ok(resp) => {
                    let status = resp.status();
                    let body = resp.text().await.unwrap_or_default();
                    CallError::Status(status, body.chars().take(500).collect())
                }
                Err(e) => CallError::Transport(transport_message(&e)),
            };
            if attempt >= attempts || !err.retryable() {
                return Err(err);
            }
            tracing::debug!(%method, url, attempt, error = ?err, "retrying");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
            attempt += 1;
        }
    }

    /// [`send`](Self::send) and decode a JSON answer.
    pub(crate) async fn json<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        url: &str,
        idempotent: Idempotent,
        timeout: Option<Duration>,
        build: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<T, CallError> {
        let resp = self.send(method, url, idempotent, timeout, build).await?;
        let bytes = resp.bytes().await.map_err(|e| CallError::Transport(transport_message(&e)))?;
        serde_json::from_slice(&bytes).map_err(|e| CallError::Transport(format!("unexpected answer: {e}")))
    }
}

fn transport_message(e: &reqwest::Error) -> String {
    // Never include the URL's query or any header; the message names the kind of failure.
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "bad response body"
    } else {
        "request failed"
    };
    let mut source = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() { kind.to_owned() } else { format!("{kind}: {detail}") }
}
