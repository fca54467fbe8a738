//! Daytona sandboxes over REST: the control API for lifecycle, the toolbox for commands and
//! files.

mod api;
mod sandbox;
mod script;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use omoi_core::{NetworkPolicy, Sandbox, SandboxError, SandboxId, SandboxProvider, SandboxSpec};
use reqwest::{Method, StatusCode};
use tokio::sync::oneshot;
use tracing::Instrument;

use self::api::{Api, CreateSandbox, Idempotent, SandboxInfo};
use self::sandbox::DaytonaSandbox;
use crate::saga::Saga;
use crate::shell;

/// The label every sandbox carries, with the omoi sandbox id as value.
const LABEL: &str = "omoi.sandbox";

/// An API key: shown as `<redacted>` in `Debug`.
#[derive(Clone)]
pub(crate) struct Secret(String);

impl Secret {
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Sandboxes on [Daytona](https://www.daytona.io), over its REST API.
///
/// - **Create**: `POST {api}/sandbox` (snapshot = [`SandboxSpec::image`] or the builder's,
///   env, labels `omoi.sandbox=<id>` plus the spec's, cpu cores and memory in GiB rounded up,
///   auto-stop, `networkBlockAll` unless [`NetworkPolicy::Full`]); then `GET {api}/sandbox/{id}`
///   until `started`; then the workspace directory is created. A failure at any step deletes
///   the sandbox (`CreateFailed` names the step). Daytona has no pids limit: it is ignored.
/// - **Exec**: `POST {toolbox}/{id}/process/execute`. That endpoint takes one command string and
///   returns only an exit code and the merged output, and its own timeout kills just the first
///   process. So every command is a generated `sh` script (sent base64-encoded) that feeds
///   stdin from a decoded payload, runs the command with `setsid` with stdout and stderr in
///   separate files, kills the whole process group from an in-sandbox watchdog at the timeout,
///   and prints both outputs, cut at the limit, in one base64 frame. Stdout and stderr are
///   therefore kept apart and binary-safe. The image needs `sh`, `base64`, `setsid`, `mktemp`
///   and GNU `realpath`.
/// - **Files**: the path is resolved in the sandbox first (symlink escapes refused), then
///   `POST {toolbox}/{id}/files/upload?path=` (multipart) or `GET …/files/download?path=`.
/// - **Destroy**: `DELETE {api}/sandbox/{id}`; 404 means already gone.
/// - **Errors**: 401/403 are permanent [`SandboxError::Backend`]; 5xx, 429, timeouts and
///   connection failures are [`SandboxError::Unavailable`]. Idempotent calls (status, download,
///   upload, delete) are retried a bounded number of times; create and execute are not.
///
/// ```no_run
/// # async fn demo() -> Result<(), omoi_core::SandboxError> {
/// use omoi_core::{ExecRequest, SandboxProvider, SandboxSpec};
/// use omoi_sandbox::DaytonaSandboxProvider;
///
/// let provider = DaytonaSandboxProvider::builder()
///     .api_url("https://app.daytona.io/api")
///     .toolbox_url("https://proxy.app.daytona.io/toolbox")
///     .api_key(std::env::var("DAYTONA_API_KEY").unwrap())
///     .build()?;
/// let sandbox = provider.create(SandboxSpec::default()).await?;
/// let out = sandbox.exec(ExecRequest::shell("uname -a")).await?;
/// println!("{}", out.stdout_text());
/// sandbox.destroy().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct DaytonaSandboxProvider {
    shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pub(crate) api: Api,
    pub(crate) config: Config,
}

#[derive(Debug, Clone)]
pub(crate) struct Config {
    snapshot: Option<String>,
    workspace_dir: String,
    auto_stop_minutes: u32,
    start_timeout: Duration,
    pub(crate) max_file_bytes: u64,
}

impl fmt::Debug for DaytonaSandboxProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DaytonaSandboxProvider")
            .field("api_url", &self.shared.api.api(""))
            .field("toolbox_url", &self.shared.api.toolbox_base())
            .field("organization_id", &self.shared.api.organization())
            .field("config", &self.shared.config)
            .field("api_key", &"<redacted>")
            .finish()
    }
}

