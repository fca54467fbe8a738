//! Tickets: groups of tasks whose status is derived from those tasks, never set by hand.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::common::{ExecutionMode, Priority};
use crate::ids::{SpecId, TicketId};
use crate::state::TaskState;
use crate::string_enum;

string_enum! {
    /// Board column of a ticket.
    pub enum TicketStatus: "ticket status" {
        /// No task has started.
        Backlog => "backlog",
        /// Work is under way.
        Building => "building",
        /// Every building task is done; validation is outstanding.
        Testing => "testing",
        /// Every task is done.
        Done => "done",
    }
}

/// A stored ticket with its derived status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Ticket {
    /// Its id.
    pub id: TicketId,
    /// The spec it belongs to.
    pub spec_id: Option<SpecId>,
    /// Its local id in the spec's plan.
    pub local_id: Option<String>,
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// Priority.
    pub priority: Priority,
    /// Requirement ids it addresses.
    pub requirements: Vec<String>,
    /// Column, derived from the tasks by [`TicketStatus::derive`].
    pub status: TicketStatus,
    /// Overlay: some task is `Blocked` or dead-lettered.
    pub blocked: bool,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

impl TicketStatus {
    /// Derives `(status, blocked)` from the ticket's tasks, given as `(mode, state)` pairs.
    /// Cancelled tasks are ignored; validation tasks decide `Testing`.
    pub fn derive(tasks: &[(ExecutionMode, TaskState)]) -> (TicketStatus, bool) {
        let live: Vec<_> = tasks.iter().filter(|(_, s)| *s != TaskState::Cancelled).collect();
        let blocked = live.iter().any(|(_, s)| matches!(s, TaskState::Blocked | TaskState::Failed));
        let done = |s: &TaskState| *s == TaskState::Completed;
        let status = if live.is_empty() {
            if tasks.is_empty() { TicketStatus::Backlog } else { TicketStatus::Done }
        } else if live.iter().all(|(_, s)| done(s)) {
            TicketStatus::Done
        } else if live.iter().any(|(m, _)| *m == ExecutionMode::Validation)
            && live.iter().filter(|(m, _)| *m != ExecutionMode::Validation).all(|(_, s)| done(s))
        {
            TicketStatus::Testing
        } else if live.iter().any(|(_, s)| !matches!(s, TaskState::Waiting | TaskState::Ready | TaskState::Blocked)) {
            TicketStatus::Building
        } else {
            TicketStatus::Backlog
        };
        (status, blocked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ExecutionMode::*;
    use TaskState::*;

    #[test]
    fn status_follows_the_tasks() {
        assert_eq!(TicketStatus::derive(&[]), (TicketStatus::Backlog, false));
        assert_eq!(TicketStatus::derive(&[(Implementation, Ready), (Validation, Waiting)]).0, TicketStatus::Backlog);
        assert_eq!(TicketStatus::derive(&[(Implementation, Running), (Validation, Waiting)]).0, TicketStatus::Building);
        assert_eq!(TicketStatus::derive(&[(Implementation, Completed), (Validation, Ready)]).0, TicketStatus::Testing);
        assert_eq!(TicketStatus::derive(&[(Implementation, Completed), (Validation, Completed)]).0, TicketStatus::Done);
        assert_eq!(
            TicketStatus::derive(&[(Implementation, Completed), (Exploration, Cancelled)]).0,
            TicketStatus::Done
        );
    }

    #[test]
    fn blocked_is_an_overlay_not_a_column() {
        let (status, blocked) = TicketStatus::derive(&[(Implementation, Failed), (Validation, Blocked)]);
        assert!(blocked);
        assert_eq!(status, TicketStatus::Building);
    }
}
