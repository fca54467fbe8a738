//! EXPLORE: what the codebase is and what the feature is about.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The output of the explore phase.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ExploreOutput {
    /// What the codebase is and does, in a paragraph (50+ characters).
    pub codebase_summary: String,
    /// Kind of project: `python library`, `web service`, `cli tool`, …
    #[serde(default)]
    pub project_type: String,
    /// Languages, frameworks and tools in use (2+ entries).
    pub tech_stack: Vec<String>,
    /// Directory → what it holds (2+ entries).
    #[serde(default)]
    pub structure: BTreeMap<String, String>,
    /// Files that matter for the feature (3+ entries).
    pub key_files: Vec<KeyFile>,
    /// Naming, testing and code conventions to follow.
    #[serde(default)]
    pub conventions: Conventions,
    /// Questions to settle before writing requirements, grouped by category. Expected
    /// categories: "Problem & Value", "Users & Journeys", "Scope & Boundaries",
    /// "Technical Context", "Trade-offs & Risks".
    pub discovery_questions: Vec<DiscoveryQuestions>,
    /// The feature as understood after exploring.
    pub feature_summary: FeatureSummary,
    /// Existing patterns the feature should reuse (may be empty for greenfield work).
    #[serde(default)]
    pub relevant_patterns: Vec<String>,
    /// Existing files or modules the feature touches.
    #[serde(default)]
    pub related_to_feature: Vec<String>,
}

/// A file and why it matters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct KeyFile {
    /// Path relative to the repository root.
    pub path: String,
    /// Why it matters for the feature.
    pub purpose: String,
}

/// Conventions of the codebase.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Conventions {
    /// Naming conventions.
    pub naming: String,
    /// How tests are written and run.
    pub testing: String,
    /// Recurring code patterns.
    pub patterns: Vec<String>,
}

/// Open questions in one category.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DiscoveryQuestions {
    /// The category, e.g. "Scope & Boundaries".
    pub category: String,
    /// The questions.
    pub questions: Vec<String>,
}

/// The feature as understood after exploring.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FeatureSummary {
    /// Short name.
    pub name: String,
    /// The problem the feature solves.
    pub problem_statement: String,
    /// What is in scope.
    pub scope_in: Vec<String>,
    /// What is explicitly out of scope.
    pub scope_out: Vec<String>,
    /// Risks.
    #[serde(default)]
    pub risks: Vec<String>,
    /// How success is measured.
    #[serde(default)]
    pub success_metrics: Vec<String>,
}
