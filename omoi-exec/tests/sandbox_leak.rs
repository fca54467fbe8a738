//! The agent executor destroys its sandbox on every path — success, failure, cancellation, an
//! abandoned execution (lease lost, shutdown past the grace period), a panic — on the local and
//! Docker adapters (sandboxes counted before and after), and, with faults injected by mockall,
//! when the sandbox fails at any step or its destroy fails.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use omoi_core::testkit::{ScriptedLlm, service_url};
use omoi_core::{
    AgentId, CompletionRequest, CompletionResponse, ExecOutput, ExecRequest, ExecutionMode, FencingToken, Lease,
    LlmClient, LlmError, NewTask, Sandbox, SandboxError, SandboxId, SandboxProvider, SandboxSpec, SandboxStatus,
    SystemClock, Task, TaskStore, WorkspacePath,
};
use omoi_exec::agent::AgentExecutor;
use omoi_exec::worker::{ExecContext, TaskExecutor};
use omoi_sandbox::{DockerSandboxProvider, LocalSandboxProvider};
use omoi_store::InMemoryStore;
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// A model that never answers (and says when it was first asked).
#[derive(Default)]
struct Hanging {
    asked: std::sync::atomic::AtomicBool,
}

impl Hanging {
    /// Waits (bounded) until the model was asked: the sandbox is ready and the run under way.
    async fn until_asked(&self) {
        for _ in 0..600 {
            if self.asked.load(Ordering::SeqCst) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the model was never asked");
    }
}

#[async_trait]
impl LlmClient for Hanging {
    async fn complete(&self, _: &CompletionRequest) -> Result<CompletionResponse, LlmError> {
        self.asked.store(true, Ordering::SeqCst);
        std::future::pending().await
    }
    fn model(&self) -> &str {
        "hanging"
    }
}

/// A model whose client panics.
struct Panicking;

#[async_trait]
impl LlmClient for Panicking {
    async fn complete(&self, _: &CompletionRequest) -> Result<CompletionResponse, LlmError> {
        panic!("the model client exploded")
    }
    fn model(&self) -> &str {
        "panicking"
    }
}

/// Where sandboxes are made and how many are alive.
enum Backend {
    Local { provider: LocalSandboxProvider, _root: tempfile::TempDir },
    Docker { provider: DockerSandboxProvider, docker: bollard::Docker, label: String },
}

impl Backend {
    fn local() -> Self {
        let root = tempfile::tempdir().unwrap();
        Backend::Local { provider: LocalSandboxProvider::new(root.path()), _root: root }
    }

    async fn docker() -> Option<Self> {
        let host = service_url("DOCKER_HOST")?;
        let image = service_url("OMOI_TEST_DOCKER_IMAGE")?;
        let provider = DockerSandboxProvider::builder().host(host.clone()).image(image).build().unwrap();
        let docker =
            bollard::Docker::connect_with_unix(host.trim_start_matches("unix://"), 60, bollard::API_DEFAULT_VERSION)
                .unwrap()
                .negotiate_version()
                .await
                .unwrap();
        Some(Backend::Docker { provider, docker, label: uuid::Uuid::now_v7().to_string() })
    }

    fn provider(&self) -> Arc<dyn SandboxProvider> {
        match self {
            Backend::Local { provider, .. } => Arc::new(provider.clone()),
            Backend::Docker { provider, .. } => Arc::new(provider.clone()),
        }
    }

    fn spec(&self) -> SandboxSpec {
        let mut spec = SandboxSpec::default();
        if let Backend::Docker { label, .. } = self {
            spec.labels.insert("omoi.test-leak".into(), label.clone());
        }
        spec
    }

    /// Sandboxes alive: workspace directories, or containers carrying this test's label.
    async fn live(&self) -> usize {
        match self {
            Backend::Local { provider, .. } => match std::fs::read_dir(provider.root()) {
                Ok(dir) => dir.count(),
                Err(_) => 0,
            },
            Backend::Docker { docker, label, .. } => {
                let filters =
                    std::collections::HashMap::from([("label".to_owned(), vec![format!("omoi.test-leak={label}")])]);
                let options = bollard::query_parameters::ListContainersOptions {
                    all: true,
                    filters: Some(filters),
                    ..Default::default()
                };
                docker.list_containers(Some(options)).await.unwrap().len()
            }
        }
    }

