//! Conformance scenarios for [`SandboxProvider`] and the [`Sandbox`]es it creates.
//!
//! Every scenario creates its own sandboxes and destroys them at the end. Sandboxes are created
//! with the label `omoi.testkit=sandbox` so a test run's leftovers (after a failed assertion) can
//! be found. The commands used need only a POSIX shell and coreutils (`sh`, `cat`, `printf`,
//! `head`, `tr`, `wc`, `sleep`, `ln`, `pwd`, `test`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::ports::sandbox::{
    Command, ExecOutput, ExecRequest, Sandbox, SandboxError, SandboxProvider, SandboxSpec, SandboxStatus, WorkspacePath,
};
use crate::testkit::ManualClock;

/// What the sandbox scenarios run against.
#[derive(Clone)]
pub struct Harness {
    /// The provider under test.
    pub provider: Arc<dyn SandboxProvider>,
}

impl Harness {
    /// Wraps an adapter. Sandboxes take their time from the system, so the clock is unused.
    pub fn new<P: SandboxProvider + 'static>(provider: Arc<P>, _clock: Arc<ManualClock>) -> Self {
        Self { provider }
    }

    /// A sandbox from the default spec (plus the testkit label).
    pub async fn sandbox(&self) -> Arc<dyn Sandbox> {
        self.sandbox_with(SandboxSpec::default()).await
    }

    /// A sandbox from `spec` (plus the testkit label).
    pub async fn sandbox_with(&self, mut spec: SandboxSpec) -> Arc<dyn Sandbox> {
        spec.labels.insert("omoi.testkit".into(), "sandbox".into());
        match self.provider.create(spec).await {
            Ok(sandbox) => sandbox,
            Err(e) => panic!("{} provider could not create a sandbox: {e}", self.provider.name()),
        }
    }
}

fn path(p: &str) -> WorkspacePath {
    WorkspacePath::parse(p).unwrap_or_else(|e| panic!("{e}"))
}

fn quick(req: ExecRequest) -> ExecRequest {
    req.timeout(Duration::from_secs(30))
}

async fn run(sandbox: &dyn Sandbox, req: ExecRequest) -> ExecOutput {
    let shown = format!("{:?}", req.command);
    match sandbox.exec(quick(req)).await {
        Ok(out) => out,
        Err(e) => panic!("exec {shown} failed: {e}"),
    }
}

async fn sh(sandbox: &dyn Sandbox, script: &str) -> ExecOutput {
    let out = run(sandbox, ExecRequest::shell(script)).await;
    assert!(
        out.success(),
        "`{script}` failed: exit {:?}, timed out {}, stderr {:?}",
        out.exit_code,
        out.timed_out,
        out.stderr_text()
    );
    out
}

async fn destroy(sandbox: &dyn Sandbox) {
    sandbox.destroy().await.expect("destroy");
}

/// Exit codes are reported as given; stdout and stderr are kept apart.
pub async fn exit_code_and_separate_stdout_and_stderr_are_reported(h: Harness) {
    let sb = h.sandbox().await;
    let out = run(&*sb, ExecRequest::shell("echo to-out; echo to-err >&2; printf tail; exit 3")).await;
    assert_eq!(out.exit_code, Some(3));
    assert!(!out.success());
    assert_eq!(out.stdout_text(), "to-out\ntail");
    assert_eq!(out.stderr_text(), "to-err\n");
    assert!(!out.timed_out && !out.stdout_truncated && !out.stderr_truncated);
    assert!(out.duration < Duration::from_secs(30), "duration {:?}", out.duration);

    let ok = run(&*sb, ExecRequest::argv(["true"])).await;
    assert_eq!(ok.exit_code, Some(0));
    assert!(ok.success() && ok.stdout.is_empty() && ok.stderr.is_empty());
    assert_eq!(run(&*sb, ExecRequest::argv(["false"])).await.exit_code, Some(1));
    assert_eq!(run(&*sb, ExecRequest::shell("exit 42")).await.exit_code, Some(42));
    destroy(&*sb).await;
}

