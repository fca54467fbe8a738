//! The stuck monitor over the event log: a looping trajectory is found and steered once, a near
//! miss is not, and a real agent loop that repeats a failing command is steered between turns
//! (across store handles, as across processes) and then finishes.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use omoi_core::config::{MonitorConfig, StuckRules};
use omoi_core::testkit::{ManualClock, ScriptedLlm};
use omoi_core::{
    AgentId, CompletionRequest, CompletionResponse, Cursor, Event, EventStore, ExecutionMode, InterventionSource,
    InterventionStore, LlmClient, LlmError, SandboxProvider, SandboxSpec, Severity, StuckRule, SystemClock, TaskId,
};
use omoi_exec::agent::{AgentRun, Mailboxes, StopCause, ToolPolicy};
use omoi_monitor::{SteerOutcome, Steerer, StuckMonitor};
use omoi_sandbox::LocalSandboxProvider;
use omoi_store::{InMemoryStore, SqliteStore};
use serde_json::json;

fn monitor(store: &InMemoryStore, clock: Arc<ManualClock>) -> StuckMonitor {
    let s = Arc::new(store.clone());
    let steerer = Steerer::new(s.clone(), clock.clone(), &MonitorConfig::default());
    StuckMonitor::new(s, steerer, clock, StuckRules::default())
}

async fn step(store: &InMemoryStore, task: TaskId, agent: AgentId, n: u32, action: &str, detail: serde_json::Value) {
    let e = Event::AgentStep { task_id: task, agent_id: agent, step: n, action: action.into(), detail };
    store.append_events(vec![e]).await.unwrap();
}

async fn failing_calls(store: &InMemoryStore, task: TaskId, agent: AgentId, times: u32) {
    for i in 0..times {
        step(store, task, agent, 2 * i, "tool_call", json!({"name": "run_command", "input": {"command": "make"}}))
            .await;
        let result = json!({"name": "run_command", "is_error": true, "output": "make: *** [all] Error 2"});
        step(store, task, agent, 2 * i + 1, "tool_result", result).await;
    }
}

#[tokio::test]
async fn a_repeated_failure_in_the_log_is_detected_and_steered_once() {
    let clock = ManualClock::new();
    let store = InMemoryStore::with_clock(clock.clone());
    let m = monitor(&store, clock.clone());
    let (task, agent) = (TaskId::new(), AgentId::new());
    failing_calls(&store, task, agent, 3).await;
    let reports = m.check().await.unwrap();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].finding.rule, StuckRule::RepeatedFailure);
    let SteerOutcome::Sent(i) = &reports[0].outcome else { panic!("{:?}", reports[0].outcome) };
    assert_eq!(
        (i.agent_id, i.task_id, i.severity, i.source),
        (agent, Some(task), Severity::Guidance, InterventionSource::StuckDetector)
    );
    assert!(m.check().await.unwrap().is_empty(), "the same state is not reported twice");
    let log = store.read_events(Cursor::START, 1000).await.unwrap();
    let found = log
        .iter()
        .filter(|e| matches!(e.event, Event::MonitorStuckDetected { rule: StuckRule::RepeatedFailure, .. }))
        .count();
    assert_eq!(found, 1);
    assert_eq!(store.pending_interventions(agent, task).await.unwrap().len(), 1);
}

#[tokio::test]
async fn two_failures_and_a_finished_task_are_left_alone() {
    let clock = ManualClock::new();
    let store = InMemoryStore::with_clock(clock.clone());
    let m = monitor(&store, clock.clone());
    let (task, agent) = (TaskId::new(), AgentId::new());
    failing_calls(&store, task, agent, 2).await;
    assert!(m.check().await.unwrap().is_empty());
    let done = TaskId::new();
    failing_calls(&store, done, agent, 3).await;
    store.append_events(vec![Event::TaskCompleted { task_id: done, holder: agent }]).await.unwrap();
    assert!(m.check().await.unwrap().is_empty(), "a finished task is forgotten");
}

