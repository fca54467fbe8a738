//! The spec runner: phases in order, attempts with feedback and backoff, checkpoints, resume,
//! approval gates, budgets and events.

use std::sync::Arc;
use std::time::Duration;

use omoi_core::config::SpecConfig;
use omoi_core::{
    Clock, Event, EventStore, LlmError, NewSpec, PhaseCheckpoint, Spec, SpecEvent, SpecId, SpecPhase, SpecState,
    SpecStore,
};
use omoi_discovery::DiscoveryService;
use tracing::Instrument;

use crate::budget::{Budget, BudgetLimits};
use crate::error::SpecError;
use crate::evaluate::{Evaluator, Judge, JudgeRequest, StructuralEvaluator};
use crate::executor::{PhaseContext, PhaseError, PhaseExecutor};
use crate::findings;
use crate::output::{PhaseOutput, PhaseOutputs};
use crate::prompt::PromptBuilder;
use crate::sync::{SyncError, analyze, build_plan};

/// Where a run stopped without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    /// Every phase passed; tickets and tasks are stored.
    Completed,
    /// `phase` passed and waits for [`SpecRunner::approve`] or [`SpecRunner::reject`].
    AwaitingApproval(SpecPhase),
}

/// Runs specs through explore → prd → requirements → design → tasks → sync.
///
/// - Each phase gets up to `max_attempts` attempts; a failed attempt's feedback (evaluator
///   findings, or the precise reason a malformed answer could not be used) goes into the next
///   prompt, after a backoff of `retry_base_delay` · 2ⁿ (2 s, 4 s) on the [`Clock`].
/// - A passed phase is checkpointed ([`SpecStore::save_checkpoint`]); a later run, by this or a
///   fresh runner, skips every checkpointed phase (OmoiOS re-ran them all).
/// - Phases listed in `approval_gates` stop the run in `AwaitingApproval`; [`SpecRunner::reject`]
///   re-runs the phase with the reviewer's feedback. A gate open longer than `approval_timeout`
///   (on the [`Clock`], from when the spec started waiting) expires: [`SpecRunner::approve`] and
///   [`SpecRunner::reject`] then fail with [`SpecError::ApprovalTimedOut`],
///   [`SpecRunner::expire_approvals`] sweeps every expired gate, and an expired spec is
///   `Failed` at its phase (a `spec.phase_failed` event says why); running it again re-opens
///   the gate.
/// - Model calls go through a [`Budget`] built from `max_tokens` / `max_cost_usd` and the
///   spec's persisted usage, so the budget spans resumes.
/// - Every attempt start, evaluation, retry and failure is appended to the [`EventStore`]; state
///   changes and checkpoints are recorded by the store with their own events.
/// - SYNC is computed, not asked of a model (see [`crate::sync`]).
pub struct SpecRunner {
    specs: Arc<dyn SpecStore>,
    events: Arc<dyn EventStore>,
    clock: Arc<dyn Clock>,
    executor: Arc<dyn PhaseExecutor>,
    evaluator: Arc<dyn Evaluator>,
    judge: Option<(Arc<dyn Judge>, f64)>,
    config: SpecConfig,
    prompts: PromptBuilder,
    discoveries: Option<DiscoveryService>,
}

impl std::fmt::Debug for SpecRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpecRunner").field("config", &self.config).field("clock", &self.clock).finish_non_exhaustive()
    }
}

/// How one attempt ended when it did not pass.
struct Miss {
    score: Option<f64>,
    /// Feedback for the model's next attempt (`None` keeps the previous feedback).
    feedback: Option<String>,
    /// What the retry event says.
    note: String,
    transient: Option<LlmError>,
}

impl SpecRunner {
    /// A runner with the structural evaluators.
    pub fn new(
        specs: Arc<dyn SpecStore>,
        events: Arc<dyn EventStore>,
        clock: Arc<dyn Clock>,
        executor: Arc<dyn PhaseExecutor>,
        config: SpecConfig,
    ) -> Self {
        let prompts = PromptBuilder::new(config.prompt_context_chars);
        Self {
            specs,
            events,
            clock,
            executor,
            evaluator: Arc::new(StructuralEvaluator),
            judge: None,
            config,
            prompts,
            discoveries: None,
        }
    }

