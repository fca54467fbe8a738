//! Dependencies added to a stored task after it was inserted, the rule every adapter applies:
//! a re-synced plan's new edge on a task that has not started ([`for_resync`]), and a blocking
//! discovery's branch that its source is re-queued behind ([`for_requeue`]). The adapter writes
//! the edges, grows the task's unmet count by [`AddedDependencies::unmet`], moves it to
//! [`AddedDependencies::to`] (off its lease and out of the ready queue) and appends
//! [`AddedDependencies::event`], in the transaction that decided it.

use crate::error::StoreError;
use crate::event::Event;
use crate::ids::TaskId;
use crate::state::{TaskEvent, TaskState, TransitionError};

/// Dependencies to add to one stored task, and the state it moves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddedDependencies {
    /// The task.
    pub task: TaskId,
    /// The new dependencies (none already held).
    pub added: Vec<TaskId>,
    /// How many of `added` have not completed: the task's unmet count grows by this.
    pub unmet: usize,
    /// Its state before.
    pub from: TaskState,
    /// Its state after: `Waiting` when `unmet > 0` (or when it was re-queued), else unchanged.
    pub to: TaskState,
}

impl AddedDependencies {
    /// The `task.dependencies_added` event.
    pub fn event(&self) -> Event {
        Event::TaskDependenciesAdded { task_id: self.task, added: self.added.clone(), from: self.from, to: self.to }
    }

    /// Whether the task leaves the ready queue.
    pub fn leaves_ready_queue(&self) -> bool {
        self.from == TaskState::Ready && self.to != TaskState::Ready
    }

    /// Whether the task loses its lease (re-queued while claimed or running) and gets back the
    /// attempt it was using, as a release does.
    pub fn drops_lease(&self) -> bool {
        self.from.is_leased()
    }

    /// The error of an adapter that found the task no longer in `from` when it wrote.
    pub fn moved_meanwhile(&self) -> StoreError {
        StoreError::transition(
            "task",
            self.task,
            TransitionError { from: self.from, event: TaskEvent::DependencyAdded },
        )
    }
}

/// Why dependencies cannot be added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LateEdgeRefusal {
    /// The task already started (or finished, or is blocked): its dependencies are settled.
    Started(TaskState),
    /// An added dependency already failed or was cancelled: the task would be blocked at once.
    DeadDependency(TaskId),
}

impl std::fmt::Display for LateEdgeRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LateEdgeRefusal::Started(s) => {
                write!(f, "the task is {s}; only a waiting or ready task can gain dependencies")
            }
            LateEdgeRefusal::DeadDependency(d) => write!(f, "the added dependency {d} already failed or was cancelled"),
        }
    }
}

/// `(dependency, its state)`; `None` for a task inserted in the same write (never completed).
pub type DependencyState = (TaskId, Option<TaskState>);

fn count_unmet(added: &[DependencyState]) -> Result<usize, LateEdgeRefusal> {
    let mut unmet = 0;
    for (id, state) in added {
        match state {
            Some(TaskState::Completed) => {}
            Some(TaskState::Failed | TaskState::Cancelled) => return Err(LateEdgeRefusal::DeadDependency(*id)),
            _ => unmet += 1,
        }
    }
    Ok(unmet)
}

fn fresh(held: &[TaskId], added: &[DependencyState]) -> Vec<DependencyState> {
    let mut out: Vec<DependencyState> = Vec::with_capacity(added.len());
    for a in added {
        if !held.contains(&a.0) && !out.iter().any(|o| o.0 == a.0) {
            out.push(*a);
        }
    }
    out
}

