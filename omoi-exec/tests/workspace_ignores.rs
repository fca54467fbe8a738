//! `Workspace::commit_all` honours `.gitignore` and never commits build artifacts, on the
//! local sandbox.

use omoi_core::{SandboxProvider, SandboxSpec, WorkspacePath};
use omoi_exec::git::{GitRepo, Workspace};
use omoi_sandbox::LocalSandboxProvider;

async fn committed_files(repo: &GitRepo, branch: &str) -> Vec<String> {
    let out = repo.run(&["ls-tree", "-r", "--name-only", branch]).await.unwrap();
    out.lines().map(str::to_owned).collect()
}

async fn commit_in_workspace(origin: &GitRepo, files: &[(&str, &str)]) -> Vec<String> {
    let provider = LocalSandboxProvider::temp().unwrap();
    let sandbox = provider.create(SandboxSpec::default()).await.unwrap();
    let ws = Workspace::prepare(sandbox.as_ref(), Some(origin), "main", "omoi/t1").await.unwrap();
    for (path, text) in files {
        sandbox.write_file(&WorkspacePath::parse(path).unwrap(), text.as_bytes()).await.unwrap();
    }
    ws.commit_all("work").await.unwrap().expect("something to commit");
    ws.export_to(origin).await.unwrap();
    sandbox.destroy().await.unwrap();
    committed_files(origin, "omoi/t1").await
}

#[tokio::test]
async fn commit_all_never_commits_build_artifacts_of_a_repository_without_gitignore() {
    let dir = tempfile::tempdir().unwrap();
    let origin = GitRepo::init(dir.path()).await.unwrap();
    let files = commit_in_workspace(
        &origin,
        &[
            ("src/app.py", "print('hi')\n"),
            ("src/__pycache__/app.cpython-312.pyc", "bytecode"),
            ("lib/stale.pyc", "bytecode"),
            ("target/debug/app", "binary"),
            ("web/node_modules/left-pad/index.js", "module.exports = 1"),
            (".pytest_cache/v/cache/lastfailed", "{}"),
            ("Cargo.toml", "[package]\n"),
        ],
    )
    .await;
    assert_eq!(files, ["Cargo.toml", "src/app.py"]);
}

#[tokio::test]
async fn commit_all_honours_the_repository_gitignore_and_its_negations() {
    let dir = tempfile::tempdir().unwrap();
    tokio::fs::write(dir.path().join(".gitignore"), "secrets.env\n!target/\n").await.unwrap();
    let origin = GitRepo::init(dir.path()).await.unwrap();
    let files = commit_in_workspace(
        &origin,
        &[("secrets.env", "TOKEN=1"), ("main.rs", "fn main() {}"), ("target/keep.txt", "wanted by this repo")],
    )
    .await;
    assert_eq!(files, [".gitignore", "main.rs", "target/keep.txt"]);
}
