//! Conformance scenarios for [`SpecStore`] (with its [`TaskStore`] and [`EventStore`]).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::Usage;
use crate::error::{StoreError, SyncConflict, TaskRef};
use crate::event::{Cursor, Event};
use crate::ids::{AgentId, SpecId, TaskId};
use crate::ports::clock::Clock;
use crate::ports::event_store::EventStore;
use crate::ports::spec_store::SpecStore;
use crate::ports::task_store::{ClaimRequest, Completion, Failure, TaskFilter, TaskStore};
use crate::spec::{NewSpec, PhaseCheckpoint, PlannedTask, SyncPlan};
use crate::state::{SpecEvent, SpecPhase, SpecState, TaskState};
use crate::task::TaskDefinition;
use crate::testkit::ManualClock;
use crate::testkit::fixtures::sync_plan;
use crate::ticket::TicketStatus;

/// What the spec-store scenarios run against.
#[derive(Clone)]
pub struct Harness {
    /// The store under test.
    pub specs: Arc<dyn SpecStore>,
    /// The same store's tasks.
    pub tasks: Arc<dyn TaskStore>,
    /// The same store's events.
    pub events: Arc<dyn EventStore>,
    /// The clock the store was built with.
    pub clock: Arc<ManualClock>,
}

impl Harness {
    /// Wraps an adapter implementing the three ports.
    pub fn new<S: SpecStore + TaskStore + EventStore + 'static>(store: Arc<S>, clock: Arc<ManualClock>) -> Self {
        Self { specs: store.clone(), tasks: store.clone(), events: store, clock }
    }

    async fn spec(&self, title: &str) -> SpecId {
        self.specs.create_spec(NewSpec::new(title, format!("idea for {title}"))).await.expect("create_spec").id
    }

    async fn spec_tasks(&self, spec: SpecId) -> Vec<crate::Task> {
        self.tasks.list_tasks(&TaskFilter { spec_id: Some(spec), ..TaskFilter::default() }).await.expect("list_tasks")
    }
}

fn checkpoint(phase: SpecPhase, score: f64, at: chrono::DateTime<chrono::Utc>) -> PhaseCheckpoint {
    PhaseCheckpoint {
        phase,
        output: json!({"phase": phase.as_str(), "items": [1, 2, 3]}),
        score,
        attempts: 2,
        usage: Usage { input_tokens: 100, output_tokens: 50, cost_usd: 0.25 },
        passed_at: at,
    }
}

/// Specs are created in `Draft`, read back whole, listed oldest first; ids are unique.
pub async fn create_get_and_list_specs(h: Harness) {
    let mut first = NewSpec::new("slugify", "add a slugify helper");
    first.metadata = json!({"repo": "/tmp/sample"});
    let created = h.specs.create_spec(first.clone()).await.unwrap();
    assert_eq!(
        (created.id, created.state, created.metadata.clone()),
        (first.id, SpecState::Draft, first.metadata.clone())
    );
    let second = h.spec("second").await;
    let got = h.specs.get_spec(first.id).await.unwrap();
    assert_eq!(got, created);
    assert!(got.checkpoints.is_empty());
    assert_eq!(got.created_at, h.clock.now());
    let ids: Vec<_> = h.specs.list_specs().await.unwrap().into_iter().map(|s| s.id).collect();
    assert_eq!(ids, vec![first.id, second]);
    assert!(matches!(h.specs.get_spec(SpecId::new()).await, Err(StoreError::NotFound { kind: "spec", .. })));
    assert!(matches!(h.specs.create_spec(first).await, Err(StoreError::AlreadyExists { .. })));
}

