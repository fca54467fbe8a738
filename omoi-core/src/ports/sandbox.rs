//! The `Sandbox` and `SandboxProvider` ports: isolated workspaces where agents run commands
//! and read and write files.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::ids::SandboxId;
use crate::string_enum;

/// Resource limits for a sandbox. `None` leaves the provider's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ResourceLimits {
    /// CPU cores (fractional allowed).
    pub cpus: Option<f64>,
    /// Memory in bytes.
    pub memory_bytes: Option<u64>,
    /// Maximum number of processes.
    pub pids: Option<u64>,
}

string_enum! {
    /// Network access from inside a sandbox.
    pub enum NetworkPolicy: "network policy" {
        /// No network at all (the default).
        None => "none",
        /// Unrestricted network.
        Full => "full",
    }
}

// `string_enum!` cannot derive `Default`.
#[allow(clippy::derivable_impls)]
impl Default for NetworkPolicy {
    fn default() -> Self {
        NetworkPolicy::None
    }
}

/// What to create.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SandboxSpec {
    /// Image or template (provider-specific; `None` = the provider's default).
    pub image: Option<String>,
    /// Environment for every command.
    pub env: BTreeMap<String, String>,
    /// Resource limits.
    pub limits: ResourceLimits,
    /// Network access.
    pub network: NetworkPolicy,
    /// Labels for bookkeeping (task id, agent id…).
    pub labels: BTreeMap<String, String>,
}

/// How to run a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Program and arguments, no shell.
    Argv(Vec<String>),
    /// A `sh -c` script.
    Shell(String),
}

/// One command execution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecRequest {
    /// The command.
    pub command: Command,
    /// Working directory inside the workspace (`None` = its root).
    pub cwd: Option<WorkspacePath>,
    /// Extra environment.
    pub env: BTreeMap<String, String>,
    /// Bytes fed to standard input (then closed).
    pub stdin: Option<Vec<u8>>,
    /// Kill the whole process tree after this long.
    pub timeout: Duration,
    /// Keep at most this many bytes of each output stream.
    pub output_limit: usize,
    /// Run against a throwaway copy of the workspace, discarded afterwards: whatever the
    /// command does, the workspace is unchanged. Adapters that isolate (Docker) also run it
    /// with a read-only root file system and no network; an adapter that cannot honour it
    /// refuses the request with [`SandboxError::InvalidRequest`].
    #[serde(default)]
    pub read_only: bool,
}

impl ExecRequest {
    /// A shell command with a 60 s timeout and a 1 MiB output limit.
    pub fn shell(script: impl Into<String>) -> Self {
        Self::new(Command::Shell(script.into()))
    }

    /// An argv command with a 60 s timeout and a 1 MiB output limit.
    pub fn argv(args: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self::new(Command::Argv(args.into_iter().map(Into::into).collect()))
    }

    fn new(command: Command) -> Self {
        Self {
            command,
            cwd: None,
            env: BTreeMap::new(),
            stdin: None,
            timeout: Duration::from_secs(60),
            output_limit: 1 << 20,
            read_only: false,
        }
    }

    /// Runs the command read-only (see [`ExecRequest::read_only`]).
    pub fn read_only(mut self) -> Self {
        self.read_only = true;
        self
    }

    /// Sets the timeout.
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// Sets standard input.
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(bytes.into());
        self
    }

    /// Adds an environment variable.
    pub fn env(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.env.insert(k.into(), v.into());
        self
    }

    /// Sets the working directory.
    pub fn cwd(mut self, dir: WorkspacePath) -> Self {
        self.cwd = Some(dir);
        self
    }

    /// Sets the output limit per stream.
    pub fn output_limit(mut self, bytes: usize) -> Self {
        self.output_limit = bytes;
        self
    }
}

