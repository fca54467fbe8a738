//! The optional LLM judge: a model's opinion of an output the structural evaluator passed,
//! blended into the score. Off unless [`SpecRunner::with_judge`](crate::SpecRunner::with_judge)
//! sets one.

use std::sync::Arc;

use async_trait::async_trait;
use omoi_core::ports::llm::complete_as;
use omoi_core::{CompletionRequest, LlmClient, Spec};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Evaluation;
use crate::budget::Budget;
use crate::executor::PhaseError;
use crate::output::PhaseOutput;
use crate::prompt::instructions;

/// A judge's verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Judgement {
    /// Quality from 0 (unusable) to 1 (excellent).
    pub score: f64,
    /// What to improve, concretely, naming the items.
    pub feedback: String,
}

/// What a judge sees.
#[derive(Debug, Clone, Copy)]
pub struct JudgeRequest<'a> {
    /// The spec (idea and earlier checkpoints).
    pub spec: &'a Spec,
    /// The output to judge.
    pub output: &'a PhaseOutput,
    /// The structural evaluation it passed.
    pub structural: &'a Evaluation,
    /// The spec's budget: check before a model call, record after.
    pub budget: &'a Budget,
}

/// Judges a phase output after the structural evaluator passed it.
#[async_trait]
pub trait Judge: Send + Sync {
    /// The verdict on `request.output`.
    async fn judge(&self, request: JudgeRequest<'_>) -> Result<Judgement, PhaseError>;
}

/// A [`Judge`] asking a model for a [`Judgement`] with one structured call.
#[derive(Clone)]
pub struct LlmJudge {
    llm: Arc<dyn LlmClient>,
}

impl std::fmt::Debug for LlmJudge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmJudge").field("model", &self.llm.model()).finish()
    }
}

impl LlmJudge {
    /// A judge over `llm`.
    pub fn new(llm: Arc<dyn LlmClient>) -> Self {
        Self { llm }
    }
}

#[async_trait]
impl Judge for LlmJudge {
    async fn judge(&self, r: JudgeRequest<'_>) -> Result<Judgement, PhaseError> {
        let phase = r.output.phase();
        let mut request = CompletionRequest::new(format!(
            "# Feature: {}\n\n{}\n\n# The {phase} output\n\n{}\n\n# Structural score\n\n{:.2}\n\n\
             Judge whether the output is correct, specific and useful for the next phases. Answer with a \
             score from 0 to 1 and concrete feedback naming the items to improve.",
            r.spec.title,
            r.spec.idea,
            serde_json::to_string_pretty(&r.output.to_value()).unwrap_or_default(),
            r.structural.score,
        ));
        request.system = Some(format!(
            "You review one part of a feature specification.\nReviewed phase: {phase}.\nThe phase was asked to: {}",
            instructions(phase)
        ));
        r.budget.check_request(&request)?;
        match complete_as::<Judgement>(&*self.llm, request, "judgement").await {
            Ok((mut j, response)) => {
                r.budget.record(response.usage).await?;
                j.score = if j.score.is_finite() { j.score.clamp(0.0, 1.0) } else { 0.0 };
                Ok(j)
            }
            Err((e, response)) => {
                if let Some(response) = response {
                    r.budget.record(response.usage).await?;
                }
                Err(PhaseError::Llm(e))
            }
        }
    }
}
