//! Test support for omoi and for third-party adapter authors (feature `testkit`).
//!
//! - [`ManualClock`]: time that moves only when the test says so.
//! - [`ScriptedLlm`]: plays queued model responses (text, JSON, tool calls, errors) and records
//!   every request.
//! - [`check_drain`]: after workers drained a task graph, every task completed exactly once and
//!   in dependency order (by event cursors).
//! - [`url_on_host`]: a service URL as another (simulated) host reaches it.
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
mod drain;
pub mod fixtures;
mod llm;
mod macros;
pub mod suites;

pub use clock::ManualClock;
pub use drain::{DrainReport, check_drain};

/// `url` (`scheme://[user@]host[:port]/...`) with its host replaced by `host`: how a process on
/// another (simulated) host reaches the same service, e.g. over a veth link.
///
/// ```
/// use omoi_core::testkit::url_on_host;
/// let url = "postgres://postgres@127.0.0.1:55432/omoi_test";
/// assert_eq!(url_on_host(url, "10.201.1.1"), "postgres://postgres@10.201.1.1:55432/omoi_test");
/// assert_eq!(url_on_host("redis://localhost", "10.0.0.1"), "redis://10.0.0.1");
/// ```
pub fn url_on_host(url: &str, host: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let (user, hostpart) = match rest.split_once('@') {
        Some((u, h)) => (format!("{u}@"), h),
        None => (String::new(), rest),
    };
    let tail = hostpart.find([':', '/', '?']).map_or("", |i| &hostpart[i..]);
    format!("{scheme}://{user}{host}{tail}")
}
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
