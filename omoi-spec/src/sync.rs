//! SYNC: from the TASKS output to stored tickets and tasks, exactly once.
//!
//! There is one path:
//!
//! 1. [`check_plan`] finds every problem of a task plan at once: duplicate ids, dependencies on
//!    unknown tasks, unknown parent tickets, cycles (with the path), requirements nobody
//!    addresses. The TASKS evaluator turns these into blocking feedback, so a plan that cannot
//!    be synced is sent back to the model instead of breaking later.
//! 2. [`build_plan`] turns the TASKS output into a [`SyncPlan`] (refusing the same problems with
//!    a typed [`SyncError`] naming them, then running the stores' own
//!    [`plan_sync`] check).
//! 3. [`analyze`] computes the SYNC phase's output: coverage matrix, traceability stats,
//!    critical path (on estimated hours) and parallel waves, blockers.
//! 4. [`materialize`] stores the plan through [`SpecStore::sync`], which keys tickets and tasks
//!    by (spec, local id): syncing again returns the same ids and creates nothing, and every
//!    `TSK-NNN` dependency becomes an edge between stored task ids.
//!
//! SYNC makes no model call: everything it reports is computed, so it cannot hallucinate
//! coverage, and re-running it is free and deterministic.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;

use omoi_core::dag::Dag;
use omoi_core::queue::plan_sync;
use omoi_core::{
    PlannedTask, PlannedTicket, Priority, SpecId, SpecStore, StoreError, SyncPlan, TaskDefinition, TaskRef,
};
use serde_json::json;

use crate::ids::{is_task_id, is_ticket_id};
use crate::output::{
    Coverage, CoverageStatus, DependencyAnalysis, DependencyStats, RequirementStats, RequirementsOutput, SpecSummary,
    SyncOutput, TaskStats, TasksOutput, TicketStats, TraceabilityStats, ValidationResults,
};

/// `from` names `to`, which does not exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownRef {
    /// The task holding the reference.
    pub from: String,
    /// The reference.
    pub to: String,
}

impl fmt::Display for UnknownRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} → {}", self.from, self.to)
    }
}

