//! Discovery branching rules, written once and used by every store adapter inside the
//! transaction that records a discovery: which limit refuses it ([`admit`]), how its branch
//! tasks are linked to the source ([`shape_branch`]), which branch tasks the source's
//! dependents wait for ([`sinks`]), and the default branch of a report ([`default_branch`]).

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::config::DiscoveryConfig;
use crate::discovery::{
    Discovery, DiscoveryKind, DiscoveryStatus, DiscoveryTransition, DuplicateOf, NewDiscovery, Refusal, RefusalReason,
};
use crate::error::StoreError;
use crate::event::Event;
use crate::ids::{DiscoveryId, TaskId};
use crate::late_edges::{self, AddedDependencies};
use crate::ports::discovery_store::{DiscoveryReport, RecordOutcome};
use crate::state::{TaskEvent, TransitionError};
use crate::task::{NewTask, Task};
use crate::{ExecutionMode, TaskState};

/// The limits a store enforces when it records a discovery.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct BranchLimits {
    /// Branches one source task may spawn.
    pub per_source: u32,
    /// Branches per spec (tasks without a spec count together).
    pub per_spec: u32,
    /// Deepest allowed nesting (a branch of a branch of …).
    pub max_depth: u32,
    /// Minimum time between two branches from the same source task.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub cooldown: Duration,
    /// Diagnostic branches that may fail in a row before diagnostics are refused.
    pub max_consecutive_diagnostic_failures: u32,
}

impl Default for BranchLimits {
    fn default() -> Self {
        Self::from(&DiscoveryConfig::default())
    }
}

impl From<&DiscoveryConfig> for BranchLimits {
    fn from(c: &DiscoveryConfig) -> Self {
        Self {
            per_source: c.max_per_source_task,
            per_spec: c.max_per_spec,
            max_depth: c.max_depth,
            cooldown: c.cooldown,
            max_consecutive_diagnostic_failures: c.max_consecutive_failures,
        }
    }
}

/// What a store knows, inside its transaction, about the would-be branch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BranchFacts {
    /// Discoveries of the source task that spawned a branch.
    pub branches_from_source: u32,
    /// Discoveries of the source's spec (or of spec-less tasks) that spawned a branch.
    pub branches_in_spec: u32,
    /// The new discovery's depth: 1 + the depth of the discovery whose branch the source is.
    pub depth: u32,
    /// When the source last branched.
    pub last_branch_from_source: Option<DateTime<Utc>>,
    /// Latest diagnostic discoveries of the spec whose branch failed, counted back to the first
    /// that did not fail.
    pub consecutive_diagnostic_failures: u32,
}

/// `Ok` when the limits allow `kind` to branch now, else the refusal naming the limit.
pub fn admit(
    limits: &BranchLimits,
    facts: &BranchFacts,
    kind: DiscoveryKind,
    now: DateTime<Utc>,
) -> Result<(), Refusal> {
    let refuse = |reason, detail: String| Err(Refusal { reason, detail });
    if facts.depth > limits.max_depth {
        return refuse(
            RefusalReason::Depth,
            format!("a branch at depth {} exceeds the maximum depth {}", facts.depth, limits.max_depth),
        );
    }
    if facts.branches_from_source >= limits.per_source {
        return refuse(
            RefusalReason::SourceCap,
            format!("{} of {} branches from this task already", facts.branches_from_source, limits.per_source),
        );
    }
    if facts.branches_in_spec >= limits.per_spec {
        return refuse(
            RefusalReason::SpecCap,
            format!("{} of {} branches in this spec already", facts.branches_in_spec, limits.per_spec),
        );
    }
    if let Some(last) = facts.last_branch_from_source {
        let since = (now - last).to_std().unwrap_or(Duration::ZERO);
        if since < limits.cooldown {
            return refuse(
                RefusalReason::Cooldown,
                format!(
                    "this task branched {} s ago; the cooldown is {} s",
                    since.as_secs(),
                    limits.cooldown.as_secs()
                ),
            );
        }
    }
    if kind.is_diagnostic() && facts.consecutive_diagnostic_failures >= limits.max_consecutive_diagnostic_failures {
        return refuse(
            RefusalReason::DiagnosticFailures,
            format!(
                "the last {} diagnostic branches failed (limit {})",
                facts.consecutive_diagnostic_failures, limits.max_consecutive_diagnostic_failures
            ),
        );
    }
    Ok(())
}