/// A re-synced plan adds `added` to a stored task in `state` that holds `held`: applied while
/// the task is `Waiting` or `Ready` (a `Ready` task waits again when an added dependency has
/// not completed), refused once it started, finished or is blocked, and refused when an added
/// dependency already failed or was cancelled. `Ok(None)` when nothing is new.
pub fn for_resync(
    task: TaskId,
    state: TaskState,
    held: &[TaskId],
    added: &[DependencyState],
) -> Result<Option<AddedDependencies>, LateEdgeRefusal> {
    let added = fresh(held, added);
    if added.is_empty() {
        return Ok(None);
    }
    if !matches!(state, TaskState::Waiting | TaskState::Ready) {
        return Err(LateEdgeRefusal::Started(state));
    }
    let unmet = count_unmet(&added)?;
    let to = if unmet > 0 && state == TaskState::Ready {
        state.apply(TaskEvent::DependencyAdded).map_err(|_| LateEdgeRefusal::Started(state))?
    } else {
        state
    };
    Ok(Some(AddedDependencies { task, added: added.iter().map(|a| a.0).collect(), unmet, from: state, to }))
}

/// A blocking discovery re-queues its source (`Claimed` or `Running`) behind `branch` (tasks
/// inserted in the same write): the source drops its lease without using an attempt and
/// waits for the branch, then runs again. Refused unless the source holds a lease.
pub fn for_requeue(task: TaskId, state: TaskState, branch: &[TaskId]) -> Result<AddedDependencies, LateEdgeRefusal> {
    if !state.is_leased() {
        return Err(LateEdgeRefusal::Started(state));
    }
    let to = state.apply(TaskEvent::DependencyAdded).map_err(|_| LateEdgeRefusal::Started(state))?;
    let added: Vec<DependencyState> = fresh(&[], &branch.iter().map(|b| (*b, None)).collect::<Vec<_>>());
    Ok(AddedDependencies { task, unmet: added.len(), added: added.iter().map(|a| a.0).collect(), from: state, to })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resync_edge_makes_a_ready_task_wait_and_leaves_a_waiting_one_waiting() {
        let (t, a, b) = (TaskId::new(), TaskId::new(), TaskId::new());
        let ready = for_resync(t, TaskState::Ready, &[], &[(a, None)]).unwrap().unwrap();
        assert_eq!((ready.from, ready.to, ready.unmet), (TaskState::Ready, TaskState::Waiting, 1));
        assert!(ready.leaves_ready_queue());
        let done = for_resync(t, TaskState::Ready, &[], &[(a, Some(TaskState::Completed))]).unwrap().unwrap();
        assert_eq!((done.to, done.unmet), (TaskState::Ready, 0), "a completed dependency is met already");
        let waiting = for_resync(t, TaskState::Waiting, &[b], &[(a, Some(TaskState::Running)), (b, None)]);
        let waiting = waiting.unwrap().unwrap();
        assert_eq!((waiting.added.clone(), waiting.to), (vec![a], TaskState::Waiting), "held edges are not repeated");
        assert_eq!(for_resync(t, TaskState::Waiting, &[a], &[(a, None)]).unwrap(), None);
    }

    #[test]
    fn resync_edge_is_refused_once_started_or_on_a_dead_dependency() {
        let (t, a) = (TaskId::new(), TaskId::new());
        for s in [TaskState::Claimed, TaskState::Running, TaskState::Completed, TaskState::Failed, TaskState::Blocked] {
            assert_eq!(for_resync(t, s, &[], &[(a, None)]), Err(LateEdgeRefusal::Started(s)));
        }
        assert_eq!(
            for_resync(t, TaskState::Waiting, &[], &[(a, Some(TaskState::Cancelled))]),
            Err(LateEdgeRefusal::DeadDependency(a))
        );
    }

    #[test]
    fn requeue_drops_the_lease_and_waits_for_the_branch() {
        let (t, a) = (TaskId::new(), TaskId::new());
        let r = for_requeue(t, TaskState::Running, &[a, a]).unwrap();
        assert_eq!((r.to, r.unmet, r.added.len()), (TaskState::Waiting, 1, 1));
        assert!(r.drops_lease() && !r.leaves_ready_queue());
        assert!(for_requeue(t, TaskState::Ready, &[a]).is_err());
    }
}