/// Argv arguments reach the program verbatim (no shell expansion); a missing program exits 127;
/// an empty argv is an invalid request.
pub async fn argv_is_passed_verbatim_and_a_missing_program_exits_127(h: Harness) {
    let sb = h.sandbox().await;
    let args = ["printf", "%s|", "a b", "c'd", "$HOME", "*", "\"q\"", "back\\slash", "", "new\nline"];
    let out = run(&*sb, ExecRequest::argv(args)).await;
    assert_eq!(out.exit_code, Some(0), "stderr: {}", out.stderr_text());
    assert_eq!(out.stdout_text(), "a b|c'd|$HOME|*|\"q\"|back\\slash||new\nline|");

    let missing = run(&*sb, ExecRequest::argv(["omoi-no-such-program-xyz", "arg"])).await;
    assert_eq!(missing.exit_code, Some(127), "stderr: {}", missing.stderr_text());

    let empty = ExecRequest { command: Command::Argv(vec![]), ..ExecRequest::argv(["unused"]) };
    assert!(matches!(sb.exec(empty).await, Err(SandboxError::InvalidRequest(_))));
    destroy(&*sb).await;
}

/// Standard input is fed (binary-safe, larger than a pipe buffer) and then closed; without
/// stdin a reader sees end-of-file at once.
pub async fn stdin_is_fed_and_then_closed(h: Harness) {
    let sb = h.sandbox().await;
    let out = run(&*sb, ExecRequest::shell("cat").stdin(b"hello\nworld".to_vec())).await;
    assert_eq!((out.exit_code, out.stdout_text()), (Some(0), "hello\nworld".to_owned()));

    let all_bytes: Vec<u8> = (0..=255u8).collect();
    let out = run(&*sb, ExecRequest::argv(["cat"]).stdin(all_bytes.clone())).await;
    assert_eq!(out.stdout, all_bytes);

    let big = vec![b'x'; 200_000];
    let out = run(&*sb, ExecRequest::shell("wc -c | tr -d ' '").stdin(big)).await;
    assert_eq!(out.stdout_text().trim(), "200000");

    let started = Instant::now();
    let out = run(&*sb, ExecRequest::argv(["cat"]).timeout(Duration::from_secs(20))).await;
    assert!(out.success() && out.stdout.is_empty(), "cat without stdin: {out:?}");
    assert!(started.elapsed() < Duration::from_secs(15), "cat without stdin waited {:?}", started.elapsed());
    destroy(&*sb).await;
}

/// The spec's environment reaches every command; per-exec variables add to it and win.
pub async fn spec_env_and_exec_env_reach_the_command(h: Harness) {
    let spec = SandboxSpec {
        env: BTreeMap::from([
            ("OMOI_SPEC_ONLY".to_owned(), "from spec".to_owned()),
            ("OMOI_BOTH".to_owned(), "spec".to_owned()),
        ]),
        ..SandboxSpec::default()
    };
    let sb = h.sandbox_with(spec).await;
    let tricky = "it's \"quoted\" $HOME `x` \\ ;|&";
    let req = ExecRequest::shell("printf '%s|%s|%s' \"$OMOI_SPEC_ONLY\" \"$OMOI_BOTH\" \"$OMOI_TRICKY\"")
        .env("OMOI_BOTH", "exec")
        .env("OMOI_TRICKY", tricky);
    let out = run(&*sb, req).await;
    assert_eq!(out.stdout_text(), format!("from spec|exec|{tricky}"));

    let plain = run(&*sb, ExecRequest::shell("printf '%s|%s' \"$OMOI_BOTH\" \"${OMOI_TRICKY-unset}\"")).await;
    assert_eq!(plain.stdout_text(), "spec|unset", "per-exec env must not leak into later commands");
    destroy(&*sb).await;
}

