//! TASKS: tickets, atomic tasks, dependencies, critical path.

use std::collections::HashSet;

use omoi_core::SpecPhase;

use super::{Evaluation, Scorer, is_task_id, is_ticket_id};
use crate::output::{RequirementsOutput, TasksOutput};
use crate::sync::check_plan;

fn filled(s: &str) -> bool {
    !s.trim().is_empty()
}

/// Weights: feature_name .03, tickets .12, structure .15, atomicity .12 (0 < h ≤ 4), id_format
/// .05, files_specified .08, parent_tickets .12, circular_deps .15 (any cycle → 0), dependencies
/// .08 (−0.2 per unknown reference), critical_path .05, total_hours .05.
///
/// Blocking (the plan could not be synced or traced): duplicate ids, dependencies on unknown
/// tasks, unknown parent tickets, cycles, untitled tasks and, when the requirements are known,
/// unknown or unaddressed requirements.
pub(crate) fn evaluate(o: &TasksOutput, requirements: Option<&RequirementsOutput>) -> Evaluation {
    let mut s = Scorer::default();
    let check = check_plan(o, requirements);
    let mut blocking = check.blocking();
    if o.tasks.is_empty() {
        blocking.push("tasks is empty".to_owned());
    }
    s.check("feature_name", 0.03, filled(&o.feature_name), 0.5, "feature_name is empty");

    if o.tickets.is_empty() {
        s.add("tickets", 0.12, 0.5, vec!["no tickets defined; group the tasks into TKT-NNN tickets".into()]);
    } else {
        let issues: Vec<String> = o
            .tickets
            .iter()
            .filter_map(|k| {
                let missing: Vec<&str> = [
                    ("id", filled(&k.id)),
                    ("title", filled(&k.title)),
                    ("description", filled(&k.description)),
                    ("tasks", !k.tasks.is_empty()),
                ]
                .into_iter()
                .filter(|(_, ok)| !ok)
                .map(|(n, _)| n)
                .collect();
                (!missing.is_empty()).then(|| format!("ticket {} is missing {}", k.id, missing.join(", ")))
            })
            .collect();
        s.ratio("tickets", 0.12, o.tickets.len() - issues.len(), o.tickets.len(), issues);
    }

    let n = o.tasks.len();
    let ticket_ids: HashSet<&str> = o.tickets.iter().map(|k| k.id.as_str()).collect();
    let (mut structure, mut atomic, mut files, mut parents) = (vec![], vec![], vec![], vec![]);
    for t in &o.tasks {
        let missing: Vec<&str> =
            [("id", filled(&t.id)), ("title", filled(&t.title)), ("description", filled(&t.description))]
                .into_iter()
                .filter(|(_, ok)| !ok)
                .map(|(n, _)| n)
                .collect();
        if !missing.is_empty() {
            structure.push(format!("{} is missing {}", t.id, missing.join(", ")));
        }
        let h = t.estimated_hours;
        if !(h > 0.0 && h <= 4.0) {
            atomic.push(format!("{} is estimated at {h}h; atomic tasks take more than 0 and at most 4 hours", t.id));
        }
        if t.files().next().is_none() {
            files.push(format!("{} lists no files_to_create or files_to_modify", t.id));
        }
        if t.parent_ticket.is_empty() {
            parents.push(format!("{} has no parent_ticket", t.id));
        } else if !ticket_ids.contains(t.parent_ticket.as_str()) {
            parents.push(format!("{} names unknown parent_ticket {}", t.id, t.parent_ticket));
        }
    }
    let ratio = |bad: usize| if n == 0 { 0.0 } else { (n - bad.min(n)) as f64 / n as f64 };
    s.add("structure", 0.15, ratio(structure.len()), structure);
    s.add("atomicity", 0.12, ratio(atomic.len()), atomic);
    let bad_ids: Vec<String> = o
        .tasks
        .iter()
        .filter(|t| !is_task_id(&t.id))
        .map(|t| format!("task id {:?} should be TSK-NNN", t.id))
        .chain(
            o.tickets
                .iter()
                .filter(|k| !is_ticket_id(&k.id))
                .map(|k| format!("ticket id {:?} should be TKT-NNN", k.id)),
        )
        .collect();
    let ids_total = n + o.tickets.len();
    s.ratio("id_format", 0.05, ids_total - bad_ids.len().min(ids_total), ids_total, bad_ids);
    s.add("files_specified", 0.08, ratio(files.len()), files);
    s.add("parent_tickets", 0.12, ratio(parents.len()), parents);
    match &check.cycle {
        Some(path) => s.add("circular_deps", 0.15, 0.0, vec![format!("dependency cycle: {}", path.join(" -> "))]),
        None => s.add("circular_deps", 0.15, 1.0, vec![]),
    }
    let bad_refs: Vec<String> = check
        .unknown_dependencies
        .iter()
        .map(|r| format!("{} depends on unknown task {}", r.from, r.to))
        .chain(check.unknown_secondary.iter().map(|r| format!("{} names unknown {}", r.from, r.to)))
        .collect();
    s.add("dependencies", 0.08, 1.0 - 0.2 * bad_refs.len() as f64, bad_refs);

    let task_ids: HashSet<&str> = o.tasks.iter().map(|t| t.id.as_str()).collect();
    let unknown: Vec<&String> = o.critical_path.iter().filter(|t| !task_ids.contains(t.as_str())).collect();
    if o.critical_path.is_empty() {
        s.add("critical_path", 0.05, 0.5, vec!["critical_path is empty".into()]);
    } else if !unknown.is_empty() {
        let names: Vec<&str> = unknown.iter().map(|s| s.as_str()).collect();
        s.add("critical_path", 0.05, 0.5, vec![format!("critical_path names unknown tasks: {}", names.join(", "))]);
    } else {
        s.add("critical_path", 0.05, 1.0, vec![]);
    }
    let sum: f64 = o.tasks.iter().map(|t| t.estimated_hours).filter(|h| h.is_finite()).sum();
    let total = o.total_estimated_hours;
    if total.is_nan() || total <= 0.0 {
        s.add("total_hours", 0.05, 0.5, vec!["total_estimated_hours is missing or not positive".into()]);
    } else if (total - sum).abs() > 0.1 * sum.max(1.0) {
        s.add(
            "total_hours",
            0.05,
            0.75,
            vec![format!("total_estimated_hours is {total} but the tasks add up to {sum}")],
        );
    } else {
        s.add("total_hours", 0.05, 1.0, vec![]);
    }
    s.finish(SpecPhase::Tasks, blocking)
}
