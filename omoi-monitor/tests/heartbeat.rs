//! The heartbeat monitor on the in-memory store with a manual clock.

use std::sync::Arc;
use std::time::Duration;

use omoi_core::config::HeartbeatConfig;
use omoi_core::testkit::ManualClock;
use omoi_core::{
    AgentId, AgentStatus, AgentStore, ClaimRequest, Clock, Cursor, Event, EventStore, Heartbeat, NewAgent, NewTask,
    TaskState, TaskStore,
};
use omoi_monitor::heartbeat::HeartbeatMonitor;
use omoi_store::InMemoryStore;

struct Env {
    clock: Arc<ManualClock>,
    store: InMemoryStore,
    monitor: HeartbeatMonitor,
}

fn env() -> Env {
    let clock = ManualClock::new();
    let store = InMemoryStore::with_clock(clock.clone());
    let s = Arc::new(store.clone());
    let monitor = HeartbeatMonitor::new(s.clone(), s.clone(), s, HeartbeatConfig::default());
    Env { clock, store, monitor }
}

async fn worker(store: &InMemoryStore) -> AgentId {
    let id = store.register_agent(NewAgent::worker("w", Vec::<String>::new())).await.unwrap().id;
    store.heartbeat(id, Heartbeat { seq: 1 }).await.unwrap();
    id
}

async fn status(store: &InMemoryStore, id: AgentId) -> AgentStatus {
    store.get_agent(id).await.unwrap().status
}

async fn events(store: &InMemoryStore) -> Vec<Event> {
    store.read_events(Cursor::START, 10_000).await.unwrap().into_iter().map(|e| e.event).collect()
}

#[tokio::test]
async fn a_silent_running_agent_degrades_then_fails_and_its_task_is_reclaimed_before_its_lease_lapses() {
    let e = env();
    let agent = worker(&e.store).await;
    let task = NewTask::new("long job");
    e.store.insert_tasks(vec![task.clone()]).await.unwrap();
    let lease = e.store.claim(&ClaimRequest::new(agent, 1, Duration::from_secs(600))).await.unwrap()[0].lease;
    e.store.start(task.id, lease.token).await.unwrap();
    e.store.transition_agent(agent, AgentStatus::Running, "working").await.unwrap();

    // TTL of a running agent: 15 s; degraded after 2 missed, failed after 3.
    e.clock.advance(Duration::from_secs(16));
    let r = e.monitor.check().await.unwrap();
    assert_eq!((r.overdue, r.degraded.len(), r.failed.len()), (1, 0, 0));
    assert_eq!(status(&e.store, agent).await, AgentStatus::Running);
    e.clock.advance(Duration::from_secs(15));
    assert_eq!(e.monitor.check().await.unwrap().degraded, vec![agent]);
    assert_eq!(status(&e.store, agent).await, AgentStatus::Degraded);
    e.clock.advance(Duration::from_secs(15));
    let r = e.monitor.check().await.unwrap();
    assert_eq!((r.failed.clone(), r.reclaimed.clone()), (vec![agent], vec![task.id]));
    assert_eq!(status(&e.store, agent).await, AgentStatus::Failed);
    let t = e.store.get_task(task.id).await.unwrap();
    assert!(t.lease.is_none() && t.state != TaskState::Running, "taken back at once: {:?}", t.state);
    assert!(e.clock.now() < lease.expires_at, "well before the 10-minute lease would have lapsed");
    // The failed agent cannot complete any more (fenced) and cannot heartbeat.
    assert!(e.store.complete(task.id, lease.token, Default::default()).await.is_err());
    assert!(e.store.heartbeat(agent, Heartbeat { seq: 2 }).await.is_err());

    let log = events(&e.store).await;
    let missed: Vec<u32> = log
        .iter()
        .filter_map(|ev| match ev {
            Event::AgentHeartbeatMissed { agent_id, missed } if *agent_id == agent => Some(*missed),
            _ => None,
        })
        .collect();
    assert_eq!(missed, [1, 2, 3], "one event per missed period");
    assert!(log.iter().any(|ev| matches!(ev, Event::TaskLeaseExpired { holder, .. } if *holder == agent)));
    let statuses: Vec<AgentStatus> = log
        .iter()
        .filter_map(|ev| match ev {
            Event::AgentStatusChanged { agent_id, to, .. } if *agent_id == agent => Some(*to),
            _ => None,
        })
        .collect();
    assert_eq!(statuses, [AgentStatus::Idle, AgentStatus::Running, AgentStatus::Degraded, AgentStatus::Failed]);
    // A later check does nothing more.
    e.clock.advance(Duration::from_secs(60));
    assert_eq!(e.monitor.check().await.unwrap().failed, Vec::<AgentId>::new());
}