impl DaytonaSandboxProvider {
    /// Starts configuring a provider.
    pub fn builder() -> DaytonaSandboxProviderBuilder {
        DaytonaSandboxProviderBuilder::default()
    }
}

/// Configures a [`DaytonaSandboxProvider`]. The API key is redacted in `Debug`.
#[derive(Debug, Clone)]
pub struct DaytonaSandboxProviderBuilder {
    api_url: String,
    toolbox_url: String,
    api_key: Option<Secret>,
    organization_id: Option<String>,
    snapshot: Option<String>,
    workspace_dir: String,
    auto_stop_minutes: u32,
    start_timeout: Duration,
    request_timeout: Duration,
    retries: u32,
    max_file_bytes: u64,
}

impl Default for DaytonaSandboxProviderBuilder {
    fn default() -> Self {
        Self {
            api_url: "https://app.daytona.io/api".into(),
            toolbox_url: "https://proxy.app.daytona.io/toolbox".into(),
            api_key: None,
            organization_id: None,
            snapshot: None,
            workspace_dir: "workspace".into(),
            auto_stop_minutes: 15,
            start_timeout: Duration::from_secs(120),
            request_timeout: Duration::from_secs(30),
            retries: 3,
            max_file_bytes: 64 << 20,
        }
    }
}

impl DaytonaSandboxProviderBuilder {
    /// The control API base (default `https://app.daytona.io/api`).
    pub fn api_url(mut self, url: impl Into<String>) -> Self {
        self.api_url = url.into();
        self
    }

    /// The toolbox proxy base; sandbox `{id}` is reached at `{toolbox_url}/{id}` (default
    /// `https://proxy.app.daytona.io/toolbox`).
    pub fn toolbox_url(mut self, url: impl Into<String>) -> Self {
        self.toolbox_url = url.into();
        self
    }

    /// The API key, sent as a bearer token.
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(Secret(key.into()));
        self
    }

    /// Sent as `X-Daytona-Organization-ID` when set.
    pub fn organization_id(mut self, id: Option<impl Into<String>>) -> Self {
        self.organization_id = id.map(Into::into);
        self
    }

    /// The snapshot for sandboxes whose spec names no image (default: Daytona's default).
    pub fn snapshot(mut self, snapshot: impl Into<String>) -> Self {
        self.snapshot = Some(snapshot.into());
        self
    }

    /// The workspace directory: absolute, or relative to the toolbox's working directory
    /// (default `workspace`).
    pub fn workspace_dir(mut self, dir: impl Into<String>) -> Self {
        self.workspace_dir = dir.into();
        self
    }

    /// Minutes of inactivity before Daytona stops a sandbox (0 disables; default 15).
    pub fn auto_stop_minutes(mut self, minutes: u32) -> Self {
        self.auto_stop_minutes = minutes;
        self
    }

    /// How long to wait for a new sandbox to reach `started` (default 120 s).
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }

    /// Timeout of one HTTP request other than a command execution (default 30 s; executions
    /// get their own timeout plus 30 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Retries of an idempotent request after a retryable failure (default 3).
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// The largest file `read_file`/`write_file` transfer (default 64 MiB).
    pub fn max_file_bytes(mut self, bytes: u64) -> Self {
        self.max_file_bytes = bytes;
        self
    }

    /// Checks the configuration.
    pub fn build(self) -> Result<DaytonaSandboxProvider, SandboxError> {
        let key = self.api_key.ok_or_else(|| SandboxError::InvalidRequest("a Daytona API key is required".into()))?;
        if key.expose().trim().is_empty() {
            return Err(SandboxError::InvalidRequest("the Daytona API key is empty".into()));
        }
        for url in [&self.api_url, &self.toolbox_url] {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(SandboxError::InvalidRequest(format!("not an http(s) URL: {url:?}")));
            }
        }
        if self.workspace_dir.trim().is_empty() || self.workspace_dir.contains('\0') {
            return Err(SandboxError::InvalidRequest("workspace_dir must be a path".into()));
        }
        let api = Api::new(
            self.api_url.clone(),
            self.toolbox_url.clone(),
            key,
            self.organization_id.clone(),
            self.retries,
            self.request_timeout,
        )?;
        let config = Config {
            snapshot: self.snapshot,
            workspace_dir: self.workspace_dir,
            auto_stop_minutes: self.auto_stop_minutes,
            start_timeout: self.start_timeout,
            max_file_bytes: self.max_file_bytes,
        };
        Ok(DaytonaSandboxProvider { shared: Arc::new(Shared { api, config }) })
    }
}

