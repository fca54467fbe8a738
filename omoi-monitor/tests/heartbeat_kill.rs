//! Heartbeat recovery across real processes on Postgres: a worker process holding a task is
//! killed with SIGKILL; the heartbeat monitor (this process) fails its agent within the configured
//! bound and reclaims the task at once, long before its lease would lapse; a second worker process
//! completes it. Nothing is lost and nothing is completed twice.
//!
//! The test binary re-executes itself as the worker processes (`worker_process` is a no-op unless
//! `OMOI_HB_ROLE` is set).

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use omoi_core::config::{HeartbeatConfig, QueueConfig};
use omoi_core::{
    AgentStatus, AgentStore, BackoffPolicy, Cursor, Event, EventStore, NewTask, SystemClock, Task, TaskFilter,
    TaskState, TaskStore,
};
use omoi_exec::worker::{ExecContext, ExecError, TaskExecutor, TaskOutput, Worker, WorkerConfig};
use omoi_monitor::HeartbeatMonitor;
use omoi_store::PostgresStore;
use serde_json::json;
use tokio_util::sync::CancellationToken;

const ROLE: &str = "OMOI_HB_ROLE";
const SCHEMA: &str = "OMOI_HB_SCHEMA";
/// The lease is long, so only the monitor can give the task back in time.
const LEASE_TTL: Duration = Duration::from_secs(120);

fn heartbeat_config() -> HeartbeatConfig {
    HeartbeatConfig {
        ttl_idle: Duration::from_secs(1),
        ttl_running: Duration::from_secs(1),
        missed_degraded: 2,
        missed_failed: 3,
        check_interval: Duration::from_millis(200),
        ..HeartbeatConfig::default()
    }
}

async fn connect(url: &str, schema: &str) -> PostgresStore {
    PostgresStore::builder(url).schema(schema).max_connections(4).connect().await.expect("connect")
}

/// Hangs (the process will be killed) or finishes at once, by role.
struct ByRole(String);

#[async_trait]
impl TaskExecutor for ByRole {
    async fn execute(&self, _task: &Task, ctx: &ExecContext) -> Result<TaskOutput, ExecError> {
        if self.0 == "hang" {
            ctx.cancel.cancelled().await;
        }
        Ok(TaskOutput { result: json!({ "role": self.0 }), ..TaskOutput::default() })
    }
}

/// The worker process entry point (a no-op in a normal test run).
#[test]
fn worker_process() {
    let (Ok(role), Ok(schema), Ok(url)) =
        (std::env::var(ROLE), std::env::var(SCHEMA), std::env::var("OMOI_TEST_POSTGRES_URL"))
    else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async move {
        let store = connect(&url, &schema).await;
        let q = QueueConfig {
            lease_ttl: LEASE_TTL,
            lease_renew_every: Duration::from_secs(30),
            poll_interval: Duration::from_millis(100),
            reclaim_interval: Duration::from_millis(200),
            ..QueueConfig::default()
        };
        let mut cfg = WorkerConfig::new(format!("hb-{role}"), 1, &q);
        cfg.heartbeat_every = Duration::from_millis(200);
        let worker = Worker::new(
            Arc::new(store.clone()),
            Arc::new(store.clone()),
            Arc::new(ByRole(role.clone())),
            Arc::new(SystemClock),
            cfg,
        )
        .with_agent_store(Arc::new(store.clone()));
        let stop = CancellationToken::new();
        let run = tokio::spawn({
            let stop = stop.clone();
            async move { worker.run(stop).await }
        });
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let tasks = store.list_tasks(&TaskFilter::default()).await.unwrap();
            if role != "hang" && tasks.iter().all(|t| t.state == TaskState::Completed) {
                break;
            }
        }
        stop.cancel();
        run.await.unwrap().unwrap();
    });
}

fn spawn_worker(role: &str, schema: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "worker_process", "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .env(SCHEMA, schema)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn worker process")
}

