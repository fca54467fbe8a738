//! SYNC: plan validation that names the culprits, coverage, and idempotent materialization.

mod common;

use std::sync::Arc;

use common::fixture;
use omoi_core::{NewSpec, SpecStore, TaskFilter, TaskStore};
use omoi_spec::SyncError;
use omoi_spec::output::{CoverageStatus, RequirementsOutput, TasksOutput};
use omoi_spec::sync::{analyze, build_plan, check_plan, materialize};
use omoi_store::InMemoryStore;
use serde_json::json;

fn tasks() -> TasksOutput {
    serde_json::from_value(fixture("tasks")).unwrap()
}

fn requirements() -> RequirementsOutput {
    serde_json::from_value(fixture("requirements")).unwrap()
}

#[tokio::test]
async fn sync_is_idempotent() {
    let store = Arc::new(InMemoryStore::new());
    let id = store.create_spec(NewSpec::new("slugify", "idea")).await.unwrap().id;
    let first = materialize(&*store, id, &tasks(), &requirements()).await.unwrap();
    let m1 = first.materialized.unwrap();
    assert_eq!((m1.tickets_created, m1.tasks_created), (2, 6));
    let second = materialize(&*store, id, &tasks(), &requirements()).await.unwrap();
    let m2 = second.materialized.unwrap();
    assert_eq!((m2.tickets_created, m2.tasks_created), (0, 0), "nothing new the second time");
    assert_eq!(m1.tasks, m2.tasks, "same local id → same task id");
    assert_eq!(m1.tickets, m2.tickets);
    assert_eq!(store.list_tasks(&TaskFilter { spec_id: Some(id), ..TaskFilter::default() }).await.unwrap().len(), 6);
    assert_eq!(store.list_tickets(id).await.unwrap().len(), 2);
}

#[test]
fn cycles_are_rejected_naming_the_path() {
    let mut t = tasks();
    t.tasks[0].dependencies.depends_on = vec!["TSK-005".into()];
    match build_plan(&t).unwrap_err() {
        SyncError::Cycle { path } => {
            assert_eq!(path.first(), path.last());
            for id in ["TSK-001", "TSK-005"] {
                assert!(path.contains(&id.to_owned()), "{path:?}");
            }
            let msg = SyncError::Cycle { path: path.clone() }.to_string();
            assert!(msg.starts_with("dependency cycle: TSK-"), "{msg}");
        }
        e => panic!("{e}"),
    }
    let check = check_plan(&t, None);
    assert!(check.cycle.is_some());
    let out = analyze(&t, &requirements());
    assert!(!out.validation_results.no_circular_dependencies);
    assert!(!out.ready_for_execution);
    assert!(out.dependency_analysis.critical_path.is_empty());
}

#[test]
fn unknown_local_ids_are_rejected_naming_each_one() {
    let mut t = tasks();
    t.tasks[1].dependencies.depends_on = vec!["TSK-001".into(), "TSK-042".into()];
    t.tasks[4].dependencies.depends_on.push("TSK-777".into());
    let err = build_plan(&t).unwrap_err();
    let refs: Vec<(String, String)> = err.unknown_refs().iter().map(|r| (r.from.clone(), r.to.clone())).collect();
    assert_eq!(refs, [("TSK-002".to_owned(), "TSK-042".to_owned()), ("TSK-005".to_owned(), "TSK-777".to_owned())]);
    assert_eq!(err.to_string(), "unknown local ids (task → missing dependency): TSK-002 → TSK-042, TSK-005 → TSK-777");
    let mut t = tasks();
    t.tasks[3].parent_ticket = "TKT-404".into();
    assert!(matches!(build_plan(&t).unwrap_err(), SyncError::UnknownTickets { refs } if refs[0].to == "TKT-404"));
    let mut t = tasks();
    t.tasks[3].id = "TSK-001".into();
    assert!(matches!(build_plan(&t).unwrap_err(), SyncError::DuplicateIds { ids } if ids == ["TSK-001"]));
}

