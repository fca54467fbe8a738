//! Conformance scenarios for [`DiscoveryStore`] (with its [`TaskStore`] and [`EventStore`]).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use crate::branching::{BranchLimits, default_branch};
use crate::discovery::{DiscoveryKind, DiscoveryStatus, DuplicateOf, NewDiscovery, RefusalReason};
use crate::error::StoreError;
use crate::event::{Cursor, Event};
use crate::ids::{AgentId, SpecId, TaskId};
use crate::ports::discovery_store::{DiscoveryFilter, DiscoveryReport, DiscoveryStore, RecordOutcome};
use crate::ports::event_store::EventStore;
use crate::ports::task_store::{ClaimRequest, ClaimedTask, Completion, Failure, TaskFilter, TaskStore};
use crate::state::TaskState;
use crate::task::{NewTask, TaskLinks};
use crate::testkit::ManualClock;
use crate::{ExecutionMode, Priority, WorkPhase};

/// What the discovery-store scenarios run against.
#[derive(Clone)]
pub struct Harness {
    /// The store under test.
    pub discoveries: Arc<dyn DiscoveryStore>,
    /// Its tasks.
    pub tasks: Arc<dyn TaskStore>,
    /// Its event log.
    pub events: Arc<dyn EventStore>,
    /// The clock the store was built with.
    pub clock: Arc<ManualClock>,
}

const TTL: Duration = Duration::from_secs(30);

impl Harness {
    /// Wraps an adapter implementing the three ports.
    pub fn new<S: DiscoveryStore + TaskStore + EventStore + 'static>(store: Arc<S>, clock: Arc<ManualClock>) -> Self {
        Self { discoveries: store.clone(), tasks: store.clone(), events: store, clock }
    }

    /// Inserts a source task of `spec` (with a dependent) and claims and starts it: a running
    /// task whose agent reports discoveries. Returns (source, dependent).
    async fn running_source(&self, spec: SpecId, local: &str) -> (ClaimedTask, TaskId) {
        let links = TaskLinks { spec_id: Some(spec), local_id: Some(local.into()), ..TaskLinks::default() };
        let source = NewTask::new(format!("source {local}")).links(links.clone()).phase(WorkPhase::Implementation);
        let dependent =
            NewTask::new(format!("after {local}")).links(TaskLinks { local_id: None, ..links }).depends_on([source.id]);
        self.tasks.insert_tasks(vec![source.clone(), dependent.clone()]).await.expect("insert source");
        let c = self.claim_one(source.id).await;
        self.tasks.start(c.task.id, c.lease.token).await.expect("start");
        (c, dependent.id)
    }

    /// Claims ready tasks until `id` is among them (others are released).
    async fn claim_one(&self, id: TaskId) -> ClaimedTask {
        for _ in 0..100 {
            let claimed = self.tasks.claim(&ClaimRequest::new(AgentId::new(), 100, TTL)).await.expect("claim");
            let mut found = None;
            for c in claimed {
                if c.task.id == id {
                    found = Some(c);
                } else {
                    self.tasks.release(c.task.id, c.lease.token).await.expect("release");
                }
            }
            if let Some(c) = found {
                return c;
            }
        }
        panic!("task {id} never became claimable");
    }

    async fn complete(&self, id: TaskId) {
        let c = self.claim_one(id).await;
        self.tasks.complete(id, c.lease.token, Completion::default()).await.expect("complete");
    }

    async fn report(&self, d: NewDiscovery, limits: BranchLimits) -> RecordOutcome {
        let source = self.tasks.get_task(d.source_task).await.expect("source");
        let branch = default_branch(&source, &d);
        self.discoveries
            .record_discovery(DiscoveryReport { discovery: d, branch, limits, duplicate_of: None })
            .await
            .expect("record_discovery")
    }

    async fn state(&self, id: TaskId) -> TaskState {
        self.tasks.get_task(id).await.expect("get_task").state
    }

    async fn events_after(&self, c: Cursor) -> Vec<Event> {
        self.events.read_events(c, 10_000).await.expect("read_events").into_iter().map(|e| e.event).collect()
    }

    async fn count_tasks(&self) -> usize {
        self.tasks.list_tasks(&TaskFilter::default()).await.expect("list").len()
    }
}

fn bug(source: TaskId, title: &str) -> NewDiscovery {
    NewDiscovery::new(source, DiscoveryKind::Bug, title, format!("{title}: details"), "the failing test passes")
}

/// Numbered reports that never collide in exact dedup.
fn distinct(source: TaskId, i: usize, kind: DiscoveryKind) -> NewDiscovery {
    NewDiscovery::new(source, kind, format!("finding {i}"), format!("finding number {i} details"), "done")
}

