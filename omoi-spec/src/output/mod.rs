//! The typed output of each phase, its JSON schema (sent to the model) and strict parsing.
//!
//! A model's answer is parsed into the phase's type with the path of the first mismatch, so a
//! malformed answer becomes precise feedback ("at `requirements[1].priority`: unknown variant
//! `High`, expected one of …"), never a panic.

mod design;
mod explore;
mod prd;
mod requirements;
mod summary;
mod sync;
mod tasks;

use std::collections::BTreeMap;

use omoi_core::{LlmError, OutputSchema, Spec, SpecPhase};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use design::{ApiEndpoint, Component, DataModel, DesignOutput, TestingStrategy};
pub use explore::{Conventions, DiscoveryQuestions, ExploreOutput, FeatureSummary, KeyFile};
pub use prd::{Constraints, Goals, Level, Overview, PrdOutput, Risk, Scope, SuccessMetric, UserKind, UserStory, Users};
pub use requirements::{Requirement, RequirementType, RequirementsOutput, TraceLink};
pub use sync::{
    Coverage, CoverageStatus, DependencyAnalysis, DependencyStats, RequirementStats, SpecSummary, SyncOutput,
    TaskStats, TicketStats, TraceabilityStats, ValidationResults,
};
pub use tasks::{Estimate, PlanTask, PlanTicket, TaskDependencies, TaskType, TasksOutput, TicketDependencies};

/// The typed output of one phase.
#[derive(Debug, Clone, PartialEq)]
pub enum PhaseOutput {
    /// [`SpecPhase::Explore`]
    Explore(ExploreOutput),
    /// [`SpecPhase::Prd`]
    Prd(PrdOutput),
    /// [`SpecPhase::Requirements`]
    Requirements(RequirementsOutput),
    /// [`SpecPhase::Design`]
    Design(DesignOutput),
    /// [`SpecPhase::Tasks`]
    Tasks(TasksOutput),
    /// [`SpecPhase::Sync`]
    Sync(SyncOutput),
}

fn typed<T: DeserializeOwned>(value: &Value) -> Result<T, LlmError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let at = if path == "." { String::new() } else { format!(" at `{path}`") };
        LlmError::OutputMismatch {
            raw: serde_json::to_string(value).unwrap_or_default(),
            reason: format!("JSON does not match the schema{at}: {}", e.inner()),
        }
    })
}

fn value_of(v: &impl Serialize) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

impl PhaseOutput {
    /// The phase this output belongs to.
    pub fn phase(&self) -> SpecPhase {
        match self {
            PhaseOutput::Explore(_) => SpecPhase::Explore,
            PhaseOutput::Prd(_) => SpecPhase::Prd,
            PhaseOutput::Requirements(_) => SpecPhase::Requirements,
            PhaseOutput::Design(_) => SpecPhase::Design,
            PhaseOutput::Tasks(_) => SpecPhase::Tasks,
            PhaseOutput::Sync(_) => SpecPhase::Sync,
        }
    }

    /// Parses `value` as `phase`'s output. A mismatch is [`LlmError::OutputMismatch`] whose
    /// reason names the JSON path and what was expected there.
    pub fn parse(phase: SpecPhase, value: &Value) -> Result<PhaseOutput, LlmError> {
        Ok(match phase {
            SpecPhase::Explore => PhaseOutput::Explore(typed(value)?),
            SpecPhase::Prd => PhaseOutput::Prd(typed(value)?),
            SpecPhase::Requirements => PhaseOutput::Requirements(typed(value)?),
            SpecPhase::Design => PhaseOutput::Design(typed(value)?),
            SpecPhase::Tasks => PhaseOutput::Tasks(typed(value)?),
            SpecPhase::Sync => PhaseOutput::Sync(typed(value)?),
        })
    }

    /// The output as JSON (what a checkpoint stores).
    pub fn to_value(&self) -> Value {
        match self {
            PhaseOutput::Explore(o) => value_of(o),
            PhaseOutput::Prd(o) => value_of(o),
            PhaseOutput::Requirements(o) => value_of(o),
            PhaseOutput::Design(o) => value_of(o),
            PhaseOutput::Tasks(o) => value_of(o),
            PhaseOutput::Sync(o) => value_of(o),
        }
    }

