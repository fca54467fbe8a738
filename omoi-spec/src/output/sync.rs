//! SYNC: traceability, dependency analysis and the materialized tickets and tasks.

use std::collections::BTreeMap;

use omoi_core::SyncOutcome;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The output of the sync phase, computed from the tasks (and requirements) outputs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SyncOutput {
    /// The checks and what they found.
    pub validation_results: ValidationResults,
    /// Requirement → covering tasks.
    pub coverage_matrix: Vec<Coverage>,
    /// Counts.
    pub traceability_stats: TraceabilityStats,
    /// Dependency graph, critical path, parallel work.
    pub dependency_analysis: DependencyAnalysis,
    /// Totals.
    pub spec_summary: SpecSummary,
    /// No blocker: the plan may be materialized and executed.
    pub ready_for_execution: bool,
    /// What prevents execution.
    pub blockers: Vec<String>,
    /// Advice that does not block.
    pub recommendations: Vec<String>,
    /// Ticket and task ids by local id, once materialized.
    #[serde(default)]
    pub materialized: Option<SyncOutcome>,
    /// What became of each finding the spec phases' agents reported, once the plan was stored
    /// (`branched as TSK-001.1`, `duplicate of task …`, `refused: …`), one line each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub discoveries: Vec<String>,
}

/// Results of the sync checks.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ValidationResults {
    /// Every requirement is addressed by at least one task.
    pub all_requirements_covered: bool,
    /// The task graph is acyclic.
    pub no_circular_dependencies: bool,
    /// Every ticket and task id follows `TKT-NNN` / `TSK-NNN` and is unique.
    pub all_ids_valid: bool,
    /// Every dependency, parent ticket and requirement reference resolves.
    pub all_references_resolved: bool,
    /// The problems found, one line each.
    pub issues_found: Vec<String>,
}

/// How well a requirement is covered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CoverageStatus {
    /// At least one task addresses it.
    FullyCovered,
    /// Only a ticket lists it; no task addresses it.
    PartiallyCovered,
    /// Nothing addresses it.
    NotCovered,
}

/// One row of the coverage matrix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Coverage {
    /// Requirement id.
    pub requirement_id: String,
    /// Tasks addressing it.
    pub covered_by_tasks: Vec<String>,
    /// Tickets listing it.
    pub covered_by_tickets: Vec<String>,
    /// Status.
    pub status: CoverageStatus,
}

/// Traceability counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TraceabilityStats {
    /// Requirements.
    pub requirements: RequirementStats,
    /// Tickets.
    pub tickets: TicketStats,
    /// Tasks.
    pub tasks: TaskStats,
    /// Dependencies.
    pub dependencies: DependencyStats,
}

/// Requirement counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RequirementStats {
    /// Requirements.
    pub total: usize,
    /// Fully covered.
    pub covered: usize,
    /// Covered, in percent (100 when there are none).
    pub coverage_percent: f64,
}

/// Ticket counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TicketStats {
    /// Tickets.
    pub total: usize,
    /// Tickets with at least one task.
    pub with_tasks: usize,
}

/// Task counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TaskStats {
    /// Tasks.
    pub total: usize,
    /// Tasks naming at least one requirement.
    pub with_requirements: usize,
    /// Tasks naming no requirement.
    pub orphaned: Vec<String>,
}

/// Dependency counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DependencyStats {
    /// Dependency edges.
    pub total_edges: usize,
    /// References to unknown tasks.
    pub unknown_references: usize,
}

/// The task graph's shape.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DependencyAnalysis {
    /// Task → the tasks it depends on.
    pub task_dependency_graph: BTreeMap<String, Vec<String>>,
    /// The longest chain by estimated hours, first to last.
    pub critical_path: Vec<String>,
    /// Hours along the critical path.
    pub critical_path_hours: f64,
    /// Waves of tasks that can run at the same time (each wave depends only on earlier waves);
    /// only waves of two or more tasks are listed.
    pub parallel_opportunities: Vec<Vec<String>>,
}

/// Totals.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SpecSummary {
    /// Tickets.
    pub total_tickets: usize,
    /// Tasks.
    pub total_tasks: usize,
    /// Requirements.
    pub total_requirements: usize,
    /// Summed estimates.
    pub total_estimated_hours: f64,
    /// Requirements fully covered, in percent.
    pub requirement_coverage_percent: f64,
}
