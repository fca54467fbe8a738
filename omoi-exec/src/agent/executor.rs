//! `AgentExecutor`: runs a task as an agent in a fresh sandbox, on its own git branch.
//!
//! For each task: create a sandbox (a saga in the adapter: a failed creation leaves nothing
//! behind); seed a git workspace from the origin repository on branch `omoi/<task-id>`, with
//! the branches of predecessor tasks merged in; merge the predecessors' results into the task's
//! context by the configured synthesis strategy; run the agent loop with the tool policy of the
//! task's mode and the budgets of [`ExecConfig`]; on `finish`, commit the work on the task
//! branch and bring the branch back to the origin (implementation), or discard any change a
//! read-only mode left behind (exploration, validation); destroy the sandbox whatever happened.
//!
//! "Whatever happened" is a guard, not a line at the end: success and failure destroy the
//! sandbox before `execute` returns; an execution that is abandoned (its future dropped when the
//! lease is lost or shutdown passes its grace period) or that panics destroys it from the
//! guard's `Drop`, in a background task the worker waits for
//! ([`TaskExecutor::wait_for_cleanup`]) before it stops.
//!
//! A validation's verdict comes from the test commands it ran (recorded by the `run_command`
//! tool), never from the model. A failed verdict, given a discovery service
//! ([`AgentExecutor::with_discoveries`]), branches a blocking discovery whose branch is the
//! revision and a new validation (bounded by `exec.max_validation_iterations`); without one, or
//! past the bound, the validation fails with its history. The task result is a typed
//! [`AgentResult`].

use std::sync::Arc;

use async_trait::async_trait;
use omoi_core::config::ExecConfig;
use omoi_core::{
    Clock, EventStore, ExecutionMode, InterventionStore, LlmClient, Sandbox, SandboxProvider, SandboxSpec, Task,
    TaskStore,
};
use serde_json::{Value, json};
use tracing::{Instrument, info, info_span, warn};

use omoi_core::RecordOutcome;
use omoi_discovery::{DiscoveryService, FailedValidation, Revision};
use tokio_util::task::TaskTracker;

use super::budget::{Budget, BudgetLimits};
use super::discovery::DiscoveryReporter;
use super::mailbox::Mailboxes;
use super::policy::ToolPolicy;
use super::prompt;
use super::result::{AgentResult, DiscoveryNote, RevisionNote};
use super::run::{AgentOutcome, AgentRun, StopCause};
use super::tools::FinishArgs;
use super::verdict::{CommandRun, ValidationVerdict, claimed_pass};
use crate::git::{GitRepo, Workspace, task_branch};
use crate::memory::{MemoryService, SandboxFiles, TrajectoryTap, hooks as memory_hooks};
use crate::synthesis::{Source, Synthesis, SynthesisStrategy, synthesize};
use crate::worker::{ExecContext, ExecError, TaskExecutor, TaskOutput};

/// Runs tasks as agents. Build with [`AgentExecutor::new`] and the setters.
#[derive(Clone)]
pub struct AgentExecutor {
    llm: Arc<dyn LlmClient>,
    sandboxes: Arc<dyn SandboxProvider>,
    tasks: Arc<dyn TaskStore>,
    events: Arc<dyn EventStore>,
    clock: Arc<dyn Clock>,
    origin: Option<GitRepo>,
    base_branch: String,
    config: ExecConfig,
    sandbox_spec: SandboxSpec,
    mailboxes: Mailboxes,
    synthesis: SynthesisStrategy,
    memory: Option<MemoryService>,
    discoveries: Option<DiscoveryService>,
    /// Destroys of abandoned sandboxes still running in the background.
    cleanup: TaskTracker,
}

/// Destroys its sandbox exactly once: [`SandboxGuard::destroy`] on the normal paths, `Drop` (in
/// a tracked background task) when the execution is abandoned or panics.
struct SandboxGuard {
    sandbox: Option<Arc<dyn Sandbox>>,
    cleanup: TaskTracker,
}

