//! The worker against the in-memory store: exactly-once draining, leases, shutdown, retries.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use omoi_core::config::QueueConfig;
use omoi_core::{
    AgentId, AgentStatus, AgentStore, BackoffPolicy, ClaimRequest, ClaimedTask, Completion, FailOutcome, Failure,
    FencingToken, Lease, NewTask, SpecId, StoreError, SystemClock, Task, TaskCounts, TaskFilter, TaskId, TaskState,
    TaskStore,
};
use omoi_exec::worker::{ExecContext, ExecError, TaskExecutor, TaskOutput, Worker, WorkerConfig};
use omoi_store::InMemoryStore;
use parking_lot::Mutex;
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// Counts executions; behaviour chosen by the task title.
#[derive(Default)]
struct Recorder {
    runs: Mutex<HashMap<TaskId, u32>>,
}

#[async_trait]
impl TaskExecutor for Recorder {
    async fn execute(&self, task: &Task, ctx: &ExecContext) -> Result<TaskOutput, ExecError> {
        *self.runs.lock().entry(task.id).or_default() += 1;
        match task.def.title.as_str() {
            t if t.starts_with("block") => {
                ctx.cancel.cancelled().await;
                Err(ExecError::retryable("cancelled"))
            }
            t if t.starts_with("flaky") => Err(ExecError::retryable("flaky dependency")),
            t if t.starts_with("huge") => Ok(TaskOutput {
                result: json!("x".repeat(omoi_core::task::MAX_TASK_PAYLOAD_BYTES + 1)),
                ..TaskOutput::default()
            }),
            t if t.starts_with("nul") => Err(ExecError::permanent("output had a \0 byte")),
            _ => {
                tokio::time::sleep(Duration::from_millis(2)).await;
                Ok(TaskOutput { result: json!({"by": ctx.agent_id.to_string()}), ..TaskOutput::default() })
            }
        }
    }
}

fn config(name: &str, concurrency: usize) -> WorkerConfig {
    let q = QueueConfig {
        lease_ttl: Duration::from_secs(5),
        lease_renew_every: Duration::from_millis(500),
        poll_interval: Duration::from_millis(50),
        reclaim_interval: Duration::from_millis(100),
        ..QueueConfig::default()
    };
    let mut c = WorkerConfig::new(name, concurrency, &q);
    c.grace_period = Duration::from_millis(200);
    c.heartbeat_every = Duration::from_millis(50);
    c
}

fn worker(store: &InMemoryStore, exec: Arc<dyn TaskExecutor>, cfg: WorkerConfig) -> Worker {
    Worker::new(Arc::new(store.clone()), Arc::new(store.clone()), exec, Arc::new(SystemClock), cfg)
}

