//! # omoi-spec
//!
//! The spec pipeline: a feature idea becomes a spec through the phases explore → prd →
//! requirements → design → tasks → sync, and the spec becomes stored tickets and tasks.
//!
//! The common path — an idea in, a stored plan of tickets and tasks out (here with the canned
//! answers of feature `testkit`; a real model is an `Arc<dyn LlmClient>` in the same place):
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use std::sync::Arc;
//! use omoi_core::config::SpecConfig;
//! use omoi_core::testkit::ScriptedLlm;
//! use omoi_core::{NewSpec, SpecStore, SystemClock, TaskFilter, TaskStore};
//! use omoi_spec::{RunOutcome, SpecRunner, StructuredExecutor, testkit};
//! use omoi_store::InMemoryStore;
//!
//! let store = Arc::new(InMemoryStore::new());
//! let llm = Arc::new(ScriptedLlm::new());
//! testkit::script_spec(&llm);
//! let phases = Arc::new(StructuredExecutor::new(llm));
//! let runner = SpecRunner::new(store.clone(), store.clone(), Arc::new(SystemClock), phases, SpecConfig::default());
//!
//! let (spec, outcome) = runner.start(NewSpec::new("slugify", testkit::IDEA)).await.unwrap();
//! assert_eq!(outcome, RunOutcome::Completed);
//! assert_eq!(store.list_tickets(spec).await.unwrap().len(), 2);
//! let tasks = store.list_tasks(&TaskFilter { spec_id: Some(spec), ..TaskFilter::default() }).await.unwrap();
//! assert_eq!(tasks.len(), 6); // queued with their dependencies, ready for workers
//! # });
//! ```
//!
//! What it is made of:
//!
//! - [`output`]: each phase's typed output (serde + JSON schema sent to the model), parsed
//!   strictly so a malformed answer becomes precise feedback.
//! - [`prompt`]: per-phase prompts with the idea, earlier outputs summarized within
//!   `prompt_context_chars`, the previous attempt's feedback and the output schema.
//! - [`evaluate`]: deterministic structural evaluators with OmoiOS's weights; a phase passes at
//!   `pass_threshold` (0.7) with no blocking problem; an optional [`Judge`] (for example
//!   [`LlmJudge`]) can blend a model's verdict into the score.
//! - [`executor`]: the [`PhaseExecutor`] port (how an output is produced) and the default
//!   [`StructuredExecutor`] (one structured model call per attempt), with the shared [`Budget`].
//! - [`runner`]: [`SpecRunner`]: attempts with feedback and backoff, checkpoints, resume that
//!   skips passed phases, approval gates, budgets, events.
//! - [`ids`]: the local id formats (`REQ-…`, `US-…`, `TKT-…`, `TSK-…`), shared by evaluation and sync.
//! - [`sync`]: traceability, dependency analysis and idempotent materialization through
//!   [`SpecStore::sync`](omoi_core::SpecStore::sync).
//!
//! A failed phase leaves the spec resumable:
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use std::sync::Arc;
//! use omoi_core::config::SpecConfig;
//! use omoi_core::testkit::{ManualClock, ScriptedLlm};
//! use omoi_core::{LlmError, NewSpec, SpecState, SpecStore};
//! use omoi_spec::{SpecError, SpecRunner, StructuredExecutor};
//! use omoi_store::InMemoryStore;
//!
//! let clock = ManualClock::new();
//! let store = Arc::new(InMemoryStore::with_clock(clock.clone()));
//! let llm = Arc::new(ScriptedLlm::new());
//! llm.push_error(LlmError::Auth("no key".into())); // a permanent error: the phase fails at once
//! let runner = SpecRunner::new(store.clone(), store.clone(), clock, Arc::new(StructuredExecutor::new(llm)), SpecConfig::default());
//!
//! let err = runner.start(NewSpec::new("slugify", "Add a slugify function")).await.unwrap_err();
//! assert!(matches!(err, SpecError::Model { .. }));
//! let spec = store.list_specs().await.unwrap().remove(0);
//! assert_eq!(spec.state.to_string(), "failed:explore"); // resumable with `runner.run(spec.id)`
//! # });
//! ```

pub mod budget;
pub mod error;
pub mod evaluate;
pub mod executor;
mod findings;
pub mod ids;
pub mod output;
pub mod prompt;
pub mod runner;
pub mod sync;
#[cfg(feature = "testkit")]
#[cfg_attr(docsrs, doc(cfg(feature = "testkit")))]
pub mod testkit;

pub use budget::{Budget, BudgetExceeded, BudgetLimits};
pub use error::SpecError;
pub use evaluate::{Criterion, Evaluation, Evaluator, Judge, Judgement, LlmJudge, StructuralEvaluator};
pub use executor::{PhaseAttempt, PhaseContext, PhaseError, PhaseExecutor, StructuredExecutor};
pub use output::{PhaseOutput, PhaseOutputs};
pub use prompt::{PhasePrompt, PromptBuilder};
pub use runner::{RunOutcome, SpecRunner};
pub use sync::{PlanCheck, SyncError, UnknownRef};