#[async_trait]
impl SandboxProvider for DaytonaSandboxProvider {
    fn name(&self) -> &'static str {
        "daytona"
    }

    async fn create(&self, spec: SandboxSpec) -> Result<Arc<dyn Sandbox>, SandboxError> {
        let id = SandboxId::new();
        let span = tracing::info_span!("sandbox.create", provider = "daytona", sandbox_id = %id);
        let body = create_body(&self.shared.config, id, &spec)?;
        let shared = Arc::clone(&self.shared);
        // The saga runs in its own task so a caller that stops waiting cannot strand a sandbox.
        let (tx, rx) = oneshot::channel();
        tokio::spawn(
            async move {
                let result = create(shared, id, body).await;
                if let Err(Ok(orphan)) = tx.send(result) {
                    tracing::warn!("creation finished after the caller left; deleting the sandbox");
                    if let Err(e) = orphan.delete().await {
                        tracing::error!(error = %e, "could not delete an abandoned sandbox");
                    }
                }
            }
            .instrument(span),
        );
        let sandbox = rx.await.map_err(|_| SandboxError::Backend {
            provider: "daytona",
            message: "sandbox creation task panicked".into(),
        })??;
        Ok(sandbox as Arc<dyn Sandbox>)
    }
}

fn create_body(config: &Config, id: SandboxId, spec: &SandboxSpec) -> Result<CreateSandbox, SandboxError> {
    for k in spec.env.keys() {
        if !shell::is_env_name(k) {
            return Err(SandboxError::InvalidRequest(format!("invalid environment variable name {k:?}")));
        }
    }
    if spec.limits.cpus.is_some_and(|c| !(c.is_finite() && c > 0.0)) {
        return Err(SandboxError::InvalidRequest(format!("cpus must be positive, got {:?}", spec.limits.cpus)));
    }
    let mut labels = spec.labels.clone();
    labels.insert(LABEL.to_owned(), id.to_string());
    Ok(CreateSandbox {
        snapshot: spec.image.clone().or_else(|| config.snapshot.clone()),
        env: spec.env.clone(),
        labels,
        cpu: spec.limits.cpus.map(|c| c.ceil() as u64),
        memory: spec.limits.memory_bytes.map(|b| b.div_ceil(1 << 30)),
        auto_stop_interval: config.auto_stop_minutes,
        network_block_all: spec.network == NetworkPolicy::None,
    })
}

async fn create(shared: Arc<Shared>, id: SandboxId, body: CreateSandbox) -> Result<Arc<DaytonaSandbox>, SandboxError> {
    let mut saga = Saga::new("daytona");
    let url = shared.api.api("/sandbox");
    let info: SandboxInfo = saga
        .step("create_sandbox", async {
            shared
                .api
                .json(Method::POST, &url, Idempotent::No, None, |r| r.json(&body))
                .await
                .map_err(|e| e.into_error("create sandbox"))
        })
        .await?;
    tracing::debug!(daytona_id = %info.id, "daytona sandbox requested");
    let sandbox = Arc::new(DaytonaSandbox::new(Arc::clone(&shared), id, info.id.clone()));
    let undo = Arc::clone(&sandbox);
    saga.compensate("delete_sandbox", async move { undo.delete().await.map_err(|e| e.to_string()) });

    saga.step("wait_started", wait_started(&shared, &info)).await?;
    saga.step("prepare_workspace", sandbox.prepare_workspace(&shared.config.workspace_dir)).await?;
    saga.commit();
    tracing::info!(daytona_id = %info.id, "daytona sandbox ready");
    Ok(sandbox)
}