async fn wait_for(store: &InMemoryStore, mut done: impl FnMut(&[Task]) -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let tasks = store.list_tasks(&TaskFilter::default()).await.unwrap();
        if done(&tasks) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out; states: {:?}",
            tasks.iter().map(|t| t.state).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A layered graph: each task depends on two of the previous layer.
fn graph(layers: usize, width: usize) -> Vec<NewTask> {
    let mut out: Vec<NewTask> = Vec::new();
    for l in 0..layers {
        for w in 0..width {
            let mut t = NewTask::new(format!("L{l}-{w}"));
            if l > 0 {
                let base = (l - 1) * width;
                t = t.depends_on([out[base + w].id, out[base + (w + 1) % width].id]);
            }
            out.push(t);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_workers_drain_a_graph_exactly_once_in_dependency_order() {
    let store = InMemoryStore::new();
    store.insert_tasks(graph(6, 8)).await.unwrap();
    let exec = Arc::new(Recorder::default());
    let stop = CancellationToken::new();
    let a = worker(&store, exec.clone(), config("a", 3));
    let b = worker(&store, exec.clone(), config("b", 3));
    let (ha, hb) = (
        tokio::spawn({
            let s = stop.clone();
            async move { a.run(s).await }
        }),
        tokio::spawn({
            let s = stop.clone();
            async move { b.run(s).await }
        }),
    );
    wait_for(&store, |t| t.iter().all(|t| t.state == TaskState::Completed)).await;
    stop.cancel();
    let (sa, sb) = (ha.await.unwrap().unwrap(), hb.await.unwrap().unwrap());
    assert_eq!(sa.completed + sb.completed, 48);
    assert!(sa.completed > 0 && sb.completed > 0, "both workers took work: {sa:?} {sb:?}");
    assert!(exec.runs.lock().values().all(|&n| n == 1), "every task ran exactly once");
    assert_eq!(exec.runs.lock().len(), 48);
    // Dependency order, from the event log: a task is claimed only after its dependencies completed.
    let events = omoi_core::EventStore::read_events(&store, omoi_core::Cursor::START, 100_000).await.unwrap();
    let mut completed_at = HashMap::new();
    for e in &events {
        match &e.event {
            omoi_core::Event::TaskCompleted { task_id, .. } => {
                completed_at.insert(*task_id, e.cursor);
            }
            omoi_core::Event::TaskClaimed { task_id, .. } => {
                let task = store.get_task(*task_id).await.unwrap();
                for d in &task.dependencies {
                    assert!(
                        completed_at.get(d).is_some_and(|c| *c < e.cursor),
                        "{task_id} claimed before {d} completed"
                    );
                }
            }
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_releases_what_it_holds_without_using_an_attempt() {
    let store = InMemoryStore::new();
    let t = NewTask::new("block until cancelled");
    store.insert_tasks(vec![t.clone()]).await.unwrap();
    let exec = Arc::new(Recorder::default());
    let stop = CancellationToken::new();
    let w = worker(&store, exec.clone(), config("w", 1));
    let h = tokio::spawn({
        let s = stop.clone();
        async move { w.run(s).await }
    });
    wait_for(&store, |tasks| tasks[0].state == TaskState::Running).await;
    stop.cancel();
    let stats = h.await.unwrap().unwrap();
    assert_eq!(stats.released, 1);
    let got = store.get_task(t.id).await.unwrap();
    assert_eq!((got.state, got.attempts, got.lease), (TaskState::Ready, 0, None));
}

/// Runs a worker of concurrency 2 with `prefetch` over 8 blocking tasks until `held` of them
/// are leased and running, checks that only 2 execute and no more are claimed, then stops it.
async fn claim_ahead(prefetch: usize, held: usize) {
    let store = InMemoryStore::new();
    let tasks: Vec<NewTask> = (0..8).map(|i| NewTask::new(format!("block {i}"))).collect();
    store.insert_tasks(tasks).await.unwrap();
    let exec = Arc::new(Recorder::default());
    let stop = CancellationToken::new();
    let w = worker(&store, exec.clone(), config("w", 2).with_prefetch(prefetch));
    let h = tokio::spawn({
        let s = stop.clone();
        async move { w.run(s).await }
    });
    let running = |ts: &[Task]| ts.iter().filter(|t| t.state == TaskState::Running).count();
    wait_for(&store, |ts| running(ts) == held).await;
    tokio::time::sleep(Duration::from_millis(300)).await; // several polling periods
    let ts = store.list_tasks(&TaskFilter::default()).await.unwrap();
    assert_eq!(running(&ts), held, "claims stop at free slots plus the prefetch");
    assert_eq!(exec.runs.lock().len(), 2, "only the slots execute; the rest wait in the local queue");
    stop.cancel();
    let stats = h.await.unwrap().unwrap();
    assert_eq!(stats.released, held as u64, "executing and queued tasks are both given back: {stats:?}");
    for t in store.list_tasks(&TaskFilter::default()).await.unwrap() {
        assert_eq!((t.state, t.attempts, t.lease), (TaskState::Ready, 0, None), "{}", t.def.title);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_claims_ahead_into_a_local_queue_and_releases_it_on_shutdown() {
    claim_ahead(3, 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_prefetch_the_worker_claims_only_its_free_slots() {
    claim_ahead(0, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retryable_failures_are_retried_with_backoff_then_dead_lettered() {
    let store = InMemoryStore::new();
    let t = NewTask::new("flaky task").max_attempts(3).backoff(BackoffPolicy::fixed(
        Duration::from_millis(50),
        2.0,
        Duration::from_millis(200),
    ));
    let after = NewTask::new("after the flaky one").depends_on([t.id]);
    store.insert_tasks(vec![t.clone(), after.clone()]).await.unwrap();
    let exec = Arc::new(Recorder::default());
    let stop = CancellationToken::new();
    let w = worker(&store, exec.clone(), config("w", 2));
    let h = tokio::spawn({
        let s = stop.clone();
        async move { w.run(s).await }
    });
    wait_for(&store, |tasks| tasks.iter().any(|x| x.state == TaskState::Failed)).await;
    stop.cancel();
    let stats = h.await.unwrap().unwrap();
    assert_eq!(stats.failed, 3);
    assert_eq!(exec.runs.lock()[&t.id], 3);
    let got = store.get_task(t.id).await.unwrap();
    assert_eq!((got.state, got.attempts, got.last_error.as_deref()), (TaskState::Failed, 3, Some("flaky dependency")));
    assert_eq!(store.get_task(after.id).await.unwrap().state, TaskState::Blocked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_lease_cancels_the_execution_and_the_new_holder_completes() {
    let store = InMemoryStore::new();
    let t = NewTask::new("block until cancelled").backoff(BackoffPolicy::fixed(
        Duration::from_millis(1),
        1.0,
        Duration::from_millis(1),
    ));
    store.insert_tasks(vec![t.clone()]).await.unwrap();
    let exec = Arc::new(Recorder::default());
    let stop = CancellationToken::new();
    // The worker's lease lapses (renewal slower than the TTL) while it runs.
    let mut slow = config("slow", 1);
    slow.lease_ttl = Duration::from_millis(300);
    slow.renew_every = Duration::from_millis(1500);
    slow.reclaim_interval = Duration::from_secs(3600);
    let w = worker(&store, exec.clone(), slow);
    let h = tokio::spawn({
        let s = stop.clone();
        async move { w.run(s).await }
    });
    wait_for(&store, |tasks| tasks[0].state == TaskState::Running).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(store.reclaim_expired().await.unwrap(), vec![t.id]);
    tokio::time::sleep(Duration::from_millis(5)).await;
    let new_holder = omoi_core::AgentId::new();
    let req = omoi_core::ClaimRequest::new(new_holder, 1, Duration::from_secs(60));
    let mine = store.claim(&req).await.unwrap().remove(0);
    // The old holder's next renewal is refused: it cancels its run and leaves the task alone.
    wait_for(&store, |_| exec.runs.lock().len() == 1).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.cancel();
    let stats = h.await.unwrap().unwrap();
    assert_eq!(stats.lost, 1, "{stats:?}");
    assert_eq!(store.get_task(t.id).await.unwrap().lease.map(|l| l.holder), Some(new_holder));
    store.complete(t.id, mine.lease.token, omoi_core::Completion::default()).await.unwrap();
    assert_eq!(store.get_task(t.id).await.unwrap().state, TaskState::Completed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_register_as_agents_and_heartbeat() {
    let store = InMemoryStore::new();
    let exec = Arc::new(Recorder::default());
    let stop = CancellationToken::new();
    let w = worker(&store, exec.clone(), config("hb", 1).with_capabilities(["python"]))
        .with_agent_store(Arc::new(store.clone()));
    let id = w.id();
    let h = tokio::spawn({
        let s = stop.clone();
        async move { w.run(s).await }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(a) = store.get_agent(id).await
            && a.last_seq.unwrap_or(0) >= 3
        {
            assert_eq!(a.status, AgentStatus::Idle);
            assert_eq!(a.capabilities, ["python"]);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no heartbeats");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    h.await.unwrap().unwrap();
    assert_eq!(store.get_agent(id).await.unwrap().status, AgentStatus::Terminated);
}

/// Runs one worker over `store` until `done` holds for the tasks, then stops it.
async fn run_until(
    store: &InMemoryStore,
    exec: Arc<dyn TaskExecutor>,
    tasks: Arc<dyn TaskStore>,
    cfg: WorkerConfig,
    done: impl FnMut(&[Task]) -> bool,
) -> omoi_exec::worker::WorkerStats {
    let w = Worker::new(tasks, Arc::new(store.clone()), exec, Arc::new(SystemClock), cfg);
    let stop = CancellationToken::new();
    let h = tokio::spawn({
        let s = stop.clone();
        async move { w.run(s).await }
    });
    wait_for(store, done).await;
    stop.cancel();
    h.await.unwrap().expect("the worker never exits with an error")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_completion_fails_the_attempt_with_the_refusal_as_its_error() {
    let store = InMemoryStore::new();
    let t = NewTask::new("huge output").max_attempts(1);
    store.insert_tasks(vec![t.clone()]).await.unwrap();
    let stats = run_until(&store, Arc::new(Recorder::default()), Arc::new(store.clone()), config("w", 1), |ts| {
        ts[0].state == TaskState::Failed
    })
    .await;
    assert_eq!(stats.failed, 1);
    let got = store.get_task(t.id).await.unwrap();
    let error = got.last_error.unwrap();
    assert!(error.starts_with("result refused by the store: result is"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_message_the_store_would_refuse_still_fails_the_attempt() {
    let store = InMemoryStore::new();
    let t = NewTask::new("nul in the error").max_attempts(1);
    store.insert_tasks(vec![t.clone()]).await.unwrap();
    run_until(&store, Arc::new(Recorder::default()), Arc::new(store.clone()), config("w", 1), |ts| {
        ts[0].state == TaskState::Failed
    })
    .await;
    assert_eq!(store.get_task(t.id).await.unwrap().last_error.as_deref(), Some("output had a \\0 byte"));
}

/// A task store whose first claims fail with a non-retryable error.
struct FlakyClaims {
    inner: InMemoryStore,
    failures_left: std::sync::atomic::AtomicUsize,
}

#[async_trait]
impl TaskStore for FlakyClaims {
    async fn insert_tasks(&self, batch: Vec<NewTask>) -> Result<Vec<TaskId>, StoreError> {
        self.inner.insert_tasks(batch).await
    }
    async fn claim(&self, request: &ClaimRequest) -> Result<Vec<ClaimedTask>, StoreError> {
        use std::sync::atomic::Ordering;
        if self.failures_left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
            return Err(StoreError::Backend { backend: "test", message: "corrupt row".into(), source: None });
        }
        self.inner.claim(request).await
    }
    async fn renew_lease(&self, id: TaskId, token: FencingToken, ttl: Duration) -> Result<Lease, StoreError> {
        self.inner.renew_lease(id, token, ttl).await
    }
    async fn start(&self, id: TaskId, token: FencingToken) -> Result<(), StoreError> {
        self.inner.start(id, token).await
    }
    async fn complete(&self, id: TaskId, token: FencingToken, c: Completion) -> Result<Vec<TaskId>, StoreError> {
        self.inner.complete(id, token, c).await
    }
    async fn fail(&self, id: TaskId, token: FencingToken, f: Failure) -> Result<FailOutcome, StoreError> {
        self.inner.fail(id, token, f).await
    }
    async fn release(&self, id: TaskId, token: FencingToken) -> Result<(), StoreError> {
        self.inner.release(id, token).await
    }
    async fn cancel(&self, id: TaskId) -> Result<Vec<TaskId>, StoreError> {
        self.inner.cancel(id).await
    }
    async fn redrive(&self, id: TaskId) -> Result<Vec<TaskId>, StoreError> {
        self.inner.redrive(id).await
    }
    async fn reclaim_expired(&self) -> Result<Vec<TaskId>, StoreError> {
        self.inner.reclaim_expired().await
    }
    async fn reclaim_holder(&self, holder: AgentId) -> Result<Vec<TaskId>, StoreError> {
        self.inner.reclaim_holder(holder).await
    }
    async fn get_task(&self, id: TaskId) -> Result<Task, StoreError> {
        self.inner.get_task(id).await
    }
    async fn list_tasks(&self, filter: &TaskFilter) -> Result<Vec<Task>, StoreError> {
        self.inner.list_tasks(filter).await
    }
    async fn dependents(&self, id: TaskId) -> Result<Vec<TaskId>, StoreError> {
        self.inner.dependents(id).await
    }
    async fn count_tasks(&self, spec: Option<SpecId>) -> Result<TaskCounts, StoreError> {
        self.inner.count_tasks(spec).await
    }
    async fn ready_count(&self) -> Result<u64, StoreError> {
        self.inner.ready_count().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_never_exits_on_a_claim_error() {
    let store = InMemoryStore::new();
    store.insert_tasks(vec![NewTask::new("a"), NewTask::new("b")]).await.unwrap();
    let flaky = Arc::new(FlakyClaims { inner: store.clone(), failures_left: 3.into() });
    let stats = run_until(&store, Arc::new(Recorder::default()), flaky.clone(), config("w", 2), |ts| {
        ts.iter().all(|t| t.state == TaskState::Completed)
    })
    .await;
    assert_eq!(stats.completed, 2);
    assert_eq!(flaky.failures_left.load(std::sync::atomic::Ordering::SeqCst), 0, "the failing claims happened");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_cancels_the_attempt_and_fails_it_as_retryable() {
    let store = InMemoryStore::new();
    let t = NewTask::new("block until cancelled").max_attempts(2).backoff(BackoffPolicy::fixed(
        Duration::from_millis(1),
        1.0,
        Duration::from_millis(1),
    ));
    let mut t = t;
    t.def.timeout = Some(Duration::from_millis(30));
    store.insert_tasks(vec![t.clone()]).await.unwrap();
    let exec = Arc::new(Recorder::default());
    let stats =
        run_until(&store, exec.clone(), Arc::new(store.clone()), config("w", 1), |ts| ts[0].state == TaskState::Failed)
            .await;
    assert_eq!(stats.failed, 2, "both attempts timed out");
    assert_eq!(exec.runs.lock()[&t.id], 2, "retried after the first timeout");
    assert!(store.get_task(t.id).await.unwrap().last_error.unwrap().starts_with("timed out after 30ms"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passed_deadline_fails_the_task_permanently_without_running_it() {
    let store = InMemoryStore::new();
    let mut t = NewTask::new("too late").max_attempts(3);
    t.def.deadline = Some(chrono::Utc::now() - chrono::Duration::seconds(1));
    let mut soon = NewTask::new("block until cancelled").max_attempts(3);
    soon.def.deadline = Some(chrono::Utc::now() + chrono::Duration::milliseconds(50));
    store.insert_tasks(vec![t.clone(), soon.clone()]).await.unwrap();
    let exec = Arc::new(Recorder::default());
    run_until(&store, exec.clone(), Arc::new(store.clone()), config("w", 2), |ts| {
        ts.iter().all(|t| t.state == TaskState::Failed)
    })
    .await;
    assert!(!exec.runs.lock().contains_key(&t.id), "never executed");
    let late = store.get_task(t.id).await.unwrap();
    assert_eq!(late.attempts, 1, "dead-lettered at once, attempts left unused");
    assert!(late.last_error.unwrap().contains("passed before the task started"));
    let cut = store.get_task(soon.id).await.unwrap();
    assert_eq!(cut.attempts, 1, "a deadline reached while running is permanent");
    assert!(cut.last_error.unwrap().contains("deadline"));
}

#[test]
fn graceful_stop_sets_the_grace_period() {
    let mut cfg = omoi_core::config::OmoiConfig::default();
    cfg.heartbeat.graceful_stop = Duration::from_millis(1234);
    cfg.queue.claim_batch = 7;
    cfg.queue.aging_after = Some(Duration::from_secs(99));
    let w = WorkerConfig::from_config("w", 16, &cfg);
    assert_eq!(w.grace_period, Duration::from_millis(1234));
    assert_eq!((w.claim_batch, w.aging_after), (7, Some(Duration::from_secs(99))));
}