/// Spec transitions go through the table; a refused one changes nothing; each change is an event.
pub async fn spec_transitions_follow_the_table_and_emit_events(h: Harness) {
    let start = h.events.last_cursor().await.unwrap();
    let id = h.spec("machine").await;
    let s = h.specs.transition_spec(id, SpecEvent::Start(SpecPhase::Explore)).await.unwrap();
    assert_eq!(s, SpecState::Running { phase: SpecPhase::Explore });
    h.specs.transition_spec(id, SpecEvent::Advance).await.unwrap();
    h.specs.transition_spec(id, SpecEvent::Fail).await.unwrap();
    let err = h.specs.transition_spec(id, SpecEvent::Complete).await.unwrap_err();
    assert!(matches!(err, StoreError::InvalidTransition { kind: "spec", .. }), "{err}");
    assert_eq!(h.specs.get_spec(id).await.unwrap().state, SpecState::Failed { phase: SpecPhase::Prd });
    let s = h.specs.transition_spec(id, SpecEvent::Resume).await.unwrap();
    assert_eq!(s, SpecState::Running { phase: SpecPhase::Prd });
    let events = h.events.read_events(start, 100).await.unwrap();
    let changes: Vec<(SpecState, SpecState)> = events
        .iter()
        .filter_map(|e| match e.event {
            Event::SpecStateChanged { from, to, .. } => Some((from, to)),
            _ => None,
        })
        .collect();
    use SpecPhase::*;
    assert_eq!(
        changes,
        vec![
            (SpecState::Draft, SpecState::Running { phase: Explore }),
            (SpecState::Running { phase: Explore }, SpecState::Running { phase: Prd }),
            (SpecState::Running { phase: Prd }, SpecState::Failed { phase: Prd }),
            (SpecState::Failed { phase: Prd }, SpecState::Running { phase: Prd }),
        ]
    );
    assert_eq!(events[0].event.name(), "spec.created");
}

/// Checkpoints are stored whole, a re-save replaces, and `next_phase` skips passed phases.
pub async fn checkpoints_are_kept_and_next_phase_skips_them(h: Harness) {
    let id = h.spec("resume").await;
    let now = h.clock.now();
    h.specs.save_checkpoint(id, checkpoint(SpecPhase::Explore, 0.8, now)).await.unwrap();
    h.specs.save_checkpoint(id, checkpoint(SpecPhase::Prd, 0.75, now)).await.unwrap();
    let spec = h.specs.get_spec(id).await.unwrap();
    assert_eq!(spec.next_phase(), Some(SpecPhase::Requirements));
    assert_eq!(spec.checkpoints[&SpecPhase::Prd], checkpoint(SpecPhase::Prd, 0.75, now));
    let mut again = checkpoint(SpecPhase::Explore, 0.95, now);
    again.output = json!({"v": 2});
    h.specs.save_checkpoint(id, again.clone()).await.unwrap();
    let spec = h.specs.get_spec(id).await.unwrap();
    assert_eq!(spec.checkpoints.len(), 2);
    assert_eq!(spec.checkpoints[&SpecPhase::Explore], again);
    let completed = h
        .events
        .read_events(Cursor::START, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| matches!(e.event, Event::SpecPhaseCompleted { spec_id, .. } if spec_id == id))
        .count();
    assert_eq!(completed, 3);
    assert!(matches!(h.specs.save_checkpoint(SpecId::new(), again).await, Err(StoreError::NotFound { .. })));
}

/// Usage adds up across calls and is returned as the new total.
pub async fn usage_accumulates_across_calls(h: Harness) {
    let id = h.spec("budget").await;
    let u = Usage { input_tokens: 10, output_tokens: 5, cost_usd: 0.125 };
    h.specs.add_usage(id, u).await.unwrap();
    let total = h.specs.add_usage(id, u).await.unwrap();
    assert_eq!(total, Usage { input_tokens: 20, output_tokens: 10, cost_usd: 0.25 });
    assert_eq!(h.specs.get_spec(id).await.unwrap().usage, total);
}

