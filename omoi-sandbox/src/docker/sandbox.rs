//! One container: commands, files, status, removal.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bollard::models::{ContainerCreateBody, ContainerStateStatusEnum};
use bollard::query_parameters::{KillContainerOptions, RemoveContainerOptions};
use omoi_core::{Command, ExecOutput, ExecRequest, Sandbox, SandboxError, SandboxId, SandboxStatus, WorkspacePath};
use parking_lot::Mutex;
use tracing::Instrument;

use super::exec::{self, Captured, KILL, Spec, WRAPPER};
use super::{Shared, WORKSPACE, engine_error, status_of};
use crate::shell::{self, Expect, Resolved};

/// How long the adapter's own helper commands (path resolution, kill, setup) may take.
const HELPER_TIMEOUT: Duration = Duration::from_secs(120);

pub(crate) struct DockerSandbox {
    pub(super) shared: Arc<Shared>,
    pub(super) id: SandboxId,
    pub(super) container: String,
    /// Numeric uid and gid of the sandbox user (known after the workspace was prepared).
    pub(super) owner: Mutex<(u64, u64)>,
    /// What the sandbox's container was created from: read-only commands run in throwaway
    /// containers derived from it.
    pub(super) template: ContainerCreateBody,
    destroyed: AtomicBool,
}

/// A helper command's result.
pub(super) struct Helper {
    pub(super) exit_code: Option<i64>,
    pub(super) stdout: Vec<u8>,
    pub(super) stderr: Vec<u8>,
}

impl DockerSandbox {
    pub(super) fn new(shared: Arc<Shared>, id: SandboxId, container: String, template: ContainerCreateBody) -> Self {
        Self { shared, id, container, owner: Mutex::new((1000, 1000)), template, destroyed: AtomicBool::new(false) }
    }

    pub(super) fn alive(&self) -> Result<(), SandboxError> {
        if self.destroyed.load(Ordering::SeqCst) { Err(SandboxError::Destroyed(self.id)) } else { Ok(()) }
    }

    /// Runs one of the adapter's own commands (no wrapper, no tree kill).
    pub(super) async fn helper(&self, cmd: Vec<String>, user: &str) -> Result<Helper, SandboxError> {
        run_helper(&self.shared, self.id, &self.container, cmd, user).await
    }

    /// Resolves `path` inside the container (symlinks included) and checks it is confined.
    pub(super) async fn resolve(&self, path: &WorkspacePath, expect: Expect) -> Result<Resolved, SandboxError> {
        let script = shell::resolve_script(WORKSPACE, path, expect);
        let out = self.helper(vec!["sh".into(), "-c".into(), script], &self.shared.config.user).await?;
        shell::interpret("docker", path, expect, out.exit_code, &out.stdout, &out.stderr)
    }

