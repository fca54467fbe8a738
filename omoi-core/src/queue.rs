//! Rules every [`TaskStore`](crate::TaskStore) and [`SpecStore`](crate::SpecStore) adapter
//! applies the same way: validating a batch before insert, choosing each new task's initial
//! state, queue bands and aging, state changes and the lease fence ([`step`], [`fenced`]), a
//! lost attempt's retry or dead letter ([`lose_attempt`]), blocking and unblocking dependents
//! ([`Cascade`]), and validating a spec's task plan before sync. Adapters call these inside
//! their write transaction, so behaviour cannot drift between backends.

mod cascade;
mod transition;

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};

use crate::Priority;
use crate::dag::{Dag, DagError};
use crate::error::{StoreError, SyncConflict, TaskRef};
use crate::event::Event;
use crate::ids::{SpecId, TaskId, TicketId};
use crate::late_edges::{self, AddedDependencies};
use crate::ports::clock::add_duration;
use crate::ports::task_store::Failure;
use crate::spec::{PlannedTicket, SyncOutcome, SyncPlan};
use crate::state::{TaskEvent, TaskState};
use crate::task::{NewTask, Task, TaskLinks};

pub use self::cascade::{Cascade, block_dependent, blocks_dependents, quarantine_error, unblock_dependent};
pub use self::transition::{cancel, check_redrive, fence, fenced, redrive, release, step};

/// Validates `batch` against the store (`existing` gives the state of a stored task) and
/// returns each task's initial state, in batch order. Dedup keys are checked within the batch
/// here; the adapter checks them against stored non-terminal tasks.
///
/// Errors (nothing may be inserted): an invalid definition (`InvalidInput`), an id used twice
/// (`InvalidInput`) or already stored (`AlreadyExists`), a dedup key twice in the batch
/// (`DuplicateKey`), an unknown dependency (`UnknownDependency`) or a cycle (`Cycle`).
///
/// A task starts `Blocked` if a dependency is `Failed`, `Cancelled` or `Blocked`, `Ready` if
/// every dependency is `Completed`, and `Waiting` otherwise.
pub fn plan_batch(
    batch: &[NewTask],
    existing: impl Fn(&TaskId) -> Option<TaskState>,
) -> Result<Vec<TaskState>, StoreError> {
    let mut ids = HashSet::with_capacity(batch.len());
    let mut keys = HashSet::new();
    for t in batch {
        t.def
            .validate()
            .map_err(|m| StoreError::InvalidInput(format!("task {} ({:?}): {m}", t.id, short(&t.def.title))))?;
        if let Some(l) = &t.links.local_id {
            crate::validate::text("local_id", l, crate::validate::MAX_LABEL_BYTES)
                .map_err(|m| StoreError::InvalidInput(format!("task {}: {m}", t.id)))?;
        }
        if !ids.insert(t.id) {
            return Err(StoreError::InvalidInput(format!("task id {} appears twice in the batch", t.id)));
        }
        if existing(&t.id).is_some() {
            return Err(StoreError::AlreadyExists { kind: "task", id: t.id.to_string() });
        }
        if let Some(k) = &t.def.dedup_key
            && !keys.insert(k.as_str())
        {
            return Err(StoreError::DuplicateKey { key: k.clone(), existing: None });
        }
    }
    let dag =
        Dag::with_external(batch.iter().map(|t| (t.id, t.dependencies.iter().copied())), |d| existing(d).is_some())
            .map_err(|e| dag_error(e, TaskRef::Id))?;
    if let Some(path) = dag.find_cycle() {
        return Err(StoreError::Cycle { path: path.into_iter().map(TaskRef::Id).collect() });
    }
    let order = dag.topological_order().map_err(|e| dag_error(e, TaskRef::Id))?;
    let mut state: HashMap<TaskId, TaskState> = HashMap::with_capacity(batch.len());
    for id in order {
        let deps = dag.dependencies(&id).into_iter().copied().chain(dag.external_dependencies(&id).iter().copied());
        let dep_states: Vec<TaskState> =
            deps.map(|d| state.get(&d).copied().or_else(|| existing(&d)).unwrap_or(TaskState::Waiting)).collect();
        let s = if dep_states.iter().any(|s| blocks_dependents(*s)) {
            TaskState::Blocked
        } else if dep_states.iter().all(|s| *s == TaskState::Completed) {
            TaskState::Ready
        } else {
            TaskState::Waiting
        };
        state.insert(id, s);
    }
    Ok(batch.iter().map(|t| state[&t.id]).collect())
}

