//! Conformance suites: one module per port, one `pub async fn` per behaviour.
//!
//! Each module has a `Harness` built from the adapter under test and a [`ManualClock`](super::ManualClock)
//! the adapter must use for every timestamp it writes. The `*_suite!` macros run every scenario
//! of a module as its own test; scenarios can also be called one by one.

pub mod access_store;
pub mod agent_store;
pub mod discovery_store;
pub mod event_store;
pub mod intervention_store;
pub mod memory_store;
pub mod sandbox;
pub mod sandbox_read_only;
pub mod spec_store;
pub mod task_store;
