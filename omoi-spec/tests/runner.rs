//! The spec runner end to end over the in-memory store, a `ManualClock` and a phase-routed
//! `ScriptedLlm`.

mod common;

use std::time::Duration;

use common::{Harness, fixture, push, push_happy_path, push_json, routed_llm};
use omoi_core::config::SpecConfig;
use omoi_core::testkit::{Scripted, ScriptedLlm};
use omoi_core::{LlmError, NewSpec, SpecPhase, SpecState, SpecStore, TaskFilter};
use omoi_spec::{BudgetExceeded, RunOutcome, SpecError};
use serde_json::json;

fn new_spec() -> NewSpec {
    NewSpec::new("slugify", "Add a slugify function with tests to the tiny pyutils Python package.")
}

#[tokio::test]
async fn happy_path_runs_every_phase_and_materializes_the_plan() {
    let h = Harness::new(SpecConfig::default());
    push_happy_path(&h.llm);
    let ((id, outcome), elapsed) = h.drive(|r| async move { r.start(new_spec()).await.unwrap() }).await;
    assert_eq!(outcome, RunOutcome::Completed);
    assert_eq!(elapsed, Duration::ZERO, "no retry, no backoff");
    let spec = h.store.get_spec(id).await.unwrap();
    assert_eq!(spec.state, SpecState::Completed);
    assert_eq!(spec.checkpoints.len(), 6);
    assert!(spec.checkpoints.values().all(|c| c.attempts == 1));
    assert_eq!(h.llm.requests().len(), 5, "SYNC makes no model call");

    let tickets = h.store.list_tickets(id).await.unwrap();
    assert_eq!(tickets.iter().map(|t| t.local_id.clone().unwrap()).collect::<Vec<_>>(), ["TKT-001", "TKT-002"]);
    let tasks = h.store.list_tasks(&TaskFilter { spec_id: Some(id), ..TaskFilter::default() }).await.unwrap();
    assert_eq!(tasks.len(), 6);
    let by_local = |l: &str| tasks.iter().find(|t| t.links.local_id.as_deref() == Some(l)).unwrap();
    // Local ids resolved to stored task ids (OmoiOS kept TSK-NNN strings that never resolved).
    assert_eq!(by_local("TSK-005").dependencies.len(), 3);
    assert!(by_local("TSK-005").dependencies.contains(&by_local("TSK-002").id));
    assert_eq!(by_local("TSK-006").def.mode, omoi_core::ExecutionMode::Validation);
    assert_eq!(by_local("TSK-001").links.ticket_id, Some(tickets[0].id));
    assert_eq!(by_local("TSK-001").state, omoi_core::TaskState::Ready);
    assert_eq!(by_local("TSK-002").state, omoi_core::TaskState::Waiting);

    let sync = &spec.checkpoints[&SpecPhase::Sync].output;
    assert_eq!(sync["ready_for_execution"], true);
    assert_eq!(sync["dependency_analysis"]["critical_path"], json!(["TSK-001", "TSK-002", "TSK-005", "TSK-006"]));
    assert_eq!(sync["dependency_analysis"]["critical_path_hours"], json!(6.5));
    assert_eq!(sync["dependency_analysis"]["parallel_opportunities"], json!([["TSK-002", "TSK-003", "TSK-004"]]));
    assert_eq!(sync["materialized"]["tasks_created"], 6);
    assert_eq!(sync["materialized"]["tasks"]["TSK-001"], json!(by_local("TSK-001").id));
}