/// The queue band of `priority`: 0 = critical … 3 = low. Every adapter stores it with each
/// task and claims the lowest band first (see [`aged_band`]).
pub fn band(priority: Priority) -> u8 {
    3 - priority.rank()
}

/// The queue band (0 = critical … 3 = low) a ready task is claimed in: its priority's band,
/// one level higher when it has been claimable for longer than `aging_after` (since `run_at`).
/// Every adapter orders claims by this band, then `run_at`, then id.
pub fn aged_band(band: u8, run_at: DateTime<Utc>, now: DateTime<Utc>, aging_after: Option<std::time::Duration>) -> u8 {
    match aging_cutoff(now, aging_after) {
        Some(cutoff) if band > 0 && run_at <= cutoff => band - 1,
        _ => band,
    }
}

/// The latest `run_at` that counts as aged at `now` (`None` without aging).
pub fn aging_cutoff(now: DateTime<Utc>, aging_after: Option<std::time::Duration>) -> Option<DateTime<Utc>> {
    let after = chrono::Duration::from_std(aging_after?).ok()?;
    now.checked_sub_signed(after)
}

/// A title as quoted in messages: at most 80 characters.
fn short(title: &str) -> String {
    title.chars().take(80).collect()
}

/// Refuses a failure the store could not record (a NUL in its message, or one over
/// [`MAX_ERROR_BYTES`](crate::validate::MAX_ERROR_BYTES)); pass executor messages through
/// [`clean_error`](crate::validate::clean_error) first.
pub fn check_failure(failure: &Failure) -> Result<(), StoreError> {
    crate::validate::text("failure error", &failure.error, crate::validate::MAX_ERROR_BYTES)
        .map_err(StoreError::InvalidInput)
}

/// Refuses events the store could not record or read back (a NUL character in a string, JSON
/// nested too deep): every adapter checks appended events with this.
pub fn check_events(events: &[Event]) -> Result<(), StoreError> {
    for e in events {
        let v =
            serde_json::to_value(e).map_err(|err| StoreError::InvalidInput(format!("event {}: {err}", e.name())))?;
        crate::validate::json_shape(&format!("event {}", e.name()), &v).map_err(StoreError::InvalidInput)?;
    }
    Ok(())
}

fn dag_error<K: std::fmt::Debug>(e: DagError<K>, r: impl Fn(K) -> TaskRef) -> StoreError {
    match e {
        DagError::Cycle { path } => StoreError::Cycle { path: path.into_iter().map(r).collect() },
        DagError::UnknownReference { node, missing } => {
            StoreError::UnknownDependency { task: r(node), missing: r(missing) }
        }
        DagError::DuplicateNode(k) => StoreError::InvalidInput(format!("{} appears twice", r(k))),
    }
}

/// Validates a spec's task plan and returns the tasks' local ids in dependency order.
///
/// Errors: an empty or repeated local id, a task naming an unknown ticket, an invalid task
/// definition (`InvalidInput`); a dependency on an unknown local id (`UnknownDependency`); a
/// dependency cycle (`Cycle`, naming the local ids).
pub fn plan_sync(plan: &SyncPlan) -> Result<Vec<String>, StoreError> {
    let mut tickets = HashSet::new();
    for t in &plan.tickets {
        if t.local_id.trim().is_empty() {
            return Err(StoreError::InvalidInput("a ticket has an empty local id".into()));
        }
        if !tickets.insert(t.local_id.as_str()) {
            return Err(StoreError::InvalidInput(format!("ticket {} appears twice in the plan", t.local_id)));
        }
    }
    for t in &plan.tasks {
        if t.local_id.trim().is_empty() {
            return Err(StoreError::InvalidInput(format!("task {:?} has an empty local id", t.def.title)));
        }
        if let Some(ticket) = &t.ticket
            && !tickets.contains(ticket.as_str())
        {
            return Err(StoreError::InvalidInput(format!("{} names unknown ticket {ticket}", t.local_id)));
        }
        t.def.validate().map_err(|m| StoreError::InvalidInput(format!("{}: {m}", t.local_id)))?;
    }
    let dag = Dag::new(plan.tasks.iter().map(|t| (t.local_id.clone(), t.depends_on.clone())))
        .map_err(|e| dag_error(e, TaskRef::Local))?;
    dag.topological_order().map_err(|e| dag_error(e, TaskRef::Local))
}