    fn executor(&self, llm: Arc<dyn LlmClient>, store: &InMemoryStore) -> AgentExecutor {
        AgentExecutor::new(
            llm,
            self.provider(),
            Arc::new(store.clone()),
            Arc::new(store.clone()),
            Arc::new(SystemClock),
        )
        .with_sandbox_spec(self.spec())
    }
}

fn ctx() -> ExecContext {
    ExecContext {
        agent_id: AgentId::new(),
        lease: Lease { holder: AgentId::new(), token: FencingToken(1), expires_at: chrono::Utc::now() },
        cancel: CancellationToken::new(),
    }
}

async fn task(store: &InMemoryStore) -> Task {
    let t = NewTask::new("look around").mode(ExecutionMode::Exploration);
    store.insert_tasks(vec![t.clone()]).await.unwrap();
    store.get_task(t.id).await.unwrap()
}

async fn no_leak_on_success(b: Backend) {
    let store = InMemoryStore::new();
    let llm = Arc::new(ScriptedLlm::new());
    llm.push_tool_call("finish", json!({"summary": "done"}));
    let out = b.executor(llm, &store).execute(&task(&store).await, &ctx()).await;
    assert!(out.is_ok(), "{out:?}");
    assert_eq!(b.live().await, 0, "the sandbox leaked after a success");
}

async fn no_leak_on_failure(b: Backend) {
    let store = InMemoryStore::new();
    let llm = Arc::new(ScriptedLlm::new());
    llm.push_error(LlmError::Server { status: 500, message: "down".into() });
    let out = b.executor(llm, &store).execute(&task(&store).await, &ctx()).await;
    assert!(out.is_err());
    assert_eq!(b.live().await, 0, "the sandbox leaked after a failure");
}

async fn no_leak_on_cancellation(b: Backend) {
    let store = InMemoryStore::new();
    let llm = Arc::new(Hanging::default());
    let executor = b.executor(llm.clone(), &store);
    let (t, ctx) = (task(&store).await, ctx());
    let cancel = ctx.cancel.clone();
    let run = executor.execute(&t, &ctx);
    let cancel_when_live = async {
        llm.until_asked().await;
        cancel.cancel();
        std::future::pending::<()>().await
    };
    let out = tokio::select! { out = run => out, () = cancel_when_live => unreachable!() };
    assert!(out.unwrap_err().retryable, "a cancelled execution is retryable");
    assert_eq!(b.live().await, 0, "the sandbox leaked after a cancellation");
}

/// What the worker does when the lease is lost or shutdown passes its grace period: it drops
/// the execution. The guard destroys the sandbox; the worker waits for that before stopping.
async fn no_leak_when_abandoned_as_on_a_lost_lease_or_shutdown_past_grace(b: Backend) {
    let store = InMemoryStore::new();
    let llm = Arc::new(Hanging::default());
    let executor = b.executor(llm.clone(), &store);
    let (t, ctx) = (task(&store).await, ctx());
    let run = Box::pin(executor.execute(&t, &ctx));
    tokio::select! {
        out = run => panic!("a hanging execution returned: {out:?}"),
        () = llm.until_asked() => {}
    }
    assert_eq!(b.live().await, 1);
    executor.wait_for_cleanup().await;
    assert_eq!(b.live().await, 0, "the sandbox of an abandoned execution leaked");
}

async fn no_leak_on_a_panic_in_the_executor(b: Backend) {
    let store = InMemoryStore::new();
    let executor = b.executor(Arc::new(Panicking), &store);
    let t = task(&store).await;
    let runner = executor.clone();
    let joined = tokio::spawn(async move { runner.execute(&t, &ctx()).await }).await;
    assert!(joined.unwrap_err().is_panic());
    executor.wait_for_cleanup().await;
    assert_eq!(b.live().await, 0, "the sandbox leaked after a panic in the executor");
}

macro_rules! on_both {
    ($($path:ident),*) => {
        mod local {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $path() {
                super::$path(super::Backend::local()).await;
            })*
        }
        mod docker {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $path() {
                let Some(b) = super::Backend::docker().await else { return };
                super::$path(b).await;
            })*
        }
    };
}

on_both!(
    no_leak_on_success,
    no_leak_on_failure,
    no_leak_on_cancellation,
    no_leak_when_abandoned_as_on_a_lost_lease_or_shutdown_past_grace,
    no_leak_on_a_panic_in_the_executor
);

