//! Chaos on Postgres: four worker processes (the real [`Worker`], leases and all) drain a random
//! DAG of 1,000 tasks while a driver SIGKILLs a random worker about once a second (at least 20
//! kills) and starts a new one in its place. Afterwards every task completed exactly once (one
//! `task.completed` per task, every task `Completed` in the store), none was lost, and no
//! attempt started before all of the task's dependencies completed — checked with event-log
//! cursors, which follow commit order. Prints its figures. Sizes: `OMOI_CHAOS_TASKS` (default
//! 1000), `OMOI_CHAOS_KILLS` (default 20).
//!
//! The test binary re-executes itself as the worker processes (`chaos_worker_process` is a
//! no-op unless `OMOI_CHAOS_SCHEMA` is set).

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use omoi_core::config::QueueConfig;
use omoi_core::testkit::{check_drain, service_url};
use omoi_core::{BackoffPolicy, EventStore, NewTask, SystemClock, Task, TaskFilter, TaskId, TaskState, TaskStore};
use omoi_exec::worker::{ExecContext, ExecError, TaskExecutor, TaskOutput, Worker, WorkerConfig};
use omoi_store::PostgresStore;
use serde_json::json;
use tokio_util::sync::CancellationToken;

const SCHEMA: &str = "OMOI_CHAOS_SCHEMA";
const WORKERS: usize = 4;
const CONCURRENCY: usize = 4;

fn knob(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Works for a while (the task's `input.ms`), so kills land mid-task.
struct Busy;

#[async_trait]
impl TaskExecutor for Busy {
    async fn execute(&self, task: &Task, ctx: &ExecContext) -> Result<TaskOutput, ExecError> {
        let ms = task.def.input["ms"].as_u64().unwrap_or(100);
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(ms)) => {}
            () = ctx.cancel.cancelled() => return Err(ExecError::retryable("cancelled")),
        }
        Ok(TaskOutput { result: json!({ "by": ctx.agent_id.to_string() }), ..TaskOutput::default() })
    }
}

async fn connect(url: String, schema: &str) -> PostgresStore {
    PostgresStore::builder(url).schema(schema).max_connections(6).connect().await.expect("connect")
}

/// The worker process entry point (a no-op in a normal test run). Runs until killed or until
/// nothing is left to do.
#[test]
fn chaos_worker_process() {
    let (Ok(schema), Some(url)) = (std::env::var(SCHEMA), service_url("OMOI_TEST_POSTGRES_URL")) else { return };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async move {
        let store = connect(url, &schema).await;
        let q = QueueConfig {
            lease_ttl: Duration::from_secs(2),
            lease_renew_every: Duration::from_millis(400),
            poll_interval: Duration::from_millis(50),
            reclaim_interval: Duration::from_millis(250),
            ..QueueConfig::default()
        };
        let worker = Worker::new(
            Arc::new(store.clone()),
            Arc::new(store.clone()),
            Arc::new(Busy),
            Arc::new(SystemClock),
            WorkerConfig::new("chaos", CONCURRENCY, &q),
        );
        let stop = CancellationToken::new();
        let run = tokio::spawn({
            let stop = stop.clone();
            async move { worker.run(stop).await }
        });
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let counts = store.count_tasks(None).await.unwrap();
            if counts.get(&TaskState::Completed).copied().unwrap_or(0) == counts.values().sum::<u64>() {
                break;
            }
        }
        stop.cancel();
        run.await.unwrap().unwrap();
    });
}

fn spawn_worker(schema: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "chaos_worker_process", "--nocapture", "--test-threads=1"])
        .env(SCHEMA, schema)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn worker process")
}

