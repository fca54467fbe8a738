//! Docker containers as sandboxes, through the Docker Engine API (bollard).

mod create;
mod exec;
mod files;
mod inventory;
mod readonly;
mod sandbox;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use bollard::Docker;
use std::time::Duration;

use omoi_core::config::SandboxConfig;
use omoi_core::{ResourceLimits, Sandbox, SandboxError, SandboxProvider, SandboxSpec};
use tokio::sync::OnceCell;

/// The workspace directory inside every container.
pub(crate) const WORKSPACE: &str = "/workspace";

/// Seconds bollard waits for a response (not for a running exec's output).
const REQUEST_TIMEOUT_SECS: u64 = 120;

/// Sandboxes that are Docker containers.
///
/// Each sandbox is one container from the configured image (or [`SandboxSpec::image`]):
///
/// - workdir `/workspace`, owned by the sandbox user; every path is confined to it (symlinks
///   that resolve outside are refused — resolution runs `realpath -m` in the container, so the
///   image needs a POSIX `sh` and GNU coreutils, plus `setsid` from util-linux);
/// - **no network** (`network_mode: none`) unless [`NetworkPolicy::Full`](omoi_core::NetworkPolicy::Full);
/// - cpu/memory/pids limits from the spec, falling back to
///   [`default_limits`](DockerSandboxProviderBuilder::default_limits), which default to the
///   `sandbox` section of the configuration ([`config`](DockerSandboxProviderBuilder::config));
/// - a **non-root user** (default `1000:1000`), all capabilities dropped, `no-new-privileges`,
///   and an init process that reaps orphans;
/// - labels `omoi.sandbox=<sandbox id>` plus the spec's labels; environment from the spec;
/// - kept alive by `sleep infinity`.
///
/// A [read-only](omoi_core::ExecRequest::read_only) command runs in a throwaway container from
/// the same template with a **read-only root file system** and **no network** (whatever the
/// spec's policy), `/workspace` and `/tmp` on tmpfs, the workspace copied in with `tar`; the
/// container is removed afterwards (also when the caller stops waiting). Its containers carry
/// `omoi.sandbox.readonly=<sandbox id>` instead of `omoi.sandbox`, plus the spec's labels.
///
/// Creation is a saga (create container → start → prepare workspace → setup commands): a
/// failure at any step removes the container, and the error names the step.
///
/// A command runs under a small `sh` wrapper that starts it with `setsid` (its own process
/// group) and records the group id in `/tmp`; on timeout a second exec sends `SIGKILL` to the
/// whole group (Docker cannot kill an exec). Files travel as tar archives
/// (`PUT`/`GET /containers/{id}/archive`) after the path was resolved inside the container.
///
/// ```no_run
/// # async fn demo() -> Result<(), omoi_core::SandboxError> {
/// use omoi_core::{ExecRequest, ResourceLimits, SandboxProvider, SandboxSpec};
/// use omoi_sandbox::DockerSandboxProvider;
///
/// let provider = DockerSandboxProvider::builder()
///     .host("unix:///var/run/docker.sock")
///     .image("debian:bookworm-slim")
///     .default_limits(ResourceLimits { cpus: Some(1.0), memory_bytes: Some(512 << 20), pids: Some(256) })
///     .build()?;
/// let sandbox = provider.create(SandboxSpec::default()).await?;
/// let out = sandbox.exec(ExecRequest::shell("id -u")).await?;
/// assert_eq!(out.stdout_text(), "1000\n");
/// sandbox.destroy().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct DockerSandboxProvider {
    shared: Arc<Shared>,
}

pub(crate) struct Shared {
    host: String,
    connection: Docker,
    negotiated: OnceCell<Docker>,
    pub(crate) config: Config,
}

#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) image: Option<String>,
    pub(crate) limits: ResourceLimits,
    pub(crate) user: String,
    pub(crate) setup: Vec<Vec<String>>,
    pub(crate) max_file_bytes: u64,
    pub(crate) create_timeout: Duration,
}

impl Shared {
    /// The client, with the API version negotiated down to the engine's on first use.
    pub(crate) async fn docker(&self) -> Result<&Docker, SandboxError> {
        self.negotiated
            .get_or_try_init(|| async {
                self.connection.clone().negotiate_version().await.map_err(|e| SandboxError::Unavailable {
                    provider: "docker",
                    message: format!("cannot reach the Docker engine at {}: {e}", self.host),
                })
            })
            .await
    }
}

impl fmt::Debug for DockerSandboxProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DockerSandboxProvider")
            .field("host", &self.shared.host)
            .field("config", &self.shared.config)
            .finish()
    }
}

impl DockerSandboxProvider {
    /// Starts configuring a provider.
    pub fn builder() -> DockerSandboxProviderBuilder {
        DockerSandboxProviderBuilder::default()
    }
}

/// Configures a [`DockerSandboxProvider`].
#[derive(Debug, Clone)]
pub struct DockerSandboxProviderBuilder {
    host: Option<String>,
    image: Option<String>,
    limits: ResourceLimits,
    user: String,
    setup: Vec<Vec<String>>,
    max_file_bytes: u64,
    create_timeout: Duration,
}

/// The limits a [`SandboxConfig`] gives every sandbox.
fn config_limits(config: &SandboxConfig) -> ResourceLimits {
    ResourceLimits {
        cpus: Some(config.cpus),
        memory_bytes: Some(config.memory_mib.saturating_mul(1 << 20)),
        pids: Some(config.pids),
    }
}