/// A branch records the discovery, a task linked to the source's spec and ticket with the
/// source as parent and `triggered_by` the discovery, raised one priority level when boosted,
/// in any phase and mode, with `discovery.recorded`, `task.created` and
/// `discovery.branch_created` in that order.
pub async fn branch_is_recorded_with_links_boosted_priority_and_events(h: Harness) {
    let spec = SpecId::new();
    let (src, _) = h.running_source(spec, "TSK-001").await;
    let before = h.events.last_cursor().await.unwrap();
    let d = bug(src.task.id, "slugify drops digits").boosted(true);
    let mut branch = default_branch(&src.task, &d);
    branch[0].def.phase = WorkPhase::Testing;
    branch[0].def.mode = ExecutionMode::Validation;
    let out = h
        .discoveries
        .record_discovery(DiscoveryReport {
            discovery: d.clone(),
            branch,
            limits: BranchLimits::default(),
            duplicate_of: None,
        })
        .await
        .unwrap();
    let RecordOutcome::Branched { discovery, tasks, local_ids, .. } = out.clone() else { panic!("{out:?}") };
    assert_eq!(discovery, d.id);
    assert_eq!(tasks.len(), 1);
    assert_eq!(local_ids, ["TSK-001.1"]);
    let t = h.tasks.get_task(tasks[0]).await.unwrap();
    assert_eq!(t.links.spec_id, Some(spec));
    assert_eq!(t.links.parent_id, Some(src.task.id));
    assert_eq!(t.def.priority, Priority::High, "medium source, boosted");
    assert_eq!((t.def.phase, t.def.mode), (WorkPhase::Testing, ExecutionMode::Validation), "any phase and mode");
    assert_eq!(t.def.input["triggered_by"], serde_json::json!(d.id));
    assert_eq!(t.state, TaskState::Ready, "the source's dependencies are met");
    let stored = h.discoveries.get_discovery(d.id).await.unwrap();
    assert_eq!(stored.status, DiscoveryStatus::Branched);
    assert_eq!(stored.spawned, tasks);
    assert_eq!(stored.spec_id, Some(spec));
    assert_eq!(stored.depth, 1);
    assert_eq!(stored.done_definition, "the failing test passes");
    assert_eq!(stored.created_at, crate::ports::clock::Clock::now(h.clock.as_ref()));
    assert_eq!(h.discoveries.discovery_of_task(tasks[0]).await.unwrap().map(|d| d.id), Some(d.id));
    assert_eq!(h.discoveries.discovery_of_task(src.task.id).await.unwrap(), None);
    let names: Vec<&str> = h.events_after(before).await.iter().map(|e| e.name()).collect();
    assert_eq!(names, ["discovery.recorded", "task.created", "discovery.branch_created"]);
    let unboosted = bug(src.task.id, "another").boosted(false);
    h.clock.advance(Duration::from_secs(61));
    let out = h.report(unboosted, BranchLimits::default()).await;
    assert_eq!(h.tasks.get_task(out.spawned()[0]).await.unwrap().def.priority, Priority::Medium);
}

/// A blocking discovery makes the source's not-yet-started dependents wait for the branch:
/// after the source completes they stay waiting until the branch completes.
pub async fn blocking_discovery_holds_the_sources_dependents_until_the_branch_completes(h: Harness) {
    let (src, dependent) = h.running_source(SpecId::new(), "TSK-001").await;
    let out = h.report(bug(src.task.id, "edge case fails").blocking(true), BranchLimits::default()).await;
    let RecordOutcome::Branched { tasks, held, .. } = out else { panic!("{out:?}") };
    assert_eq!(held, [dependent]);
    assert!(h.tasks.get_task(dependent).await.unwrap().dependencies.contains(&tasks[0]));
    h.tasks.complete(src.task.id, src.lease.token, Completion::default()).await.unwrap();
    assert_eq!(h.state(dependent).await, TaskState::Waiting, "the dependent waits for the branch");
    h.complete(tasks[0]).await;
    assert_eq!(h.state(dependent).await, TaskState::Ready);
}