/// Counts, newest first, diagnostic branches that failed until one did not. `branches` holds,
/// newest first, the states of each diagnostic discovery's spawned tasks.
pub fn consecutive_failures<'a>(branches: impl IntoIterator<Item = &'a [TaskState]>) -> u32 {
    let mut n = 0;
    for states in branches {
        if states.iter().any(|s| matches!(s, TaskState::Failed | TaskState::Cancelled)) {
            n += 1;
        } else {
            break;
        }
    }
    n
}

/// Links branch tasks to their source: the source's spec and ticket, the source as parent,
/// the source's priority (one level up when boosted), a `triggered_by` entry in an object (or
/// empty) input, and a local id `<source local id>.<n>` (`.<n>.<i>` for the i-th task after
/// the first) where none is set. `n` is the branch's number among the source's branches.
pub fn shape_branch(source: &Task, discovery: &Discovery, n: u32, branch: &mut [NewTask]) {
    let priority = if discovery.priority_boost { source.def.priority.boosted() } else { source.def.priority };
    let base = source.links.local_id.clone().unwrap_or_else(|| {
        let s = source.id.to_string();
        format!("task-{}", &s[s.len() - 8..])
    });
    for (i, t) in branch.iter_mut().enumerate() {
        t.def.priority = priority;
        t.links.spec_id = source.links.spec_id;
        t.links.ticket_id = source.links.ticket_id;
        t.links.parent_id = Some(source.id);
        if t.links.local_id.is_none() {
            t.links.local_id = Some(if i == 0 { format!("{base}.{n}") } else { format!("{base}.{n}.{}", i + 1) });
        }
        match &mut t.def.input {
            Value::Object(o) => {
                o.insert("triggered_by".into(), json!(discovery.id));
            }
            v @ Value::Null => *v = json!({ "triggered_by": discovery.id }),
            _ => {}
        }
    }
}

/// Branch tasks no other branch task depends on: what the source's dependents wait for.
pub fn sinks(branch: &[NewTask]) -> Vec<TaskId> {
    let depended: HashSet<TaskId> = branch.iter().flat_map(|t| t.dependencies.iter().copied()).collect();
    branch.iter().map(|t| t.id).filter(|id| !depended.contains(id)).collect()
}

/// Whether a dependent of the source in `state` is made to wait for a blocking branch: only one
/// that has not started (`Waiting`, or `Blocked` which waits again once unblocked).
pub const fn waits_for_branch(state: TaskState) -> bool {
    matches!(state, TaskState::Waiting | TaskState::Blocked)
}

/// The default branch of a report: one task in the source's phase, an implementation task
/// (exploration for `clarification_needed`), whose description carries the evidence and whose
/// acceptance criterion is the done definition. It depends on the source's own dependencies,
/// so its workspace starts from the same work.
pub fn default_branch(source: &Task, d: &NewDiscovery) -> Vec<NewTask> {
    let mode = match d.kind {
        DiscoveryKind::ClarificationNeeded => ExecutionMode::Exploration,
        _ => ExecutionMode::Implementation,
    };
    let mut t = NewTask::new(format!("{}: {}", d.kind, d.title))
        .description(branch_description(d))
        .mode(mode)
        .phase(source.def.phase)
        .depends_on(source.dependencies.iter().copied())
        .input(json!({ "discovery_kind": d.kind }));
    t.def.acceptance_criteria = vec![d.done_definition.clone()];
    t.def.capabilities = source.def.capabilities.clone();
    vec![t]
}

/// The description of a branch task: what was found, the evidence, when it is done.
pub fn branch_description(d: &NewDiscovery) -> String {
    let mut s = format!("{}\n\nFound while working on task {} ({}).", d.description, d.source_task, d.kind);
    if !d.evidence.files.is_empty() {
        s.push_str(&format!("\n\nFiles: {}", d.evidence.files.join(", ")));
    }
    if let Some(c) = &d.evidence.command {
        s.push_str(&format!("\n\nCommand: {c}"));
    }
    if let Some(o) = &d.evidence.output {
        s.push_str(&format!("\n\nOutput:\n```\n{o}\n```"));
    }
    s.push_str(&format!("\n\nDone when: {}", d.done_definition));
    s
}

/// A discovery decided inside a store's transaction: the record to write (its final status),
/// the shaped branch to insert (empty unless it branches) and what to tell the caller.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    /// The record, status `branched`, `duplicate` or `refused` (`spawned` filled when branched).
    pub discovery: Discovery,
    /// The branch tasks to insert, shaped.
    pub branch: Vec<NewTask>,
    /// The branch tasks the source's dependents (or, re-queued, the source) wait for when the
    /// discovery blocks.
    pub sinks: Vec<TaskId>,
    /// What the tasks already covering a duplicate are.
    pub covered_by: Vec<TaskId>,
}

