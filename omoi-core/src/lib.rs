//! # omoi-core
//!
//! The foundation of omoi, a toolkit for durable, spec-driven, multi-agent software-engineering
//! orchestration. This crate holds what every other omoi crate and every adapter shares, and
//! nothing that talks to the outside world:
//!
//! - **Domain types** with typed ids (UUID v7): [`Task`], [`Spec`], [`Ticket`], [`Agent`],
//!   [`Discovery`], [`Memory`] and the typed [`Event`] enum (`task.completed`, …).
//! - **State machines** kept as data, one pure transition function each: [`TaskState::apply`],
//!   [`SpecState::apply`], [`AgentStatus::transition`].
//! - **Pure algorithms**: dependency graphs ([`dag`]), reciprocal rank fusion ([`rrf`]), discovery
//!   branching rules ([`branching`]).
//! - **EARS requirements** ([`ears`]): parse a requirement sentence into its typed pattern, or
//!   say what is wrong with it.
//! - **Configuration**: every threshold, with OmoiOS's defaults ([`config::OmoiConfig`]).
//! - **Ports**: [`TaskStore`], [`SpecStore`], [`AgentStore`], [`EventStore`], [`MemoryStore`],
//!   [`DiscoveryStore`], [`InterventionStore`], [`LlmClient`], [`Embedder`],
//!   [`Sandbox`]/[`SandboxProvider`], [`SandboxInventory`] and [`Clock`].
//! - With feature `testkit`: conformance suites every adapter runs, [`ManualClock`](testkit::ManualClock),
//!   [`ScriptedLlm`](testkit::ScriptedLlm) and fixtures.
//!
//! Adapters live in `omoi-store` and `omoi-sandbox`; engines in `omoi-spec`, `omoi-exec`,
//! `omoi-discovery` and `omoi-monitor`. This crate depends on no database, HTTP or container
//! client.
//!
//! ```
//! use omoi_core::{TaskEvent, TaskState};
//!
//! let next = TaskState::Ready.apply(TaskEvent::Claim).unwrap();
//! assert_eq!(next, TaskState::Claimed);
//! assert!(TaskState::Completed.apply(TaskEvent::Claim).is_err());
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

mod macros;

pub mod branching;
pub mod config;
pub mod dag;
pub mod domain;
pub mod ears;
pub mod error;
pub mod ids;
pub mod ports;
pub mod queue;
pub mod rrf;
pub mod state;
pub mod validate;

#[cfg(feature = "testkit")]
#[cfg_attr(docsrs, doc(cfg(feature = "testkit")))]
pub mod testkit;

pub use domain::{access, agent, common, discovery, event, intervention, memory, monitoring, spec, task, ticket};

pub use domain::access::{AccessRole, ApiKey, NewApiKey};
pub use domain::agent::{Agent, AgentKind, Heartbeat, HeartbeatAck, NewAgent, OverdueAgent};
pub use domain::common::{ExecutionMode, Priority, Usage, WorkPhase};
pub use domain::discovery::{
    Discovery, DiscoveryKind, DiscoveryStatus, DiscoveryTransition, DuplicateOf, Evidence, NewDiscovery, Refusal,
    RefusalReason,
};
pub use domain::event::{Cursor, Event, StoredEvent, Subject};
pub use domain::intervention::{Intervention, InterventionSource, NewIntervention, Severity};
pub use domain::memory::{Memory, MemoryHit, MemoryKind, MemoryQuery, NewMemory, SearchMode};
pub use domain::monitoring::{StuckRule, SystemHealth};
pub use domain::spec::{NewSpec, PhaseCheckpoint, PlannedTask, PlannedTicket, Spec, SyncOutcome, SyncPlan};
pub use domain::task::{BackoffPolicy, FencingToken, Lease, NewTask, Task, TaskDefinition, TaskLinks};
pub use domain::ticket::{Ticket, TicketStatus};
pub use error::{BoxError, StoreError, TaskRef};
pub use ids::{AgentId, ApiKeyId, DiscoveryId, InterventionId, MemoryId, SandboxId, SpecId, TaskId, TicketId};
pub use macros::ParseEnumError;
pub use ports::access_store::AccessStore;
pub use ports::agent_store::AgentStore;
pub use ports::clock::{Clock, SystemClock};
pub use ports::discovery_store::{DiscoveryFilter, DiscoveryReport, DiscoveryStore, RecordOutcome};
pub use ports::embedder::{EmbedError, Embedder, HashingEmbedder};
pub use ports::event_store::{EventStore, EventStream, WakeStream};
pub use ports::intervention_store::InterventionStore;
pub use ports::llm::{
    CompletionRequest, CompletionResponse, ContentBlock, LlmClient, LlmError, Message, OutputSchema, Role, StopReason,
    ToolCall, ToolSpec, complete_as,
};
pub use ports::memory_store::MemoryStore;
pub use ports::sandbox::{
    Command, ExecOutput, ExecRequest, NetworkPolicy, ResourceLimits, Sandbox, SandboxError, SandboxProvider,
    SandboxSpec, SandboxStatus, WorkspacePath,
};
pub use ports::sandbox_inventory::{SandboxInventory, SandboxRecord};
pub use ports::spec_store::SpecStore;
pub use ports::task_store::{
    ClaimRequest, ClaimedTask, Completion, FailOutcome, Failure, TaskCounts, TaskFilter, TaskStore,
};
pub use state::{AgentStatus, SpecEvent, SpecPhase, SpecState, TaskEvent, TaskState, TransitionError};