/// `cwd` runs the command in a workspace subdirectory; the default is the workspace root; a
/// missing directory is `FileNotFound`; a directory reached through a symlink to outside is
/// refused.
pub async fn cwd_runs_the_command_in_a_workspace_subdirectory(h: Harness) {
    let sb = h.sandbox().await;
    sb.write_file(&path("sub/dir/file.txt"), b"in sub").await.unwrap();
    let root = sh(&*sb, "pwd -P").await.stdout_text().trim().to_owned();

    let out = run(&*sb, ExecRequest::shell("pwd -P; cat file.txt").cwd(path("sub/dir"))).await;
    assert_eq!(out.exit_code, Some(0), "stderr: {}", out.stderr_text());
    assert_eq!(out.stdout_text(), format!("{root}/sub/dir\nin sub"));
    assert_eq!(sh(&*sb, "cat sub/dir/file.txt").await.stdout_text(), "in sub");
    let explicit_root = run(&*sb, ExecRequest::shell("pwd -P").cwd(WorkspacePath::root())).await;
    assert_eq!(explicit_root.stdout_text().trim(), root);

    match sb.exec(quick(ExecRequest::shell("true").cwd(path("no/such/dir")))).await {
        Err(SandboxError::FileNotFound(p)) => assert_eq!(p.as_str(), "no/such/dir"),
        other => panic!("missing cwd: expected FileNotFound, got {other:?}"),
    }
    sh(&*sb, "ln -s /etc etc-link").await;
    match sb.exec(quick(ExecRequest::shell("true").cwd(path("etc-link")))).await {
        Err(SandboxError::PathRejected(_)) => {}
        other => panic!("cwd through a symlink to /etc: expected PathRejected, got {other:?}"),
    }
    destroy(&*sb).await;
}

/// A timeout kills the whole process tree (grandchildren included), returns promptly with
/// `timed_out` and no exit code, and keeps the output produced before it.
pub async fn timeout_kills_the_whole_process_tree(h: Harness) {
    let sb = h.sandbox().await;
    let script = "echo started; (sleep 2; echo late > marker) & sleep 300 & wait";
    let started = Instant::now();
    let out = sb.exec(ExecRequest::shell(script).timeout(Duration::from_millis(800))).await.expect("exec");
    let elapsed = started.elapsed();
    assert!(out.timed_out, "expected a timeout: {out:?}");
    assert_eq!(out.exit_code, None);
    assert!(!out.success());
    assert!(elapsed < Duration::from_secs(15), "a timed-out exec took {elapsed:?} to return");
    assert!(out.duration >= Duration::from_millis(800), "duration {:?}", out.duration);
    assert_eq!(out.stdout_text(), "started\n", "output before the timeout is kept");

    // The grandchild would write the marker two seconds after the start: wait past that.
    tokio::time::sleep(Duration::from_millis(3000).saturating_sub(started.elapsed())).await;
    match sb.read_file(&path("marker")).await {
        Err(SandboxError::FileNotFound(_)) => {}
        other => panic!("a grandchild survived the timeout and wrote the marker: {other:?}"),
    }
    // The sandbox is still usable.
    assert_eq!(sh(&*sb, "echo alive").await.stdout_text(), "alive\n");
    destroy(&*sb).await;
}

/// Each stream is cut at the limit and flagged on its own; the command still runs to its end
/// (output past the limit is drained, so a chatty command does not block).
pub async fn output_is_truncated_at_the_limit_and_flagged_per_stream(h: Harness) {
    let sb = h.sandbox().await;
    let out =
        run(&*sb, ExecRequest::shell("head -c 10000 /dev/zero | tr '\\0' a; printf small >&2").output_limit(1000))
            .await;
    assert_eq!(out.exit_code, Some(0));
    assert_eq!(out.stdout, vec![b'a'; 1000]);
    assert!(out.stdout_truncated);
    assert_eq!((out.stderr_text(), out.stderr_truncated), ("small".to_owned(), false));

    let out = run(
        &*sb,
        ExecRequest::shell("printf small; head -c 5000 /dev/zero | tr '\\0' e >&2; exit 4").output_limit(100),
    )
    .await;
    assert_eq!(out.exit_code, Some(4));
    assert_eq!((out.stdout_text(), out.stdout_truncated), ("small".to_owned(), false));
    assert_eq!(out.stderr, vec![b'e'; 100]);
    assert!(out.stderr_truncated);

    let out = run(&*sb, ExecRequest::shell("head -c 3000000 /dev/zero; echo done >&2").output_limit(10)).await;
    assert_eq!(out.exit_code, Some(0), "a command writing past the limit must run to its end");
    assert_eq!((out.stdout.len(), out.stdout_truncated), (10, true));
    assert_eq!(out.stderr_text(), "done\n");

    let exact = run(&*sb, ExecRequest::shell("printf 12345").output_limit(5)).await;
    assert_eq!((exact.stdout_text(), exact.stdout_truncated), ("12345".to_owned(), false));
    destroy(&*sb).await;
}

