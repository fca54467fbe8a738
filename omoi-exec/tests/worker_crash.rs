//! Kill/crash recovery across processes: a worker process killed with SIGKILL mid-task loses
//! its lease, and a second worker process completes the task. Both share one SQLite file.
//!
//! The test binary re-executes itself as the worker processes (the `worker_process` test is a
//! no-op unless `OMOI_CRASH_ROLE` is set).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use omoi_core::config::QueueConfig;
use omoi_core::{
    BackoffPolicy, Cursor, Event, EventStore, NewTask, SystemClock, Task, TaskFilter, TaskState, TaskStore,
};
use omoi_exec::worker::{ExecContext, ExecError, TaskExecutor, TaskOutput, Worker, WorkerConfig};
use omoi_store::SqliteStore;
use serde_json::json;
use tokio_util::sync::CancellationToken;

const ROLE: &str = "OMOI_CRASH_ROLE";
const DB: &str = "OMOI_CRASH_DB";

/// Hangs (the process will be killed) or finishes at once, by role.
struct ByRole(String);

#[async_trait]
impl TaskExecutor for ByRole {
    async fn execute(&self, _task: &Task, ctx: &ExecContext) -> Result<TaskOutput, ExecError> {
        if self.0 == "hang" {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        Ok(TaskOutput { result: json!({ "role": self.0, "agent": ctx.agent_id.to_string() }), ..TaskOutput::default() })
    }
}

/// The worker process entry point (a no-op in a normal test run).
#[test]
fn worker_process() {
    let (Ok(role), Ok(db)) = (std::env::var(ROLE), std::env::var(DB)) else { return };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async move {
        let store = SqliteStore::open(&db).await.expect("open the shared database");
        let q = QueueConfig {
            lease_ttl: Duration::from_secs(2),
            lease_renew_every: Duration::from_millis(500),
            poll_interval: Duration::from_millis(100),
            reclaim_interval: Duration::from_millis(200),
            ..QueueConfig::default()
        };
        let worker = Worker::new(
            Arc::new(store.clone()),
            Arc::new(store.clone()),
            Arc::new(ByRole(role.clone())),
            Arc::new(SystemClock),
            WorkerConfig::new(format!("crash-{role}"), 1, &q),
        );
        let stop = CancellationToken::new();
        let run = tokio::spawn({
            let stop = stop.clone();
            async move { worker.run(stop).await }
        });
        // The finishing worker exits once the queue is drained; the hanging one is killed.
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let done =
                store.list_tasks(&TaskFilter::default()).await.unwrap().iter().all(|t| t.state == TaskState::Completed);
            if done && role != "hang" {
                break;
            }
        }
        stop.cancel();
        run.await.unwrap().unwrap();
    });
}

fn spawn_worker(role: &str, db: &Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "worker_process", "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .env(DB, db)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn worker process")
}

async fn wait_until(store: &SqliteStore, what: &str, want: impl Fn(&Task) -> bool) -> Task {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let tasks = store.list_tasks(&TaskFilter::default()).await.unwrap();
        if let Some(t) = tasks.into_iter().find(|t| want(t)) {
            return t;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_killed_with_sigkill_loses_its_lease_and_a_second_process_completes_the_task() {
    let dir = tempfile::tempdir().unwrap();
    let db: PathBuf = dir.path().join("queue.db");
    let store = SqliteStore::open(&db).await.unwrap();
    let task = NewTask::new("survive a crash").backoff(BackoffPolicy::fixed(
        Duration::from_millis(100),
        1.0,
        Duration::from_millis(100),
    ));
    store.insert_tasks(vec![task.clone()]).await.unwrap();

    let mut first = spawn_worker("hang", &db);
    let running = wait_until(&store, "the first worker to start the task", |t| t.state == TaskState::Running).await;
    let first_holder = running.lease.unwrap().holder;
    first.kill().expect("SIGKILL the first worker");
    let status = first.wait().unwrap();
    assert!(!status.success(), "killed, not exited: {status:?}");
    assert_eq!(
        store.get_task(task.id).await.unwrap().state,
        TaskState::Running,
        "the dead worker still holds the lease"
    );

    let mut second = spawn_worker("finish", &db);
    let done = wait_until(&store, "the second worker to complete the task", |t| t.state == TaskState::Completed).await;
    assert!(second.wait().unwrap().success());
    assert_eq!(done.attempts, 2, "the lost attempt counts");
    assert_eq!(done.result.as_ref().unwrap()["role"], "finish");
    let events = store.read_events(Cursor::START, 1000).await.unwrap();
    let expired: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.event {
            Event::TaskLeaseExpired { holder, .. } => Some(*holder),
            _ => None,
        })
        .collect();
    assert_eq!(expired, vec![first_holder], "the dead holder's lease expired");
    let completed_by = events.iter().find_map(|e| match &e.event {
        Event::TaskCompleted { holder, .. } => Some(*holder),
        _ => None,
    });
    assert!(completed_by.is_some_and(|h| h != first_holder));
}
