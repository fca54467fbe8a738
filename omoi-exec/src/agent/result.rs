//! `AgentResult`: the typed result an agent task completes with (stored as the task's result
//! JSON), read back with [`AgentResult::of`] instead of indexing JSON by hand.

use omoi_core::{DiscoveryId, Task, TaskId};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::verdict::ValidationVerdict;

/// A discovery the agent reported, and what became of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DiscoveryNote {
    /// Its kind.
    pub kind: omoi_core::DiscoveryKind,
    /// Its title.
    pub title: String,
    /// What the model was told (`branched as TSK-002.1`, `duplicate of …`, `refused: …`).
    pub outcome: String,
}

/// The revision a failed validation branched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RevisionNote {
    /// The blocking discovery whose branch is the revision.
    pub discovery: DiscoveryId,
    /// The revision task, then the new validation.
    pub tasks: Vec<TaskId>,
    /// Their local ids.
    pub local_ids: Vec<String>,
    /// The new validation's iteration.
    pub next_iteration: u32,
}

/// What an agent task produced.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct AgentResult {
    /// What was done (the model's summary).
    pub summary: String,
    /// The model's structured result.
    pub output: Value,
    /// Model calls made.
    pub turns: u32,
    /// The task branch (implementation), in the origin repository.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// Its head commit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// `git diff --stat` of the task's change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff_stat: Option<String>,
    /// Files the change touched.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files_changed: Vec<String>,
    /// The verdict of a validation task, from its recorded runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validation: Option<ValidationVerdict>,
    /// The revision a failed validation branched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<RevisionNote>,
    /// Discoveries reported during the run.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub discoveries: Vec<DiscoveryNote>,
    /// Changes a read-only mode left behind, discarded.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub discarded_changes: Vec<String>,
    /// Keys on which predecessors' results disagreed.
    #[serde(skip_serializing_if = "Value::is_null")]
    pub synthesis_conflicts: Value,
}

impl AgentResult {
    /// The result of a completed agent task (`None` without a result or when it is not one).
    pub fn of(task: &Task) -> Option<Self> {
        task.result.as_ref().and_then(|r| serde_json::from_value(r.clone()).ok())
    }

    /// As the task result JSON.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// Whether this is a validation whose verdict passed.
    pub fn validation_passed(&self) -> bool {
        self.validation.as_ref().is_some_and(|v| v.passed)
    }
}

/// The branches of `tasks` that may be merged: those of completed implementation tasks covered
/// by a validation that passed (a completed validation task whose recorded verdict passed and
/// which depends on them, directly or through other tasks of `tasks`), in `tasks` order. Work no
/// passing validation covers — unvalidated, or whose validations failed — is not merged.
pub fn mergeable_branches(tasks: &[Task]) -> Vec<String> {
    use std::collections::{HashMap, HashSet};
    let by_id: HashMap<TaskId, &Task> = tasks.iter().map(|t| (t.id, t)).collect();
    let mut covered: HashSet<TaskId> = HashSet::new();
    for v in tasks {
        let passed = v.def.mode == omoi_core::ExecutionMode::Validation
            && v.state == omoi_core::TaskState::Completed
            && AgentResult::of(v).is_some_and(|r| r.validation_passed());
        if !passed {
            continue;
        }
        let mut stack: Vec<TaskId> = v.dependencies.clone();
        while let Some(id) = stack.pop() {
            if covered.insert(id)
                && let Some(t) = by_id.get(&id)
            {
                stack.extend(t.dependencies.iter().copied());
            }
        }
    }
    tasks
        .iter()
        .filter(|t| t.state == omoi_core::TaskState::Completed && covered.contains(&t.id))
        .filter_map(|t| AgentResult::of(t)?.branch)
        .collect()
}
