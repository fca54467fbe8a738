//! The `SandboxInventory` port: finding a provider's sandboxes by label, across processes, so
//! a monitor can destroy the ones nobody owns any more (their agent failed, their process was
//! killed, their lease was lost).

use std::collections::BTreeMap;

use async_trait::async_trait;

use crate::ids::SandboxId;
use crate::ports::sandbox::SandboxError;

/// The label every executor puts on a task's sandbox: the task id.
pub const TASK_LABEL: &str = "omoi.task";
/// The label every executor puts on a task's sandbox: the lease holder (agent) id.
pub const AGENT_LABEL: &str = "omoi.agent";

/// A sandbox as the provider lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxRecord {
    /// Its id.
    pub id: SandboxId,
    /// Its labels (the spec's, as created).
    pub labels: BTreeMap<String, String>,
}

impl SandboxRecord {
    /// The value of label `key`, parsed.
    pub fn label<T: std::str::FromStr>(&self, key: &str) -> Option<T> {
        self.labels.get(key).and_then(|v| v.parse().ok())
    }
}

/// Lists and destroys a provider's sandboxes, including those created by other processes.
#[async_trait]
pub trait SandboxInventory: Send + Sync {
    /// Every live sandbox of this provider carrying all of `labels` (any process created it).
    async fn list_sandboxes(&self, labels: &[(&str, &str)]) -> Result<Vec<SandboxRecord>, SandboxError>;

    /// Destroys sandbox `id` (idempotent: an unknown or already destroyed one is `Ok`).
    async fn destroy_sandbox(&self, id: SandboxId) -> Result<(), SandboxError>;
}
