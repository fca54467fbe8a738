//! Errors of the spec runner.

use omoi_core::{LlmError, SpecPhase, SpecState, StoreError};

use crate::budget::BudgetExceeded;
use crate::output::CorruptCheckpoint;
use crate::sync::SyncError;

/// Why a spec run stopped with an error. Every variant naming a phase has left the spec
/// `Failed` at that phase (resumable), except [`SpecError::Store`] when the store itself failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    /// Every attempt scored below the threshold (or had blocking problems, or malformed output).
    #[error("phase {phase} failed after {attempts} attempts (last score {}): {feedback}", last_score.map_or("none".to_owned(), |s| format!("{s:.2}")))]
    PhaseFailed {
        /// The phase.
        phase: SpecPhase,
        /// Attempts made.
        attempts: u32,
        /// Score of the last scored attempt.
        last_score: Option<f64>,
        /// The last feedback.
        feedback: String,
    },
    /// The spec's token or cost budget refused a model call.
    #[error("phase {phase}: {source}")]
    Budget {
        /// The phase.
        phase: SpecPhase,
        /// The refusal.
        source: BudgetExceeded,
    },
    /// The model failed in a way retrying will not fix (authentication, invalid request…), or
    /// kept failing transiently through every attempt.
    #[error("phase {phase}: model error: {source}")]
    Model {
        /// The phase.
        phase: SpecPhase,
        /// The error.
        source: LlmError,
    },
    /// The executor failed for good.
    #[error("phase {phase}: {message}")]
    Executor {
        /// The phase.
        phase: SpecPhase,
        /// What happened.
        message: String,
    },
    /// SYNC refused the task plan or could not store it.
    #[error("sync: {0}")]
    Sync(#[from] SyncError),
    /// A stored checkpoint does not parse as its phase's output.
    #[error(transparent)]
    CorruptCheckpoint(#[from] CorruptCheckpoint),
    /// `approve` or `reject` on a spec that is not waiting for approval.
    #[error("spec is {state}, not awaiting approval")]
    NotAwaitingApproval {
        /// Its state.
        state: SpecState,
    },
    /// `approve` or `reject` came after the gate's `approval_timeout`: the gate expired and
    /// the spec is now `Failed` at that phase (running it again re-opens the gate).
    #[error("approval of {phase} timed out after {waited:?} (limit {limit:?}); the spec failed at {phase}")]
    ApprovalTimedOut {
        /// The gated phase.
        phase: SpecPhase,
        /// How long it waited.
        waited: std::time::Duration,
        /// The configured `approval_timeout`.
        limit: std::time::Duration,
    },
    /// The spec was cancelled.
    #[error("spec is cancelled")]
    Cancelled,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl SpecError {
    /// The phase the error happened in, if any.
    pub fn phase(&self) -> Option<SpecPhase> {
        match self {
            SpecError::PhaseFailed { phase, .. }
            | SpecError::Budget { phase, .. }
            | SpecError::Model { phase, .. }
            | SpecError::Executor { phase, .. }
            | SpecError::ApprovalTimedOut { phase, .. } => Some(*phase),
            SpecError::Sync(_) => Some(SpecPhase::Sync),
            SpecError::CorruptCheckpoint(c) => Some(c.phase),
            _ => None,
        }
    }
}
