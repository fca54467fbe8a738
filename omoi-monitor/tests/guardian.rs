//! The guardian with a scripted model, a manual clock and the in-memory store.

use std::sync::Arc;
use std::time::Duration;

use omoi_core::config::MonitorConfig;
use omoi_core::testkit::{ManualClock, ScriptedLlm};
use omoi_core::{
    AgentId, Cursor, Event, EventStore, InterventionSource, InterventionStore, LlmError, NewTask, Severity, TaskId,
    TaskStore,
};
use omoi_monitor::guardian::{Guardian, GuardianAnalysis};
use omoi_monitor::{SteerOutcome, Steerer};
use omoi_store::InMemoryStore;
use serde_json::json;

struct Env {
    clock: Arc<ManualClock>,
    store: InMemoryStore,
    llm: Arc<ScriptedLlm>,
    guardian: Guardian,
    task: TaskId,
    agent: AgentId,
}

async fn env_with(config: MonitorConfig) -> Env {
    let clock = ManualClock::new();
    let store = InMemoryStore::with_clock(clock.clone());
    let s = Arc::new(store.clone());
    let llm = Arc::new(ScriptedLlm::new());
    let steerer = Steerer::new(s.clone(), clock.clone(), &config);
    let guardian = Guardian::new(llm.clone(), s.clone(), s, steerer, clock.clone(), config);
    let mut task = NewTask::new("add a CSV parser").description("Parse RFC 4180 CSV into rows.");
    task.def.acceptance_criteria = vec!["quoted fields with commas parse".into()];
    store.insert_tasks(vec![task.clone()]).await.unwrap();
    Env { clock, store, llm, guardian, task: task.id, agent: AgentId::new() }
}

async fn env() -> Env {
    env_with(MonitorConfig::default()).await
}

impl Env {
    async fn step(&self, n: u32, action: &str, detail: serde_json::Value) {
        let e = Event::AgentStep { task_id: self.task, agent_id: self.agent, step: n, action: action.into(), detail };
        self.store.append_events(vec![e]).await.unwrap();
    }

    /// A few steps, then past the minimum agent age.
    async fn work(&self) {
        self.step(1, "tool_call", json!({"name": "read_file", "input": {"path": "src/render.rs"}})).await;
        self.step(2, "steering", json!({"message": "SECRET-GUARDIAN-WORDS"})).await;
        self.step(3, "tool_call", json!({"name": "edit_file", "input": {"path": "src/render.rs"}})).await;
        self.clock.advance(Duration::from_secs(61));
    }

    fn answer(&self, score: f64, message: &str) {
        self.llm.push_json(&GuardianAnalysis {
            alignment_score: score,
            trajectory_summary: "edits the renderer".into(),
            current_focus: "rendering".into(),
            drift_reasons: vec!["the task is the parser, not the renderer".into()],
            steering_message: message.into(),
        });
    }

    async fn analysed(&self) -> Vec<Option<f64>> {
        let log = self.store.read_events(Cursor::START, 1000).await.unwrap();
        log.into_iter()
            .filter_map(|e| match e.event {
                Event::MonitorAgentAnalysed { alignment, .. } => Some(alignment),
                _ => None,
            })
            .collect()
    }
}

#[tokio::test]
async fn a_low_score_steers_with_the_severity_its_threshold_gives() {
    let e = env().await;
    e.work().await;
    e.answer(0.4, "Go back to the CSV parser.");
    let records = e.guardian.check().await.unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].decision, Some(Severity::Correction));
    let Some(SteerOutcome::Sent(i)) = &records[0].steer else { panic!("{:?}", records[0].steer) };
    assert_eq!((i.severity, i.source, i.task_id), (Severity::Correction, InterventionSource::Guardian, Some(e.task)));
    assert_eq!(i.message, "Go back to the CSV parser.");
    assert_eq!(e.analysed().await, [Some(0.4)]);
    let prompt = e.llm.requests()[0].messages[0].text();
    assert!(prompt.contains("add a CSV parser") && prompt.contains("quoted fields with commas parse"), "{prompt}");
    assert!(prompt.contains("src/render.rs"));
    assert!(!prompt.contains("SECRET-GUARDIAN-WORDS"), "the monitors' own steering is not scored");
    assert!(e.llm.requests()[0].output.is_some(), "structured output with a schema");
}