/// Files round-trip byte for byte (all 256 byte values), parent directories are created,
/// writes replace, and commands see the same files.
pub async fn files_round_trip_binary_content_in_nested_directories(h: Harness) {
    let sb = h.sandbox().await;
    let all_bytes: Vec<u8> = (0..=255u8).collect();
    let nested = path("a/b/c/all-bytes.bin");
    sb.write_file(&nested, &all_bytes).await.unwrap();
    assert_eq!(sb.read_file(&nested).await.unwrap(), all_bytes);
    assert_eq!(sh(&*sb, "wc -c < a/b/c/all-bytes.bin | tr -d ' '").await.stdout_text().trim(), "256");

    sb.write_file(&nested, b"shorter").await.unwrap();
    assert_eq!(sb.read_file(&nested).await.unwrap(), b"shorter");
    sb.write_file(&path("empty"), b"").await.unwrap();
    assert_eq!(sb.read_file(&path("empty")).await.unwrap(), b"");

    let large: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    sb.write_file(&path("large.bin"), &large).await.unwrap();
    assert_eq!(sb.read_file(&path("large.bin")).await.unwrap(), large);

    sh(&*sb, "mkdir -p made/by && printf 'from exec' > made/by/cmd.txt").await;
    assert_eq!(sb.read_file(&path("made/by/cmd.txt")).await.unwrap(), b"from exec");
    // Commands may modify files written through the API.
    sh(&*sb, "printf ' appended' >> a/b/c/all-bytes.bin").await;
    assert_eq!(sb.read_file(&nested).await.unwrap(), b"shorter appended");

    // An in-workspace symlink is followed.
    sh(&*sb, "ln -s a/b/c/all-bytes.bin inside-link").await;
    assert_eq!(sb.read_file(&path("inside-link")).await.unwrap(), b"shorter appended");

    for dir in [path("a/b"), WorkspacePath::root()] {
        assert!(
            matches!(sb.read_file(&dir).await, Err(SandboxError::InvalidRequest(_))),
            "reading directory {dir} must be an invalid request"
        );
    }
    assert!(matches!(sb.write_file(&path("a/b"), b"x").await, Err(SandboxError::InvalidRequest(_))));
    destroy(&*sb).await;
}

/// `..` and absolute paths never become a `WorkspacePath`; a symlink inside the workspace that
/// points outside is refused by `read_file` and `write_file`, and a write through it changes
/// nothing outside.
pub async fn paths_are_confined_to_the_workspace(h: Harness) {
    for hostile in ["../escape", "a/../../escape", "/etc/passwd", "/"] {
        assert!(WorkspacePath::parse(hostile).is_err(), "{hostile} must be rejected lexically");
    }
    let sb = h.sandbox().await;
    let unique = format!("omoi-escape-{}", uuid::Uuid::now_v7());
    sh(&*sb, "ln -s /etc etc-link && ln -s /etc/passwd passwd-link && ln -s /tmp tmp-link").await;
    sh(&*sb, "ln -s ../../../../../../../.. up-link").await;
    sh(&*sb, &format!("ln -s /tmp/{unique} dangling-out")).await;

    for p in ["etc-link/passwd", "passwd-link", "up-link/etc/passwd", "etc-link"] {
        match sb.read_file(&path(p)).await {
            Err(SandboxError::PathRejected(_)) => {}
            other => panic!("read_file({p}) must be PathRejected, got {:?}", other.map(|b| b.len())),
        }
    }
    for p in [format!("tmp-link/{unique}"), format!("up-link/tmp/{unique}"), "dangling-out".to_owned()] {
        match sb.write_file(&path(&p), b"escaped").await {
            Err(SandboxError::PathRejected(_)) => {}
            other => panic!("write_file({p}) must be PathRejected, got {other:?}"),
        }
    }
    match sb.write_file(&path(&format!("tmp-link/{unique}-dir/nested")), b"escaped").await {
        Err(SandboxError::PathRejected(_)) => {}
        other => panic!("write_file under an escaping directory must be PathRejected, got {other:?}"),
    }
    let check = sh(&*sb, &format!("ls -d /tmp/{unique}* 2>/dev/null | wc -l | tr -d ' '")).await;
    assert_eq!(check.stdout_text().trim(), "0", "a refused write created something outside the workspace");
    // The symlinks themselves are untouched and the workspace still works.
    assert_eq!(sh(&*sb, "readlink tmp-link").await.stdout_text().trim(), "/tmp");
    sb.write_file(&path("ok.txt"), b"fine").await.unwrap();
    assert_eq!(sb.read_file(&path("ok.txt")).await.unwrap(), b"fine");
    destroy(&*sb).await;
}

