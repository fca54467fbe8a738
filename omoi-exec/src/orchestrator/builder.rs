//! [`OrchestratorBuilder`]: defaults for everything but what runs the tasks.

use std::sync::Arc;
use std::time::Duration;

use omoi_core::config::{ConfigError, OmoiConfig};
use omoi_core::{
    AgentStore, Clock, DiscoveryStore, EventStore, HashingEmbedder, InterventionStore, LlmClient, SandboxProvider,
    SpecStore, SystemClock, TaskStore,
};
use omoi_discovery::DiscoveryService;
use omoi_spec::{PhaseExecutor, SpecRunner, StructuredExecutor};
use parking_lot::Mutex;

use super::Orchestrator;
use super::background::{Background, BackgroundService};
use crate::agent::AgentExecutor;
use crate::git::GitRepo;
use crate::memory::MemoryService;
use crate::spec_agent::AgentPhaseExecutor;
use crate::worker::{TaskExecutor, Worker};
use crate::worker_builder::BuildError;

/// Builds an [`Orchestrator`]; start with [`Orchestrator::builder`].
///
/// Defaults: the system clock, [`OmoiConfig::default`], one worker running one task at a time,
/// no settle timeout. Required: what runs the tasks — [`executor`](Self::executor) (any
/// [`TaskExecutor`], e.g. a closure through [`executor_fn`](crate::executor_fn)) or
/// [`agents`](Self::agents) (a model and sandboxes) — or, for an orchestrator that only plans,
/// a spec pipeline ([`spec_model`](Self::spec_model)).
pub struct OrchestratorBuilder {
    tasks: Arc<dyn TaskStore>,
    events: Arc<dyn EventStore>,
    specs: Arc<dyn SpecStore>,
    agents_store: Arc<dyn AgentStore>,
    discoveries: Arc<dyn DiscoveryStore>,
    interventions: Arc<dyn InterventionStore>,
    clock: Arc<dyn Clock>,
    config: OmoiConfig,
    memory: Option<MemoryService>,
    background: Vec<Background>,
    executor: Option<Arc<dyn TaskExecutor>>,
    model: Option<(Arc<dyn LlmClient>, Arc<dyn SandboxProvider>)>,
    phases: Option<Arc<dyn PhaseExecutor>>,
    origin: Option<(GitRepo, String)>,
    workers: usize,
    concurrency: usize,
    capabilities: Vec<String>,
    settle_timeout: Option<Duration>,
}