#[tokio::test]
async fn an_idle_agent_fails_by_way_of_degraded() {
    let e = env();
    let agent = worker(&e.store).await;
    e.clock.advance(Duration::from_secs(3 * 30));
    let r = e.monitor.check().await.unwrap();
    assert_eq!(r.failed, vec![agent]);
    assert_eq!(status(&e.store, agent).await, AgentStatus::Failed);
}

#[tokio::test]
async fn one_missed_period_short_of_each_threshold_changes_nothing_and_a_late_beat_recovers() {
    let e = env();
    let agent = worker(&e.store).await;
    e.clock.advance(Duration::from_secs(59)); // idle TTL 30 s: 1 missed period
    assert!(e.monitor.check().await.unwrap().degraded.is_empty());
    assert_eq!(status(&e.store, agent).await, AgentStatus::Idle);
    e.clock.advance(Duration::from_secs(30)); // 2 missed: degraded, not yet failed
    e.monitor.check().await.unwrap();
    assert_eq!(status(&e.store, agent).await, AgentStatus::Degraded);
    e.store.heartbeat(agent, Heartbeat { seq: 2 }).await.unwrap();
    assert_eq!(status(&e.store, agent).await, AgentStatus::Idle);
    e.clock.advance(Duration::from_secs(29));
    let r = e.monitor.check().await.unwrap();
    assert_eq!((r.overdue, r.failed.len()), (0, 0));
}

#[tokio::test]
async fn thresholds_come_from_the_heartbeat_config() {
    let clock = ManualClock::new();
    let store = InMemoryStore::with_clock(clock.clone());
    let s = Arc::new(store.clone());
    let cfg = HeartbeatConfig { missed_degraded: 1, missed_failed: 5, ..HeartbeatConfig::default() };
    let monitor = HeartbeatMonitor::new(s.clone(), s.clone(), s, cfg);
    let agent = worker(&store).await;
    clock.advance(Duration::from_secs(30));
    monitor.check().await.unwrap();
    assert_eq!(status(&store, agent).await, AgentStatus::Degraded, "degraded after 1");
    clock.advance(Duration::from_secs(3 * 30));
    monitor.check().await.unwrap();
    assert_eq!(status(&store, agent).await, AgentStatus::Degraded, "4 missed is not yet 5");
    clock.advance(Duration::from_secs(30));
    monitor.check().await.unwrap();
    assert_eq!(status(&store, agent).await, AgentStatus::Failed);
}

#[tokio::test]
async fn a_spawning_agent_is_held_to_first_heartbeat_within_not_to_the_idle_ttl() {
    let clock = ManualClock::new();
    let store = InMemoryStore::with_clock(clock.clone());
    let s = Arc::new(store.clone());
    let cfg = HeartbeatConfig { first_heartbeat_within: Duration::from_secs(5), ..HeartbeatConfig::default() };
    assert_eq!(cfg.ttl_idle, Duration::from_secs(30));
    let monitor = HeartbeatMonitor::new(s.clone(), s.clone(), s, cfg);
    let agent = store.register_agent(NewAgent::worker("w", Vec::<String>::new())).await.unwrap().id;
    clock.advance(Duration::from_secs(4));
    assert_eq!(monitor.check().await.unwrap().overdue, 0, "still within its first 5 s");
    // 16 s without a first heartbeat: three 5 s periods missed, though not one 30 s idle TTL.
    clock.advance(Duration::from_secs(12));
    let r = monitor.check().await.unwrap();
    assert_eq!((r.overdue, r.failed.clone()), (1, vec![agent]));
    assert_eq!(status(&store, agent).await, AgentStatus::Failed);
}
