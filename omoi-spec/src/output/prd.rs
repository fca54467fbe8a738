//! PRD: goals, users, user stories, scope.

use omoi_core::Priority;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The output of the PRD phase.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PrdOutput {
    /// What the feature is and why.
    pub overview: Overview,
    /// Goals and how they are measured.
    pub goals: Goals,
    /// Who uses the feature.
    #[serde(default)]
    pub users: Users,
    /// User stories, ids `US-001`, `US-002`, …
    pub user_stories: Vec<UserStory>,
    /// What is in and out of scope.
    #[serde(default)]
    pub scope: Scope,
    /// Assumptions made.
    #[serde(default)]
    pub assumptions: Vec<String>,
    /// Constraints.
    #[serde(default)]
    pub constraints: Constraints,
    /// Risks.
    #[serde(default)]
    pub risks: Vec<Risk>,
    /// Questions still open.
    #[serde(default)]
    pub open_questions: Vec<String>,
}

/// What the feature is and why.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Overview {
    /// Feature name.
    pub feature_name: String,
    /// One sentence.
    pub one_liner: String,
    /// The problem (30+ characters).
    pub problem_statement: String,
    /// The solution (30+ characters).
    pub solution_summary: String,
}

/// Goals and success metrics.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Goals {
    /// Primary goals (1+).
    pub primary: Vec<String>,
    /// Secondary goals.
    pub secondary: Vec<String>,
    /// How success is measured (1+).
    pub success_metrics: Vec<SuccessMetric>,
}

/// A measurable success criterion.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct SuccessMetric {
    /// What is measured.
    pub metric: String,
    /// The target value.
    pub target: String,
    /// How it is measured.
    pub measurement: String,
}

/// Users of the feature.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Users {
    /// Primary users (1+).
    pub primary: Vec<UserKind>,
    /// Secondary users.
    pub secondary: Vec<UserKind>,
}

/// A kind of user.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct UserKind {
    /// Role.
    pub role: String,
    /// Who they are.
    pub description: String,
    /// What they need.
    pub needs: Vec<String>,
}

/// A user story.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct UserStory {
    /// `US-NNN`.
    pub id: String,
    /// "As a …"
    pub role: String,
    /// "I want …"
    pub want: String,
    /// "so that …"
    pub benefit: String,
    /// Priority.
    pub priority: Priority,
    /// Checkable outcomes (1+).
    #[serde(default)]
    pub acceptance_criteria: Vec<String>,
}

/// Scope boundaries.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Scope {
    /// In scope (1+).
    pub in_scope: Vec<String>,
    /// Out of scope (1+).
    pub out_of_scope: Vec<String>,
    /// What the feature depends on.
    pub dependencies: Vec<String>,
}

/// Constraints.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Constraints {
    /// Technical constraints (1+).
    pub technical: Vec<String>,
    /// Business constraints.
    pub business: Vec<String>,
}

/// Low, medium or high.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Low.
    Low,
    /// Medium.
    #[default]
    Medium,
    /// High.
    High,
}

/// A risk.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Risk {
    /// The risk.
    pub risk: String,
    /// Impact if it happens.
    #[serde(default)]
    pub impact: Level,
    /// How likely it is.
    #[serde(default)]
    pub likelihood: Level,
    /// What reduces it.
    #[serde(default)]
    pub mitigation: String,
}