/// Sync creates the plan's tickets and tasks with dependency edges mapped to task ids.
pub async fn sync_materializes_tickets_and_tasks_with_dependencies(h: Harness) {
    let id = h.spec("sync").await;
    let plan = sync_plan();
    let out = h.specs.sync(id, &plan).await.unwrap();
    assert_eq!((out.tickets_created, out.tasks_created), (2, 4));
    assert_eq!(out.tasks.len(), 4);
    let t = |l: &str| out.tasks[l];
    let tasks = h.spec_tasks(id).await;
    assert_eq!(tasks.len(), 4);
    for task in &tasks {
        let local = task.links.local_id.clone().expect("local id kept");
        assert_eq!(out.tasks[&local], task.id);
        assert_eq!(task.links.spec_id, Some(id));
        let planned = plan.tasks.iter().find(|p| p.local_id == local).unwrap();
        assert_eq!(task.def, planned.def);
        assert_eq!(task.links.ticket_id, Some(out.tickets[planned.ticket.as_ref().unwrap()]));
        let want: HashSet<TaskId> = planned.depends_on.iter().map(|d| t(d)).collect();
        assert_eq!(task.dependencies.iter().copied().collect::<HashSet<_>>(), want, "{local}");
    }
    let state = |l: &str| tasks.iter().find(|x| x.id == t(l)).unwrap().state;
    assert_eq!(state("TSK-001"), TaskState::Ready);
    assert_eq!(state("TSK-004"), TaskState::Waiting);
    let tickets = h.specs.list_tickets(id).await.unwrap();
    assert_eq!(tickets.iter().map(|t| t.local_id.clone().unwrap()).collect::<Vec<_>>(), ["TKT-001", "TKT-002"]);
    assert_eq!(tickets[0].requirements, plan.tickets[0].requirements);
    let synced = h.events.read_events(Cursor::START, 100).await.unwrap().into_iter().find_map(|e| match e.event {
        Event::SpecSynced { tickets_created, tasks_created, .. } => Some((tickets_created, tasks_created)),
        _ => None,
    });
    assert_eq!(synced, Some((2, 4)));
}

/// Syncing the same plan again returns the same ids and creates nothing.
pub async fn sync_is_idempotent_same_ids_nothing_new(h: Harness) {
    let id = h.spec("idempotent").await;
    let first = h.specs.sync(id, &sync_plan()).await.unwrap();
    let before = h.events.last_cursor().await.unwrap();
    let second = h.specs.sync(id, &sync_plan()).await.unwrap();
    assert_eq!((second.tickets_created, second.tasks_created), (0, 0));
    assert_eq!(second.tasks, first.tasks);
    assert_eq!(second.tickets, first.tickets);
    assert_eq!(h.spec_tasks(id).await.len(), 4);
    assert_eq!(h.specs.list_tickets(id).await.unwrap().len(), 2);
    let created_again = h
        .events
        .read_events(before, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| matches!(e.event.name(), "task.created" | "ticket.created"))
        .count();
    assert_eq!(created_again, 0);
    let other = h.spec("other").await;
    let third = h.specs.sync(other, &sync_plan()).await.unwrap();
    assert_eq!(third.tasks_created, 4, "local ids are scoped to their spec");
    assert!(third.tasks.values().all(|t| !first.tasks.values().any(|f| f == t)));
}

/// Unknown local ids and cycles are rejected by name and nothing is created.
pub async fn sync_rejects_unknown_local_ids_and_cycles_creating_nothing(h: Harness) {
    let id = h.spec("bad plans").await;
    let mut unknown = sync_plan();
    unknown.tasks[1].depends_on.push("TSK-999".into());
    match h.specs.sync(id, &unknown).await {
        Err(StoreError::UnknownDependency { task: TaskRef::Local(t), missing: TaskRef::Local(m) }) => {
            assert_eq!((t.as_str(), m.as_str()), ("TSK-002", "TSK-999"));
        }
        other => panic!("expected UnknownDependency, got {other:?}"),
    }
    let mut cyclic = sync_plan();
    cyclic.tasks[0].depends_on.push("TSK-004".into());
    let err = h.specs.sync(id, &cyclic).await.unwrap_err();
    let StoreError::Cycle { path } = &err else { panic!("expected Cycle, got {err}") };
    assert!(path.contains(&TaskRef::Local("TSK-001".into())) && path.contains(&TaskRef::Local("TSK-004".into())));
    assert!(err.to_string().contains("TSK-001"));
    assert!(h.spec_tasks(id).await.is_empty());
    assert!(h.specs.list_tickets(id).await.unwrap().is_empty());
    assert!(matches!(h.specs.sync(SpecId::new(), &sync_plan()).await, Err(StoreError::NotFound { .. })));
}

