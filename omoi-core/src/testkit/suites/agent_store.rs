//! Conformance scenarios for [`AgentStore`].

use std::sync::Arc;
use std::time::Duration;

use crate::agent::{AgentKind, Heartbeat, HeartbeatAck, NewAgent};
use crate::config::HeartbeatConfig;
use crate::error::StoreError;
use crate::ids::AgentId;
use crate::ports::agent_store::AgentStore;
use crate::ports::clock::Clock;
use crate::state::AgentStatus;
use crate::testkit::ManualClock;

/// What the agent-store scenarios run against.
#[derive(Clone)]
pub struct Harness {
    /// The store under test.
    pub agents: Arc<dyn AgentStore>,
    /// The clock the store was built with.
    pub clock: Arc<ManualClock>,
}

impl Harness {
    /// Wraps an adapter.
    pub fn new<S: AgentStore + 'static>(store: Arc<S>, clock: Arc<ManualClock>) -> Self {
        Self { agents: store, clock }
    }

    async fn worker(&self, name: &str) -> AgentId {
        self.agents.register_agent(NewAgent::worker(name, ["python"])).await.expect("register").id
    }

    async fn beat(&self, id: AgentId, seq: u64) -> HeartbeatAck {
        self.agents.heartbeat(id, Heartbeat { seq }).await.expect("heartbeat")
    }

    async fn status(&self, id: AgentId) -> AgentStatus {
        self.agents.get_agent(id).await.expect("get_agent").status
    }
}

/// Registration stores the agent as spawning; the first heartbeat makes it idle.
pub async fn first_heartbeat_moves_a_spawning_agent_to_idle(h: Harness) {
    let new = NewAgent::worker("worker-implementation-001", ["python", "git"]);
    let agent = h.agents.register_agent(new.clone()).await.unwrap();
    assert_eq!((agent.id, agent.status, agent.last_seq), (new.id, AgentStatus::Spawning, None));
    assert_eq!(
        (agent.name.as_str(), agent.kind, agent.capabilities.clone()),
        (new.name.as_str(), AgentKind::Worker, new.capabilities.clone())
    );
    assert_eq!(agent.registered_at, h.clock.now());
    h.clock.advance(Duration::from_secs(3));
    assert_eq!(h.beat(agent.id, 1).await, HeartbeatAck { status: AgentStatus::Idle, gap: 0 });
    let got = h.agents.get_agent(agent.id).await.unwrap();
    assert_eq!((got.status, got.last_seq, got.last_heartbeat_at), (AgentStatus::Idle, Some(1), h.clock.now()));
    assert!(matches!(h.agents.register_agent(new).await, Err(StoreError::AlreadyExists { .. })));
    assert!(matches!(h.agents.heartbeat(AgentId::new(), Heartbeat { seq: 1 }).await, Err(StoreError::NotFound { .. })));
}

/// Sequence numbers must grow; a skipped range is reported as a gap; a repeat is stale.
pub async fn heartbeat_sequence_must_increase_and_gaps_are_reported(h: Harness) {
    let id = h.worker("seq").await;
    assert_eq!(h.beat(id, 1).await.gap, 0);
    assert_eq!(h.beat(id, 2).await.gap, 0);
    assert_eq!(h.beat(id, 5).await.gap, 2);
    for stale in [5, 3] {
        match h.agents.heartbeat(id, Heartbeat { seq: stale }).await {
            Err(StoreError::StaleHeartbeat { last, got, .. }) => assert_eq!((last, got), (5, stale)),
            other => panic!("expected StaleHeartbeat, got {other:?}"),
        }
    }
    assert_eq!(h.agents.get_agent(id).await.unwrap().last_seq, Some(5));
}

/// Agents past their TTL are listed with the number of periods missed; TTL follows status.
pub async fn overdue_agents_are_found_by_ttl_with_missed_periods(h: Harness) {
    let cfg = HeartbeatConfig::default();
    let idle = h.worker("idle").await;
    let busy = h.worker("busy").await;
    let silent = h.worker("never-beats").await;
    h.beat(idle, 1).await;
    h.beat(busy, 1).await;
    h.agents.transition_agent(busy, AgentStatus::Running, "claimed a task").await.unwrap();
    let gone = h.worker("gone").await;
    h.agents.transition_agent(gone, AgentStatus::Terminated, "stopped").await.unwrap();
    let missed = |list: &[crate::OverdueAgent], id: AgentId| list.iter().find(|o| o.agent.id == id).map(|o| o.missed);

    h.clock.advance(Duration::from_secs(16));
    let o = h.agents.overdue_agents(&cfg).await.unwrap();
    assert_eq!((missed(&o, busy), missed(&o, idle), missed(&o, silent)), (Some(1), None, None));
    h.clock.advance(Duration::from_secs(15));
    let o = h.agents.overdue_agents(&cfg).await.unwrap();
    assert_eq!((missed(&o, busy), missed(&o, idle)), (Some(2), Some(1)));
    let busy_entry = o.iter().find(|x| x.agent.id == busy).unwrap();
    assert_eq!(busy_entry.silent_for, Duration::from_secs(31));
    h.clock.advance(Duration::from_secs(60));
    let o = h.agents.overdue_agents(&cfg).await.unwrap();
    assert_eq!((missed(&o, idle), missed(&o, busy), missed(&o, silent)), (Some(3), Some(6), Some(1)));
    assert_eq!(missed(&o, gone), None, "terminated agents are not expected to beat");
    h.beat(idle, 2).await;
    let o = h.agents.overdue_agents(&cfg).await.unwrap();
    assert_eq!(missed(&o, idle), None, "a heartbeat clears the debt");
}

