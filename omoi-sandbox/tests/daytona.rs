//! The Daytona adapter against a local fake of Daytona's documented API subset (the fake
//! really runs the commands), plus its error, retry and saga behaviour.

mod daytona_fake;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use daytona_fake::{FakeDaytona, Start};
use omoi_core::testkit::ManualClock;
use omoi_core::{
    ExecRequest, NetworkPolicy, ResourceLimits, SandboxError, SandboxProvider, SandboxSpec, SandboxStatus,
};
use omoi_sandbox::{DaytonaSandboxProvider, DaytonaSandboxProviderBuilder};

const KEY: &str = "dtn_test_key";

fn builder_for(fake: &FakeDaytona) -> DaytonaSandboxProviderBuilder {
    DaytonaSandboxProvider::builder()
        .api_url(fake.api_url())
        .toolbox_url(fake.toolbox_url())
        .api_key(KEY)
        .start_timeout(Duration::from_secs(20))
}

async fn provider(_clock: Arc<ManualClock>) -> Option<Arc<DaytonaSandboxProvider>> {
    Some(Arc::new(builder_for(&FakeDaytona::shared(KEY)).build().expect("daytona provider")))
}

omoi_core::sandbox_suite!(provider);

fn labelled(key: &str, value: &str) -> SandboxSpec {
    SandboxSpec { labels: BTreeMap::from([(key.to_owned(), value.to_owned())]), ..SandboxSpec::default() }
}

#[tokio::test]
async fn create_sends_the_documented_request_and_destroy_deletes() {
    let fake = FakeDaytona::start(KEY).await;
    let provider = builder_for(&fake).organization_id(Some("org-7")).snapshot("omoi-snap").build().unwrap();
    let spec = SandboxSpec {
        env: BTreeMap::from([("FROM_SPEC".to_owned(), "yes".to_owned())]),
        limits: ResourceLimits { cpus: Some(2.0), memory_bytes: Some(3 << 30), pids: None },
        network: NetworkPolicy::None,
        labels: BTreeMap::from([("omoi.task".to_owned(), "t-9".to_owned())]),
        ..SandboxSpec::default()
    };
    let sandbox = provider.create(spec).await.unwrap();
    let bodies = fake.create_bodies();
    assert_eq!(bodies.len(), 1);
    let body = &bodies[0];
    assert_eq!(body["snapshot"], "omoi-snap");
    assert_eq!((body["cpu"].as_u64(), body["memory"].as_u64()), (Some(2), Some(3)));
    assert_eq!((body["networkBlockAll"].as_bool(), body["autoStopInterval"].as_u64()), (Some(true), Some(15)));
    assert_eq!(body["labels"]["omoi.sandbox"], sandbox.id().to_string());
    assert_eq!(body["labels"]["omoi.task"], "t-9");
    // The sandbox's environment is Daytona's to apply.
    assert_eq!(body["env"]["FROM_SPEC"], "yes");
    let out = sandbox.exec(ExecRequest::shell("printf %s \"$FROM_SPEC\"")).await.unwrap();
    assert_eq!(out.stdout_text(), "yes");

    let seen = fake.seen();
    assert!(seen.iter().all(|s| s.organization.as_deref() == Some("org-7")), "organization header on every call");
    let polls = seen.iter().filter(|s| s.method == "GET" && s.path.starts_with("/api/sandbox/")).count();
    assert!(polls >= 2, "waited for `started` ({polls} polls)");
    assert_eq!(fake.live_sandboxes().len(), 1);
    sandbox.destroy().await.unwrap();
    sandbox.destroy().await.unwrap();
    assert!(fake.live_sandboxes().is_empty());
    let deletes = fake.seen().iter().filter(|s| s.method == "DELETE").map(|s| s.status).collect::<Vec<_>>();
    assert_eq!(deletes, [200, 404], "the second destroy found it gone and was still fine");
    assert_eq!(sandbox.status().await.unwrap(), SandboxStatus::Destroyed);
}