/// A plan extended with a new task creates only that task, wired to the existing ones.
pub async fn sync_of_an_extended_plan_creates_only_the_new_tasks(h: Harness) {
    let id = h.spec("extend").await;
    let first = h.specs.sync(id, &sync_plan()).await.unwrap();
    let mut plan: SyncPlan = sync_plan();
    plan.tasks.push(PlannedTask {
        local_id: "TSK-005".into(),
        ticket: Some("TKT-002".into()),
        depends_on: vec!["TSK-004".into(), "TSK-001".into()],
        def: TaskDefinition { title: "document it".into(), ..TaskDefinition::default() },
    });
    let out = h.specs.sync(id, &plan).await.unwrap();
    assert_eq!((out.tickets_created, out.tasks_created), (0, 1));
    let new = h.tasks.get_task(out.tasks["TSK-005"]).await.unwrap();
    assert_eq!(
        new.dependencies.iter().copied().collect::<HashSet<_>>(),
        HashSet::from([first.tasks["TSK-004"], first.tasks["TSK-001"]])
    );
    assert_eq!(new.state, TaskState::Waiting);
    assert_eq!(h.spec_tasks(id).await.len(), 5);
}

fn planned(local: &str, depends_on: &[&str]) -> PlannedTask {
    PlannedTask {
        local_id: local.into(),
        ticket: None,
        depends_on: depends_on.iter().map(|d| (*d).to_owned()).collect(),
        def: TaskDefinition { title: format!("{local} work"), ..TaskDefinition::default() },
    }
}

fn add_dependency(plan: &mut SyncPlan, task: &str, on: &str) {
    let at = plan.tasks.iter().position(|t| t.local_id == task).expect("planned task");
    plan.tasks[at].depends_on.push(on.into());
}

impl Harness {
    /// Claims every ready task, completing `id` and releasing the others; returns the ids seen.
    async fn complete_only(&self, id: TaskId) -> Vec<TaskId> {
        let req = ClaimRequest::new(AgentId::new(), 100, Duration::from_secs(60));
        let mut seen = Vec::new();
        for c in self.tasks.claim(&req).await.expect("claim") {
            seen.push(c.task.id);
            if c.task.id == id {
                self.tasks.complete(id, c.lease.token, Completion::default()).await.expect("complete");
            } else {
                self.tasks.release(c.task.id, c.lease.token).await.expect("release");
            }
        }
        seen
    }
}

/// A re-sync that adds dependencies to a synced task that is still waiting applies them in
/// the same transaction (with a `task.dependencies_added` event): the task waits for the new
/// dependencies too, an existing one and one the same plan creates.
pub async fn sync_adds_a_dependency_to_a_waiting_task_which_then_waits_for_it(h: Harness) {
    let id = h.spec("resync waiting").await;
    let first = h.specs.sync(id, &sync_plan()).await.unwrap();
    let (t1, t2, t3) = (first.tasks["TSK-001"], first.tasks["TSK-002"], first.tasks["TSK-003"]);
    assert_eq!(h.tasks.get_task(t3).await.unwrap().state, TaskState::Waiting);
    let mut plan = sync_plan();
    plan.tasks.push(planned("TSK-005", &[]));
    add_dependency(&mut plan, "TSK-003", "TSK-002");
    add_dependency(&mut plan, "TSK-003", "TSK-005");
    let before = h.events.last_cursor().await.unwrap();
    let out = h.specs.sync(id, &plan).await.unwrap();
    assert_eq!((out.tasks_created, out.dependencies_added), (1, 2));
    let t5 = out.tasks["TSK-005"];
    let stored = h.tasks.get_task(t3).await.unwrap();
    assert_eq!(stored.dependencies.iter().copied().collect::<HashSet<_>>(), HashSet::from([t1, t2, t5]));
    assert_eq!(stored.state, TaskState::Waiting);
    let events = h.events.read_events(before, 100).await.unwrap();
    assert!(
        events.iter().any(|e| matches!(&e.event,
            Event::TaskDependenciesAdded { task_id, added, from: TaskState::Waiting, to: TaskState::Waiting }
                if *task_id == t3 && added.iter().copied().collect::<HashSet<_>>() == HashSet::from([t2, t5]))),
        "{events:?}"
    );
    let again = h.specs.sync(id, &plan).await.unwrap();
    assert_eq!((again.tasks_created, again.dependencies_added), (0, 0), "the applied plan is in sync");
    // The new edges are honoured: TSK-003 is released only after TSK-001, TSK-002 and TSK-005.
    h.complete_only(t1).await;
    h.complete_only(t2).await;
    assert_eq!(h.tasks.get_task(t3).await.unwrap().state, TaskState::Waiting, "still waits for TSK-005");
    h.complete_only(t5).await;
    assert_eq!(h.tasks.get_task(t3).await.unwrap().state, TaskState::Ready);
}

