//! The `InterventionStore` port: durable steering messages, read and acknowledged by the agent
//! they address, wherever it runs.

use async_trait::async_trait;

use crate::error::StoreError;
use crate::ids::{AgentId, InterventionId, TaskId};
use crate::intervention::{Intervention, NewIntervention};

/// Storage for interventions. Every write appends its event (`intervention.recorded`,
/// `intervention.acknowledged`) to the same store's event log in the same transaction.
#[async_trait]
pub trait InterventionStore: Send + Sync {
    /// Records a pending intervention. Rejects an empty or oversized message (`InvalidInput`)
    /// and a duplicate id (`AlreadyExists`), recording nothing.
    async fn record_intervention(&self, new: NewIntervention) -> Result<Intervention, StoreError>;

    /// The pending interventions the run of `task` by `agent` should apply
    /// ([`Intervention::is_for`]), oldest first.
    async fn pending_interventions(&self, agent: AgentId, task: TaskId) -> Result<Vec<Intervention>, StoreError>;

    /// Marks an intervention applied. Returns it if this call acknowledged it, `None` if it was
    /// already acknowledged (by this or another process: apply it only on `Some`). Unknown ids
    /// are `NotFound`.
    async fn acknowledge_intervention(&self, id: InterventionId) -> Result<Option<Intervention>, StoreError>;

    /// The latest `limit` interventions for `agent` (every agent when `None`), newest first.
    async fn list_interventions(&self, agent: Option<AgentId>, limit: usize) -> Result<Vec<Intervention>, StoreError>;
}