#[tokio::test]
async fn a_high_score_steers_nobody_whatever_the_model_says_about_steering() {
    let e = env().await;
    e.work().await;
    e.answer(0.85, "You really should steer this agent now!");
    let records = e.guardian.check().await.unwrap();
    assert_eq!((records[0].decision, records[0].steer.clone()), (None, None));
    assert!(e.store.list_interventions(None, 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_failed_or_unparsable_or_out_of_range_analysis_is_unknown_and_steers_nobody() {
    let e = env().await;
    e.work().await;
    e.llm.push_text("I think the agent is doing fine.");
    let r = e.guardian.check().await.unwrap();
    assert!(r[0].analysis.is_err() && r[0].alignment().is_none() && r[0].steer.is_none());

    e.step(4, "tool_call", json!({"name": "list_files", "input": {}})).await;
    e.llm.push_error(LlmError::Timeout(Duration::from_secs(30)));
    assert!(e.guardian.check().await.unwrap()[0].analysis.is_err());

    e.step(5, "tool_call", json!({"name": "list_files", "input": {"path": "src"}})).await;
    e.answer(1.5, "");
    let r = e.guardian.check().await.unwrap();
    assert!(r[0].analysis.as_ref().unwrap_err().contains("outside 0..=1"));

    assert_eq!(e.analysed().await, [None, None, None], "recorded as unknown, never as aligned");
    let log = e.store.read_events(Cursor::START, 1000).await.unwrap();
    assert!(
        log.iter().any(
            |ev| matches!(&ev.event, Event::MonitorAgentAnalysed { summary, .. } if summary.starts_with("unknown:"))
        )
    );
    assert!(e.store.list_interventions(None, 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn only_runs_with_new_steps_old_enough_are_analysed_and_past_analyses_are_given() {
    let e = env().await;
    e.step(1, "tool_call", json!({"name": "read_file", "input": {"path": "a"}})).await;
    e.clock.advance(Duration::from_secs(59));
    assert!(e.guardian.check().await.unwrap().is_empty(), "younger than the minimum age");
    e.clock.advance(Duration::from_secs(1));
    e.answer(0.9, "");
    assert_eq!(e.guardian.check().await.unwrap().len(), 1);
    assert!(e.guardian.check().await.unwrap().is_empty(), "no new steps, no new analysis");
    assert_eq!(e.llm.requests().len(), 1);
    e.step(2, "tool_call", json!({"name": "read_file", "input": {"path": "b"}})).await;
    e.answer(0.8, "");
    assert_eq!(e.guardian.check().await.unwrap().len(), 1);
    let second = e.llm.requests()[1].messages[0].text();
    assert!(second.contains("previous analyses") && second.contains("alignment 0.90"), "{second}");
}

#[tokio::test]
async fn with_auto_steering_off_the_analysis_is_recorded_but_nobody_is_steered() {
    let e = env_with(MonitorConfig { auto_steering: false, ..MonitorConfig::default() }).await;
    e.work().await;
    e.answer(0.1, "stop");
    let r = e.guardian.check().await.unwrap();
    assert_eq!((r[0].decision, r[0].steer.is_none()), (Some(Severity::Emergency), true));
    assert!(e.store.list_interventions(None, 10).await.unwrap().is_empty());
    assert_eq!(e.analysed().await, [Some(0.1)]);
}

/// A model that holds every call until the test opens the gate, counting calls in flight.
struct GatedLlm {
    inner: ScriptedLlm,
    in_flight: std::sync::atomic::AtomicUsize,
    max: std::sync::atomic::AtomicUsize,
    gate: tokio::sync::Semaphore,
}

#[async_trait::async_trait]
impl omoi_core::LlmClient for GatedLlm {
    async fn complete(
        &self,
        request: &omoi_core::CompletionRequest,
    ) -> Result<omoi_core::CompletionResponse, LlmError> {
        use std::sync::atomic::Ordering::SeqCst;
        let now = self.in_flight.fetch_add(1, SeqCst) + 1;
        self.max.fetch_max(now, SeqCst);
        self.gate.acquire().await.unwrap().forget();
        self.in_flight.fetch_sub(1, SeqCst);
        self.inner.complete(request).await
    }

    fn model(&self) -> &str {
        "gated"
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_the_configured_number_of_analyses_run_at_once() {
    use std::sync::atomic::Ordering::SeqCst;
    let clock = ManualClock::new();
    let store = InMemoryStore::with_clock(clock.clone());
    let s = Arc::new(store.clone());
    let config = MonitorConfig { guardian_max_concurrent: 2, ..MonitorConfig::default() };
    let llm = Arc::new(GatedLlm {
        inner: ScriptedLlm::new(),
        in_flight: Default::default(),
        max: Default::default(),
        gate: tokio::sync::Semaphore::new(0),
    });
    for _ in 0..4 {
        let task = NewTask::new("work");
        store.insert_tasks(vec![task.clone()]).await.unwrap();
        let e = Event::AgentStep {
            task_id: task.id,
            agent_id: AgentId::new(),
            step: 1,
            action: "model".into(),
            detail: json!({}),
        };
        store.append_events(vec![e]).await.unwrap();
        llm.inner.push_json(&GuardianAnalysis {
            alignment_score: 0.9,
            trajectory_summary: "ok".into(),
            current_focus: "work".into(),
            drift_reasons: vec![],
            steering_message: String::new(),
        });
    }
    clock.advance(Duration::from_secs(61));
    let steerer = Steerer::new(s.clone(), clock.clone(), &config);
    let guardian = Arc::new(Guardian::new(llm.clone(), s.clone(), s, steerer, clock, config));
    let check = tokio::spawn({
        let g = guardian.clone();
        async move { g.check().await.unwrap() }
    });
    let mut spins = 0u32;
    while llm.in_flight.load(SeqCst) < 2 {
        spins += 1;
        assert!(spins < 1_000_000, "two analyses should start");
        tokio::task::yield_now().await;
    }
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    assert_eq!(llm.in_flight.load(SeqCst), 2, "the other two wait for a free slot");
    llm.gate.add_permits(4);
    assert_eq!(check.await.unwrap().len(), 4);
    assert_eq!(llm.max.load(SeqCst), 2);
}