impl Prepared {
    /// The event written before the branch's `task.created` events.
    pub fn recorded_event(&self) -> Event {
        Event::DiscoveryRecorded {
            discovery_id: self.discovery.id,
            source_task: self.discovery.source_task,
            kind: self.discovery.kind,
        }
    }

    /// The events written after the branch's `task.created` events.
    pub fn decision_events(&self) -> Vec<Event> {
        let id = self.discovery.id;
        match (self.discovery.status, &self.discovery.refusal, self.discovery.duplicate_of) {
            (DiscoveryStatus::Duplicate, _, Some(of)) => vec![Event::DiscoveryDeduplicated { discovery_id: id, of }],
            (DiscoveryStatus::Refused, Some(r), _) => vec![Event::DiscoveryRefused {
                discovery_id: id,
                source_task: self.discovery.source_task,
                reason: r.reason,
                detail: r.detail.clone(),
            }],
            _ => self
                .discovery
                .spawned
                .iter()
                .map(|t| Event::DiscoveryBranchCreated { discovery_id: id, task_id: *t })
                .collect(),
        }
    }

    /// Whether the store re-queues the source behind the sinks (instead of holding its
    /// dependents).
    pub fn requeues_source(&self) -> bool {
        self.discovery.requeue_source && !self.sinks.is_empty()
    }

    /// The source's move when it is re-queued ([`late_edges::for_requeue`]), given its state;
    /// `None` when the discovery does not re-queue it.
    pub fn requeue(&self, source_state: TaskState) -> Result<Option<AddedDependencies>, StoreError> {
        if !self.requeues_source() {
            return Ok(None);
        }
        late_edges::for_requeue(self.discovery.source_task, source_state, &self.sinks).map(Some).map_err(|_| {
            StoreError::transition(
                "task",
                self.discovery.source_task,
                TransitionError { from: source_state, event: TaskEvent::DependencyAdded },
            )
        })
    }

    /// The caller's answer, given the dependents the store made wait (`held`).
    pub fn outcome(&self, held: Vec<TaskId>) -> RecordOutcome {
        let d = &self.discovery;
        match (d.status, &d.refusal, d.duplicate_of) {
            (DiscoveryStatus::Duplicate, _, Some(of)) => {
                RecordOutcome::Duplicate { discovery: d.id, of, covered_by: self.covered_by.clone() }
            }
            (DiscoveryStatus::Refused, Some(r), _) => RecordOutcome::Refused { discovery: d.id, refusal: r.clone() },
            _ => RecordOutcome::Branched {
                discovery: d.id,
                tasks: d.spawned.clone(),
                local_ids: self.branch.iter().map(|t| t.links.local_id.clone().unwrap_or_default()).collect(),
                held,
                requeued: self.requeues_source(),
            },
        }
    }
}

/// What a store found about a report inside its transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    /// The source task.
    pub source: Task,
    /// The depth of the discovery whose branch the source is (0 for a planned task).
    pub source_depth: u32,
    /// Everything else [`admit`] needs; `depth` is filled by [`prepare`].
    pub facts: BranchFacts,
    /// A live discovery of the same spec with the same fingerprint, and its spawned tasks.
    pub exact_duplicate: Option<(DiscoveryId, Vec<TaskId>)>,
}

/// Decides a report: checks it, then duplicate (the caller's, else the exact one), refusal, or
/// branch, in that order. Pure: the store persists what it returns.
pub fn prepare(report: DiscoveryReport, found: Found, now: DateTime<Utc>) -> Result<Prepared, StoreError> {
    report.discovery.validate().map_err(StoreError::InvalidInput)?;
    if report.branch.is_empty() {
        return Err(StoreError::InvalidInput("a discovery's branch needs at least one task".into()));
    }
    if report.discovery.source_task != found.source.id {
        return Err(StoreError::InvalidInput("the source task does not match the report".into()));
    }
    let depth = found.source_depth + 1;
    let mut d = Discovery::open(report.discovery, found.source.links.spec_id, found.source.links.ticket_id, depth, now);
    let id = d.id;
    let transition = move |e| StoreError::transition("discovery", id, e);
    let duplicate = match report.duplicate_of {
        Some(DuplicateOf::Task(t)) => Some((DuplicateOf::Task(t), vec![t])),
        Some(of @ DuplicateOf::Discovery(_)) => Some((of, Vec::new())),
        None => found.exact_duplicate.map(|(id, tasks)| (DuplicateOf::Discovery(id), tasks)),
    };
    if let Some((of, covered_by)) = duplicate {
        d.step(DiscoveryTransition::Deduplicate, now).map_err(transition)?;
        d.duplicate_of = Some(of);
        return Ok(Prepared { discovery: d, branch: Vec::new(), sinks: Vec::new(), covered_by });
    }
    let facts = BranchFacts { depth, ..found.facts };
    if let Err(refusal) = admit(&report.limits, &facts, d.kind, now) {
        d.step(DiscoveryTransition::Refuse, now).map_err(transition)?;
        d.refusal = Some(refusal);
        return Ok(Prepared { discovery: d, branch: Vec::new(), sinks: Vec::new(), covered_by: Vec::new() });
    }
    let mut branch = report.branch;
    shape_branch(&found.source, &d, facts.branches_from_source + 1, &mut branch);
    d.step(DiscoveryTransition::Branch, now).map_err(transition)?;
    d.spawned = branch.iter().map(|t| t.id).collect();
    let sinks = if d.blocking { sinks(&branch) } else { Vec::new() };
    Ok(Prepared { discovery: d, branch, sinks, covered_by: Vec::new() })
}

