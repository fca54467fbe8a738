//! `AgentPhaseExecutor`: spec phases produced by an exploration agent that reads the target
//! repository in a sandbox and ends with `finish` carrying the phase's typed output.
//!
//! Explore is the natural agentic phase (OmoiOS ran every phase as an agent); other phases can
//! be added with [`AgentPhaseExecutor::with_phases`], and the rest go to a fallback executor
//! (by default one structured model call, [`StructuredExecutor`]). The agent runs in
//! exploration mode: it can read, list, search and run read-only programs, never write. Its
//! `finish` is checked against the phase's output type before it is accepted, so a malformed
//! output goes back to the agent instead of failing the attempt. The spec's token and cost
//! budget is checked before every model call. What the agent reports with `report_discovery`
//! is kept in the phase's checkpoint and reported by SYNC once the plan is stored.

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use omoi_core::config::SpecConfig;
use omoi_core::{
    AgentId, Clock, EventStore, ExecutionMode, LlmClient, ReportedDiscovery, SandboxProvider, SandboxSpec, SpecPhase,
    TaskDefinition, TaskId,
};
use omoi_spec::output::PhaseOutput;
use omoi_spec::{PhaseAttempt, PhaseContext, PhaseError, PhaseExecutor, StructuredExecutor};
use tracing::{Instrument, info_span, warn};

use crate::agent::{
    AgentRun, Budget, BudgetExceeded, BudgetLimits, DiscoveryReporter, FinishArgs, Reply, StopCause, ToolPolicy,
};
use crate::git::{GitRepo, Workspace};
use crate::memory::{MemoryService, SandboxFiles, TrajectoryTap, hooks as memory_hooks};

/// A spec phase's `report_discovery`: no task exists yet, so the finding is kept (in the
/// phase's checkpoint) and SYNC reports it as a discovery of the stored plan.
struct KeepForSync;

#[async_trait]
impl DiscoveryReporter for KeepForSync {
    async fn report(&self, _: TaskId, d: &ReportedDiscovery) -> Result<Reply, String> {
        let text = format!(
            "finding \"{}\" kept: once the plan is stored, SYNC reports it as a discovery of the task it concerns \
             (a finding the plan already covers becomes a duplicate of that task)",
            d.title
        );
        Ok(Reply { text, requeued: false })
    }
}

/// Runs chosen spec phases as read-only agents over a repository.
#[derive(Clone)]
pub struct AgentPhaseExecutor {
    llm: Arc<dyn LlmClient>,
    sandboxes: Arc<dyn SandboxProvider>,
    events: Arc<dyn EventStore>,
    clock: Arc<dyn Clock>,
    repo: GitRepo,
    base_branch: String,
    phases: BTreeSet<SpecPhase>,
    fallback: Arc<dyn PhaseExecutor>,
    config: SpecConfig,
    sandbox_spec: SandboxSpec,
    memory: Option<MemoryService>,
}

impl std::fmt::Debug for AgentPhaseExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentPhaseExecutor")
            .field("model", &self.llm.model())
            .field("repo", &self.repo)
            .field("phases", &self.phases)
            .finish()
    }
}

impl AgentPhaseExecutor {
    /// Explore runs as an agent over `repo` at `base_branch`; other phases make one structured
    /// call to the same model.
    pub fn new(
        llm: Arc<dyn LlmClient>,
        sandboxes: Arc<dyn SandboxProvider>,
        events: Arc<dyn EventStore>,
        clock: Arc<dyn Clock>,
        repo: GitRepo,
        base_branch: impl Into<String>,
    ) -> Self {
        Self {
            fallback: Arc::new(StructuredExecutor::new(llm.clone())),
            llm,
            sandboxes,
            events,
            clock,
            repo,
            base_branch: base_branch.into(),
            phases: BTreeSet::from([SpecPhase::Explore]),
            config: SpecConfig::default(),
            sandbox_spec: SandboxSpec::default(),
            memory: None,
        }
    }

    /// Gives every agentic phase the memories relevant to the spec's title and idea, and writes
    /// back what an exploring phase learned about the codebase (see [`crate::memory`]).
    pub fn with_memory(mut self, memory: MemoryService) -> Self {
        self.memory = Some(memory);
        self
    }

    /// Runs these phases as agents (the others go to the fallback).
    pub fn with_phases(mut self, phases: impl IntoIterator<Item = SpecPhase>) -> Self {
        self.phases = phases.into_iter().collect();
        self
    }

    /// The executor of the non-agentic phases.
    pub fn with_fallback(mut self, fallback: Arc<dyn PhaseExecutor>) -> Self {
        self.fallback = fallback;
        self
    }

    /// Turn and time limits per phase (`max_turns`, `phase_timeout`).
    pub fn with_config(mut self, config: SpecConfig) -> Self {
        self.config = config;
        self
    }

    /// What the sandboxes are created with.
    pub fn with_sandbox_spec(mut self, spec: SandboxSpec) -> Self {
        self.sandbox_spec = spec;
        self
    }

