//! TASKS: tickets and atomic tasks with dependencies.

use omoi_core::{ExecutionMode, Priority, WorkPhase};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The output of the tasks phase.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TasksOutput {
    /// Feature name.
    #[serde(default)]
    pub feature_name: String,
    /// Tickets (`TKT-NNN`), each grouping tasks.
    pub tickets: Vec<PlanTicket>,
    /// Atomic tasks (`TSK-NNN`, 4 hours or less each).
    pub tasks: Vec<PlanTask>,
    /// Task ids on the longest dependency chain, first to last.
    #[serde(default)]
    pub critical_path: Vec<String>,
    /// Sum of the tasks' estimates.
    #[serde(default)]
    pub total_estimated_hours: f64,
}

/// A ticket.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PlanTicket {
    /// `TKT-NNN`.
    pub id: String,
    /// Title.
    pub title: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Priority.
    pub priority: Priority,
    /// Size.
    #[serde(default)]
    pub estimate: Estimate,
    /// Requirement ids the ticket addresses.
    #[serde(default)]
    pub requirements: Vec<String>,
    /// Ids of its tasks.
    #[serde(default)]
    pub tasks: Vec<String>,
    /// Checkable outcomes.
    #[serde(default)]
    pub acceptance_criteria: Vec<String>,
    /// Ticket-level dependencies.
    #[serde(default)]
    pub dependencies: TicketDependencies,
}

/// T-shirt size of a ticket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Estimate {
    /// Under half a day.
    XS,
    /// About a day.
    S,
    /// A few days.
    #[default]
    M,
    /// About a week.
    L,
    /// More than a week.
    XL,
}

/// Ticket-level dependencies.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct TicketDependencies {
    /// Tickets that must finish first.
    pub blocked_by: Vec<String>,
    /// Tickets waiting for this one.
    pub blocks: Vec<String>,
}

/// An atomic task.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PlanTask {
    /// `TSK-NNN`.
    pub id: String,
    /// Short imperative title.
    pub title: String,
    /// What to do.
    #[serde(default)]
    pub description: String,
    /// The ticket it belongs to (`TKT-NNN`).
    #[serde(default)]
    pub parent_ticket: String,
    /// Kind of work.
    #[serde(rename = "type", default)]
    pub kind: TaskType,
    /// Priority (defaults to the ticket's).
    #[serde(default)]
    pub priority: Option<Priority>,
    /// Estimate in hours (more than 0, at most 4).
    pub estimated_hours: f64,
    /// Files the task creates.
    #[serde(default)]
    pub files_to_create: Vec<String>,
    /// Files the task changes.
    #[serde(default)]
    pub files_to_modify: Vec<String>,
    /// Checkable outcomes.
    #[serde(default)]
    pub acceptance_criteria: Vec<String>,
    /// Task-level dependencies.
    #[serde(default)]
    pub dependencies: TaskDependencies,
    /// Requirement ids the task implements or verifies.
    #[serde(default)]
    pub requirements_addressed: Vec<String>,
}

/// Task-level dependencies.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct TaskDependencies {
    /// Tasks (`TSK-NNN`) that must complete first.
    pub depends_on: Vec<String>,
    /// Tasks waiting for this one (informational; `depends_on` is authoritative).
    pub blocks: Vec<String>,
}

/// Kind of work a task is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskType {
    /// Write or change code.
    #[default]
    Implementation,
    /// Write tests.
    Test,
    /// Review and run tests, no changes.
    Validation,
    /// Investigate, read-only.
    Research,
    /// Write documentation.
    Documentation,
}

impl TaskType {
    /// The execution mode an agent runs this kind of task in.
    pub fn mode(self) -> ExecutionMode {
        match self {
            TaskType::Implementation | TaskType::Test | TaskType::Documentation => ExecutionMode::Implementation,
            TaskType::Validation => ExecutionMode::Validation,
            TaskType::Research => ExecutionMode::Exploration,
        }
    }

    /// The delivery phase this kind of task belongs to.
    pub fn phase(self) -> WorkPhase {
        match self {
            TaskType::Implementation | TaskType::Documentation => WorkPhase::Implementation,
            TaskType::Test | TaskType::Validation => WorkPhase::Testing,
            TaskType::Research => WorkPhase::Analysis,
        }
    }
}

impl PlanTask {
    /// Every file the task creates or changes.
    pub fn files(&self) -> impl Iterator<Item = &String> {
        self.files_to_create.iter().chain(&self.files_to_modify)
    }
}
