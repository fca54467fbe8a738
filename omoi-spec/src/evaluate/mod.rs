//! Deterministic structural evaluators: one per phase, weighted criteria, per-criterion
//! subscores and feedback a model can act on.
//!
//! The score is Σ weight × subscore over the phase's criteria (the weights of a phase add up to
//! 1). A phase passes when the score reaches the pass threshold (0.7 by default) **and** no
//! blocking issue was found: problems that would break a later phase regardless of the score
//! (a dependency cycle, an unknown task reference, a requirement no task addresses); these send
//! the phase back with the culprits named.

mod design;
mod explore;
mod judge;
mod prd;
mod requirements;
mod sync;
mod tasks;

use std::fmt::Write;

use omoi_core::SpecPhase;

use crate::output::{PhaseOutput, PhaseOutputs};

pub use crate::ids::{is_requirement_id, is_task_id, is_ticket_id, is_user_story_id};
pub use judge::{Judge, JudgeRequest, Judgement, LlmJudge};

/// One scored criterion.
#[derive(Debug, Clone, PartialEq)]
pub struct Criterion {
    /// Name, e.g. `acceptance_criteria`.
    pub name: String,
    /// Its weight in the phase score.
    pub weight: f64,
    /// Its subscore, 0–1.
    pub score: f64,
    /// What keeps the subscore below 1, naming the items.
    pub issues: Vec<String>,
}

impl Criterion {
    /// The score lost to this criterion: `weight × (1 − score)`.
    pub fn loss(&self) -> f64 {
        self.weight * (1.0 - self.score)
    }
}

/// The evaluation of one phase output.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// The phase.
    pub phase: SpecPhase,
    /// Σ weight × subscore, 0–1.
    pub score: f64,
    /// The criteria, in declaration order.
    pub criteria: Vec<Criterion>,
    /// Problems that fail the phase whatever the score.
    pub blocking: Vec<String>,
}

impl Evaluation {
    /// An evaluation from scored criteria (subscores are clamped to 0–1).
    pub fn new(phase: SpecPhase, mut criteria: Vec<Criterion>, blocking: Vec<String>) -> Self {
        for c in &mut criteria {
            c.score = if c.score.is_finite() { c.score.clamp(0.0, 1.0) } else { 0.0 };
        }
        let score = criteria.iter().map(|c| c.weight * c.score).sum::<f64>().clamp(0.0, 1.0);
        Self { phase, score, criteria, blocking }
    }

    /// Whether the output passes at `threshold`: score high enough and nothing blocking.
    pub fn passes(&self, threshold: f64) -> bool {
        self.score + 1e-9 >= threshold && self.blocking.is_empty()
    }

    /// The subscore of criterion `name`.
    pub fn subscore(&self, name: &str) -> Option<f64> {
        self.criteria.iter().find(|c| c.name == name).map(|c| c.score)
    }

    /// The criterion `name`.
    pub fn criterion(&self, name: &str) -> Option<&Criterion> {
        self.criteria.iter().find(|c| c.name == name)
    }

    /// Blends in a judge's verdict: the score becomes `(1 − weight) · score + weight · judge`,
    /// recorded as the criterion `llm_judge` (the structural criteria keep their subscores), and
    /// the judge's feedback becomes that criterion's issue.
    pub fn with_judgement(mut self, judgement: &Judgement, weight: f64) -> Self {
        let w = weight.clamp(0.0, 1.0);
        for c in &mut self.criteria {
            c.weight *= 1.0 - w;
        }
        let issues =
            if judgement.feedback.trim().is_empty() { vec![] } else { vec![judgement.feedback.trim().to_owned()] };
        self.criteria.push(Criterion { name: "llm_judge".into(), weight: w, score: judgement.score, issues });
        Evaluation::new(self.phase, self.criteria, self.blocking)
    }

    /// Sum of the weights (1 for every built-in evaluator).
    pub fn total_weight(&self) -> f64 {
        self.criteria.iter().map(|c| c.weight).sum()
    }

