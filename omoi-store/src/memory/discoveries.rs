//! `DiscoveryStore` for the in-memory adapter: discoveries and their branches, decided and
//! written under the store's one lock (so the whole operation is atomic).

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use omoi_core::branching::{self, BranchFacts, Found};
use omoi_core::{
    Discovery, DiscoveryFilter, DiscoveryId, DiscoveryReport, DiscoveryStore, DiscoveryTransition, Event,
    RecordOutcome, SpecId, StoreError, TaskId, TaskState,
};

use super::{InMemoryStore, State};

#[derive(Default)]
pub(super) struct Discoveries {
    /// In recording order.
    rows: Vec<Discovery>,
    by_id: HashMap<DiscoveryId, usize>,
    /// Branch task → its discovery.
    by_task: HashMap<TaskId, usize>,
}

impl Discoveries {
    fn of_task(&self, t: TaskId) -> Option<&Discovery> {
        self.by_task.get(&t).map(|&i| &self.rows[i])
    }
}

/// What the store knows about a report's source and spec.
fn find(state: &State, report: &DiscoveryReport) -> Result<Found, StoreError> {
    let source = state
        .tasks
        .get(&report.discovery.source_task)
        .cloned()
        .ok_or_else(|| StoreError::not_found("task", report.discovery.source_task))?;
    let spec: Option<SpecId> = source.links.spec_id;
    let rows = &state.discoveries.rows;
    let branched = |d: &&Discovery| !d.spawned.is_empty();
    let from_source: Vec<&Discovery> = rows.iter().filter(|d| d.source_task == source.id).filter(branched).collect();
    let diagnostics: Vec<Vec<TaskState>> = rows
        .iter()
        .rev()
        .filter(|d| d.spec_id == spec && d.kind.is_diagnostic())
        .filter(branched)
        .map(|d| d.spawned.iter().filter_map(|t| state.tasks.get(t)).map(|t| t.state).collect())
        .collect();
    let fingerprint = report.discovery.fingerprint();
    Ok(Found {
        source_depth: state.discoveries.of_task(source.id).map_or(0, |d| d.depth),
        facts: BranchFacts {
            branches_from_source: from_source.len() as u32,
            branches_in_spec: rows.iter().filter(|d| d.spec_id == spec).filter(branched).count() as u32,
            depth: 0,
            last_branch_from_source: from_source.iter().map(|d| d.created_at).max(),
            consecutive_diagnostic_failures: branching::consecutive_failures(diagnostics.iter().map(Vec::as_slice)),
        },
        exact_duplicate: rows
            .iter()
            .find(|d| d.spec_id == spec && d.status.is_live() && d.fingerprint == fingerprint)
            .map(|d| (d.id, d.spawned.clone())),
        source,
    })
}

fn record(state: &mut State, report: DiscoveryReport, now: DateTime<Utc>) -> Result<RecordOutcome, StoreError> {
    if state.discoveries.by_id.contains_key(&report.discovery.id) {
        return Err(StoreError::AlreadyExists { kind: "discovery", id: report.discovery.id.to_string() });
    }
    let found = find(state, &report)?;
    let source = found.source.id;
    let prepared = branching::prepare(report, found, now)?;
    // Everything that can fail is checked before the first write.
    let states = state.tasks.validate(&prepared.branch)?;
    let source_state = state.tasks.get(&source).map(|t| t.state).expect("found above");
    let requeue = prepared.requeue(source_state)?;
    let mut events = vec![prepared.recorded_event()];
    state.tasks.apply(prepared.branch.clone(), states, now, &mut events);
    let mut held = Vec::new();
    if let Some(change) = &requeue {
        state.tasks.add_dependencies(change, now, &mut events);
    } else if !prepared.sinks.is_empty() {
        for dep in state.tasks.dependents_of(source) {
            let waits = state.tasks.get(&dep).is_some_and(|t| branching::waits_for_branch(t.state));
            if waits && !prepared.discovery.spawned.contains(&dep) {
                for s in &prepared.sinks {
                    state.tasks.add_dependency(dep, *s);
                }
                held.push(dep);
            }
        }
    }
    events.extend(prepared.decision_events());
    let d = &mut state.discoveries;
    let i = d.rows.len();
    d.by_id.insert(prepared.discovery.id, i);
    for t in &prepared.discovery.spawned {
        d.by_task.insert(*t, i);
    }
    d.rows.push(prepared.discovery.clone());
    for e in events {
        state.emit(now, e);
    }
    Ok(prepared.outcome(held))
}

/// Resolves, appending `discovery.resolved` to `events`, every branched discovery whose last
/// branch task completed among `events` (called in the completion's write).
pub(super) fn resolve_completed(state: &mut State, now: DateTime<Utc>, events: &mut Vec<Event>) {
    let completed: Vec<TaskId> = events
        .iter()
        .filter_map(|e| match e {
            Event::TaskCompleted { task_id, .. } => Some(*task_id),
            _ => None,
        })
        .collect();
    for t in completed {
        let Some(&i) = state.discoveries.by_task.get(&t) else { continue };
        let d = &state.discoveries.rows[i];
        let states: Vec<TaskState> = d.spawned.iter().filter_map(|s| state.tasks.get(s)).map(|s| s.state).collect();
        if branching::all_completed(&states) && d.status.apply(DiscoveryTransition::Resolve).is_ok() {
            let d = &mut state.discoveries.rows[i];
            d.step(DiscoveryTransition::Resolve, now).expect("checked above");
            events.push(Event::DiscoveryResolved { discovery_id: d.id });
        }
    }
}

#[async_trait]
impl DiscoveryStore for InMemoryStore {
    async fn record_discovery(&self, report: DiscoveryReport) -> Result<RecordOutcome, StoreError> {
        self.write(|state, now| record(state, report, now))
    }

    async fn get_discovery(&self, id: DiscoveryId) -> Result<Discovery, StoreError> {
        self.read(|s, _| {
            s.discoveries
                .by_id
                .get(&id)
                .map(|&i| s.discoveries.rows[i].clone())
                .ok_or_else(|| StoreError::not_found("discovery", id))
        })
    }

    async fn list_discoveries(&self, filter: &DiscoveryFilter) -> Result<Vec<Discovery>, StoreError> {
        self.read(|s, _| Ok(s.discoveries.rows.iter().filter(|d| filter.matches(d)).cloned().collect()))
    }

    async fn discovery_of_task(&self, task: TaskId) -> Result<Option<Discovery>, StoreError> {
        self.read(|s, _| Ok(s.discoveries.of_task(task).cloned()))
    }
}