    /// Where SYNC reports what the spec phases' agents found (`report_discovery`) once the plan
    /// is stored: each finding becomes a discovery of the synced task it concerns —
    /// deduplicated against the plan and bounded by the service's limits (see
    /// [`DiscoveryService::report_findings`]). Without one, SYNC lists the findings in its
    /// output as not reported.
    pub fn with_discoveries(mut self, service: DiscoveryService) -> Self {
        self.discoveries = Some(service);
        self
    }

    /// Replaces the evaluator (for example with one that adds an LLM judge).
    pub fn with_evaluator(mut self, evaluator: Arc<dyn Evaluator>) -> Self {
        self.evaluator = evaluator;
        self
    }

    /// Adds an LLM judge (off by default): an output the structural evaluator passes is also
    /// judged, and the score becomes `(1 − weight) · structural + weight · judge`, which must
    /// still reach the threshold. The judge's model calls go through the spec's budget.
    pub fn with_judge(mut self, judge: Arc<dyn Judge>, weight: f64) -> Self {
        self.judge = Some((judge, weight));
        self
    }

    /// The configuration.
    pub fn config(&self) -> &SpecConfig {
        &self.config
    }

    /// Creates a spec and runs it. An empty title or idea is refused (`InvalidInput`) before
    /// anything is stored or any model is called.
    pub async fn start(&self, spec: NewSpec) -> Result<(SpecId, RunOutcome), SpecError> {
        for (field, value) in [("title", &spec.title), ("idea", &spec.idea)] {
            if value.trim().is_empty() {
                return Err(SpecError::Store(omoi_core::StoreError::InvalidInput(format!(
                    "the spec {field} is empty"
                ))));
            }
        }
        let id = self.specs.create_spec(spec).await?.id;
        Ok((id, self.run(id).await?))
    }

    /// Runs (or resumes) spec `id` from its first phase without a checkpoint, until it completes,
    /// waits for approval, or a phase fails (the spec is then `Failed` and can be run again).
    pub async fn run(&self, id: SpecId) -> Result<RunOutcome, SpecError> {
        self.drive(id, None).await
    }

    /// Approves the gated phase of spec `id` and continues the run.
    pub async fn approve(&self, id: SpecId) -> Result<RunOutcome, SpecError> {
        self.awaiting(id).await?;
        self.specs.transition_spec(id, SpecEvent::Approve).await?;
        self.drive(id, None).await
    }

    /// Rejects the gated phase of spec `id`: the phase runs again with `feedback` in its
    /// prompt, then the run continues (stopping at the gate again if it passes).
    pub async fn reject(&self, id: SpecId, feedback: &str) -> Result<RunOutcome, SpecError> {
        let phase = self.awaiting(id).await?;
        self.specs.transition_spec(id, SpecEvent::Reject).await?;
        let note = format!("A reviewer rejected the previous {phase} output:\n{}", feedback.trim());
        self.drive(id, Some((phase, note))).await
    }

    async fn awaiting(&self, id: SpecId) -> Result<SpecPhase, SpecError> {
        let spec = self.specs.get_spec(id).await?;
        match spec.state {
            SpecState::AwaitingApproval { phase } => match self.expired(&spec) {
                Some(waited) => Err(self.expire(id, phase, waited).await),
                None => Ok(phase),
            },
            state => Err(SpecError::NotAwaitingApproval { state }),
        }
    }

    /// How long `spec` has waited, if that is past `approval_timeout`.
    fn expired(&self, spec: &Spec) -> Option<Duration> {
        let waited = (self.clock.now() - spec.updated_at).to_std().unwrap_or_default();
        (waited >= self.config.approval_timeout).then_some(waited)
    }

