//! `AgentStore` for the in-memory adapter.

use std::collections::HashMap;

use async_trait::async_trait;
use omoi_core::config::HeartbeatConfig;
use omoi_core::{
    Agent, AgentId, AgentStatus, AgentStore, Event, Heartbeat, HeartbeatAck, NewAgent, OverdueAgent, StoreError,
};

use super::InMemoryStore;

#[derive(Default)]
pub(super) struct Agents {
    order: Vec<AgentId>,
    rows: HashMap<AgentId, Agent>,
}

impl Agents {
    fn get_mut(&mut self, id: AgentId) -> Result<&mut Agent, StoreError> {
        self.rows.get_mut(&id).ok_or_else(|| StoreError::not_found("agent", id))
    }
}

#[async_trait]
impl AgentStore for InMemoryStore {
    async fn register_agent(&self, new: NewAgent) -> Result<Agent, StoreError> {
        self.write(|s, now| {
            if s.agents.rows.contains_key(&new.id) {
                return Err(StoreError::AlreadyExists { kind: "agent", id: new.id.to_string() });
            }
            let agent = Agent::registered(new, now);
            s.agents.order.push(agent.id);
            s.agents.rows.insert(agent.id, agent.clone());
            s.emit(now, Event::AgentRegistered { agent_id: agent.id, name: agent.name.clone() });
            Ok(agent)
        })
    }

    async fn heartbeat(&self, id: AgentId, hb: Heartbeat) -> Result<HeartbeatAck, StoreError> {
        self.write(|s, now| {
            let agent = s.agents.get_mut(id)?;
            let (ack, event) = omoi_core::agent::accept_heartbeat(agent, hb)?;
            agent.last_seq = Some(hb.seq);
            agent.last_heartbeat_at = now;
            agent.status = ack.status;
            if let Some(event) = event {
                s.emit(now, event);
            }
            Ok(ack)
        })
    }

    async fn transition_agent(&self, id: AgentId, to: AgentStatus, reason: &str) -> Result<Agent, StoreError> {
        self.write(|s, now| {
            let agent = s.agents.get_mut(id)?;
            let from = agent.status;
            agent.status = from.transition(to).map_err(|e| StoreError::transition("agent", id, e))?;
            let out = agent.clone();
            s.emit(now, Event::AgentStatusChanged { agent_id: id, from, to, reason: reason.to_owned() });
            Ok(out)
        })
    }

    async fn get_agent(&self, id: AgentId) -> Result<Agent, StoreError> {
        self.read(|s, _| s.agents.rows.get(&id).cloned().ok_or_else(|| StoreError::not_found("agent", id)))
    }

    async fn list_agents(&self, status: Option<AgentStatus>) -> Result<Vec<Agent>, StoreError> {
        self.read(|s, _| {
            Ok(s.agents
                .order
                .iter()
                .map(|id| &s.agents.rows[id])
                .filter(|a| status.is_none_or(|st| a.status == st))
                .cloned()
                .collect())
        })
    }

    async fn overdue_agents(&self, ttl: &HeartbeatConfig) -> Result<Vec<OverdueAgent>, StoreError> {
        self.read(|s, now| {
            Ok(s.agents
                .order
                .iter()
                .map(|id| &s.agents.rows[id])
                .filter_map(|a| OverdueAgent::check(a, ttl, now))
                .collect())
        })
    }
}
