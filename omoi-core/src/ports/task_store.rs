//! The `TaskStore` port: a durable, dependency-aware task queue with leases.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Usage;
use crate::error::StoreError;
use crate::ids::{AgentId, SpecId, TaskId, TicketId};
use crate::state::TaskState;
use crate::task::{FencingToken, Lease, NewTask, Task};

/// What a worker asks for when claiming.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClaimRequest {
    /// The claiming agent; it becomes the lease holder.
    pub holder: AgentId,
    /// Capabilities the worker has; a task is eligible if it requires a subset of them.
    pub capabilities: Vec<String>,
    /// At most this many tasks.
    pub limit: usize,
    /// Lease duration.
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// Also marks the claimed tasks `Running` (`Claimed → Running`, event `task.started` after
    /// `task.claimed`) in the same step, saving the separate [`TaskStore::start`] call.
    #[serde(default)]
    pub start: bool,
    /// A ready task that has waited longer than this (since its `run_at`) is ordered one
    /// priority level higher (`queue.aging_after`; [`queue::aged_band`](crate::queue::aged_band)).
    #[serde(default, with = "humantime_serde")]
    pub aging_after: Option<Duration>,
}

impl ClaimRequest {
    /// A request for up to `limit` tasks with a lease of `lease_ttl`, without capabilities.
    pub fn new(holder: AgentId, limit: usize, lease_ttl: Duration) -> Self {
        Self { holder, capabilities: Vec::new(), limit, lease_ttl, start: false, aging_after: None }
    }

    /// The same request, ordering tasks that waited longer than `after` one level higher.
    pub fn aging_after(mut self, after: Option<Duration>) -> Self {
        self.aging_after = after;
        self
    }

    /// The same request, marking the claimed tasks `Running` at once.
    pub fn and_start(mut self) -> Self {
        self.start = true;
        self
    }

    /// The same request offering `caps`.
    pub fn with_capabilities(mut self, caps: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.capabilities = caps.into_iter().map(Into::into).collect();
        self
    }
}

/// A claimed task and its lease.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedTask {
    /// The task as of the claim (state `Claimed`, or `Running` with [`ClaimRequest::start`]).
    pub task: Task,
    /// The lease to present on every later call.
    pub lease: Lease,
}

/// A successful result.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    /// Result payload (at most [`MAX_TASK_PAYLOAD_BYTES`](crate::task::MAX_TASK_PAYLOAD_BYTES)).
    pub result: Value,
    /// Model usage of the attempt.
    pub usage: Usage,
}

/// A failed attempt.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    /// What went wrong.
    pub error: String,
    /// `false` dead-letters the task at once, whatever attempts remain.
    pub retryable: bool,
    /// Model usage of the attempt.
    pub usage: Usage,
}

impl Failure {
    /// A retryable failure.
    pub fn retryable(error: impl Into<String>) -> Self {
        Self { error: error.into(), retryable: true, usage: Usage::default() }
    }

    /// A permanent failure.
    pub fn permanent(error: impl Into<String>) -> Self {
        Self { error: error.into(), retryable: false, usage: Usage::default() }
    }
}

/// What [`TaskStore::fail`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum FailOutcome {
    /// Back in the queue, claimable at `run_at`.
    Retrying {
        /// When it becomes claimable.
        run_at: chrono::DateTime<chrono::Utc>,
    },
    /// Dead-lettered; these transitive dependents became `Blocked`.
    DeadLettered {
        /// Newly blocked tasks.
        blocked: Vec<TaskId>,
    },
}

/// Which tasks [`TaskStore::list_tasks`] returns. Results are ordered by id (creation order).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TaskFilter {
    /// Only these states (empty = any).
    pub states: Vec<TaskState>,
    /// Only this spec's tasks.
    pub spec_id: Option<SpecId>,
    /// Only this ticket's tasks.
    pub ticket_id: Option<TicketId>,
    /// Only children of this task.
    pub parent_id: Option<TaskId>,
    /// Only tasks with a larger id (keyset pagination).
    pub after: Option<TaskId>,
    /// At most this many.
    pub limit: Option<usize>,
}

impl TaskFilter {
    /// Whether `task` passes every condition except `after` and `limit`.
    pub fn matches(&self, task: &Task) -> bool {
        (self.states.is_empty() || self.states.contains(&task.state))
            && self.spec_id.is_none_or(|s| task.links.spec_id == Some(s))
            && self.ticket_id.is_none_or(|t| task.links.ticket_id == Some(t))
            && self.parent_id.is_none_or(|p| task.links.parent_id == Some(p))
    }
}

/// Number of tasks per state.
pub type TaskCounts = BTreeMap<TaskState, u64>;

