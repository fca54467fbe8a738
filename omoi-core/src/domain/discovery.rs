//! Discoveries: new work an agent finds while executing a task, which becomes a *branch* of the
//! task graph.
//!
//! A [`NewDiscovery`] is what an agent (or the executor, for a failed validation) reports: its
//! kind, what was found, the evidence, and a required done definition for the branch. A store
//! records it and, in the same transaction, spawns its branch tasks, or records it as a
//! duplicate or a refusal (see [`crate::branching`] for the rules and
//! [`DiscoveryStore`](crate::DiscoveryStore) for the operation). Its [`DiscoveryStatus`] moves
//! through a transition table kept as data:
//!
//! ```text
//! open ──branch──► branched ──resolve──► resolved
//!  │ │ │              └──invalidate──► invalid
//!  │ │ └─deduplicate──► duplicate
//!  │ └───refuse──────► refused
//!  └─────invalidate──► invalid
//! ```

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{DiscoveryId, SpecId, TaskId, TicketId};
use crate::state::TransitionError;
use crate::string_enum;

/// Longest command output kept as evidence (bytes); longer output keeps its tail.
pub const MAX_EVIDENCE_OUTPUT: usize = 8 * 1024;

string_enum! {
    /// What kind of new work was found. The last three are *diagnostic*: raised about the run
    /// itself rather than the product, and bounded by their own consecutive-failure limit.
    pub enum DiscoveryKind: "discovery kind" {
        /// A defect.
        Bug => "bug",
        /// Something that could be done better.
        Optimization => "optimization",
        /// A question a human must answer.
        ClarificationNeeded => "clarification_needed",
        /// A component the plan did not foresee.
        NewComponent => "new_component",
        /// A security problem.
        SecurityIssue => "security_issue",
        /// A performance problem.
        PerformanceIssue => "performance_issue",
        /// A requirement the spec missed.
        MissingRequirement => "missing_requirement",
        /// Pieces that do not fit together (for example a merge conflict).
        IntegrationIssue => "integration_issue",
        /// Debt worth paying down.
        TechnicalDebt => "technical_debt",
        /// Diagnostic: work stopped moving.
        Stuck => "stuck",
        /// Diagnostic: work finished without a usable result.
        NoResult => "no_result",
        /// Diagnostic: validation keeps failing.
        ValidationLoop => "validation_loop",
    }
}

impl DiscoveryKind {
    /// The diagnostic kinds (`stuck`, `no_result`, `validation_loop`).
    pub const fn is_diagnostic(self) -> bool {
        matches!(self, DiscoveryKind::Stuck | DiscoveryKind::NoResult | DiscoveryKind::ValidationLoop)
    }

    /// Whether a report of this kind blocks the source's dependents unless it says otherwise:
    /// work that is wrong or incomplete without it (bug, security issue, missing requirement,
    /// integration issue).
    pub const fn blocks_by_default(self) -> bool {
        matches!(
            self,
            DiscoveryKind::Bug
                | DiscoveryKind::SecurityIssue
                | DiscoveryKind::MissingRequirement
                | DiscoveryKind::IntegrationIssue
        )
    }
}

string_enum! {
    /// Where a discovery is in its life.
    pub enum DiscoveryStatus: "discovery status" {
        /// Recorded; nothing decided yet.
        Open => "open",
        /// Its branch tasks exist and are being worked on.
        Branched => "branched",
        /// Every branch task completed (terminal).
        Resolved => "resolved",
        /// The same work is already known; nothing was spawned (terminal).
        Duplicate => "duplicate",
        /// A limit refused the branch; the reason is kept (terminal).
        Refused => "refused",
        /// Not a real problem, or its branch was abandoned (terminal).
        Invalid => "invalid",
    }
}

string_enum! {
    /// What happens to a discovery. The input of [`DiscoveryStatus::apply`].
    pub enum DiscoveryTransition: "discovery transition" {
        /// Branch tasks were spawned.
        Branch => "branch",
        /// Every branch task completed.
        Resolve => "resolve",
        /// It duplicates known work.
        Deduplicate => "deduplicate",
        /// A limit refused it.
        Refuse => "refuse",
        /// It was judged not real, or its branch was abandoned.
        Invalidate => "invalidate",
    }
}

use DiscoveryStatus as DS;
use DiscoveryTransition as DT;

