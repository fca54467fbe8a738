//! The checks after several workers drained one task graph together: every task completed
//! exactly once, and no attempt began before all of its dependencies had completed.
//!
//! Dependency order is checked with event cursors, which follow commit order on every store
//! (an event store's promise), not with timestamps: processes and hosts read their own clocks.

use std::collections::HashMap;

use crate::{Cursor, Event, EventStore, TaskId};

/// What [`check_drain`] saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DrainReport {
    /// Tasks completed (each exactly once).
    pub completed: usize,
    /// `task.claimed` and `task.started` events checked against the dependencies.
    pub starts_checked: usize,
    /// `task.lease_expired` events seen.
    pub leases_expired: usize,
}

/// Reads the event log after `from` and panics (naming the task) unless every task of `deps`
/// (task → its dependencies) completed exactly once and every claim or start of a task came
/// after the completion of each of its dependencies. `what` is added to each message (e.g. a
/// seed to replay).
pub async fn check_drain(
    events: &dyn EventStore,
    from: Cursor,
    deps: &HashMap<TaskId, Vec<TaskId>>,
    what: &str,
) -> DrainReport {
    let mut log = Vec::new();
    let mut cursor = from;
    loop {
        let page = events.read_events(cursor, 5000).await.expect("read the event log");
        let Some(last) = page.last() else { break };
        cursor = last.cursor;
        log.extend(page);
    }
    let mut completed: HashMap<TaskId, Cursor> = HashMap::new();
    let mut starts: Vec<(TaskId, Cursor)> = Vec::new();
    let mut report = DrainReport::default();
    for e in &log {
        match &e.event {
            Event::TaskCompleted { task_id, .. } => {
                assert!(completed.insert(*task_id, e.cursor).is_none(), "task {task_id} completed twice ({what})");
            }
            Event::TaskClaimed { task_id, .. } | Event::TaskStarted { task_id, .. } => {
                starts.push((*task_id, e.cursor))
            }
            Event::TaskLeaseExpired { .. } => report.leases_expired += 1,
            _ => {}
        }
    }
    for task in deps.keys() {
        assert!(completed.contains_key(task), "task {task} never completed ({what})");
    }
    assert_eq!(completed.len(), deps.len(), "every task completed exactly once ({what})");
    for (task, at) in &starts {
        for d in deps.get(task).map(Vec::as_slice).unwrap_or_default() {
            let done = completed[d];
            assert!(
                *at > done,
                "task {task} claimed or started (cursor {at}) before its dependency {d} completed ({done}) ({what})"
            );
        }
    }
    report.completed = completed.len();
    report.starts_checked = starts.len();
    report
}
