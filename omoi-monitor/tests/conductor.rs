//! The conductor: the coherence formula by hand, the health order, and duplicate detection
//! (embedding prefilter, one structured confirmation, validators never duplicates) with a
//! scripted model on the in-memory store.

use std::sync::Arc;
use std::time::Duration;

use omoi_core::config::MonitorConfig;
use omoi_core::testkit::{ManualClock, ScriptedLlm};
use omoi_core::{
    AgentId, ClaimRequest, Cursor, Event, EventStore, ExecutionMode, HashingEmbedder, InterventionSource,
    InterventionStore, NewTask, Severity, SystemHealth, Task, TaskId, TaskStore, WorkPhase,
};
use omoi_monitor::conductor::{Conductor, DuplicateVerdict, RunView, coherence, health};
use omoi_monitor::{SteerOutcome, Steerer};
use omoi_store::InMemoryStore;
use serde_json::json;

fn run(agent: AgentId, alignment: Option<f64>, phase: WorkPhase) -> RunView {
    let new = NewTask::new("t").phase(phase);
    let now = chrono::Utc::now();
    let task = Task {
        id: new.id,
        def: new.def,
        links: new.links,
        dependencies: Vec::new(),
        state: omoi_core::TaskState::Running,
        attempts: 1,
        run_at: now,
        lease: None,
        result: None,
        last_error: None,
        usage: Default::default(),
        created_at: now,
        updated_at: now,
    };
    RunView { task, agent, alignment, summary: String::new(), steps: 0 }
}

#[test]
fn coherence_follows_the_formula_with_configured_weights() {
    let (a, b) = (AgentId::new(), AgentId::new());
    let runs = [
        run(a, Some(0.9), WorkPhase::Implementation),
        run(a, Some(0.6), WorkPhase::Implementation),
        run(b, Some(0.2), WorkPhase::Testing),
    ];
    let cfg = MonitorConfig::default();
    // mean .5667 − .2·1/3 − .3·2/3 + .1·2/3 + .1·(1 − .25/2.25)
    let expected = 1.7 / 3.0 - 0.2 / 3.0 - 0.6 / 3.0 + 0.2 / 3.0 + 0.1 * (1.0 - 0.25 / 2.25);
    assert!((coherence(&runs, &cfg) - expected).abs() < 1e-9, "{} vs {expected}", coherence(&runs, &cfg));
    let mut heavy = cfg.clone();
    heavy.coherence.weights.needs_steering = 0.0;
    assert!((coherence(&runs, &heavy) - (expected + 0.6 / 3.0)).abs() < 1e-9, "weights come from config");
}

#[test]
fn unknown_alignment_counts_as_zero_and_no_runs_is_no_agents() {
    let a = AgentId::new();
    let cfg = MonitorConfig::default();
    let known = coherence(&[run(a, Some(0.9), WorkPhase::Design)], &cfg);
    let unknown = coherence(&[run(a, None, WorkPhase::Design)], &cfg);
    assert!(unknown < known && unknown < cfg.coherence.critical_below, "missing analyses never look healthy");
    assert_eq!(health(0.0, 0, 0, &cfg), SystemHealth::NoAgents);
}

#[test]
fn health_is_checked_in_order() {
    let cfg = MonitorConfig::default(); // critical < .3, warning < .5, optimal > .8, inefficient > .3·n
    assert_eq!(health(0.29, 4, 0, &cfg), SystemHealth::Critical);
    assert_eq!(health(0.49, 4, 4, &cfg), SystemHealth::Warning);
    assert_eq!(health(0.9, 4, 2, &cfg), SystemHealth::Inefficient);
    assert_eq!(health(0.9, 4, 1, &cfg), SystemHealth::Optimal);
    assert_eq!(health(0.8, 4, 0, &cfg), SystemHealth::Normal);
}

struct Env {
    store: InMemoryStore,
    llm: Arc<ScriptedLlm>,
    conductor: Conductor,
}

fn env() -> Env {
    env_with(MonitorConfig::default())
}

fn env_with(cfg: MonitorConfig) -> Env {
    let clock = ManualClock::new();
    let store = InMemoryStore::with_clock(clock.clone());
    let s = Arc::new(store.clone());
    let llm = Arc::new(ScriptedLlm::new());
    let steerer = Steerer::new(s.clone(), clock, &cfg);
    let conductor =
        Conductor::new(AgentId::new(), llm.clone(), Arc::new(HashingEmbedder::new(256)), s.clone(), s, steerer, cfg);
    Env { store, llm, conductor }
}

