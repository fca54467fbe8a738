//! The sandbox reaper: destroys sandboxes whose task is no longer leased by the agent named on
//! them (the lease was lost or expired, the worker shut down past its grace period, its process
//! was killed). Sandboxes are found through the provider's [`SandboxInventory`] by the labels
//! every executor sets (`omoi.task`, `omoi.agent`), so those left by a dead process are found
//! from any other. Sandboxes without both labels are not the executor's and are left alone.
//! Each destroyed sandbox is logged as `monitor.sandbox_reaped`.

use std::sync::Arc;

use omoi_core::ports::sandbox_inventory::{AGENT_LABEL, TASK_LABEL};
use omoi_core::{AgentId, Event, EventStore, SandboxInventory, StoreError, TaskId, TaskStore};
use tracing::{Instrument, info, info_span, warn};

/// Reaps orphaned sandboxes; run [`SandboxReaper::check`] every `sandbox.cleanup_interval`.
#[derive(Clone)]
pub struct SandboxReaper {
    inventory: Arc<dyn SandboxInventory>,
    tasks: Arc<dyn TaskStore>,
    events: Arc<dyn EventStore>,
    /// Only sandboxes also carrying these labels (e.g. one deployment's).
    scope: Vec<(String, String)>,
}

impl std::fmt::Debug for SandboxReaper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxReaper").field("scope", &self.scope).finish()
    }
}

impl SandboxReaper {
    /// A reaper over every sandbox of `inventory` that names a task.
    pub fn new(inventory: Arc<dyn SandboxInventory>, tasks: Arc<dyn TaskStore>, events: Arc<dyn EventStore>) -> Self {
        Self { inventory, tasks, events, scope: Vec::new() }
    }

    /// Only sandboxes that also carry `key=value`.
    pub fn scoped(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.scope.push((key.into(), value.into()));
        self
    }

    /// One sweep; returns the tasks whose sandboxes were destroyed. A sandbox that cannot be
    /// checked or destroyed is logged and tried again next sweep.
    pub async fn check(&self) -> Result<Vec<TaskId>, StoreError> {
        async {
            let scope: Vec<(&str, &str)> = self.scope.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let found = match self.inventory.list_sandboxes(&scope).await {
                Ok(f) => f,
                Err(e) => {
                    warn!(error = %e, "cannot list sandboxes; next sweep retries");
                    return Ok(Vec::new());
                }
            };
            let mut reaped = Vec::new();
            for s in found {
                let (Some(task), Some(holder)) = (s.label::<TaskId>(TASK_LABEL), s.label::<AgentId>(AGENT_LABEL))
                else {
                    continue;
                };
                let why = match self.tasks.get_task(task).await {
                    Ok(t) if t.lease.is_some_and(|l| l.holder == holder) => continue,
                    Ok(t) => format!("task {task} is {} and no longer leased by agent {holder}", t.state),
                    Err(StoreError::NotFound { .. }) => format!("task {task} does not exist"),
                    Err(e) => {
                        warn!(%task, error = %e, "cannot read the sandbox's task; next sweep retries");
                        continue;
                    }
                };
                match self.inventory.destroy_sandbox(s.id).await {
                    Ok(()) => {
                        info!(sandbox = %s.id, %task, why, "reaped an orphaned sandbox");
                        let event = Event::MonitorSandboxReaped { holder, task_id: Some(task), reason: why };
                        self.events.append_events(vec![event]).await?;
                        reaped.push(task);
                    }
                    Err(e) => {
                        warn!(sandbox = %s.id, error = %e, "cannot destroy an orphaned sandbox; next sweep retries")
                    }
                }
            }
            Ok(reaped)
        }
        .instrument(info_span!("monitor.reaper"))
        .await
    }
}
