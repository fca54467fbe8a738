//! Typed state machines.
//!
//! Each entity's legal moves are a transition table kept as data (a `const` slice) and one
//! pure function that consults it. Stores call these functions for every state change, so an
//! illegal move is rejected the same way by every adapter.

mod agent;
mod spec;
mod task;

use std::fmt;

pub use agent::{AGENT_TRANSITIONS, AgentStatus};
pub use spec::{
    PhaseGuard, SPEC_TRANSITIONS, SpecEvent, SpecEventKind, SpecPhase, SpecRule, SpecState, SpecStateKind, SpecTarget,
};
pub use task::{TASK_TRANSITIONS, TaskEvent, TaskState};

/// An event that the transition table does not allow from the current state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("illegal transition: `{event}` is not allowed from `{from}`")]
pub struct TransitionError<S: fmt::Display, E: fmt::Display> {
    /// The state the entity was in.
    pub from: S,
    /// The event (or, for agents, the requested target status) that was refused.
    pub event: E,
}

/// A transition error from any of the state machines, as carried by store errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AnyTransitionError {
    /// A task transition was refused.
    #[error("task: {0}")]
    Task(#[from] TransitionError<TaskState, TaskEvent>),
    /// A spec transition was refused.
    #[error("spec: {0}")]
    Spec(#[from] TransitionError<SpecState, SpecEvent>),
    /// An agent status change was refused.
    #[error("agent: {0}")]
    Agent(#[from] TransitionError<AgentStatus, AgentStatus>),
    /// A discovery status change was refused.
    #[error("discovery: {0}")]
    Discovery(#[from] TransitionError<crate::discovery::DiscoveryStatus, crate::discovery::DiscoveryTransition>),
}
