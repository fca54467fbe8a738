//! SYNC: the computed traceability and dependency analysis, scored.

use omoi_core::SpecPhase;

use super::{Evaluation, Scorer};
use crate::output::{CoverageStatus, SyncOutput};

/// Weights: validation_results .20, coverage_matrix .15, traceability_stats .15,
/// dependency_analysis .10, spec_summary .15, ready_for_execution .15, blockers .05,
/// recommendations .05. SYNC is computed, so the criteria measure the plan (coverage, orphaned
/// tasks, blockers), not the presence of fields.
pub(crate) fn evaluate(o: &SyncOutput) -> Evaluation {
    let mut s = Scorer::default();
    let v = &o.validation_results;
    let checks = [
        ("not every requirement is covered by a task", v.all_requirements_covered),
        ("the task graph has a cycle", v.no_circular_dependencies),
        ("some ids are malformed or repeated", v.all_ids_valid),
        ("some references do not resolve", v.all_references_resolved),
    ];
    let ok = checks.iter().filter(|(_, ok)| *ok).count();
    let mut issues: Vec<String> = checks.iter().filter(|(_, ok)| !ok).map(|(m, _)| (*m).to_owned()).collect();
    issues.extend(v.issues_found.iter().cloned());
    s.ratio("validation_results", 0.20, ok, 4, issues);

    let total = o.coverage_matrix.len();
    if total == 0 {
        s.add("coverage_matrix", 0.15, 0.5, vec!["no requirements to trace".into()]);
    } else {
        let mut points = 0.0;
        let mut issues = Vec::new();
        for c in &o.coverage_matrix {
            match c.status {
                CoverageStatus::FullyCovered => points += 1.0,
                CoverageStatus::PartiallyCovered => {
                    points += 0.5;
                    issues.push(format!("{} is only partially covered", c.requirement_id));
                }
                CoverageStatus::NotCovered => issues.push(format!("{} is not covered", c.requirement_id)),
            }
        }
        s.add("coverage_matrix", 0.15, points / total as f64, issues);
    }
    let t = &o.traceability_stats.tasks;
    let issues = t.orphaned.iter().map(|id| format!("{id} addresses no requirement")).collect();
    s.ratio("traceability_stats", 0.15, t.with_requirements, t.total, issues);
    s.check(
        "dependency_analysis",
        0.10,
        !o.dependency_analysis.critical_path.is_empty(),
        0.5,
        "no critical path (no tasks, or a cycle)",
    );
    let sum = &o.spec_summary;
    s.check(
        "spec_summary",
        0.15,
        sum.total_tasks > 0 && sum.total_estimated_hours > 0.0,
        0.0,
        "the plan has no estimated tasks",
    );
    s.check("ready_for_execution", 0.15, o.ready_for_execution, 0.0, "not ready for execution");
    s.check("blockers", 0.05, o.blockers.is_empty(), 0.5, format!("{} blockers", o.blockers.len()));
    let r = o.recommendations.len();
    s.add("recommendations", 0.05, 1.0 - 0.25 * r as f64, o.recommendations.clone());
    s.finish(SpecPhase::Sync, o.blockers.clone())
}
