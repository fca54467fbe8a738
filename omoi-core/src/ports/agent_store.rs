//! The `AgentStore` port: registration, sequenced heartbeats, status transitions, TTL expiry.

use async_trait::async_trait;

use crate::agent::{Agent, Heartbeat, HeartbeatAck, NewAgent, OverdueAgent};
use crate::config::HeartbeatConfig;
use crate::error::StoreError;
use crate::ids::AgentId;
use crate::state::AgentStatus;

/// Storage for agents and their liveness.
#[async_trait]
pub trait AgentStore: Send + Sync {
    /// Registers an agent in `Spawning`.
    async fn register_agent(&self, agent: NewAgent) -> Result<Agent, StoreError>;

    /// Accepts a heartbeat whose sequence number exceeds the last accepted one (a gap is
    /// reported, a repeat or regression is `StaleHeartbeat`). The first heartbeat moves
    /// `Spawning` to `Idle`; one from a `Degraded` agent moves it back to `Idle`. Agents that
    /// are `Failed`, `Quarantined` or `Terminated` cannot heartbeat (`InvalidTransition`).
    async fn heartbeat(&self, id: AgentId, heartbeat: Heartbeat) -> Result<HeartbeatAck, StoreError>;

    /// Moves an agent to `to` through [`AgentStatus::transition`], recording `reason`.
    async fn transition_agent(&self, id: AgentId, to: AgentStatus, reason: &str) -> Result<Agent, StoreError>;

    /// One agent.
    async fn get_agent(&self, id: AgentId) -> Result<Agent, StoreError>;

    /// Agents, optionally only those in `status`, in registration order.
    async fn list_agents(&self, status: Option<AgentStatus>) -> Result<Vec<Agent>, StoreError>;

    /// Agents that expect heartbeats and whose last one is older than their TTL under `ttl`.
    async fn overdue_agents(&self, ttl: &HeartbeatConfig) -> Result<Vec<OverdueAgent>, StoreError>;
}
