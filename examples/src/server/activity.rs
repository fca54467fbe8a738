//! A read model of the event log kept by the server: each task's own events (claims,
//! attempts, agent steps…), each agent's latest alignment and the tasks it finished. It follows
//! the store's log from the start (so every process writing to the store is seen) and answers
//! the task-detail, agent and cost queries without scanning the log.

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt;
use omoi_core::{AgentId, Cursor, Event, EventStore, StoredEvent, Subject, TaskId};
use parking_lot::RwLock;
use tokio_util::sync::CancellationToken;

/// Events kept per task (the oldest are dropped beyond this).
pub(crate) const MAX_EVENTS_PER_TASK: usize = 500;
/// Latest events kept per event name, for `GET /api/events/recent`.
pub(crate) const RECENT_PER_NAME: usize = 100;

#[derive(Default)]
struct Inner {
    tasks: HashMap<TaskId, Vec<StoredEvent>>,
    alignment: HashMap<AgentId, f64>,
    finished_by: HashMap<AgentId, Vec<TaskId>>,
    recent: HashMap<&'static str, std::collections::VecDeque<StoredEvent>>,
    last: Cursor,
}

/// The read model; cheap to clone.
#[derive(Clone, Default)]
pub struct Activity {
    inner: Arc<RwLock<Inner>>,
}

impl std::fmt::Debug for Activity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let i = self.inner.read();
        f.debug_struct("Activity").field("tasks", &i.tasks.len()).field("last", &i.last).finish()
    }
}

impl Activity {
    /// Follows `events` from the start until `stop`; reconnects after a store error.
    pub fn follow(&self, events: Arc<dyn EventStore>, stop: CancellationToken) {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                let from = me.inner.read().last;
                let stream = tokio::select! {
                    () = stop.cancelled() => return,
                    s = events.subscribe(from) => s,
                };
                match stream {
                    Ok(mut s) => loop {
                        tokio::select! {
                            () = stop.cancelled() => return,
                            next = s.next() => match next {
                                Some(Ok(e)) => me.apply(e),
                                Some(Err(e)) => { tracing::warn!(error = %e, "activity: event stream failed"); break }
                                None => break,
                            },
                        }
                    },
                    Err(e) => tracing::warn!(error = %e, "activity: cannot subscribe"),
                }
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(std::time::Duration::from_millis(500)) => {}
                }
            }
        });
    }

    /// Records one event.
    pub fn apply(&self, e: StoredEvent) {
        let mut i = self.inner.write();
        if e.cursor <= i.last {
            return;
        }
        i.last = e.cursor;
        match &e.event {
            Event::MonitorAgentAnalysed { agent_id, alignment: Some(a), .. } => {
                i.alignment.insert(*agent_id, *a);
            }
            Event::TaskCompleted { task_id, holder } => {
                i.finished_by.entry(*holder).or_default().push(*task_id);
            }
            _ => {}
        }
        let recent = i.recent.entry(e.event.name()).or_default();
        if recent.len() >= RECENT_PER_NAME {
            recent.pop_front();
        }
        recent.push_back(e.clone());
        let task = match (&e.event, e.event.subject()) {
            (Event::TaskCreated { .. }, _) => None,
            (_, Subject::Task(t)) => Some(t),
            (Event::InterventionRecorded { task_id: Some(t), .. }, _) => Some(*t),
            _ => None,
        };
        if let Some(t) = task {
            let list = i.tasks.entry(t).or_default();
            if list.len() >= MAX_EVENTS_PER_TASK {
                list.remove(0);
            }
            list.push(e);
        }
    }

    /// The cursor of the last event seen.
    pub fn last(&self) -> Cursor {
        self.inner.read().last
    }

    /// The events about task `id` (not its creation), oldest first.
    pub fn task_events(&self, id: TaskId) -> Vec<StoredEvent> {
        self.inner.read().tasks.get(&id).cloned().unwrap_or_default()
    }

    /// The latest events named `names` (at most [`RECENT_PER_NAME`] per name), newest first.
    pub fn recent(&self, names: &[&str]) -> Vec<StoredEvent> {
        let i = self.inner.read();
        let mut out: Vec<StoredEvent> =
            names.iter().filter_map(|n| i.recent.get(n)).flat_map(|q| q.iter().cloned()).collect();
        out.sort_by_key(|e| std::cmp::Reverse(e.cursor));
        out
    }

    /// The guardian's latest alignment score for `agent`.
    pub fn alignment(&self, agent: AgentId) -> Option<f64> {
        self.inner.read().alignment.get(&agent).copied()
    }

    /// The tasks `agent` completed.
    pub fn finished_by(&self, agent: AgentId) -> Vec<TaskId> {
        self.inner.read().finished_by.get(&agent).cloned().unwrap_or_default()
    }
}
