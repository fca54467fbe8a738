//! REQUIREMENTS: EARS requirements with acceptance criteria.

use omoi_core::Priority;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The output of the requirements phase.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RequirementsOutput {
    /// Feature name.
    #[serde(default)]
    pub feature_name: String,
    /// The requirements.
    pub requirements: Vec<Requirement>,
    /// Assumptions made.
    #[serde(default)]
    pub assumptions: Vec<String>,
    /// What is explicitly not required.
    #[serde(default)]
    pub out_of_scope: Vec<String>,
    /// Which user stories each requirement serves.
    #[serde(default)]
    pub traceability: Vec<TraceLink>,
}

/// One requirement.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Requirement {
    /// `REQ-<FEATURE>-<CATEGORY>-NNN`, e.g. `REQ-SLUG-CORE-001` (2–6 capital letters per part).
    pub id: String,
    /// Short title.
    pub title: String,
    /// Functional or non-functional.
    #[serde(rename = "type")]
    pub kind: RequirementType,
    /// Category (`core`, `validation`, `performance`, …).
    #[serde(default)]
    pub category: String,
    /// Priority.
    pub priority: Priority,
    /// The requirement in EARS form, e.g. `WHEN <trigger>, the <system> SHALL <response>`.
    pub text: String,
    /// Checkable outcomes (2+).
    pub acceptance_criteria: Vec<String>,
    /// Ids of requirements this one depends on.
    #[serde(default)]
    pub dependencies: Vec<String>,
}

/// Kind of requirement.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RequirementType {
    /// What the system does.
    #[default]
    Functional,
    /// How well it does it (performance, security, usability…).
    NonFunctional,
    /// A limit the solution must respect.
    Constraint,
}

/// Links a requirement to the user stories it serves.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TraceLink {
    /// Requirement id.
    pub requirement_id: String,
    /// User story ids (`US-NNN`).
    pub user_stories: Vec<String>,
}
