//! Test support for omoi and for third-party adapter authors (feature `testkit`).
//!
//! - [`ManualClock`]: time that moves only when the test says so.
//! - [`ScriptedLlm`]: plays queued model responses (text, JSON, tool calls, errors) and records
//!   every request.
//! - [`fixtures`]: builders for task graphs, sync plans and a memory-search fixture.
//! - [`suites`]: the conformance scenarios every adapter of a port must pass, as
//!   `pub async fn`s over `Arc<dyn Port>`, plus one macro per port that expands every scenario
//!   into a `#[tokio::test]` for your adapter:
//!
//! ```ignore
//! // tests/conformance.rs of an adapter crate (needs tokio with `macros` and `rt-multi-thread`)
//! use std::sync::Arc;
//! use omoi_core::testkit::ManualClock;
//!
//! async fn factory(clock: Arc<ManualClock>) -> Option<Arc<MyStore>> {
//!     Some(Arc::new(MyStore::new(clock).await))   // return None to skip (no service configured)
//! }
//! omoi_core::task_store_suite!(factory);
//! omoi_core::event_store_suite!(factory);
//! ```
//!
//! A factory that needs an external service should call [`service_url`]: under `CI=true` a
//! missing service fails the test; elsewhere the test is skipped with a message.

mod clock;
pub mod fixtures;
mod llm;
mod macros;
pub mod suites;

pub use clock::ManualClock;
pub use llm::{Recording, Router, Scripted, ScriptedLlm, text_response, tool_response};

/// The value of the environment variable `var` naming a test service. If it is unset: under
/// `CI=true` this panics (a missing service must fail CI); elsewhere it prints that the test
/// is skipped and returns `None`.
pub fn service_url(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") => {
            panic!("{var} is not set and CI=true: run `scripts/services up` and source .omoi/services.env")
        }
        _ => {
            eprintln!("skipped: {var} is not set (run `scripts/services up`, then source .omoi/services.env)");
            None
        }
    }
}