/// What a command did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecOutput {
    /// Exit code (`None` if killed by a signal or the timeout).
    pub exit_code: Option<i32>,
    /// Standard output, at most the limit.
    pub stdout: Vec<u8>,
    /// Standard error, at most the limit.
    pub stderr: Vec<u8>,
    /// Standard output was cut at the limit.
    pub stdout_truncated: bool,
    /// Standard error was cut at the limit.
    pub stderr_truncated: bool,
    /// The timeout fired and the process tree was killed.
    pub timed_out: bool,
    /// Wall time.
    pub duration: Duration,
}

impl ExecOutput {
    /// Exit code 0 and no timeout.
    pub fn success(&self) -> bool {
        self.exit_code == Some(0) && !self.timed_out
    }

    /// Standard output as (lossy) UTF-8.
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Standard error as (lossy) UTF-8.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

string_enum! {
    /// Lifecycle of a sandbox.
    pub enum SandboxStatus: "sandbox status" {
        /// Usable.
        Running => "running",
        /// Exists but not running.
        Stopped => "stopped",
        /// Destroyed; every further call fails.
        Destroyed => "destroyed",
    }
}

/// A path relative to the sandbox workspace, checked lexically: not absolute, no `..`, no
/// NUL bytes, not empty. Adapters additionally refuse paths that resolve through a symlink to
/// outside the workspace.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct WorkspacePath(String);

/// Why a path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("path {path:?} rejected: {reason}")]
pub struct PathRejected {
    /// The path as given.
    pub path: String,
    /// Why.
    pub reason: String,
}

impl WorkspacePath {
    /// The workspace root itself.
    pub fn root() -> Self {
        Self(String::new())
    }

    /// Checks and normalizes `path` (`.` components and repeated slashes are dropped).
    pub fn parse(path: &str) -> Result<Self, PathRejected> {
        let reject = |reason: &str| PathRejected { path: path.to_owned(), reason: reason.to_owned() };
        if path.contains('\0') {
            return Err(reject("contains a NUL byte"));
        }
        if path.len() > 4096 {
            return Err(reject("longer than 4096 bytes"));
        }
        let mut parts = Vec::new();
        for c in Path::new(path).components() {
            match c {
                Component::Normal(p) => parts.push(p.to_str().ok_or_else(|| reject("not valid UTF-8"))?),
                Component::CurDir => {}
                Component::ParentDir => return Err(reject("`..` would leave the workspace")),
                Component::RootDir | Component::Prefix(_) => return Err(reject("absolute paths are not allowed")),
            }
        }
        Ok(Self(parts.join("/")))
    }

    /// The normalized relative path (empty for the root).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is the workspace root.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// `base` joined with this path.
    pub fn under(&self, base: &Path) -> PathBuf {
        if self.0.is_empty() { base.to_path_buf() } else { base.join(&self.0) }
    }

    /// This path joined with a further relative path (checked the same way).
    pub fn join(&self, rest: &str) -> Result<Self, PathRejected> {
        let tail = WorkspacePath::parse(rest)?;
        Ok(match (self.is_root(), tail.is_root()) {
            (true, _) => tail,
            (_, true) => self.clone(),
            _ => Self(format!("{}/{}", self.0, tail.0)),
        })
    }
}

impl fmt::Debug for WorkspacePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WorkspacePath({:?})", self.0)
    }
}

impl fmt::Display for WorkspacePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() { f.write_str(".") } else { f.write_str(&self.0) }
    }
}

impl TryFrom<String> for WorkspacePath {
    type Error = PathRejected;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        WorkspacePath::parse(&s)
    }
}

impl From<WorkspacePath> for String {
    fn from(p: WorkspacePath) -> String {
        p.0
    }
}

