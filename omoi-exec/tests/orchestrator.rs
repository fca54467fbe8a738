//! The `Orchestrator` and `Worker` builders: a queue with workers in a few lines, settling that
//! never hangs on dead letters, and settings refused when built.

use std::sync::Arc;
use std::time::Duration;

use omoi_core::config::{OmoiConfig, QueueConfig};
use omoi_core::testkit::ScriptedLlm;
use omoi_core::{BackoffPolicy, NewTask, TaskState, TaskStore};
use omoi_exec::orchestrator::is_settled;
use omoi_exec::{BuildError, ExecError, Orchestrator, OrchestratorError, Worker, executor_fn};
use omoi_sandbox::LocalSandboxProvider;
use omoi_store::{InMemoryStore, SqliteStore};
use serde_json::json;

fn quick_queue() -> OmoiConfig {
    let mut cfg = OmoiConfig::default();
    cfg.queue.poll_interval = Duration::from_millis(20);
    cfg.queue.reclaim_interval = Duration::from_millis(100);
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closure_queue_drains_a_graph_and_reports_every_result() {
    let orch = Orchestrator::builder(InMemoryStore::new())
        .config(quick_queue())
        .executor(executor_fn(|task, _ctx| async move { Ok(json!({ "echo": task.def.title })) }))
        .workers(2)
        .concurrency(4)
        .build()
        .unwrap();
    let root = NewTask::new("root");
    let mut batch = vec![root.clone()];
    for i in 0..20 {
        batch.push(NewTask::new(format!("leaf {i}")).depends_on([root.id]));
    }
    let ids = orch.submit(batch).await.unwrap();
    let report = orch.drain().await.unwrap();
    assert_eq!(report.tasks.len(), 21);
    assert!(report.all_completed(), "{:?}", report.unfinished().collect::<Vec<_>>());
    for (t, id) in report.tasks.iter().zip(&ids) {
        assert_eq!(t.id, *id);
        assert_eq!(t.result.as_ref().unwrap()["echo"], json!(t.title));
    }
    let stats = report.workers.expect("drain reports the workers");
    assert_eq!(stats.completed, 21);
    assert!(is_settled(&report.counts));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_until_settled_returns_when_a_dead_letter_blocks_its_dependents() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("omoi.db")).await.unwrap();
    let orch = Orchestrator::builder(store.clone())
        .config(quick_queue())
        .executor(executor_fn(|task, _ctx| async move {
            if task.def.title == "doomed" { Err(ExecError::permanent("cannot be done")) } else { Ok(json!(null)) }
        }))
        .build()
        .unwrap();
    let doomed = NewTask::new("doomed").backoff(BackoffPolicy::fixed(Duration::ZERO, 1.0, Duration::ZERO));
    let after = NewTask::new("after").depends_on([doomed.id]);
    let beside = NewTask::new("beside");
    orch.submit(vec![doomed.clone(), after.clone(), beside]).await.unwrap();
    let report = tokio::time::timeout(Duration::from_secs(30), orch.run_until_settled())
        .await
        .expect("settles instead of hanging")
        .unwrap();
    let state = |id| report.tasks.iter().find(|t| t.id == id).unwrap().state;
    assert_eq!(state(doomed.id), TaskState::Failed);
    assert_eq!(state(after.id), TaskState::Blocked);
    assert_eq!(report.unfinished().count(), 2);
    assert_eq!(report.tasks.iter().find(|t| t.id == doomed.id).unwrap().error.as_deref(), Some("cannot be done"));
    orch.shutdown().await.unwrap();
}

