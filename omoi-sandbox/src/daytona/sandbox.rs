//! One Daytona sandbox: commands through the exec protocol, files through the toolbox.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use omoi_core::{Command, ExecOutput, ExecRequest, Sandbox, SandboxError, SandboxId, SandboxStatus, WorkspacePath};
use reqwest::multipart::{Form, Part};
use reqwest::{Method, StatusCode};
use tracing::Instrument;

use super::Shared;
use super::api::{CallError, ExecuteRequest, ExecuteResponse, Idempotent, SandboxInfo};
use super::script::{self, ExecScript, Outcome};
use crate::shell::{self, Expect, Resolved};

/// How long the adapter's own helper scripts may take.
const HELPER_TIMEOUT: Duration = Duration::from_secs(60);

/// Extra time the daemon and the HTTP request get over a command's own timeout (the command
/// is killed in the sandbox at its timeout; these are backstops).
const BACKSTOP: Duration = Duration::from_secs(30);

pub(crate) struct DaytonaSandbox {
    shared: Arc<Shared>,
    id: SandboxId,
    /// Daytona's id for it.
    remote: String,
    /// The canonical workspace directory inside the sandbox.
    root: OnceLock<String>,
    destroyed: AtomicBool,
}

/// Why an execute failed.
enum ExecFailure {
    /// The daemon's own timeout fired (408).
    DaemonTimeout,
    Error(SandboxError),
}

impl From<SandboxError> for ExecFailure {
    fn from(e: SandboxError) -> Self {
        ExecFailure::Error(e)
    }
}

impl DaytonaSandbox {
    pub(super) fn new(shared: Arc<Shared>, id: SandboxId, remote: String) -> Self {
        Self { shared, id, remote, root: OnceLock::new(), destroyed: AtomicBool::new(false) }
    }

    fn alive(&self) -> Result<(), SandboxError> {
        if self.destroyed.load(Ordering::SeqCst) { Err(SandboxError::Destroyed(self.id)) } else { Ok(()) }
    }

    fn root(&self) -> Result<&str, SandboxError> {
        self.root
            .get()
            .map(String::as_str)
            .ok_or_else(|| SandboxError::Backend { provider: "daytona", message: "workspace not prepared".into() })
    }

    /// Maps a toolbox failure; 404 means the sandbox is gone.
    fn toolbox_error(&self, what: &str, e: CallError) -> SandboxError {
        match e.status() {
            Some(StatusCode::NOT_FOUND) => SandboxError::Destroyed(self.id),
            _ => e.into_error(what),
        }
    }

    /// `POST /process/execute` (never retried: a command may have side effects).
    async fn execute(&self, command: &str, timeout: Duration) -> Result<ExecuteResponse, ExecFailure> {
        let url = self.shared.api.toolbox(&self.remote, "/process/execute");
        let daemon_timeout = u32::try_from((timeout + BACKSTOP / 3).as_secs().saturating_add(1)).unwrap_or(u32::MAX);
        let body = ExecuteRequest { command, cwd: None, timeout: daemon_timeout };
        match self
            .shared
            .api
            .json(Method::POST, &url, Idempotent::No, Some(timeout + BACKSTOP), |r| r.json(&body))
            .await
        {
            Ok(resp) => Ok(resp),
            Err(e) if e.status() == Some(StatusCode::REQUEST_TIMEOUT) => Err(ExecFailure::DaemonTimeout),
            Err(e) => Err(ExecFailure::Error(self.toolbox_error("execute", e))),
        }
    }

    /// Runs one of the adapter's own scripts; returns the exit code and merged output.
    async fn helper(&self, script: &str) -> Result<ExecuteResponse, SandboxError> {
        match self.execute(&script::inline_command(script), HELPER_TIMEOUT).await {
            Ok(resp) => Ok(resp),
            Err(ExecFailure::DaemonTimeout) => Err(SandboxError::Unavailable {
                provider: "daytona",
                message: format!("helper command did not finish within {HELPER_TIMEOUT:?}"),
            }),
            Err(ExecFailure::Error(e)) => Err(e),
        }
    }

