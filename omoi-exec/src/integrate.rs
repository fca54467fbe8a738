//! Merge conflicts branch the task graph too: when the conflict-ordered merge stops at a
//! conflict, an `integration_issue` discovery spawns a resolution task — an implementation agent
//! whose workspace starts in the conflicted merge of the stopped branch into the base, told both
//! branches and the conflicting files — bounded by the same discovery limits. Once it completes,
//! the merge resumes with its branch in place of the stopped one ([`resume_with`]).

use omoi_core::{DiscoveryKind, Evidence, ExecutionMode, NewDiscovery, NewTask, Task, WorkPhase};
use omoi_discovery::{DiscoveryError, DiscoveryService, Reported};
use serde_json::json;

use crate::git::MergeStop;

/// Key of a task input that makes the executor leave a conflicted predecessor merge in the
/// workspace for the agent to resolve (implementation tasks only).
pub const RESOLVE_KEY: &str = "resolve_conflicts";

/// Reports the conflict that stopped a merge into `base` as an `integration_issue` discovery of
/// `source` (the task whose branch conflicted), branching a resolution task.
pub async fn report_conflict(
    service: &DiscoveryService,
    source: &Task,
    base: &str,
    stop: &MergeStop,
) -> Result<Reported, DiscoveryError> {
    let files = stop.files.join(", ");
    let d = NewDiscovery::new(
        source.id,
        DiscoveryKind::IntegrationIssue,
        format!("merge conflict: {} into {base}", stop.branch),
        format!("Merging {} into {base} conflicts in {files}.", stop.branch),
        format!("{} merges into {base} without conflicts and keeps both sides' intent", stop.branch),
    )
    .blocking(false)
    .evidence(Evidence {
        files: stop.files.clone(),
        command: Some(format!("git merge {}", stop.branch)),
        output: None,
    });
    let mut resolve = NewTask::new(format!("Resolve merge conflict of {} into {base}", stop.branch))
        .description(format!(
            "Merging branch {} (task \"{}\") into {base} conflicts in: {files}. Your workspace is {base} with that merge \
             in progress: the conflicting files hold both sides between conflict markers. Read both sides, write each \
             file with the intent of both branches kept and no markers left, and run the tests. Your change is committed \
             as the merge.",
            stop.branch, source.def.title
        ))
        .mode(ExecutionMode::Implementation)
        .phase(WorkPhase::Integration)
        .depends_on([source.id])
        .input(json!({ RESOLVE_KEY: true, "conflict": { "branch": stop.branch, "base": base, "files": stop.files } }));
    resolve.def.acceptance_criteria = vec![d.done_definition.clone()];
    service.report_with_branch(d, vec![resolve]).await
}

/// The branches to merge when the merge resumes: `resolution` (which contains the stopped
/// branch, resolved) in place of the stopped branch, and every branch not merged yet.
pub fn resume_with(branches: &[String], merged: &[String], stopped: &str, resolution: &str) -> Vec<String> {
    let mut out = vec![resolution.to_owned()];
    out.extend(branches.iter().filter(|b| *b != stopped && !merged.contains(b)).cloned());
    out
}
