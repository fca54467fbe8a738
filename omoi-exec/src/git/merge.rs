//! Conflict-ordered merging of task branches.
//!
//! Each branch is scored against the base with a dry-run `git merge-tree --write-tree` (the
//! number of conflicting files); branches are merged in ascending order of that score (ties by
//! name), each merge re-checked against the advancing base; the first branch that conflicts
//! stops the run with a report naming its files. Nothing is left half-merged: a merge is
//! recorded only when its tree is clean.

use serde::{Deserialize, Serialize};
use tracing::Instrument;
use tracing::info_span;

use super::repo::{GitError, GitRepo, MergeError};

/// A branch's conflict score against the base.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BranchScore {
    /// The branch.
    pub branch: String,
    /// Files that conflict with the base.
    pub conflicts: Vec<String>,
}

/// Where a conflict-ordered merge stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergeStop {
    /// The branch that could not be merged.
    pub branch: String,
    /// Its conflicting files.
    pub files: Vec<String>,
}

/// What a conflict-ordered merge did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergeReport {
    /// Scores against the original base, in merge order.
    pub order: Vec<BranchScore>,
    /// Branches merged, in order, with their merge commits.
    pub merged: Vec<(String, String)>,
    /// The conflict that stopped the run, if any.
    pub stopped: Option<MergeStop>,
}

/// Scores `branches` against `base`, lowest conflict count first (ties by branch name).
pub async fn score_branches(repo: &GitRepo, base: &str, branches: &[String]) -> Result<Vec<BranchScore>, GitError> {
    let mut scores = Vec::with_capacity(branches.len());
    for b in branches {
        let tree = repo.merge_tree(base, b).await?;
        scores.push(BranchScore { branch: b.clone(), conflicts: tree.conflicts });
    }
    scores.sort_by(|a, b| a.conflicts.len().cmp(&b.conflicts.len()).then_with(|| a.branch.cmp(&b.branch)));
    Ok(scores)
}

/// Merges `branches` into `base` in conflict order, stopping at the first conflict.
/// A base branch checked out with local changes stops the run with
/// [`MergeError::DirtyCheckout`] before anything moves.
pub async fn merge_in_conflict_order(
    repo: &GitRepo,
    base: &str,
    branches: &[String],
) -> Result<MergeReport, MergeError> {
    async {
        let order = score_branches(repo, base, branches).await?;
        let mut merged = Vec::new();
        for score in &order {
            let tree = repo.merge_tree(base, &score.branch).await?;
            if !tree.conflicts.is_empty() {
                tracing::warn!(branch = %score.branch, files = ?tree.conflicts, "merge stopped at a conflict");
                return Ok(MergeReport {
                    order: order.clone(),
                    merged,
                    stopped: Some(MergeStop { branch: score.branch.clone(), files: tree.conflicts }),
                });
            }
            let msg = format!("Merge {} into {base}", score.branch);
            let commit = repo.commit_merge(base, &score.branch, &tree.tree, &msg).await?;
            tracing::info!(branch = %score.branch, %commit, "merged");
            merged.push((score.branch.clone(), commit));
        }
        Ok(MergeReport { order, merged, stopped: None })
    }
    .instrument(info_span!("merge_in_conflict_order", base, branches = branches.len()))
    .await
}
