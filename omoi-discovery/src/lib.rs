//! # omoi-discovery
//!
//! Discovery branching: an agent that finds new work while executing a task (a bug, a missing
//! requirement, a security issue, …) reports a discovery, which becomes a *branch* of the task
//! graph in any phase — deduplicated and bounded so it can never run away.
//!
//! - [`DiscoveryService`]: semantic dedup (embedding cosine at or above
//!   `discovery.dedup_similarity`, default 0.90) in front of the store's one atomic operation
//!   ([`DiscoveryStore::record_discovery`](omoi_core::DiscoveryStore::record_discovery)), which
//!   does exact dedup, enforces the limits of the `discovery` config section (per source task,
//!   per spec, depth, cooldown on the store's clock, consecutive diagnostic failures), spawns
//!   the branch and makes the source's dependents wait for it when the discovery blocks.
//!   [`Reported::message`] is what the reporting model is told.
//! - [`DiscoveryService::revise`]: the validation revision loop as a blocking discovery whose
//!   branch is the revision and a new validation, bounded by `max_validation_iterations`.
//! - [`DiscoveryService::report_findings`]: what the spec phases' agents reported before the
//!   plan existed, reported by SYNC as discoveries of the stored plan ([`source_for`]).
//! - [`Analyzer`]: patterns, hotspots and recommendations as data, with an optional model
//!   summary, announced as a `discovery.analyzed` event.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use std::sync::Arc;
//! use std::time::Duration;
//! use omoi_core::config::DiscoveryConfig;
//! use omoi_core::{AgentId, ClaimRequest, DiscoveryKind, NewDiscovery, NewTask, RecordOutcome, TaskStore};
//! use omoi_discovery::DiscoveryService;
//! use omoi_store::InMemoryStore;
//!
//! let store = Arc::new(InMemoryStore::new());
//! let task = NewTask::new("build the parser");
//! store.insert_tasks(vec![task.clone()]).await.unwrap();
//! store.claim(&ClaimRequest::new(AgentId::new(), 1, Duration::from_secs(30))).await.unwrap();
//!
//! let service = DiscoveryService::new(store.clone(), store.clone(), &DiscoveryConfig::default());
//! let found = NewDiscovery::new(task.id, DiscoveryKind::Bug, "unicode input crashes", "parse('é') panics", "parse('é') returns a token");
//! let reported = service.report(found).await.unwrap();
//! assert!(matches!(reported.outcome, RecordOutcome::Branched { .. }));
//! assert!(reported.message().contains("branched as"));
//! # });
//! ```

mod analyzer;
mod findings;
mod revision;
mod service;

pub use analyzer::{Analysis, Analyzer, Hotspot, LlmSummary, Pattern, Recommendation, Severity, analyze_discoveries};
pub use findings::source_for;
pub use revision::{FailedValidation, ITERATION_KEY, Revision, iteration};
pub use service::{DiscoveryError, DiscoveryService, Reported};