    async fn exec_inner(&self, req: ExecRequest) -> Result<ExecOutput, SandboxError> {
        self.alive()?;
        let mut env = Vec::with_capacity(req.env.len());
        for (k, v) in &req.env {
            if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
                return Err(SandboxError::InvalidRequest(format!("invalid environment variable {k:?}")));
            }
            env.push(format!("{k}={v}"));
        }
        let argv = match req.command {
            Command::Argv(argv) if argv.is_empty() => return Err(SandboxError::InvalidRequest("empty argv".into())),
            Command::Argv(argv) => argv,
            Command::Shell(script) => vec!["sh".into(), "-c".into(), script],
        };
        if argv.iter().any(|a| a.contains('\0')) {
            return Err(SandboxError::InvalidRequest("command contains a NUL byte".into()));
        }
        let workdir = match &req.cwd {
            Some(dir) if !dir.is_root() => self.resolve(dir, Expect::Dir).await?.path,
            _ => WORKSPACE.to_owned(),
        };
        let job = Job { argv, env, workdir, stdin: req.stdin, output_limit: req.output_limit, timeout: req.timeout };
        if req.read_only {
            let copy = self.readonly_copy().await?;
            let out = self.run_wrapped(&copy.container, job).await;
            copy.remove().await;
            return out;
        }
        self.run_wrapped(&self.container, job).await
    }

    /// Runs `job` under the process-group wrapper in `container` (this sandbox's, or a
    /// read-only copy of it).
    async fn run_wrapped(&self, container: &str, job: Job) -> Result<ExecOutput, SandboxError> {
        let pidfile = format!("/tmp/omoi-exec-{}.pgid", uuid::Uuid::now_v7().simple());
        let feed = if job.stdin.is_some() { "1" } else { "0" };
        let mut cmd =
            vec!["sh".to_owned(), "-c".to_owned(), WRAPPER.to_owned(), "omoi-exec".to_owned(), pidfile.clone()];
        cmd.push(feed.to_owned());
        cmd.extend(job.argv);
        let spec = Spec {
            cmd,
            user: self.shared.config.user.clone(),
            workdir: job.workdir,
            env: job.env,
            stdin: job.stdin,
            output_limit: job.output_limit,
            timeout: job.timeout,
        };
        let mut guard = KillOnDrop {
            shared: Arc::clone(&self.shared),
            id: self.id,
            container: container.to_owned(),
            pidfile: pidfile.clone(),
            armed: true,
        };
        let kill = kill_recorded_group(&self.shared, self.id, container, &pidfile);
        let docker = self.shared.docker().await?;
        let Captured { exit_code, stdout, stdout_truncated, stderr, stderr_truncated, timed_out, duration } =
            exec::run(docker, self.id, container, spec, Some(kill)).await?;
        guard.armed = false;
        let exit_code = exit_code.map(|c| i32::try_from(c).unwrap_or(i32::MAX));
        tracing::debug!(?exit_code, timed_out, "exec finished");
        Ok(ExecOutput { exit_code, stdout, stderr, stdout_truncated, stderr_truncated, timed_out, duration })
    }

    /// Removes the container; gone already is fine.
    pub(super) async fn remove(&self) -> Result<(), SandboxError> {
        let docker = self.shared.docker().await?;
        remove_container(docker, &self.container).await
    }
}

/// A user command, checked and ready to run.
struct Job {
    argv: Vec<String>,
    env: Vec<String>,
    workdir: String,
    stdin: Option<Vec<u8>>,
    output_limit: usize,
    timeout: Duration,
}

/// Runs a helper command in `container` (see [`DockerSandbox::helper`]).
async fn run_helper(
    shared: &Shared,
    id: SandboxId,
    container: &str,
    cmd: Vec<String>,
    user: &str,
) -> Result<Helper, SandboxError> {
    run_helper_io(shared, id, container, cmd, user, None, 1 << 20).await.map(|(h, _)| h)
}

/// [`run_helper`] with standard input and an output limit; also says whether standard output
/// was cut at the limit.
pub(super) async fn run_helper_io(
    shared: &Shared,
    id: SandboxId,
    container: &str,
    cmd: Vec<String>,
    user: &str,
    stdin: Option<Vec<u8>>,
    output_limit: usize,
) -> Result<(Helper, bool), SandboxError> {
    let docker = shared.docker().await?;
    let spec = Spec {
        cmd,
        user: user.to_owned(),
        workdir: "/".into(),
        env: Vec::new(),
        stdin,
        output_limit,
        timeout: HELPER_TIMEOUT,
    };
    let out = exec::run(docker, id, container, spec, None::<std::future::Ready<()>>).await?;
    if out.timed_out {
        return Err(SandboxError::Unavailable {
            provider: "docker",
            message: format!("helper command did not finish within {HELPER_TIMEOUT:?}"),
        });
    }
    Ok((Helper { exit_code: out.exit_code, stdout: out.stdout, stderr: out.stderr }, out.stdout_truncated))
}

/// Kills the process group recorded in `pidfile`.
async fn kill_recorded_group(shared: &Shared, id: SandboxId, container: &str, pidfile: &str) {
    let cmd = vec!["sh".into(), "-c".into(), KILL.into(), "omoi-kill".into(), pidfile.to_owned()];
    if let Err(e) = run_helper(shared, id, container, cmd, &shared.config.user).await {
        tracing::warn!(error = %e, "killing a command's process group failed");
    }
}

