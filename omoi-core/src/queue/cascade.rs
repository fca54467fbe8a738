//! How one task's fate spreads to its dependents. When a task can no longer complete (dead-
//! lettered, cancelled, quarantined) every transitive dependent still `Waiting` becomes
//! `Blocked`; when it is redriven, every transitive dependent that nothing else blocks waits
//! again. Every adapter walks the dependents with [`Cascade`] and decides each one with
//! [`block_dependent`] / [`unblock_dependent`].

use std::collections::VecDeque;

use chrono::{DateTime, Utc};

use crate::error::StoreError;
use crate::event::Event;
use crate::ids::TaskId;
use crate::state::{TaskEvent, TaskState};
use crate::task::Task;

use super::step;

/// Whether a dependency in `state` keeps its dependents from ever running: `Failed`,
/// `Cancelled` or `Blocked`. A new task with such a dependency starts `Blocked`; a blocked task
/// with one stays blocked.
pub fn blocks_dependents(state: TaskState) -> bool {
    matches!(state, TaskState::Failed | TaskState::Cancelled | TaskState::Blocked)
}

/// The breadth-first walk over a task's transitive dependents: visit the direct dependents of
/// each [`next_cause`](Self::next_cause), call [`reached`](Self::reached) for those that
/// changed (their own dependents are visited next), and [`finish`](Self::finish) with the
/// changed tasks in the order they changed.
///
/// ```
/// # use omoi_core::queue::Cascade;
/// # use omoi_core::TaskId;
/// let (root, child) = (TaskId::new(), TaskId::new());
/// let mut walk = Cascade::from(root);
/// assert_eq!(walk.next_cause(), Some(root));
/// walk.reached(child);
/// assert_eq!(walk.next_cause(), Some(child));
/// assert_eq!(walk.next_cause(), None);
/// assert_eq!(walk.finish(), vec![child]);
/// ```
#[derive(Debug)]
pub struct Cascade {
    pending: VecDeque<TaskId>,
    reached: Vec<TaskId>,
}

impl Cascade {
    /// A walk starting at `root` (which is not itself among the reached tasks).
    pub fn from(root: TaskId) -> Self {
        Self { pending: VecDeque::from([root]), reached: Vec::new() }
    }

    /// The next task whose direct dependents are to be visited; `None` when the walk is done.
    pub fn next_cause(&mut self) -> Option<TaskId> {
        self.pending.pop_front()
    }

    /// Records that `dependent` changed: it is reported by [`finish`](Self::finish) and its own
    /// dependents are visited later. A task changes at most once per walk (blocking and
    /// unblocking each move it out of the state they look for), so the walk ends.
    pub fn reached(&mut self, dependent: TaskId) {
        self.reached.push(dependent);
        self.pending.push_back(dependent);
    }

    /// The tasks that changed, in the order they changed.
    pub fn finish(self) -> Vec<TaskId> {
        self.reached
    }
}

/// The error an adapter records when it dead-letters a stored task row it cannot decode
/// (written by something else, or by an older version) instead of failing a claim or a sweep;
/// it then blocks the task's dependents like any dead letter. `reason` is the decoding error.
pub fn quarantine_error(reason: &str) -> String {
    crate::validate::clean_error(&format!("quarantined: the stored row cannot be read: {reason}"))
}

/// Blocks `dependent` because `cause` can no longer complete: a `Waiting` task becomes
/// `Blocked` (returns its `task.blocked` event); a task in any other state is left alone
/// (`None`) — a ready, running or finished task does not wait on `cause` any more.
pub fn block_dependent(dependent: &mut Task, cause: TaskId, now: DateTime<Utc>) -> Result<Option<Event>, StoreError> {
    if dependent.state != TaskState::Waiting {
        return Ok(None);
    }
    step(dependent, TaskEvent::DependencyFailed, now)?;
    Ok(Some(Event::TaskBlocked { task_id: dependent.id, blocked_by: cause }))
}

