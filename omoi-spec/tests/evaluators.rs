//! Structural evaluators on realistic good and bad phase outputs.

mod common;

use common::fixture;
use omoi_core::SpecPhase;
use omoi_spec::output::{PhaseOutput, PhaseOutputs, TasksOutput};
use omoi_spec::{Evaluation, Evaluator, StructuralEvaluator};
use serde_json::{Value, json};

fn parse(phase: SpecPhase, v: &Value) -> PhaseOutput {
    PhaseOutput::parse(phase, v).unwrap()
}

fn eval(phase: SpecPhase, v: &Value) -> Evaluation {
    StructuralEvaluator.evaluate(&parse(phase, v), &PhaseOutputs::new())
}

fn with_requirements() -> PhaseOutputs {
    let mut o = PhaseOutputs::new();
    o.insert(parse(SpecPhase::Requirements, &fixture("requirements")));
    o
}

fn approx(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn weights_of_every_phase_add_up_to_one() {
    let sync = omoi_spec::sync::analyze(
        &serde_json::from_value(fixture("tasks")).unwrap(),
        &serde_json::from_value(fixture("requirements")).unwrap(),
    );
    let outputs = [
        parse(SpecPhase::Explore, &fixture("explore")),
        parse(SpecPhase::Prd, &fixture("prd")),
        parse(SpecPhase::Requirements, &fixture("requirements")),
        parse(SpecPhase::Design, &fixture("design")),
        parse(SpecPhase::Tasks, &fixture("tasks")),
        PhaseOutput::Sync(sync),
    ];
    for o in &outputs {
        let e = StructuralEvaluator.evaluate(o, &with_requirements());
        assert!(approx(e.total_weight(), 1.0), "{}: weights sum to {}", o.phase(), e.total_weight());
        let recomputed: f64 = e.criteria.iter().map(|c| c.weight * c.score).sum();
        assert!(approx(e.score, recomputed), "{}", o.phase());
    }
}

#[test]
fn good_fixtures_pass_every_phase() {
    let expected = [
        (SpecPhase::Explore, "explore", 1.0),
        (SpecPhase::Prd, "prd", 1.0),
        // REQ-SLUG-CORE-003 is ubiquitous: half of its EARS share.
        (SpecPhase::Requirements, "requirements", 1.0 - 0.15 * 0.1),
        // No data models and no endpoints: 0.3 of 0.15 each, as in OmoiOS.
        (SpecPhase::Design, "design", 1.0 - 2.0 * 0.15 * 0.7),
        (SpecPhase::Tasks, "tasks", 1.0),
    ];
    for (phase, name, want) in expected {
        let e = StructuralEvaluator.evaluate(&parse(phase, &fixture(name)), &with_requirements());
        assert!(approx(e.score, want), "{phase}: {} != {want}\n{}", e.score, e.feedback(0.7));
        assert!(e.passes(0.7), "{phase}");
        assert!(e.blocking.is_empty(), "{phase}: {:?}", e.blocking);
    }
}

#[test]
fn flawed_requirements_fail_with_named_items() {
    let e = eval(SpecPhase::Requirements, &fixture("requirements_flawed"));
    assert!(!e.passes(0.7), "score {}", e.score);
    assert!(approx(e.subscore("acceptance_criteria").unwrap(), 2.0 / 5.0));
    assert!(approx(e.subscore("normative_language").unwrap(), 4.0 / 5.0));
    // Event, event, none (no modal), optional, none (IF without THEN): 3 of 5.
    assert!(approx(e.subscore("ears_format").unwrap(), 3.0 / 5.0));
    assert!(approx(e.subscore("id_format").unwrap(), 4.0 / 5.0));
    assert!(approx(e.subscore("assumptions").unwrap(), 0.5));
    assert!(approx(e.score, 0.025 + 0.20 + 0.16 + 0.09 + 0.08 + 0.04 + 0.075), "{}", e.score);
    let fb = e.feedback(0.7);
    assert!(fb.contains("REQ-SLUG-CORE-002 has 1 acceptance criterion, needs ≥2"), "{fb}");
    assert!(fb.contains("REQ-SLUG-CORE-003 has no modal verb"), "{fb}");
    assert!(fb.contains("REQ-SLUG-VALID-001 is not in EARS form: IF clause without THEN"), "{fb}");
    assert!(fb.contains("\"REQ-SLUG-LEN-1\" does not match REQ-<FEATURE>-<CATEGORY>-NNN"), "{fb}");
    // Largest loss first: acceptance criteria (0.12 lost) before normative language (0.04).
    assert!(fb.find("acceptance_criteria scored").unwrap() < fb.find("normative_language scored").unwrap(), "{fb}");
}

#[test]
fn ubiquitous_requirements_get_half_ears_credit() {
    let mut v = fixture("requirements");
    v["requirements"][0]["text"] = json!("The slugify function SHALL return lower-case text");
    let e = eval(SpecPhase::Requirements, &v);
    // Now two of five are ubiquitous (CORE-001 and CORE-003): 3 + 2 × 0.5.
    assert!(approx(e.subscore("ears_format").unwrap(), 4.0 / 5.0), "{:?}", e.criterion("ears_format"));
    v["requirements"][0]["text"] = json!("The slugify function SHALL return lower-case text etc");
    let e = eval(SpecPhase::Requirements, &v);
    assert!(e.criterion("normative_language").unwrap().issues[0].contains("vague wording: etc"));
}

#[test]
fn duplicate_requirement_ids_block() {
    let mut v = fixture("requirements");
    v["requirements"][1]["id"] = json!("REQ-SLUG-CORE-001");
    let e = eval(SpecPhase::Requirements, &v);
    assert!(!e.passes(0.0));
    assert!(e.blocking[0].contains("REQ-SLUG-CORE-001 appears 2 times"), "{:?}", e.blocking);
}

fn tasks() -> Value {
    fixture("tasks")
}

fn eval_tasks(v: &Value) -> Evaluation {
    StructuralEvaluator.evaluate(&parse(SpecPhase::Tasks, v), &with_requirements())
}

#[test]
fn any_cycle_zeroes_the_cycle_criterion_and_blocks() {
    let mut v = tasks();
    v["tasks"][0]["dependencies"]["depends_on"] = json!(["TSK-006"]);
    let e = eval_tasks(&v);
    assert_eq!(e.subscore("circular_deps"), Some(0.0));
    assert!(e.score >= 0.7, "a cycle alone costs 0.15: {}", e.score);
    assert!(!e.passes(0.7), "but it blocks");
    let cycle = e.blocking.iter().find(|b| b.starts_with("dependency cycle")).unwrap();
    assert!(cycle.contains("TSK-001") && cycle.contains("TSK-006"), "{cycle}");
}

#[test]
fn unknown_dependencies_cost_point_two_each_and_block() {
    let mut v = tasks();
    v["tasks"][1]["dependencies"]["depends_on"] = json!(["TSK-001", "TSK-042"]);
    v["tasks"][2]["dependencies"]["depends_on"] = json!(["TSK-099"]);
    let e = eval_tasks(&v);
    assert!(approx(e.subscore("dependencies").unwrap(), 0.6));
    assert!(e.blocking.contains(&"TSK-002 depends on unknown task TSK-042".to_owned()), "{:?}", e.blocking);
    assert!(e.blocking.contains(&"TSK-003 depends on unknown task TSK-099".to_owned()));
}

#[test]
fn atomicity_files_parents_and_totals_are_scored_per_task() {
    let mut v = tasks();
    v["tasks"][0]["estimated_hours"] = json!(6);
    v["tasks"][1]["estimated_hours"] = json!(0);
    v["tasks"][2]["files_to_modify"] = json!([]);
    v["tasks"][3]["parent_ticket"] = json!("");
    v["total_estimated_hours"] = json!(3);
    let e = eval_tasks(&v);
    assert!(approx(e.subscore("atomicity").unwrap(), 4.0 / 6.0));
    assert!(approx(e.subscore("files_specified").unwrap(), 5.0 / 6.0));
    assert!(approx(e.subscore("parent_tickets").unwrap(), 5.0 / 6.0));
    assert!(approx(e.subscore("total_hours").unwrap(), 0.75));
    let fb = e.feedback(0.7);
    assert!(fb.contains("TSK-001 is estimated at 6h"), "{fb}");
    assert!(fb.contains("TSK-003 lists no files"), "{fb}");
    assert!(fb.contains("TSK-004 has no parent_ticket"), "{fb}");
}

#[test]
fn uncovered_and_unknown_requirements_block_the_tasks_phase() {
    let mut v = tasks();
    // Only TSK-004 addressed VALID-001 besides the test tasks; remove it everywhere.
    for t in v["tasks"].as_array_mut().unwrap() {
        let reqs: Vec<Value> = t["requirements_addressed"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| *r != "REQ-SLUG-VALID-001")
            .cloned()
            .collect();
        t["requirements_addressed"] = Value::Array(reqs);
    }
    v["tasks"][0]["requirements_addressed"] = json!(["REQ-SLUG-CORE-001", "REQ-SLUG-NOPE-001"]);
    let e = eval_tasks(&v);
    assert!(
        e.blocking.iter().any(|b| b.starts_with("REQ-SLUG-VALID-001 is not addressed by any task")),
        "{:?}",
        e.blocking
    );
    assert!(e.blocking.contains(&"TSK-001 addresses unknown requirement REQ-SLUG-NOPE-001".to_owned()));
    // Without the requirements output there is nothing to trace against.
    let alone = StructuralEvaluator.evaluate(&parse(SpecPhase::Tasks, &v), &PhaseOutputs::new());
    assert!(alone.blocking.is_empty(), "{:?}", alone.blocking);
}

#[test]
fn empty_and_thin_outputs_score_low() {
    let explore = json!({
        "codebase_summary": "a lib", "tech_stack": ["python"], "key_files": [],
        "discovery_questions": [{"category": "technical context", "questions": ["which python?"]}],
        "feature_summary": {"name": "slugify", "problem_statement": "", "scope_in": [], "scope_out": []}
    });
    let e = eval(SpecPhase::Explore, &explore);
    assert!(e.score < 0.3, "{}", e.score);
    assert_eq!(e.subscore("key_files"), Some(0.0));
    // Category names match case- and punctuation-insensitively.
    assert!(approx(e.subscore("discovery_questions").unwrap(), 0.2));
    assert!(e.feedback(0.7).contains("codebase_summary is too brief (5 characters"));

    let tasks = TasksOutput::default();
    let e = StructuralEvaluator.evaluate(&PhaseOutput::Tasks(tasks), &PhaseOutputs::new());
    assert!(e.blocking.contains(&"tasks is empty".to_owned()));
    assert!(!e.passes(0.0));
}

#[test]
fn prd_and_design_subscores() {
    let mut prd = fixture("prd");
    prd["user_stories"][0]["id"] = json!("story-1");
    prd["user_stories"][1]["acceptance_criteria"] = json!([]);
    prd["risks"] = json!([]);
    let e = eval(SpecPhase::Prd, &prd);
    assert!(approx(e.subscore("user_stories_id").unwrap(), 0.75));
    assert!(approx(e.subscore("user_stories_acceptance").unwrap(), 0.75));
    assert!(approx(e.subscore("risks").unwrap(), 0.3));

    let mut design = fixture("design");
    design["security_considerations"] = json!(["one"]);
    design["architecture_overview"] = json!("short");
    let e = eval(SpecPhase::Design, &design);
    assert!(approx(e.subscore("security_considerations").unwrap(), 0.7));
    assert!(approx(e.subscore("architecture_overview").unwrap(), 0.5));
    assert!(!e.passes(0.7), "{}", e.score);
}

#[test]
fn malformed_output_is_a_precise_mismatch() {
    let mut v = fixture("requirements");
    v["requirements"][1]["priority"] = json!("High");
    let err = PhaseOutput::parse(SpecPhase::Requirements, &v).unwrap_err();
    let reason = match err {
        omoi_core::LlmError::OutputMismatch { reason, .. } => reason,
        e => panic!("{e}"),
    };
    assert!(reason.contains("at `requirements[1].priority`"), "{reason}");
    assert!(reason.contains("unknown priority \"High\" (expected one of: critical, high, medium, low)"), "{reason}");
}