/// A blocking discovery that re-queues its source makes the source itself wait for the branch:
/// in the same transaction its lease ends (the old token is fenced) without using an attempt,
/// it waits for the branch, runs again once the branch completes, and its dependents wait for
/// it as before. A source that holds no lease cannot be re-queued: refused, nothing recorded.
pub async fn blocking_discovery_requeues_its_source_behind_the_branch(h: Harness) {
    let (src, dependent) = h.running_source(SpecId::new(), "TSK-001").await;
    let attempts = h.tasks.get_task(src.task.id).await.unwrap().attempts;
    let before = h.events.last_cursor().await.unwrap();
    let d = bug(src.task.id, "missing requirement").requeue_source();
    let out = h.report(d.clone(), BranchLimits::default()).await;
    let RecordOutcome::Branched { tasks, held, requeued, .. } = out else { panic!("{out:?}") };
    assert!(requeued && held.is_empty(), "the source waits, not its dependents: {held:?}");
    assert!(h.discoveries.get_discovery(d.id).await.unwrap().requeue_source);
    let source = h.tasks.get_task(src.task.id).await.unwrap();
    assert_eq!(source.state, TaskState::Waiting);
    assert!(source.lease.is_none());
    assert_eq!(source.attempts, attempts - 1, "the interrupted attempt is given back");
    assert!(source.dependencies.contains(&tasks[0]));
    let names: Vec<&str> = h.events_after(before).await.iter().map(|e| e.name()).collect();
    assert_eq!(names, ["discovery.recorded", "task.created", "task.dependencies_added", "discovery.branch_created"]);
    let stale = h.tasks.complete(src.task.id, src.lease.token, Completion::default()).await.unwrap_err();
    assert!(matches!(stale, StoreError::StaleLease { .. }), "{stale:?}");
    assert_eq!(h.tasks.get_task(dependent).await.unwrap().dependencies, [src.task.id]);
    h.complete(tasks[0]).await;
    assert_eq!(h.state(src.task.id).await, TaskState::Ready, "the source runs again after the branch");
    h.complete(src.task.id).await;
    assert_eq!(h.state(dependent).await, TaskState::Ready);
    // Only a claimed or running source can be re-queued.
    let (other, waiting) = h.running_source(SpecId::new(), "TSK-002").await;
    let tasks_before = h.count_tasks().await;
    let cursor = h.events.last_cursor().await.unwrap();
    let bad = bug(waiting, "not running").requeue_source();
    let source = h.tasks.get_task(waiting).await.unwrap();
    let err = h
        .discoveries
        .record_discovery(DiscoveryReport {
            discovery: bad.clone(),
            branch: default_branch(&source, &bad),
            limits: BranchLimits::default(),
            duplicate_of: None,
        })
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidTransition { .. }), "{err:?}");
    assert!(matches!(h.discoveries.get_discovery(bad.id).await, Err(StoreError::NotFound { .. })));
    assert_eq!(h.count_tasks().await, tasks_before);
    assert_eq!(h.events.last_cursor().await.unwrap(), cursor);
    assert_eq!(h.state(other.task.id).await, TaskState::Running);
}

/// A non-blocking discovery runs beside the source: its dependents are released as before.
pub async fn non_blocking_discovery_runs_beside_the_source(h: Harness) {
    let (src, dependent) = h.running_source(SpecId::new(), "TSK-001").await;
    let d = NewDiscovery::new(src.task.id, DiscoveryKind::Optimization, "cache it", "cache the table", "cached");
    assert!(!d.blocking);
    let out = h.report(d, BranchLimits::default()).await;
    let RecordOutcome::Branched { tasks, held, .. } = out else { panic!("{out:?}") };
    assert!(held.is_empty());
    let released = h.tasks.complete(src.task.id, src.lease.token, Completion::default()).await.unwrap();
    assert_eq!(released, [dependent]);
    assert_eq!(h.state(tasks[0]).await, TaskState::Ready);
}

/// The discovery is resolved, with `discovery.resolved`, in the transaction that completes its
/// last branch task, and not before.
pub async fn discovery_is_resolved_when_its_last_branch_task_completes(h: Harness) {
    let (src, _) = h.running_source(SpecId::new(), "TSK-001").await;
    let d = bug(src.task.id, "two step fix");
    let mut branch = default_branch(&src.task, &d);
    let recheck = NewTask::new("re-validate").mode(ExecutionMode::Validation).depends_on([branch[0].id]);
    branch.push(recheck);
    let out = h
        .discoveries
        .record_discovery(DiscoveryReport {
            discovery: d.clone(),
            branch,
            limits: BranchLimits::default(),
            duplicate_of: None,
        })
        .await
        .unwrap();
    let tasks = out.spawned().to_vec();
    assert_eq!(tasks.len(), 2);
    assert_eq!(h.state(tasks[1]).await, TaskState::Waiting, "branch tasks may depend on each other");
    h.complete(tasks[0]).await;
    assert_eq!(h.discoveries.get_discovery(d.id).await.unwrap().status, DiscoveryStatus::Branched);
    let before = h.events.last_cursor().await.unwrap();
    h.complete(tasks[1]).await;
    let resolved = h.discoveries.get_discovery(d.id).await.unwrap();
    assert_eq!(resolved.status, DiscoveryStatus::Resolved);
    let events = h.events_after(before).await;
    let done = events.iter().position(|e| matches!(e, Event::TaskCompleted { task_id, .. } if *task_id == tasks[1]));
    let res =
        events.iter().position(|e| matches!(e, Event::DiscoveryResolved { discovery_id } if *discovery_id == d.id));
    assert!(done.is_some() && res.is_some() && done < res, "task.completed then discovery.resolved: {events:?}");
    // Completing the source (not a branch task) resolves nothing else.
    h.tasks.complete(src.task.id, src.lease.token, Completion::default()).await.unwrap();
    assert_eq!(h.discoveries.list_discoveries(&DiscoveryFilter::default()).await.unwrap().len(), 1);
}