#[tokio::test]
async fn a_silent_run_is_steered_after_the_configured_time_without_progress() {
    let clock = ManualClock::new();
    let store = InMemoryStore::with_clock(clock.clone());
    let m = monitor(&store, clock.clone());
    let (task, agent) = (TaskId::new(), AgentId::new());
    step(&store, task, agent, 1, "tool_call", json!({"name": "read_file", "input": {"path": "a"}})).await;
    clock.advance(Duration::from_secs(599));
    assert!(m.check().await.unwrap().is_empty());
    clock.advance(Duration::from_secs(1));
    let r = m.check().await.unwrap();
    assert_eq!(r.iter().map(|r| r.finding.rule).collect::<Vec<_>>(), [StuckRule::NoProgress]);
}

/// The scripted model, with the stuck monitor run (as its own loop would) while the model's
/// fourth turn is answered.
struct MonitoredLlm {
    inner: ScriptedLlm,
    monitor: StuckMonitor,
}

#[async_trait]
impl LlmClient for MonitoredLlm {
    async fn complete(&self, request: &CompletionRequest) -> Result<CompletionResponse, LlmError> {
        if self.inner.requests().len() == 3 {
            let found = self.monitor.check().await.expect("monitor check");
            assert_eq!(found.len(), 1, "the loop is detected before the fourth turn");
        }
        self.inner.complete(request).await
    }

    fn model(&self) -> &str {
        self.inner.model()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_repeating_a_failing_command_is_steered_between_turns_and_then_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("omoi.db");
    let agent_side = SqliteStore::open(&db).await.unwrap();
    let monitor_side = SqliteStore::open(&db).await.unwrap();
    let m = Arc::new(monitor_side.clone());
    let steerer = Steerer::new(m.clone(), Arc::new(SystemClock), &MonitorConfig::default());
    let llm = MonitoredLlm {
        inner: ScriptedLlm::new(),
        monitor: StuckMonitor::new(m, steerer, Arc::new(SystemClock), StuckRules::default()),
    };
    let make = json!({"command": "make"});
    for _ in 0..3 {
        llm.inner.push_tool_call("run_command", make.clone());
    }
    llm.inner.push_tool_call("write_file", json!({"path": "Makefile", "content": "all:\n\ttrue\n"}));
    llm.inner.push_tool_call("run_command", make);
    llm.inner.push_tool_call("finish", json!({"summary": "fixed the Makefile", "output": {}}));
    let provider = LocalSandboxProvider::new(dir.path().join("sandboxes"));
    let sandbox = provider.create(SandboxSpec::default()).await.unwrap();
    let boxes = Mailboxes::durable(Arc::new(agent_side.clone()));
    let run = AgentRun {
        llm: &llm,
        sandbox: sandbox.as_ref(),
        events: &agent_side,
        gates: vec![],
        policy: ToolPolicy::for_mode(ExecutionMode::Implementation),
        mailboxes: Some(&boxes),
        task_id: TaskId::new(),
        labels: Default::default(),
        discoveries: None,
        agent_id: AgentId::new(),
        system: "agent".into(),
        prompt: "build the project".into(),
        finish_output: None,
        finish_check: None,
        command_timeout: Duration::from_secs(30),
        output_limit: 64 * 1024,
        max_consecutive_errors: 5,
        max_tokens: 1024,
        cancel: None,
    };
    let (agent, task) = (run.agent_id, run.task_id);
    let out = run.run().await.unwrap();
    assert_eq!(out.stop, StopCause::Finished);
    // Detected while the fourth turn was being answered; delivered before the fifth.
    let fifth = llm.inner.requests()[4].clone();
    let last = fifth.messages.last().unwrap().text();
    assert!(last.contains("[GUIDANCE from stuck_detector]"), "{last}");
    let listed = monitor_side.list_interventions(Some(agent), 10).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(!listed[0].is_pending(), "acknowledged by the agent loop");
    assert_eq!(listed[0].task_id, Some(task));
}
