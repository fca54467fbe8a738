//! The heartbeat monitor: agents past their TTL become degraded after
//! `heartbeat.missed_degraded` missed periods and failed after `heartbeat.missed_failed`; a failed
//! agent's leased tasks are reclaimed at once (not when their leases lapse) and its sandboxes are
//! destroyed.
//!
//! Each step leaves an event: `agent.heartbeat_missed` when the missed count grows,
//! `agent.status_changed` for degraded and failed (written by the agent store),
//! `task.lease_expired` per reclaimed task (written by the task store) and
//! `monitor.sandbox_reaped` per destroyed sandbox.

use std::collections::HashMap;
use std::sync::Arc;

use omoi_core::config::HeartbeatConfig;
use omoi_core::ports::sandbox_inventory::AGENT_LABEL;
use omoi_core::{
    AgentId, AgentStatus, AgentStore, Event, EventStore, OverdueAgent, SandboxInventory, StoreError, TaskId, TaskStore,
};
use parking_lot::Mutex;
use tracing::{Instrument, info, info_span, warn};

/// What one heartbeat check did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HeartbeatReport {
    /// Agents past their TTL.
    pub overdue: usize,
    /// Agents moved to degraded.
    pub degraded: Vec<AgentId>,
    /// Agents moved to failed.
    pub failed: Vec<AgentId>,
    /// Tasks taken back from failed agents.
    pub reclaimed: Vec<TaskId>,
    /// Sandboxes of failed agents destroyed.
    pub sandboxes_destroyed: usize,
}

/// Checks heartbeats; run [`HeartbeatMonitor::check`] every `heartbeat.check_interval`.
#[derive(Clone)]
pub struct HeartbeatMonitor {
    agents: Arc<dyn AgentStore>,
    tasks: Arc<dyn TaskStore>,
    events: Arc<dyn EventStore>,
    sandboxes: Option<Arc<dyn SandboxInventory>>,
    config: HeartbeatConfig,
    /// Per overdue agent: the missed count already reported (each growth is one event) and the
    /// TTL it went silent under.
    seen: Arc<Mutex<HashMap<AgentId, Seen>>>,
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    missed: u32,
    ttl: std::time::Duration,
}

impl std::fmt::Debug for HeartbeatMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeartbeatMonitor")
            .field("config", &self.config)
            .field("sandboxes", &self.sandboxes.is_some())
            .finish()
    }
}

impl HeartbeatMonitor {
    /// A monitor over the stores with the `heartbeat` config.
    pub fn new(
        agents: Arc<dyn AgentStore>,
        tasks: Arc<dyn TaskStore>,
        events: Arc<dyn EventStore>,
        config: HeartbeatConfig,
    ) -> Self {
        Self { agents, tasks, events, sandboxes: None, config, seen: Arc::default() }
    }

    /// Also destroys a failed agent's sandboxes (found by the `omoi.agent` label).
    pub fn with_sandboxes(mut self, sandboxes: Arc<dyn SandboxInventory>) -> Self {
        self.sandboxes = Some(sandboxes);
        self
    }

    /// One check of every agent. An agent whose handling fails is logged and skipped; the
    /// others are still handled.
    pub async fn check(&self) -> Result<HeartbeatReport, StoreError> {
        async {
            let overdue = self.agents.overdue_agents(&self.config).await?;
            let mut report = HeartbeatReport { overdue: overdue.len(), ..HeartbeatReport::default() };
            // Agents that beat again start counting afresh next time.
            self.seen.lock().retain(|id, _| overdue.iter().any(|o| o.agent.id == *id));
            for o in overdue {
                let id = o.agent.id;
                if let Err(e) = self.handle(o, &mut report).await {
                    warn!(agent = %id, error = %e, "heartbeat handling failed; retried next check");
                }
            }
            Ok(report)
        }
        .instrument(info_span!("monitor.heartbeat"))
        .await
    }

    async fn handle(&self, mut o: OverdueAgent, report: &mut HeartbeatReport) -> Result<(), StoreError> {
        let id = o.agent.id;
        let grew = {
            let mut seen = self.seen.lock();
            // A degraded agent keeps counting under the TTL it went silent with (a running
            // agent's 15 s, not the 30 s the degraded status alone would give).
            let ttl = match seen.get(&id) {
                Some(s) if o.agent.status == AgentStatus::Degraded => s.ttl,
                _ => self.config.ttl_for(o.agent.kind, o.agent.status),
            };
            o.missed = u32::try_from(o.silent_for.as_nanos() / ttl.as_nanos().max(1)).unwrap_or(u32::MAX);
            let before = seen.insert(id, Seen { missed: o.missed, ttl }).map_or(0, |s| s.missed);
            o.missed > before
        };
        if grew {
            self.events.append_events(vec![Event::AgentHeartbeatMissed { agent_id: id, missed: o.missed }]).await?;
        }
        let status = o.agent.status;
        if o.missed >= self.config.missed_failed {
            if status == AgentStatus::Idle {
                // The table has no idle → failed edge: an idle agent degrades on the way.
                self.agents.transition_agent(id, AgentStatus::Degraded, &reason(&o)).await?;
            }
            self.agents.transition_agent(id, AgentStatus::Failed, &reason(&o)).await?;
            self.seen.lock().remove(&id);
            warn!(agent = %id, missed = o.missed, "agent failed: reclaiming its tasks");
            report.failed.push(id);
            self.recover(id, report).await
        } else if o.missed >= self.config.missed_degraded && status.transition(AgentStatus::Degraded).is_ok() {
            self.agents.transition_agent(id, AgentStatus::Degraded, &reason(&o)).await?;
            info!(agent = %id, missed = o.missed, "agent degraded");
            report.degraded.push(id);
            Ok(())
        } else {
            Ok(())
        }
    }

    /// Takes back a failed agent's tasks and destroys its sandboxes.
    async fn recover(&self, id: AgentId, report: &mut HeartbeatReport) -> Result<(), StoreError> {
        let reclaimed = self.tasks.reclaim_holder(id).await?;
        info!(agent = %id, tasks = reclaimed.len(), "reclaimed a failed agent's tasks");
        report.reclaimed.extend(reclaimed);
        let Some(inventory) = &self.sandboxes else { return Ok(()) };
        let agent = id.to_string();
        let found = match inventory.list_sandboxes(&[(AGENT_LABEL, &agent)]).await {
            Ok(f) => f,
            Err(e) => {
                warn!(agent = %id, error = %e, "cannot list the failed agent's sandboxes");
                return Ok(());
            }
        };
        for s in found {
            match inventory.destroy_sandbox(s.id).await {
                Ok(()) => {
                    report.sandboxes_destroyed += 1;
                    let event = Event::MonitorSandboxReaped {
                        holder: id,
                        task_id: s.label(omoi_core::ports::sandbox_inventory::TASK_LABEL),
                        reason: format!("sandbox {} of failed agent", s.id),
                    };
                    self.events.append_events(vec![event]).await?;
                }
                Err(e) => warn!(agent = %id, sandbox = %s.id, error = %e, "cannot destroy a failed agent's sandbox"),
            }
        }
        Ok(())
    }
}

fn reason(o: &OverdueAgent) -> String {
    format!("missed {} heartbeats ({}s silent)", o.missed, o.silent_for.as_secs())
}