/// The discovery transition table: `(from, transition, to)`. Every pair not listed is illegal.
pub const DISCOVERY_TRANSITIONS: &[(DiscoveryStatus, DiscoveryTransition, DiscoveryStatus)] = &[
    (DS::Open, DT::Branch, DS::Branched),
    (DS::Open, DT::Deduplicate, DS::Duplicate),
    (DS::Open, DT::Refuse, DS::Refused),
    (DS::Open, DT::Invalidate, DS::Invalid),
    (DS::Branched, DT::Resolve, DS::Resolved),
    (DS::Branched, DT::Invalidate, DS::Invalid),
];

impl DiscoveryStatus {
    /// The status after `t`, or the refusal if the table has no such move.
    pub fn apply(
        self,
        t: DiscoveryTransition,
    ) -> Result<DiscoveryStatus, TransitionError<DiscoveryStatus, DiscoveryTransition>> {
        DISCOVERY_TRANSITIONS
            .iter()
            .find(|(from, ev, _)| *from == self && *ev == t)
            .map(|(_, _, to)| *to)
            .ok_or(TransitionError { from: self, event: t })
    }

    /// `Resolved`, `Duplicate`, `Refused` or `Invalid`.
    pub const fn is_terminal(self) -> bool {
        matches!(self, DS::Resolved | DS::Duplicate | DS::Refused | DS::Invalid)
    }

    /// `Open` or `Branched`: new reports of the same work are duplicates of it.
    pub const fn is_live(self) -> bool {
        matches!(self, DS::Open | DS::Branched)
    }
}

string_enum! {
    /// Which limit refused a discovery.
    pub enum RefusalReason: "refusal reason" {
        /// The source task already spawned its maximum of branches.
        SourceCap => "source_cap",
        /// The spec already has its maximum of branches.
        SpecCap => "spec_cap",
        /// The branch would be nested deeper than allowed.
        Depth => "depth",
        /// The source task branched too recently.
        Cooldown => "cooldown",
        /// Diagnostic branches failed too many times in a row.
        DiagnosticFailures => "diagnostic_failures",
    }
}

/// Why a discovery was refused, for people and for the model that reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Refusal {
    /// The limit.
    pub reason: RefusalReason,
    /// The numbers, e.g. `"5 of 5 branches from this task"`.
    pub detail: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.reason, self.detail)
    }
}

/// What a duplicate discovery duplicates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum DuplicateOf {
    /// A live discovery (its branch covers this one).
    Discovery(DiscoveryId),
    /// An unfinished task of the same spec and phase.
    Task(TaskId),
}

/// What backs a discovery up.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct Evidence {
    /// Files involved (workspace-relative paths).
    pub files: Vec<String>,
    /// The command that showed it, if any (`python3 -m unittest`).
    pub command: Option<String>,
    /// An excerpt of its output (at most [`MAX_EVIDENCE_OUTPUT`] bytes; the tail is kept).
    pub output: Option<String>,
}

impl Evidence {
    /// The same evidence with `output` cut to its last [`MAX_EVIDENCE_OUTPUT`] bytes.
    pub fn clipped(mut self) -> Self {
        if let Some(o) = &self.output
            && o.len() > MAX_EVIDENCE_OUTPUT
        {
            let mut start = o.len() - MAX_EVIDENCE_OUTPUT;
            while !o.is_char_boundary(start) {
                start += 1;
            }
            self.output = Some(format!("[… {start} bytes cut]\n{}", &o[start..]));
        }
        self
    }
}

/// A discovery as reported, before a store decided what it becomes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NewDiscovery {
    /// The id to give it.
    pub id: DiscoveryId,
    /// The task whose agent found it.
    pub source_task: TaskId,
    /// What kind of work it is.
    pub kind: DiscoveryKind,
    /// Short title.
    pub title: String,
    /// What was found and why it matters.
    pub description: String,
    /// What backs it up.
    pub evidence: Evidence,
    /// When the branch is done (required: a branch without one never ends).
    pub done_definition: String,
    /// The branch runs one priority level above its source.
    pub priority_boost: bool,
    /// The source's dependents wait for the branch.
    pub blocking: bool,
    /// With `blocking`: the source itself is re-queued behind the branch instead (it gives up
    /// its lease without using an attempt, waits for the branch, then runs again; its
    /// dependents wait for it as before).
    #[serde(default)]
    pub requeue_source: bool,
}

