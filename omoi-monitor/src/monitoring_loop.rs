//! `MonitoringLoop`: one handle running every monitor on its own interval, each in its own task
//! and isolated from the others (an error or even a panic in one check is logged and counted,
//! and that loop carries on; the others never notice), with graceful shutdown.
//!
//! Intervals come from the config: `heartbeat.check_interval`, `monitor.stuck_interval`,
//! `monitor.guardian_interval`, `monitor.conductor_interval` and `sandbox.cleanup_interval` for
//! the sandbox reaper.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::FutureExt;
use omoi_core::config::OmoiConfig;
use omoi_core::{Clock, StoreError};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use crate::conductor::Conductor;
use crate::guardian::Guardian;
use crate::heartbeat::HeartbeatMonitor;
use crate::reaper::SandboxReaper;
use crate::stuck_monitor::StuckMonitor;

/// One monitor the loop runs: a check repeated on an interval.
#[async_trait]
pub trait Check: Send + Sync {
    /// One check.
    async fn check_once(&self) -> Result<(), StoreError>;
}

#[async_trait]
impl Check for HeartbeatMonitor {
    async fn check_once(&self) -> Result<(), StoreError> {
        self.check().await.map(drop)
    }
}

#[async_trait]
impl Check for StuckMonitor {
    async fn check_once(&self) -> Result<(), StoreError> {
        self.check().await.map(drop)
    }
}

#[async_trait]
impl Check for Guardian {
    async fn check_once(&self) -> Result<(), StoreError> {
        self.check().await.map(drop)
    }
}

#[async_trait]
impl Check for Conductor {
    async fn check_once(&self) -> Result<(), StoreError> {
        self.check().await.map(drop)
    }
}

#[async_trait]
impl Check for SandboxReaper {
    async fn check_once(&self) -> Result<(), StoreError> {
        self.check().await.map(drop)
    }
}

/// What one loop did before it stopped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoopStats {
    /// Checks that succeeded.
    pub ok: u64,
    /// Checks that failed or panicked.
    pub failed: u64,
}

/// The monitors to run and their intervals. Add monitors with the `with_*` methods, then
/// [`start`](MonitoringLoop::start) it.
pub struct MonitoringLoop {
    clock: Arc<dyn Clock>,
    config: OmoiConfig,
    checks: Vec<(&'static str, Arc<dyn Check>, Duration)>,
}

impl std::fmt::Debug for MonitoringLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<_> = self.checks.iter().map(|(n, _, i)| (n, i)).collect();
        f.debug_struct("MonitoringLoop").field("checks", &names).finish()
    }
}

impl MonitoringLoop {
    /// An empty loop reading its intervals from `config`.
    pub fn new(clock: Arc<dyn Clock>, config: OmoiConfig) -> Self {
        Self { clock, config, checks: Vec::new() }
    }

    /// Runs the heartbeat monitor every `heartbeat.check_interval`.
    pub fn with_heartbeat(self, m: HeartbeatMonitor) -> Self {
        let every = self.config.heartbeat.check_interval;
        self.with_check("heartbeat", Arc::new(m), every)
    }

    /// Runs the stuck monitor every `monitor.stuck_interval`.
    pub fn with_stuck(self, m: StuckMonitor) -> Self {
        let every = self.config.monitor.stuck_interval;
        self.with_check("stuck", Arc::new(m), every)
    }

    /// Runs the guardian every `monitor.guardian_interval`.
    pub fn with_guardian(self, g: Guardian) -> Self {
        let every = self.config.monitor.guardian_interval;
        self.with_check("guardian", Arc::new(g), every)
    }

    /// Runs the conductor every `monitor.conductor_interval`.
    pub fn with_conductor(self, c: Conductor) -> Self {
        let every = self.config.monitor.conductor_interval;
        self.with_check("conductor", Arc::new(c), every)
    }

    /// Runs the sandbox reaper every `sandbox.cleanup_interval`.
    pub fn with_reaper(self, r: SandboxReaper) -> Self {
        let every = self.config.sandbox.cleanup_interval;
        self.with_check("reaper", Arc::new(r), every)
    }

    /// Runs any other check every `every`.
    pub fn with_check(mut self, name: &'static str, check: Arc<dyn Check>, every: Duration) -> Self {
        self.checks.push((name, check, every));
        self
    }

    /// Starts every loop; each first checks after one interval.
    pub fn start(self) -> MonitoringHandle {
        let cancel = CancellationToken::new();
        let mut tasks = JoinSet::new();
        for (name, check, every) in self.checks {
            let (clock, cancel) = (self.clock.clone(), cancel.clone());
            tasks.spawn(
                async move { (name, run_loop(name, check, every, clock, cancel).await) }
                    .instrument(info_span!("monitor.loop", name)),
            );
        }
        MonitoringHandle { cancel, tasks }
    }
}

async fn run_loop(
    name: &'static str,
    check: Arc<dyn Check>,
    every: Duration,
    clock: Arc<dyn Clock>,
    cancel: CancellationToken,
) -> LoopStats {
    let mut stats = LoopStats::default();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = clock.sleep(every) => {}
        }
        // A check is not interrupted by shutdown: it finishes, then the loop stops.
        match AssertUnwindSafe(check.check_once()).catch_unwind().await {
            Ok(Ok(())) => stats.ok += 1,
            Ok(Err(e)) => {
                stats.failed += 1;
                warn!(monitor = name, error = %e, "check failed; the loop carries on");
            }
            Err(_) => {
                stats.failed += 1;
                warn!(monitor = name, "check panicked; the loop carries on");
            }
        }
    }
    info!(monitor = name, ?stats, "monitor loop stopped");
    stats
}

/// The running loops. Dropping it without [`shutdown`](MonitoringHandle::shutdown) aborts them.
#[derive(Debug)]
pub struct MonitoringHandle {
    cancel: CancellationToken,
    tasks: JoinSet<(&'static str, LoopStats)>,
}

impl MonitoringHandle {
    /// Stops every loop after its current check, and returns what each did, by name.
    pub async fn shutdown(mut self) -> BTreeMap<&'static str, LoopStats> {
        self.cancel.cancel();
        let mut out = BTreeMap::new();
        while let Some(done) = self.tasks.join_next().await {
            if let Ok((name, stats)) = done {
                out.insert(name, stats);
            }
        }
        out
    }
}