/// A durable task queue with dependencies, leases and fencing.
///
/// Every state change goes through [`TaskState::apply`] and appends its event to the same
/// store's event log in the same transaction.
#[async_trait]
pub trait TaskStore: Send + Sync {
    /// Inserts a batch atomically. Dependencies may name tasks of the batch or stored tasks.
    /// Rejects, inserting nothing: invalid definitions, duplicate ids, unknown dependencies,
    /// cycles (the error names the path) and dedup-key clashes with non-terminal tasks.
    /// A task starts `Ready` when every dependency completed, `Blocked` if one failed or was
    /// cancelled, else `Waiting`.
    async fn insert_tasks(&self, batch: Vec<NewTask>) -> Result<Vec<TaskId>, StoreError>;

    /// Leases up to `limit` claimable tasks (`Ready`, `run_at` passed, capabilities matched,
    /// concurrency keys under their limit) in queue order: priority, then `run_at`, then id.
    /// Each claim uses an attempt and issues a new fencing token. Exactly once per lease.
    async fn claim(&self, request: &ClaimRequest) -> Result<Vec<ClaimedTask>, StoreError>;

    /// Extends a lease to `now + ttl`. Fails with `StaleLease` if the token is not current.
    async fn renew_lease(&self, id: TaskId, token: FencingToken, ttl: Duration) -> Result<Lease, StoreError>;

    /// Extends several leases to `now + ttl` in one step; one result per item, in order
    /// (`StaleLease` for a token that is not current, `NotFound` for an unknown task).
    async fn renew_leases(
        &self,
        leases: &[(TaskId, FencingToken)],
        ttl: Duration,
    ) -> Result<Vec<Result<Lease, StoreError>>, StoreError> {
        let mut out = Vec::with_capacity(leases.len());
        for &(id, token) in leases {
            match self.renew_lease(id, token, ttl).await {
                Err(e) if e.is_retryable() => return Err(e),
                r => out.push(r),
            }
        }
        Ok(out)
    }

    /// Marks a claimed task `Running` (fenced).
    async fn start(&self, id: TaskId, token: FencingToken) -> Result<(), StoreError>;

    /// Completes a leased task (fenced) and, in the same transaction, releases dependents whose
    /// last dependency this was. Returns the released tasks.
    async fn complete(
        &self,
        id: TaskId,
        token: FencingToken,
        completion: Completion,
    ) -> Result<Vec<TaskId>, StoreError>;

    /// Completes several tasks; one result per item, in order. Adapters batch the writes.
    async fn complete_many(
        &self,
        items: Vec<(TaskId, FencingToken, Completion)>,
    ) -> Result<Vec<Result<Vec<TaskId>, StoreError>>, StoreError> {
        let mut out = Vec::with_capacity(items.len());
        for (id, token, completion) in items {
            out.push(self.complete(id, token, completion).await);
        }
        Ok(out)
    }

    /// Records a failed attempt (fenced): back to `Ready` after the task's backoff if attempts
    /// remain and the failure is retryable, else dead-lettered with dependents `Blocked`.
    async fn fail(&self, id: TaskId, token: FencingToken, failure: Failure) -> Result<FailOutcome, StoreError>;

    /// Gives a leased task back without using an attempt (graceful shutdown).
    async fn release(&self, id: TaskId, token: FencingToken) -> Result<(), StoreError>;

    /// Cancels a non-terminal task; its transitive dependents become `Blocked`. Returns them.
    async fn cancel(&self, id: TaskId) -> Result<Vec<TaskId>, StoreError>;

    /// Retries a dead-lettered task by hand with a fresh attempt budget; tasks blocked only
    /// because of it wait again. Returns the unblocked tasks.
    async fn redrive(&self, id: TaskId) -> Result<Vec<TaskId>, StoreError>;

    /// Takes back every task whose lease expired: retried with backoff, or dead-lettered when
    /// attempts are exhausted. Returns the affected tasks.
    async fn reclaim_expired(&self) -> Result<Vec<TaskId>, StoreError>;

    /// Takes back every task leased by `holder` (a failed agent), as for an expired lease.
    async fn reclaim_holder(&self, holder: AgentId) -> Result<Vec<TaskId>, StoreError>;

    /// One task.
    async fn get_task(&self, id: TaskId) -> Result<Task, StoreError>;

    /// Tasks matching `filter`, ordered by id.
    async fn list_tasks(&self, filter: &TaskFilter) -> Result<Vec<Task>, StoreError>;

    /// Tasks that depend directly on `id`.
    async fn dependents(&self, id: TaskId) -> Result<Vec<TaskId>, StoreError>;

    /// Tasks per state, optionally for one spec.
    async fn count_tasks(&self, spec_id: Option<SpecId>) -> Result<TaskCounts, StoreError>;

    /// Tasks claimable right now (ignoring capabilities and concurrency keys).
    async fn ready_count(&self) -> Result<u64, StoreError>;
}