/// Whether a discovery with these spawned tasks' states is resolved (every one completed).
pub fn all_completed(states: &[TaskState]) -> bool {
    !states.is_empty() && states.iter().all(|s| *s == TaskState::Completed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Priority;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap()
    }

    #[test]
    fn admit_names_each_limit_it_refuses_by() {
        let l = BranchLimits::default();
        let ok = BranchFacts { depth: 1, ..BranchFacts::default() };
        assert!(admit(&l, &ok, DiscoveryKind::Bug, at(0)).is_ok());
        let cases = [
            (BranchFacts { depth: 4, ..ok }, RefusalReason::Depth),
            (BranchFacts { branches_from_source: 5, ..ok }, RefusalReason::SourceCap),
            (BranchFacts { branches_in_spec: 50, ..ok }, RefusalReason::SpecCap),
            (BranchFacts { last_branch_from_source: Some(at(-59)), ..ok }, RefusalReason::Cooldown),
        ];
        for (facts, reason) in cases {
            assert_eq!(admit(&l, &facts, DiscoveryKind::Bug, at(0)).unwrap_err().reason, reason);
        }
        assert!(
            admit(&l, &BranchFacts { last_branch_from_source: Some(at(-60)), ..ok }, DiscoveryKind::Bug, at(0)).is_ok()
        );
        let failing = BranchFacts { consecutive_diagnostic_failures: 3, ..ok };
        assert!(admit(&l, &failing, DiscoveryKind::Bug, at(0)).is_ok(), "only diagnostics count failures");
        assert_eq!(
            admit(&l, &failing, DiscoveryKind::Stuck, at(0)).unwrap_err().reason,
            RefusalReason::DiagnosticFailures
        );
    }

    #[test]
    fn consecutive_failures_stop_at_the_first_branch_that_did_not_fail() {
        use TaskState::*;
        let b: Vec<&[TaskState]> = vec![&[Failed], &[Completed, Cancelled], &[Running], &[Failed]];
        assert_eq!(consecutive_failures(b), 2);
    }

    fn task() -> Task {
        let n = NewTask::new("source");
        Task {
            id: n.id,
            def: n.def,
            links: n.links,
            dependencies: Vec::new(),
            state: TaskState::Running,
            attempts: 1,
            run_at: at(0),
            lease: None,
            result: None,
            last_error: None,
            usage: crate::Usage::default(),
            created_at: at(0),
            updated_at: at(0),
        }
    }

    #[test]
    fn shaped_branch_takes_the_sources_links_and_boosted_priority() {
        let mut source = task();
        source.def.priority = Priority::Medium;
        source.links.local_id = Some("TSK-004".into());
        let new = NewDiscovery::new(source.id, DiscoveryKind::Bug, "t", "d", "done").boosted(true);
        let d = Discovery::open(new.clone(), source.links.spec_id, None, 1, at(0));
        let mut branch = default_branch(&source, &new);
        branch.push(NewTask::new("revalidate").depends_on([branch[0].id]));
        shape_branch(&source, &d, 2, &mut branch);
        assert_eq!(branch[0].def.priority, Priority::High);
        assert_eq!(branch[0].links.parent_id, Some(source.id));
        assert_eq!(branch[0].links.local_id.as_deref(), Some("TSK-004.2"));
        assert_eq!(branch[1].links.local_id.as_deref(), Some("TSK-004.2.2"));
        assert_eq!(branch[0].def.input["triggered_by"], json!(d.id));
        assert_eq!(sinks(&branch), vec![branch[1].id]);
    }
}
