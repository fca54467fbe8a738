//! The monitoring loop with a manual clock: every monitor runs on its configured interval, a
//! monitor that fails or panics on every check never stops the heartbeat monitor, and shutdown
//! returns what each loop did.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use omoi_core::config::OmoiConfig;
use omoi_core::testkit::{ManualClock, ScriptedLlm};
use omoi_core::{AgentStatus, AgentStore, Heartbeat, NewAgent, StoreError};
use omoi_monitor::{Check, Guardian, HeartbeatMonitor, LoopStats, MonitoringLoop, Steerer};
use omoi_store::InMemoryStore;

/// A monitor whose every check goes wrong: odd checks fail, even ones panic.
#[derive(Default)]
struct Broken {
    calls: AtomicU64,
}

#[async_trait]
impl Check for Broken {
    async fn check_once(&self) -> Result<(), StoreError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        if n.is_multiple_of(2) {
            Err(StoreError::Unavailable { backend: "test", message: "down".into(), source: None })
        } else {
            panic!("broken monitor");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_monitor_never_stops_the_heartbeat_monitor_and_shutdown_reports_each_loop() {
    let clock = ManualClock::new();
    let store = InMemoryStore::with_clock(clock.clone());
    let s = Arc::new(store.clone());
    let mut config = OmoiConfig::default();
    config.heartbeat.check_interval = Duration::from_secs(10);
    config.monitor.guardian_interval = Duration::from_secs(20);
    let agent = store.register_agent(NewAgent::worker("w", Vec::<String>::new())).await.unwrap().id;
    store.heartbeat(agent, Heartbeat { seq: 1 }).await.unwrap();

    let broken = Arc::new(Broken::default());
    // The guardian's model has no script: every call fails (recorded as unknown, not an error).
    let steerer = Steerer::new(s.clone(), clock.clone(), &config.monitor);
    let guardian = Guardian::new(
        Arc::new(ScriptedLlm::new()),
        s.clone(),
        s.clone(),
        steerer,
        clock.clone(),
        config.monitor.clone(),
    );
    let handle = MonitoringLoop::new(clock.clone(), config.clone())
        .with_heartbeat(HeartbeatMonitor::new(s.clone(), s.clone(), s, config.heartbeat.clone()))
        .with_guardian(guardian)
        .with_check("broken", broken.clone(), Duration::from_secs(10))
        .start();

    // Idle TTL 30 s, failed after 3 missed: 90 s of silence, in 10 s steps.
    for _ in 0..9 {
        clock.wait_for_sleepers(3).await;
        clock.advance(Duration::from_secs(10));
    }
    clock.wait_for_sleepers(3).await;
    assert_eq!(store.get_agent(agent).await.unwrap().status, AgentStatus::Failed);
    assert_eq!(broken.calls.load(Ordering::SeqCst), 9, "the broken monitor kept running on its interval");

    let stats = handle.shutdown().await;
    assert_eq!(stats["heartbeat"], LoopStats { ok: 9, failed: 0 });
    assert_eq!(stats["broken"], LoopStats { ok: 0, failed: 9 });
    assert_eq!(stats["guardian"], LoopStats { ok: 4, failed: 0 }, "every 20 s");
}