async fn wait_for<T>(what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_worker_is_failed_by_the_heartbeat_monitor_and_another_process_completes_its_task() {
    let Some(url) = omoi_core::testkit::service_url("OMOI_TEST_POSTGRES_URL") else { return };
    let schema =
        format!("omoi_t_{}_hb", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs());
    let schema = format!("{schema}_{}", &omoi_core::TaskId::new().to_string()[24..]);
    let store = connect(&url, &schema).await;
    let task = NewTask::new("survive a crash").backoff(BackoffPolicy::fixed(
        Duration::from_millis(100),
        1.0,
        Duration::from_millis(100),
    ));
    store.insert_tasks(vec![task.clone()]).await.unwrap();

    let mut first = spawn_worker("hang", &schema);
    let running = wait_for("the first worker to start the task", async || {
        let t = store.get_task(task.id).await.unwrap();
        (t.state == TaskState::Running).then_some(t)
    })
    .await;
    let lease = running.lease.unwrap();
    let dead = lease.holder;
    wait_for("the first worker's agent to run", async || {
        (store.get_agent(dead).await.ok()?.status == AgentStatus::Running).then_some(())
    })
    .await;
    first.kill().expect("SIGKILL the first worker");
    assert!(!first.wait().unwrap().success());

    let cfg = heartbeat_config();
    let s = Arc::new(store.clone());
    let monitor = HeartbeatMonitor::new(s.clone(), s.clone(), s, cfg.clone());
    let failed_report = wait_for("the monitor to fail the dead agent", async || {
        let r = monitor.check().await.unwrap();
        if r.failed.is_empty() {
            tokio::time::sleep(cfg.check_interval).await;
            None
        } else {
            Some(r)
        }
    })
    .await;
    assert_eq!((failed_report.failed, failed_report.reclaimed), (vec![dead], vec![task.id]));

    let agent = store.get_agent(dead).await.unwrap();
    assert_eq!(agent.status, AgentStatus::Failed);
    let log = store.read_events(Cursor::START, 10_000).await.unwrap();
    let failed_at = log
        .iter()
        .find_map(|e| match &e.event {
            Event::AgentStatusChanged { agent_id, to: AgentStatus::Failed, .. } if *agent_id == dead => Some(e.at),
            _ => None,
        })
        .expect("agent.status_changed to failed");
    let silent = (failed_at - agent.last_heartbeat_at).to_std().unwrap();
    let bound = cfg.ttl_running * cfg.missed_failed + cfg.check_interval;
    assert!(silent >= cfg.ttl_running * cfg.missed_failed, "not failed early: silent {silent:?}");
    // The bound plus room for process scheduling on a loaded CI machine.
    assert!(silent <= bound + Duration::from_secs(3), "failed within the bound {bound:?}: silent {silent:?}");
    let reclaimed_at = log
        .iter()
        .find_map(|e| match &e.event {
            Event::TaskLeaseExpired { holder, .. } if *holder == dead => Some(e.at),
            _ => None,
        })
        .expect("the dead holder's task was taken back");
    assert!(reclaimed_at < lease.expires_at, "reclaimed at once, not when the lease lapsed");

    let mut second = spawn_worker("finish", &schema);
    let done = wait_for("the second worker to complete the task", async || {
        let t = store.get_task(task.id).await.unwrap();
        (t.state == TaskState::Completed).then_some(t)
    })
    .await;
    assert!(second.wait().unwrap().success());
    assert_eq!(done.attempts, 2, "the dead worker's attempt counts");
    assert_eq!(done.result.as_ref().unwrap()["role"], "finish");
    let log = store.read_events(Cursor::START, 10_000).await.unwrap();
    let completions: Vec<_> = log
        .iter()
        .filter_map(|e| match &e.event {
            Event::TaskCompleted { holder, .. } => Some(*holder),
            _ => None,
        })
        .collect();
    assert_eq!(completions.len(), 1, "completed exactly once");
    assert_ne!(completions[0], dead);
    store.drop_schema().await.unwrap();
}
