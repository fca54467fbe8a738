//! Running one command: its own process group, stdin fed then closed, both outputs drained
//! concurrently into capped buffers, and a timeout that kills the whole group.

use std::collections::HashSet;
use std::io;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use omoi_core::{ExecOutput, SandboxError};
use parking_lot::Mutex;
use rustix::process::{Pid, Signal, kill_process_group};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

use crate::output::CappedBuffer;

/// How long to wait for the output pipes to close once the process group is dead (a process
/// that left the group with `setsid` may hold them open forever).
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// The process groups of one sandbox's running commands, so `destroy` can kill them.
#[derive(Debug, Default)]
pub(crate) struct ProcessGroups(Mutex<HashSet<u32>>);

impl ProcessGroups {
    /// Kills every registered group.
    pub(crate) fn kill_all(&self) {
        for pgid in self.0.lock().iter() {
            kill_group(*pgid);
        }
    }
}

/// Keeps a group registered while its command runs. If the exec future is dropped before
/// the group was killed (the caller gave up), the drop kills the group.
struct Registered<'a> {
    groups: &'a ProcessGroups,
    pgid: u32,
    armed: bool,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        if self.armed {
            kill_group(self.pgid);
        }
        self.groups.0.lock().remove(&self.pgid);
    }
}

fn kill_group(pgid: u32) {
    let Some(pid) = i32::try_from(pgid).ok().and_then(Pid::from_raw) else { return };
    // ESRCH (nothing left in the group) is the normal case after a clean exit.
    let _ = kill_process_group(pid, Signal::KILL);
}

/// One command, ready to spawn.
#[derive(Debug)]
pub(crate) struct Job {
    pub(crate) program: String,
    pub(crate) args: Vec<String>,
    pub(crate) cwd: PathBuf,
    /// Environment (the process starts from an empty one unless `inherit_env`).
    pub(crate) env: Vec<(String, String)>,
    pub(crate) inherit_env: bool,
    pub(crate) stdin: Option<Vec<u8>>,
    pub(crate) timeout: Duration,
    pub(crate) output_limit: usize,
    /// Whether a missing program should look like a shell's "command not found" (exit 127).
    pub(crate) argv: bool,
}

fn drain<R>(mut reader: R, into: Arc<Mutex<CappedBuffer>>) -> JoinHandle<()>
where
    R: AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            match reader.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => into.lock().push(&chunk[..n]),
            }
        }
    })
}

fn spawn_failure(job: &Job, e: io::Error, started: Instant) -> Result<ExecOutput, SandboxError> {
    let code = match e.kind() {
        io::ErrorKind::NotFound if job.argv => 127,
        io::ErrorKind::PermissionDenied if job.argv => 126,
        _ => return Err(SandboxError::Backend { provider: "local", message: format!("spawn {}: {e}", job.program) }),
    };
    Ok(ExecOutput {
        exit_code: Some(code),
        stderr: format!("omoi: {}: {e}\n", job.program).into_bytes(),
        duration: started.elapsed(),
        ..ExecOutput::default()
    })
}

/// Runs `job` to completion or timeout.
pub(crate) async fn run(job: Job, groups: &ProcessGroups) -> Result<ExecOutput, SandboxError> {
    let started = Instant::now();
    let mut cmd = tokio::process::Command::new(&job.program);
    cmd.args(&job.args)
        .current_dir(&job.cwd)
        .stdin(if job.stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if !job.inherit_env {
        cmd.env_clear();
    }
    cmd.envs(job.env.iter().map(|(k, v)| (k, v)));

    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => return spawn_failure(&job, e, started),
    };
    let Some(pgid) = child.id() else {
        return Err(SandboxError::Backend { provider: "local", message: "child exited before it was tracked".into() });
    };
    groups.0.lock().insert(pgid);
    let mut registered = Registered { groups, pgid, armed: true };

    let stdout = Arc::new(Mutex::new(CappedBuffer::new(job.output_limit)));
    let stderr = Arc::new(Mutex::new(CappedBuffer::new(job.output_limit)));
    let mut tasks = Vec::with_capacity(3);
    if let (Some(bytes), Some(mut pipe)) = (job.stdin, child.stdin.take()) {
        tasks.push(tokio::spawn(async move {
            // A command that exits without reading all of its input closes the pipe: not an error.
            let _ = pipe.write_all(&bytes).await;
            let _ = pipe.shutdown().await;
        }));
    }
    if let Some(pipe) = child.stdout.take() {
        tasks.push(drain(pipe, Arc::clone(&stdout)));
    }
    if let Some(pipe) = child.stderr.take() {
        tasks.push(drain(pipe, Arc::clone(&stderr)));
    }

    let waited = tokio::select! {
        status = child.wait() => Some(status),
        () = tokio::time::sleep(job.timeout) => None,
    };
    // Whatever is left in the group (background jobs, or everything on a timeout) dies now.
    kill_group(pgid);
    registered.armed = false;
    let (exit_code, timed_out) = match waited {
        Some(status) => (status.map_err(|e| backend("wait", e))?.code(), false),
        None => {
            child.wait().await.map_err(|e| backend("wait", e))?;
            (None, true)
        }
    };
    let aborts: Vec<_> = tasks.iter().map(JoinHandle::abort_handle).collect();
    if tokio::time::timeout(DRAIN_GRACE, futures::future::join_all(tasks)).await.is_err() {
        tracing::warn!(pgid, "output pipes still open after the process group died; returning what was read");
        aborts.iter().for_each(|a| a.abort());
    }
    let (stdout, stdout_truncated) = stdout.lock().take();
    let (stderr, stderr_truncated) = stderr.lock().take();
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

fn backend(what: &str, e: io::Error) -> SandboxError {
    SandboxError::Backend { provider: "local", message: format!("{what}: {e}") }
}