    /// Creates the workspace directory and records its canonical path.
    pub(super) async fn prepare_workspace(&self, dir: &str) -> Result<(), SandboxError> {
        let q = shell::quote(dir);
        let resp = self.helper(&format!("mkdir -p -- {q} && cd -- {q} && pwd -P")).await?;
        let root = resp.result.trim().to_owned();
        if resp.exit_code != 0 || !root.starts_with('/') || root.contains('\n') {
            return Err(SandboxError::Backend {
                provider: "daytona",
                message: format!("cannot create workspace {dir:?} (exit {}): {}", resp.exit_code, resp.result.trim()),
            });
        }
        tracing::debug!(workspace = %root, "workspace ready");
        let _ = self.root.set(root);
        Ok(())
    }

    async fn resolve(&self, path: &WorkspacePath, expect: Expect) -> Result<Resolved, SandboxError> {
        let script = format!("( {} ) 2>/dev/null", shell::resolve_script(self.root()?, path, expect));
        let resp = self.helper(&script).await?;
        shell::interpret("daytona", path, expect, Some(resp.exit_code), resp.result.as_bytes(), b"")
    }

    async fn upload(&self, path: &str, bytes: &[u8]) -> Result<(), SandboxError> {
        let url = self.shared.api.toolbox(&self.remote, "/files/upload");
        let build = |r: reqwest::RequestBuilder| {
            let part = Part::bytes(bytes.to_vec()).file_name("upload");
            r.query(&[("path", path)]).multipart(Form::new().part("file", part))
        };
        self.shared
            .api
            .send(Method::POST, &url, Idempotent::Yes, None, build)
            .await
            .map(|_| ())
            .map_err(|e| self.toolbox_error("upload", e))
    }

    async fn download(&self, rel: &WorkspacePath, path: &str) -> Result<Vec<u8>, SandboxError> {
        let url = self.shared.api.toolbox(&self.remote, "/files/download");
        let resp = match self
            .shared
            .api
            .send(Method::GET, &url, Idempotent::Yes, None, |r| r.query(&[("path", path)]))
            .await
        {
            Ok(resp) => resp,
            // The file vanished between resolution and download.
            Err(e) if e.status() == Some(StatusCode::NOT_FOUND) => return Err(SandboxError::FileNotFound(rel.clone())),
            Err(e) => return Err(e.into_error("download")),
        };
        let limit = self.shared.config.max_file_bytes;
        if let Some(size) = resp.content_length().filter(|s| *s > limit) {
            return Err(SandboxError::TooLarge { what: "file", size, limit });
        }
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| SandboxError::Unavailable { provider: "daytona", message: format!("download body: {e}") })?;
        if bytes.len() as u64 > limit {
            return Err(SandboxError::TooLarge { what: "file", size: bytes.len() as u64, limit });
        }
        Ok(bytes.to_vec())
    }

    /// `DELETE /sandbox/{id}`; already gone is fine.
    pub(super) async fn delete(&self) -> Result<(), SandboxError> {
        let url = self.shared.api.api(&format!("/sandbox/{}", self.remote));
        match self.shared.api.send(Method::DELETE, &url, Idempotent::Yes, None, |r| r).await {
            Ok(_) => Ok(()),
            Err(e) if e.status() == Some(StatusCode::NOT_FOUND) => Ok(()),
            Err(e) => Err(e.into_error("delete sandbox")),
        }
    }

    async fn exec_inner(&self, req: ExecRequest) -> Result<ExecOutput, SandboxError> {
        self.alive()?;
        if req.read_only {
            return Err(SandboxError::InvalidRequest(
                "daytona cannot run a command read-only (no throwaway copy of the workspace); use docker".into(),
            ));
        }
        let argv = match req.command {
            Command::Argv(argv) => argv,
            Command::Shell(script) => vec!["sh".into(), "-c".into(), script],
        };
        if argv.iter().chain(req.env.values()).any(|s| s.contains('\0')) {
            return Err(SandboxError::InvalidRequest("command or environment contains a NUL byte".into()));
        }
        let nonce = uuid::Uuid::now_v7().simple().to_string();
        let mut exec = ExecScript {
            nonce: &nonce,
            root: self.root()?,
            cwd: req.cwd.as_ref(),
            argv: &argv,
            env: &req.env,
            stdin: req.stdin.as_deref(),
            timeout: req.timeout,
            output_limit: req.output_limit,
            self_path: None,
        };
        let mut rendered = exec.render()?;
        let started = Instant::now();
        let command = if rendered.len() * 4 / 3 <= script::INLINE_LIMIT {
            script::inline_command(&rendered)
        } else {
            // Too long for one argument: upload the script; it deletes itself when it runs.
            let path = format!("/tmp/omoi-exec-{nonce}.sh");
            exec.self_path = Some(&path);
            rendered = exec.render()?;
            self.upload(&path, rendered.as_bytes()).await?;
            script::file_command(&path)
        };
        let resp = match self.execute(&command, req.timeout).await {
            Ok(resp) => resp,
            Err(ExecFailure::DaemonTimeout) => {
                tracing::warn!("the daemon's backstop timeout fired before the sandbox watchdog");
                return Ok(ExecOutput { timed_out: true, duration: started.elapsed(), ..ExecOutput::default() });
            }
            Err(ExecFailure::Error(e)) => return Err(e),
        };
        match script::parse(&resp.result, &nonce, req.output_limit)? {
            Outcome::Cwd(code) => {
                let cwd = req.cwd.clone().unwrap_or_else(WorkspacePath::root);
                let refused = shell::interpret("daytona", &cwd, Expect::Dir, Some(code), b"", b"").err();
                Err(refused.unwrap_or_else(|| SandboxError::Backend {
                    provider: "daytona",
                    message: format!("working directory {cwd} refused"),
                }))
            }
            Outcome::Ran { exit_code, timed_out, stdout, stdout_truncated, stderr, stderr_truncated } => {
                tracing::debug!(?exit_code, timed_out, "exec finished");
                Ok(ExecOutput {
                    exit_code,
                    stdout,
                    stderr,
                    stdout_truncated,
                    stderr_truncated,
                    timed_out,
                    duration: started.elapsed(),
                })
            }
        }
    }
}