/// Inserts and starts `task` under a fresh agent, with `steps` trajectory steps.
async fn running(store: &InMemoryStore, task: NewTask, steps: u32) -> (TaskId, AgentId) {
    let agent = AgentId::new();
    store.insert_tasks(vec![task.clone()]).await.unwrap();
    let claimed = store.claim(&ClaimRequest::new(agent, 1, Duration::from_secs(600))).await.unwrap();
    store.start(task.id, claimed[0].lease.token).await.unwrap();
    for n in 0..steps {
        let e = Event::AgentStep {
            task_id: task.id,
            agent_id: agent,
            step: n,
            action: "tool_call".into(),
            detail: json!({}),
        };
        store.append_events(vec![e]).await.unwrap();
    }
    (task.id, agent)
}

fn verdict(is_duplicate: bool, similarity: f64) -> DuplicateVerdict {
    DuplicateVerdict { is_duplicate, similarity, reason: "both add the CSV parser".into() }
}

const GOAL: &str = "Add a CSV parser for RFC 4180 files with quoted fields";

#[tokio::test]
async fn a_confirmed_duplicate_stops_the_less_advanced_run_and_validators_are_never_compared() {
    let e = env();
    let (ahead, _) = running(&e.store, NewTask::new(GOAL).description(GOAL), 5).await;
    let (behind, behind_agent) = running(&e.store, NewTask::new(GOAL).description(GOAL), 1).await;
    running(&e.store, NewTask::new(GOAL).description(GOAL).mode(ExecutionMode::Validation), 0).await;
    running(&e.store, NewTask::new("Write the deployment guide").description("Document the helm chart"), 2).await;
    e.llm.push_json(&verdict(true, 0.9));
    let a = e.conductor.check().await.unwrap();
    assert_eq!(e.llm.requests().len(), 1, "one confirmation: the prefilter passed one pair, validators excluded");
    assert!(e.llm.requests()[0].output.is_some(), "structured output");
    assert_eq!(a.duplicates.len(), 1);
    let d = &a.duplicates[0];
    assert_eq!((d.kept, d.stopped), (ahead, behind));
    let SteerOutcome::Sent(i) = &d.outcome else { panic!("{:?}", d.outcome) };
    assert_eq!(
        (i.agent_id, i.task_id, i.severity, i.source),
        (behind_agent, Some(behind), Severity::Emergency, InterventionSource::Conductor)
    );
    assert_eq!(e.store.pending_interventions(behind_agent, behind).await.unwrap().len(), 1);
    assert_eq!(a.runs, 4);
    let log = e.store.read_events(Cursor::START, 1000).await.unwrap();
    assert!(log.iter().any(|ev| matches!(&ev.event, Event::MonitorSystemAssessed { agents: 4, duplicates: 1, .. })));
}

#[tokio::test]
async fn a_rejected_or_weak_or_failed_confirmation_stops_nobody() {
    for answer in [Some(verdict(false, 0.95)), Some(verdict(true, 0.7)), None] {
        let e = env();
        running(&e.store, NewTask::new(GOAL).description(GOAL), 3).await;
        running(&e.store, NewTask::new(GOAL).description(GOAL), 1).await;
        match answer {
            Some(v) => e.llm.push_json(&v),
            None => e.llm.push_text("they look alike to me"),
        }
        let a = e.conductor.check().await.unwrap();
        assert!(a.duplicates.is_empty());
        assert!(e.store.list_interventions(None, 10).await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn no_running_tasks_is_no_agents_and_no_model_call() {
    let e = env();
    let a = e.conductor.check().await.unwrap();
    assert_eq!((a.health, a.runs), (SystemHealth::NoAgents, 0));
    assert!(e.llm.requests().is_empty());
}

#[tokio::test]
async fn a_critical_system_or_a_mean_alignment_under_the_alert_line_raises_an_alert() {
    for (alert_below, alignment, alert) in [(0.3, 0.9, false), (0.3, 0.25, true), (0.95, 0.9, true)] {
        let cfg = MonitorConfig { alert_mean_alignment_below: alert_below, ..MonitorConfig::default() };
        let e = env_with(cfg);
        let (task, agent) = running(&e.store, NewTask::new("a").description("write docs"), 1).await;
        let event = Event::MonitorAgentAnalysed {
            agent_id: agent,
            task_id: task,
            alignment: Some(alignment),
            summary: "docs".into(),
        };
        e.store.append_events(vec![event]).await.unwrap();
        let a = e.conductor.check().await.unwrap();
        assert_eq!(a.alert, alert, "alert line {alert_below}, alignment {alignment}: {a:?}");
    }
}
