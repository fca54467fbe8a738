//! Applying a state-machine event to a stored task, the fence every leased write passes first,
//! and the state changes that are more than one event (release, cancel, redrive). Every adapter
//! changes a task's state through these and checks a presented token with [`fenced`] (or
//! [`fence`], when it holds only the lease columns).

use chrono::{DateTime, Utc};

use crate::error::StoreError;
use crate::event::Event;
use crate::ids::TaskId;
use crate::state::{TaskEvent, TaskState};
use crate::task::{FencingToken, Lease, Task};

/// Moves `task` through `event` at `now`: its state becomes the one [`TaskState::apply`] gives
/// and `updated_at` becomes `now`. A transition the table does not allow is
/// [`StoreError::InvalidTransition`] naming the task, and leaves `task` unchanged.
pub fn step(task: &mut Task, event: TaskEvent, now: DateTime<Utc>) -> Result<TaskState, StoreError> {
    let next = task.state.apply(event).map_err(|e| StoreError::transition("task", task.id, e))?;
    task.state = next;
    task.updated_at = now;
    Ok(next)
}

/// The lease `token` names if it is `task`'s current lease, else [`StoreError::StaleLease`].
pub fn fenced(task: &Task, token: FencingToken) -> Result<Lease, StoreError> {
    fence(task.id, task.state, task.lease, token)
}

/// [`fenced`] over the parts of a task it reads: a token is current only while the task is
/// leased (`Claimed` or `Running`) and the token is its lease's.
pub fn fence(id: TaskId, state: TaskState, lease: Option<Lease>, token: FencingToken) -> Result<Lease, StoreError> {
    match lease {
        Some(l) if l.token == token && state.is_leased() => Ok(l),
        _ => Err(StoreError::StaleLease { task: id, presented: token }),
    }
}

/// Gives a leased task back to the queue without using an attempt (its holder, whose `lease`
/// the adapter has fenced, did not run it): `Ready` at `now`, lease off, one attempt returned.
/// Returns the `task.released` event.
pub fn release(task: &mut Task, lease: Lease, now: DateTime<Utc>) -> Result<Event, StoreError> {
    step(task, TaskEvent::Release, now)?;
    task.lease = None;
    task.attempts = task.attempts.saturating_sub(1);
    task.run_at = now;
    Ok(Event::TaskReleased { task_id: task.id, holder: lease.holder })
}

/// Cancels `task` (lease off) and returns the `task.cancelled` event; the adapter then blocks
/// its dependents ([`Cascade`](super::Cascade)).
pub fn cancel(task: &mut Task, now: DateTime<Utc>) -> Result<Event, StoreError> {
    step(task, TaskEvent::Cancel, now)?;
    task.lease = None;
    Ok(Event::TaskCancelled { task_id: task.id })
}

/// Refuses a redrive the state table does not allow, before the adapter checks `task`'s dedup
/// key against the other live tasks.
pub fn check_redrive(task: &Task) -> Result<(), StoreError> {
    task.state.apply(TaskEvent::Redrive).map(drop).map_err(|e| StoreError::transition("task", task.id, e))
}

/// Puts a dead-lettered (`Failed`) task back in the queue: `Ready` at `now` with its attempts
/// reset. Returns the `task.redriven` event; the adapter then unblocks its dependents.
pub fn redrive(task: &mut Task, now: DateTime<Utc>) -> Result<Event, StoreError> {
    step(task, TaskEvent::Redrive, now)?;
    task.attempts = 0;
    task.run_at = now;
    Ok(Event::TaskRedriven { task_id: task.id })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AgentId;
    use crate::task::NewTask;

    fn task(state: TaskState, token: Option<u64>) -> Task {
        let new = NewTask::new("t");
        let epoch = DateTime::<Utc>::UNIX_EPOCH;
        Task {
            id: new.id,
            def: new.def,
            links: new.links,
            dependencies: vec![],
            state,
            attempts: 1,
            run_at: epoch,
            lease: token.map(|t| Lease { holder: AgentId::new(), token: FencingToken(t), expires_at: epoch }),
            result: None,
            last_error: None,
            usage: crate::Usage::default(),
            created_at: epoch,
            updated_at: epoch,
        }
    }

    #[test]
    fn step_follows_the_table_and_stamps_the_time_or_changes_nothing() {
        let now = DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::seconds(5);
        let mut t = task(TaskState::Claimed, Some(1));
        assert_eq!(step(&mut t, TaskEvent::Start, now).unwrap(), TaskState::Running);
        assert_eq!((t.state, t.updated_at), (TaskState::Running, now));
        let mut w = task(TaskState::Waiting, None);
        let err = step(&mut w, TaskEvent::Complete, now).unwrap_err();
        assert!(matches!(err, StoreError::InvalidTransition { .. }), "{err}");
        assert_eq!((w.state, w.updated_at), (TaskState::Waiting, DateTime::<Utc>::UNIX_EPOCH));
    }

    #[test]
    fn only_the_current_token_of_a_leased_task_passes_the_fence() {
        let t = task(TaskState::Running, Some(7));
        assert_eq!(fenced(&t, FencingToken(7)).unwrap().token, FencingToken(7));
        let stale = |t: &Task, token| matches!(fenced(t, FencingToken(token)), Err(StoreError::StaleLease { .. }));
        assert!(stale(&t, 6), "an older token");
        assert!(stale(&task(TaskState::Ready, Some(7)), 7), "a task no longer leased");
        assert!(stale(&task(TaskState::Claimed, None), 7), "no lease at all");
    }

    #[test]
    fn release_returns_the_attempt_and_redrive_resets_them() {
        let now = DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::seconds(9);
        let mut t = task(TaskState::Running, Some(3));
        let lease = fenced(&t, FencingToken(3)).unwrap();
        assert!(
            matches!(release(&mut t, lease, now).unwrap(), Event::TaskReleased { holder, .. } if holder == lease.holder)
        );
        assert_eq!((t.state, t.lease, t.attempts, t.run_at), (TaskState::Ready, None, 0, now));

        let mut t = task(TaskState::Running, Some(3));
        assert!(matches!(cancel(&mut t, now).unwrap(), Event::TaskCancelled { .. }));
        assert_eq!((t.state, t.lease), (TaskState::Cancelled, None));
        let mut t = task(TaskState::Failed, None);
        t.attempts = 3;
        check_redrive(&t).unwrap();
        assert!(matches!(redrive(&mut t, now).unwrap(), Event::TaskRedriven { .. }));
        assert_eq!((t.state, t.attempts, t.run_at), (TaskState::Ready, 0, now));
        assert!(matches!(check_redrive(&t), Err(StoreError::InvalidTransition { .. })), "a ready task");
    }
}