    /// The JSON schema of `phase`'s output, named `<phase>_output`.
    pub fn schema(phase: SpecPhase) -> OutputSchema {
        let name = format!("{phase}_output");
        match phase {
            SpecPhase::Explore => OutputSchema::of::<ExploreOutput>(name),
            SpecPhase::Prd => OutputSchema::of::<PrdOutput>(name),
            SpecPhase::Requirements => OutputSchema::of::<RequirementsOutput>(name),
            SpecPhase::Design => OutputSchema::of::<DesignOutput>(name),
            SpecPhase::Tasks => OutputSchema::of::<TasksOutput>(name),
            SpecPhase::Sync => OutputSchema::of::<SyncOutput>(name),
        }
    }
}

/// A checkpoint whose stored output no longer parses as its phase's type.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("checkpoint of phase {phase} does not parse: {reason}")]
pub struct CorruptCheckpoint {
    /// The phase.
    pub phase: SpecPhase,
    /// Why.
    pub reason: String,
}

/// The outputs of the phases passed so far, typed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PhaseOutputs {
    outputs: BTreeMap<SpecPhase, PhaseOutput>,
}

impl PhaseOutputs {
    /// No outputs.
    pub fn new() -> Self {
        Self::default()
    }

    /// The outputs checkpointed in `spec`.
    pub fn from_spec(spec: &Spec) -> Result<Self, CorruptCheckpoint> {
        let mut out = Self::new();
        for (phase, cp) in &spec.checkpoints {
            let parsed = PhaseOutput::parse(*phase, &cp.output).map_err(|e| CorruptCheckpoint {
                phase: *phase,
                reason: match e {
                    LlmError::OutputMismatch { reason, .. } => reason,
                    other => other.to_string(),
                },
            })?;
            out.insert(parsed);
        }
        Ok(out)
    }

    /// Adds (or replaces) an output.
    pub fn insert(&mut self, output: PhaseOutput) {
        self.outputs.insert(output.phase(), output);
    }

    /// The output of `phase`, if it passed.
    pub fn get(&self, phase: SpecPhase) -> Option<&PhaseOutput> {
        self.outputs.get(&phase)
    }

    /// Outputs of the phases before `phase`, in pipeline order.
    pub fn before(&self, phase: SpecPhase) -> impl Iterator<Item = &PhaseOutput> {
        self.outputs.range(..phase).map(|(_, o)| o)
    }

    /// The explore output.
    pub fn explore(&self) -> Option<&ExploreOutput> {
        match self.get(SpecPhase::Explore) {
            Some(PhaseOutput::Explore(o)) => Some(o),
            _ => None,
        }
    }

    /// The PRD output.
    pub fn prd(&self) -> Option<&PrdOutput> {
        match self.get(SpecPhase::Prd) {
            Some(PhaseOutput::Prd(o)) => Some(o),
            _ => None,
        }
    }

    /// The requirements output.
    pub fn requirements(&self) -> Option<&RequirementsOutput> {
        match self.get(SpecPhase::Requirements) {
            Some(PhaseOutput::Requirements(o)) => Some(o),
            _ => None,
        }
    }

    /// The design output.
    pub fn design(&self) -> Option<&DesignOutput> {
        match self.get(SpecPhase::Design) {
            Some(PhaseOutput::Design(o)) => Some(o),
            _ => None,
        }
    }

    /// The tasks output.
    pub fn tasks(&self) -> Option<&TasksOutput> {
        match self.get(SpecPhase::Tasks) {
            Some(PhaseOutput::Tasks(o)) => Some(o),
            _ => None,
        }
    }

    /// The sync output.
    pub fn sync(&self) -> Option<&SyncOutput> {
        match self.get(SpecPhase::Sync) {
            Some(PhaseOutput::Sync(o)) => Some(o),
            _ => None,
        }
    }
}