#[tokio::test]
async fn events_are_emitted_in_order() {
    let h = Harness::new(SpecConfig::default());
    push_json(&h.llm, SpecPhase::Explore, &fixture("explore"));
    push_json(&h.llm, SpecPhase::Prd, &fixture("prd"));
    push_json(&h.llm, SpecPhase::Requirements, &fixture("requirements_flawed"));
    push_json(&h.llm, SpecPhase::Requirements, &fixture("requirements"));
    push_json(&h.llm, SpecPhase::Design, &fixture("design"));
    push_json(&h.llm, SpecPhase::Tasks, &fixture("tasks"));
    h.drive(|r| async move { r.start(new_spec()).await.unwrap() }).await;
    let trail: Vec<String> = h.event_trail().await.into_iter().filter(|e| e.starts_with("spec.")).collect();
    let mut want = vec!["spec.created".to_owned()];
    for phase in ["explore", "prd", "requirements", "design", "tasks", "sync"] {
        want.push(format!("spec.state_changed:running:{phase}"));
        want.push(format!("spec.phase_started:{phase}:1"));
        want.push(format!("spec.phase_evaluated:{phase}:1"));
        if phase == "requirements" {
            want.push("spec.phase_retry:requirements:1".into());
            want.push("spec.phase_started:requirements:2".into());
            want.push("spec.phase_evaluated:requirements:2".into());
        }
        if phase == "sync" {
            want.push("spec.synced".into());
        }
        want.push(format!("spec.phase_completed:{phase}"));
    }
    want.push("spec.state_changed:completed".into());
    assert_eq!(trail, want);
    // The store's ticket and task events come between the sync evaluation and spec.synced.
    let all = h.event_trail().await;
    let synced = all.iter().position(|e| e == "spec.synced").unwrap();
    assert_eq!(all[synced - 8..synced].iter().filter(|e| *e == "task.created").count(), 6);
}

#[tokio::test]
async fn retry_feeds_the_evaluator_feedback_into_the_next_prompt() {
    let h = Harness::new(SpecConfig::default());
    push_json(&h.llm, SpecPhase::Explore, &fixture("explore"));
    push_json(&h.llm, SpecPhase::Prd, &fixture("prd"));
    push_json(&h.llm, SpecPhase::Requirements, &fixture("requirements_flawed"));
    push_json(&h.llm, SpecPhase::Requirements, &fixture("requirements"));
    push_json(&h.llm, SpecPhase::Design, &fixture("design"));
    push_json(&h.llm, SpecPhase::Tasks, &fixture("tasks"));
    let ((id, outcome), elapsed) = h.drive(|r| async move { r.start(new_spec()).await.unwrap() }).await;
    assert_eq!(outcome, RunOutcome::Completed);
    assert_eq!(elapsed, Duration::from_secs(2), "one retry: 2 s backoff on the clock");
    let asked = h.llm.requests_on("phase:requirements");
    assert_eq!(asked.len(), 2);
    let first = asked[0].messages[0].text();
    let second = asked[1].messages[0].text();
    assert!(!first.contains("Feedback on your previous attempt"));
    assert!(second.contains("Feedback on your previous attempt"), "{second}");
    assert!(second.contains("REQ-SLUG-CORE-002 has 1 acceptance criterion, needs ≥2"), "{second}");
    assert!(second.contains("REQ-SLUG-VALID-001 is not in EARS form: IF clause without THEN"), "{second}");
    // The prompt carries earlier phases as summaries, not JSON dumps, and the output schema.
    assert!(first.contains("US-001 (high): as a application developer"), "{first}");
    assert!(first.contains("\"acceptance_criteria\""), "schema included");
    assert_eq!(asked[0].output.as_ref().unwrap().name, "requirements_output");
    let spec = h.store.get_spec(id).await.unwrap();
    assert_eq!(spec.checkpoints[&SpecPhase::Requirements].attempts, 2);
    let retry = h
        .events()
        .await
        .into_iter()
        .find_map(|e| match e.event {
            omoi_core::Event::SpecPhaseRetry { score, feedback, .. } => Some((score, feedback)),
            _ => None,
        })
        .unwrap();
    assert!(retry.0.unwrap() < 0.7);
    assert!(retry.1.contains("REQ-SLUG-CORE-002"));
}