impl SandboxGuard {
    async fn destroy(mut self) {
        if let Some(sandbox) = self.sandbox.take() {
            destroy_logged(sandbox).await;
        }
    }
}

impl Drop for SandboxGuard {
    fn drop(&mut self) {
        let Some(sandbox) = self.sandbox.take() else { return };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                warn!(sandbox = %sandbox.id(), "execution abandoned; destroying its sandbox in the background");
                self.cleanup.spawn_on(destroy_logged(sandbox), &runtime);
            }
            Err(_) => tracing::error!(sandbox = %sandbox.id(), "no runtime left to destroy an abandoned sandbox"),
        }
    }
}

async fn destroy_logged(sandbox: Arc<dyn Sandbox>) {
    if let Err(e) = sandbox.destroy().await {
        warn!(sandbox = %sandbox.id(), error = %e, "sandbox destroy failed");
    }
}

impl std::fmt::Debug for AgentExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentExecutor")
            .field("model", &self.llm.model())
            .field("sandboxes", &self.sandboxes.name())
            .field("origin", &self.origin)
            .field("base_branch", &self.base_branch)
            .finish()
    }
}

impl AgentExecutor {
    /// An executor with default budgets, no origin repository (each workspace starts empty) and
    /// the `combine` synthesis strategy.
    pub fn new(
        llm: Arc<dyn LlmClient>,
        sandboxes: Arc<dyn SandboxProvider>,
        tasks: Arc<dyn TaskStore>,
        events: Arc<dyn EventStore>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            llm,
            sandboxes,
            tasks,
            events,
            clock,
            origin: None,
            base_branch: "main".into(),
            config: ExecConfig::default(),
            sandbox_spec: SandboxSpec::default(),
            mailboxes: Mailboxes::new(),
            synthesis: SynthesisStrategy::default(),
            cleanup: TaskTracker::new(),
            discoveries: None,
            memory: None,
        }
    }

    /// Gives every task a context of relevant memories (and its spec's requirements and design)
    /// and writes back what it learned (see [`crate::memory`]).
    pub fn with_memory(mut self, memory: MemoryService) -> Self {
        self.memory = Some(memory);
        self
    }

    /// Seeds workspaces from `origin` at `base_branch` and brings task branches back to it.
    pub fn with_origin(mut self, origin: GitRepo, base_branch: impl Into<String>) -> Self {
        self.origin = Some(origin);
        self.base_branch = base_branch.into();
        self
    }

    /// Budgets and command limits.
    pub fn with_config(mut self, config: ExecConfig) -> Self {
        self.config = config;
        self
    }

    /// What every sandbox is created with.
    pub fn with_sandbox_spec(mut self, spec: SandboxSpec) -> Self {
        self.sandbox_spec = spec;
        self
    }

    /// Mailboxes steering messages are read from.
    pub fn with_mailboxes(mut self, mailboxes: Mailboxes) -> Self {
        self.mailboxes = mailboxes;
        self
    }

    /// Delivers the interventions recorded in `store` (by monitors in any process) to the
    /// running agents, acknowledging each as it is applied.
    pub fn with_interventions(mut self, store: Arc<dyn InterventionStore>) -> Self {
        self.mailboxes = self.mailboxes.with_store(store);
        self
    }

    /// How predecessor results are merged (a task can override it with `input.synthesis`).
    pub fn with_synthesis(mut self, strategy: SynthesisStrategy) -> Self {
        self.synthesis = strategy;
        self
    }

    /// Routes `report_discovery` through `service` (dedup, limits, branches) and branches the
    /// revision of a failed validation through it.
    pub fn with_discoveries(mut self, service: DiscoveryService) -> Self {
        self.discoveries = Some(service);
        self
    }

    /// The predecessors' results merged by the task's strategy, and their branches.
    async fn predecessors(&self, task: &Task) -> Result<(Option<Synthesis>, Vec<String>), ExecError> {
        if task.dependencies.is_empty() {
            return Ok((None, Vec::new()));
        }
        let strategy = task
            .def
            .input
            .get("synthesis")
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or(self.synthesis);
        let mut sources = Vec::new();
        let mut branches = Vec::new();
        for dep in &task.dependencies {
            let t = self
                .tasks
                .get_task(*dep)
                .await
                .map_err(|e| ExecError { retryable: e.is_retryable(), ..ExecError::permanent(e.to_string()) })?;
            let name = t.links.local_id.clone().unwrap_or_else(|| t.id.to_string());
            if let Some(b) = AgentResult::of(&t).and_then(|r| r.branch) {
                branches.push(b);
            }
            sources.push(Source::new(name, t.result.clone().unwrap_or(Value::Null)));
        }
        Ok((Some(synthesize(strategy, &sources)), branches))
    }

    async fn in_sandbox(&self, task: &Task, ctx: &ExecContext, sandbox: &dyn Sandbox) -> Result<TaskOutput, ExecError> {
        let branch = task_branch(task.id);
        let ws = Workspace::prepare(sandbox, self.origin.as_ref(), &self.base_branch, &branch)
            .await
            .map_err(|e| ExecError::retryable(format!("workspace: {e}")))?;
        let (synthesis, branches) = self.predecessors(task).await?;
        // A conflict-resolution task (see `crate::integrate`) starts in the conflicted merge.
        let resolves = task.def.input.get(crate::integrate::RESOLVE_KEY).and_then(Value::as_bool) == Some(true);
        for b in &branches {
            let merged = ws.git(&["merge", "-q", "--no-ff", "--no-edit", &format!("refs/remotes/origin/{b}")]).await;
            if let Err(e) = merged {
                if resolves && task.def.mode == ExecutionMode::Implementation {
                    info!(branch = %b, "left the conflicted merge for the agent to resolve");
                    break;
                }
                let _ = ws.git(&["merge", "--abort"]).await;
                return Err(ExecError::permanent(format!("predecessor branch {b} does not merge cleanly: {e}")));
            }
        }
        let budget = Budget::start(BudgetLimits::from(&self.config), self.clock.clone());
        // Memory: the task's context in (recorded as step 0), its trajectory tapped for learning.
        let files = SandboxFiles(sandbox);
        let tap = TrajectoryTap::new(self.events.clone(), task.id);
        let memory_context = memory_hooks::context_for(self.memory.as_ref(), task, ctx.agent_id, &files, &tap).await;
        let run = AgentRun {
            llm: self.llm.as_ref(),
            sandbox,
            events: &tap,
            gates: vec![&budget],
            policy: ToolPolicy::for_mode(task.def.mode),
            mailboxes: Some(&self.mailboxes),
            task_id: task.id,
            labels: task_labels(task),
            agent_id: ctx.agent_id,
            system: prompt::system(task.def.mode),
            prompt: prompt::task(task, synthesis.as_ref()) + &memory_context,
            finish_output: None,
            finish_check: None,
            command_timeout: self.config.command_timeout,
            output_limit: self.config.output_limit,
            max_consecutive_errors: self.config.max_consecutive_errors,
            max_tokens: 4096,
            cancel: Some(ctx.cancel.clone()),
            discoveries: self.discoveries.as_ref().map(|d| d as &dyn DiscoveryReporter),
        };
        let outcome = run
            .run()
            .await
            .map_err(|e| ExecError { retryable: e.is_retryable(), ..ExecError::permanent(e.to_string()) })?;
        let usage = outcome.usage;
        let finish = match outcome_to_finish(&outcome) {
            Ok(f) => f,
            Err(e) => return Err(e.with_usage(usage)),
        };
        let mut result = AgentResult {
            summary: finish.summary.clone(),
            output: finish.output.clone(),
            turns: outcome.turns,
            discoveries: outcome
                .discoveries
                .iter()
                .map(|(d, told)| DiscoveryNote { kind: d.kind, title: d.title.clone(), outcome: told.clone() })
                .collect(),
            ..AgentResult::default()
        };
        match task.def.mode {
            ExecutionMode::Implementation => {
                let message = format!("{}\n\n{}\n\nomoi-task: {}", task.def.title, finish.summary, task.id);
                let commit = ws
                    .commit_all(&message)
                    .await
                    .map_err(|e| ExecError::retryable(format!("commit: {e}")).with_usage(usage))?;
                let stat = ws.diff_stat().await.unwrap_or_default();
                if let Some(origin) = &self.origin {
                    ws.export_to(origin)
                        .await
                        .map_err(|e| ExecError::retryable(format!("export: {e}")).with_usage(usage))?;
                }
                result.files_changed =
                    stat.lines().filter_map(|l| l.split_once('|').map(|(f, _)| f.trim().to_owned())).collect();
                result.branch = Some(branch);
                result.commit = commit;
                result.diff_stat = Some(stat.trim_end().to_owned());
            }
            ExecutionMode::Exploration | ExecutionMode::Validation => {
                let changes = ws.changes().await.unwrap_or_default();
                if !changes.is_empty() {
                    warn!(count = changes.len(), "read-only mode left changes; discarding them");
                    ws.discard_changes()
                        .await
                        .map_err(|e| ExecError::retryable(format!("discard: {e}")).with_usage(usage))?;
                    result.discarded_changes = changes;
                }
                if task.def.mode == ExecutionMode::Validation {
                    let (verdict, revision) =
                        self.judge(task, &finish, &outcome).await.map_err(|e| e.with_usage(usage))?;
                    result.validation = Some(verdict);
                    result.revision = revision;
                }
            }
        }
        if let Some(s) = synthesis.filter(|s| !s.conflicts.is_empty()) {
            result.synthesis_conflicts = json!(s.conflicts);
        }
        let mut result = result.to_value();
        // Memory: what this task taught, written back.
        if self.memory.is_some() {
            let metadata = crate::memory::task_metadata(task);
            result["memories"] =
                memory_hooks::learn_from(self.memory.as_ref(), &task.def, metadata, &finish.summary, &tap, &files)
                    .await;
        }
        Ok(TaskOutput { result, usage })
    }
}

