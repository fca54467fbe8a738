//! [`Orchestrator`]: one value that assembles the pieces — a store, an executor (agents in
//! sandboxes, or any closure), workers, the spec pipeline and the merge — with defaults.
//!
//! ```
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use omoi_core::NewTask;
//! use omoi_exec::{Orchestrator, executor_fn};
//! use omoi_store::InMemoryStore;
//! use serde_json::json;
//!
//! let orch = Orchestrator::builder(InMemoryStore::new())
//!     .executor(executor_fn(|task, _ctx| async move { Ok(json!({ "done": task.def.title })) }))
//!     .workers(2)
//!     .build()?;
//! let build = NewTask::new("build");
//! let test = NewTask::new("test").depends_on([build.id]);
//! orch.submit(vec![build, test]).await?;
//! let report = orch.drain().await?;
//! assert!(report.all_completed());
//! # Ok(()) }
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(demo()).unwrap();
//! ```
//!
//! With a model and sandboxes instead of a closure, [`OrchestratorBuilder::agents`] runs every
//! task as an agent on its own git branch, [`Orchestrator::submit_spec`] turns an idea into a
//! spec and its tasks, and [`Orchestrator::merge`] merges the completed branches.

mod builder;
mod report;

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use omoi_core::config::OmoiConfig;
use omoi_core::{
    AgentStore, Clock, DiscoveryStore, EventStore, NewSpec, NewTask, SpecId, SpecStore, StoreError, Task, TaskCounts,
    TaskFilter, TaskId, TaskState, TaskStore, Usage,
};
use omoi_spec::{RunOutcome, SpecError, SpecRunner};
use parking_lot::Mutex;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use builder::OrchestratorBuilder;
pub use report::{RunReport, TaskOutcome};

use crate::git::{GitError, GitRepo, MergeError, MergeReport, merge_in_conflict_order};
use crate::worker::{Worker, WorkerStats};

