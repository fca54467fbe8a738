//! Ports: the traits adapters implement. Each is small, split by concern and dyn-compatible
//! (`Arc<dyn TaskStore>`), with typed errors that say whether a retry may help.

pub mod access_store;
pub mod agent_store;
pub mod clock;
pub mod discovery_store;
pub mod embedder;
pub mod event_store;
pub mod intervention_store;
pub mod llm;
pub mod memory_store;
pub mod sandbox;
pub mod sandbox_inventory;
pub mod spec_store;
pub mod task_store;