impl AgentExecutor {
    /// A validation's verdict from its recorded runs (stricter if the model reports a failure the
    /// runs did not show). A failed verdict branches the revision through the discovery service
    /// (the task then completes and its dependents wait for the re-validation), or fails the task
    /// with the history once `max_validation_iterations` is reached or without a service.
    async fn judge(
        &self,
        task: &Task,
        finish: &FinishArgs,
        outcome: &AgentOutcome,
    ) -> Result<(ValidationVerdict, Option<RevisionNote>), ExecError> {
        let mut verdict = ValidationVerdict::of(&outcome.runs)
            .ok_or_else(|| ExecError::retryable("the validation ran no test command"))?;
        if claimed_pass(finish) == Some(false) {
            verdict.passed = false;
        }
        info!(verdict = %verdict.describe(), "validation verdict");
        if verdict.passed {
            return Ok((verdict, None));
        }
        let Some(service) = &self.discoveries else {
            return Err(ExecError::permanent(format!("validation failed: {}", verdict.describe())));
        };
        let failing: Vec<&CommandRun> = verdict.failures().collect();
        let failed = FailedValidation {
            validation: task.clone(),
            commands: if failing.is_empty() {
                verdict.runs.iter().map(|r| r.command.clone()).collect()
            } else {
                failing.iter().map(|r| r.command.clone()).collect()
            },
            output: if failing.is_empty() {
                format!("The tests passed, but the validation found: {}", finish.summary)
            } else {
                failing.iter().map(|r| r.output_tail.as_str()).collect::<Vec<_>>().join("\n")
            },
            files: Vec::new(),
        };
        match service.revise(failed, self.config.max_validation_iterations).await {
            Ok(Revision::Branched { reported, next_iteration }) => {
                let (tasks, local_ids) = match &reported.outcome {
                    RecordOutcome::Branched { tasks, local_ids, .. } => (tasks.clone(), local_ids.clone()),
                    _ => (Vec::new(), Vec::new()),
                };
                info!(outcome = %reported.message(), "validation failed; revision branched");
                let note = RevisionNote { discovery: reported.outcome.discovery(), tasks, local_ids, next_iteration };
                Ok((verdict, Some(note)))
            }
            Ok(Revision::Exhausted { reason, history }) => Err(ExecError::permanent(format!(
                "validation failed ({}); {reason}; history:\n{}",
                verdict.describe(),
                history.join("\n")
            ))),
            Err(e) => Err(ExecError { retryable: e.is_retryable(), ..ExecError::permanent(format!("revision: {e}")) }),
        }
    }
}

