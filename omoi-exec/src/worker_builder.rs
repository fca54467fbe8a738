//! [`WorkerBuilder`]: a [`Worker`] from one store value with defaults, and running a worker
//! until any future resolves.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use omoi_core::config::{ConfigError, QueueConfig, check_lease_renewal};
use omoi_core::{AgentStore, Clock, EventStore, StoreError, SystemClock, TaskStore};
use tokio_util::sync::CancellationToken;

use crate::worker::{TaskExecutor, Worker, WorkerConfig, WorkerStats};

/// Builds a [`Worker`]; start with [`Worker::builder`].
///
/// Defaults: name `worker`, concurrency 1, no capabilities, the queue settings of
/// [`QueueConfig::default`], the system clock, a 10 s grace period, heartbeats every 5 s when an
/// agent store is given.
///
/// ```
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use omoi_core::{NewTask, TaskStore};
/// use omoi_exec::{Worker, executor_fn};
/// use omoi_store::InMemoryStore;
/// use serde_json::json;
///
/// let store = InMemoryStore::new();
/// store.insert_tasks(vec![NewTask::new("say hello")]).await?;
/// let worker = Worker::builder(store.clone())
///     .concurrency(4)
///     .executor(executor_fn(|task, _ctx| async move { Ok(json!({ "said": task.def.title })) }))
///     .build()?;
/// let stats = worker.run_until(tokio::time::sleep(std::time::Duration::from_millis(200))).await?;
/// assert_eq!(stats.completed, 1);
/// # Ok(()) }
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(demo()).unwrap();
/// ```
pub struct WorkerBuilder {
    tasks: Arc<dyn TaskStore>,
    events: Arc<dyn EventStore>,
    agents: Option<Arc<dyn AgentStore>>,
    executor: Option<Arc<dyn TaskExecutor>>,
    clock: Arc<dyn Clock>,
    name: String,
    concurrency: usize,
    capabilities: Vec<String>,
    queue: QueueConfig,
    grace_period: Duration,
    heartbeat_every: Duration,
}

impl std::fmt::Debug for WorkerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerBuilder")
            .field("name", &self.name)
            .field("concurrency", &self.concurrency)
            .field("capabilities", &self.capabilities)
            .finish_non_exhaustive()
    }
}

/// Why a worker (or an orchestrator) could not be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A setting is out of range; names the field.
    #[error("invalid setting {}: {}", .0.field, .0.reason)]
    Config(ConfigError),
    /// Something the build needs was not given.
    #[error("{0} is required: {1}")]
    Missing(&'static str, &'static str),
}

impl From<ConfigError> for BuildError {
    fn from(e: ConfigError) -> Self {
        Self::Config(e)
    }
}

impl Worker {
    /// A builder over one store value that is both the task queue and its event log.
    pub fn builder<S>(store: S) -> WorkerBuilder
    where
        S: TaskStore + EventStore + Clone + 'static,
    {
        Self::builder_from(Arc::new(store.clone()), Arc::new(store))
    }

    /// A builder over a task queue and its event log given as separate trait objects.
    pub fn builder_from(tasks: Arc<dyn TaskStore>, events: Arc<dyn EventStore>) -> WorkerBuilder {
        WorkerBuilder {
            tasks,
            events,
            agents: None,
            executor: None,
            clock: Arc::new(SystemClock),
            name: "worker".into(),
            concurrency: 1,
            capabilities: Vec::new(),
            queue: QueueConfig::default(),
            grace_period: Duration::from_secs(10),
            heartbeat_every: Duration::from_secs(5),
        }
    }

    /// Runs until `signal` resolves (a ctrl-c future, a timer, a oneshot receiver, …), then
    /// shuts down gracefully as [`Worker::run`] does.
    pub async fn run_until(&self, signal: impl Future<Output = ()> + Send) -> Result<WorkerStats, StoreError> {
        let token = CancellationToken::new();
        let run = self.run(token.clone());
        tokio::pin!(run);
        tokio::pin!(signal);
        tokio::select! {
            stats = &mut run => return stats,
            () = &mut signal => token.cancel(),
        }
        run.await
    }
}

impl WorkerBuilder {
    /// What runs each task (required). Plain closures: [`executor_fn`](crate::executor_fn).
    pub fn executor(mut self, executor: impl TaskExecutor + 'static) -> Self {
        self.executor = Some(Arc::new(executor));
        self
    }

    /// The same, for an executor already shared.
    pub fn executor_arc(mut self, executor: Arc<dyn TaskExecutor>) -> Self {
        self.executor = Some(executor);
        self
    }

    /// The agent (lease holder) name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Tasks run at once (at least 1; 0 is refused by [`build`](Self::build)).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }

    /// Capabilities offered: a task is claimed only if it requires a subset of them.
    pub fn capabilities(mut self, caps: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.capabilities = caps.into_iter().map(Into::into).collect();
        self
    }

    /// Lease, renewal, polling and sweep settings.
    pub fn queue_config(mut self, queue: QueueConfig) -> Self {
        self.queue = queue;
        self
    }

    /// The clock (tests use `omoi_core::testkit::ManualClock`).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// How long running tasks may finish after shutdown is requested.
    pub fn grace_period(mut self, grace: Duration) -> Self {
        self.grace_period = grace;
        self
    }

    /// Registers the worker as an agent in `agents` and heartbeats every `every`.
    pub fn agent_store(mut self, agents: Arc<dyn AgentStore>, every: Duration) -> Self {
        self.agents = Some(agents);
        self.heartbeat_every = every;
        self
    }

    /// The worker, or the first setting that is wrong.
    pub fn build(self) -> Result<Worker, BuildError> {
        let config = self.worker_config()?;
        let executor = self.executor.ok_or(BuildError::Missing("executor", "call .executor(…) or .executor_arc(…)"))?;
        let worker = Worker::new(self.tasks, self.events, executor, self.clock, config);
        Ok(match self.agents {
            Some(a) => worker.with_agent_store(a),
            None => worker,
        })
    }

    fn worker_config(&self) -> Result<WorkerConfig, BuildError> {
        if self.concurrency == 0 {
            return Err(ConfigError { field: "worker.concurrency", reason: "must be at least 1".into() }.into());
        }
        if self.name.trim().is_empty() {
            return Err(ConfigError { field: "worker.name", reason: "must not be empty".into() }.into());
        }
        check_lease_renewal(self.queue.lease_ttl, self.queue.lease_renew_every)?;
        for (field, d) in [
            ("queue.poll_interval", self.queue.poll_interval),
            ("queue.reclaim_interval", self.queue.reclaim_interval),
            ("worker.heartbeat_every", self.heartbeat_every),
        ] {
            if d.is_zero() {
                return Err(ConfigError { field, reason: "must be longer than 0 s".into() }.into());
            }
        }
        let mut c = WorkerConfig::new(self.name.clone(), self.concurrency, &self.queue)
            .with_capabilities(self.capabilities.clone());
        c.grace_period = self.grace_period;
        c.heartbeat_every = self.heartbeat_every;
        Ok(c)
    }
}
