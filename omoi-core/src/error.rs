//! The error type shared by the storage ports.

use std::fmt;

use crate::ids::{AgentId, TaskId};
use crate::state::AnyTransitionError;
use crate::task::FencingToken;

/// A boxed error source, for the `source` of backend errors (never a driver type in a signature).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A task named either by id or by its local id in a spec's task plan.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TaskRef {
    /// A stored (or about to be stored) task.
    Id(TaskId),
    /// A task plan's local id (`TSK-001`).
    Local(String),
}

impl fmt::Display for TaskRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskRef::Id(id) => write!(f, "task {id}"),
            TaskRef::Local(l) => write!(f, "{l}"),
        }
    }
}

/// Errors of [`TaskStore`](crate::TaskStore), [`SpecStore`](crate::SpecStore),
/// [`AgentStore`](crate::AgentStore), [`EventStore`](crate::EventStore) and
/// [`MemoryStore`](crate::MemoryStore).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No such entity.
    #[error("{kind} {id} not found")]
    NotFound {
        /// Entity kind (`"task"`, `"spec"`, …).
        kind: &'static str,
        /// Its id.
        id: String,
    },
    /// The entity's state machine refused the change.
    #[error("{kind} {id}: {source}")]
    InvalidTransition {
        /// Entity kind.
        kind: &'static str,
        /// Its id.
        id: String,
        /// The refused transition.
        source: AnyTransitionError,
    },
    /// The caller's lease was taken over (or ended): fencing rejected the operation.
    #[error("stale lease on task {task}: token {presented} is not the current lease")]
    StaleLease {
        /// The task.
        task: TaskId,
        /// The token the caller presented.
        presented: FencingToken,
    },
    /// A batch of tasks would form a dependency cycle. Nothing was inserted.
    #[error("dependency cycle: {}", path.iter().map(ToString::to_string).collect::<Vec<_>>().join(" -> "))]
    Cycle {
        /// The cycle, first task repeated at the end.
        path: Vec<TaskRef>,
    },
    /// A task depends on a task that does not exist. Nothing was inserted.
    #[error("{task} depends on unknown {missing}")]
    UnknownDependency {
        /// The task holding the reference.
        task: TaskRef,
        /// The unknown reference.
        missing: TaskRef,
    },
    /// A dedup key is already held by a non-terminal task (or twice in the batch). Nothing was inserted.
    #[error("dedup key {key:?} is already held{}", existing.map(|t| format!(" by task {t}")).unwrap_or_default())]
    DuplicateKey {
        /// The key.
        key: String,
        /// The stored task holding it (`None` if the clash is inside the batch).
        existing: Option<TaskId>,
    },
    /// An entity with this id already exists.
    #[error("{kind} {id} already exists")]
    AlreadyExists {
        /// Entity kind.
        kind: &'static str,
        /// Its id.
        id: String,
    },
    /// A heartbeat's sequence number does not exceed the last accepted one.
    #[error("stale heartbeat from agent {agent}: seq {got} does not exceed {last}")]
    StaleHeartbeat {
        /// The agent.
        agent: AgentId,
        /// Last accepted sequence number.
        last: u64,
        /// The rejected one.
        got: u64,
    },
    /// An embedding has the wrong number of dimensions.
    #[error("embedding has {got} dimensions, expected {expected}")]
    DimensionMismatch {
        /// Dimensions the store holds.
        expected: usize,
        /// Dimensions given.
        got: usize,
    },
    /// The request is malformed; the message says how.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The backend cannot be reached or is overloaded; retrying later may succeed.
    #[error("{backend} unavailable: {message}")]
    Unavailable {
        /// Backend name (`"postgres"`, `"sqlite"`, …).
        backend: &'static str,
        /// What happened (connection strings redacted).
        message: String,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },
    /// The backend failed in a way retrying will not fix.
    #[error("{backend} error: {message}")]
    Backend {
        /// Backend name.
        backend: &'static str,
        /// What happened.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },
    /// The adapter does not implement this operation.
    #[error("{operation} is not supported by the {backend} store")]
    Unsupported {
        /// The operation.
        operation: &'static str,
        /// Backend name.
        backend: &'static str,
    },
    /// A re-synced plan changes the dependencies of an already-synced task in a way that cannot
    /// be applied (it drops one, or adds one to a task that already started). Nothing was
    /// synced: the change is refused, never ignored.
    #[error("{0}")]
    SyncConflict(Box<SyncConflict>),
}

impl StoreError {
    /// Whether retrying the same call later may succeed (backend unavailable, contention).
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. })
    }

    /// A not-found error for `id`.
    pub fn not_found(kind: &'static str, id: impl fmt::Display) -> Self {
        StoreError::NotFound { kind, id: id.to_string() }
    }

    /// A refused transition of entity `id`.
    pub fn transition(kind: &'static str, id: impl fmt::Display, source: impl Into<AnyTransitionError>) -> Self {
        StoreError::InvalidTransition { kind, id: id.to_string(), source: source.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{TaskEvent, TaskState, TransitionError};

    #[test]
    fn only_unavailable_is_retryable() {
        let e = StoreError::Unavailable { backend: "postgres", message: "down".into(), source: None };
        assert!(e.is_retryable());
        assert!(!StoreError::not_found("task", 1).is_retryable());
        assert!(!StoreError::InvalidInput("x".into()).is_retryable());
    }

    #[test]
    fn messages_name_what_went_wrong() {
        let e = StoreError::Cycle {
            path: vec![TaskRef::Local("TSK-1".into()), TaskRef::Local("TSK-2".into()), TaskRef::Local("TSK-1".into())],
        };
        assert_eq!(e.to_string(), "dependency cycle: TSK-1 -> TSK-2 -> TSK-1");
        let id = TaskId::new();
        let t =
            StoreError::transition("task", id, TransitionError { from: TaskState::Completed, event: TaskEvent::Claim });
        assert!(t.to_string().contains("`claim` is not allowed from `completed`"));
    }
}

/// The details of [`StoreError::SyncConflict`]: which synced task a re-synced plan changes, and
/// why the change cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the plan changes the dependencies of already-synced task {task} ({id}, {state}): added [{}], removed [{}]; {reason}",
    added.join(", "),
    removed.join(", ")
)]
pub struct SyncConflict {
    /// The task's local id in the plan.
    pub task: String,
    /// Its stored id.
    pub id: crate::ids::TaskId,
    /// Its state.
    pub state: crate::state::TaskState,
    /// Local ids the plan adds to its dependencies.
    pub added: Vec<String>,
    /// Local ids (or stored ids) the plan drops from them.
    pub removed: Vec<String>,
    /// Why the change cannot be applied.
    pub reason: String,
}