fn join_refs(list: &[UnknownRef]) -> String {
    list.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

/// Why a task plan cannot be synced.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// A phase SYNC needs has no checkpoint.
    #[error("sync needs the {0} output, which has not passed")]
    MissingOutput(omoi_core::SpecPhase),
    /// Ticket or task ids used more than once.
    #[error("duplicate local ids: {}", ids.join(", "))]
    DuplicateIds {
        /// The repeated ids.
        ids: Vec<String>,
    },
    /// Tasks depending on tasks that do not exist.
    #[error("unknown local ids (task → missing dependency): {}", join_refs(refs))]
    UnknownLocalIds {
        /// Each dangling reference.
        refs: Vec<UnknownRef>,
    },
    /// Tasks naming a parent ticket that does not exist.
    #[error("unknown parent tickets (task → ticket): {}", join_refs(refs))]
    UnknownTickets {
        /// Each dangling reference.
        refs: Vec<UnknownRef>,
    },
    /// The task graph has a cycle.
    #[error("dependency cycle: {}", path.join(" -> "))]
    Cycle {
        /// The cycle, first task repeated at the end.
        path: Vec<String>,
    },
    /// A task is not a valid task definition (empty title, …).
    #[error("task {task} is invalid: {reason}")]
    InvalidTask {
        /// The task's local id.
        task: String,
        /// Why.
        reason: String,
    },
    /// The plan is consistent but not ready for execution.
    #[error("not ready for execution: {}", blockers.join("; "))]
    NotReady {
        /// What blocks it.
        blockers: Vec<String>,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl SyncError {
    /// The dangling references of [`SyncError::UnknownLocalIds`] or [`SyncError::UnknownTickets`].
    pub fn unknown_refs(&self) -> &[UnknownRef] {
        match self {
            SyncError::UnknownLocalIds { refs } | SyncError::UnknownTickets { refs } => refs,
            _ => &[],
        }
    }
}

/// Every problem of a task plan, found at once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanCheck {
    /// Ticket or task ids used more than once.
    pub duplicate_ids: Vec<String>,
    /// `depends_on` entries naming no task.
    pub unknown_dependencies: Vec<UnknownRef>,
    /// `parent_ticket`s naming no ticket.
    pub unknown_tickets: Vec<UnknownRef>,
    /// Ticket `tasks`/`blocked_by`/`blocks` and task `blocks` entries naming nothing (advisory).
    pub unknown_secondary: Vec<UnknownRef>,
    /// A dependency cycle, first task repeated at the end.
    pub cycle: Option<Vec<String>>,
    /// Tasks with an empty title.
    pub untitled: Vec<String>,
    /// `requirements_addressed` entries naming no requirement (only with requirements given).
    pub unknown_requirements: Vec<UnknownRef>,
    /// Requirements no task addresses (only with requirements given).
    pub uncovered_requirements: Vec<String>,
}

impl PlanCheck {
    /// The problems that make the plan unusable, one line each, naming the items.
    pub fn blocking(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.duplicate_ids.is_empty() {
            out.push(format!("duplicate ids: {}", self.duplicate_ids.join(", ")));
        }
        for r in &self.unknown_dependencies {
            out.push(format!("{} depends on unknown task {}", r.from, r.to));
        }
        for r in &self.unknown_tickets {
            out.push(format!("{} names unknown parent_ticket {}", r.from, r.to));
        }
        if let Some(path) = &self.cycle {
            out.push(format!("dependency cycle: {}", path.join(" -> ")));
        }
        for t in &self.untitled {
            out.push(format!("{t} has an empty title"));
        }
        for r in &self.unknown_requirements {
            out.push(format!("{} addresses unknown requirement {}", r.from, r.to));
        }
        for r in &self.uncovered_requirements {
            out.push(format!("{r} is not addressed by any task (list it in some task's requirements_addressed)"));
        }
        out
    }
}

/// Checks `tasks` (and its traceability to `requirements`, if given).
pub fn check_plan(tasks: &TasksOutput, requirements: Option<&RequirementsOutput>) -> PlanCheck {
    let mut check = PlanCheck::default();
    let mut seen = HashSet::new();
    let mut dup = BTreeSet::new();
    for id in tasks.tickets.iter().map(|t| &t.id).chain(tasks.tasks.iter().map(|t| &t.id)) {
        if !seen.insert(id.as_str()) {
            dup.insert(id.clone());
        }
    }
    check.duplicate_ids = dup.into_iter().collect();
    let task_ids: HashSet<&str> = tasks.tasks.iter().map(|t| t.id.as_str()).collect();
    let ticket_ids: HashSet<&str> = tasks.tickets.iter().map(|t| t.id.as_str()).collect();
    let unknown = |from: &str, to: &str| UnknownRef { from: from.to_owned(), to: to.to_owned() };
    for t in &tasks.tasks {
        for d in &t.dependencies.depends_on {
            if !task_ids.contains(d.as_str()) {
                check.unknown_dependencies.push(unknown(&t.id, d));
            }
        }
        for d in &t.dependencies.blocks {
            if !task_ids.contains(d.as_str()) {
                check.unknown_secondary.push(unknown(&t.id, d));
            }
        }
        if !t.parent_ticket.is_empty() && !ticket_ids.contains(t.parent_ticket.as_str()) {
            check.unknown_tickets.push(unknown(&t.id, &t.parent_ticket));
        }
        if t.title.trim().is_empty() {
            check.untitled.push(t.id.clone());
        }
    }
    for k in &tasks.tickets {
        for d in &k.tasks {
            if !task_ids.contains(d.as_str()) {
                check.unknown_secondary.push(unknown(&k.id, d));
            }
        }
        for d in k.dependencies.blocked_by.iter().chain(&k.dependencies.blocks) {
            if !ticket_ids.contains(d.as_str()) {
                check.unknown_secondary.push(unknown(&k.id, d));
            }
        }
    }
    check.cycle = graph(tasks).and_then(|d| d.find_cycle());
    if let Some(reqs) = requirements {
        let req_ids: HashSet<&str> = reqs.requirements.iter().map(|r| r.id.as_str()).collect();
        let mut addressed = HashSet::new();
        for t in &tasks.tasks {
            for r in &t.requirements_addressed {
                if req_ids.contains(r.as_str()) {
                    addressed.insert(r.as_str());
                } else {
                    check.unknown_requirements.push(unknown(&t.id, r));
                }
            }
        }
        check.uncovered_requirements =
            reqs.requirements.iter().filter(|r| !addressed.contains(r.id.as_str())).map(|r| r.id.clone()).collect();
    }
    check
}

/// The task graph over known tasks (first occurrence of a duplicated id; unknown
/// dependencies dropped, so a cycle can still be found and named). Construction cannot fail
/// once those are removed; `None` would mean it did.
fn graph(tasks: &TasksOutput) -> Option<Dag<String>> {
    let mut seen = HashSet::new();
    let nodes: Vec<(String, Vec<String>)> = tasks
        .tasks
        .iter()
        .filter(|t| seen.insert(t.id.as_str()))
        .map(|t| (t.id.clone(), t.dependencies.depends_on.clone()))
        .collect();
    let known: HashSet<String> = nodes.iter().map(|(k, _)| k.clone()).collect();
    Dag::new(nodes.into_iter().map(|(k, deps)| (k, deps.into_iter().filter(|d| known.contains(d)).collect::<Vec<_>>())))
        .ok()
}

/// The sync plan for `tasks`, or the first class of problem that prevents it, naming every
/// culprit of that class.
pub fn build_plan(tasks: &TasksOutput) -> Result<SyncPlan, SyncError> {
    let check = check_plan(tasks, None);
    if !check.duplicate_ids.is_empty() {
        return Err(SyncError::DuplicateIds { ids: check.duplicate_ids });
    }
    if !check.unknown_dependencies.is_empty() {
        return Err(SyncError::UnknownLocalIds { refs: check.unknown_dependencies });
    }
    if !check.unknown_tickets.is_empty() {
        return Err(SyncError::UnknownTickets { refs: check.unknown_tickets });
    }
    if let Some(path) = check.cycle {
        return Err(SyncError::Cycle { path });
    }
    let ticket_priority: HashMap<&str, Priority> = tasks.tickets.iter().map(|t| (t.id.as_str(), t.priority)).collect();
    let plan = SyncPlan {
        tickets: tasks
            .tickets
            .iter()
            .map(|t| PlannedTicket {
                local_id: t.id.clone(),
                title: t.title.clone(),
                description: t.description.clone(),
                priority: t.priority,
                requirements: t.requirements.clone(),
            })
            .collect(),
        tasks: tasks
            .tasks
            .iter()
            .map(|t| PlannedTask {
                local_id: t.id.clone(),
                ticket: (!t.parent_ticket.is_empty()).then(|| t.parent_ticket.clone()),
                depends_on: t.dependencies.depends_on.clone(),
                def: TaskDefinition {
                    title: t.title.clone(),
                    description: t.description.clone(),
                    acceptance_criteria: t.acceptance_criteria.clone(),
                    phase: t.kind.phase(),
                    mode: t.kind.mode(),
                    priority: t
                        .priority
                        .or_else(|| ticket_priority.get(t.parent_ticket.as_str()).copied())
                        .unwrap_or_default(),
                    owned_files: t.files().cloned().collect(),
                    estimate_hours: (t.estimated_hours.is_finite() && t.estimated_hours >= 0.0)
                        .then_some(t.estimated_hours),
                    input: json!({
                        "local_id": t.id,
                        "requirements_addressed": t.requirements_addressed,
                        "files_to_create": t.files_to_create,
                        "files_to_modify": t.files_to_modify,
                    }),
                    ..TaskDefinition::default()
                },
            })
            .collect(),
    };
    plan_sync(&plan).map_err(|e| match e {
        StoreError::Cycle { path } => SyncError::Cycle { path: path.into_iter().map(local).collect() },
        StoreError::UnknownDependency { task, missing } => {
            SyncError::UnknownLocalIds { refs: vec![UnknownRef { from: local(task), to: local(missing) }] }
        }
        StoreError::InvalidInput(reason) => {
            let task = reason.split(':').next().unwrap_or_default().to_owned();
            SyncError::InvalidTask { task, reason }
        }
        other => SyncError::Store(other),
    })?;
    Ok(plan)
}

fn local(r: TaskRef) -> String {
    match r {
        TaskRef::Local(l) => l,
        TaskRef::Id(id) => id.to_string(),
    }
}

fn percent(part: usize, total: usize) -> f64 {
    if total == 0 { 100.0 } else { (part as f64 * 1000.0 / total as f64).round() / 10.0 }
}

/// The SYNC output for `tasks` and `requirements`: validation, coverage matrix, traceability
/// stats, dependency analysis, blockers and recommendations. Not yet materialized.
pub fn analyze(tasks: &TasksOutput, requirements: &RequirementsOutput) -> SyncOutput {
    let check = check_plan(tasks, Some(requirements));
    let mut issues = check.blocking();
    issues.extend(check.unknown_secondary.iter().map(|r| format!("{} names unknown {}", r.from, r.to)));

    let coverage_matrix: Vec<Coverage> = requirements
        .requirements
        .iter()
        .map(|r| {
            let by_tasks: Vec<String> =
                tasks.tasks.iter().filter(|t| t.requirements_addressed.contains(&r.id)).map(|t| t.id.clone()).collect();
            let by_tickets: Vec<String> =
                tasks.tickets.iter().filter(|k| k.requirements.contains(&r.id)).map(|k| k.id.clone()).collect();
            let status = if !by_tasks.is_empty() {
                CoverageStatus::FullyCovered
            } else if !by_tickets.is_empty() {
                CoverageStatus::PartiallyCovered
            } else {
                CoverageStatus::NotCovered
            };
            Coverage {
                requirement_id: r.id.clone(),
                covered_by_tasks: by_tasks,
                covered_by_tickets: by_tickets,
                status,
            }
        })
        .collect();
    let covered = coverage_matrix.iter().filter(|c| c.status == CoverageStatus::FullyCovered).count();
    let total_reqs = coverage_matrix.len();

    let orphaned: Vec<String> =
        tasks.tasks.iter().filter(|t| t.requirements_addressed.is_empty()).map(|t| t.id.clone()).collect();
    let total_edges = tasks.tasks.iter().map(|t| t.dependencies.depends_on.len()).sum();
    let stats = TraceabilityStats {
        requirements: RequirementStats { total: total_reqs, covered, coverage_percent: percent(covered, total_reqs) },
        tickets: TicketStats {
            total: tasks.tickets.len(),
            with_tasks: tasks.tickets.iter().filter(|k| tasks.tasks.iter().any(|t| t.parent_ticket == k.id)).count(),
        },
        tasks: TaskStats {
            total: tasks.tasks.len(),
            with_requirements: tasks.tasks.len() - orphaned.len(),
            orphaned: orphaned.clone(),
        },
        dependencies: DependencyStats { total_edges, unknown_references: check.unknown_dependencies.len() },
    };

    let dag = graph(tasks);
    let hours: HashMap<&str, f64> = tasks.tasks.iter().map(|t| (t.id.as_str(), t.estimated_hours)).collect();
    let est = |k: &String| hours.get(k.as_str()).copied().filter(|h| h.is_finite()).unwrap_or(0.0).max(0.0);
    let (critical_path, critical_path_hours) =
        dag.as_ref().and_then(|d| d.critical_path(est).ok()).map(|cp| (cp.path, cp.total)).unwrap_or_default();
    let dependency_analysis = DependencyAnalysis {
        task_dependency_graph: tasks.tasks.iter().map(|t| (t.id.clone(), t.dependencies.depends_on.clone())).collect(),
        critical_path,
        critical_path_hours,
        parallel_opportunities: dag
            .as_ref()
            .map(waves)
            .unwrap_or_default()
            .into_iter()
            .filter(|w| w.len() > 1)
            .collect(),
    };

    let total_hours: f64 = tasks.tasks.iter().map(|t| est(&t.id)).sum();
    let mut blockers = check.blocking();
    if tasks.tasks.is_empty() {
        blockers.push("the plan has no tasks".to_owned());
    }
    let mut recommendations = Vec::new();
    for c in coverage_matrix.iter().filter(|c| c.status == CoverageStatus::PartiallyCovered) {
        recommendations.push(format!(
            "{} is listed by {} but addressed by no task",
            c.requirement_id,
            c.covered_by_tickets.join(", ")
        ));
    }
    for t in tasks.tasks.iter().filter(|t| t.estimated_hours > 4.0) {
        recommendations
            .push(format!("{} is estimated at {}h; split it into tasks of 4h or less", t.id, t.estimated_hours));
    }
    for t in &orphaned {
        recommendations.push(format!("{t} addresses no requirement"));
    }
    let all_ids_valid = check.duplicate_ids.is_empty()
        && tasks.tasks.iter().all(|t| is_task_id(&t.id))
        && tasks.tickets.iter().all(|t| is_ticket_id(&t.id));
    SyncOutput {
        validation_results: ValidationResults {
            all_requirements_covered: check.uncovered_requirements.is_empty(),
            no_circular_dependencies: check.cycle.is_none(),
            all_ids_valid,
            all_references_resolved: check.unknown_dependencies.is_empty()
                && check.unknown_tickets.is_empty()
                && check.unknown_requirements.is_empty()
                && check.unknown_secondary.is_empty(),
            issues_found: std::mem::take(&mut issues),
        },
        coverage_matrix,
        traceability_stats: stats,
        dependency_analysis,
        spec_summary: SpecSummary {
            total_tickets: tasks.tickets.len(),
            total_tasks: tasks.tasks.len(),
            total_requirements: total_reqs,
            total_estimated_hours: total_hours,
            requirement_coverage_percent: percent(covered, total_reqs),
        },
        ready_for_execution: blockers.is_empty(),
        blockers,
        recommendations,
        materialized: None,
    }
}

/// Tasks grouped by depth: wave 0 has no dependencies, wave n depends only on earlier waves.
fn waves(dag: &Dag<String>) -> Vec<Vec<String>> {
    let Ok(order) = dag.topological_order() else { return Vec::new() };
    let mut level: BTreeMap<&String, usize> = BTreeMap::new();
    for k in &order {
        let l = dag.dependencies(k).into_iter().filter_map(|d| level.get(d)).map(|l| l + 1).max().unwrap_or(0);
        level.insert(k, l);
    }
    let mut out: Vec<Vec<String>> = Vec::new();
    for k in &order {
        let l = level[k];
        if out.len() <= l {
            out.resize(l + 1, Vec::new());
        }
        out[l].push(k.clone());
    }
    out
}

/// Validates, analyzes and stores the plan of `tasks` for spec `id`: the SYNC phase without
/// the bookkeeping. Idempotent: calling it again maps every local id to the same stored id and
/// creates nothing (see `materialized.tasks_created`).
pub async fn materialize(
    store: &dyn SpecStore,
    id: SpecId,
    tasks: &TasksOutput,
    requirements: &RequirementsOutput,
) -> Result<SyncOutput, SyncError> {
    let plan = build_plan(tasks)?;
    let mut out = analyze(tasks, requirements);
    if !out.ready_for_execution {
        return Err(SyncError::NotReady { blockers: out.blockers });
    }
    let outcome = store.sync(id, &plan).await?;
    tracing::info!(spec = %id, tickets_created = outcome.tickets_created, tasks_created = outcome.tasks_created, "spec synced");
    out.materialized = Some(outcome);
    Ok(out)
}