/// Lets a `Blocked` `dependent` wait again when none of its dependencies blocks it any more
/// ([`blocks_dependents`]; `dependency_state` gives a dependency's stored state, `None` if it
/// is gone). Returns its `task.unblocked` event, or `None` when it is not blocked or stays
/// blocked. The adapter recounts the dependent's unmet dependencies as it stores them.
pub fn unblock_dependent(
    dependent: &mut Task,
    dependency_state: impl Fn(&TaskId) -> Option<TaskState>,
    now: DateTime<Utc>,
) -> Result<Option<Event>, StoreError> {
    if dependent.state != TaskState::Blocked
        || dependent.dependencies.iter().any(|d| dependency_state(d).is_some_and(blocks_dependents))
    {
        return Ok(None);
    }
    step(dependent, TaskEvent::DependencyRestored, now)?;
    Ok(Some(Event::TaskUnblocked { task_id: dependent.id }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::NewTask;

    fn task(state: TaskState, deps: &[TaskId]) -> Task {
        Task::inserted(NewTask::new("t").depends_on(deps.iter().copied()), state, DateTime::<Utc>::UNIX_EPOCH)
    }

    #[test]
    fn only_waiting_dependents_are_blocked() {
        let now = DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::seconds(1);
        let cause = TaskId::new();
        let mut waiting = task(TaskState::Waiting, &[cause]);
        let ev = block_dependent(&mut waiting, cause, now).unwrap();
        assert!(matches!(ev, Some(Event::TaskBlocked { blocked_by, .. }) if blocked_by == cause));
        assert_eq!((waiting.state, waiting.updated_at), (TaskState::Blocked, now));
        for s in [TaskState::Ready, TaskState::Running, TaskState::Completed, TaskState::Blocked] {
            let mut t = task(s, &[cause]);
            assert_eq!(block_dependent(&mut t, cause, now).unwrap(), None, "{s}");
            assert_eq!(t.state, s);
        }
    }

    #[test]
    fn a_blocked_dependent_waits_again_only_when_nothing_blocks_it() {
        let now = DateTime::<Utc>::UNIX_EPOCH;
        let (a, b) = (TaskId::new(), TaskId::new());
        let mut t = task(TaskState::Blocked, &[a, b]);
        let other_dead = |id: &TaskId| Some(if *id == a { TaskState::Ready } else { TaskState::Failed });
        assert_eq!(unblock_dependent(&mut t, other_dead, now).unwrap(), None);
        assert_eq!(t.state, TaskState::Blocked);
        let fine = |id: &TaskId| (*id == a).then_some(TaskState::Ready);
        assert!(matches!(unblock_dependent(&mut t, fine, now).unwrap(), Some(Event::TaskUnblocked { .. })));
        assert_eq!(t.state, TaskState::Waiting);
        assert_eq!(unblock_dependent(&mut t, fine, now).unwrap(), None, "no longer blocked");
    }

    #[test]
    fn a_quarantine_error_names_the_reason_and_is_storable() {
        let e = quarantine_error("bad json\0 at 3");
        assert!(e.starts_with("quarantined: the stored row cannot be read: bad json"), "{e}");
        crate::validate::text("error", &e, crate::validate::MAX_ERROR_BYTES).unwrap();
    }

    #[test]
    fn the_walk_visits_reached_tasks_breadth_first() {
        let ids: Vec<TaskId> = (0..4).map(|_| TaskId::new()).collect();
        let mut walk = Cascade::from(ids[0]);
        assert_eq!(walk.next_cause(), Some(ids[0]));
        walk.reached(ids[1]);
        walk.reached(ids[2]);
        assert_eq!(walk.next_cause(), Some(ids[1]));
        walk.reached(ids[3]);
        assert_eq!(walk.next_cause(), Some(ids[2]));
        assert_eq!(walk.next_cause(), Some(ids[3]));
        assert_eq!(walk.next_cause(), None);
        assert_eq!(walk.finish(), ids[1..]);
    }
}