/// A report whose text matches a live discovery of the same spec (up to case, punctuation and
/// spacing) is recorded as its duplicate, links to its branch and spawns nothing.
pub async fn exact_duplicate_links_to_the_existing_branch_and_spawns_nothing(h: Harness) {
    let spec = SpecId::new();
    let (a, _) = h.running_source(spec, "TSK-001").await;
    let (b, _) = h.running_source(spec, "TSK-002").await;
    let first = h.report(bug(a.task.id, "Slugify drops digits"), BranchLimits::default()).await;
    let tasks_before = h.count_tasks().await;
    let before = h.events.last_cursor().await.unwrap();
    let again = bug(b.task.id, "slugify DROPS digits!");
    let again = NewDiscovery { description: "Slugify drops digits: details.".into(), ..again };
    let out = h.report(again.clone(), BranchLimits::default()).await;
    let RecordOutcome::Duplicate { of, covered_by, .. } = out else { panic!("{out:?}") };
    assert_eq!(of, DuplicateOf::Discovery(first.discovery()));
    assert_eq!(covered_by, first.spawned());
    assert_eq!(h.count_tasks().await, tasks_before, "nothing spawned");
    let stored = h.discoveries.get_discovery(again.id).await.unwrap();
    assert_eq!((stored.status, stored.duplicate_of), (DiscoveryStatus::Duplicate, Some(of)));
    assert!(stored.spawned.is_empty());
    let names: Vec<String> = h.events_after(before).await.iter().map(|e| e.name().to_owned()).collect();
    assert_eq!(names, ["discovery.recorded", "discovery.deduplicated"]);
    // Another spec's identical report is not a duplicate.
    let (c, _) = h.running_source(SpecId::new(), "TSK-001").await;
    assert!(matches!(
        h.report(bug(c.task.id, "Slugify drops digits"), BranchLimits::default()).await,
        RecordOutcome::Branched { .. }
    ));
}

/// A duplicate found by the caller (semantic dedup) is recorded as such and spawns nothing.
pub async fn duplicate_named_by_the_caller_is_recorded_and_spawns_nothing(h: Harness) {
    let spec = SpecId::new();
    let (a, _) = h.running_source(spec, "TSK-001").await;
    let tasks_before = h.count_tasks().await;
    let d = bug(a.task.id, "words differ entirely");
    let out = h
        .discoveries
        .record_discovery(DiscoveryReport {
            discovery: d.clone(),
            branch: default_branch(&a.task, &d),
            limits: BranchLimits::default(),
            duplicate_of: Some(DuplicateOf::Task(a.task.id)),
        })
        .await
        .unwrap();
    assert!(
        matches!(out, RecordOutcome::Duplicate { of: DuplicateOf::Task(t), ref covered_by, .. } if t == a.task.id && covered_by == &[a.task.id])
    );
    assert_eq!(h.count_tasks().await, tasks_before);
    assert_eq!(h.discoveries.get_discovery(d.id).await.unwrap().status, DiscoveryStatus::Duplicate);
}

