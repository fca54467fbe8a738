//! `SpecStore` for the in-memory adapter: specs, checkpoints, tickets and idempotent sync.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use omoi_core::queue::{SyncedTask, draft_sync};
use omoi_core::{
    Event, NewSpec, PhaseCheckpoint, Spec, SpecEvent, SpecId, SpecState, SpecStore, StoreError, SyncOutcome, SyncPlan,
    TaskId, Ticket, TicketId, TicketStatus, Usage,
};

use super::{InMemoryStore, State};

#[derive(Default)]
pub(super) struct Specs {
    rows: BTreeMap<SpecId, Spec>,
    order: Vec<SpecId>,
    tickets: HashMap<TicketId, Ticket>,
    /// A spec's tickets in plan order.
    tickets_of: HashMap<SpecId, Vec<TicketId>>,
    /// (spec, local id) → ticket.
    ticket_by_local: HashMap<(SpecId, String), TicketId>,
    /// (spec, local id) → task.
    task_by_local: HashMap<(SpecId, String), TaskId>,
}

impl Specs {
    fn get_mut(&mut self, id: SpecId) -> Result<&mut Spec, StoreError> {
        self.rows.get_mut(&id).ok_or_else(|| StoreError::not_found("spec", id))
    }
}

/// A ticket with its status derived from its tasks.
fn with_status(state: &State, ticket: &Ticket) -> Ticket {
    let tasks: Vec<_> = state
        .tasks
        .by_ticket
        .get(&ticket.id)
        .into_iter()
        .flatten()
        .filter_map(|id| state.tasks.get(id))
        .map(|t| (t.def.mode, t.state))
        .collect();
    let (status, blocked) = TicketStatus::derive(&tasks);
    Ticket { status, blocked, ..ticket.clone() }
}

fn sync(
    state: &mut State,
    id: SpecId,
    plan: &SyncPlan,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<SyncOutcome, StoreError> {
    if !state.specs.rows.contains_key(&id) {
        return Err(StoreError::not_found("spec", id));
    }
    let draft = draft_sync(
        id,
        plan,
        |local| state.specs.ticket_by_local.get(&(id, local.to_owned())).copied(),
        |local| {
            let task = state.specs.task_by_local.get(&(id, local.to_owned())).copied()?;
            let t = state.tasks.get(&task)?;
            Some(SyncedTask { id: task, dependencies: t.dependencies.clone(), state: t.state })
        },
    )?;
    let (out, batch, added) = (draft.outcome, draft.new_tasks, draft.added_dependencies);
    let new_tickets: Vec<Ticket> = draft
        .new_tickets
        .into_iter()
        .map(|(ticket_id, t)| Ticket {
            id: ticket_id,
            spec_id: Some(id),
            local_id: Some(t.local_id.clone()),
            title: t.title.clone(),
            description: t.description.clone(),
            priority: t.priority,
            requirements: t.requirements.clone(),
            status: TicketStatus::Backlog,
            blocked: false,
            created_at: now,
        })
        .collect();
    // Validate the tasks before changing anything, so a rejected plan leaves no trace.
    let states = state.tasks.validate(&batch)?;
    for t in new_tickets {
        state.specs.ticket_by_local.insert((id, t.local_id.clone().unwrap_or_default()), t.id);
        state.specs.tickets_of.entry(id).or_default().push(t.id);
        state.emit(now, Event::TicketCreated { ticket_id: t.id, spec_id: Some(id) });
        state.specs.tickets.insert(t.id, t);
    }
    for t in &batch {
        state.specs.task_by_local.insert((id, t.links.local_id.clone().unwrap_or_default()), t.id);
    }
    let mut events = Vec::new();
    state.tasks.apply(batch, states, now, &mut events);
    for change in &added {
        state.tasks.add_dependencies(change, now, &mut events);
    }
    for e in events {
        state.emit(now, e);
    }
    state.emit(
        now,
        Event::SpecSynced { spec_id: id, tickets_created: out.tickets_created, tasks_created: out.tasks_created },
    );
    Ok(out)
}

#[async_trait]
impl SpecStore for InMemoryStore {
    async fn create_spec(&self, new: NewSpec) -> Result<Spec, StoreError> {
        self.write(|s, now| {
            if s.specs.rows.contains_key(&new.id) {
                return Err(StoreError::AlreadyExists { kind: "spec", id: new.id.to_string() });
            }
            let spec = Spec::drafted(new, now);
            s.specs.order.push(spec.id);
            s.specs.rows.insert(spec.id, spec.clone());
            s.emit(now, Event::SpecCreated { spec_id: spec.id });
            Ok(spec)
        })
    }

    async fn get_spec(&self, id: SpecId) -> Result<Spec, StoreError> {
        self.read(|s, _| s.specs.rows.get(&id).cloned().ok_or_else(|| StoreError::not_found("spec", id)))
    }

    async fn list_specs(&self) -> Result<Vec<Spec>, StoreError> {
        self.read(|s, _| Ok(s.specs.order.iter().map(|id| s.specs.rows[id].clone()).collect()))
    }

    async fn transition_spec(&self, id: SpecId, event: SpecEvent) -> Result<SpecState, StoreError> {
        self.write(|s, now| {
            let spec = s.specs.get_mut(id)?;
            let from = spec.state;
            let to = from.apply(event).map_err(|e| StoreError::transition("spec", id, e))?;
            spec.state = to;
            spec.updated_at = now;
            s.emit(now, Event::SpecStateChanged { spec_id: id, from, to });
            Ok(to)
        })
    }

    async fn save_checkpoint(&self, id: SpecId, checkpoint: PhaseCheckpoint) -> Result<(), StoreError> {
        self.write(|s, now| {
            let spec = s.specs.get_mut(id)?;
            let (phase, score, attempts) = (checkpoint.phase, checkpoint.score, checkpoint.attempts);
            spec.checkpoints.insert(phase, checkpoint);
            spec.updated_at = now;
            s.emit(now, Event::SpecPhaseCompleted { spec_id: id, phase, score, attempts });
            Ok(())
        })
    }

    async fn add_usage(&self, id: SpecId, usage: Usage) -> Result<Usage, StoreError> {
        self.write(|s, now| {
            let spec = s.specs.get_mut(id)?;
            spec.usage += usage;
            spec.updated_at = now;
            Ok(spec.usage)
        })
    }

    async fn sync(&self, id: SpecId, plan: &SyncPlan) -> Result<SyncOutcome, StoreError> {
        self.write(|s, now| sync(s, id, plan, now))
    }

    async fn list_tickets(&self, spec: SpecId) -> Result<Vec<Ticket>, StoreError> {
        self.read(|s, _| {
            Ok(s.specs
                .tickets_of
                .get(&spec)
                .into_iter()
                .flatten()
                .map(|id| with_status(s, &s.specs.tickets[id]))
                .collect())
        })
    }

    async fn get_ticket(&self, id: TicketId) -> Result<Ticket, StoreError> {
        self.read(|s, _| {
            s.specs.tickets.get(&id).map(|t| with_status(s, t)).ok_or_else(|| StoreError::not_found("ticket", id))
        })
    }
}
