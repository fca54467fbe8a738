//! The local process sandbox: a directory per sandbox and a process group per command.

mod copy;
mod paths;
mod process;

use std::collections::BTreeMap;
use std::fmt;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use omoi_core::{
    Command, ExecOutput, ExecRequest, Sandbox, SandboxError, SandboxId, SandboxProvider, SandboxSpec, SandboxStatus,
    WorkspacePath,
};
use rustix::fs::OFlags;
use tracing::Instrument;

use self::paths::{Expect, resolve_for};
use self::process::{Job, ProcessGroups};

/// Sandboxes that are directories on this machine.
///
/// **This does not isolate anything.** Commands run as the current user, with full access to
/// the machine and the network; the workspace confinement applies only to the
/// [`Sandbox::read_file`]/[`Sandbox::write_file`]/`cwd` API, not to what a command does. Use
/// it for trusted code and development; use the Docker or Daytona adapters for agents.
///
/// - Each sandbox is a directory `<root>/<sandbox id>`, removed by `destroy`.
/// - Each command runs in its own process group; a timeout (or the main process exiting)
///   kills the whole group with `SIGKILL`; `destroy` kills every running group.
/// - Commands start from an empty environment plus `PATH` and `HOME` of this process, then
///   [`SandboxSpec::env`], then [`ExecRequest::env`] (see [`inherit_env`](Self::inherit_env)).
/// - [`SandboxSpec::image`], [`SandboxSpec::limits`] and [`SandboxSpec::network`] are ignored.
/// - A [read-only](ExecRequest::read_only) command runs in a throwaway copy of the workspace
///   (in the system's temporary directory), removed afterwards: the workspace is never
///   changed. What it does outside the copy is not confined (no isolation here); callers
///   that take commands from a model also vet the argv (see `omoi-exec`'s `run_readonly`).
///
/// ```
/// # async fn demo() -> Result<(), omoi_core::SandboxError> {
/// use omoi_core::{ExecRequest, SandboxProvider, SandboxSpec};
/// use omoi_sandbox::LocalSandboxProvider;
///
/// let dir = std::env::temp_dir().join("omoi-local-doc");
/// let provider = LocalSandboxProvider::new(&dir);
/// let sandbox = provider.create(SandboxSpec::default()).await?;
/// let out = sandbox.exec(ExecRequest::argv(["echo", "hi"])).await?;
/// assert_eq!(out.stdout_text(), "hi\n");
/// sandbox.destroy().await?;
/// # Ok(())
/// # }
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(demo()).unwrap();
/// ```
#[derive(Clone)]
pub struct LocalSandboxProvider {
    root: PathBuf,
    inherit_env: bool,
    max_file_bytes: u64,
    /// Keeps a temporary root alive while the provider or any of its sandboxes exists.
    temp: Option<Arc<tempfile::TempDir>>,
}

impl fmt::Debug for LocalSandboxProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalSandboxProvider")
            .field("root", &self.root)
            .field("inherit_env", &self.inherit_env)
            .field("max_file_bytes", &self.max_file_bytes)
            .field("temporary", &self.temp.is_some())
            .finish()
    }
}

impl LocalSandboxProvider {
    /// Sandboxes under `root` (created when needed).
    pub fn new(root: impl AsRef<Path>) -> Self {
        Self {
            root: root.as_ref().to_path_buf(),
            inherit_env: false,
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            temp: None,
        }
    }

    /// Sandboxes under a fresh temporary directory, removed when the provider and all its
    /// sandboxes are dropped.
    pub fn temp() -> Result<Self, SandboxError> {
        let dir = tempfile::Builder::new()
            .prefix("omoi-sandboxes-")
            .tempdir()
            .map_err(|e| SandboxError::Backend { provider: "local", message: format!("temporary root: {e}") })?;
        Ok(Self {
            root: dir.path().to_path_buf(),
            inherit_env: false,
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            temp: Some(Arc::new(dir)),
        })
    }

    /// Passes this process's whole environment to commands (default: only `PATH` and `HOME`).
    pub fn inherit_env(mut self, yes: bool) -> Self {
        self.inherit_env = yes;
        self
    }

    /// The largest file `read_file` returns (default 256 MiB, as in Docker); a larger one is
    /// [`SandboxError::TooLarge`], and is never read whole.
    pub fn max_file_bytes(mut self, bytes: u64) -> Self {
        self.max_file_bytes = bytes;
        self
    }

    /// The directory holding the sandboxes' workspaces.
    pub fn root(&self) -> &Path {
        &self.root
    }
}