    /// Fails spec `id` at its expired gate `phase`; returns the error that says so.
    async fn expire(&self, id: SpecId, phase: SpecPhase, waited: Duration) -> SpecError {
        let error = SpecError::ApprovalTimedOut { phase, waited, limit: self.config.approval_timeout };
        tracing::warn!(spec = %id, %phase, ?waited, "approval gate expired");
        // Reject leaves the gate (the phase keeps its checkpoint), Fail records the failure.
        if let Err(e) = self.specs.transition_spec(id, SpecEvent::Reject).await {
            return e.into();
        }
        self.fail(id, phase, &error).await;
        error
    }

    /// Fails every spec whose approval gate has been open longer than `approval_timeout`;
    /// returns them. Call it periodically (a gate is also checked on `approve` / `reject`).
    pub async fn expire_approvals(&self) -> Result<Vec<SpecId>, SpecError> {
        let mut expired = Vec::new();
        for spec in self.specs.list_specs().await? {
            if let SpecState::AwaitingApproval { phase } = spec.state
                && let Some(waited) = self.expired(&spec)
            {
                self.expire(spec.id, phase, waited).await;
                expired.push(spec.id);
            }
        }
        Ok(expired)
    }

    async fn drive(&self, id: SpecId, mut forced: Option<(SpecPhase, String)>) -> Result<RunOutcome, SpecError> {
        loop {
            let spec = self.specs.get_spec(id).await?;
            let phase = match spec.state {
                SpecState::Completed => return Ok(RunOutcome::Completed),
                SpecState::Cancelled => return Err(SpecError::Cancelled),
                SpecState::AwaitingApproval { phase } => return Ok(RunOutcome::AwaitingApproval(phase)),
                SpecState::Draft => {
                    let first = spec.next_phase().unwrap_or(SpecPhase::Sync);
                    self.specs.transition_spec(id, SpecEvent::Start(first)).await?;
                    continue;
                }
                SpecState::Failed { phase } => {
                    tracing::info!(spec = %id, %phase, "resuming failed spec");
                    self.specs.transition_spec(id, SpecEvent::Resume).await?;
                    continue;
                }
                SpecState::Running { phase } => phase,
            };
            let feedback = forced.take_if(|(p, _)| *p == phase).map(|(_, f)| f);
            if (feedback.is_some() || !spec.checkpoints.contains_key(&phase))
                && let Err(e) = self.run_phase(&spec, phase, feedback).await
            {
                self.fail(id, phase, &e).await;
                return Err(e);
            }
            // The phase is checkpointed (now, or before a crash): move on.
            let event = if self.config.approval_gates.contains(&phase) {
                SpecEvent::RequestApproval
            } else if phase.next().is_none() {
                SpecEvent::Complete
            } else {
                SpecEvent::Advance
            };
            self.specs.transition_spec(id, event).await?;
        }
    }

    async fn fail(&self, id: SpecId, phase: SpecPhase, error: &SpecError) {
        tracing::warn!(spec = %id, %phase, %error, "spec phase failed");
        let event = Event::SpecPhaseFailed { spec_id: id, phase, error: error.to_string() };
        if let Err(e) = self.events.append_events(vec![event]).await {
            tracing::error!(spec = %id, error = %e, "could not record spec.phase_failed");
        }
        if let Err(e) = self.specs.transition_spec(id, SpecEvent::Fail).await {
            tracing::error!(spec = %id, error = %e, "could not mark the spec failed");
        }
    }

    async fn emit(&self, event: Event) -> Result<(), SpecError> {
        self.events.append_events(vec![event]).await?;
        Ok(())
    }

    /// Runs `phase` to a checkpoint, or fails.
    async fn run_phase(&self, spec: &Spec, phase: SpecPhase, feedback: Option<String>) -> Result<(), SpecError> {
        let span = tracing::info_span!("spec_phase", spec = %spec.id, %phase);
        async {
            let earlier = PhaseOutputs::from_spec(spec)?;
            if phase == SpecPhase::Sync {
                return self.run_sync(spec, &earlier).await;
            }
            self.run_attempts(spec, phase, &earlier, feedback).await
        }
        .instrument(span)
        .await
    }