#[async_trait]
impl Sandbox for DaytonaSandbox {
    fn id(&self) -> SandboxId {
        self.id
    }

    async fn exec(&self, request: ExecRequest) -> Result<ExecOutput, SandboxError> {
        let span = tracing::info_span!(
            "sandbox.exec", provider = "daytona", sandbox_id = %self.id, timeout_ms = request.timeout.as_millis() as u64
        );
        self.exec_inner(request).instrument(span).await
    }

    async fn write_file(&self, path: &WorkspacePath, contents: &[u8]) -> Result<(), SandboxError> {
        let span = tracing::info_span!("sandbox.write_file", provider = "daytona", sandbox_id = %self.id, %path);
        async {
            self.alive()?;
            let limit = self.shared.config.max_file_bytes;
            if contents.len() as u64 > limit {
                return Err(SandboxError::TooLarge { what: "file", size: contents.len() as u64, limit });
            }
            let resolved = self.resolve(path, Expect::Writable).await?;
            self.upload(&resolved.path, contents).await
        }
        .instrument(span)
        .await
    }

    async fn read_file(&self, path: &WorkspacePath) -> Result<Vec<u8>, SandboxError> {
        let span = tracing::info_span!("sandbox.read_file", provider = "daytona", sandbox_id = %self.id, %path);
        async {
            self.alive()?;
            let resolved = self.resolve(path, Expect::File).await?;
            self.download(path, &resolved.path).await
        }
        .instrument(span)
        .await
    }

    async fn status(&self) -> Result<SandboxStatus, SandboxError> {
        if self.destroyed.load(Ordering::SeqCst) {
            return Ok(SandboxStatus::Destroyed);
        }
        let url = self.shared.api.api(&format!("/sandbox/{}", self.remote));
        match self.shared.api.json::<SandboxInfo>(Method::GET, &url, Idempotent::Yes, None, |r| r).await {
            Ok(info) => Ok(match info.state.as_deref() {
                Some("started") => SandboxStatus::Running,
                Some("destroyed" | "destroying") => SandboxStatus::Destroyed,
                _ => SandboxStatus::Stopped,
            }),
            Err(e) if e.status() == Some(StatusCode::NOT_FOUND) => Ok(SandboxStatus::Destroyed),
            Err(e) => Err(e.into_error("sandbox status")),
        }
    }

    async fn destroy(&self) -> Result<(), SandboxError> {
        let span = tracing::info_span!("sandbox.destroy", provider = "daytona", sandbox_id = %self.id);
        async {
            self.destroyed.store(true, Ordering::SeqCst);
            self.delete().await
        }
        .instrument(span)
        .await
    }
}
