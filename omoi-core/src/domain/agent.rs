//! Agents: workers, planners, validators and monitors that register and send heartbeats.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::event::Event;
use crate::ids::AgentId;
use crate::state::AgentStatus;
use crate::string_enum;

string_enum! {
    /// What an agent does. Decides its heartbeat TTL (monitors beat less often).
    pub enum AgentKind: "agent kind" {
        /// Claims and executes tasks.
        Worker => "worker",
        /// Runs spec phases.
        Planner => "planner",
        /// Validates work.
        Validator => "validator",
        /// Watches other agents' trajectories.
        Guardian => "guardian",
        /// Watches the whole system.
        Conductor => "conductor",
    }
}

/// An agent to register.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NewAgent {
    /// Its id.
    pub id: AgentId,
    /// Display name, e.g. `worker-implementation-001`.
    pub name: String,
    /// Its kind.
    pub kind: AgentKind,
    /// Capabilities it offers (matched against task requirements).
    pub capabilities: Vec<String>,
    /// How many tasks it runs at once.
    pub capacity: u32,
}

impl NewAgent {
    /// A worker with the given name and capabilities, capacity 1.
    pub fn worker(name: impl Into<String>, capabilities: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            id: AgentId::new(),
            name: name.into(),
            kind: AgentKind::Worker,
            capabilities: capabilities.into_iter().map(Into::into).collect(),
            capacity: 1,
        }
    }
}

/// A stored agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Agent {
    /// Its id.
    pub id: AgentId,
    /// Display name.
    pub name: String,
    /// Its kind.
    pub kind: AgentKind,
    /// Capabilities.
    pub capabilities: Vec<String>,
    /// Concurrent task capacity.
    pub capacity: u32,
    /// Current status.
    pub status: AgentStatus,
    /// Sequence number of the last accepted heartbeat.
    pub last_seq: Option<u64>,
    /// Time of the last accepted heartbeat (registration time before the first).
    pub last_heartbeat_at: DateTime<Utc>,
    /// Registration time.
    pub registered_at: DateTime<Utc>,
}

impl Agent {
    /// The agent as registered at `now`: spawning, no heartbeat yet (its registration time
    /// counts as the last sign of life, so a spawning agent that never beats becomes overdue).
    pub fn registered(new: NewAgent, now: DateTime<Utc>) -> Self {
        Agent {
            id: new.id,
            name: new.name,
            kind: new.kind,
            capabilities: new.capabilities,
            capacity: new.capacity,
            status: AgentStatus::Spawning,
            last_seq: None,
            last_heartbeat_at: now,
            registered_at: now,
        }
    }
}

/// A heartbeat: a strictly increasing sequence number per agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Heartbeat {
    /// Sequence number; must exceed the last accepted one.
    pub seq: u64,
}

/// The answer to an accepted heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct HeartbeatAck {
    /// The agent's status after the heartbeat (a first heartbeat moves `Spawning` to `Idle`).
    pub status: AgentStatus,
    /// Heartbeats missing between the previous accepted one and this one (sequence gap).
    pub gap: u64,
}

/// An agent whose heartbeat is overdue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct OverdueAgent {
    /// The agent as stored.
    pub agent: Agent,
    /// Time since its last heartbeat.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub silent_for: Duration,
    /// Whole TTL periods missed (1 = one heartbeat missed).
    pub missed: u32,
}

/// The status an agent has after an accepted heartbeat: a spawning or degraded agent becomes
/// idle, idle and running agents keep theirs. Failed, quarantined and terminated agents may not
/// heartbeat (the refusal names the move to idle). Every adapter applies this rule.
pub fn status_after_heartbeat(
    status: AgentStatus,
) -> Result<AgentStatus, crate::state::TransitionError<AgentStatus, AgentStatus>> {
    match status {
        AgentStatus::Spawning | AgentStatus::Degraded => status.transition(AgentStatus::Idle),
        AgentStatus::Idle | AgentStatus::Running => Ok(status),
        other => Err(crate::state::TransitionError { from: other, event: AgentStatus::Idle }),
    }
}

/// Accepts heartbeat `hb` from `agent`, the rule every adapter applies before recording it: a
/// sequence number not above the last accepted one is [`StoreError::StaleHeartbeat`]; the new
/// status is [`status_after_heartbeat`]'s (a refused move is `InvalidTransition`); the gap counts
/// the sequence numbers skipped. Returns the acknowledgement and, when the status changes, the
/// `agent.status_changed` event; the adapter then stores `hb.seq`, the time and the status.
pub fn accept_heartbeat(agent: &Agent, hb: Heartbeat) -> Result<(HeartbeatAck, Option<Event>), StoreError> {
    if let Some(last) = agent.last_seq
        && hb.seq <= last
    {
        return Err(StoreError::StaleHeartbeat { agent: agent.id, last, got: hb.seq });
    }
    let next = status_after_heartbeat(agent.status).map_err(|e| StoreError::transition("agent", agent.id, e))?;
    let gap = agent.last_seq.map_or(0, |last| hb.seq - last - 1);
    let event = (agent.status != next).then(|| Event::AgentStatusChanged {
        agent_id: agent.id,
        from: agent.status,
        to: next,
        reason: "heartbeat".into(),
    });
    Ok((HeartbeatAck { status: next, gap }, event))
}

impl OverdueAgent {
    /// `agent` as overdue at `now` if it expects heartbeats and has been silent for at least one
    /// whole TTL period of its kind and status. Every adapter applies this rule.
    pub fn check(agent: &Agent, cfg: &crate::config::HeartbeatConfig, now: DateTime<Utc>) -> Option<Self> {
        if !agent.status.expects_heartbeats() {
            return None;
        }
        let ttl = cfg.ttl_for(agent.kind, agent.status);
        let silent_for = (now - agent.last_heartbeat_at).to_std().ok()?;
        let missed = u32::try_from(silent_for.as_nanos() / ttl.as_nanos().max(1)).unwrap_or(u32::MAX);
        (missed >= 1).then(|| OverdueAgent { agent: agent.clone(), silent_for, missed })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heartbeat_is_accepted_once_per_sequence_number_and_reports_the_gap() {
        let mut agent = Agent::registered(NewAgent::worker("w", ["rust"]), DateTime::<Utc>::UNIX_EPOCH);
        let (ack, event) = accept_heartbeat(&agent, Heartbeat { seq: 1 }).unwrap();
        assert_eq!(ack, HeartbeatAck { status: AgentStatus::Idle, gap: 0 });
        assert!(matches!(event, Some(Event::AgentStatusChanged { from: AgentStatus::Spawning, .. })));
        (agent.status, agent.last_seq) = (ack.status, Some(1));
        let (ack, event) = accept_heartbeat(&agent, Heartbeat { seq: 4 }).unwrap();
        assert_eq!((ack.gap, event), (2, None), "two skipped, status unchanged");
        let stale = accept_heartbeat(&agent, Heartbeat { seq: 1 }).unwrap_err();
        assert!(matches!(stale, StoreError::StaleHeartbeat { last: 1, got: 1, .. }));
        agent.status = AgentStatus::Failed;
        assert!(matches!(accept_heartbeat(&agent, Heartbeat { seq: 9 }), Err(StoreError::InvalidTransition { .. })));
    }
}