/// Polls until the sandbox is `started`; fails on an error state or at the start timeout.
async fn wait_started(shared: &Shared, created: &SandboxInfo) -> Result<(), SandboxError> {
    let deadline = Instant::now() + shared.config.start_timeout;
    let url = shared.api.api(&format!("/sandbox/{}", created.id));
    let (mut state, mut reason) = (created.state.clone(), created.error_reason.clone());
    let mut pause = Duration::from_millis(100);
    loop {
        match state.as_deref() {
            Some("started") => return Ok(()),
            Some(s @ ("error" | "build_failed" | "destroyed" | "destroying")) => {
                return Err(SandboxError::Backend {
                    provider: "daytona",
                    message: format!("sandbox went to state {s}: {}", reason.as_deref().unwrap_or("no reason given")),
                });
            }
            _ => {}
        }
        if Instant::now() >= deadline {
            return Err(SandboxError::Unavailable {
                provider: "daytona",
                message: format!(
                    "sandbox not started within {:?} (state {})",
                    shared.config.start_timeout,
                    state.as_deref().unwrap_or("unknown")
                ),
            });
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(2));
        let info: SandboxInfo = match shared.api.json(Method::GET, &url, Idempotent::Yes, None, |r| r).await {
            Ok(info) => info,
            Err(e) if e.status() == Some(StatusCode::NOT_FOUND) => {
                return Err(SandboxError::Backend {
                    provider: "daytona",
                    message: "sandbox vanished while starting".into(),
                });
            }
            Err(e) => return Err(e.into_error("sandbox status")),
        };
        (state, reason) = (info.state, info.error_reason);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn the_api_key_never_shows_in_debug() {
        let builder = DaytonaSandboxProvider::builder().api_key("sk-very-secret").api_url("http://127.0.0.1:1");
        assert!(!format!("{builder:?}").contains("sk-very-secret"));
        let provider = builder.build().unwrap();
        let shown = format!("{provider:?}");
        assert!(!shown.contains("sk-very-secret") && shown.contains("<redacted>"), "{shown}");
        assert!(matches!(DaytonaSandboxProvider::builder().build(), Err(SandboxError::InvalidRequest(_))));
    }

    #[test]
    fn spec_maps_to_the_create_body() {
        let config =
            DaytonaSandboxProvider::builder().api_key("k").snapshot("snap").build().unwrap().shared.config.clone();
        let spec = SandboxSpec {
            env: BTreeMap::from([("A".to_owned(), "1".to_owned())]),
            limits: omoi_core::ResourceLimits { cpus: Some(1.5), memory_bytes: Some(1 << 30 | 1), pids: Some(10) },
            ..SandboxSpec::default()
        };
        let id = SandboxId::new();
        let body = serde_json::to_value(create_body(&config, id, &spec).unwrap()).unwrap();
        assert_eq!(body["snapshot"], "snap");
        assert_eq!((body["cpu"].as_u64(), body["memory"].as_u64()), (Some(2), Some(2)));
        assert_eq!(body["networkBlockAll"], true);
        assert_eq!(body["labels"][LABEL], id.to_string());
        assert_eq!(body["env"]["A"], "1");
        let bad = SandboxSpec { env: BTreeMap::from([("A B".to_owned(), String::new())]), ..SandboxSpec::default() };
        assert!(matches!(create_body(&config, id, &bad), Err(SandboxError::InvalidRequest(_))));
    }
}