    /// Feedback for the next attempt: the score against `threshold`, the blocking problems, then
    /// each criterion below 1 with its issues, largest score loss first.
    pub fn feedback(&self, threshold: f64) -> String {
        let mut s = String::new();
        let verdict = if self.passes(threshold) { "passes" } else { "does not pass" };
        let _ =
            writeln!(s, "The {} output scored {:.2} (pass at {threshold:.2}) and {verdict}.", self.phase, self.score);
        if !self.blocking.is_empty() {
            let _ = writeln!(s, "Blocking problems (fix all of them, whatever the score):");
            for b in &self.blocking {
                let _ = writeln!(s, "- {b}");
            }
        }
        let mut weak: Vec<&Criterion> = self.criteria.iter().filter(|c| c.score < 1.0 - 1e-9).collect();
        weak.sort_by(|a, b| b.loss().total_cmp(&a.loss()));
        if !weak.is_empty() {
            let _ = writeln!(s, "Criteria below full marks, largest loss first:");
            for c in weak {
                let _ = writeln!(s, "- {} scored {:.2} (weight {:.2}):", c.name, c.score, c.weight);
                for i in c.issues.iter().take(12) {
                    let _ = writeln!(s, "  - {i}");
                }
                if c.issues.len() > 12 {
                    let _ = writeln!(s, "  - … and {} more", c.issues.len() - 12);
                }
            }
        }
        s
    }
}

/// Scores a phase output. Implementations must be deterministic for the retry loop to make
/// sense; an LLM judge can be layered on top by wrapping the structural evaluator.
pub trait Evaluator: Send + Sync {
    /// Evaluates `output` given the outputs of earlier phases.
    fn evaluate(&self, output: &PhaseOutput, earlier: &PhaseOutputs) -> Evaluation;
}

/// The built-in structural evaluators, with OmoiOS's weights.
#[derive(Debug, Clone, Copy, Default)]
pub struct StructuralEvaluator;

impl Evaluator for StructuralEvaluator {
    fn evaluate(&self, output: &PhaseOutput, earlier: &PhaseOutputs) -> Evaluation {
        match output {
            PhaseOutput::Explore(o) => explore::evaluate(o),
            PhaseOutput::Prd(o) => prd::evaluate(o),
            PhaseOutput::Requirements(o) => requirements::evaluate(o),
            PhaseOutput::Design(o) => design::evaluate(o),
            PhaseOutput::Tasks(o) => tasks::evaluate(o, earlier.requirements()),
            PhaseOutput::Sync(o) => sync::evaluate(o),
        }
    }
}

/// Builds the criteria of one evaluation.
#[derive(Debug, Default)]
pub(crate) struct Scorer {
    criteria: Vec<Criterion>,
}

impl Scorer {
    pub(crate) fn add(&mut self, name: &str, weight: f64, score: f64, issues: Vec<String>) {
        self.criteria.push(Criterion { name: name.to_owned(), weight, score, issues });
    }

    /// `good / total` (1 when `total` is 0).
    pub(crate) fn ratio(&mut self, name: &str, weight: f64, good: usize, total: usize, issues: Vec<String>) {
        let score = if total == 0 { 1.0 } else { good as f64 / total as f64 };
        self.add(name, weight, score, issues);
    }

    /// 1 if `ok`, else `otherwise` with `issue`.
    pub(crate) fn check(&mut self, name: &str, weight: f64, ok: bool, otherwise: f64, issue: impl Into<String>) {
        if ok {
            self.add(name, weight, 1.0, Vec::new());
        } else {
            self.add(name, weight, otherwise, vec![issue.into()]);
        }
    }

    pub(crate) fn finish(self, phase: SpecPhase, blocking: Vec<String>) -> Evaluation {
        Evaluation::new(phase, self.criteria, blocking)
    }
}

/// `n` as "1 acceptance criterion" / "2 acceptance criteria".
pub(crate) fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}
