//! How a phase's output is produced: the [`PhaseExecutor`] port and the default
//! [`StructuredExecutor`] (one structured model call).

use std::sync::Arc;

use async_trait::async_trait;
use omoi_core::ports::llm::{labels, parse_json_text};
use omoi_core::{
    CompletionRequest, LlmClient, LlmError, Message, OutputSchema, ReportedDiscovery, Spec, SpecPhase, StoreError,
    Usage,
};
use serde_json::Value;

use crate::budget::{Budget, BudgetExceeded};
use crate::prompt::PhasePrompt;

/// Everything an executor needs for one attempt of one phase.
#[derive(Debug, Clone)]
pub struct PhaseContext {
    /// The spec, with the checkpoints of the phases passed so far.
    pub spec: Spec,
    /// The phase to produce.
    pub phase: SpecPhase,
    /// Attempt number, 1-based.
    pub attempt: u32,
    /// System and user prompt (idea, earlier outputs, feedback, schema).
    pub prompt: PhasePrompt,
    /// The JSON schema the output must follow.
    pub output_schema: OutputSchema,
    /// The evaluator's feedback on the previous attempt (or a reviewer's rejection).
    pub feedback: Option<String>,
    /// The spec's budget: `check` before every model call, `record` after it.
    pub budget: Budget,
}

/// What one attempt produced.
#[derive(Debug, Clone, PartialEq)]
pub struct PhaseAttempt {
    /// The output as JSON (parsed into the phase's type by the runner).
    pub output: Value,
    /// The model's raw final text.
    pub raw: String,
    /// Model usage of the attempt (already recorded in the budget).
    pub usage: Usage,
    /// New work the phase's agent reported (`report_discovery`), kept in the checkpoint and
    /// reported as discoveries once SYNC has stored the plan.
    pub findings: Vec<ReportedDiscovery>,
}

/// Why an attempt produced no output.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PhaseError {
    /// The model call failed. [`LlmError::OutputMismatch`] (an answer that is not the output
    /// JSON) counts as a failed attempt with feedback; transient errors are retried; the rest
    /// fail the phase.
    #[error(transparent)]
    Llm(#[from] LlmError),
    /// The budget refused a model call.
    #[error(transparent)]
    Budget(#[from] BudgetExceeded),
    /// Recording usage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Another executor failure (a sandbox, a tool).
    #[error("executor failed: {message}")]
    Executor {
        /// What happened.
        message: String,
        /// Whether another attempt may succeed.
        retryable: bool,
    },
}

impl PhaseError {
    /// Whether another attempt may succeed: output mismatches, transient model errors and
    /// retryable executor errors.
    pub fn is_retryable(&self) -> bool {
        match self {
            PhaseError::Llm(LlmError::OutputMismatch { .. }) => true,
            PhaseError::Llm(e) => e.is_retryable(),
            PhaseError::Executor { retryable, .. } => *retryable,
            PhaseError::Budget(_) | PhaseError::Store(_) => false,
        }
    }
}

/// Produces a phase's output. The runner owns retries, evaluation and checkpoints; an executor
/// only turns a [`PhaseContext`] into JSON, however it likes (one structured call, or an agent
/// that explores a sandbox and finishes with the output).
#[async_trait]
pub trait PhaseExecutor: Send + Sync {
    /// Runs one attempt.
    async fn execute(&self, ctx: &PhaseContext) -> Result<PhaseAttempt, PhaseError>;
}

/// One structured model call per attempt: the prompt, the output schema as structured-output
/// request, the answer parsed as JSON.
#[derive(Clone)]
pub struct StructuredExecutor {
    llm: Arc<dyn LlmClient>,
    max_tokens: u32,
    temperature: Option<f32>,
}

impl std::fmt::Debug for StructuredExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StructuredExecutor")
            .field("model", &self.llm.model())
            .field("max_tokens", &self.max_tokens)
            .field("temperature", &self.temperature)
            .finish()
    }
}

impl StructuredExecutor {
    /// An executor over `llm` with a 16,000-token answer limit.
    pub fn new(llm: Arc<dyn LlmClient>) -> Self {
        Self { llm, max_tokens: 16_000, temperature: None }
    }

    /// Sets the answer's token limit.
    pub fn max_tokens(mut self, max_tokens: u32) -> Self {
        self.max_tokens = max_tokens;
        self
    }

    /// Sets the sampling temperature.
    pub fn temperature(mut self, temperature: f32) -> Self {
        self.temperature = Some(temperature);
        self
    }
}

#[async_trait]
impl PhaseExecutor for StructuredExecutor {
    async fn execute(&self, ctx: &PhaseContext) -> Result<PhaseAttempt, PhaseError> {
        let request = CompletionRequest {
            system: Some(ctx.prompt.system.clone()),
            messages: vec![Message::user(ctx.prompt.user.clone())],
            tools: Vec::new(),
            output: Some(ctx.output_schema.clone()),
            max_tokens: self.max_tokens,
            temperature: self.temperature,
            labels: [(labels::PHASE.to_owned(), ctx.phase.to_string())].into(),
        };
        ctx.budget.check_request(&request)?;
        let response = self.llm.complete(&request).await?;
        ctx.budget.record(response.usage).await?;
        let raw = response.text();
        let output: Value = parse_json_text(&raw)?;
        Ok(PhaseAttempt { output, raw, usage: response.usage, findings: Vec::new() })
    }
}
