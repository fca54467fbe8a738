//! What an orchestrator run produced: per-task outcomes, results, branches and cost.

use omoi_core::{ExecutionMode, Task, TaskCounts, TaskId, TaskState, Usage};
use serde::Serialize;
use serde_json::Value;

use crate::worker::WorkerStats;

/// How one task ended (or where it stands when the run settled).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskOutcome {
    /// The task.
    pub id: TaskId,
    /// Its id within its spec's plan (`TSK-1`, …), if it came from a spec.
    pub local_id: Option<String>,
    /// Its title.
    pub title: String,
    /// Its execution mode.
    pub mode: ExecutionMode,
    /// Its state: `Completed`, or why not (`Failed`, `Blocked`, `Cancelled`, …).
    pub state: TaskState,
    /// Attempts used.
    pub attempts: u32,
    /// The result it completed with.
    pub result: Option<Value>,
    /// The last failure message.
    pub error: Option<String>,
    /// The git branch its work is on, when its executor reported one.
    pub branch: Option<String>,
    /// Model usage of all its attempts.
    pub usage: Usage,
}

impl From<&Task> for TaskOutcome {
    fn from(t: &Task) -> Self {
        Self {
            id: t.id,
            local_id: t.links.local_id.clone(),
            title: t.def.title.clone(),
            mode: t.def.mode,
            state: t.state,
            attempts: t.attempts,
            result: t.result.clone(),
            error: t.last_error.clone(),
            branch: t.result.as_ref().and_then(|r| r.get("branch")).and_then(Value::as_str).map(str::to_owned),
            usage: t.usage,
        }
    }
}

/// What [`Orchestrator::run_until_settled`](super::Orchestrator::run_until_settled) and
/// [`drain`](super::Orchestrator::drain) report: every task the orchestrator submitted (directly
/// or through its specs), in creation order.
#[derive(Debug, Clone, PartialEq)]
pub struct RunReport {
    /// One outcome per task.
    pub tasks: Vec<TaskOutcome>,
    /// Tasks per state, over the whole store.
    pub counts: TaskCounts,
    /// Usage summed over the reported tasks.
    pub usage: Usage,
    /// What the workers did (filled when they stopped: by `drain` or `shutdown`).
    pub workers: Option<WorkerStats>,
}

impl RunReport {
    /// Whether every reported task completed.
    pub fn all_completed(&self) -> bool {
        self.tasks.iter().all(|t| t.state == TaskState::Completed)
    }

    /// The tasks that did not complete.
    pub fn unfinished(&self) -> impl Iterator<Item = &TaskOutcome> {
        self.tasks.iter().filter(|t| t.state != TaskState::Completed)
    }

    /// Branches of completed tasks, in creation order.
    pub fn branches(&self) -> Vec<String> {
        self.tasks.iter().filter(|t| t.state == TaskState::Completed).filter_map(|t| t.branch.clone()).collect()
    }
}
