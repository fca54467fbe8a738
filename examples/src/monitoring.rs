//! The monitors an example runs beside its workers: one background service for
//! [`OrchestratorBuilder::background`](omoi_exec::OrchestratorBuilder::background).

use std::sync::Arc;

use omoi_core::config::OmoiConfig;
use omoi_core::{AgentStore, Clock, EventStore, InterventionStore, TaskStore};
use omoi_exec::orchestrator::BackgroundService;
use omoi_monitor::{HeartbeatMonitor, MonitoringLoop, Steerer, StuckMonitor};
use tokio_util::sync::CancellationToken;
use tracing::info;

/// The heartbeat monitor and the stuck detector over `store`, each on its interval from
/// `config` (`heartbeat.check_interval`, `monitor.stuck_interval`, rules in `monitor.stuck`),
/// steering through the interventions stored in `store` — which the orchestrator's agents read
/// between turns. Each start of the orchestrator runs a fresh [`MonitoringLoop`]; its shutdown
/// stops it after the workers.
///
/// The guardian and the conductor are left out: they call a model on an interval, which a
/// recorded conversation cannot answer.
pub fn monitors<S>(store: S, clock: Arc<dyn Clock>, config: OmoiConfig) -> impl BackgroundService
where
    S: AgentStore + TaskStore + EventStore + InterventionStore + Clone + 'static,
{
    move |stop: CancellationToken| {
        let shared = Arc::new(store.clone());
        let steerer = Steerer::new(shared.clone(), clock.clone(), &config.monitor);
        let heartbeat = HeartbeatMonitor::new(shared.clone(), shared.clone(), shared.clone(), config.heartbeat.clone());
        let stuck = StuckMonitor::new(shared, steerer, clock.clone(), config.monitor.stuck.clone());
        let monitors = MonitoringLoop::new(clock.clone(), config.clone()).with_heartbeat(heartbeat).with_stuck(stuck);
        async move {
            let running = monitors.start();
            stop.cancelled().await;
            let stats = running.shutdown().await;
            info!(?stats, "monitors stopped");
        }
    }
}
