//! `GitRepo`: the orchestrator's own repository on the host ("origin"). Agent workspaces are
//! seeded from it with a bundle and their task branches are fetched back into it, so merges
//! happen here, next to the orchestrator, whatever sandbox the agents ran in.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::Command;

/// A git failure: the command and what it printed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("git {args} failed ({status}): {stderr}")]
pub struct GitError {
    /// The arguments, space separated.
    pub args: String,
    /// Exit status, or how it failed to start.
    pub status: String,
    /// Standard error (trimmed).
    pub stderr: String,
}

/// Identity and settings every git call gets, so commits work on machines without a git config.
pub(crate) const GIT_CONFIG: [&str; 10] = [
    "-c",
    "user.name=omoi",
    "-c",
    "user.email=omoi@localhost",
    "-c",
    "init.defaultBranch=main",
    "-c",
    "safe.directory=*",
    "-c",
    "commit.gpgsign=false",
];

/// What a git command printed.
#[derive(Debug, Clone)]
pub struct GitOutput {
    /// Exit code.
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// A repository on the host, driven through the `git` executable.
#[derive(Debug, Clone)]
pub struct GitRepo {
    path: PathBuf,
}

impl GitRepo {
    /// An existing repository (or worktree) at `path`.
    pub fn open(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// Creates a repository at `path` with branch `main` and an initial commit of whatever the
    /// directory holds.
    pub async fn init(path: impl Into<PathBuf>) -> Result<Self, GitError> {
        let repo = Self::open(path);
        tokio::fs::create_dir_all(&repo.path).await.map_err(|e| GitError {
            args: "init".into(),
            status: "mkdir".into(),
            stderr: e.to_string(),
        })?;
        repo.run(&["init", "-q", "-b", "main"]).await?;
        repo.run(&["add", "-A"]).await?;
        repo.run(&["commit", "-q", "--allow-empty", "-m", "initial commit"]).await?;
        Ok(repo)
    }

    /// The repository's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs git with `args`; any exit code is returned (not an error).
    pub async fn exec(&self, args: &[&str]) -> Result<GitOutput, GitError> {
        let out = Command::new("git")
            .args(GIT_CONFIG)
            .args(args)
            .current_dir(&self.path)
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|e| GitError {
                args: args.join(" "),
                status: "could not start git".into(),
                stderr: e.to_string(),
            })?;
        Ok(GitOutput {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// Runs git with `args` and fails unless it exits 0. Returns standard output.
    pub async fn run(&self, args: &[&str]) -> Result<String, GitError> {
        let out = self.exec(args).await?;
        if out.code != 0 {
            return Err(GitError {
                args: args.join(" "),
                status: format!("exit {}", out.code),
                stderr: out.stderr.trim().to_owned(),
            });
        }
        Ok(out.stdout)
    }

    /// The commit `rev` names.
    pub async fn rev_parse(&self, rev: &str) -> Result<String, GitError> {
        Ok(self.run(&["rev-parse", "--verify", "--quiet", &format!("{rev}^{{commit}}")]).await?.trim().to_owned())
    }

    /// Whether branch `name` exists.
    pub async fn has_branch(&self, name: &str) -> Result<bool, GitError> {
        Ok(self.exec(&["rev-parse", "--verify", "--quiet", &format!("refs/heads/{name}")]).await?.code == 0)
    }

    /// A bundle of every branch, to seed a workspace.
    pub async fn bundle_all(&self) -> Result<Vec<u8>, GitError> {
        let tmp = tempfile_path(&self.path, "out.bundle");
        self.run(&["bundle", "create", "-q", path_str(&tmp), "--branches"]).await?;
        read_and_remove(&tmp, "bundle create").await
    }

    /// Fetches `branch` from a bundle into a local branch of the same name (forced).
    pub async fn fetch_bundle(&self, bundle: &[u8], branch: &str) -> Result<(), GitError> {
        let tmp = tempfile_path(&self.path, "in.bundle");
        tokio::fs::write(&tmp, bundle).await.map_err(|e| GitError {
            args: "fetch".into(),
            status: "write bundle".into(),
            stderr: e.to_string(),
        })?;
        let refspec = format!("+refs/heads/{branch}:refs/heads/{branch}");
        let res = self.run(&["fetch", "-q", path_str(&tmp), &refspec]).await;
        let _ = tokio::fs::remove_file(&tmp).await;
        res.map(|_| ())
    }

    /// `git diff --stat base...branch`.
    pub async fn diff_stat(&self, base: &str, branch: &str) -> Result<String, GitError> {
        self.run(&["diff", "--stat", &format!("{base}...{branch}")]).await
    }

    /// Files `git merge-tree --write-tree` reports conflicting when merging `branch` into
    /// `base` (empty when the merge is clean), and the merged tree when it is.
    pub async fn merge_tree(&self, base: &str, branch: &str) -> Result<MergeTree, GitError> {
        let out = self.exec(&["merge-tree", "--write-tree", "--name-only", "--no-messages", base, branch]).await?;
        let mut lines = out.stdout.lines();
        let tree = lines.next().unwrap_or_default().trim().to_owned();
        // Exit 1 means "conflicts" only when a tree was written; git also exits 1 for a bad ref.
        let wrote_tree = tree.len() >= 40 && tree.bytes().all(|b| b.is_ascii_hexdigit());
        match out.code {
            0 if wrote_tree => Ok(MergeTree { tree, conflicts: Vec::new() }),
            1 if wrote_tree => {
                let mut conflicts: Vec<String> =
                    lines.map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect();
                conflicts.dedup();
                Ok(MergeTree { tree, conflicts })
            }
            code => Err(GitError {
                args: format!("merge-tree --write-tree {base} {branch}"),
                status: format!("exit {code}"),
                stderr: out.stderr.trim().to_owned(),
            }),
        }
    }

    /// Records a merge commit of `tree` with parents `base` and `branch` and moves `base` to it.
    /// Needs no worktree, so it also works on bare repositories.
    ///
    /// Nobody's work is ever destroyed: where `base` is checked out (in this repository or a
    /// linked worktree) with uncommitted changes to tracked files, the merge is refused with
    /// [`MergeError::DirtyCheckout`] and nothing moves. A clean checkout of `base` is carried
    /// forward with a two-tree `git read-tree -m -u`, which itself refuses to overwrite an
    /// untracked file; any other worktree is not touched at all.
    pub async fn commit_merge(
        &self,
        base: &str,
        branch: &str,
        tree: &str,
        message: &str,
    ) -> Result<String, MergeError> {
        let base_sha = self.rev_parse(base).await?;
        let branch_sha = self.rev_parse(branch).await?;
        let checkouts = self.checkouts_of(base).await?;
        for wt in &checkouts {
            let changes = wt.run(&["status", "--porcelain", "--untracked-files=no"]).await?;
            let changes: Vec<String> = changes.lines().filter(|l| !l.trim().is_empty()).map(str::to_owned).collect();
            if !changes.is_empty() {
                return Err(MergeError::DirtyCheckout { branch: base.to_owned(), worktree: wt.path.clone(), changes });
            }
        }
        let commit = self.run(&["commit-tree", tree, "-p", &base_sha, "-p", &branch_sha, "-m", message]).await?;
        let commit = commit.trim().to_owned();
        let mut moved: Vec<&GitRepo> = Vec::new();
        for wt in &checkouts {
            let out = wt.exec(&["read-tree", "-m", "-u", &base_sha, &commit]).await?;
            if out.code != 0 {
                for done in moved {
                    let _ = done.exec(&["read-tree", "-m", "-u", &commit, &base_sha]).await;
                }
                let changes = out.stderr.lines().filter(|l| !l.trim().is_empty()).map(str::to_owned).collect();
                return Err(MergeError::DirtyCheckout { branch: base.to_owned(), worktree: wt.path.clone(), changes });
            }
            moved.push(wt);
        }
        if let Err(e) = self.run(&["update-ref", &format!("refs/heads/{base}"), &commit, &base_sha]).await {
            for done in moved {
                let _ = done.exec(&["read-tree", "-m", "-u", &commit, &base_sha]).await;
            }
            return Err(e.into());
        }
        Ok(commit)
    }

    /// The non-bare worktrees (this one and linked ones) that have `branch` checked out.
    async fn checkouts_of(&self, branch: &str) -> Result<Vec<GitRepo>, GitError> {
        let list = self.run(&["worktree", "list", "--porcelain"]).await?;
        let wanted = format!("branch refs/heads/{branch}");
        let mut found = Vec::new();
        for entry in list.split("\n\n") {
            let mut lines = entry.lines();
            let Some(path) = lines.next().and_then(|l| l.strip_prefix("worktree ")) else { continue };
            let lines: Vec<&str> = lines.collect();
            if lines.contains(&"bare") || !lines.contains(&wanted.as_str()) {
                continue;
            }
            found.push(GitRepo::open(path));
        }
        Ok(found)
    }
}

/// Why a merge could not be recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MergeError {
    /// The base branch is checked out with local changes (or untracked files the merge would
    /// overwrite); nothing was changed.
    #[error("branch {branch} is checked out at {} with local changes; commit or stash them first: {}", worktree.display(), changes.join("; "))]
    DirtyCheckout {
        /// The branch that would have moved.
        branch: String,
        /// The worktree holding the changes.
        worktree: PathBuf,
        /// The changes (`git status --porcelain` lines, or what git refused to overwrite).
        changes: Vec<String>,
    },
    /// A git command failed.
    #[error(transparent)]
    Git(#[from] GitError),
}

/// The result of a dry-run merge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeTree {
    /// The tree the merge would produce (meaningful when there is no conflict).
    pub tree: String,
    /// Conflicting files.
    pub conflicts: Vec<String>,
}

fn tempfile_path(repo: &Path, name: &str) -> PathBuf {
    let git_dir = if repo.join(".git").is_dir() { repo.join(".git") } else { repo.to_path_buf() };
    git_dir.join(format!("omoi-{}-{name}", uuid::Uuid::now_v7()))
}

/// Quotes `s` as one POSIX shell word.
pub(crate) fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

async fn read_and_remove(p: &Path, what: &str) -> Result<Vec<u8>, GitError> {
    let bytes = tokio::fs::read(p).await.map_err(|e| GitError {
        args: what.into(),
        status: "read".into(),
        stderr: e.to_string(),
    });
    let _ = tokio::fs::remove_file(p).await;
    bytes
}