mockall::mock! {
    Sb {}
    #[async_trait]
    impl Sandbox for Sb {
        fn id(&self) -> SandboxId;
        async fn exec(&self, request: ExecRequest) -> Result<ExecOutput, SandboxError>;
        async fn write_file(&self, path: &WorkspacePath, contents: &[u8]) -> Result<(), SandboxError>;
        async fn read_file(&self, path: &WorkspacePath) -> Result<Vec<u8>, SandboxError>;
        async fn status(&self) -> Result<SandboxStatus, SandboxError>;
        async fn destroy(&self) -> Result<(), SandboxError>;
    }
}

mockall::mock! {
    Provider {}
    #[async_trait]
    impl SandboxProvider for Provider {
        fn name(&self) -> &'static str;
        async fn create(&self, spec: SandboxSpec) -> Result<Arc<dyn Sandbox>, SandboxError>;
    }
}

/// A sandbox whose `fail_at`-th exec fails (0: none), whose destroy fails when `destroy_fails`,
/// and whose destroy must be called exactly once.
fn faulty(fail_at: usize, destroy_fails: bool) -> Arc<dyn Sandbox> {
    let mut sb = MockSb::new();
    let id = SandboxId::new();
    sb.expect_id().return_const(id);
    let calls = AtomicUsize::new(0);
    sb.expect_exec().returning(move |_| {
        if calls.fetch_add(1, Ordering::SeqCst) + 1 == fail_at {
            Err(SandboxError::Backend { provider: "mock", message: "injected failure".into() })
        } else {
            Ok(ExecOutput { exit_code: Some(0), ..ExecOutput::default() })
        }
    });
    sb.expect_status().returning(|| Ok(SandboxStatus::Running));
    sb.expect_destroy().times(1).returning(move || {
        if destroy_fails {
            Err(SandboxError::Unavailable { provider: "mock", message: "injected destroy failure".into() })
        } else {
            Ok(())
        }
    });
    Arc::new(sb)
}

fn provider_of(sandbox: Arc<dyn Sandbox>) -> Arc<dyn SandboxProvider> {
    let mut p = MockProvider::new();
    p.expect_name().return_const("mock");
    p.expect_create().times(1).returning(move |_| Ok(Arc::clone(&sandbox)));
    Arc::new(p)
}

#[tokio::test]
async fn leak_fault_injected_a_sandbox_failing_at_any_step_is_destroyed_exactly_once() {
    // The workspace setup makes four execs, the run's end one more: fail at each in turn.
    for fail_at in 1..=5 {
        let store = InMemoryStore::new();
        let llm = Arc::new(ScriptedLlm::new());
        llm.push_tool_call("finish", json!({"summary": "done"}));
        let sandbox = faulty(fail_at, false);
        let executor = AgentExecutor::new(
            llm,
            provider_of(Arc::clone(&sandbox)),
            Arc::new(store.clone()),
            Arc::new(store.clone()),
            Arc::new(SystemClock),
        );
        let _ = executor.execute(&task(&store).await, &ctx()).await;
        drop(executor);
        // The mock checks `destroy` was called exactly once when its last handle drops.
        assert_eq!(Arc::strong_count(&sandbox), 1, "step {fail_at}: the executor kept the sandbox");
        drop(sandbox);
    }
}

#[tokio::test]
async fn leak_fault_injected_a_failing_destroy_does_not_change_the_outcome() {
    let store = InMemoryStore::new();
    let llm = Arc::new(ScriptedLlm::new());
    llm.push_tool_call("finish", json!({"summary": "done"}));
    let sandbox = faulty(0, true);
    let executor = AgentExecutor::new(
        llm,
        provider_of(Arc::clone(&sandbox)),
        Arc::new(store.clone()),
        Arc::new(store.clone()),
        Arc::new(SystemClock),
    );
    let out = executor.execute(&task(&store).await, &ctx()).await.expect("the task's own outcome stands");
    assert_eq!(out.result["summary"], "done");
    drop(executor);
    drop(sandbox);
}

#[tokio::test]
async fn leak_fault_injected_a_creation_that_fails_is_a_retryable_error_with_nothing_to_destroy() {
    let store = InMemoryStore::new();
    let mut p = MockProvider::new();
    p.expect_name().return_const("mock");
    p.expect_create()
        .times(1)
        .returning(|_| Err(SandboxError::CreateFailed { step: "setup", message: "injected".into() }));
    let executor = AgentExecutor::new(
        Arc::new(ScriptedLlm::new()),
        Arc::new(p),
        Arc::new(store.clone()),
        Arc::new(store.clone()),
        Arc::new(SystemClock),
    );
    let err = executor.execute(&task(&store).await, &ctx()).await.unwrap_err();
    assert!(err.retryable && err.to_string().contains("setup"), "{err}");
}
