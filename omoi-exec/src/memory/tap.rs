//! `TrajectoryTap`: an [`EventStore`] in front of another that keeps a copy of one task's
//! `agent.step` events, so what the agent did can be learned from after the run.

use std::sync::Arc;

use async_trait::async_trait;
use omoi_core::{Cursor, Event, EventStore, EventStream, StoreError, StoredEvent, TaskId};
use parking_lot::Mutex;
use serde_json::Value;

/// One recorded step: its action (`tool_call`, `tool_result`, `model`, …) and details.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// What happened.
    pub action: String,
    /// Its details, as the agent loop recorded them.
    pub detail: Value,
}

/// Forwards everything to the inner store; keeps the `agent.step` events of `task` that were
/// written successfully.
pub struct TrajectoryTap {
    inner: Arc<dyn EventStore>,
    task: TaskId,
    steps: Mutex<Vec<Step>>,
}

impl TrajectoryTap {
    /// A tap on `inner` for `task`.
    pub fn new(inner: Arc<dyn EventStore>, task: TaskId) -> Self {
        Self { inner, task, steps: Mutex::new(Vec::new()) }
    }

    /// The steps seen so far, in order.
    pub fn steps(&self) -> Vec<Step> {
        self.steps.lock().clone()
    }
}

#[async_trait]
impl EventStore for TrajectoryTap {
    async fn append_events(&self, events: Vec<Event>) -> Result<Vec<Cursor>, StoreError> {
        let steps: Vec<Step> = events
            .iter()
            .filter_map(|e| match e {
                Event::AgentStep { task_id, action, detail, .. } if *task_id == self.task => {
                    Some(Step { action: action.clone(), detail: detail.clone() })
                }
                _ => None,
            })
            .collect();
        let cursors = self.inner.append_events(events).await?;
        self.steps.lock().extend(steps);
        Ok(cursors)
    }

    async fn read_events(&self, after: Cursor, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
        self.inner.read_events(after, limit).await
    }

    async fn subscribe(&self, after: Cursor) -> Result<EventStream, StoreError> {
        self.inner.subscribe(after).await
    }

    async fn last_cursor(&self) -> Result<Cursor, StoreError> {
        self.inner.last_cursor().await
    }
}
