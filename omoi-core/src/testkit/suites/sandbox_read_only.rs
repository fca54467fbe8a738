//! Conformance scenarios for read-only execution ([`ExecRequest::read_only`]), run by every
//! adapter that supports it (`sandbox_read_only_suite!`): whatever the argv, a read-only
//! command cannot change the workspace. Each scenario first proves its escape really ran (it
//! changed the command's own view) and then that the workspace did not change. The commands
//! need `sh`, coreutils, `find` and `git`.

use std::time::Duration;

use crate::ports::sandbox::{ExecOutput, ExecRequest, Sandbox, WorkspacePath};
pub use crate::testkit::suites::sandbox::Harness;

fn path(p: &str) -> WorkspacePath {
    WorkspacePath::parse(p).unwrap_or_else(|e| panic!("{e}"))
}

async fn exec(sandbox: &dyn Sandbox, req: ExecRequest) -> ExecOutput {
    let shown = format!("{:?}", req.command);
    match sandbox.exec(req.timeout(Duration::from_secs(60))).await {
        Ok(out) => out,
        Err(e) => panic!("exec {shown} failed: {e}"),
    }
}

async fn sh(sandbox: &dyn Sandbox, script: &str) -> ExecOutput {
    let out = exec(sandbox, ExecRequest::shell(script)).await;
    assert!(out.success(), "`{script}` failed: {:?} {}", out.exit_code, out.stderr_text());
    out
}

/// Every file in the workspace with its content (`find`, sorted), `.git` excluded.
async fn snapshot(sandbox: &dyn Sandbox) -> String {
    let script = "find . -path ./.git -prune -o -type f -print | LC_ALL=C sort | while read -r f; do printf '%s=' \"$f\"; cat \"$f\"; echo; done; git branch --list 2>/dev/null";
    sh(sandbox, script).await.stdout_text()
}

async fn fixture(h: &Harness) -> std::sync::Arc<dyn Sandbox> {
    let sb = h.sandbox().await;
    sb.write_file(&path("a.txt"), b"alpha").await.unwrap();
    sb.write_file(&path("keep/keep.txt"), b"keep me").await.unwrap();
    sh(
        &*sb,
        "git init -q -b main && git add -A && git -c user.name=t -c user.email=t@t commit -q -m init && git branch keep-branch",
    )
    .await;
    sb
}

/// Redirection, `rm` and `mkdir` through `sh -c` in read-only mode change only a throwaway
/// copy: the command sees its own changes, the workspace has none of them.
pub async fn read_only_escape_through_shell_redirection_changes_nothing(h: Harness) {
    let sb = fixture(&h).await;
    let before = snapshot(&*sb).await;
    let script = "echo pwned > a.txt; echo new > b.txt; rm -rf keep; mkdir made; cat a.txt; ls";
    let out = exec(&*sb, ExecRequest::shell(script).read_only()).await;
    assert!(out.success(), "{out:?}");
    let seen = out.stdout_text();
    assert!(
        seen.starts_with("pwned\n") && seen.contains("b.txt") && !seen.contains("keep"),
        "escape did not run: {seen}"
    );
    assert_eq!(snapshot(&*sb).await, before, "a read-only command changed the workspace");
    assert_eq!(sb.read_file(&path("a.txt")).await.unwrap(), b"alpha");
    sb.destroy().await.unwrap();
}

/// `find -fprint0`, `find -exec`, `find -delete`, `git grep -O<cmd>`, `git branch <name>` and
/// `git branch -D` run read-only change nothing in the workspace (files or branches).
pub async fn read_only_escape_through_find_and_git_changes_nothing(h: Harness) {
    let sb = fixture(&h).await;
    let before = snapshot(&*sb).await;
    let escapes: [&[&str]; 6] = [
        &["find", ".", "-name", "a.txt", "-fprint0", "printed.bin"],
        &["find", ".", "-name", "keep.txt", "-exec", "rm", "{}", ";"],
        &["find", "keep", "-delete"],
        &["git", "grep", "-Otouch grep-ran", "alpha"],
        &["git", "branch", "pwned-branch"],
        &["git", "branch", "-D", "keep-branch"],
    ];
    for argv in escapes {
        let probe = format!(
            "{} ; find . -path ./.git -prune -o -print; git branch --list",
            argv.iter().map(|a| format!("'{a}'")).collect::<Vec<_>>().join(" ")
        );
        let out = exec(&*sb, ExecRequest::shell(probe).read_only()).await;
        let seen = out.stdout_text();
        let ran = match argv[1] {
            "." if argv[4] == "-fprint0" => seen.contains("./printed.bin"),
            "." => !seen.contains("./keep/keep.txt") && seen.contains("./keep\n"),
            "keep" => !seen.contains("./keep"),
            "grep" => seen.contains("./grep-ran"),
            "branch" if argv[2] == "-D" => !seen.lines().any(|l| l.trim() == "keep-branch"),
            _ => seen.lines().any(|l| l.trim() == "pwned-branch"),
        };
        assert!(ran, "the escape {argv:?} did not even change the copy: {seen}");
        let direct = exec(&*sb, ExecRequest::argv(argv.iter().copied()).read_only()).await;
        assert!(direct.exit_code.is_some(), "{argv:?}: {direct:?}");
        assert_eq!(snapshot(&*sb).await, before, "{argv:?} run read-only changed the workspace");
    }
    sb.destroy().await.unwrap();
}

/// A read-only command sees the workspace as it is (files, subdirectories as `cwd`), its exit
/// code and output come back, and the copy it ran in is gone afterwards.
pub async fn read_only_commands_see_the_workspace_and_their_copy_is_removed(h: Harness) {
    let sb = fixture(&h).await;
    let out = exec(&*sb, ExecRequest::shell("cat keep.txt; echo; pwd; exit 3").cwd(path("keep")).read_only()).await;
    assert_eq!(out.exit_code, Some(3));
    let text = out.stdout_text();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("keep me"));
    let copy_dir = lines.next().expect("pwd").to_owned();
    let check = exec(&*sb, ExecRequest::argv(["test", "-e", &copy_dir])).await;
    let here = sh(&*sb, "pwd").await.stdout_text();
    if !copy_dir.starts_with(here.trim()) {
        assert_eq!(check.exit_code, Some(1), "the copy {copy_dir} is still there");
    }
    sb.destroy().await.unwrap();
}

/// Runs the read-only execution suite ([`ExecRequest::read_only`](crate::ExecRequest)) against
/// an adapter that supports it; same factory as [`sandbox_suite!`](crate::sandbox_suite!).
#[macro_export]
macro_rules! sandbox_read_only_suite {
    ($factory:expr) => {
        $crate::__omoi_suite!(
            sandbox_read_only,
            $factory,
            [
                read_only_escape_through_shell_redirection_changes_nothing,
                read_only_escape_through_find_and_git_changes_nothing,
                read_only_commands_see_the_workspace_and_their_copy_is_removed,
            ]
        );
    };
}
