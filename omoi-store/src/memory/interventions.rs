//! `InterventionStore` for the in-memory adapter.

use std::collections::HashMap;

use async_trait::async_trait;
use omoi_core::{AgentId, Event, Intervention, InterventionId, InterventionStore, NewIntervention, StoreError, TaskId};

use super::InMemoryStore;

#[derive(Default)]
pub(super) struct Interventions {
    /// Recording order.
    order: Vec<InterventionId>,
    rows: HashMap<InterventionId, Intervention>,
}

#[async_trait]
impl InterventionStore for InMemoryStore {
    async fn record_intervention(&self, new: NewIntervention) -> Result<Intervention, StoreError> {
        new.validate().map_err(StoreError::InvalidInput)?;
        self.write(|s, now| {
            if s.interventions.rows.contains_key(&new.id) {
                return Err(StoreError::AlreadyExists { kind: "intervention", id: new.id.to_string() });
            }
            let i = Intervention::recorded(new, now);
            s.interventions.order.push(i.id);
            s.interventions.rows.insert(i.id, i.clone());
            s.emit(
                now,
                Event::InterventionRecorded {
                    intervention_id: i.id,
                    agent_id: i.agent_id,
                    task_id: i.task_id,
                    severity: i.severity,
                    source: i.source,
                },
            );
            Ok(i)
        })
    }

    async fn pending_interventions(&self, agent: AgentId, task: TaskId) -> Result<Vec<Intervention>, StoreError> {
        self.read(|s, _| {
            let mut out: Vec<Intervention> = s
                .interventions
                .order
                .iter()
                .map(|id| &s.interventions.rows[id])
                .filter(|i| i.is_pending() && i.is_for(agent, task))
                .cloned()
                .collect();
            out.sort_by_key(|i| (i.created_at, i.id));
            Ok(out)
        })
    }

    async fn acknowledge_intervention(&self, id: InterventionId) -> Result<Option<Intervention>, StoreError> {
        self.write(|s, now| {
            let i = s.interventions.rows.get_mut(&id).ok_or_else(|| StoreError::not_found("intervention", id))?;
            if !i.is_pending() {
                return Ok(None);
            }
            i.acknowledged_at = Some(now);
            let out = i.clone();
            s.emit(
                now,
                Event::InterventionAcknowledged { intervention_id: id, agent_id: out.agent_id, task_id: out.task_id },
            );
            Ok(Some(out))
        })
    }

    async fn list_interventions(&self, agent: Option<AgentId>, limit: usize) -> Result<Vec<Intervention>, StoreError> {
        self.read(|s, _| {
            let mut out: Vec<Intervention> =
                s.interventions.rows.values().filter(|i| agent.is_none_or(|a| i.agent_id == a)).cloned().collect();
            out.sort_by_key(|i| std::cmp::Reverse((i.created_at, i.id)));
            out.truncate(limit);
            Ok(out)
        })
    }
}
