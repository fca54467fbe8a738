//! The local process adapter against the sandbox conformance suite, plus its own behaviour.

use std::sync::Arc;
use std::time::Duration;

use omoi_core::testkit::ManualClock;
use omoi_core::{ExecRequest, SandboxProvider, SandboxSpec, SandboxStatus};
use omoi_sandbox::LocalSandboxProvider;

async fn provider(_clock: Arc<ManualClock>) -> Option<Arc<LocalSandboxProvider>> {
    Some(Arc::new(LocalSandboxProvider::temp().expect("temporary root")))
}

omoi_core::sandbox_suite!(provider);
omoi_core::sandbox_read_only_suite!(provider);

fn local() -> LocalSandboxProvider {
    LocalSandboxProvider::temp().expect("temporary root")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destroy_kills_running_commands_and_removes_the_workspace() {
    let provider = local();
    let sandbox = provider.create(SandboxSpec::default()).await.unwrap();
    let workspace = provider.root().canonicalize().unwrap().join(sandbox.id().to_string());
    assert!(workspace.is_dir());
    let runner = Arc::clone(&sandbox);
    let long = tokio::spawn(async move {
        runner
            .exec(ExecRequest::shell("sleep 0.2; echo x > still-here; sleep 120").timeout(Duration::from_secs(120)))
            .await
    });
    tokio::time::sleep(Duration::from_millis(600)).await;
    sandbox.destroy().await.unwrap();
    let out = tokio::time::timeout(Duration::from_secs(10), long).await.expect("destroy must end running commands");
    let out = out.unwrap().unwrap();
    assert_eq!(out.exit_code, None, "killed by SIGKILL, not exited: {out:?}");
    assert!(!workspace.exists());
    assert_eq!(sandbox.status().await.unwrap(), SandboxStatus::Destroyed);
}

#[tokio::test]
async fn commands_see_only_path_home_and_the_given_environment() {
    // `set_var` is unsafe in edition 2024; cargo sets this one for every test binary.
    assert!(std::env::var("CARGO_PKG_NAME").is_ok(), "cargo sets CARGO_PKG_NAME for tests");
    let sandbox = local().create(SandboxSpec::default()).await.unwrap();
    let out =
        sandbox.exec(ExecRequest::shell("printf '%s|' \"${CARGO_PKG_NAME-unset}\"; test -n \"$PATH\"")).await.unwrap();
    assert_eq!((out.exit_code, out.stdout_text()), (Some(0), "unset|".to_owned()));

    let inheriting = local().inherit_env(true).create(SandboxSpec::default()).await.unwrap();
    let out = inheriting.exec(ExecRequest::shell("printf %s \"$CARGO_PKG_NAME\"")).await.unwrap();
    assert_eq!(out.stdout_text(), "omoi-sandbox");
}

#[tokio::test]
async fn a_temporary_root_is_removed_when_the_provider_and_its_sandboxes_are_gone() {
    let provider = local();
    let root = provider.root().to_path_buf();
    let sandbox = provider.create(SandboxSpec::default()).await.unwrap();
    drop(provider);
    assert!(root.is_dir(), "a live sandbox keeps the root");
    drop(sandbox);
    assert!(!root.exists());
}

#[tokio::test]
async fn background_jobs_left_by_a_finished_command_are_killed() {
    let sandbox = local().create(SandboxSpec::default()).await.unwrap();
    let out = sandbox.exec(ExecRequest::shell("(sleep 1; echo late > marker) & echo done")).await.unwrap();
    assert_eq!((out.exit_code, out.stdout_text()), (Some(0), "done\n".to_owned()));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let marker = omoi_core::WorkspacePath::parse("marker").unwrap();
    assert!(matches!(sandbox.read_file(&marker).await, Err(omoi_core::SandboxError::FileNotFound(_))));
    sandbox.destroy().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_exec_kills_its_process_tree() {
    let sandbox = local().create(SandboxSpec::default()).await.unwrap();
    let req = ExecRequest::shell("(sleep 1.5; echo late > marker) & sleep 300").timeout(Duration::from_secs(600));
    assert!(tokio::time::timeout(Duration::from_millis(500), sandbox.exec(req)).await.is_err());
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let marker = omoi_core::WorkspacePath::parse("marker").unwrap();
    assert!(matches!(sandbox.read_file(&marker).await, Err(omoi_core::SandboxError::FileNotFound(_))));
    sandbox.destroy().await.unwrap();
}