/// Why an orchestrator call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OrchestratorError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The spec pipeline failed.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// A git operation failed.
    #[error(transparent)]
    Git(#[from] GitError),
    /// The merge was refused (e.g. the base branch is checked out with local changes) or failed.
    #[error(transparent)]
    Merge(#[from] MergeError),
    /// The call needs something the orchestrator was not built with.
    #[error("{0}")]
    NotConfigured(&'static str),
    /// The input was refused before any work (and before any model call).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A worker stopped with an error.
    #[error("worker failed: {0}")]
    Worker(String),
    /// `run_until_settled` gave up after the configured settle timeout.
    #[error("the tasks did not settle within {0:?}")]
    NotSettled(Duration),
}

/// A submitted spec and where its run stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpecSubmission {
    /// The spec.
    pub spec_id: SpecId,
    /// `Completed` (its tasks are queued) or waiting for approval of a gated phase.
    pub outcome: RunOutcome,
}

/// Whether nothing in `counts` can still run: no task is waiting for a dependency, ready,
/// claimed or running. Dead-lettered tasks' dependents are `Blocked`, so they count as settled.
pub fn is_settled(counts: &TaskCounts) -> bool {
    counts.iter().all(|(s, n)| {
        *n == 0 || !matches!(s, TaskState::Waiting | TaskState::Ready | TaskState::Claimed | TaskState::Running)
    })
}

struct Running {
    stop: CancellationToken,
    handles: Vec<JoinHandle<Result<WorkerStats, StoreError>>>,
}

/// A whole orchestrator; build it with [`Orchestrator::builder`]. See the [module docs](self).
pub struct Orchestrator {
    tasks: Arc<dyn TaskStore>,
    events: Arc<dyn EventStore>,
    specs: Arc<dyn SpecStore>,
    clock: Arc<dyn Clock>,
    config: OmoiConfig,
    workers: Vec<Worker>,
    spec_runner: Option<SpecRunner>,
    origin: Option<(GitRepo, String)>,
    settle_timeout: Option<Duration>,
    running: Mutex<Option<Running>>,
    submitted: Mutex<Submitted>,
}

#[derive(Default)]
struct Submitted {
    specs: BTreeSet<SpecId>,
    tasks: BTreeSet<TaskId>,
}

impl std::fmt::Debug for Orchestrator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Orchestrator")
            .field("workers", &self.workers.len())
            .field("spec_pipeline", &self.spec_runner.is_some())
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl Orchestrator {
    /// A builder over one store value that implements the task, spec, event, agent and
    /// discovery ports (the memory, SQLite and Postgres adapters do).
    pub fn builder<S>(store: S) -> OrchestratorBuilder
    where
        S: TaskStore + SpecStore + EventStore + AgentStore + DiscoveryStore + Clone + 'static,
    {
        OrchestratorBuilder::new(
            Arc::new(store.clone()),
            Arc::new(store.clone()),
            Arc::new(store.clone()),
            Arc::new(store.clone()),
            Arc::new(store),
        )
    }

    /// The configuration it was built with.
    pub fn config(&self) -> &OmoiConfig {
        &self.config
    }

    /// The task store.
    pub fn tasks(&self) -> &Arc<dyn TaskStore> {
        &self.tasks
    }

    /// The event log.
    pub fn events(&self) -> &Arc<dyn EventStore> {
        &self.events
    }

    /// The spec store.
    pub fn specs(&self) -> &Arc<dyn SpecStore> {
        &self.specs
    }

    /// The workers' agent ids (the lease holders), in start order.
    pub fn worker_ids(&self) -> Vec<omoi_core::AgentId> {
        self.workers.iter().map(Worker::id).collect()
    }

    /// Queues a batch of tasks (atomically; see [`TaskStore::insert_tasks`]). Titles must not be
    /// empty.
    pub async fn submit(&self, batch: Vec<NewTask>) -> Result<Vec<TaskId>, OrchestratorError> {
        if let Some(t) = batch.iter().find(|t| t.def.title.trim().is_empty()) {
            return Err(OrchestratorError::InvalidInput(format!("task {} has an empty title", t.id)));
        }
        let ids = self.tasks.insert_tasks(batch).await?;
        self.submitted.lock().tasks.extend(ids.iter().copied());
        Ok(ids)
    }

    /// Turns a feature idea into a spec (explore → prd → requirements → design → tasks → sync)
    /// and queues its tasks. Stops early at a gated phase (see [`Self::approve`]). An empty idea
    /// is refused before any model call.
    pub async fn submit_spec(&self, idea: impl Into<String>) -> Result<SpecSubmission, OrchestratorError> {
        let idea = idea.into();
        let trimmed = idea.trim();
        if trimmed.is_empty() {
            return Err(OrchestratorError::InvalidInput("the spec idea is empty".into()));
        }
        let title: String = trimmed.split_whitespace().take(8).collect::<Vec<_>>().join(" ");
        self.submit_new_spec(NewSpec::new(title, trimmed)).await
    }

    /// [`submit_spec`](Self::submit_spec) with a title (and any other field of [`NewSpec`]) of
    /// your choosing. An empty idea or title is refused before any model call.
    pub async fn submit_new_spec(&self, spec: NewSpec) -> Result<SpecSubmission, OrchestratorError> {
        if spec.idea.trim().is_empty() || spec.title.trim().is_empty() {
            return Err(OrchestratorError::InvalidInput("the spec idea and title must not be empty".into()));
        }
        let runner = self.runner()?;
        let (spec_id, outcome) = runner.start(spec).await?;
        self.submitted.lock().specs.insert(spec_id);
        Ok(SpecSubmission { spec_id, outcome })
    }

    /// Runs (or resumes) a spec already in the store (created with
    /// [`SpecStore::create_spec`], e.g. by a server that answers before the run ends) from its
    /// first phase without a checkpoint, and queues its tasks like [`Self::submit_new_spec`].
    pub async fn run_spec(&self, spec: SpecId) -> Result<RunOutcome, OrchestratorError> {
        let runner = self.runner()?;
        self.submitted.lock().specs.insert(spec);
        Ok(runner.run(spec).await?)
    }

    /// Approves the gated phase of a spec and continues its run.
    pub async fn approve(&self, spec: SpecId) -> Result<RunOutcome, OrchestratorError> {
        Ok(self.runner()?.approve(spec).await?)
    }

    /// Rejects the gated phase of a spec: it runs again with `feedback`.
    pub async fn reject(&self, spec: SpecId, feedback: &str) -> Result<RunOutcome, OrchestratorError> {
        if feedback.trim().is_empty() {
            return Err(OrchestratorError::InvalidInput("rejection feedback is empty".into()));
        }
        Ok(self.runner()?.reject(spec, feedback).await?)
    }

    fn runner(&self) -> Result<&SpecRunner, OrchestratorError> {
        self.spec_runner.as_ref().ok_or(OrchestratorError::NotConfigured(
            "no spec pipeline: build the orchestrator with .agents(llm, sandboxes) or .spec_executor(…)",
        ))
    }

    /// Starts the workers (idempotent; the run methods call it).
    pub fn start(&self) {
        let mut running = self.running.lock();
        if running.is_some() {
            return;
        }
        let stop = CancellationToken::new();
        let handles = self
            .workers
            .iter()
            .map(|w| {
                let (w, stop) = (w.clone(), stop.clone());
                tokio::spawn(async move { w.run(stop).await })
            })
            .collect();
        info!(workers = self.workers.len(), "orchestrator started");
        *running = Some(Running { stop, handles });
    }

    /// Starts the workers if needed and waits until nothing can still run (see
    /// [`is_settled`]); the workers keep running. Reports every submitted task.
    pub async fn run_until_settled(&self) -> Result<RunReport, OrchestratorError> {
        self.require_workers()?;
        self.start();
        let wait = self.wait_settled();
        match self.settle_timeout {
            Some(limit) => {
                let sleep = self.clock.sleep(limit);
                tokio::pin!(sleep);
                tokio::select! {
                    r = wait => r?,
                    () = &mut sleep => return Err(OrchestratorError::NotSettled(limit)),
                }
            }
            None => wait.await?,
        }
        self.report(None).await
    }

    /// Runs until settled, then stops the workers gracefully.
    pub async fn drain(&self) -> Result<RunReport, OrchestratorError> {
        let report = self.run_until_settled().await?;
        let stats = self.shutdown().await?;
        Ok(RunReport { workers: Some(stats), ..report })
    }

    /// Stops the workers gracefully (running tasks get the grace period) and returns what they
    /// did, summed. Idempotent.
    pub async fn shutdown(&self) -> Result<WorkerStats, OrchestratorError> {
        let Some(running) = self.running.lock().take() else { return Ok(WorkerStats::default()) };
        running.stop.cancel();
        let mut total = WorkerStats::default();
        let mut first_error = None;
        for h in running.handles {
            match h.await {
                Ok(Ok(s)) => {
                    total.completed += s.completed;
                    total.failed += s.failed;
                    total.released += s.released;
                    total.lost += s.lost;
                }
                Ok(Err(e)) => first_error = first_error.or(Some(e.to_string())),
                Err(e) => first_error = first_error.or(Some(e.to_string())),
            }
        }
        info!(?total, "orchestrator stopped");
        match first_error {
            Some(e) => Err(OrchestratorError::Worker(e)),
            None => Ok(total),
        }
    }

    /// Runs until `signal` resolves, then shuts down (for servers: pass a ctrl-c future).
    pub async fn run_until(&self, signal: impl Future<Output = ()>) -> Result<WorkerStats, OrchestratorError> {
        self.require_workers()?;
        self.start();
        signal.await;
        self.shutdown().await
    }

    /// Merges into the base branch, fewest conflicts first (see [`merge_in_conflict_order`]),
    /// the branches of completed work that a passing validation covers (see
    /// [`mergeable_branches`](crate::agent::mergeable_branches)).
    pub async fn merge(&self) -> Result<MergeReport, OrchestratorError> {
        let (repo, base) = self
            .origin
            .as_ref()
            .ok_or(OrchestratorError::NotConfigured("no origin repository: build with .origin(repo, base_branch)"))?;
        let branches = crate::agent::mergeable_branches(&self.submitted_tasks().await?);
        Ok(merge_in_conflict_order(repo, base, &branches).await?)
    }

    /// Every submitted task (directly or through a spec, discovery branches included), in
    /// creation order.
    pub async fn submitted_tasks(&self) -> Result<Vec<Task>, OrchestratorError> {
        let (specs, ids) = {
            let s = self.submitted.lock();
            (s.specs.clone(), s.tasks.clone())
        };
        let mut tasks: Vec<Task> = Vec::new();
        for spec in specs {
            let filter = TaskFilter { spec_id: Some(spec), ..TaskFilter::default() };
            tasks.extend(self.tasks.list_tasks(&filter).await?);
        }
        let seen: BTreeSet<TaskId> = tasks.iter().map(|t| t.id).collect();
        for id in ids.difference(&seen) {
            tasks.push(self.tasks.get_task(*id).await?);
        }
        tasks.sort_by_key(|t| t.id);
        Ok(tasks)
    }

    /// Every submitted task (directly or through a spec) as it stands now.
    pub async fn report(&self, workers: Option<WorkerStats>) -> Result<RunReport, OrchestratorError> {
        let tasks = self.submitted_tasks().await?;
        let usage = tasks.iter().fold(Usage::default(), |acc, t| acc + t.usage);
        let counts = self.tasks.count_tasks(None).await?;
        Ok(RunReport { tasks: tasks.iter().map(TaskOutcome::from).collect(), counts, usage, workers })
    }

    /// Waits, woken by store events with a polling backstop, until the store is settled.
    async fn wait_settled(&self) -> Result<(), OrchestratorError> {
        let mut wake = match self.events.subscribe(self.events.last_cursor().await?).await {
            Ok(s) => Some(s),
            Err(e) => {
                warn!(error = %e, "no event subscription; polling");
                None
            }
        };
        let poll = self.config.queue.poll_interval.min(Duration::from_millis(250));
        loop {
            if is_settled(&self.tasks.count_tasks(None).await?) {
                return Ok(());
            }
            if self.workers_ended() {
                return Err(OrchestratorError::Worker("every worker stopped before the tasks settled".into()));
            }
            let ended = match wake.as_mut() {
                Some(stream) => tokio::select! {
                    next = stream.next() => matches!(next, None | Some(Err(_))),
                    () = self.clock.sleep(poll) => false,
                },
                None => {
                    self.clock.sleep(poll).await;
                    false
                }
            };
            if ended {
                wake = None;
            }
        }
    }

    fn require_workers(&self) -> Result<(), OrchestratorError> {
        if self.workers.is_empty() {
            return Err(OrchestratorError::NotConfigured(
                "no executor, so no workers: build with .executor(…) or .agents(llm, sandboxes)",
            ));
        }
        Ok(())
    }

    fn workers_ended(&self) -> bool {
        self.running
            .lock()
            .as_ref()
            .is_some_and(|r| !r.handles.is_empty() && r.handles.iter().all(JoinHandle::is_finished))
    }
}

impl Drop for Orchestrator {
    fn drop(&mut self) {
        if let Some(r) = self.running.get_mut().take() {
            r.stop.cancel();
        }
    }
}