/// Errors of a [`Sandbox`] or [`SandboxProvider`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SandboxError {
    /// A path would leave the workspace (lexically or through a symlink).
    #[error(transparent)]
    PathRejected(#[from] PathRejected),
    /// No file at that path.
    #[error("no such file: {0}")]
    FileNotFound(WorkspacePath),
    /// The sandbox was destroyed.
    #[error("sandbox {0} was destroyed")]
    Destroyed(SandboxId),
    /// Creation failed at `step`; everything created before it was removed.
    #[error("sandbox creation failed at {step}: {message}")]
    CreateFailed {
        /// The failed step (`create_container`, `start`, …).
        step: &'static str,
        /// What happened.
        message: String,
    },
    /// A payload is over a limit.
    #[error("{what} is {size} bytes, over the {limit}-byte limit")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The request is malformed.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The provider cannot be reached; retrying later may succeed.
    #[error("{provider} unavailable: {message}")]
    Unavailable {
        /// Provider name.
        provider: &'static str,
        /// What happened.
        message: String,
    },
    /// Any other provider failure.
    #[error("{provider} error: {message}")]
    Backend {
        /// Provider name.
        provider: &'static str,
        /// What happened.
        message: String,
    },
}

impl SandboxError {
    /// Whether retrying later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, SandboxError::Unavailable { .. })
    }
}

/// A live sandbox.
#[async_trait]
pub trait Sandbox: Send + Sync {
    /// Its id.
    fn id(&self) -> SandboxId;

    /// Runs a command; a timeout kills the whole process tree and sets `timed_out`.
    async fn exec(&self, request: ExecRequest) -> Result<ExecOutput, SandboxError>;

    /// Writes a file (creating parent directories), replacing any existing one.
    async fn write_file(&self, path: &WorkspacePath, contents: &[u8]) -> Result<(), SandboxError>;

    /// Reads a file. Only regular files are read: a FIFO, socket or device node is refused
    /// with [`SandboxError::InvalidRequest`] (never opened and waited on).
    async fn read_file(&self, path: &WorkspacePath) -> Result<Vec<u8>, SandboxError>;

    /// Reads at most `limit` bytes of a file; also says whether the file is longer. Adapters
    /// read no more than that; this default reads the whole file (up to the adapter's own
    /// file limit) and cuts it.
    async fn read_file_prefix(&self, path: &WorkspacePath, limit: u64) -> Result<(Vec<u8>, bool), SandboxError> {
        let mut bytes = self.read_file(path).await?;
        let cut = bytes.len() as u64 > limit;
        bytes.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok((bytes, cut))
    }

    /// Current status.
    async fn status(&self) -> Result<SandboxStatus, SandboxError>;

    /// Removes the sandbox and everything in it. Idempotent.
    async fn destroy(&self) -> Result<(), SandboxError>;
}

/// Creates sandboxes.
#[async_trait]
pub trait SandboxProvider: Send + Sync {
    /// Provider name (`"local"`, `"docker"`, `"daytona"`).
    fn name(&self) -> &'static str;

    /// Creates a sandbox. A failure part-way removes whatever was created.
    async fn create(&self, spec: SandboxSpec) -> Result<Arc<dyn Sandbox>, SandboxError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_paths_are_rejected_with_a_reason() {
        for (p, why) in [("../etc/passwd", "`..`"), ("a/../../b", "`..`"), ("/etc/passwd", "absolute"), ("a\0b", "NUL")]
        {
            let err = WorkspacePath::parse(p).unwrap_err();
            assert!(err.reason.contains(why), "{p}: {err}");
        }
    }

    #[test]
    fn benign_paths_are_normalized() {
        assert_eq!(WorkspacePath::parse("./src//lib.rs").unwrap().as_str(), "src/lib.rs");
        assert!(WorkspacePath::parse(".").unwrap().is_root());
        assert_eq!(WorkspacePath::parse("src").unwrap().join("main.rs").unwrap().as_str(), "src/main.rs");
        assert!(WorkspacePath::parse("src").unwrap().join("../x").is_err());
        let json = serde_json::to_string(&WorkspacePath::parse("a/b").unwrap()).unwrap();
        assert_eq!(json, "\"a/b\"");
        assert!(serde_json::from_str::<WorkspacePath>("\"../x\"").is_err());
    }
}