#[tokio::test]
async fn malformed_json_attempt_gives_precise_feedback() {
    let h = Harness::new(SpecConfig::default());
    push_json(&h.llm, SpecPhase::Explore, &fixture("explore"));
    push_json(&h.llm, SpecPhase::Prd, &fixture("prd"));
    push_json(&h.llm, SpecPhase::Requirements, &fixture("requirements"));
    push(
        &h.llm,
        SpecPhase::Design,
        "Here is the design:\n```json\n{\"feature_name\": \"slugify\", \"components\": [\n```",
    );
    let mut wrong = fixture("design");
    wrong["architecture_overview"] = json!(42);
    push_json(&h.llm, SpecPhase::Design, &wrong);
    push_json(&h.llm, SpecPhase::Design, &fixture("design"));
    push_json(&h.llm, SpecPhase::Tasks, &fixture("tasks"));
    let ((id, outcome), elapsed) = h.drive(|r| async move { r.start(new_spec()).await.unwrap() }).await;
    assert_eq!(outcome, RunOutcome::Completed);
    assert_eq!(elapsed, Duration::from_secs(2 + 4), "backoff 2 s then 4 s");
    let asked = h.llm.requests_on("phase:design");
    assert_eq!(asked.len(), 3);
    let second = asked[1].messages[0].text();
    assert!(second.contains("Your previous answer could not be used: invalid JSON: EOF while parsing"), "{second}");
    let third = asked[2].messages[0].text();
    assert!(third.contains("at `architecture_overview`: invalid type: integer `42`, expected a string"), "{third}");
    assert_eq!(h.store.get_spec(id).await.unwrap().checkpoints[&SpecPhase::Design].attempts, 3);
}

#[tokio::test]
async fn resume_after_a_failed_phase_skips_every_passed_phase() {
    let h = Harness::new(SpecConfig::default());
    push_json(&h.llm, SpecPhase::Explore, &fixture("explore"));
    push_json(&h.llm, SpecPhase::Prd, &fixture("prd"));
    for _ in 0..3 {
        push_json(&h.llm, SpecPhase::Requirements, &fixture("requirements_flawed"));
    }
    let id = h.store.create_spec(new_spec()).await.unwrap().id;
    let (err, elapsed) = h.drive(move |r| async move { r.run(id).await.unwrap_err() }).await;
    match &err {
        SpecError::PhaseFailed { phase: SpecPhase::Requirements, attempts: 3, last_score: Some(s), feedback } => {
            assert!(*s < 0.7);
            assert!(feedback.contains("REQ-SLUG-CORE-002"), "{feedback}");
        }
        e => panic!("{e:?}"),
    }
    assert_eq!(elapsed, Duration::from_secs(6));
    let spec = h.store.get_spec(id).await.unwrap();
    assert_eq!(spec.state, SpecState::Failed { phase: SpecPhase::Requirements });
    assert_eq!(spec.checkpoints.keys().copied().collect::<Vec<_>>(), [SpecPhase::Explore, SpecPhase::Prd]);
    assert!(h.event_trail().await.contains(&"spec.phase_failed:requirements".to_owned()));

    // A fresh runner (as after a restart) with a fresh model picks up at requirements.
    let fresh = Harness::with(h.clock.clone(), h.store.clone(), routed_llm(), SpecConfig::default());
    push_json(&fresh.llm, SpecPhase::Requirements, &fixture("requirements"));
    push_json(&fresh.llm, SpecPhase::Design, &fixture("design"));
    push_json(&fresh.llm, SpecPhase::Tasks, &fixture("tasks"));
    let (outcome, _) = fresh.drive(move |r| async move { r.run(id).await.unwrap() }).await;
    assert_eq!(outcome, RunOutcome::Completed);
    let phases: Vec<String> = fresh.llm.requests().iter().map(common::phase_of).collect();
    assert_eq!(phases, ["requirements", "design", "tasks"], "no passed phase is asked again");
    let spec = h.store.get_spec(id).await.unwrap();
    assert_eq!(spec.state, SpecState::Completed);
    // The resumed prompt still sees the earlier phases through their checkpoints.
    assert!(fresh.llm.requests()[0].messages[0].text().contains("## explore"));
    // Running a completed spec again does nothing.
    let (again, _) = fresh.drive(move |r| async move { r.run(id).await.unwrap() }).await;
    assert_eq!(again, RunOutcome::Completed);
    assert_eq!(fresh.llm.requests().len(), 3);
}

