//! Findings of the spec phases become discoveries of the stored plan. A spec phase's agent can
//! report new work (`report_discovery`) before any task exists; the phase's checkpoint keeps
//! it, and SYNC, once the plan is stored, reports each finding here as a discovery of the
//! synced task it concerns — deduplicated (a finding the plan already covers is a duplicate
//! of that task) and bounded like any other report.

use std::collections::HashSet;

use omoi_core::{ReportedDiscovery, Task, TaskId};
use tracing::{Instrument, info_span};

use crate::service::{DiscoveryError, DiscoveryService, Reported};

/// How many of `finding`'s files `task` owns (a file, or a directory holding it).
fn overlap(finding: &ReportedDiscovery, task: &Task) -> usize {
    let owns = |f: &str| {
        task.def.owned_files.iter().any(|o| {
            let o = o.trim_end_matches('/');
            f == o || f.strip_prefix(o).is_some_and(|rest| rest.starts_with('/'))
        })
    };
    finding.files.iter().filter(|f| owns(f)).count()
}

/// The synced task a finding is reported from: among `tasks` (in plan order), the one owning
/// most of its files, preferring one not in `used` (each source has a cooldown); with no
/// overlap, the first task not in `used` that depends on no other planned task, else the
/// first unused task, else the first task. `None` only when `tasks` is empty.
pub fn source_for<'t>(finding: &ReportedDiscovery, tasks: &'t [Task], used: &HashSet<TaskId>) -> Option<&'t Task> {
    let best = tasks.iter().map(|t| overlap(finding, t)).max().unwrap_or(0);
    if best > 0 {
        let owners: Vec<&Task> = tasks.iter().filter(|t| overlap(finding, t) == best).collect();
        return owners.iter().find(|t| !used.contains(&t.id)).or(owners.first()).copied();
    }
    let planned: HashSet<TaskId> = tasks.iter().map(|t| t.id).collect();
    let root = |t: &&Task| !t.dependencies.iter().any(|d| planned.contains(d));
    tasks
        .iter()
        .filter(root)
        .find(|t| !used.contains(&t.id))
        .or_else(|| tasks.iter().find(|t| !used.contains(&t.id)))
        .or(tasks.first())
}

impl DiscoveryService {
    /// Reports the spec phases' `findings` as discoveries of the synced `tasks` (the plan's
    /// tasks, in plan order), each from its [`source_for`], in order. A refusal or duplicate is
    /// recorded like any other; only a store failure stops (what was recorded stays, and a
    /// repeated call finds those as exact duplicates).
    pub async fn report_findings(
        &self,
        tasks: &[Task],
        findings: &[ReportedDiscovery],
    ) -> Result<Vec<Reported>, DiscoveryError> {
        let mut used = HashSet::new();
        let mut out = Vec::with_capacity(findings.len());
        for f in findings {
            let Some(source) = source_for(f, tasks, &used) else { break };
            used.insert(source.id);
            let span = info_span!("spec_finding", title = %f.title, source = %source.id);
            out.push(self.report(f.to_new(source.id)).instrument(span).await?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use omoi_core::{DiscoveryKind, NewTask};

    fn task(title: &str, files: &[&str], deps: &[TaskId]) -> Task {
        let mut n = NewTask::new(title).depends_on(deps.iter().copied());
        n.def.owned_files = files.iter().map(|f| (*f).to_owned()).collect();
        Task::inserted(n, omoi_core::TaskState::Waiting, chrono::DateTime::UNIX_EPOCH)
    }

    fn finding(files: &[&str]) -> ReportedDiscovery {
        ReportedDiscovery {
            kind: DiscoveryKind::TechnicalDebt,
            title: "t".into(),
            description: "d".into(),
            priority_boost: false,
            done_definition: "done".into(),
            files: files.iter().map(|f| (*f).to_owned()).collect(),
            blocking: None,
            requeue: false,
        }
    }

    #[test]
    fn source_is_the_task_owning_the_files_else_an_unused_root() {
        let core = task("core", &["pkg/strings.py"], &[]);
        let docs = task("docs", &["docs/"], &[]);
        let tests = task("tests", &["tests/test_strings.py"], &[core.id]);
        let tasks = vec![core.clone(), docs.clone(), tests.clone()];
        let none = HashSet::new();
        assert_eq!(source_for(&finding(&["tests/test_strings.py"]), &tasks, &none).unwrap().id, tests.id);
        assert_eq!(source_for(&finding(&["docs/usage.md"]), &tasks, &none).unwrap().id, docs.id, "a directory");
        assert_eq!(source_for(&finding(&["other.txt"]), &tasks, &none).unwrap().id, core.id, "first root");
        let used = HashSet::from([core.id]);
        assert_eq!(source_for(&finding(&[]), &tasks, &used).unwrap().id, docs.id, "an unused root");
        assert_eq!(source_for(&finding(&["pkg/strings.py"]), &tasks, &used).unwrap().id, core.id, "the owner");
        assert!(source_for(&finding(&[]), &[], &none).is_none());
    }
}