/// Why a task's current attempt was lost.
#[derive(Debug, Clone, PartialEq)]
pub enum AttemptLoss {
    /// The holder reported a failure.
    Failed(Failure),
    /// The lease lapsed, or its holder failed (reclaimed without the holder's word).
    LeaseLost,
}

/// Where a lost attempt leaves the task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossOutcome {
    /// Back in the queue, claimable at `run_at`.
    Retrying {
        /// When it becomes claimable.
        run_at: DateTime<Utc>,
    },
    /// Dead-lettered: the adapter must now block the task's dependents.
    DeadLettered,
}

/// Applies the loss of `task`'s current attempt, the rule every adapter follows: the lease is
/// taken off; the failure's usage and message are recorded; while the failure is retryable and
/// attempts remain, the task goes back to `Ready` after its backoff (event `task.retry_scheduled`,
/// or `task.lease_expired` when the lease was lost), else it is dead-lettered (`task.failed`).
/// Returns the outcome and the event to record. `task` must be leased.
pub fn lose_attempt(
    task: &mut Task,
    loss: AttemptLoss,
    now: DateTime<Utc>,
) -> Result<(LossOutcome, Event), StoreError> {
    let lease = task.lease.take();
    let (error, retryable) = match &loss {
        AttemptLoss::Failed(f) => {
            task.usage += f.usage;
            (f.error.clone(), f.retryable)
        }
        AttemptLoss::LeaseLost => {
            (format!("lease lost (holder {})", lease.map(|l| l.holder.to_string()).unwrap_or_default()), true)
        }
    };
    task.last_error = Some(error.clone());
    let retry = retryable && task.attempts < task.def.max_attempts;
    let event = if retry { TaskEvent::Retry } else { TaskEvent::Fail };
    task.state = task.state.apply(event).map_err(|e| StoreError::transition("task", task.id, e))?;
    task.updated_at = now;
    if !retry {
        return Ok((LossOutcome::DeadLettered, Event::TaskFailed { task_id: task.id, attempts: task.attempts, error }));
    }
    // Whole microseconds: the precision every adapter stores, so `run_at` round-trips exactly.
    let delay = task.def.backoff.delay_for(task.id, task.attempts);
    let delay = std::time::Duration::from_micros(u64::try_from(delay.as_micros()).unwrap_or(u64::MAX));
    task.run_at = add_duration(now, delay);
    let event = match (loss, lease) {
        (AttemptLoss::LeaseLost, Some(l)) => {
            Event::TaskLeaseExpired { task_id: task.id, holder: l.holder, token: l.token }
        }
        _ => Event::TaskRetryScheduled { task_id: task.id, attempt: task.attempts, run_at: task.run_at, error },
    };
    Ok((LossOutcome::Retrying { run_at: task.run_at }, event))
}

/// A stored task of the spec, as [`draft_sync`] sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncedTask {
    /// Its id.
    pub id: TaskId,
    /// Its stored dependencies.
    pub dependencies: Vec<TaskId>,
    /// Its state.
    pub state: TaskState,
}