/// A small deterministic generator (the seed is printed, so a failure can be replayed).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// `n` tasks; each depends on up to three random earlier ones (among the previous 60), and
/// works 50–250 ms. Retries are immediate and plentiful: a task may be hit by several kills.
fn random_dag(n: usize, rng: &mut Lcg) -> Vec<NewTask> {
    let mut tasks: Vec<NewTask> = Vec::with_capacity(n);
    for i in 0..n {
        let mut deps = Vec::new();
        if i > 0 {
            for _ in 0..rng.below(4) {
                let lo = i.saturating_sub(60) as u64;
                let d = tasks[(lo + rng.below(i as u64 - lo)) as usize].id;
                if !deps.contains(&d) {
                    deps.push(d);
                }
            }
        }
        let ms = 50 + rng.below(200);
        tasks.push(
            NewTask::new(format!("chaos {i}"))
                .input(json!({ "ms": ms }))
                .depends_on(deps)
                .max_attempts(50)
                .backoff(BackoffPolicy::fixed(Duration::from_millis(20), 1.0, Duration::from_millis(20))),
        );
    }
    tasks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_sigkilled_workers_on_postgres_complete_every_task_exactly_once_in_dependency_order() {
    let Some(url) = service_url("OMOI_TEST_POSTGRES_URL") else { return };
    let (n, min_kills) = (knob("OMOI_CHAOS_TASKS", 1000), knob("OMOI_CHAOS_KILLS", 20));
    let schema =
        format!("omoi_t_{}_{}", chrono::Utc::now().timestamp(), &uuid::Uuid::now_v7().simple().to_string()[20..]);
    let store = connect(url, &schema).await;
    let seed = u64::from(chrono::Utc::now().timestamp_subsec_nanos()) | 1;
    let mut rng = Lcg(seed);
    let tasks = random_dag(n, &mut rng);
    let deps: HashMap<TaskId, Vec<TaskId>> = tasks.iter().map(|t| (t.id, t.dependencies.clone())).collect();
    let edges: usize = deps.values().map(Vec::len).sum();
    let start = store.last_cursor().await.unwrap();
    store.insert_tasks(tasks).await.expect("insert the DAG");

    let started = Instant::now();
    let mut workers: Vec<Child> = (0..WORKERS).map(|_| spawn_worker(&schema)).collect();
    let mut kills = 0;
    let deadline = started + Duration::from_secs(150);
    loop {
        tokio::time::sleep(Duration::from_millis(800 + rng.below(400))).await;
        let counts = store.count_tasks(None).await.unwrap();
        let done = counts.get(&TaskState::Completed).copied().unwrap_or(0);
        if done == n as u64 {
            break;
        }
        assert!(Instant::now() < deadline, "not drained after 150 s: {counts:?} after {kills} kills (seed {seed})");
        let victim = rng.below(WORKERS as u64) as usize;
        workers[victim].kill().expect("SIGKILL a worker");
        workers[victim].wait().unwrap();
        kills += 1;
        workers[victim] = spawn_worker(&schema);
    }
    let drained = started.elapsed();
    for mut w in workers {
        // Each exits once it sees the queue drained.
        let exited = tokio::task::spawn_blocking(move || {
            for _ in 0..100 {
                if let Ok(Some(status)) = w.try_wait() {
                    return Some(status);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = w.kill();
            None
        })
        .await
        .unwrap();
        assert!(exited.is_some_and(|s| s.success()), "a worker did not stop cleanly after the drain");
    }

    let all = store.list_tasks(&TaskFilter::default()).await.unwrap();
    assert_eq!(all.len(), n, "no task lost");
    assert!(all.iter().all(|t| t.state == TaskState::Completed), "every task completed");
    let retried = all.iter().filter(|t| t.attempts > 1).count();

    let report = check_drain(&store, start, &deps, &format!("seed {seed}")).await;
    println!(
        "chaos: {n} tasks, {edges} dependency edges, {WORKERS} workers x {CONCURRENCY}, {kills} SIGKILLs, \
         {} leases expired, {retried} tasks retried, {} claims/starts checked against dependencies, \
         drained in {drained:?} (seed {seed})",
        report.leases_expired, report.starts_checked
    );
    assert!(kills >= min_kills, "only {kills} kills before the drain (want {min_kills}); seed {seed}");
    store.drop_schema().await.unwrap();
}