#[tokio::test]
async fn token_budget_refuses_the_call_before_it_is_made() {
    let config = SpecConfig { max_tokens: Some(500), ..SpecConfig::default() };
    let h = Harness::new(config);
    push_happy_path(&h.llm);
    let (err, _) = h.drive(|r| async move { r.start(new_spec()).await.unwrap_err() }).await;
    match err {
        SpecError::Budget {
            phase: SpecPhase::Explore,
            source: BudgetExceeded::Tokens { spent: 0, limit: 500, requested },
        } => {
            assert!(requested > 500, "the prompt alone is over the limit: {requested}");
        }
        e => panic!("{e:?}"),
    }
    assert!(h.llm.requests().is_empty(), "no model call was made");
    let spec = h.store.list_specs().await.unwrap().remove(0);
    assert_eq!(spec.state, SpecState::Failed { phase: SpecPhase::Explore });
}

#[tokio::test]
async fn cost_budget_spans_resumes_through_persisted_usage() {
    let clock = omoi_core::testkit::ManualClock::new();
    let store = std::sync::Arc::new(omoi_store::InMemoryStore::with_clock(clock.clone()));
    let llm = std::sync::Arc::new(omoi_core::testkit::ScriptedLlm::new().with_cost_per_token(1e-4));
    push_happy_path(&llm);
    let h =
        Harness::with(clock.clone(), store.clone(), llm, SpecConfig { max_cost_usd: 0.05, ..SpecConfig::default() });
    let (err, _) = h.drive(|r| async move { r.start(new_spec()).await.unwrap_err() }).await;
    let spent = match err {
        SpecError::Budget { phase: SpecPhase::Prd, source: BudgetExceeded::Cost { spent_usd, limit_usd } } => {
            assert_eq!(limit_usd, 0.05);
            spent_usd
        }
        e => panic!("{e:?}"),
    };
    assert_eq!(h.llm.requests().len(), 1, "explore ran; prd was refused before its call");
    let spec = store.list_specs().await.unwrap().remove(0);
    assert!(
        spec.usage.cost_usd > 0.05 && (spec.usage.cost_usd - spent).abs() < 1e-12,
        "usage persisted: {:?}",
        spec.usage
    );
    assert_eq!(spec.checkpoints[&SpecPhase::Explore].usage, spec.usage);

    // A fresh runner whose limit is just above the persisted spend is still refused: it starts
    // from what was spent, not from zero.
    let tight = Harness::with(
        clock.clone(),
        store.clone(),
        routed_llm(),
        SpecConfig { max_cost_usd: spent, ..SpecConfig::default() },
    );
    push_json(&tight.llm, SpecPhase::Prd, &fixture("prd"));
    let id = spec.id;
    let (err, _) = tight.drive(move |r| async move { r.run(id).await.unwrap_err() }).await;
    assert!(matches!(err, SpecError::Budget { source: BudgetExceeded::Cost { .. }, .. }), "{err:?}");
    assert!(tight.llm.requests().is_empty());

    // With room in the budget the resumed run finishes.
    let roomy = Harness::with(clock, store.clone(), routed_llm(), SpecConfig::default());
    for (phase, name) in [
        (SpecPhase::Prd, "prd"),
        (SpecPhase::Requirements, "requirements"),
        (SpecPhase::Design, "design"),
        (SpecPhase::Tasks, "tasks"),
    ] {
        push_json(&roomy.llm, phase, &fixture(name));
    }
    let (outcome, _) = roomy.drive(move |r| async move { r.run(id).await.unwrap() }).await;
    assert_eq!(outcome, RunOutcome::Completed);
}