/// Status changes follow OmoiOS's table; a refused change leaves the status as it was.
pub async fn agent_transition_table_is_enforced(h: Harness) {
    let id = h.worker("table").await;
    assert!(matches!(
        h.agents.transition_agent(id, AgentStatus::Running, "x").await,
        Err(StoreError::InvalidTransition { kind: "agent", .. })
    ));
    h.beat(id, 1).await;
    h.agents.transition_agent(id, AgentStatus::Running, "work").await.unwrap();
    let err = h.agents.transition_agent(id, AgentStatus::Terminated, "stop").await.unwrap_err();
    assert!(matches!(err, StoreError::InvalidTransition { .. }), "{err}");
    assert_eq!(h.status(id).await, AgentStatus::Running);
    h.agents.transition_agent(id, AgentStatus::Idle, "done").await.unwrap();
    let t = h.agents.transition_agent(id, AgentStatus::Terminated, "shutdown").await.unwrap();
    assert_eq!(t.status, AgentStatus::Terminated);
    assert!(h.agents.transition_agent(id, AgentStatus::Idle, "revive").await.is_err());
}

/// A degraded agent that heartbeats again is idle again.
pub async fn degraded_agent_recovers_on_heartbeat(h: Harness) {
    let id = h.worker("flaky").await;
    h.beat(id, 1).await;
    h.agents.transition_agent(id, AgentStatus::Degraded, "missed 2").await.unwrap();
    assert_eq!(h.beat(id, 2).await.status, AgentStatus::Idle);
    assert_eq!(h.status(id).await, AgentStatus::Idle);
}

/// Failed, quarantined and terminated agents cannot heartbeat.
pub async fn failed_agent_cannot_heartbeat(h: Harness) {
    let id = h.worker("dead").await;
    h.beat(id, 1).await;
    h.agents.transition_agent(id, AgentStatus::Degraded, "missed 2").await.unwrap();
    h.agents.transition_agent(id, AgentStatus::Failed, "missed 3").await.unwrap();
    assert!(matches!(h.agents.heartbeat(id, Heartbeat { seq: 2 }).await, Err(StoreError::InvalidTransition { .. })));
    h.agents.transition_agent(id, AgentStatus::Quarantined, "inspect").await.unwrap();
    assert!(h.agents.heartbeat(id, Heartbeat { seq: 3 }).await.is_err());
    assert_eq!(h.status(id).await, AgentStatus::Quarantined);
}

/// Listing filters by status and keeps registration order.
pub async fn list_agents_filters_by_status(h: Harness) {
    let a = h.worker("a").await;
    let b = h.worker("b").await;
    let c = h.worker("c").await;
    h.beat(a, 1).await;
    h.beat(b, 1).await;
    h.agents.transition_agent(b, AgentStatus::Running, "work").await.unwrap();
    let ids = |v: Vec<crate::Agent>| v.into_iter().map(|a| a.id).collect::<Vec<_>>();
    assert_eq!(ids(h.agents.list_agents(None).await.unwrap()), vec![a, b, c]);
    assert_eq!(ids(h.agents.list_agents(Some(AgentStatus::Idle)).await.unwrap()), vec![a]);
    assert_eq!(ids(h.agents.list_agents(Some(AgentStatus::Running)).await.unwrap()), vec![b]);
    assert_eq!(ids(h.agents.list_agents(Some(AgentStatus::Spawning)).await.unwrap()), vec![c]);
}

/// Runs the whole [`AgentStore`](crate::AgentStore) suite against an adapter. The factory
/// yields `Arc<S>` with `S: AgentStore`.
#[macro_export]
macro_rules! agent_store_suite {
    ($factory:expr) => {
        $crate::__omoi_suite!(
            agent_store,
            $factory,
            [
                first_heartbeat_moves_a_spawning_agent_to_idle,
                heartbeat_sequence_must_increase_and_gaps_are_reported,
                overdue_agents_are_found_by_ttl_with_missed_periods,
                agent_transition_table_is_enforced,
                degraded_agent_recovers_on_heartbeat,
                failed_agent_cannot_heartbeat,
                list_agents_filters_by_status,
            ]
        );
    };
}
