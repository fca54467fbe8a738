//! Specs: a feature idea on its way through the phase pipeline, and the task plan it produces.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::common::{Priority, Usage};
use super::task::TaskDefinition;
use crate::ids::{SpecId, TaskId, TicketId};
use crate::state::{SpecPhase, SpecState};

/// A spec to create.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NewSpec {
    /// Its id.
    pub id: SpecId,
    /// Short name of the feature.
    pub title: String,
    /// The feature idea, as the user stated it.
    pub idea: String,
    /// Free-form context (target repository, constraints…).
    pub metadata: Value,
}

impl NewSpec {
    /// A spec for `idea`.
    pub fn new(title: impl Into<String>, idea: impl Into<String>) -> Self {
        Self { id: SpecId::new(), title: title.into(), idea: idea.into(), metadata: Value::Null }
    }
}

/// The stored output of a passed phase. Resume skips every phase that has one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PhaseCheckpoint {
    /// The phase.
    pub phase: SpecPhase,
    /// Its typed output, as JSON.
    pub output: Value,
    /// The evaluator's score (0–1).
    pub score: f64,
    /// Attempts it took.
    pub attempts: u32,
    /// Model usage of those attempts.
    pub usage: Usage,
    /// When it passed.
    pub passed_at: DateTime<Utc>,
}

/// A stored spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Spec {
    /// Its id.
    pub id: SpecId,
    /// Short name.
    pub title: String,
    /// The feature idea.
    pub idea: String,
    /// Free-form context.
    pub metadata: Value,
    /// Current state.
    pub state: SpecState,
    /// Checkpoints of passed phases, keyed by phase.
    pub checkpoints: BTreeMap<SpecPhase, PhaseCheckpoint>,
    /// Model usage so far, including failed attempts.
    pub usage: Usage,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

impl Spec {
    /// The spec as created at `now`: a draft with no checkpoints and no usage.
    pub fn drafted(new: NewSpec, now: DateTime<Utc>) -> Self {
        Spec {
            id: new.id,
            title: new.title,
            idea: new.idea,
            metadata: new.metadata,
            state: SpecState::Draft,
            checkpoints: BTreeMap::new(),
            usage: Usage::default(),
            created_at: now,
            updated_at: now,
        }
    }

    /// The first phase without a checkpoint: where a run (or a resume) starts.
    pub fn next_phase(&self) -> Option<SpecPhase> {
        SpecPhase::ALL.iter().copied().find(|p| !self.checkpoints.contains_key(p))
    }
}

/// A ticket in a spec's task plan, named by its local id (`TKT-001`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PlannedTicket {
    /// Local id, unique within the spec.
    pub local_id: String,
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// Priority.
    pub priority: Priority,
    /// Requirement ids it addresses.
    pub requirements: Vec<String>,
}

/// A task in a spec's task plan, named by its local id (`TSK-001`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PlannedTask {
    /// Local id, unique within the spec.
    pub local_id: String,
    /// Local id of its ticket.
    pub ticket: Option<String>,
    /// Local ids of the tasks it depends on.
    pub depends_on: Vec<String>,
    /// What the task is.
    pub def: TaskDefinition,
}

/// The tickets and tasks to materialize for a spec, referencing each other by local id.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SyncPlan {
    /// Tickets.
    pub tickets: Vec<PlannedTicket>,
    /// Tasks.
    pub tasks: Vec<PlannedTask>,
}

/// What a sync did. Running the same plan again maps to the same ids and creates nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SyncOutcome {
    /// Ticket ids by local id.
    pub tickets: BTreeMap<String, TicketId>,
    /// Task ids by local id.
    pub tasks: BTreeMap<String, TaskId>,
    /// Tickets created by this call.
    pub tickets_created: usize,
    /// Tasks created by this call.
    pub tasks_created: usize,
    /// Dependencies this call added to already-synced tasks that had not started.
    #[serde(default)]
    pub dependencies_added: usize,
}