/// Eight tasks report the same discovery at once: exactly one branch, seven duplicates of it.
pub async fn eight_concurrent_reports_of_the_same_discovery_create_exactly_one_branch(h: Harness) {
    let spec = SpecId::new();
    let mut sources = Vec::new();
    for i in 0..8 {
        sources.push(h.running_source(spec, &format!("TSK-{i:03}")).await.0);
    }
    let tasks_before = h.count_tasks().await;
    let mut joins = Vec::new();
    for s in &sources {
        let h = h.clone();
        let d = bug(s.task.id, "shared flaky fixture");
        joins.push(tokio::spawn(async move { h.report(d, BranchLimits::default()).await }));
    }
    let mut branched = Vec::new();
    let mut dups = Vec::new();
    for j in joins {
        match j.await.unwrap() {
            RecordOutcome::Branched { discovery, .. } => branched.push(discovery),
            RecordOutcome::Duplicate { of, .. } => dups.push(of),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(branched.len(), 1, "exactly one branch");
    assert_eq!(dups.len(), 7);
    assert!(dups.iter().all(|d| *d == DuplicateOf::Discovery(branched[0])));
    assert_eq!(h.count_tasks().await, tasks_before + 1);
}

/// The sixth branch from one source is refused with its reason, stored, and announced.
pub async fn per_source_cap_refuses_the_sixth_branch_and_keeps_the_refusal(h: Harness) {
    let (src, _) = h.running_source(SpecId::new(), "TSK-001").await;
    let limits = BranchLimits { cooldown: Duration::ZERO, ..BranchLimits::default() };
    for i in 0..5 {
        assert!(matches!(
            h.report(distinct(src.task.id, i, DiscoveryKind::Bug), limits).await,
            RecordOutcome::Branched { .. }
        ));
    }
    let tasks_before = h.count_tasks().await;
    let before = h.events.last_cursor().await.unwrap();
    let sixth = distinct(src.task.id, 5, DiscoveryKind::Bug);
    let out = h.report(sixth.clone(), limits).await;
    let RecordOutcome::Refused { refusal, .. } = out else { panic!("{out:?}") };
    assert_eq!(refusal.reason, RefusalReason::SourceCap);
    assert_eq!(h.count_tasks().await, tasks_before);
    let stored = h.discoveries.get_discovery(sixth.id).await.unwrap();
    assert_eq!(stored.status, DiscoveryStatus::Refused);
    assert_eq!(stored.refusal, Some(refusal.clone()));
    let events = h.events_after(before).await;
    assert!(
        matches!(
            &events[..],
            [Event::DiscoveryRecorded { .. }, Event::DiscoveryRefused { reason: RefusalReason::SourceCap, .. }]
        ),
        "{events:?}"
    );
}

/// A spec's branches are capped across all its tasks.
pub async fn per_spec_cap_refuses_branches_beyond_the_limit(h: Harness) {
    let spec = SpecId::new();
    let limits = BranchLimits { per_spec: 3, cooldown: Duration::ZERO, ..BranchLimits::default() };
    let mut outcomes = Vec::new();
    for i in 0..4 {
        let (src, _) = h.running_source(spec, &format!("TSK-{i}")).await;
        outcomes.push(h.report(distinct(src.task.id, i, DiscoveryKind::Bug), limits).await);
    }
    assert!(outcomes[..3].iter().all(|o| matches!(o, RecordOutcome::Branched { .. })));
    assert!(matches!(&outcomes[3], RecordOutcome::Refused { refusal, .. } if refusal.reason == RefusalReason::SpecCap));
    let (other, _) = h.running_source(SpecId::new(), "TSK-X").await;
    assert!(
        matches!(
            h.report(distinct(other.task.id, 9, DiscoveryKind::Bug), limits).await,
            RecordOutcome::Branched { .. }
        ),
        "another spec has its own cap"
    );
}

/// A branch of a branch of a branch is allowed at depth 3; the next level is refused.
pub async fn depth_cap_refuses_a_branch_nested_deeper_than_allowed(h: Harness) {
    let (src, _) = h.running_source(SpecId::new(), "TSK-001").await;
    let mut source = src.task.id;
    for depth in 1..=3u32 {
        let out = h.report(distinct(source, depth as usize, DiscoveryKind::Bug), BranchLimits::default()).await;
        let RecordOutcome::Branched { discovery, tasks, .. } = out else { panic!("depth {depth}: {out:?}") };
        assert_eq!(h.discoveries.get_discovery(discovery).await.unwrap().depth, depth);
        source = tasks[0];
        let c = h.claim_one(source).await;
        h.tasks.start(source, c.lease.token).await.unwrap();
    }
    let out = h.report(distinct(source, 4, DiscoveryKind::Bug), BranchLimits::default()).await;
    assert!(
        matches!(&out, RecordOutcome::Refused { refusal, .. } if refusal.reason == RefusalReason::Depth),
        "{out:?}"
    );
}

/// A source may branch again only after the cooldown, measured on the store's clock.
pub async fn cooldown_refuses_a_second_branch_until_it_has_passed(h: Harness) {
    let (src, _) = h.running_source(SpecId::new(), "TSK-001").await;
    assert!(matches!(
        h.report(distinct(src.task.id, 0, DiscoveryKind::Bug), BranchLimits::default()).await,
        RecordOutcome::Branched { .. }
    ));
    h.clock.advance(Duration::from_secs(59));
    let out = h.report(distinct(src.task.id, 1, DiscoveryKind::Bug), BranchLimits::default()).await;
    assert!(
        matches!(&out, RecordOutcome::Refused { refusal, .. } if refusal.reason == RefusalReason::Cooldown),
        "{out:?}"
    );
    h.clock.advance(Duration::from_secs(1));
    assert!(matches!(
        h.report(distinct(src.task.id, 2, DiscoveryKind::Bug), BranchLimits::default()).await,
        RecordOutcome::Branched { .. }
    ));
}

/// After three diagnostic branches of a spec failed in a row, diagnostics are refused; other
/// kinds still branch.
pub async fn consecutive_diagnostic_failures_refuse_further_diagnostics(h: Harness) {
    let spec = SpecId::new();
    let limits = BranchLimits { cooldown: Duration::ZERO, ..BranchLimits::default() };
    for i in 0..3 {
        let (src, _) = h.running_source(spec, &format!("TSK-{i}")).await;
        let out = h.report(distinct(src.task.id, i, DiscoveryKind::Stuck), limits).await;
        let t = out.spawned()[0];
        let c = h.claim_one(t).await;
        h.tasks.fail(t, c.lease.token, Failure::permanent("diagnosis failed")).await.unwrap();
    }
    let (src, _) = h.running_source(spec, "TSK-9").await;
    let out = h.report(distinct(src.task.id, 10, DiscoveryKind::NoResult), limits).await;
    assert!(
        matches!(&out, RecordOutcome::Refused { refusal, .. } if refusal.reason == RefusalReason::DiagnosticFailures),
        "{out:?}"
    );
    assert!(matches!(
        h.report(distinct(src.task.id, 11, DiscoveryKind::Bug), limits).await,
        RecordOutcome::Branched { .. }
    ));
}

/// A branch that cannot be inserted (an unknown dependency) fails the whole operation: no
/// discovery, no task, no edge, no event. So does an unknown source or an invalid report.
pub async fn failed_branch_is_atomic_and_leaves_nothing(h: Harness) {
    let (src, dependent) = h.running_source(SpecId::new(), "TSK-001").await;
    let tasks_before = h.count_tasks().await;
    let before = h.events.last_cursor().await.unwrap();
    let d = bug(src.task.id, "broken branch");
    let mut branch = default_branch(&src.task, &d);
    branch.push(NewTask::new("second").depends_on([TaskId::new()]));
    let err = h
        .discoveries
        .record_discovery(DiscoveryReport {
            discovery: d.clone(),
            branch,
            limits: BranchLimits::default(),
            duplicate_of: None,
        })
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::UnknownDependency { .. }), "{err:?}");
    assert!(matches!(h.discoveries.get_discovery(d.id).await, Err(StoreError::NotFound { .. })));
    assert_eq!(h.count_tasks().await, tasks_before);
    assert_eq!(h.events.last_cursor().await.unwrap(), before);
    assert_eq!(h.tasks.get_task(dependent).await.unwrap().dependencies, [src.task.id], "no edge added");
    let ghost = bug(TaskId::new(), "no such source");
    let err = h
        .discoveries
        .record_discovery(DiscoveryReport {
            discovery: ghost,
            branch: vec![NewTask::new("x")],
            limits: BranchLimits::default(),
            duplicate_of: None,
        })
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { kind: "task", .. }), "{err:?}");
    let no_done = NewDiscovery { done_definition: " ".into(), ..bug(src.task.id, "no done") };
    let err = h
        .discoveries
        .record_discovery(DiscoveryReport {
            discovery: no_done,
            branch: vec![NewTask::new("x")],
            limits: BranchLimits::default(),
            duplicate_of: None,
        })
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidInput(_)), "{err:?}");
    let empty = bug(src.task.id, "empty branch");
    let err = h
        .discoveries
        .record_discovery(DiscoveryReport {
            discovery: empty,
            branch: vec![],
            limits: BranchLimits::default(),
            duplicate_of: None,
        })
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidInput(_)), "{err:?}");
    assert_eq!(h.events.last_cursor().await.unwrap(), before);
}

