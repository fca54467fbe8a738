//! The `SpecStore` port: specs, their phase checkpoints, and idempotent materialization of a
//! spec's task plan into tickets and tasks.

use async_trait::async_trait;

use crate::Usage;
use crate::error::StoreError;
use crate::ids::{SpecId, TicketId};
use crate::spec::{NewSpec, PhaseCheckpoint, Spec, SyncOutcome, SyncPlan};
use crate::state::{SpecEvent, SpecState};
use crate::ticket::Ticket;

/// Storage for specs and the tickets and tasks they produce.
#[async_trait]
pub trait SpecStore: Send + Sync {
    /// Creates a spec in `Draft`.
    async fn create_spec(&self, spec: NewSpec) -> Result<Spec, StoreError>;

    /// One spec with its checkpoints.
    async fn get_spec(&self, id: SpecId) -> Result<Spec, StoreError>;

    /// Every spec, oldest first.
    async fn list_specs(&self) -> Result<Vec<Spec>, StoreError>;

    /// Applies `event` through [`SpecState::apply`] and records `spec.state_changed`.
    async fn transition_spec(&self, id: SpecId, event: SpecEvent) -> Result<SpecState, StoreError>;

    /// Stores a passed phase's output (replacing an earlier checkpoint of that phase) and records
    /// `spec.phase_completed`.
    async fn save_checkpoint(&self, id: SpecId, checkpoint: PhaseCheckpoint) -> Result<(), StoreError>;

    /// Adds model usage to the spec's running total; returns the new total.
    async fn add_usage(&self, id: SpecId, usage: Usage) -> Result<Usage, StoreError>;

    /// Materializes `plan` atomically and idempotently: tickets and tasks are keyed by
    /// (spec, local id), so syncing the same plan again returns the same ids and creates
    /// nothing. Rejects (creating nothing) duplicate local ids, unknown local references and
    /// dependency cycles, naming them.
    async fn sync(&self, id: SpecId, plan: &SyncPlan) -> Result<SyncOutcome, StoreError>;

    /// The spec's tickets with their derived status, in plan order.
    async fn list_tickets(&self, spec: SpecId) -> Result<Vec<Ticket>, StoreError>;

    /// One ticket with its derived status.
    async fn get_ticket(&self, id: TicketId) -> Result<Ticket, StoreError>;
}