impl Default for DockerSandboxProviderBuilder {
    /// Limits and the creation timeout of the default [`SandboxConfig`] (2 CPUs, 4096 MiB,
    /// 512 processes, 120 s): a sandbox is never unlimited unless asked.
    fn default() -> Self {
        let config = SandboxConfig::default();
        Self {
            host: None,
            image: None,
            limits: config_limits(&config),
            user: "1000:1000".into(),
            setup: Vec::new(),
            max_file_bytes: 256 << 20,
            create_timeout: config.create_timeout,
        }
    }
}

impl DockerSandboxProviderBuilder {
    /// The engine: `unix:///path/to/docker.sock`, a socket path, or `tcp://host:port` /
    /// `http://host:port`. Default: `DOCKER_HOST`, else `unix:///var/run/docker.sock`.
    pub fn host(mut self, url: impl Into<String>) -> Self {
        self.host = Some(url.into());
        self
    }

    /// The image for sandboxes whose spec names none. It must already be present on the
    /// engine (it is never pulled).
    pub fn image(mut self, image: impl Into<String>) -> Self {
        self.image = Some(image.into());
        self
    }

    /// Takes the `sandbox` section of the configuration: `cpus`, `memory_mib` and `pids`
    /// become the default limits, `create_timeout` bounds a creation.
    pub fn config(mut self, config: &SandboxConfig) -> Self {
        self.limits = config_limits(config);
        self.create_timeout = config.create_timeout;
        self
    }

    /// How long a creation may take before it fails with
    /// [`SandboxError::CreateFailed`] at step `timeout` (whatever was made is removed).
    pub fn create_timeout(mut self, timeout: Duration) -> Self {
        self.create_timeout = timeout;
        self
    }

    /// Limits for whatever a spec leaves unset (default: those of [`SandboxConfig`]'s defaults;
    /// a field set to `None` here means unlimited).
    pub fn default_limits(mut self, limits: ResourceLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The user commands run as (`uid:gid`, `uid` or a user name of the image). Default
    /// `1000:1000`. Root is refused: sandboxes never run commands as root.
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = user.into();
        self
    }

    /// A command run as root (without capabilities) after the workspace is prepared, in
    /// order; a non-zero exit fails creation at step `setup` and removes the container.
    pub fn setup_command(mut self, argv: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.setup.push(argv.into_iter().map(Into::into).collect());
        self
    }

    /// The largest file `read_file`/`write_file` transfer (default 256 MiB).
    pub fn max_file_bytes(mut self, bytes: u64) -> Self {
        self.max_file_bytes = bytes;
        self
    }

    /// Checks the configuration and prepares the connection (the engine is contacted on the
    /// first sandbox creation).
    pub fn build(self) -> Result<DockerSandboxProvider, SandboxError> {
        let host = match self.host {
            Some(h) => h,
            None => std::env::var("DOCKER_HOST")
                .ok()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "unix:///var/run/docker.sock".into()),
        };
        let user = self.user.trim().to_owned();
        let uid = user.split(':').next().unwrap_or_default();
        if uid.is_empty() || uid == "0" || uid == "root" {
            return Err(SandboxError::InvalidRequest(format!("sandbox user {user:?} must be a non-root user")));
        }
        if self.setup.iter().any(Vec::is_empty) {
            return Err(SandboxError::InvalidRequest("empty setup command".into()));
        }
        let version = bollard::API_DEFAULT_VERSION;
        let connection = if let Some(path) = host.strip_prefix("unix://").or(host.starts_with('/').then_some(&*host)) {
            Docker::connect_with_unix(path, REQUEST_TIMEOUT_SECS, version)
        } else if host.starts_with("tcp://") || host.starts_with("http://") {
            Docker::connect_with_http(&host, REQUEST_TIMEOUT_SECS, version)
        } else {
            return Err(SandboxError::InvalidRequest(format!("unsupported Docker host {host:?}")));
        }
        .map_err(|e| SandboxError::Unavailable { provider: "docker", message: format!("{host}: {e}") })?;
        let config = Config {
            image: self.image,
            limits: self.limits,
            user,
            setup: self.setup,
            max_file_bytes: self.max_file_bytes,
            create_timeout: self.create_timeout,
        };
        Ok(DockerSandboxProvider { shared: Arc::new(Shared { host, connection, negotiated: OnceCell::new(), config }) })
    }
}

#[async_trait]
impl SandboxProvider for DockerSandboxProvider {
    fn name(&self) -> &'static str {
        "docker"
    }

    async fn create(&self, spec: SandboxSpec) -> Result<Arc<dyn Sandbox>, SandboxError> {
        create::create(Arc::clone(&self.shared), spec).await
    }
}

/// Maps an engine error: transport failures are retryable, answers are not.
pub(crate) fn engine_error(what: &str, e: bollard::errors::Error) -> SandboxError {
    use bollard::errors::Error as E;
    match e {
        E::DockerResponseServerError { status_code: 503, message } => {
            SandboxError::Unavailable { provider: "docker", message: format!("{what}: {message}") }
        }
        E::DockerResponseServerError { status_code, message } => {
            SandboxError::Backend { provider: "docker", message: format!("{what}: {message} ({status_code})") }
        }
        e @ (E::RequestTimeoutError
        | E::IOError { .. }
        | E::HyperResponseError { .. }
        | E::HttpClientError { .. }
        | E::SocketNotFoundError(_)) => {
            SandboxError::Unavailable { provider: "docker", message: format!("{what}: {e}") }
        }
        e => SandboxError::Backend { provider: "docker", message: format!("{what}: {e}") },
    }
}

/// The HTTP status of an engine answer, if it was one.
pub(crate) fn status_of(e: &bollard::errors::Error) -> Option<u16> {
    match e {
        bollard::errors::Error::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}