/// Kills a command's process group if its exec future is dropped before it finished (the
/// caller gave up): Docker would otherwise let it run on.
struct KillOnDrop {
    shared: Arc<Shared>,
    id: SandboxId,
    container: String,
    pidfile: String,
    armed: bool,
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let (shared, id, container, pidfile) =
            (Arc::clone(&self.shared), self.id, self.container.clone(), self.pidfile.clone());
        tracing::debug!(%pidfile, "exec abandoned; killing its process group");
        runtime.spawn(async move { kill_recorded_group(&shared, id, &container, &pidfile).await });
    }
}

/// Force-removes a container with its anonymous volumes; a missing container or a removal
/// already in progress counts as removed.
pub(super) async fn remove_container(docker: &bollard::Docker, container: &str) -> Result<(), SandboxError> {
    let options = RemoveContainerOptions { force: true, v: true, ..Default::default() };
    match docker.remove_container(container, Some(options)).await {
        Ok(()) => Ok(()),
        Err(e) if matches!(status_of(&e), Some(404 | 409)) => Ok(()),
        Err(e) => Err(engine_error("remove container", e)),
    }
}

/// Kills a container's processes (a compensation for `start`).
pub(super) async fn kill_container(docker: &bollard::Docker, container: &str) -> Result<(), SandboxError> {
    match docker.kill_container(container, None::<KillContainerOptions>).await {
        Ok(()) => Ok(()),
        Err(e) if matches!(status_of(&e), Some(404 | 409)) => Ok(()),
        Err(e) => Err(engine_error("kill container", e)),
    }
}

#[async_trait]
impl Sandbox for DockerSandbox {
    fn id(&self) -> SandboxId {
        self.id
    }

    async fn exec(&self, request: ExecRequest) -> Result<ExecOutput, SandboxError> {
        let span = tracing::info_span!(
            "sandbox.exec", provider = "docker", sandbox_id = %self.id, timeout_ms = request.timeout.as_millis() as u64
        );
        self.exec_inner(request).instrument(span).await
    }

    async fn write_file(&self, path: &WorkspacePath, contents: &[u8]) -> Result<(), SandboxError> {
        let span = tracing::info_span!("sandbox.write_file", provider = "docker", sandbox_id = %self.id, %path);
        self.write_inner(path, contents).instrument(span).await
    }

    async fn read_file(&self, path: &WorkspacePath) -> Result<Vec<u8>, SandboxError> {
        let span = tracing::info_span!("sandbox.read_file", provider = "docker", sandbox_id = %self.id, %path);
        self.read_inner(path).instrument(span).await
    }

    async fn read_file_prefix(&self, path: &WorkspacePath, limit: u64) -> Result<(Vec<u8>, bool), SandboxError> {
        let span = tracing::info_span!("sandbox.read_file", provider = "docker", sandbox_id = %self.id, %path, limit);
        self.read_prefix_inner(path, limit).instrument(span).await
    }

    async fn status(&self) -> Result<SandboxStatus, SandboxError> {
        if self.destroyed.load(Ordering::SeqCst) {
            return Ok(SandboxStatus::Destroyed);
        }
        let docker = self.shared.docker().await?;
        match docker.inspect_container(&self.container, None).await {
            Ok(info) => Ok(match info.state.and_then(|s| s.status) {
                Some(ContainerStateStatusEnum::RUNNING) => SandboxStatus::Running,
                Some(ContainerStateStatusEnum::REMOVING) => SandboxStatus::Destroyed,
                _ => SandboxStatus::Stopped,
            }),
            Err(e) if status_of(&e) == Some(404) => Ok(SandboxStatus::Destroyed),
            Err(e) => Err(engine_error("inspect container", e)),
        }
    }

    async fn destroy(&self) -> Result<(), SandboxError> {
        let span = tracing::info_span!("sandbox.destroy", provider = "docker", sandbox_id = %self.id);
        async {
            self.destroyed.store(true, Ordering::SeqCst);
            self.remove().await
        }
        .instrument(span)
        .await
    }
}