/// A re-sync that adds an unfinished dependency to a ready task makes it wait again (it is not
/// claimable until the dependency completes); one on a completed task leaves it ready.
pub async fn sync_adds_a_dependency_to_a_ready_task_which_waits_again(h: Harness) {
    let id = h.spec("resync ready").await;
    let first = h.specs.sync(id, &sync_plan()).await.unwrap();
    let t1 = first.tasks["TSK-001"];
    assert_eq!(h.tasks.get_task(t1).await.unwrap().state, TaskState::Ready);
    let mut plan = sync_plan();
    plan.tasks.push(planned("TSK-000", &[]));
    add_dependency(&mut plan, "TSK-001", "TSK-000");
    let out = h.specs.sync(id, &plan).await.unwrap();
    assert_eq!(out.dependencies_added, 1);
    let t0 = out.tasks["TSK-000"];
    assert_eq!(h.tasks.get_task(t1).await.unwrap().state, TaskState::Waiting);
    let seen = h.complete_only(t0).await;
    assert!(!seen.contains(&t1), "a task waiting on its new dependency is not claimable: {seen:?}");
    assert_eq!(h.tasks.get_task(t1).await.unwrap().state, TaskState::Ready, "released when TSK-000 completed");
    // A dependency on a completed task is met already.
    let mut plan = plan.clone();
    plan.tasks.push(planned("TSK-006", &[]));
    let out = h.specs.sync(id, &plan).await.unwrap();
    h.complete_only(out.tasks["TSK-006"]).await;
    add_dependency(&mut plan, "TSK-001", "TSK-006");
    let out = h.specs.sync(id, &plan).await.unwrap();
    assert_eq!(out.dependencies_added, 1);
    assert_eq!(h.tasks.get_task(t1).await.unwrap().state, TaskState::Ready);
    assert_eq!(h.complete_only(t1).await, [t1], "and it still runs");
}

/// A dependency added to a task that already started or finished, or a dependency dropped, is
/// refused with a typed error naming the task and its state, and nothing is synced (not even
/// the plan's new tasks).
pub async fn sync_of_a_dependency_added_to_a_running_or_completed_task_is_refused_naming_it(h: Harness) {
    let id = h.spec("changed").await;
    let first = h.specs.sync(id, &sync_plan()).await.unwrap();
    let t1 = first.tasks["TSK-001"];
    let req = ClaimRequest::new(AgentId::new(), 1, Duration::from_secs(60));
    let c = h.tasks.claim(&req).await.unwrap().remove(0);
    assert_eq!(c.task.id, t1);
    h.tasks.start(t1, c.lease.token).await.unwrap();
    let mut plan: SyncPlan = sync_plan();
    plan.tasks.push(planned("TSK-005", &[]));
    add_dependency(&mut plan, "TSK-001", "TSK-005");
    match h.specs.sync(id, &plan).await {
        Err(StoreError::SyncConflict(c)) => {
            let SyncConflict { task, id: stored, state, added, removed, .. } = *c;
            assert_eq!((task.as_str(), stored, state), ("TSK-001", t1, TaskState::Running));
            assert_eq!((added, removed), (vec!["TSK-005".to_owned()], Vec::<String>::new()));
        }
        other => panic!("expected SyncConflict, got {other:?}"),
    }
    h.tasks.complete(t1, c.lease.token, Completion::default()).await.unwrap();
    match h.specs.sync(id, &plan).await {
        Err(StoreError::SyncConflict(e)) if e.state == TaskState::Completed => {
            assert!(e.to_string().contains("TSK-001") && e.to_string().contains("completed"), "{e}");
        }
        other => panic!("expected SyncConflict, got {other:?}"),
    }
    let mut dropped: SyncPlan = sync_plan();
    let at = dropped.tasks.iter().position(|t| t.local_id == "TSK-002").unwrap();
    dropped.tasks[at].depends_on.clear();
    match h.specs.sync(id, &dropped).await {
        Err(e @ StoreError::SyncConflict(_)) => assert!(e.to_string().contains("TSK-002"), "{e}"),
        other => panic!("expected SyncConflict, got {other:?}"),
    }
    assert_eq!(h.spec_tasks(id).await.len(), 4, "nothing was synced");
    assert_eq!(h.tasks.get_task(t1).await.unwrap().dependencies, Vec::<TaskId>::new(), "the stored task is unchanged");
}

