//! Canned phase outputs for one feature idea, to script a whole spec run in tests and demos
//! (feature `testkit`).
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use std::sync::Arc;
//! use omoi_core::testkit::ScriptedLlm;
//! use omoi_core::{NewSpec, SpecPhase, SystemClock, config::SpecConfig};
//! use omoi_spec::{RunOutcome, SpecRunner, StructuredExecutor, testkit};
//! use omoi_store::InMemoryStore;
//!
//! let llm = Arc::new(ScriptedLlm::new());
//! testkit::script_spec(&llm); // one passing answer per model phase, each on its own track
//! let store = Arc::new(InMemoryStore::new());
//! let runner = SpecRunner::new(
//!     store.clone(), store.clone(), Arc::new(SystemClock),
//!     Arc::new(StructuredExecutor::new(llm.clone())), SpecConfig::default(),
//! );
//! let (_, outcome) = runner.start(NewSpec::new("slugify", testkit::IDEA)).await.unwrap();
//! assert_eq!(outcome, RunOutcome::Completed);
//! assert_eq!(llm.requests_on(&ScriptedLlm::phase_track(SpecPhase::Prd)).len(), 1);
//! # });
//! ```

use omoi_core::SpecPhase;
use omoi_core::testkit::ScriptedLlm;
use serde_json::Value;

/// The idea the canned outputs answer.
pub const IDEA: &str = "Add a slugify function with tests to the tiny pyutils Python package.";

/// The phases a model answers (SYNC is computed).
pub const MODEL_PHASES: [SpecPhase; 5] =
    [SpecPhase::Explore, SpecPhase::Prd, SpecPhase::Requirements, SpecPhase::Design, SpecPhase::Tasks];

/// A passing output of `phase` for [`IDEA`]; `None` for SYNC, which no model answers.
pub fn canned_output(phase: SpecPhase) -> Option<Value> {
    let text = match phase {
        SpecPhase::Explore => include_str!("explore.json"),
        SpecPhase::Prd => include_str!("prd.json"),
        SpecPhase::Requirements => include_str!("requirements.json"),
        SpecPhase::Design => include_str!("design.json"),
        SpecPhase::Tasks => include_str!("tasks.json"),
        SpecPhase::Sync => return None,
    };
    Some(serde_json::from_str(text).expect("the canned outputs are valid JSON"))
}

/// Queues a passing answer for every model phase, each on its phase's track (see
/// [`ScriptedLlm::push_phase`]).
pub fn script_spec(llm: &ScriptedLlm) {
    for phase in MODEL_PHASES {
        if let Some(output) = canned_output(phase) {
            llm.push_phase(phase, &output);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PhaseOutput;

    #[test]
    fn every_canned_output_parses_as_its_phase() {
        for phase in MODEL_PHASES {
            let output = canned_output(phase).unwrap();
            PhaseOutput::parse(phase, &output).unwrap_or_else(|e| panic!("{phase}: {e}"));
        }
        assert!(canned_output(SpecPhase::Sync).is_none());
    }
}