#[tokio::test]
async fn human_gate_approve_and_reject() {
    let h = Harness::new(SpecConfig { approval_gates: vec![SpecPhase::Requirements], ..SpecConfig::default() });
    push_happy_path(&h.llm);
    push_json(&h.llm, SpecPhase::Requirements, &fixture("requirements"));
    let ((id, outcome), _) = h.drive(|r| async move { r.start(new_spec()).await.unwrap() }).await;
    assert_eq!(outcome, RunOutcome::AwaitingApproval(SpecPhase::Requirements));
    let spec = h.store.get_spec(id).await.unwrap();
    assert_eq!(spec.state, SpecState::AwaitingApproval { phase: SpecPhase::Requirements });
    assert!(h.llm.requests_on("phase:design").is_empty(), "nothing runs past the gate");
    // Running again while waiting does nothing.
    let (same, _) = h.drive(move |r| async move { r.run(id).await.unwrap() }).await;
    assert_eq!(same, RunOutcome::AwaitingApproval(SpecPhase::Requirements));

    let (rejected, _) = h
        .drive(
            move |r| async move { r.reject(id, "Split REQ-SLUG-CORE-001 into casing and hyphenation.").await.unwrap() },
        )
        .await;
    assert_eq!(rejected, RunOutcome::AwaitingApproval(SpecPhase::Requirements), "the re-run stops at the gate again");
    let asked = h.llm.requests_on("phase:requirements");
    assert_eq!(asked.len(), 2);
    let prompt = asked[1].messages[0].text();
    assert!(prompt.contains("A reviewer rejected the previous requirements output"), "{prompt}");
    assert!(prompt.contains("Split REQ-SLUG-CORE-001 into casing and hyphenation."), "{prompt}");

    let (approved, _) = h.drive(move |r| async move { r.approve(id).await.unwrap() }).await;
    assert_eq!(approved, RunOutcome::Completed);
    assert_eq!(h.llm.requests_on("phase:design").len(), 1);
    let (err, _) = h.drive(move |r| async move { r.approve(id).await.unwrap_err() }).await;
    assert!(matches!(err, SpecError::NotAwaitingApproval { state: SpecState::Completed }), "{err:?}");
    let trail = h.event_trail().await;
    assert!(trail.contains(&"spec.state_changed:awaiting_approval:requirements".to_owned()));
}

#[tokio::test]
async fn transient_errors_are_retried_and_permanent_ones_fail_at_once() {
    let h = Harness::new(SpecConfig::default());
    h.llm.push_to(
        &ScriptedLlm::phase_track(SpecPhase::Explore),
        Scripted::Error(LlmError::RateLimited { retry_after: None, message: "slow down".into() }),
    );
    push_happy_path(&h.llm);
    let ((id, outcome), elapsed) = h.drive(|r| async move { r.start(new_spec()).await.unwrap() }).await;
    assert_eq!(outcome, RunOutcome::Completed);
    assert_eq!(elapsed, Duration::from_secs(2));
    assert_eq!(h.store.get_spec(id).await.unwrap().checkpoints[&SpecPhase::Explore].attempts, 2);

    let h = Harness::new(SpecConfig::default());
    h.llm.push_to(&ScriptedLlm::phase_track(SpecPhase::Explore), Scripted::Error(LlmError::Auth("bad key".into())));
    let (err, elapsed) = h.drive(|r| async move { r.start(new_spec()).await.unwrap_err() }).await;
    assert!(matches!(err, SpecError::Model { phase: SpecPhase::Explore, source: LlmError::Auth(_) }), "{err:?}");
    assert_eq!(elapsed, Duration::ZERO);
    assert_eq!(h.llm.requests().len(), 1);
}

