//! Applying a state-machine event to a stored task, and the fence every leased write passes
//! first. Every adapter changes a task's state through [`step`] and checks a presented token
//! with [`fenced`] (or [`fence`], when it holds only the lease columns).

use chrono::{DateTime, Utc};

use crate::error::StoreError;
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
}