#[test]
fn settings_are_refused_when_built_with_the_field_named() {
    let exec = || executor_fn(|_task, _ctx| async move { Ok(()) });
    let field = |r: Result<Orchestrator, BuildError>| match r {
        Err(BuildError::Config(e)) => e.field,
        other => panic!("expected a config error, got {other:?}"),
    };
    let store = InMemoryStore::new();
    assert_eq!(field(Orchestrator::builder(store.clone()).executor(exec()).workers(0).build()), "orchestrator.workers");
    assert_eq!(
        field(Orchestrator::builder(store.clone()).executor(exec()).concurrency(0).build()),
        "worker.concurrency"
    );
    let mut cfg = OmoiConfig::default();
    cfg.queue.lease_renew_every = cfg.queue.lease_ttl * 2 / 3; // shorter than the lease, but not well inside
    assert_eq!(
        field(Orchestrator::builder(store.clone()).executor(exec()).config(cfg).build()),
        "queue.lease_renew_every"
    );
    let mut cfg = OmoiConfig::default();
    cfg.queue.max_attempts = 0;
    assert_eq!(field(Orchestrator::builder(store.clone()).executor(exec()).config(cfg).build()), "queue.max_attempts");
    assert!(matches!(Orchestrator::builder(store.clone()).build(), Err(BuildError::Missing(..))));

    let q = QueueConfig { lease_renew_every: Duration::ZERO, ..QueueConfig::default() };
    let w = Worker::builder(store.clone()).executor(exec()).queue_config(q).build();
    assert!(matches!(w, Err(BuildError::Config(e)) if e.field == "queue.lease_renew_every"));
    assert!(matches!(Worker::builder(store).build(), Err(BuildError::Missing(..))));
}

#[tokio::test]
async fn empty_ideas_and_titles_are_refused_before_any_model_call() {
    let llm = Arc::new(ScriptedLlm::new());
    let dir = tempfile::tempdir().unwrap();
    let orch = Orchestrator::builder(InMemoryStore::new())
        .agents(llm.clone(), Arc::new(LocalSandboxProvider::new(dir.path())))
        .build()
        .unwrap();
    assert!(matches!(orch.submit_spec("  \n\t ").await, Err(OrchestratorError::InvalidInput(_))));
    assert!(matches!(orch.submit(vec![NewTask::new("   ")]).await, Err(OrchestratorError::InvalidInput(_))));
    assert!(llm.requests().is_empty(), "no model call was made");
    assert_eq!(orch.tasks().count_tasks(None).await.unwrap().values().sum::<u64>(), 0, "nothing was stored");
    assert!(matches!(orch.merge().await, Err(OrchestratorError::NotConfigured(_))));
}

#[tokio::test]
async fn a_closure_worker_runs_until_any_future_resolves() {
    let store = InMemoryStore::new();
    store.insert_tasks((0..5).map(|i| NewTask::new(format!("t{i}"))).collect()).await.unwrap();
    let worker = Worker::builder(store.clone())
        .concurrency(2)
        .queue_config(QueueConfig { poll_interval: Duration::from_millis(10), ..QueueConfig::default() })
        .executor(executor_fn(|task, ctx| async move { Ok(json!({ "by": ctx.agent_id, "t": task.def.title })) }))
        .build()
        .unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let watcher = {
        let store = store.clone();
        tokio::spawn(async move {
            while !is_settled(&store.count_tasks(None).await.unwrap()) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let _ = tx.send(());
        })
    };
    let stats = worker
        .run_until(async move {
            let _ = rx.await;
        })
        .await
        .unwrap();
    watcher.await.unwrap();
    assert_eq!(stats.completed, 5);
}

#[tokio::test]
async fn a_planning_only_orchestrator_refuses_to_run_tasks_with_a_clear_error() {
    let orch = Orchestrator::builder(InMemoryStore::new()).spec_model(Arc::new(ScriptedLlm::new())).build().unwrap();
    assert!(orch.worker_ids().is_empty());
    match orch.run_until_settled().await {
        Err(OrchestratorError::NotConfigured(why)) => assert!(why.contains("no executor"), "{why}"),
        other => panic!("expected NotConfigured, got {other:?}"),
    }
}