/// Listing filters by spec, source, status, kind and time, oldest first.
pub async fn list_filters_by_spec_source_status_and_kind(h: Harness) {
    let spec = SpecId::new();
    let limits = BranchLimits { cooldown: Duration::ZERO, per_source: 1, ..BranchLimits::default() };
    let (a, _) = h.running_source(spec, "TSK-A").await;
    let (b, _) = h.running_source(SpecId::new(), "TSK-B").await;
    let d1 = h.report(distinct(a.task.id, 1, DiscoveryKind::Bug), limits).await.discovery();
    h.clock.advance(Duration::from_secs(1));
    let d2 = h.report(distinct(a.task.id, 2, DiscoveryKind::TechnicalDebt), limits).await.discovery();
    let d3 = h.report(distinct(b.task.id, 3, DiscoveryKind::Bug), limits).await.discovery();
    let ids = |v: Vec<crate::Discovery>| v.into_iter().map(|d| d.id).collect::<Vec<_>>();
    let all = h.discoveries.list_discoveries(&DiscoveryFilter::default()).await.unwrap();
    assert_eq!(ids(all), [d1, d2, d3]);
    let of_spec = DiscoveryFilter { spec_id: Some(spec), ..DiscoveryFilter::default() };
    assert_eq!(ids(h.discoveries.list_discoveries(&of_spec).await.unwrap()), [d1, d2]);
    let refused = DiscoveryFilter { statuses: vec![DiscoveryStatus::Refused], ..DiscoveryFilter::default() };
    assert_eq!(ids(h.discoveries.list_discoveries(&refused).await.unwrap()), [d2]);
    let bugs =
        DiscoveryFilter { kinds: vec![DiscoveryKind::Bug], source_task: Some(b.task.id), ..DiscoveryFilter::default() };
    assert_eq!(ids(h.discoveries.list_discoveries(&bugs).await.unwrap()), [d3]);
    let since = DiscoveryFilter {
        since: Some(crate::ports::clock::Clock::now(h.clock.as_ref())),
        ..DiscoveryFilter::default()
    };
    assert_eq!(ids(h.discoveries.list_discoveries(&since).await.unwrap()), [d2, d3]);
    assert!(matches!(
        h.discoveries.get_discovery(crate::ids::DiscoveryId::new()).await,
        Err(StoreError::NotFound { .. })
    ));
}

