//! Mailboxes: steering messages for running agents, read between turns.
//!
//! Two ways in: [`Mailboxes::send`] queues a message in this process (a person at a REPL, a
//! test), and with [`Mailboxes::durable`] the pending [`Intervention`]s recorded in an
//! [`InterventionStore`] by any process (the monitors) are read too. Each stored intervention is
//! acknowledged as the run takes it, and only the run whose acknowledgement was first applies it,
//! so it is applied once even when several readers race.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

pub use omoi_core::Severity;
use omoi_core::{AgentId, Intervention, InterventionId, InterventionStore, StoreError, TaskId};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// A steering message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Steering {
    /// How strong.
    pub severity: Severity,
    /// What the agent should do.
    pub message: String,
    /// Who sent it (`guardian`, `user`, …).
    pub from: String,
    /// The stored intervention it came from, if any.
    pub intervention: Option<InterventionId>,
}

impl Steering {
    /// A message of `severity` from `from`.
    pub fn new(severity: Severity, from: impl Into<String>, message: impl Into<String>) -> Self {
        Self { severity, message: message.into(), from: from.into(), intervention: None }
    }

    /// The steering a stored intervention asks for.
    pub fn from_intervention(i: &Intervention) -> Self {
        Self {
            severity: i.severity,
            message: i.message.clone(),
            from: i.source.as_str().to_owned(),
            intervention: Some(i.id),
        }
    }
}

/// Mailboxes of every running task, shared by the workers and whoever steers (monitors, people).
/// Cheap to clone.
#[derive(Clone, Default)]
pub struct Mailboxes {
    inner: Arc<Mutex<HashMap<TaskId, VecDeque<Steering>>>>,
    store: Option<Arc<dyn InterventionStore>>,
}

impl std::fmt::Debug for Mailboxes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailboxes")
            .field("queued", &self.inner.lock().len())
            .field("durable", &self.store.is_some())
            .finish()
    }
}

impl Mailboxes {
    /// Empty in-process mailboxes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Mailboxes that also deliver the pending interventions recorded in `store` (by this or any
    /// other process).
    pub fn durable(store: Arc<dyn InterventionStore>) -> Self {
        Self { inner: Arc::default(), store: Some(store) }
    }

    /// The same mailboxes, also delivering the pending interventions recorded in `store`.
    pub fn with_store(mut self, store: Arc<dyn InterventionStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// Queues a message for the agent running `task`, in this process only.
    pub fn send(&self, task: TaskId, message: Steering) {
        self.inner.lock().entry(task).or_default().push_back(message);
    }

    /// Takes every message queued in this process for `task`, oldest first.
    pub fn drain(&self, task: TaskId) -> Vec<Steering> {
        self.inner.lock().remove(&task).map(Vec::from).unwrap_or_default()
    }

    /// Takes everything `agent`'s run of `task` should apply now: the in-process messages, then
    /// the stored pending interventions addressed to it, each acknowledged in the store (those
    /// another reader acknowledged first are skipped). Apply every message returned.
    pub async fn take(&self, task: TaskId, agent: AgentId) -> Result<Vec<Steering>, StoreError> {
        let mut out = self.drain(task);
        if let Some(store) = &self.store {
            for i in store.pending_interventions(agent, task).await? {
                if let Some(acked) = store.acknowledge_intervention(i.id).await? {
                    out.push(Steering::from_intervention(&acked));
                }
            }
        }
        Ok(out)
    }
}