    async fn run_attempts(
        &self,
        spec: &Spec,
        phase: SpecPhase,
        earlier: &PhaseOutputs,
        mut feedback: Option<String>,
    ) -> Result<(), SpecError> {
        let id = spec.id;
        let threshold = self.config.pass_threshold;
        let schema = PhaseOutput::schema(phase);
        let budget = Budget::new(id, BudgetLimits::from_config(&self.config), spec.usage, self.specs.clone());
        let max = self.config.max_attempts.max(1);
        let mut last = Miss { score: None, feedback: None, note: String::new(), transient: None };
        for attempt in 1..=max {
            self.emit(Event::SpecPhaseStarted { spec_id: id, phase, attempt }).await?;
            let prompt = self.prompts.build(spec, phase, earlier, feedback.as_deref(), &schema);
            let ctx = PhaseContext {
                spec: spec.clone(),
                phase,
                attempt,
                prompt,
                output_schema: schema.clone(),
                feedback: feedback.clone(),
                budget: budget.clone(),
            };
            let result = self.executor.execute(&ctx).instrument(tracing::info_span!("spec_attempt", attempt)).await;
            let mut findings = Vec::new();
            let output = match result {
                Ok(a) => {
                    findings = a.findings;
                    PhaseOutput::parse(phase, &a.output)
                }
                Err(PhaseError::Llm(e @ LlmError::OutputMismatch { .. })) => Err(e),
                Err(e) if e.is_retryable() => {
                    tracing::warn!(%phase, attempt, error = %e, "transient failure");
                    let note = format!("attempt {attempt} failed: {e}");
                    let transient = match e {
                        PhaseError::Llm(l) => Some(l),
                        _ => None,
                    };
                    last = Miss { score: None, feedback: None, note, transient };
                    self.retry(id, phase, attempt, max, &last).await?;
                    continue;
                }
                Err(PhaseError::Budget(source)) => return Err(SpecError::Budget { phase, source }),
                Err(PhaseError::Store(e)) => return Err(SpecError::Store(e)),
                Err(PhaseError::Llm(source)) => return Err(SpecError::Model { phase, source }),
                Err(PhaseError::Executor { message, .. }) => return Err(SpecError::Executor { phase, message }),
            };
            last = match output {
                Ok(output) => {
                    let mut eval = self.evaluator.evaluate(&output, earlier);
                    if let Some((judge, weight)) = &self.judge
                        && eval.passes(threshold)
                    {
                        let request = JudgeRequest { spec, output: &output, structural: &eval, budget: &budget };
                        match judge.judge(request).await {
                            Ok(j) => eval = eval.with_judgement(&j, *weight),
                            Err(PhaseError::Budget(source)) => return Err(SpecError::Budget { phase, source }),
                            Err(PhaseError::Store(e)) => return Err(SpecError::Store(e)),
                            Err(e) => return Err(SpecError::Executor { phase, message: format!("judge failed: {e}") }),
                        }
                    }
                    let passed = eval.passes(threshold);
                    tracing::info!(%phase, attempt, score = eval.score, passed, "phase attempt evaluated");
                    self.emit(Event::SpecPhaseEvaluated { spec_id: id, phase, attempt, score: eval.score, passed })
                        .await?;
                    if passed {
                        let checkpoint = PhaseCheckpoint {
                            phase,
                            output: output.to_value(),
                            score: eval.score,
                            attempts: attempt,
                            usage: budget.recorded(),
                            passed_at: self.clock.now(),
                            findings,
                        };
                        self.specs.save_checkpoint(id, checkpoint).await?;
                        return Ok(());
                    }
                    let text = eval.feedback(threshold);
                    Miss { score: Some(eval.score), feedback: Some(text.clone()), note: text, transient: None }
                }
                Err(e) => {
                    let reason = match &e {
                        LlmError::OutputMismatch { reason, .. } => reason.clone(),
                        other => other.to_string(),
                    };
                    tracing::info!(%phase, attempt, %reason, "phase output unusable");
                    self.emit(Event::SpecPhaseEvaluated { spec_id: id, phase, attempt, score: 0.0, passed: false })
                        .await?;
                    let text = format!(
                        "Your previous answer could not be used: {reason}.\n\
                         Answer with one JSON object that matches the {phase} output schema exactly."
                    );
                    Miss { score: Some(0.0), feedback: Some(text.clone()), note: text, transient: None }
                }
            };
            if let Some(f) = &last.feedback {
                feedback = Some(f.clone());
            }
            self.retry(id, phase, attempt, max, &last).await?;
        }
        match last.transient {
            Some(source) => Err(SpecError::Model { phase, source }),
            None => Err(SpecError::PhaseFailed {
                phase,
                attempts: max,
                last_score: last.score,
                feedback: feedback.unwrap_or(last.note),
            }),
        }
    }

