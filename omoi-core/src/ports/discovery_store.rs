//! The `DiscoveryStore` port: one atomic operation that records a discovery and branches the
//! task graph, and the reads around it.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::branching::BranchLimits;
use crate::discovery::{Discovery, DiscoveryKind, DiscoveryStatus, DuplicateOf, NewDiscovery, Refusal};
use crate::error::StoreError;
use crate::ids::{DiscoveryId, SpecId, TaskId};
use crate::task::NewTask;

/// A discovery to record, with the branch to spawn if nothing refuses it.
#[derive(Debug, Clone, PartialEq)]
pub struct DiscoveryReport {
    /// The report.
    pub discovery: NewDiscovery,
    /// The branch: one or more tasks (any phase, any mode), which may depend on each other and
    /// on stored tasks. The store links them to the source (see
    /// [`shape_branch`](crate::branching::shape_branch)).
    pub branch: Vec<NewTask>,
    /// The limits to enforce.
    pub limits: BranchLimits,
    /// A duplicate the caller found (semantic dedup); the store then records the discovery as
    /// its duplicate and spawns nothing.
    pub duplicate_of: Option<DuplicateOf>,
}

/// What [`DiscoveryStore::record_discovery`] did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum RecordOutcome {
    /// The branch was spawned.
    Branched {
        /// The discovery.
        discovery: DiscoveryId,
        /// Its branch tasks, in the order given.
        tasks: Vec<TaskId>,
        /// Their local ids (`TSK-004.1`).
        local_ids: Vec<String>,
        /// Dependents of the source made to wait for the branch (blocking discoveries).
        held: Vec<TaskId>,
        /// The source itself was re-queued behind the branch: its lease ended, and it runs
        /// again once the branch completes.
        #[serde(default)]
        requeued: bool,
    },
    /// Known work; nothing spawned.
    Duplicate {
        /// The discovery (status `duplicate`).
        discovery: DiscoveryId,
        /// What it duplicates.
        of: DuplicateOf,
        /// The tasks already covering it.
        covered_by: Vec<TaskId>,
    },
    /// A limit refused the branch.
    Refused {
        /// The discovery (status `refused`).
        discovery: DiscoveryId,
        /// Why.
        refusal: Refusal,
    },
}

impl RecordOutcome {
    /// The recorded discovery's id.
    pub fn discovery(&self) -> DiscoveryId {
        match self {
            RecordOutcome::Branched { discovery, .. }
            | RecordOutcome::Duplicate { discovery, .. }
            | RecordOutcome::Refused { discovery, .. } => *discovery,
        }
    }

    /// The spawned tasks (empty unless branched).
    pub fn spawned(&self) -> &[TaskId] {
        match self {
            RecordOutcome::Branched { tasks, .. } => tasks,
            _ => &[],
        }
    }
}

/// Which discoveries [`DiscoveryStore::list_discoveries`] returns, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DiscoveryFilter {
    /// Only this spec's.
    pub spec_id: Option<SpecId>,
    /// Only those found by this task.
    pub source_task: Option<TaskId>,
    /// Only these statuses (empty = any).
    pub statuses: Vec<DiscoveryStatus>,
    /// Only these kinds (empty = any).
    pub kinds: Vec<DiscoveryKind>,
    /// Only those recorded at or after this time.
    pub since: Option<DateTime<Utc>>,
}

impl DiscoveryFilter {
    /// Whether `d` passes every condition.
    pub fn matches(&self, d: &Discovery) -> bool {
        self.spec_id.is_none_or(|s| d.spec_id == Some(s))
            && self.source_task.is_none_or(|t| d.source_task == t)
            && (self.statuses.is_empty() || self.statuses.contains(&d.status))
            && (self.kinds.is_empty() || self.kinds.contains(&d.kind))
            && self.since.is_none_or(|t| d.created_at >= t)
    }
}

/// Durable discoveries, branched into the task graph of the same store.
///
/// The store also resolves a discovery (status `resolved`, event `discovery.resolved`) in the
/// transaction that completes the last of its branch tasks.
#[async_trait]
pub trait DiscoveryStore: Send + Sync {
    /// In ONE transaction: checks the source task exists; records the discovery; then
    /// - with `duplicate_of`, or when a live discovery of the same spec has the same
    ///   [fingerprint](crate::discovery::fingerprint), records it as a duplicate;
    /// - else, when a limit refuses it ([`admit`](crate::branching::admit)), records the refusal;
    /// - else inserts the branch tasks (shaped by
    ///   [`shape_branch`](crate::branching::shape_branch)), and, when blocking, makes the
    ///   source's not-yet-started dependents also depend on the branch's sinks — or, when the
    ///   report re-queues its source, the source itself (claimed or running: its lease ends
    ///   without using an attempt, it waits for the sinks, then runs again; any other state
    ///   is refused with `InvalidTransition` and nothing is recorded);
    ///
    /// and appends every event (`discovery.recorded`, `task.created`,
    /// `task.dependencies_added` for a re-queued source, `discovery.branch_created`,
    /// `discovery.deduplicated`, `discovery.refused`). Any error leaves nothing behind.
    async fn record_discovery(&self, report: DiscoveryReport) -> Result<RecordOutcome, StoreError>;

    /// One discovery.
    async fn get_discovery(&self, id: DiscoveryId) -> Result<Discovery, StoreError>;

    /// Discoveries matching `filter`, oldest first.
    async fn list_discoveries(&self, filter: &DiscoveryFilter) -> Result<Vec<Discovery>, StoreError>;

    /// The discovery whose branch `task` belongs to, if any.
    async fn discovery_of_task(&self, task: TaskId) -> Result<Option<Discovery>, StoreError>;
}