/// The finish of a run, or the error its stop cause maps to.
fn outcome_to_finish(o: &AgentOutcome) -> Result<super::tools::FinishArgs, ExecError> {
    match (&o.stop, &o.finish) {
        (StopCause::Finished, Some(f)) => Ok(f.clone()),
        (StopCause::BudgetExceeded(b), _) => Err(ExecError::permanent(b.to_string())),
        // An emergency stop ends this attempt (it counts, like a lost lease); the task may be
        // retried by another run, and the sandbox is destroyed on the way out.
        (StopCause::Stopped { by, message }, _) => Err(ExecError::retryable(format!("stopped by {by}: {message}"))),
        (StopCause::Cancelled, _) => Err(ExecError::retryable("cancelled")),
        // The store already re-queued the task (its lease ended): nothing left to report.
        (StopCause::Requeued, _) => Err(ExecError::retryable("re-queued behind a blocking discovery's branch")),
        (StopCause::ModelStopped, _) => Err(ExecError::retryable("the model stopped without calling finish")),
        (StopCause::TooManyErrors(n), _) => Err(ExecError::retryable(format!("{n} tool calls failed in a row"))),
        (StopCause::Finished, None) => Err(ExecError::retryable("finished without a result")),
    }
}

#[async_trait]
impl TaskExecutor for AgentExecutor {
    async fn execute(&self, task: &Task, ctx: &ExecContext) -> Result<TaskOutput, ExecError> {
        let span = info_span!("agent_task", task = %task.id, mode = %task.def.mode);
        async {
            let mut spec = self.sandbox_spec.clone();
            spec.labels.insert("omoi.task".into(), task.id.to_string());
            spec.labels.insert("omoi.agent".into(), ctx.agent_id.to_string());
            let sandbox = self.sandboxes.create(spec).await.map_err(|e| ExecError {
                retryable: e.is_retryable() || matches!(e, omoi_core::SandboxError::CreateFailed { .. }),
                ..ExecError::permanent(format!("sandbox: {e}"))
            })?;
            info!(sandbox = %sandbox.id(), "sandbox ready");
            let guard = SandboxGuard { sandbox: Some(Arc::clone(&sandbox)), cleanup: self.cleanup.clone() };
            let result = self.in_sandbox(task, ctx, sandbox.as_ref()).await;
            guard.destroy().await;
            result
        }
        .instrument(span)
        .await
    }

    async fn wait_for_cleanup(&self) {
        self.cleanup.close();
        self.cleanup.wait().await;
        self.cleanup.reopen();
    }
}

/// The labels of a task agent's model requests: its title and, for planned tasks, its local id.
fn task_labels(task: &Task) -> std::collections::BTreeMap<String, String> {
    use omoi_core::ports::llm::labels;
    let mut out = std::collections::BTreeMap::from([(labels::TASK_TITLE.to_owned(), task.def.title.clone())]);
    if let Some(local) = &task.links.local_id {
        out.insert(labels::TASK_LOCAL_ID.to_owned(), local.clone());
    }
    out
}