impl NewDiscovery {
    /// A report of `kind` from `source`, blocking when the kind [blocks by
    /// default](DiscoveryKind::blocks_by_default), without boost or evidence.
    pub fn new(
        source: TaskId,
        kind: DiscoveryKind,
        title: impl Into<String>,
        description: impl Into<String>,
        done_definition: impl Into<String>,
    ) -> Self {
        Self {
            id: DiscoveryId::new(),
            source_task: source,
            kind,
            title: title.into(),
            description: description.into(),
            evidence: Evidence::default(),
            done_definition: done_definition.into(),
            priority_boost: false,
            blocking: kind.blocks_by_default(),
            requeue_source: false,
        }
    }

    /// Sets the evidence (its output clipped).
    pub fn evidence(mut self, e: Evidence) -> Self {
        self.evidence = e.clipped();
        self
    }

    /// Sets the priority boost.
    pub fn boosted(mut self, boost: bool) -> Self {
        self.priority_boost = boost;
        self
    }

    /// Sets whether the source's dependents wait for the branch.
    pub fn blocking(mut self, blocking: bool) -> Self {
        self.blocking = blocking;
        self
    }

    /// Blocking, and the source itself is re-queued behind the branch (see
    /// [`Self::requeue_source`]).
    pub fn requeue_source(mut self) -> Self {
        self.blocking = true;
        self.requeue_source = true;
        self
    }

    /// Checks the report; the message says what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.title.trim().is_empty() {
            return Err("discovery title is empty".into());
        }
        if self.description.trim().is_empty() {
            return Err("discovery description is empty".into());
        }
        if self.done_definition.trim().is_empty() {
            return Err("discovery done_definition is empty: say when the branch is done".into());
        }
        if self.evidence.output.as_ref().is_some_and(|o| o.len() > MAX_EVIDENCE_OUTPUT + 64) {
            return Err(format!("evidence output is over {MAX_EVIDENCE_OUTPUT} bytes; clip it"));
        }
        Ok(())
    }

    /// The exact-dedup key: kind and the normalized title and description (see [`fingerprint`]).
    pub fn fingerprint(&self) -> String {
        fingerprint(self.kind, &self.title, &self.description)
    }

    /// The text compared by semantic dedup.
    pub fn dedup_text(&self) -> String {
        format!("{}\n{}", self.title, self.description)
    }
}