    /// Records a retry and waits the backoff, unless `attempt` was the last one.
    async fn retry(&self, id: SpecId, phase: SpecPhase, attempt: u32, max: u32, miss: &Miss) -> Result<(), SpecError> {
        if attempt >= max {
            return Ok(());
        }
        self.emit(Event::SpecPhaseRetry {
            spec_id: id,
            phase,
            attempt,
            score: miss.score,
            feedback: miss.note.clone(),
        })
        .await?;
        let delay = backoff(self.config.retry_base_delay, attempt);
        tracing::info!(%phase, attempt, ?delay, "retrying phase");
        self.clock.sleep(delay).await;
        Ok(())
    }

    async fn run_sync(&self, spec: &Spec, earlier: &PhaseOutputs) -> Result<(), SpecError> {
        let id = spec.id;
        let phase = SpecPhase::Sync;
        self.emit(Event::SpecPhaseStarted { spec_id: id, phase, attempt: 1 }).await?;
        let tasks = earlier.tasks().ok_or(SyncError::MissingOutput(SpecPhase::Tasks))?;
        let requirements = earlier.requirements().ok_or(SyncError::MissingOutput(SpecPhase::Requirements))?;
        let plan = build_plan(tasks)?;
        let mut out = analyze(tasks, requirements);
        if !out.ready_for_execution {
            return Err(SyncError::NotReady { blockers: out.blockers }.into());
        }
        let eval = self.evaluator.evaluate(&PhaseOutput::Sync(out.clone()), earlier);
        let passed = eval.passes(self.config.pass_threshold);
        self.emit(Event::SpecPhaseEvaluated { spec_id: id, phase, attempt: 1, score: eval.score, passed }).await?;
        if !passed {
            return Err(SpecError::PhaseFailed {
                phase,
                attempts: 1,
                last_score: Some(eval.score),
                feedback: eval.feedback(self.config.pass_threshold),
            });
        }
        let outcome = self.specs.sync(id, &plan).await.map_err(SyncError::Store)?;
        tracing::info!(spec = %id, tickets_created = outcome.tickets_created, tasks_created = outcome.tasks_created, "plan materialized");
        out.discoveries = findings::report(self.discoveries.as_ref(), spec, &plan, &outcome).await?;
        out.materialized = Some(outcome);
        let checkpoint = PhaseCheckpoint {
            phase,
            output: PhaseOutput::Sync(out).to_value(),
            score: eval.score,
            attempts: 1,
            usage: Default::default(),
            passed_at: self.clock.now(),
            findings: Vec::new(),
        };
        self.specs.save_checkpoint(id, checkpoint).await?;
        Ok(())
    }
}

/// `base · 2^(attempt − 1)`: 2 s, 4 s, … with the default 2 s base.
pub fn backoff(base: Duration, attempt: u32) -> Duration {
    base.saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
}
