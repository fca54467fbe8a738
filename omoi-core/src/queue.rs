//! Rules every [`TaskStore`](crate::TaskStore) and [`SpecStore`](crate::SpecStore) adapter
//! applies the same way: validating a batch before insert, choosing each new task's initial
//! state, and validating a spec's task plan before sync. Adapters call these inside their
//! write transaction, so behaviour cannot drift between backends.

use std::collections::{HashMap, HashSet};

use crate::dag::{Dag, DagError};
use crate::error::{StoreError, TaskRef};
use crate::ids::TaskId;
use crate::spec::SyncPlan;
use crate::state::TaskState;
use crate::task::NewTask;

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
        t.def.validate().map_err(|m| StoreError::InvalidInput(format!("task {} ({:?}): {m}", t.id, t.def.title)))?;
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
        let s = if dep_states.iter().any(|s| matches!(s, TaskState::Failed | TaskState::Cancelled | TaskState::Blocked))
        {
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