#[tokio::test]
async fn llm_judge_blends_into_the_score_and_its_feedback_drives_the_retry() {
    let h = Harness::new(SpecConfig::default());
    let judge_llm = std::sync::Arc::new(omoi_core::testkit::ScriptedLlm::new());
    judge_llm.push_json(&json!({"score": 0.2, "feedback": "key_files misses tests/conftest.py"}));
    judge_llm.push_json(&json!({"score": 0.9, "feedback": ""}));
    for _ in 0..5 {
        judge_llm.push_json(&json!({"score": 1.0, "feedback": ""}));
    }
    let runner = std::sync::Arc::new(
        omoi_spec::SpecRunner::new(
            h.store.clone() as std::sync::Arc<dyn SpecStore>,
            h.store.clone() as std::sync::Arc<dyn omoi_core::EventStore>,
            h.clock.clone(),
            std::sync::Arc::new(omoi_spec::StructuredExecutor::new(h.llm.clone())),
            SpecConfig::default(),
        )
        .with_judge(std::sync::Arc::new(omoi_spec::LlmJudge::new(judge_llm.clone())), 0.5),
    );
    push_json(&h.llm, SpecPhase::Explore, &fixture("explore"));
    push_happy_path(&h.llm);
    let id = h.store.create_spec(new_spec()).await.unwrap().id;
    let run = tokio::spawn(async move { runner.run(id).await });
    while !run.is_finished() {
        if h.clock.sleepers() > 0 {
            h.clock.advance(Duration::from_secs(1));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(run.await.unwrap().unwrap(), RunOutcome::Completed);
    let asked = h.llm.requests_on("phase:explore");
    assert_eq!(asked.len(), 2, "judged 0.5 · 1.0 + 0.5 · 0.2 = 0.6 < 0.7: retried");
    assert!(asked[1].messages[0].text().contains("llm_judge scored 0.20"), "{}", asked[1].messages[0].text());
    assert!(asked[1].messages[0].text().contains("key_files misses tests/conftest.py"));
    let spec = h.store.get_spec(id).await.unwrap();
    assert!((spec.checkpoints[&SpecPhase::Explore].score - 0.95).abs() < 1e-9);
    assert_eq!(
        judge_llm.requests().len(),
        6,
        "explore twice, then prd, requirements, design, tasks once; sync is not judged"
    );
    assert!(judge_llm.requests()[0].system.as_deref().unwrap().contains("Reviewed phase: explore"));
}

#[tokio::test]
async fn an_empty_idea_or_title_is_refused_before_anything_is_stored_or_asked() {
    let h = Harness::new(SpecConfig::default());
    push_happy_path(&h.llm);
    for spec in [NewSpec::new("slugify", "   \n"), NewSpec::new(" ", "Add slugify")] {
        let err = h.runner.start(spec).await.unwrap_err();
        assert!(matches!(err, SpecError::Store(omoi_core::StoreError::InvalidInput(_))), "{err:?}");
    }
    assert!(h.llm.requests().is_empty(), "no model call was made");
    assert!(h.store.list_specs().await.unwrap().is_empty(), "nothing was stored");
}

#[tokio::test]
async fn approval_timeout_expires_a_gate_and_running_again_reopens_it() {
    let config = SpecConfig {
        approval_gates: vec![SpecPhase::Requirements],
        approval_timeout: Duration::from_secs(600),
        ..SpecConfig::default()
    };
    let h = Harness::new(config);
    push_happy_path(&h.llm);
    let ((id, outcome), _) = h.drive(|r| async move { r.start(new_spec()).await.unwrap() }).await;
    assert_eq!(outcome, RunOutcome::AwaitingApproval(SpecPhase::Requirements));
    // Inside the timeout nothing expires.
    h.clock.advance(Duration::from_secs(599));
    assert!(h.runner.expire_approvals().await.unwrap().is_empty());
    h.clock.advance(Duration::from_secs(1));
    let (err, _) = h.drive(move |r| async move { r.approve(id).await.unwrap_err() }).await;
    match err {
        SpecError::ApprovalTimedOut { phase, waited, limit } => {
            assert_eq!((phase, limit), (SpecPhase::Requirements, Duration::from_secs(600)));
            assert!(waited >= limit);
        }
        other => panic!("expected an approval timeout, got {other:?}"),
    }
    assert_eq!(h.store.get_spec(id).await.unwrap().state, SpecState::Failed { phase: SpecPhase::Requirements });
    assert!(h.llm.requests_on("phase:design").is_empty(), "an expired gate lets nothing through");
    let trail = h.event_trail().await;
    assert!(trail.iter().any(|e| e.starts_with("spec.phase_failed")), "{trail:?}");
    // Running again re-opens the gate (the phase is checkpointed, not re-asked), with a fresh timer.
    let (again, _) = h.drive(move |r| async move { r.run(id).await.unwrap() }).await;
    assert_eq!(again, RunOutcome::AwaitingApproval(SpecPhase::Requirements));
    assert_eq!(h.llm.requests_on("phase:requirements").len(), 1);
    h.clock.advance(Duration::from_secs(700));
    assert_eq!(h.runner.expire_approvals().await.unwrap(), vec![id], "the sweep expires it too");
    assert_eq!(h.store.get_spec(id).await.unwrap().state, SpecState::Failed { phase: SpecPhase::Requirements });
}