#[tokio::test]
async fn a_rejected_plan_creates_nothing() {
    let store = Arc::new(InMemoryStore::new());
    let id = store.create_spec(NewSpec::new("slugify", "idea")).await.unwrap().id;
    let mut t = tasks();
    t.tasks[2].dependencies.depends_on = vec!["TSK-003".into()];
    assert!(matches!(materialize(&*store, id, &t, &requirements()).await, Err(SyncError::Cycle { .. })));
    let mut r = requirements();
    r.requirements.push(serde_json::from_value(json!({
        "id": "REQ-SLUG-I18N-001", "title": "Cyrillic", "type": "functional", "priority": "low",
        "text": "WHEN the input is Cyrillic, the slugify function SHALL transliterate it", "acceptance_criteria": ["a", "b"]
    })).unwrap());
    match materialize(&*store, id, &tasks(), &r).await.unwrap_err() {
        SyncError::NotReady { blockers } => {
            assert!(
                blockers.iter().any(|b| b.starts_with("REQ-SLUG-I18N-001 is not addressed by any task")),
                "{blockers:?}"
            )
        }
        e => panic!("{e}"),
    }
    assert!(store.list_tasks(&TaskFilter { spec_id: Some(id), ..TaskFilter::default() }).await.unwrap().is_empty());
    assert!(store.list_tickets(id).await.unwrap().is_empty());
}

#[test]
fn coverage_matrix_traces_requirements_to_tasks() {
    let mut t = tasks();
    // CORE-002 only listed by the tickets: partially covered.
    for task in &mut t.tasks {
        task.requirements_addressed.retain(|r| r != "REQ-SLUG-CORE-002");
    }
    let out = analyze(&t, &requirements());
    let row = |id: &str| out.coverage_matrix.iter().find(|c| c.requirement_id == id).unwrap().clone();
    assert_eq!(row("REQ-SLUG-CORE-002").status, CoverageStatus::PartiallyCovered);
    assert_eq!(row("REQ-SLUG-CORE-002").covered_by_tickets, ["TKT-001", "TKT-002"]);
    assert_eq!(row("REQ-SLUG-LEN-001").status, CoverageStatus::FullyCovered);
    assert_eq!(row("REQ-SLUG-LEN-001").covered_by_tasks, ["TSK-003", "TSK-005", "TSK-006"]);
    assert_eq!(out.traceability_stats.requirements.covered, 4);
    assert_eq!(out.spec_summary.requirement_coverage_percent, 80.0);
    assert!(!out.validation_results.all_requirements_covered);
    assert!(out.blockers.iter().any(|b| b.contains("REQ-SLUG-CORE-002")));
    assert!(out.recommendations.iter().any(|r| r.contains("REQ-SLUG-CORE-002 is listed by TKT-001, TKT-002")));
    assert_eq!(out.spec_summary.total_estimated_hours, 8.0);
    assert_eq!(out.traceability_stats.dependencies.total_edges, 7);
}

#[test]
fn planned_tasks_carry_mode_phase_files_and_priority() {
    let plan = build_plan(&tasks()).unwrap();
    let t5 = plan.tasks.iter().find(|t| t.local_id == "TSK-005").unwrap();
    assert_eq!(t5.def.mode, omoi_core::ExecutionMode::Implementation);
    assert_eq!(t5.def.phase, omoi_core::WorkPhase::Testing);
    assert_eq!(t5.def.owned_files, ["tests/test_slugify.py"]);
    assert_eq!(t5.def.priority, omoi_core::Priority::High, "inherited from TKT-002");
    assert_eq!(t5.def.estimate_hours, Some(2.0));
    assert_eq!(t5.ticket.as_deref(), Some("TKT-002"));
    assert_eq!(t5.def.input["requirements_addressed"].as_array().unwrap().len(), 5);
}