/// One step of a random report sequence.
#[derive(Debug, Clone)]
enum Op {
    /// The store's clock moves on this many seconds.
    Advance(u64),
    /// The oldest ready branch task of the spec ends badly (cancelled: diagnostic failure
    /// history).
    FailBranch,
    /// A source (by index among the planned sources and the branch tasks spawned so far)
    /// reports a discovery of a kind, numbered text (repeats are exact duplicates), blocking or
    /// not.
    Report { source: usize, kind: usize, text: usize, blocking: bool },
}

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    prop_oneof![
        1 => (0u64..90).prop_map(Op::Advance),
        1 => Just(Op::FailBranch),
        6 => (0usize..64, 0..DiscoveryKind::ALL.len(), 0usize..12, any::<bool>())
            .prop_map(|(source, kind, text, blocking)| Op::Report { source, kind, text, blocking }),
    ]
}

/// Runs one sequence against a fresh spec, checking online that a diagnostic branches only
/// under the failure limit, and afterwards, from what the store holds, every other limit.
async fn run_sequence(h: &Harness, ops: Vec<Op>, limits: BranchLimits) -> Result<(), String> {
    let spec = SpecId::new();
    // Planned sources (the store does not require a reporting source to hold a lease).
    let planned: Vec<NewTask> = (0..8)
        .map(|i| {
            let links = TaskLinks { spec_id: Some(spec), local_id: Some(format!("P-{i}")), ..TaskLinks::default() };
            NewTask::new(format!("planned {i}")).links(links).phase(WorkPhase::Implementation)
        })
        .collect();
    let mut sources: Vec<TaskId> = planned.iter().map(|t| t.id).collect();
    h.tasks.insert_tasks(planned).await.map_err(|e| e.to_string())?;
    let mut reports = 0;
    for (step, op) in ops.into_iter().enumerate() {
        match op {
            Op::Advance(s) => h.clock.advance(Duration::from_secs(s)),
            Op::FailBranch => {
                let filter =
                    TaskFilter { spec_id: Some(spec), states: vec![TaskState::Ready], ..TaskFilter::default() };
                let ready = h.tasks.list_tasks(&filter).await.map_err(|e| e.to_string())?;
                if let Some(t) = ready.iter().find(|t| t.links.parent_id.is_some()) {
                    // Cancelled counts as failed for the diagnostic limit.
                    h.tasks.cancel(t.id).await.map_err(|e| e.to_string())?;
                }
            }
            Op::Report { source, kind, text, blocking } => {
                let source = sources[source % sources.len()];
                let kind = DiscoveryKind::ALL[kind];
                let failures_before = if kind.is_diagnostic() { diagnostic_failures(h, spec).await } else { 0 };
                reports += 1;
                let out = h.report(distinct(source, text, kind).blocking(blocking), limits).await;
                if let RecordOutcome::Branched { tasks, .. } = out {
                    if kind.is_diagnostic() && failures_before >= limits.max_consecutive_diagnostic_failures {
                        return Err(format!("step {step}: a diagnostic branched after {failures_before} failures"));
                    }
                    sources.push(tasks[0]);
                }
            }
        }
    }
    let all = h
        .discoveries
        .list_discoveries(&DiscoveryFilter { spec_id: Some(spec), ..DiscoveryFilter::default() })
        .await
        .map_err(|e| e.to_string())?;
    if all.len() != reports {
        return Err(format!("{reports} reports but {} discoveries stored: one was dropped", all.len()));
    }
    let branched: Vec<_> = all.iter().filter(|d| !d.spawned.is_empty()).collect();
    if branched.len() > limits.per_spec as usize {
        return Err(format!("{} branches in the spec, cap {}", branched.len(), limits.per_spec));
    }
    let mut per_source = std::collections::HashMap::<TaskId, Vec<_>>::new();
    for d in &branched {
        if d.depth > limits.max_depth {
            return Err(format!("a branch at depth {}, max {}", d.depth, limits.max_depth));
        }
        per_source.entry(d.source_task).or_default().push(d.created_at);
    }
    for (s, mut times) in per_source {
        if times.len() > limits.per_source as usize {
            return Err(format!("source {s} branched {} times, cap {}", times.len(), limits.per_source));
        }
        times.sort();
        for w in times.windows(2) {
            if (w[1] - w[0]).to_std().unwrap_or_default() < limits.cooldown {
                return Err(format!("source {s} branched twice within the cooldown"));
            }
        }
    }
    let live: Vec<_> = all.iter().filter(|d| d.status.is_live()).map(|d| d.fingerprint.clone()).collect();
    if live.iter().collect::<HashSet<_>>().len() != live.len() {
        return Err("two live discoveries with the same text".into());
    }
    if all.iter().any(|d| d.status == DiscoveryStatus::Refused && d.refusal.is_none()) {
        return Err("a refusal without its reason".into());
    }
    Ok(())
}