/// What a sync has to create, given what the store already holds for the spec.
#[derive(Debug)]
pub struct SyncDraft<'p> {
    /// Every local id mapped to its (existing or new) id, with the counts of what is new.
    pub outcome: SyncOutcome,
    /// Tickets to create, with their new ids.
    pub new_tickets: Vec<(TicketId, &'p PlannedTicket)>,
    /// Tasks to create, in dependency order, with dependencies and links resolved to ids. The
    /// adapter still validates them against the store with [`plan_batch`] before inserting.
    pub new_tasks: Vec<NewTask>,
    /// Dependencies the plan adds to stored tasks that have not started, applied after
    /// `new_tasks` are inserted (see [`late_edges`]).
    pub added_dependencies: Vec<AddedDependencies>,
}

/// Validates `plan` ([`plan_sync`]) and maps it onto the spec's stored tickets and tasks
/// (`existing_ticket`/`existing_task` look a local id up): local ids already stored keep their
/// ids and are not created again, which is what makes sync idempotent; new ones get fresh ids
/// and their dependencies point at existing or new tasks. A change is never silently ignored:
/// a dependency the plan adds to a stored task is applied while that task is `Waiting` or
/// `Ready` (it waits for the new dependency unless that completed already), and refused with
/// [`StoreError::SyncConflict`] naming the task once it started, finished or is blocked, or
/// when the added dependency already failed; a dependency the plan drops is always refused.
/// Every adapter materializes this draft.
pub fn draft_sync<'p>(
    spec: SpecId,
    plan: &'p SyncPlan,
    existing_ticket: impl Fn(&str) -> Option<TicketId>,
    existing_task: impl Fn(&str) -> Option<SyncedTask>,
) -> Result<SyncDraft<'p>, StoreError> {
    let order = plan_sync(plan)?;
    let mut outcome = SyncOutcome::default();
    let mut new_tickets = Vec::new();
    for t in &plan.tickets {
        let id = existing_ticket(&t.local_id).unwrap_or_else(|| {
            let id = TicketId::new();
            new_tickets.push((id, t));
            id
        });
        outcome.tickets.insert(t.local_id.clone(), id);
    }
    let by_local: HashMap<&str, &crate::spec::PlannedTask> =
        plan.tasks.iter().map(|t| (t.local_id.as_str(), t)).collect();
    let mut new_tasks = Vec::new();
    let mut added_dependencies = Vec::new();
    for local in order {
        let planned = by_local[local.as_str()];
        if let Some(stored) = existing_task(&local) {
            let wanted: Vec<(String, TaskId)> =
                planned.depends_on.iter().map(|d| (d.clone(), outcome.tasks[d])).collect();
            let added: Vec<(String, TaskId)> =
                wanted.iter().filter(|(_, id)| !stored.dependencies.contains(id)).cloned().collect();
            let removed: Vec<String> = stored
                .dependencies
                .iter()
                .filter(|id| !wanted.iter().any(|(_, w)| w == *id))
                .map(|id| {
                    outcome.tasks.iter().find(|(_, v)| *v == id).map_or_else(|| id.to_string(), |(l, _)| l.clone())
                })
                .collect();
            let conflict = |reason: String| {
                StoreError::SyncConflict(Box::new(SyncConflict {
                    task: local.clone(),
                    id: stored.id,
                    state: stored.state,
                    added: added.iter().map(|(l, _)| l.clone()).collect(),
                    removed: removed.clone(),
                    reason,
                }))
            };
            if !removed.is_empty() {
                return Err(conflict("a synced task's dependencies can be added to, never removed".into()));
            }
            // A dependency stored before this sync has its state; a new one has not completed.
            let states: Vec<(TaskId, Option<TaskState>)> =
                added.iter().map(|(l, id)| (*id, existing_task(l).map(|t| t.state))).collect();
            match late_edges::for_resync(stored.id, stored.state, &stored.dependencies, &states) {
                Ok(Some(change)) => added_dependencies.push(change),
                Ok(None) => {}
                Err(refusal) => return Err(conflict(refusal.to_string())),
            }
            outcome.tasks.insert(local, stored.id);
            continue;
        }
        let task = NewTask {
            id: TaskId::new(),
            def: planned.def.clone(),
            links: TaskLinks {
                spec_id: Some(spec),
                ticket_id: planned.ticket.as_ref().map(|t| outcome.tickets[t]),
                parent_id: None,
                local_id: Some(local.clone()),
            },
            // Dependency order: every dependency is already mapped.
            dependencies: planned.depends_on.iter().map(|d| outcome.tasks[d]).collect(),
            run_at: None,
        };
        outcome.tasks.insert(local, task.id);
        new_tasks.push(task);
    }
    outcome.tickets_created = new_tickets.len();
    outcome.tasks_created = new_tasks.len();
    outcome.dependencies_added = added_dependencies.iter().map(|c| c.added.len()).sum();
    Ok(SyncDraft { outcome, new_tickets, new_tasks, added_dependencies })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Priority;
    use crate::spec::{PlannedTask, PlannedTicket};
    use crate::task::TaskDefinition;

    #[test]
    fn initial_states_follow_dependency_states() {
        let done = TaskId::new();
        let dead = TaskId::new();
        let a = NewTask::new("a").depends_on([done]);
        let b = NewTask::new("b").depends_on([a.id]);
        let c = NewTask::new("c").depends_on([dead]);
        let d = NewTask::new("d").depends_on([c.id]);
        let lookup = |id: &TaskId| {
            if *id == done {
                Some(TaskState::Completed)
            } else if *id == dead {
                Some(TaskState::Failed)
            } else {
                None
            }
        };
        let states = plan_batch(&[d.clone(), a.clone(), b, c], lookup).unwrap();
        assert_eq!(states, [TaskState::Blocked, TaskState::Ready, TaskState::Waiting, TaskState::Blocked]);
    }

    #[test]
    fn batch_errors_name_the_culprit() {
        let a = NewTask::new("a");
        let b = NewTask::new("b").depends_on([a.id]);
        let mut a2 = a.clone();
        a2.dependencies.push(b.id);
        match plan_batch(&[a2, b.clone()], |_| None).unwrap_err() {
            StoreError::Cycle { path } => assert_eq!(path.len(), 3),
            e => panic!("{e}"),
        }
        let ghost = TaskId::new();
        let c = NewTask::new("c").depends_on([ghost]);
        assert!(matches!(
            plan_batch(std::slice::from_ref(&c), |_| None).unwrap_err(),
            StoreError::UnknownDependency { missing: TaskRef::Id(m), .. } if m == ghost
        ));
        let k1 = NewTask::new("k1").dedup_key("k");
        let k2 = NewTask::new("k2").dedup_key("k");
        assert!(matches!(
            plan_batch(&[k1, k2], |_| None).unwrap_err(),
            StoreError::DuplicateKey { existing: None, .. }
        ));
        assert!(matches!(plan_batch(&[a.clone(), a.clone()], |_| None).unwrap_err(), StoreError::InvalidInput(_)));
        assert!(matches!(
            plan_batch(std::slice::from_ref(&a), |_| Some(TaskState::Ready)).unwrap_err(),
            StoreError::AlreadyExists { .. }
        ));
    }

    fn task(local: &str, deps: &[&str]) -> PlannedTask {
        PlannedTask {
            local_id: local.into(),
            ticket: Some("TKT-001".into()),
            depends_on: deps.iter().map(|d| d.to_string()).collect(),
            def: TaskDefinition { title: format!("do {local}"), ..TaskDefinition::default() },
        }
    }

    fn plan(tasks: Vec<PlannedTask>) -> SyncPlan {
        SyncPlan {
            tickets: vec![PlannedTicket {
                local_id: "TKT-001".into(),
                title: "t".into(),
                description: String::new(),
                priority: Priority::High,
                requirements: vec![],
            }],
            tasks,
        }
    }

    fn leased(max_attempts: u32) -> Task {
        let new = NewTask::new("t").max_attempts(max_attempts);
        let now = chrono::DateTime::<Utc>::UNIX_EPOCH;
        Task {
            id: new.id,
            def: new.def,
            links: new.links,
            dependencies: vec![],
            state: TaskState::Running,
            attempts: 1,
            run_at: now,
            lease: Some(crate::task::Lease {
                holder: crate::AgentId::new(),
                token: crate::task::FencingToken(1),
                expires_at: now,
            }),
            result: None,
            last_error: None,
            usage: crate::Usage::default(),
            created_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn a_lost_attempt_retries_with_backoff_in_whole_microseconds_or_dead_letters() {
        let now = chrono::DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::nanoseconds(1_000);
        let mut t = leased(2);
        let holder = t.lease.unwrap().holder;
        let (out, ev) = lose_attempt(&mut t, AttemptLoss::LeaseLost, now).unwrap();
        let LossOutcome::Retrying { run_at } = out else { panic!("{out:?}") };
        assert_eq!(run_at.timestamp_subsec_nanos() % 1_000, 0, "whole microseconds");
        assert!(run_at > now);
        assert!(matches!(ev, Event::TaskLeaseExpired { holder: h, .. } if h == holder));
        assert_eq!((t.state, t.lease), (TaskState::Ready, None));
        assert!(t.last_error.as_deref().unwrap().starts_with("lease lost"));

        let mut t = leased(2);
        let (out, ev) = lose_attempt(&mut t, AttemptLoss::Failed(Failure::permanent("bad input")), now).unwrap();
        assert_eq!(out, LossOutcome::DeadLettered);
        assert!(matches!(ev, Event::TaskFailed { attempts: 1, .. }));
        assert_eq!(t.state, TaskState::Failed);

        let mut t = leased(1);
        let (out, _) = lose_attempt(&mut t, AttemptLoss::Failed(Failure::retryable("flaky")), now).unwrap();
        assert_eq!(out, LossOutcome::DeadLettered, "no attempt left");
    }

    #[test]
    fn sync_draft_reuses_stored_local_ids_and_wires_new_tasks_to_them() {
        let p = plan(vec![task("TSK-002", &["TSK-001"]), task("TSK-001", &[])]);
        let spec = SpecId::new();
        let first = draft_sync(spec, &p, |_| None, |_| None).unwrap();
        assert_eq!((first.outcome.tickets_created, first.outcome.tasks_created), (1, 2));
        assert_eq!(first.new_tasks[0].links.local_id.as_deref(), Some("TSK-001"), "dependency order");
        assert_eq!(first.new_tasks[1].dependencies, vec![first.new_tasks[0].id]);
        assert_eq!(first.new_tasks[1].links.ticket_id, Some(first.new_tickets[0].0));
        let stored_ticket = first.new_tickets[0].0;
        let stored_001 = first.new_tasks[0].id;
        let again = draft_sync(
            spec,
            &p,
            |l| (l == "TKT-001").then_some(stored_ticket),
            |l| {
                (l == "TSK-001").then_some(SyncedTask {
                    id: stored_001,
                    dependencies: Vec::new(),
                    state: TaskState::Ready,
                })
            },
        )
        .unwrap();
        assert_eq!((again.outcome.tickets_created, again.outcome.tasks_created), (0, 1));
        assert_eq!(again.new_tasks[0].dependencies, vec![stored_001], "new task wired to the stored one");
        assert_eq!(again.outcome.tasks["TSK-001"], stored_001);
    }

    #[test]
    fn sync_plan_is_ordered_and_checked() {
        let order = plan_sync(&plan(vec![task("TSK-002", &["TSK-001"]), task("TSK-001", &[])])).unwrap();
        assert_eq!(order, ["TSK-001", "TSK-002"]);
        let err = plan_sync(&plan(vec![task("TSK-001", &["TSK-009"])])).unwrap_err();
        assert_eq!(err.to_string(), "TSK-001 depends on unknown TSK-009");
        let err = plan_sync(&plan(vec![task("TSK-001", &["TSK-002"]), task("TSK-002", &["TSK-001"])])).unwrap_err();
        assert_eq!(err.to_string(), "dependency cycle: TSK-001 -> TSK-002 -> TSK-001");
        let mut bad = task("TSK-001", &[]);
        bad.ticket = Some("TKT-404".into());
        assert!(plan_sync(&plan(vec![bad])).unwrap_err().to_string().contains("unknown ticket TKT-404"));
    }
}