/// Reading a file that does not exist is `FileNotFound` naming the path.
pub async fn reading_a_missing_file_is_file_not_found(h: Harness) {
    let sb = h.sandbox().await;
    for p in ["missing.txt", "no/such/dir/file"] {
        match sb.read_file(&path(p)).await {
            Err(SandboxError::FileNotFound(got)) => assert_eq!(got.as_str(), p),
            other => panic!("read_file({p}): expected FileNotFound, got {other:?}"),
        }
    }
    destroy(&*sb).await;
}

/// Destroy can be called twice; afterwards every operation fails with `Destroyed` and the
/// status says so. Other sandboxes are unaffected.
pub async fn destroy_is_idempotent_and_final(h: Harness) {
    let sb = h.sandbox().await;
    let other = h.sandbox().await;
    assert_ne!(sb.id(), other.id());
    assert_eq!(sb.status().await.unwrap(), SandboxStatus::Running);
    sb.write_file(&path("f"), b"x").await.unwrap();
    sb.destroy().await.expect("first destroy");
    sb.destroy().await.expect("second destroy");
    assert_eq!(sb.status().await.unwrap(), SandboxStatus::Destroyed);
    let id = sb.id();
    match sb.exec(quick(ExecRequest::shell("true"))).await {
        Err(SandboxError::Destroyed(got)) => assert_eq!(got, id),
        other => panic!("exec after destroy: expected Destroyed, got {other:?}"),
    }
    assert!(matches!(sb.read_file(&path("f")).await, Err(SandboxError::Destroyed(_))));
    assert!(matches!(sb.write_file(&path("g"), b"y").await, Err(SandboxError::Destroyed(_))));
    assert_eq!(other.status().await.unwrap(), SandboxStatus::Running);
    assert_eq!(sh(&*other, "echo still").await.stdout_text(), "still\n");
    destroy(&*other).await;
}

/// Two sandboxes do not share files.
pub async fn sandboxes_do_not_share_files(h: Harness) {
    let a = h.sandbox().await;
    let b = h.sandbox().await;
    a.write_file(&path("only-in-a.txt"), b"a").await.unwrap();
    sh(&*a, "echo a > made-in-a.txt").await;
    assert!(matches!(b.read_file(&path("only-in-a.txt")).await, Err(SandboxError::FileNotFound(_))));
    assert!(matches!(b.read_file(&path("made-in-a.txt")).await, Err(SandboxError::FileNotFound(_))));
    assert_eq!(run(&*b, ExecRequest::shell("test -e made-in-a.txt")).await.exit_code, Some(1));
    destroy(&*a).await;
    destroy(&*b).await;
}

/// Eight commands run at once in one sandbox, each writing its own file; all succeed with
/// their own output. Each waits until all eight have started, so they must really overlap.
pub async fn concurrent_execs_in_one_sandbox_all_succeed(h: Harness) {
    let sb = h.sandbox().await;
    let runs = (0..8).map(|i| {
        let sb = Arc::clone(&sb);
        async move {
            let script = format!(
                "printf 'n={i}' > out-{i}.txt; : > ready-{i}; tries=0; \
                 while [ \"$(ls ready-* | wc -l)\" -lt 8 ]; do \
                   tries=$((tries+1)); [ $tries -gt 500 ] && exit 9; sleep 0.05; \
                 done; cat out-{i}.txt; printf 'e{i}' >&2"
            );
            (i, run(&*sb, ExecRequest::shell(script)).await)
        }
    });
    for (i, out) in futures::future::join_all(runs).await {
        assert_eq!(out.exit_code, Some(0), "exec {i} (exit 9 = the eight did not run at once): {out:?}");
        assert_eq!((out.stdout_text(), out.stderr_text()), (format!("n={i}"), format!("e{i}")));
    }
    for i in 0..8 {
        assert_eq!(sb.read_file(&path(&format!("out-{i}.txt"))).await.unwrap(), format!("n={i}").into_bytes());
    }
    destroy(&*sb).await;
}