impl std::fmt::Debug for OrchestratorBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrchestratorBuilder")
            .field("workers", &self.workers)
            .field("concurrency", &self.concurrency)
            .field("origin", &self.origin)
            .field("memory", &self.memory.is_some())
            .field("background", &self.background.iter().map(|b| b.name).collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl OrchestratorBuilder {
    pub(super) fn new(
        tasks: Arc<dyn TaskStore>,
        events: Arc<dyn EventStore>,
        specs: Arc<dyn SpecStore>,
        agents_store: Arc<dyn AgentStore>,
        discoveries: Arc<dyn DiscoveryStore>,
        interventions: Arc<dyn InterventionStore>,
    ) -> Self {
        Self {
            tasks,
            events,
            specs,
            agents_store,
            discoveries,
            interventions,
            clock: Arc::new(SystemClock),
            config: OmoiConfig::default(),
            memory: None,
            background: Vec::new(),
            executor: None,
            model: None,
            phases: None,
            origin: None,
            workers: 1,
            concurrency: 1,
            capabilities: Vec::new(),
            settle_timeout: None,
        }
    }

    /// Runs every task with `executor` (instead of, or overriding, the agents of
    /// [`agents`](Self::agents)).
    pub fn executor(mut self, executor: impl TaskExecutor + 'static) -> Self {
        self.executor = Some(Arc::new(executor));
        self
    }

    /// The same, for an executor already shared.
    pub fn executor_arc(mut self, executor: Arc<dyn TaskExecutor>) -> Self {
        self.executor = Some(executor);
        self
    }

    /// Runs tasks as agents of `llm` in sandboxes of `sandboxes` (an [`AgentExecutor`]), and the
    /// spec phases with the same model (explore as a read-only agent over the origin when one is
    /// set, see [`origin`](Self::origin)).
    pub fn agents(mut self, llm: Arc<dyn LlmClient>, sandboxes: Arc<dyn SandboxProvider>) -> Self {
        self.model = Some((llm, sandboxes));
        self
    }

    /// Gives the agents of [`agents`](Self::agents) memory: every task starts with a context of
    /// the relevant memories (and its spec's requirements and design) and writes back what it
    /// learned, and the agentic spec phases (explore) get the memories relevant to the spec and
    /// write back what they learned about the codebase (see [`crate::memory`]). The service is
    /// given this orchestrator's spec store. [`MemoryService::new`] has already checked the
    /// embedder's dimension against the store's.
    pub fn memory(mut self, memory: MemoryService) -> Self {
        self.memory = Some(memory);
        self
    }

    /// Runs `service` beside the workers — e.g. the monitoring loop of `omoi-monitor`: started
    /// with them ([`Orchestrator::start`]) and stopped after them ([`Orchestrator::shutdown`]
    /// cancels its token once the workers have stopped, then waits for it). `service` is called
    /// again on each start after a shutdown.
    pub fn background(mut self, name: &'static str, service: impl BackgroundService + 'static) -> Self {
        self.background.push(Background { name, service: Arc::new(service) });
        self
    }

    /// Runs spec phases with `phases` instead of the model given to [`agents`](Self::agents).
    pub fn spec_executor(mut self, phases: Arc<dyn PhaseExecutor>) -> Self {
        self.phases = Some(phases);
        self
    }

    /// Runs the spec phases as one structured call each to `llm` (no sandboxes). Enough on its
    /// own for an orchestrator that only turns ideas into specs and task plans.
    pub fn spec_model(mut self, llm: Arc<dyn LlmClient>) -> Self {
        self.phases = Some(Arc::new(StructuredExecutor::new(llm)));
        self
    }

    /// The repository task workspaces are seeded from, task branches come back to, and
    /// [`Orchestrator::merge`] merges into (at `base_branch`).
    pub fn origin(mut self, repo: GitRepo, base_branch: impl Into<String>) -> Self {
        self.origin = Some((repo, base_branch.into()));
        self
    }

    /// The whole configuration (validated by [`build`](Self::build)).
    pub fn config(mut self, config: OmoiConfig) -> Self {
        self.config = config;
        self
    }

    /// The clock (tests use `omoi_core::testkit::ManualClock`).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Worker count (at least 1).
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }

    /// Tasks each worker runs at once (at least 1).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }

    /// Capabilities every worker offers.
    pub fn capabilities(mut self, caps: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.capabilities = caps.into_iter().map(Into::into).collect();
        self
    }

    /// Gives up [`run_until_settled`](Orchestrator::run_until_settled) after `limit`.
    pub fn settle_timeout(mut self, limit: Duration) -> Self {
        self.settle_timeout = Some(limit);
        self
    }

    /// How long running tasks may finish after shutdown is requested: `heartbeat.graceful_stop`
    /// of the configuration (call it after [`config`](Self::config), which replaces the whole
    /// configuration).
    pub fn grace_period(mut self, grace: Duration) -> Self {
        self.config.heartbeat.graceful_stop = grace;
        self
    }

    /// The orchestrator, or the first setting that is wrong (a [`ConfigError`] naming the
    /// field) or missing.
    pub fn build(self) -> Result<Orchestrator, BuildError> {
        self.config.validate()?;
        if self.workers == 0 {
            return Err(ConfigError { field: "orchestrator.workers", reason: "must be at least 1".into() }.into());
        }
        let memory = self.memory.clone().map(|m| m.with_specs(self.specs.clone()));
        if memory.is_some() && self.model.is_none() {
            return Err(BuildError::Missing(
                "a model for the memory",
                "memory is given to agents: call .agents(llm, sandboxes) too",
            ));
        }
        let executor: Option<Arc<dyn TaskExecutor>> = match (&self.executor, &self.model) {
            (Some(e), _) => Some(e.clone()),
            (None, Some((llm, sandboxes))) => {
                let mut agent = AgentExecutor::new(
                    llm.clone(),
                    sandboxes.clone(),
                    self.tasks.clone(),
                    self.events.clone(),
                    self.clock.clone(),
                )
                .with_config(self.config.exec.clone())
                // Steering recorded by monitors (in this or any other process) reaches the
                // agents between turns.
                .with_interventions(self.interventions.clone())
                // Discoveries (an agent's report_discovery, a failed validation's revision)
                // branch the graph, deduplicated and bounded by the `discovery` config.
                .with_discoveries(
                    DiscoveryService::new(self.discoveries.clone(), self.tasks.clone(), &self.config.discovery)
                        .with_embedder(Arc::new(HashingEmbedder::new(256))),
                );
                if let Some((repo, base)) = &self.origin {
                    agent = agent.with_origin(repo.clone(), base.clone());
                }
                if let Some(memory) = &memory {
                    agent = agent.with_memory(memory.clone());
                }
                Some(Arc::new(agent))
            }
            (None, None) if self.phases.is_some() => None, // a spec pipeline only
            (None, None) => {
                return Err(BuildError::Missing(
                    "an executor",
                    "call .executor(executor_fn(…)), .agents(llm, sandboxes) or .spec_model(llm)",
                ));
            }
        };
        let phases: Option<Arc<dyn PhaseExecutor>> = match (&self.phases, &self.model, &self.origin) {
            (Some(p), _, _) => Some(p.clone()),
            (None, Some((llm, sandboxes)), Some((repo, base))) => {
                let mut phases = AgentPhaseExecutor::new(
                    llm.clone(),
                    sandboxes.clone(),
                    self.events.clone(),
                    self.clock.clone(),
                    repo.clone(),
                    base.clone(),
                )
                .with_config(self.config.spec.clone());
                if let Some(memory) = &memory {
                    phases = phases.with_memory(memory.clone());
                }
                Some(Arc::new(phases))
            }
            (None, Some((llm, _)), None) => Some(Arc::new(StructuredExecutor::new(llm.clone()))),
            (None, None, _) => None,
        };
        let spec_runner = phases.map(|p| {
            SpecRunner::new(self.specs.clone(), self.events.clone(), self.clock.clone(), p, self.config.spec.clone())
        });
        let mut workers = Vec::with_capacity(self.workers);
        for i in (0..self.workers).filter(|_| executor.is_some()) {
            let worker = Worker::builder_from(self.tasks.clone(), self.events.clone())
                .name(format!("worker-{}", i + 1))
                .concurrency(self.concurrency)
                .capabilities(self.capabilities.clone())
                .queue_config(self.config.queue.clone())
                .clock(self.clock.clone())
                .grace_period(self.config.heartbeat.graceful_stop)
                .agent_store(self.agents_store.clone(), self.config.heartbeat.ttl_running / 3)
                .executor_arc(executor.clone().expect("filtered above"))
                .build()?;
            workers.push(worker);
        }
        Ok(Orchestrator {
            tasks: self.tasks,
            events: self.events,
            specs: self.specs,
            clock: self.clock,
            config: self.config,
            workers,
            spec_runner,
            origin: self.origin,
            settle_timeout: self.settle_timeout,
            background: self.background,
            running: Mutex::new(None),
            submitted: Mutex::new(super::Submitted::default()),
        })
    }
}