#[async_trait]
impl SandboxProvider for LocalSandboxProvider {
    fn name(&self) -> &'static str {
        "local"
    }

    async fn create(&self, spec: SandboxSpec) -> Result<Arc<dyn Sandbox>, SandboxError> {
        let id = SandboxId::new();
        let span = tracing::info_span!("sandbox.create", provider = "local", sandbox_id = %id);
        check_env(&spec.env)?;
        async {
            let root = self.root.clone();
            let workspace = blocking(move || {
                std::fs::create_dir_all(&root)?;
                let dir = root.canonicalize()?.join(id.to_string());
                std::fs::create_dir(&dir)?;
                Ok(dir)
            })
            .await
            .map_err(|e| SandboxError::CreateFailed { step: "create_workspace", message: e.to_string() })?;
            let mut base_env = Vec::new();
            if !self.inherit_env {
                for key in ["PATH", "HOME"] {
                    if let Ok(v) = std::env::var(key) {
                        base_env.push((key.to_owned(), v));
                    }
                }
            }
            tracing::debug!(workspace = %workspace.display(), "local sandbox created");
            let sandbox = LocalSandbox {
                id,
                workspace,
                base_env,
                spec_env: spec.env,
                inherit_env: self.inherit_env,
                max_file_bytes: self.max_file_bytes,
                groups: ProcessGroups::default(),
                destroyed: AtomicBool::new(false),
                _temp: self.temp.clone(),
            };
            Ok(Arc::new(sandbox) as Arc<dyn Sandbox>)
        }
        .instrument(span)
        .await
    }
}

struct LocalSandbox {
    id: SandboxId,
    /// Canonical workspace directory.
    workspace: PathBuf,
    base_env: Vec<(String, String)>,
    spec_env: BTreeMap<String, String>,
    inherit_env: bool,
    max_file_bytes: u64,
    groups: ProcessGroups,
    destroyed: AtomicBool,
    _temp: Option<Arc<tempfile::TempDir>>,
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> std::io::Result<T> + Send + 'static) -> std::io::Result<T> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| Err(std::io::Error::other(e)))
}

async fn blocking_sb<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, SandboxError> + Send + 'static,
) -> Result<T, SandboxError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(SandboxError::Backend { provider: "local", message: e.to_string() }))
}

/// Validates variable names: non-empty, no `=` and no NUL (values: no NUL).
pub(crate) fn check_env(env: &BTreeMap<String, String>) -> Result<(), SandboxError> {
    for (k, v) in env {
        if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
            return Err(SandboxError::InvalidRequest(format!("invalid environment variable {k:?}")));
        }
    }
    Ok(())
}

/// The default [`LocalSandboxProvider::max_file_bytes`].
const DEFAULT_MAX_FILE_BYTES: u64 = 256 << 20;

/// `O_NOFOLLOW | O_NONBLOCK`: a symlink swapped in is refused, and a FIFO swapped in after the
/// type check cannot block the open.
fn nofollow_nonblock() -> i32 {
    (OFlags::NOFOLLOW | OFlags::NONBLOCK).bits() as i32
}

fn not_regular(path: &WorkspacePath) -> SandboxError {
    SandboxError::InvalidRequest(format!("{path} is not a regular file (a FIFO, socket or device)"))
}

/// Reads at most `limit` bytes of the regular file `rel` under `root`, and whether it is longer.
fn read_prefix(root: &Path, rel: &WorkspacePath, limit: u64) -> Result<(Vec<u8>, bool), SandboxError> {
    let target = resolve_for(root, rel, Expect::File)?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nofollow_nonblock())
        .open(&target)
        .map_err(|e| open_error(rel, e))?;
    let meta = file.metadata().map_err(|e| paths::backend(rel, e))?;
    if !meta.is_file() {
        return Err(not_regular(rel));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len().min(limit)).unwrap_or(0));
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes).map_err(|e| paths::backend(rel, e))?;
    let cut = bytes.len() as u64 > limit;
    bytes.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    Ok((bytes, cut))
}

impl LocalSandbox {
    fn alive(&self) -> Result<(), SandboxError> {
        if self.destroyed.load(Ordering::SeqCst) { Err(SandboxError::Destroyed(self.id)) } else { Ok(()) }
    }

    async fn exec_inner(&self, req: ExecRequest) -> Result<ExecOutput, SandboxError> {
        self.alive()?;
        check_env(&req.env)?;
        let (program, args, argv) = match req.command {
            Command::Argv(mut argv) => {
                if argv.is_empty() {
                    return Err(SandboxError::InvalidRequest("empty argv".into()));
                }
                let program = argv.remove(0);
                (program, argv, true)
            }
            Command::Shell(script) => ("sh".to_owned(), vec!["-c".to_owned(), script], false),
        };
        if program.contains('\0') || args.iter().any(|a| a.contains('\0')) {
            return Err(SandboxError::InvalidRequest("command contains a NUL byte".into()));
        }
        // A read-only command runs in a throwaway copy, removed when `_copy` drops (after the
        // command's whole process group was killed).
        let (root, _copy) = if req.read_only {
            let from = self.workspace.clone();
            let copy = blocking(move || copy::copy_workspace(&from))
                .await
                .map_err(|e| SandboxError::Backend { provider: "local", message: format!("read-only copy: {e}") })?;
            (copy.path().canonicalize().map_err(|e| paths::backend(&WorkspacePath::root(), e))?, Some(copy))
        } else {
            (self.workspace.clone(), None)
        };
        let cwd = match req.cwd {
            Some(dir) => {
                let root = root.clone();
                blocking_sb(move || resolve_for(&root, &dir, Expect::Dir)).await?
            }
            None => root.clone(),
        };
        let mut env = self.base_env.clone();
        env.extend(self.spec_env.iter().chain(&req.env).map(|(k, v)| (k.clone(), v.clone())));
        let job = Job {
            program,
            args,
            cwd,
            env,
            inherit_env: self.inherit_env,
            stdin: req.stdin,
            timeout: req.timeout,
            output_limit: req.output_limit,
            argv,
        };
        let out = process::run(job, &self.groups).await?;
        tracing::debug!(exit_code = ?out.exit_code, timed_out = out.timed_out, "exec finished");
        Ok(out)
    }
}