#[tokio::test]
async fn a_wrong_api_key_is_a_permanent_error() {
    let fake = FakeDaytona::start(KEY).await;
    let provider = builder_for(&fake).api_key("not-the-key").build().unwrap();
    match provider.create(SandboxSpec::default()).await {
        Err(SandboxError::CreateFailed { step, message }) => {
            assert_eq!(step, "create_sandbox");
            assert!(message.contains("not authorized (401)"), "{message}");
        }
        other => panic!("expected CreateFailed, got {:?}", other.map(|s| s.id())),
    }
    assert_eq!(fake.seen().len(), 1, "an auth failure is not retried");
    assert!(fake.live_sandboxes().is_empty());

    // A key that stops working mid-life: status (idempotent, retried on 5xx) fails at once.
    let good = builder_for(&fake).build().unwrap().create(SandboxSpec::default()).await.unwrap();
    fake.fail_next(1, 403);
    match good.status().await {
        Err(e @ SandboxError::Backend { .. }) => assert!(!e.is_retryable() && e.to_string().contains("403")),
        other => panic!("expected a permanent error, got {other:?}"),
    }
    good.destroy().await.unwrap();
}

#[tokio::test]
async fn server_errors_are_retried_for_idempotent_calls_only() {
    let fake = FakeDaytona::start(KEY).await;
    let provider = builder_for(&fake).retries(3).build().unwrap();
    let sandbox = provider.create(SandboxSpec::default()).await.unwrap();

    let before = fake.seen().len();
    fake.fail_next(2, 500);
    assert_eq!(sandbox.status().await.unwrap(), SandboxStatus::Running);
    assert_eq!(fake.seen().len() - before, 3, "two failures, then success");

    fake.fail_next(10, 503);
    match sandbox.status().await {
        Err(e @ SandboxError::Unavailable { .. }) => assert!(e.is_retryable()),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    fake.clear_faults();

    let before = fake.seen().len();
    fake.fail_next(1, 502);
    match sandbox.exec(ExecRequest::shell("echo side-effect >> log")).await {
        Err(e @ SandboxError::Unavailable { .. }) => assert!(e.is_retryable()),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert_eq!(fake.seen().len() - before, 1, "execute is never retried");

    // Uploads and downloads are idempotent and survive transient failures.
    let path = omoi_core::WorkspacePath::parse("retry.txt").unwrap();
    fake.fail_next_on("/files/upload", 2, 500);
    sandbox.write_file(&path, b"once").await.unwrap();
    fake.fail_next_on("/files/download", 1, 503);
    assert_eq!(sandbox.read_file(&path).await.unwrap(), b"once");
    let statuses = |suffix: &str| {
        fake.seen().into_iter().filter(|s| s.path.ends_with(suffix)).map(|s| s.status).collect::<Vec<_>>()
    };
    assert_eq!(statuses("/files/upload"), [500, 500, 200]);
    assert_eq!(statuses("/files/download"), [503, 200]);
    // The path resolution before them runs a command, so a failure there is not retried.
    fake.fail_next_on("/process/execute", 1, 500);
    assert!(matches!(sandbox.write_file(&path, b"x").await, Err(SandboxError::Unavailable { .. })));
    assert_eq!(sandbox.read_file(&path).await.unwrap(), b"once");
    sandbox.destroy().await.unwrap();
}

#[tokio::test]
async fn slow_responses_time_out_as_retryable_errors() {
    let fake = FakeDaytona::start(KEY).await;
    let provider = builder_for(&fake).request_timeout(Duration::from_millis(300)).retries(1).build().unwrap();
    let sandbox = provider.create(SandboxSpec::default()).await.unwrap();
    fake.delay(Duration::from_secs(2));
    let started = Instant::now();
    match sandbox.status().await {
        Err(e @ SandboxError::Unavailable { .. }) => assert!(e.to_string().contains("timed out"), "{e}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(2), "two 300 ms attempts, not the server's 2 s");
    fake.clear_faults();
    sandbox.destroy().await.unwrap();
}

#[tokio::test]
async fn a_sandbox_that_never_starts_is_deleted() {
    let fake = FakeDaytona::start(KEY).await;
    fake.start_behaviour(Start::Never);
    let provider = builder_for(&fake).start_timeout(Duration::from_millis(800)).build().unwrap();
    match provider.create(labelled("case", "never")).await {
        Err(SandboxError::CreateFailed { step, message }) => {
            assert_eq!(step, "wait_started");
            assert!(message.contains("not started"), "{message}");
        }
        other => panic!("expected CreateFailed, got {:?}", other.map(|s| s.id())),
    }
    assert!(fake.live_sandboxes().is_empty(), "the compensation deleted it");
    assert!(fake.seen().iter().any(|s| s.method == "DELETE" && s.status == 200));
}

#[tokio::test]
async fn a_sandbox_in_error_state_is_deleted_with_the_reason() {
    let fake = FakeDaytona::start(KEY).await;
    fake.start_behaviour(Start::Error);
    match builder_for(&fake).build().unwrap().create(SandboxSpec::default()).await {
        Err(SandboxError::CreateFailed { step, message }) => {
            assert_eq!(step, "wait_started");
            assert!(message.contains("injected start failure"), "{message}");
        }
        other => panic!("expected CreateFailed, got {:?}", other.map(|s| s.id())),
    }
    assert!(fake.live_sandboxes().is_empty());
}

#[tokio::test]
async fn a_failing_workspace_preparation_deletes_the_sandbox() {
    let fake = FakeDaytona::start(KEY).await;
    let provider = builder_for(&fake).workspace_dir("/proc/omoi-cannot-create/ws").build().unwrap();
    match provider.create(SandboxSpec::default()).await {
        Err(SandboxError::CreateFailed { step, .. }) => assert_eq!(step, "prepare_workspace"),
        other => panic!("expected CreateFailed, got {:?}", other.map(|s| s.id())),
    }
    assert!(fake.live_sandboxes().is_empty());
}

#[tokio::test]
async fn a_sandbox_deleted_elsewhere_reports_destroyed() {
    let fake = FakeDaytona::start(KEY).await;
    let sandbox = builder_for(&fake).build().unwrap().create(SandboxSpec::default()).await.unwrap();
    let remote = fake.live_sandboxes().pop().unwrap();
    fake.delete_directly(&remote);
    assert_eq!(sandbox.status().await.unwrap(), SandboxStatus::Destroyed);
    assert!(matches!(sandbox.exec(ExecRequest::shell("true")).await, Err(SandboxError::Destroyed(_))));
    sandbox.destroy().await.unwrap();
}

#[tokio::test]
async fn large_commands_travel_as_an_uploaded_script_that_removes_itself() {
    let fake = FakeDaytona::start(KEY).await;
    let sandbox = builder_for(&fake).build().unwrap().create(SandboxSpec::default()).await.unwrap();
    let stdin = vec![b'z'; 300_000];
    let out = sandbox.exec(ExecRequest::shell("wc -c | tr -d ' '").stdin(stdin)).await.unwrap();
    assert_eq!(out.stdout_text().trim(), "300000");
    let uploads: Vec<_> = fake.seen().into_iter().filter(|s| s.path.ends_with("/files/upload")).collect();
    assert_eq!(uploads.len(), 1);
    let script = uploads[0].query.trim_start_matches("path=").replace("%2F", "/");
    assert!(script.starts_with("/tmp/omoi-exec-") && script.ends_with(".sh"), "{script}");
    assert!(!std::path::Path::new(&script).exists(), "the script deleted itself");
    let small = sandbox.exec(ExecRequest::shell("echo small").stdin(b"x".to_vec())).await.unwrap();
    assert_eq!(small.stdout_text(), "small\n");
    assert_eq!(fake.seen().iter().filter(|s| s.path.ends_with("/files/upload")).count(), 1, "small ones go inline");
    sandbox.destroy().await.unwrap();
}
