//! The runner over the SQLite store: a run that fails mid-pipeline resumes from a reopened
//! file, with a fresh runner and model, asking no passed phase again; sync stays idempotent.

mod common;

use std::sync::Arc;

use common::{Harness, fixture, phase_of, push_happy_path, push_json, routed_llm};
use omoi_core::config::SpecConfig;
use omoi_core::testkit::ManualClock;
use omoi_core::{NewSpec, SpecPhase, SpecState, SpecStore, TaskFilter};
use omoi_spec::output::{RequirementsOutput, TasksOutput};
use omoi_spec::{RunOutcome, SpecError};
use omoi_store::SqliteStore;

async fn open(path: &std::path::Path, clock: Arc<ManualClock>) -> Arc<SqliteStore> {
    Arc::new(SqliteStore::builder(path).clock(clock).open().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_from_a_reopened_sqlite_file_skips_passed_phases() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spec.db");
    let clock = ManualClock::new();
    let id = {
        let h = Harness::with(clock.clone(), open(&path, clock.clone()).await, routed_llm(), SpecConfig::default());
        push_json(&h.llm, SpecPhase::Explore, &fixture("explore"));
        push_json(&h.llm, SpecPhase::Prd, &fixture("prd"));
        push_json(&h.llm, SpecPhase::Requirements, &fixture("requirements"));
        for _ in 0..3 {
            push_json(&h.llm, SpecPhase::Design, &serde_json::json!({"feature_name": "slugify"}));
        }
        let id = h.store.create_spec(NewSpec::new("slugify", "Add slugify to pyutils")).await.unwrap().id;
        let (err, _) = h.drive(move |r| async move { r.run(id).await.unwrap_err() }).await;
        assert!(matches!(err, SpecError::PhaseFailed { phase: SpecPhase::Design, attempts: 3, .. }), "{err:?}");
        let feedback = h.llm.requests_on("phase:design")[1].messages[0].text();
        assert!(feedback.contains("missing field `architecture_overview`"), "{feedback}");
        id
    };
    // Another process: the file reopened, a new runner, a new model.
    let h = Harness::with(clock.clone(), open(&path, clock.clone()).await, routed_llm(), SpecConfig::default());
    let spec = h.store.get_spec(id).await.unwrap();
    assert_eq!(spec.state, SpecState::Failed { phase: SpecPhase::Design });
    assert_eq!(spec.checkpoints.len(), 3);
    push_json(&h.llm, SpecPhase::Design, &fixture("design"));
    push_json(&h.llm, SpecPhase::Tasks, &fixture("tasks"));
    let (outcome, _) = h.drive(move |r| async move { r.run(id).await.unwrap() }).await;
    assert_eq!(outcome, RunOutcome::Completed);
    let asked: Vec<String> = h.llm.requests().iter().map(phase_of).collect();
    assert_eq!(asked, ["design", "tasks"]);
    let tasks = h.store.list_tasks(&TaskFilter { spec_id: Some(id), ..TaskFilter::default() }).await.unwrap();
    assert_eq!(tasks.len(), 6);
    let trail = h.event_trail().await;
    assert!(trail.contains(&"spec.phase_failed:design".to_owned()));
    assert_eq!(
        trail.iter().filter(|e| *e == "spec.phase_started:explore:1").count(),
        1,
        "explore ran once over both processes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_happy_path_and_idempotent_sync() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new();
    let store = open(&dir.path().join("spec.db"), clock.clone()).await;
    let h = Harness::with(clock, store.clone(), routed_llm(), SpecConfig::default());
    push_happy_path(&h.llm);
    let ((id, outcome), _) = h.drive(|r| async move { r.start(NewSpec::new("slugify", "idea")).await.unwrap() }).await;
    assert_eq!(outcome, RunOutcome::Completed);
    let spec = store.get_spec(id).await.unwrap();
    let tasks: TasksOutput = serde_json::from_value(spec.checkpoints[&SpecPhase::Tasks].output.clone()).unwrap();
    let reqs: RequirementsOutput =
        serde_json::from_value(spec.checkpoints[&SpecPhase::Requirements].output.clone()).unwrap();
    let again = omoi_spec::sync::materialize(&*store, id, &tasks, &reqs).await.unwrap().materialized.unwrap();
    assert_eq!((again.tickets_created, again.tasks_created), (0, 0));
    let first: serde_json::Value = spec.checkpoints[&SpecPhase::Sync].output["materialized"]["tasks"].clone();
    assert_eq!(serde_json::to_value(&again.tasks).unwrap(), first, "same local ids, same task ids");
}