#[async_trait]
impl Sandbox for LocalSandbox {
    fn id(&self) -> SandboxId {
        self.id
    }

    async fn exec(&self, request: ExecRequest) -> Result<ExecOutput, SandboxError> {
        let span = tracing::info_span!(
            "sandbox.exec", provider = "local", sandbox_id = %self.id, timeout_ms = request.timeout.as_millis() as u64
        );
        self.exec_inner(request).instrument(span).await
    }

    async fn write_file(&self, path: &WorkspacePath, contents: &[u8]) -> Result<(), SandboxError> {
        let span = tracing::info_span!("sandbox.write_file", provider = "local", sandbox_id = %self.id, %path);
        async {
            self.alive()?;
            let (root, rel, bytes) = (self.workspace.clone(), path.clone(), contents.to_vec());
            blocking_sb(move || {
                let target = resolve_for(&root, &rel, Expect::Writable)?;
                if std::fs::symlink_metadata(&target).is_ok_and(|m| !m.is_file() && !m.is_symlink()) {
                    return Err(not_regular(&rel));
                }
                // O_NOFOLLOW: a symlink swapped in after the check is refused, not followed;
                // O_NONBLOCK: a FIFO swapped in cannot block (the open fails without a reader).
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .custom_flags(nofollow_nonblock())
                    .open(&target)
                    .map_err(|e| open_error(&rel, e))?;
                if !file.metadata().map_err(|e| paths::backend(&rel, e))?.is_file() {
                    return Err(not_regular(&rel));
                }
                file.set_len(0).map_err(|e| paths::backend(&rel, e))?;
                file.write_all(&bytes).map_err(|e| paths::backend(&rel, e))
            })
            .await
        }
        .instrument(span)
        .await
    }

    async fn read_file(&self, path: &WorkspacePath) -> Result<Vec<u8>, SandboxError> {
        let span = tracing::info_span!("sandbox.read_file", provider = "local", sandbox_id = %self.id, %path);
        async {
            self.alive()?;
            let (root, rel, limit) = (self.workspace.clone(), path.clone(), self.max_file_bytes);
            let (bytes, cut) = blocking_sb(move || read_prefix(&root, &rel, limit)).await?;
            if cut {
                return Err(SandboxError::TooLarge { what: "file", size: limit + 1, limit });
            }
            Ok(bytes)
        }
        .instrument(span)
        .await
    }

    async fn read_file_prefix(&self, path: &WorkspacePath, limit: u64) -> Result<(Vec<u8>, bool), SandboxError> {
        let span = tracing::info_span!("sandbox.read_file", provider = "local", sandbox_id = %self.id, %path, limit);
        async {
            self.alive()?;
            let (root, rel) = (self.workspace.clone(), path.clone());
            blocking_sb(move || read_prefix(&root, &rel, limit)).await
        }
        .instrument(span)
        .await
    }

    async fn status(&self) -> Result<SandboxStatus, SandboxError> {
        Ok(if self.destroyed.load(Ordering::SeqCst) { SandboxStatus::Destroyed } else { SandboxStatus::Running })
    }

    async fn destroy(&self) -> Result<(), SandboxError> {
        let span = tracing::info_span!("sandbox.destroy", provider = "local", sandbox_id = %self.id);
        async {
            self.destroyed.store(true, Ordering::SeqCst);
            self.groups.kill_all();
            let dir = self.workspace.clone();
            match blocking(move || std::fs::remove_dir_all(dir)).await {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(SandboxError::Backend { provider: "local", message: format!("remove workspace: {e}") }),
            }
        }
        .instrument(span)
        .await
    }
}

fn open_error(path: &WorkspacePath, e: std::io::Error) -> SandboxError {
    match e.kind() {
        std::io::ErrorKind::NotFound => SandboxError::FileNotFound(path.clone()),
        // ELOOP from O_NOFOLLOW: the last component became a symlink after it was checked.
        _ if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
            SandboxError::PathRejected(omoi_core::ports::sandbox::PathRejected {
                path: path.as_str().to_owned(),
                reason: "is a symlink".into(),
            })
        }
        // ENXIO: a FIFO without a reader (opened for writing), or a socket.
        _ if e.raw_os_error() == Some(rustix::io::Errno::NXIO.raw_os_error()) => not_regular(path),
        _ => paths::backend(path, e),
    }
}
