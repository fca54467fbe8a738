//! Prompts: per phase, the feature idea, the earlier phases' outputs summarized within a size
//! budget, the evaluator's feedback on a retry, and the output's JSON schema.
//!
//! Each earlier output is reduced to a line-based
//! [summary](crate::output::PhaseOutput::summary) and the summaries share `prompt_context_chars`
//! fairly (a short summary is kept whole, the rest split what is left), trimmed at line
//! boundaries.

use std::fmt::Write;

use omoi_core::{OutputSchema, Spec, SpecPhase};
use serde::{Deserialize, Serialize};

use crate::output::PhaseOutputs;

/// A system prompt and a user message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhasePrompt {
    /// System prompt: role, phase instructions.
    pub system: String,
    /// User message: idea, context, feedback, schema.
    pub user: String,
}

/// Builds phase prompts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PromptBuilder {
    context_chars: usize,
}

/// What `phase` must produce, for the model.
pub fn instructions(phase: SpecPhase) -> &'static str {
    match phase {
        SpecPhase::Explore => {
            "Explore the codebase and frame the feature. Give a codebase summary (more than 50 characters), \
the project type, the tech stack (2+ entries), the directory structure (2+ directories with what they hold), \
at least 3 key files with their purpose, the conventions (naming, testing, recurring patterns), discovery \
questions in the five categories \"Problem & Value\", \"Users & Journeys\", \"Scope & Boundaries\", \
\"Technical Context\" and \"Trade-offs & Risks\", and a feature summary (name, problem statement, scope in, \
scope out, risks, success metrics). List relevant patterns and the existing files the feature touches."
        }
        SpecPhase::Prd => {
            "Write the product requirements. Overview: feature_name, one_liner, problem_statement and \
solution_summary (30+ characters each). Goals: primary goals and success metrics (metric, target, measurement). \
Users: primary users with role, description and needs. User stories with ids US-001, US-002, …, each with role, \
want, benefit, priority (critical, high, medium or low) and acceptance criteria. Scope (in_scope, out_of_scope, \
dependencies), assumptions, technical and business constraints, risks (risk, impact, likelihood, mitigation) and \
open questions."
        }
        SpecPhase::Requirements => {
            "Write testable requirements in EARS form. Ids are REQ-<FEATURE>-<CATEGORY>-NNN with 2–6 capital \
letters per part and 3 digits (e.g. REQ-SLUG-CORE-001). The text of each requirement uses one EARS pattern: \
\"WHEN <trigger>, the <system> SHALL <response>\" (event), \"WHILE <state>, the <system> SHALL <response>\" (state), \
\"IF <condition>, THEN the <system> SHALL <response>\" (unwanted behaviour), \"WHERE <feature>, the <system> SHALL \
<response>\" (optional feature), combinations such as \"WHILE <state>, WHEN <trigger>, the <system> SHALL …\", or \
\"The <system> SHALL <response>\" for what always holds. Every clause ends with a comma; the modal verb is SHALL, \
SHOULD, MAY or MUST (optionally NOT). Avoid vague words (etc, and/or, as appropriate, user-friendly). Each \
requirement has a title, type (functional, non_functional or constraint), category, priority, at least 2 \
checkable acceptance criteria and the ids of requirements it depends on. Also give assumptions, out_of_scope and \
traceability links from requirements to user stories."
        }
        SpecPhase::Design => {
            "Design the feature. Give an architecture overview (more than 100 characters) and a Mermaid \
diagram, the components (name, type, file_path, one responsibility, interfaces as signatures), data models \
(name, table_name, fields, indexes) and API endpoints (method, path, description, auth_required, request and \
response schema) where they exist, error handling, a testing strategy (unit_tests and integration_tests), at \
least 2 security considerations and the integration points with existing code."
        }
        SpecPhase::Tasks => {
            "Break the design into tickets and atomic tasks. Tickets have ids TKT-001, …, a title, description, \
priority, estimate (XS, S, M, L or XL), the requirement ids they address, the ids of their tasks and acceptance \
criteria. Tasks have ids TSK-001, …, a title, description, parent_ticket (a ticket id), type (implementation, \
test, validation, research or documentation), estimated_hours (more than 0 and at most 4), files_to_create and \
files_to_modify, acceptance criteria, dependencies.depends_on (ids of tasks that must finish first; no cycles, \
no unknown ids) and requirements_addressed. Every requirement id must be addressed by at least one task. Give the \
critical_path (task ids of the longest chain) and total_estimated_hours (the sum of the estimates)."
        }
        SpecPhase::Sync => {
            "Check traceability and dependencies of the task plan (computed by omoi; no model call is made)."
        }
    }
}