/// Lower-cases `s`, drops punctuation and collapses whitespace.
pub fn normalize(s: &str) -> String {
    let kept: String =
        s.chars().map(|c| if c.is_alphanumeric() { c.to_lowercase().next().unwrap_or(c) } else { ' ' }).collect();
    kept.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A stable hash (FNV-1a, 64 bits, hex) of the kind and the normalized title and description:
/// two reports that differ only in case, punctuation or spacing get the same fingerprint.
pub fn fingerprint(kind: DiscoveryKind, title: &str, description: &str) -> String {
    let text = format!("{kind}\n{}\n{}", normalize(title), normalize(description));
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// A recorded discovery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Discovery {
    /// Its id.
    pub id: DiscoveryId,
    /// The task whose agent found it.
    pub source_task: TaskId,
    /// The source task's spec.
    pub spec_id: Option<SpecId>,
    /// The source task's ticket.
    pub ticket_id: Option<TicketId>,
    /// What kind of work it is.
    pub kind: DiscoveryKind,
    /// Short title.
    pub title: String,
    /// What was found.
    pub description: String,
    /// What backs it up.
    pub evidence: Evidence,
    /// When the branch is done.
    pub done_definition: String,
    /// The branch runs one priority level above its source.
    pub priority_boost: bool,
    /// The source's dependents wait for the branch.
    pub blocking: bool,
    /// The source itself was re-queued behind the branch (see [`NewDiscovery::requeue_source`]).
    #[serde(default)]
    pub requeue_source: bool,
    /// Nesting: 1 for a discovery of a planned task, 2 for one found by a branch task, ….
    pub depth: u32,
    /// The exact-dedup key.
    pub fingerprint: String,
    /// Tasks spawned as its branch (empty unless it branched).
    pub spawned: Vec<TaskId>,
    /// Where it is in its life.
    pub status: DiscoveryStatus,
    /// Why it was refused.
    pub refusal: Option<Refusal>,
    /// What it duplicates.
    pub duplicate_of: Option<DuplicateOf>,
    /// When it was recorded.
    pub created_at: DateTime<Utc>,
    /// Its last status change.
    pub updated_at: DateTime<Utc>,
}

impl Discovery {
    /// The record of `new`, status `Open`, found by a task of `spec_id`/`ticket_id` at `depth`.
    pub fn open(
        new: NewDiscovery,
        spec_id: Option<SpecId>,
        ticket_id: Option<TicketId>,
        depth: u32,
        now: DateTime<Utc>,
    ) -> Self {
        let fingerprint = new.fingerprint();
        Self {
            id: new.id,
            source_task: new.source_task,
            spec_id,
            ticket_id,
            kind: new.kind,
            title: new.title,
            description: new.description,
            evidence: new.evidence,
            done_definition: new.done_definition,
            priority_boost: new.priority_boost,
            blocking: new.blocking,
            requeue_source: new.blocking && new.requeue_source,
            depth,
            fingerprint,
            spawned: Vec::new(),
            status: DiscoveryStatus::Open,
            refusal: None,
            duplicate_of: None,
            created_at: now,
            updated_at: now,
        }
    }

    /// Moves to the status `t` leads to.
    pub fn step(
        &mut self,
        t: DiscoveryTransition,
        now: DateTime<Utc>,
    ) -> Result<DiscoveryStatus, TransitionError<DiscoveryStatus, DiscoveryTransition>> {
        self.status = self.status.apply(t)?;
        self.updated_at = now;
        Ok(self.status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_transition_table_allows_exactly_the_documented_moves() {
        let mut legal = Vec::new();
        for &from in DiscoveryStatus::ALL {
            for &t in DiscoveryTransition::ALL {
                if let Ok(to) = from.apply(t) {
                    legal.push(format!("{from}-{t}->{to}"));
                } else {
                    assert_eq!(from.apply(t), Err(TransitionError { from, event: t }));
                }
            }
        }
        assert_eq!(
            legal,
            [
                "open-branch->branched",
                "open-deduplicate->duplicate",
                "open-refuse->refused",
                "open-invalidate->invalid",
                "branched-resolve->resolved",
                "branched-invalidate->invalid",
            ]
        );
        for &s in DiscoveryStatus::ALL {
            if s.is_terminal() {
                assert!(DiscoveryTransition::ALL.iter().all(|t| s.apply(*t).is_err()), "{s} is terminal");
            }
        }
    }

    #[test]
    fn fingerprint_ignores_case_punctuation_and_spacing_but_not_kind_or_words() {
        let a = fingerprint(DiscoveryKind::Bug, "Slugify drops digits!", "slugify('a1') returns 'a'");
        let b = fingerprint(DiscoveryKind::Bug, "  slugify DROPS   digits ", "Slugify(\"a1\") returns a.");
        assert_eq!(a, b);
        assert_ne!(a, fingerprint(DiscoveryKind::TechnicalDebt, "Slugify drops digits!", "slugify('a1') returns 'a'"));
        assert_ne!(a, fingerprint(DiscoveryKind::Bug, "Slugify drops letters", "slugify('a1') returns 'a'"));
    }

    #[test]
    fn diagnostic_kinds_are_the_last_three_and_blocking_defaults_follow_the_kind() {
        let diag: Vec<_> = DiscoveryKind::ALL.iter().filter(|k| k.is_diagnostic()).map(|k| k.as_str()).collect();
        assert_eq!(diag, ["stuck", "no_result", "validation_loop"]);
        let t = TaskId::new();
        assert!(NewDiscovery::new(t, DiscoveryKind::Bug, "x", "y", "z").blocking);
        assert!(!NewDiscovery::new(t, DiscoveryKind::Optimization, "x", "y", "z").blocking);
    }

    #[test]
    fn validation_requires_title_description_and_done_definition() {
        let t = TaskId::new();
        assert!(NewDiscovery::new(t, DiscoveryKind::Bug, "x", "y", "z").validate().is_ok());
        assert!(NewDiscovery::new(t, DiscoveryKind::Bug, " ", "y", "z").validate().unwrap_err().contains("title"));
        assert!(NewDiscovery::new(t, DiscoveryKind::Bug, "x", "", "z").validate().unwrap_err().contains("description"));
        assert!(NewDiscovery::new(t, DiscoveryKind::Bug, "x", "y", "").validate().unwrap_err().contains("done"));
    }

    #[test]
    fn evidence_output_keeps_its_tail_within_the_limit() {
        let long = format!("{}FAILED: test_digits", "x".repeat(3 * MAX_EVIDENCE_OUTPUT));
        let e = Evidence { output: Some(long), ..Evidence::default() }.clipped();
        let out = e.output.unwrap();
        assert!(out.ends_with("FAILED: test_digits"));
        assert!(out.len() <= MAX_EVIDENCE_OUTPUT + 64);
    }
}