    async fn run_agent(&self, ctx: &PhaseContext) -> Result<PhaseAttempt, PhaseError> {
        ctx.budget.check()?;
        let executor_error = |message: String, retryable: bool| PhaseError::Executor { message, retryable };
        let mut spec = self.sandbox_spec.clone();
        spec.labels.insert("omoi.spec".into(), ctx.spec.id.to_string());
        spec.labels.insert("omoi.phase".into(), ctx.phase.to_string());
        let sandbox =
            self.sandboxes.create(spec).await.map_err(|e| executor_error(format!("sandbox: {e}"), e.is_retryable()))?;
        let result = async {
            let branch = format!("omoi/spec-{}-{}", ctx.spec.id, ctx.phase);
            Workspace::prepare(sandbox.as_ref(), Some(&self.repo), &self.base_branch, &branch)
                .await
                .map_err(|e| executor_error(format!("workspace: {e}"), true))?;
            // The spec's remaining budget, enforced before every call of this run.
            let spent = ctx.budget.spent();
            let limits = ctx.budget.limits();
            let budget = Budget::start(
                BudgetLimits {
                    max_turns: Some(self.config.max_turns),
                    max_tokens: limits.max_tokens.map(|l| l.saturating_sub(spent.total_tokens())),
                    max_cost_usd: limits.max_cost_usd.map(|l| (l - spent.cost_usd).max(0.0)),
                    max_wall_time: Some(self.config.phase_timeout),
                },
                self.clock.clone(),
            );
            let phase = ctx.phase;
            let check =
                move |f: &FinishArgs| PhaseOutput::parse(phase, &f.output).map(|_| ()).map_err(|e| e.to_string());
            let system = format!(
                "{}\n\nYou are in a read-only checkout of the target repository. Explore it with the tools \
                 (read_file, list_files, search, run_readonly) until you can answer, then call `finish` \
                 with a one-line summary and `output` set to the {} phase's JSON output.",
                ctx.prompt.system, ctx.phase
            );
            // Memory: relevant memories in (recorded as step 0), the trajectory tapped for learning.
            let (run_id, agent_id) = (TaskId::new(), AgentId::new());
            let files = SandboxFiles(sandbox.as_ref());
            let tap = TrajectoryTap::new(self.events.clone(), run_id);
            let query = format!("{}\n{}", ctx.spec.title, ctx.spec.idea);
            let memory_context =
                memory_hooks::context_for_query(self.memory.as_ref(), &query, run_id, agent_id, &files, &tap).await;
            let run = AgentRun {
                llm: self.llm.as_ref(),
                sandbox: sandbox.as_ref(),
                events: &tap,
                gates: vec![&budget],
                policy: ToolPolicy::for_mode(ExecutionMode::Exploration),
                mailboxes: None,
                task_id: run_id,
                labels: [(omoi_core::ports::llm::labels::PHASE.to_owned(), ctx.phase.to_string())].into(),
                agent_id,
                system,
                prompt: ctx.prompt.user.clone() + &memory_context,
                finish_output: Some(ctx.output_schema.schema.clone()),
                finish_check: Some(&check),
                command_timeout: std::time::Duration::from_secs(60),
                output_limit: 64 * 1024,
                max_consecutive_errors: 4,
                max_tokens: 8192,
                cancel: None,
                discoveries: Some(&KeepForSync),
            };
            let outcome = run.run().await.map_err(|e| executor_error(e.to_string(), e.is_retryable()))?;
            ctx.budget.record(outcome.usage).await?;
            // Memory: what the exploration learned about the codebase, written back.
            if let (StopCause::Finished, Some(f), Some(_)) = (&outcome.stop, &outcome.finish, &self.memory) {
                let def = TaskDefinition {
                    title: format!("{} ({} phase)", ctx.spec.title, ctx.phase),
                    mode: ExecutionMode::Exploration,
                    ..TaskDefinition::default()
                };
                let metadata = serde_json::json!({"spec_id": ctx.spec.id, "phase": ctx.phase});
                memory_hooks::learn_from(self.memory.as_ref(), &def, metadata, &f.summary, &tap, &files).await;
            }
            let findings = outcome.discoveries.into_iter().map(|(d, _)| d).collect();
            match (outcome.stop, outcome.finish) {
                (StopCause::Finished, Some(f)) => {
                    let raw = serde_json::to_string(&f.output).unwrap_or_default();
                    Ok(PhaseAttempt { output: f.output, raw, usage: outcome.usage, findings })
                }
                (StopCause::BudgetExceeded(BudgetExceeded::Tokens { used, limit }), _) => {
                    Err(PhaseError::Budget(omoi_spec::BudgetExceeded::Tokens {
                        spent: spent.total_tokens() + used,
                        requested: 0,
                        limit: spent.total_tokens() + limit,
                    }))
                }
                (StopCause::BudgetExceeded(BudgetExceeded::Cost { used, limit }), _) => {
                    Err(PhaseError::Budget(omoi_spec::BudgetExceeded::Cost {
                        spent_usd: spent.cost_usd + used,
                        limit_usd: spent.cost_usd + limit,
                    }))
                }
                (stop, _) => Err(executor_error(format!("the {} agent did not finish: {stop:?}", ctx.phase), true)),
            }
        }
        .await;
        if let Err(e) = sandbox.destroy().await {
            warn!(error = %e, "sandbox destroy failed");
        }
        result
    }
}

#[async_trait]
impl PhaseExecutor for AgentPhaseExecutor {
    async fn execute(&self, ctx: &PhaseContext) -> Result<PhaseAttempt, PhaseError> {
        if !self.phases.contains(&ctx.phase) {
            return self.fallback.execute(ctx).await;
        }
        let span = info_span!("agent_phase", spec = %ctx.spec.id, phase = %ctx.phase, attempt = ctx.attempt);
        self.run_agent(ctx).instrument(span).await
    }
}