impl PromptBuilder {
    /// A builder giving earlier phases' summaries at most `context_chars` characters in total.
    pub fn new(context_chars: usize) -> Self {
        Self { context_chars }
    }

    /// The prompt for `phase` of `spec`.
    pub fn build(
        &self,
        spec: &Spec,
        phase: SpecPhase,
        earlier: &PhaseOutputs,
        feedback: Option<&str>,
        schema: &OutputSchema,
    ) -> PhasePrompt {
        let system = format!(
            "You are a senior software engineer writing one part of a feature specification.\n\
             Phase: {phase} ({} of {}).\n\n{}\n\n\
             Answer with exactly one JSON object that follows the JSON schema given by the user, and nothing else.",
            phase.index() + 1,
            SpecPhase::ALL.len(),
            instructions(phase),
        );
        let mut user = String::new();
        let _ = writeln!(user, "# Feature: {}\n\n{}\n", spec.title, spec.idea.trim());
        if !spec.metadata.is_null() {
            let _ = writeln!(user, "Context: {}\n", spec.metadata);
        }
        let context = self.context(phase, earlier);
        if !context.is_empty() {
            let _ = writeln!(user, "# Earlier phases\n\n{context}");
        }
        if let Some(f) = feedback.filter(|f| !f.trim().is_empty()) {
            let _ = writeln!(
                user,
                "# Feedback on your previous attempt\n\nFix every point below and keep what was right.\n\n{}\n",
                f.trim()
            );
        }
        let schema_text = serde_json::to_string_pretty(&schema.schema).unwrap_or_default();
        let _ = write!(
            user,
            "# Output\n\nAnswer with one JSON object matching the schema `{}`:\n\n{schema_text}\n",
            schema.name
        );
        PhasePrompt { system, user }
    }

    /// The earlier phases' summaries, each under a `## <phase>` heading, within the budget.
    pub fn context(&self, phase: SpecPhase, earlier: &PhaseOutputs) -> String {
        let parts: Vec<(SpecPhase, String)> = earlier.before(phase).map(|o| (o.phase(), o.summary())).collect();
        let shares = fair_shares(&parts.iter().map(|(_, s)| s.len()).collect::<Vec<_>>(), self.context_chars);
        let mut out = String::new();
        for ((p, text), share) in parts.iter().zip(shares) {
            let _ = writeln!(out, "## {p}\n{}", trim_lines(text, share));
        }
        out
    }
}

/// Splits `budget` among items of sizes `sizes`: items smaller than an equal share keep their
/// size, the others split what remains equally (water filling).
fn fair_shares(sizes: &[usize], budget: usize) -> Vec<usize> {
    let mut shares = vec![0; sizes.len()];
    let mut order: Vec<usize> = (0..sizes.len()).collect();
    order.sort_by_key(|&i| sizes[i]);
    let mut left = budget;
    for (k, &i) in order.iter().enumerate() {
        let fair = left / (sizes.len() - k);
        shares[i] = sizes[i].min(fair);
        left -= shares[i];
    }
    shares
}

/// `text` cut to at most `max` bytes at a line boundary (or a character boundary if the first
/// line is too long), saying how many lines were left out.
fn trim_lines(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let total = text.lines().count();
    let mut out = String::new();
    let mut kept = 0;
    for line in text.lines() {
        if out.len() + line.len() + 1 > max {
            break;
        }
        out.push_str(line);
        out.push('\n');
        kept += 1;
    }
    if kept == 0 {
        let mut end = max.min(text.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        out.push_str(&text[..end]);
        out.push_str("…\n");
        kept = 1;
    }
    let _ = writeln!(out, "… ({} more lines left out)", total - kept);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fair_shares_keep_small_items_whole_and_split_the_rest() {
        assert_eq!(fair_shares(&[10, 1000, 1000], 310), vec![10, 150, 150]);
        assert_eq!(fair_shares(&[10, 20], 1000), vec![10, 20]);
        assert_eq!(fair_shares(&[], 100), Vec::<usize>::new());
    }

    #[test]
    fn trimming_cuts_at_lines_and_says_so() {
        let t = "aaaa\nbbbb\ncccc\n";
        assert_eq!(trim_lines(t, 100), t);
        let cut = trim_lines(t, 10);
        assert!(cut.starts_with("aaaa\nbbbb\n"), "{cut}");
        assert!(cut.contains("1 more lines left out"), "{cut}");
        let long = trim_lines("üüüüüü", 3);
        assert!(long.starts_with('ü'), "{long}");
    }
}
