//! # omoi-store
//!
//! Storage adapters for omoi's store ports ([`TaskStore`](omoi_core::TaskStore),
//! [`SpecStore`](omoi_core::SpecStore), [`AgentStore`](omoi_core::AgentStore),
//! [`EventStore`](omoi_core::EventStore), [`MemoryStore`](omoi_core::MemoryStore)). Each adapter
//! sits behind its own feature and passes the same conformance suites from
//! `omoi_core::testkit`.
//!
//! | feature | adapter | ports |
//! |---|---|---|
//! | `memory` (default) | [`InMemoryStore`] | all five and `DiscoveryStore`, in-process |
//! | `sqlite` | `SqliteStore` | all five and `DiscoveryStore`, in one file on disk (bundled SQLite, WAL, FTS5); several processes may share it |
//! | `redis` | `RedisStore` | `AgentStore` (heartbeats, TTL liveness keys) and `EventStore` (Streams: durable cross-process fan-out) |
//! | `postgres` | `PostgresStore` | all five and `DiscoveryStore`; any number of processes on one database (pgvector for memories) |
//!
//! The memory, SQLite and Postgres adapters also implement
//! [`InterventionStore`](omoi_core::InterventionStore) (durable steering) and
//! [`AccessStore`](omoi_core::AccessStore) (API keys as hashes, entity ownership), each with its
//! conformance suite.
//!
//! Engines depend on the ports only; pick an adapter where you assemble your orchestrator:
//!
//! ```
//! use std::sync::Arc;
//! use omoi_core::TaskStore;
//! use omoi_store::InMemoryStore;
//!
//! let tasks: Arc<dyn TaskStore> = Arc::new(InMemoryStore::new());
//! ```

#[cfg(feature = "memory")]
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "sqlite")]
mod sqlite;

#[cfg(feature = "memory")]
pub use memory::InMemoryStore;
#[cfg(feature = "postgres")]
pub use postgres::{PostgresStore, PostgresStoreBuilder};
#[cfg(feature = "redis")]
pub use redis::{RedisStore, RedisStoreBuilder};
#[cfg(feature = "sqlite")]
pub use sqlite::{SqliteStore, SqliteStoreBuilder};