/// A property test (proptest, shrinking to the shortest failing sequence): any random
/// sequence of reports — sources and the branches they spawn as new sources, every kind,
/// blocking or not, repeated texts, clock steps and failing branches — never exceeds any
/// limit of the defaults (5 per source, 50 per spec, depth 3, a 60 s cooldown on the store's
/// clock, 3 consecutive diagnostic failures), and every report is stored. `PROPTEST_CASES`
/// sets the number of sequences (default 6, so every backend stays fast in CI).
pub async fn random_report_sequences_never_exceed_any_limit(h: Harness) {
    use proptest::test_runner::{Config, TestCaseError, TestRunner};
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(6);
    let limits = BranchLimits::default();
    assert_eq!(
        (
            limits.per_source,
            limits.per_spec,
            limits.max_depth,
            limits.cooldown,
            limits.max_consecutive_diagnostic_failures
        ),
        (5, 50, 3, Duration::from_secs(60), 3),
        "the defaults under test"
    );
    let handle = tokio::runtime::Handle::current();
    let strategy = proptest::collection::vec(op(), 20..100);
    let result = tokio::task::block_in_place(|| {
        let mut runner = TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() });
        runner.run(&strategy, |ops| handle.block_on(run_sequence(&h, ops, limits)).map_err(TestCaseError::fail))
    });
    if let Err(e) = result {
        panic!("a report sequence exceeded a limit: {e}");
    }
}

/// Consecutive failed diagnostic branches of `spec`, newest first.
async fn diagnostic_failures(h: &Harness, spec: SpecId) -> u32 {
    let filter = DiscoveryFilter { spec_id: Some(spec), ..DiscoveryFilter::default() };
    let mut branches = Vec::new();
    for d in h.discoveries.list_discoveries(&filter).await.unwrap().into_iter().rev() {
        if d.kind.is_diagnostic() && !d.spawned.is_empty() {
            let mut states = Vec::new();
            for t in &d.spawned {
                states.push(h.state(*t).await);
            }
            branches.push(states);
        }
    }
    crate::branching::consecutive_failures(branches.iter().map(Vec::as_slice))
}

/// Runs the whole [`DiscoveryStore`](crate::DiscoveryStore) suite against an adapter. The
/// factory yields `Arc<S>` with `S: DiscoveryStore + TaskStore + EventStore`.
#[macro_export]
macro_rules! discovery_store_suite {
    ($factory:expr) => {
        $crate::__omoi_suite!(
            discovery_store,
            $factory,
            [
                branch_is_recorded_with_links_boosted_priority_and_events,
                blocking_discovery_holds_the_sources_dependents_until_the_branch_completes,
                blocking_discovery_requeues_its_source_behind_the_branch,
                non_blocking_discovery_runs_beside_the_source,
                discovery_is_resolved_when_its_last_branch_task_completes,
                exact_duplicate_links_to_the_existing_branch_and_spawns_nothing,
                duplicate_named_by_the_caller_is_recorded_and_spawns_nothing,
                eight_concurrent_reports_of_the_same_discovery_create_exactly_one_branch,
                per_source_cap_refuses_the_sixth_branch_and_keeps_the_refusal,
                per_spec_cap_refuses_branches_beyond_the_limit,
                depth_cap_refuses_a_branch_nested_deeper_than_allowed,
                cooldown_refuses_a_second_branch_until_it_has_passed,
                consecutive_diagnostic_failures_refuse_further_diagnostics,
                failed_branch_is_atomic_and_leaves_nothing,
                list_filters_by_spec_source_status_and_kind,
                random_report_sequences_never_exceed_any_limit,
            ]
        );
    };
}