/// A ticket's column follows its tasks; failures show as the blocked overlay.
pub async fn ticket_status_is_derived_from_its_tasks(h: Harness) {
    let id = h.spec("board").await;
    let out = h.specs.sync(id, &sync_plan()).await.unwrap();
    let (core, tests) = (out.tickets["TKT-001"], out.tickets["TKT-002"]);
    assert_eq!(h.specs.get_ticket(core).await.unwrap().status, TicketStatus::Backlog);
    let holder = AgentId::new();
    let req = ClaimRequest::new(holder, 10, Duration::from_secs(60));
    let c = h.tasks.claim(&req).await.unwrap().remove(0);
    assert_eq!(h.specs.get_ticket(core).await.unwrap().status, TicketStatus::Building);
    h.tasks.complete(c.task.id, c.lease.token, Completion::default()).await.unwrap();
    for c in h.tasks.claim(&req).await.unwrap() {
        h.tasks.complete(c.task.id, c.lease.token, Completion::default()).await.unwrap();
    }
    assert_eq!(h.specs.get_ticket(core).await.unwrap().status, TicketStatus::Done);
    let t = h.specs.get_ticket(tests).await.unwrap();
    assert_eq!((t.status, t.blocked), (TicketStatus::Testing, false));
    let v = h.tasks.claim(&req).await.unwrap().remove(0);
    assert_eq!(v.task.id, out.tasks["TSK-004"]);
    h.tasks.fail(v.task.id, v.lease.token, Failure::permanent("tests failed")).await.unwrap();
    assert!(h.specs.get_ticket(tests).await.unwrap().blocked);
    assert!(matches!(h.specs.get_ticket(crate::TicketId::new()).await, Err(StoreError::NotFound { .. })));
}

/// Runs the whole [`SpecStore`](crate::SpecStore) suite against an adapter. The factory yields
/// `Arc<S>` with `S: SpecStore + TaskStore + EventStore`.
#[macro_export]
macro_rules! spec_store_suite {
    ($factory:expr) => {
        $crate::__omoi_suite!(
            spec_store,
            $factory,
            [
                create_get_and_list_specs,
                spec_transitions_follow_the_table_and_emit_events,
                checkpoints_are_kept_and_next_phase_skips_them,
                usage_accumulates_across_calls,
                sync_materializes_tickets_and_tasks_with_dependencies,
                sync_is_idempotent_same_ids_nothing_new,
                sync_rejects_unknown_local_ids_and_cycles_creating_nothing,
                sync_of_an_extended_plan_creates_only_the_new_tasks,
                sync_adds_a_dependency_to_a_waiting_task_which_then_waits_for_it,
                sync_adds_a_dependency_to_a_ready_task_which_waits_again,
                sync_of_a_dependency_added_to_a_running_or_completed_task_is_refused_naming_it,
                ticket_status_is_derived_from_its_tasks,
            ]
        );
    };
}
