//! Git: task branches in sandbox workspaces, and conflict-ordered merges on the host.
//!
//! The orchestrator keeps one repository on the host ([`GitRepo`], the "origin"). A task's
//! [`Workspace`] is seeded from it with a bundle, works on branch `omoi/<task-id>`, commits, and
//! is exported back with another bundle, so the agent's sandbox never needs network access.
//! [`merge_in_conflict_order`] then merges finished branches, fewest conflicts first.

mod merge;
mod repo;
mod workspace;

pub use merge::{BranchScore, MergeReport, MergeStop, merge_in_conflict_order, score_branches};
pub use repo::{GitError, GitOutput, GitRepo, MergeError, MergeTree};
pub use workspace::{DEFAULT_IGNORES, Workspace, WorkspaceError, task_branch};