/// A FIFO in the workspace (a command can make one) is refused by `read_file`, `write_file` and
/// `read_file_prefix` with `InvalidRequest`, promptly: never opened and waited on.
pub async fn special_files_in_the_workspace_are_refused_not_waited_on(h: Harness) {
    let sb = h.sandbox().await;
    sh(&*sb, "mkfifo fifo && mkdir -p sub && mkfifo sub/pipe").await;
    for p in ["fifo", "sub/pipe"] {
        let p = path(p);
        let read = tokio::time::timeout(Duration::from_secs(30), sb.read_file(&p)).await;
        assert!(matches!(read, Ok(Err(SandboxError::InvalidRequest(_)))), "read_file({p}) on a FIFO: {read:?}");
        let prefix = tokio::time::timeout(Duration::from_secs(30), sb.read_file_prefix(&p, 10)).await;
        assert!(
            matches!(prefix, Ok(Err(SandboxError::InvalidRequest(_)))),
            "read_file_prefix({p}) on a FIFO: {prefix:?}"
        );
        let write = tokio::time::timeout(Duration::from_secs(30), sb.write_file(&p, b"x")).await;
        assert!(matches!(write, Ok(Err(SandboxError::InvalidRequest(_)))), "write_file({p}) on a FIFO: {write:?}");
    }
    assert_eq!(sh(&*sb, "test -p fifo && echo still-a-fifo").await.stdout_text(), "still-a-fifo\n");
    destroy(&*sb).await;
}

/// `read_file_prefix` returns at most the limit and says whether the file is longer.
pub async fn read_file_prefix_returns_at_most_the_limit(h: Harness) {
    let sb = h.sandbox().await;
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    sb.write_file(&path("big.bin"), &big).await.unwrap();
    let (head, cut) = sb.read_file_prefix(&path("big.bin"), 1000).await.unwrap();
    assert_eq!((head.as_slice(), cut), (&big[..1000], true));
    let (all, cut) = sb.read_file_prefix(&path("big.bin"), 200_000).await.unwrap();
    assert_eq!((all.len(), cut), (200_000, false));
    assert!(matches!(sb.read_file_prefix(&path("nope"), 10).await, Err(SandboxError::FileNotFound(_))));
    destroy(&*sb).await;
}

/// Runs the whole [`SandboxProvider`](crate::SandboxProvider) suite against an adapter. The
/// factory yields `Arc<P>` with `P: SandboxProvider` (the clock it receives can be ignored).
#[macro_export]
macro_rules! sandbox_suite {
    ($factory:expr) => {
        $crate::__omoi_suite!(
            sandbox,
            $factory,
            [
                exit_code_and_separate_stdout_and_stderr_are_reported,
                argv_is_passed_verbatim_and_a_missing_program_exits_127,
                stdin_is_fed_and_then_closed,
                spec_env_and_exec_env_reach_the_command,
                cwd_runs_the_command_in_a_workspace_subdirectory,
                timeout_kills_the_whole_process_tree,
                output_is_truncated_at_the_limit_and_flagged_per_stream,
                files_round_trip_binary_content_in_nested_directories,
                paths_are_confined_to_the_workspace,
                reading_a_missing_file_is_file_not_found,
                destroy_is_idempotent_and_final,
                sandboxes_do_not_share_files,
                concurrent_execs_in_one_sandbox_all_succeed,
                special_files_in_the_workspace_are_refused_not_waited_on,
                read_file_prefix_returns_at_most_the_limit,
            ]
        );
    };
}
