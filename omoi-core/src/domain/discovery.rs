//! Discoveries: new work an agent finds while executing a task.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ids::{DiscoveryId, SpecId, TaskId};
use crate::string_enum;

string_enum! {
    /// What kind of new work was found.
    pub enum DiscoveryKind: "discovery kind" {
        /// A defect.
        Bug => "bug",
        /// Something that could be done better.
        Optimization => "optimization",
        /// A question a human must answer.
        ClarificationNeeded => "clarification_needed",
        /// A component the plan did not foresee.
        NewComponent => "new_component",
        /// A security problem.
        SecurityIssue => "security_issue",
        /// A performance problem.
        PerformanceIssue => "performance_issue",
        /// A requirement the spec missed.
        MissingRequirement => "missing_requirement",
        /// Pieces that do not fit together.
        IntegrationIssue => "integration_issue",
        /// Debt worth paying down.
        TechnicalDebt => "technical_debt",
    }
}

string_enum! {
    /// Whether a discovery has been dealt with.
    pub enum ResolutionStatus: "resolution status" {
        /// Recorded, nothing done yet.
        Open => "open",
        /// A branch task is working on it.
        InProgress => "in_progress",
        /// Dealt with.
        Resolved => "resolved",
        /// Not a real problem (or a duplicate).
        Invalid => "invalid",
    }
}

/// A recorded discovery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Discovery {
    /// Its id.
    pub id: DiscoveryId,
    /// The task whose agent found it.
    pub source_task: TaskId,
    /// The spec the source task belongs to.
    pub spec_id: Option<SpecId>,
    /// What kind of work it is.
    pub kind: DiscoveryKind,
    /// Short title.
    pub title: String,
    /// What was found.
    pub description: String,
    /// Whether the branch task runs one priority level above its source.
    pub priority_boost: bool,
    /// Tasks spawned for it.
    pub spawned: Vec<TaskId>,
    /// Resolution.
    pub resolution: ResolutionStatus,
    /// Free-form details.
    pub metadata: Value,
    /// When it was recorded.
    pub created_at: DateTime<Utc>,
}
