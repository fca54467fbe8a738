//! `Workspace`: a task's git checkout inside its sandbox, on branch `omoi/<task-id>`. Every git
//! command runs through [`Sandbox::exec`], so the same code works in a local directory, a
//! container or a remote sandbox.

use std::time::Duration;

use omoi_core::{ExecOutput, ExecRequest, Sandbox, SandboxError, TaskId, WorkspacePath};

use super::repo::{GIT_CONFIG, GitError, GitRepo};

/// A workspace failure.
#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    /// The sandbox failed.
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    /// A git command in the sandbox failed.
    #[error("git {command} failed in the sandbox (exit {code:?}): {stderr}")]
    Git {
        /// The git subcommand line.
        command: String,
        /// Its exit code.
        code: Option<i32>,
        /// Its standard error.
        stderr: String,
    },
    /// A git command on the host repository failed.
    #[error(transparent)]
    Host(#[from] GitError),
}

/// The branch name of a task: `omoi/<task-id>`.
pub fn task_branch(task: TaskId) -> String {
    format!("omoi/{task}")
}

const SEED: &str = ".omoi-seed.bundle";
const OUT: &str = ".omoi-out.bundle";
const GIT_TIMEOUT: Duration = Duration::from_secs(120);

/// Build artifacts and caches never committed from a workspace, whether or not the repository
/// has a `.gitignore` (they go to `.git/info/exclude`, which a repository's own `.gitignore`
/// overrides, e.g. with `!target/`). Files already tracked stay tracked.
pub const DEFAULT_IGNORES: &[&str] = &[
    ".omoi-*",
    "__pycache__/",
    "*.py[cod]",
    ".pytest_cache/",
    ".mypy_cache/",
    ".ruff_cache/",
    ".tox/",
    ".venv/",
    "*.egg-info/",
    ".coverage",
    "node_modules/",
    "target/",
    ".gradle/",
    "*.class",
    "*.o",
    ".DS_Store",
];

/// A git checkout in a sandbox's workspace root.
pub struct Workspace<'a> {
    sandbox: &'a dyn Sandbox,
    base: String,
    branch: String,
}

impl std::fmt::Debug for Workspace<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workspace").field("base", &self.base).field("branch", &self.branch).finish()
    }
}

impl<'a> Workspace<'a> {
    /// Prepares the workspace: a clone of `origin`'s branches (through a bundle) checked out
    /// at `base` on a new branch `branch`, or, without an origin, a fresh repository.
    pub async fn prepare(
        sandbox: &'a dyn Sandbox,
        origin: Option<&GitRepo>,
        base: &str,
        branch: &str,
    ) -> Result<Workspace<'a>, WorkspaceError> {
        let ws = Workspace { sandbox, base: base.to_owned(), branch: branch.to_owned() };
        ws.git(&["init", "-q", "-b", base]).await?;
        match origin {
            Some(repo) => {
                let bundle = repo.bundle_all().await?;
                sandbox.write_file(&path(SEED), &bundle).await?;
                ws.git(&["fetch", "-q", SEED, "+refs/heads/*:refs/remotes/origin/*"]).await?;
                ws.git(&["checkout", "-q", "-B", branch, &format!("refs/remotes/origin/{base}")]).await?;
                ws.sh(&format!("rm -f {SEED}")).await?;
            }
            None => {
                ws.git(&["commit", "-q", "--allow-empty", "-m", "initial commit"]).await?;
                ws.git(&["checkout", "-q", "-b", branch]).await?;
            }
        }
        let patterns: Vec<String> = DEFAULT_IGNORES.iter().map(|p| super::repo::sh_quote(p)).collect();
        ws.sh(&format!("mkdir -p .git/info && printf '%s\\n' {} >> .git/info/exclude", patterns.join(" "))).await?;
        Ok(ws)
    }

    /// The task branch.
    pub fn branch(&self) -> &str {
        &self.branch
    }

    /// Commits every change on the task branch, except what the repository's `.gitignore` and
    /// [`DEFAULT_IGNORES`] exclude. Returns the new commit, or `None` if there was nothing to
    /// commit.
    pub async fn commit_all(&self, message: &str) -> Result<Option<String>, WorkspaceError> {
        self.git(&["add", "-A"]).await?;
        let clean = self.exec_git(&["diff", "--cached", "--quiet"]).await?.exit_code == Some(0);
        if clean {
            return Ok(None);
        }
        self.git(&["commit", "-q", "-m", message]).await?;
        Ok(Some(self.git(&["rev-parse", "HEAD"]).await?.trim().to_owned()))
    }

    /// `git status --porcelain`: uncommitted changes, one per line.
    pub async fn changes(&self) -> Result<Vec<String>, WorkspaceError> {
        let out = self.git(&["status", "--porcelain"]).await?;
        Ok(out.lines().map(str::to_owned).filter(|l| !l.trim().is_empty()).collect())
    }

    /// Throws away uncommitted changes (used to enforce no-writes after a validation run).
    pub async fn discard_changes(&self) -> Result<(), WorkspaceError> {
        self.git(&["reset", "-q", "--hard"]).await?;
        self.git(&["clean", "-qfd"]).await?;
        Ok(())
    }

    /// `git diff --stat <base>...<branch>` inside the workspace.
    pub async fn diff_stat(&self) -> Result<String, WorkspaceError> {
        let base = format!("refs/remotes/origin/{}", self.base);
        let has_origin = self.exec_git(&["rev-parse", "--verify", "--quiet", &base]).await?.exit_code == Some(0);
        let from = if has_origin { base } else { format!("{}~0", self.base) };
        self.git(&["diff", "--stat", &format!("{from}...{}", self.branch)]).await
    }

    /// Brings the task branch back into `origin` (through a bundle).
    pub async fn export_to(&self, origin: &GitRepo) -> Result<(), WorkspaceError> {
        self.git(&["bundle", "create", "-q", OUT, &self.branch]).await?;
        let bytes = self.sandbox.read_file(&path(OUT)).await?;
        self.sh(&format!("rm -f {OUT}")).await?;
        origin.fetch_bundle(&bytes, &self.branch).await?;
        Ok(())
    }

    async fn exec_git(&self, args: &[&str]) -> Result<ExecOutput, WorkspaceError> {
        let argv = ["git"].into_iter().chain(GIT_CONFIG).chain(args.iter().copied());
        Ok(self.sandbox.exec(ExecRequest::argv(argv).timeout(GIT_TIMEOUT)).await?)
    }

    /// Runs git and fails unless it exits 0; returns standard output.
    pub async fn git(&self, args: &[&str]) -> Result<String, WorkspaceError> {
        let out = self.exec_git(args).await?;
        if !out.success() {
            return Err(WorkspaceError::Git {
                command: args.join(" "),
                code: out.exit_code,
                stderr: out.stderr_text().trim().to_owned(),
            });
        }
        Ok(out.stdout_text())
    }

    async fn sh(&self, script: &str) -> Result<(), WorkspaceError> {
        let out = self.sandbox.exec(ExecRequest::shell(script).timeout(GIT_TIMEOUT)).await?;
        if !out.success() {
            return Err(WorkspaceError::Git {
                command: script.to_owned(),
                code: out.exit_code,
                stderr: out.stderr_text(),
            });
        }
        Ok(())
    }
}

fn path(p: &str) -> WorkspacePath {
    WorkspacePath::parse(p).expect("constant workspace path is valid")
}
