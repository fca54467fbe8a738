//! Running a process in a container: attach, demultiplex, cap, and kill on timeout.

use std::future::Future;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecResults};
use futures::StreamExt;
use omoi_core::{SandboxError, SandboxId};
use tokio::io::AsyncWriteExt;

use super::{engine_error, status_of};
use crate::output::CappedBuffer;

/// How long to keep reading after the kill was sent (or the kill exec to finish).
const KILL_GRACE: Duration = Duration::from_secs(10);

/// Runs the command in its own process group (`setsid`), records the group id in `$1`, feeds
/// stdin only if `$2` is `1`, and kills whatever is left of the group when the command exits.
/// `$@` after the two is the command.
pub(crate) const WRAPPER: &str = r#"p=$1; s=$2; shift 2
if [ "$s" = 1 ]; then exec 3<&0; else exec 3</dev/null; fi
setsid "$@" <&3 3<&- &
c=$!
exec 3<&-
echo "$c" > "$p"
wait "$c"; r=$?
kill -KILL -"$c" 2>/dev/null
rm -f "$p"
exit $r"#;

/// Waits (briefly) for the group id file `$1`, then kills that process group.
pub(crate) const KILL: &str = r#"i=0
while [ ! -s "$1" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done
g=$(cat "$1" 2>/dev/null) || exit 0
[ -n "$g" ] && kill -KILL -"$g" 2>/dev/null
exit 0"#;

/// One process to run.
pub(crate) struct Spec {
    pub(crate) cmd: Vec<String>,
    pub(crate) user: String,
    pub(crate) workdir: String,
    pub(crate) env: Vec<String>,
    pub(crate) stdin: Option<Vec<u8>>,
    pub(crate) output_limit: usize,
    pub(crate) timeout: Duration,
}

/// What it did.
#[derive(Debug, Default)]
pub(crate) struct Captured {
    pub(crate) exit_code: Option<i64>,
    pub(crate) stdout: Vec<u8>,
    pub(crate) stdout_truncated: bool,
    pub(crate) stderr: Vec<u8>,
    pub(crate) stderr_truncated: bool,
    pub(crate) timed_out: bool,
    pub(crate) duration: Duration,
}

fn start_error(sandbox: SandboxId, what: &str, e: bollard::errors::Error) -> SandboxError {
    match status_of(&e) {
        Some(404) => SandboxError::Destroyed(sandbox),
        _ => engine_error(what, e),
    }
}

/// Runs `spec` in `container`. When the timeout passes, `on_timeout` (if any) is started to
/// kill the process tree, output is read for a short grace period more, and the result is
/// marked `timed_out`.
pub(crate) async fn run<K>(
    docker: &Docker,
    sandbox: SandboxId,
    container: &str,
    spec: Spec,
    on_timeout: Option<K>,
) -> Result<Captured, SandboxError>
where
    K: Future<Output = ()>,
{
    let options = CreateExecOptions {
        attach_stdin: Some(spec.stdin.is_some()),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        cmd: Some(spec.cmd),
        user: Some(spec.user),
        working_dir: Some(spec.workdir),
        env: Some(spec.env),
        ..Default::default()
    };
    let exec = docker.create_exec(container, options).await.map_err(|e| start_error(sandbox, "create exec", e))?;
    let started = Instant::now();
    let StartExecResults::Attached { mut output, mut input } =
        docker.start_exec(&exec.id, None).await.map_err(|e| start_error(sandbox, "start exec", e))?
    else {
        return Err(SandboxError::Backend { provider: "docker", message: "exec started detached".into() });
    };
    let writer = spec.stdin.map(|bytes| {
        tokio::spawn(async move {
            // The command may exit without reading everything: a broken pipe is not an error.
            let _ = input.write_all(&bytes).await;
            let _ = input.shutdown().await;
        })
    });

    let mut stdout = CappedBuffer::new(spec.output_limit);
    let mut stderr = CappedBuffer::new(spec.output_limit);
    let mut keep = |item: LogOutput| match item {
        LogOutput::StdOut { message } | LogOutput::Console { message } => stdout.push(&message),
        LogOutput::StdErr { message } => stderr.push(&message),
        LogOutput::StdIn { .. } => {}
    };

    let deadline = tokio::time::Instant::now() + spec.timeout;
    let mut timed_out = false;
    loop {
        tokio::select! {
            item = output.next() => match item {
                Some(Ok(item)) => keep(item),
                Some(Err(e)) => return Err(engine_error("exec output", e)),
                None => break,
            },
            () = tokio::time::sleep_until(deadline) => {
                timed_out = true;
                break;
            }
        }
    }
    if timed_out {
        tracing::debug!(exec = %exec.id, "timeout: killing the process group");
        let grace = tokio::time::sleep(KILL_GRACE);
        tokio::pin!(grace);
        let kill = async {
            if let Some(kill) = on_timeout {
                kill.await;
            }
            std::future::pending::<()>().await
        };
        tokio::pin!(kill);
        loop {
            tokio::select! {
                item = output.next() => match item {
                    Some(Ok(item)) => keep(item),
                    Some(Err(_)) | None => break,
                },
                () = &mut kill => {}
                () = &mut grace => {
                    tracing::warn!(exec = %exec.id, "output still open {KILL_GRACE:?} after the kill");
                    break;
                }
            }
        }
    }
    if let Some(w) = writer {
        w.abort();
    }
    let exit_code = if timed_out { None } else { exit_code(docker, &exec.id).await? };
    let (stdout, stdout_truncated) = stdout.into_parts();
    let (stderr, stderr_truncated) = stderr.into_parts();
    Ok(Captured {
        exit_code,
        stdout,
        stdout_truncated,
        stderr,
        stderr_truncated,
        timed_out,
        duration: started.elapsed(),
    })
}

/// The exit code once the engine reports the exec finished (its output can end a moment
/// before its state does).
async fn exit_code(docker: &Docker, exec: &str) -> Result<Option<i64>, SandboxError> {
    for _ in 0..100 {
        let info = docker.inspect_exec(exec).await.map_err(|e| engine_error("inspect exec", e))?;
        if info.running != Some(true) {
            return Ok(info.exit_code);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(SandboxError::Backend {
        provider: "docker",
        message: format!("exec {exec} still running after its output ended"),
    })
}
