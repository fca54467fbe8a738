//! Steering across processes: interventions recorded through one store handle (as a monitor in
//! another process would) reach the agent loop through another handle on the same SQLite file,
//! are acknowledged once, and an emergency ends the attempt and destroys the sandbox. Also the
//! pre-execution guard that refuses a blind retry of the call that just failed.

use std::sync::Arc;
use std::time::Duration;

use omoi_core::testkit::ScriptedLlm;
use omoi_core::{
    AgentId, ClaimRequest, Cursor, Event, EventStore, ExecutionMode, InterventionSource, InterventionStore,
    NewIntervention, NewTask, Sandbox, SandboxProvider, SandboxSpec, Severity, SystemClock, TaskStore, WorkspacePath,
};
use omoi_exec::agent::{AgentExecutor, AgentRun, Mailboxes, StopCause, ToolPolicy};
use omoi_exec::worker::{ExecContext, TaskExecutor};
use omoi_sandbox::LocalSandboxProvider;
use omoi_store::SqliteStore;
use serde_json::json;
use tokio_util::sync::CancellationToken;

struct Env {
    _dir: tempfile::TempDir,
    provider: LocalSandboxProvider,
    /// The agent's process.
    agent_side: SqliteStore,
    /// The monitor's process.
    monitor_side: SqliteStore,
}

async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("omoi.db");
    let agent_side = SqliteStore::open(&db).await.unwrap();
    let monitor_side = SqliteStore::open(&db).await.unwrap();
    let provider = LocalSandboxProvider::new(dir.path().join("sandboxes"));
    Env { _dir: dir, provider, agent_side, monitor_side }
}

fn run<'a>(
    llm: &'a ScriptedLlm,
    sandbox: &'a dyn Sandbox,
    events: &'a dyn EventStore,
    mailboxes: &'a Mailboxes,
) -> AgentRun<'a> {
    AgentRun {
        llm,
        sandbox,
        events,
        gates: vec![],
        policy: ToolPolicy::for_mode(ExecutionMode::Implementation),
        mailboxes: Some(mailboxes),
        task_id: omoi_core::TaskId::new(),
        labels: Default::default(),
        discoveries: None,
        agent_id: AgentId::new(),
        system: "test agent".into(),
        prompt: "do the task".into(),
        finish_output: None,
        finish_check: None,
        command_timeout: Duration::from_secs(30),
        output_limit: 64 * 1024,
        max_consecutive_errors: 3,
        max_tokens: 1024,
        cancel: None,
    }
}

async fn events(store: &SqliteStore) -> Vec<Event> {
    store.read_events(Cursor::START, 10_000).await.unwrap().into_iter().map(|e| e.event).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guidance_recorded_by_another_process_reaches_the_model_and_is_acknowledged_once() {
    let e = env().await;
    let sandbox = e.provider.create(SandboxSpec::default()).await.unwrap();
    let boxes = Mailboxes::durable(Arc::new(e.agent_side.clone()));
    let llm = ScriptedLlm::new();
    llm.push_tool_call("list_files", json!({}));
    llm.push_tool_call("finish", json!({"summary": "done", "output": {}}));
    let r = run(&llm, sandbox.as_ref(), &e.agent_side, &boxes);
    let (agent, task) = (r.agent_id, r.task_id);
    let steer = NewIntervention::new(
        agent,
        Some(task),
        Severity::Guidance,
        InterventionSource::Guardian,
        "focus on the parser",
    );
    e.monitor_side.record_intervention(steer.clone()).await.unwrap();
    // One for another run of the same agent stays pending.
    let other = NewIntervention::new(
        agent,
        Some(omoi_core::TaskId::new()),
        Severity::Correction,
        InterventionSource::Guardian,
        "not for this run",
    );
    e.monitor_side.record_intervention(other.clone()).await.unwrap();

    let out = r.run().await.unwrap();
    assert_eq!(out.stop, StopCause::Finished);
    let first = llm.requests()[0].messages[0].text();
    assert!(first.contains("[GUIDANCE from guardian] focus on the parser"), "{first}");
    assert!(!first.contains("not for this run"));
    let steered = omoi_core::ports::llm::labels::STEERED;
    assert_eq!(llm.requests()[0].labels.get(steered).map(String::as_str), Some("1"), "the request says it was steered");
    let last = llm.requests().last().unwrap().clone();
    let copies = last.messages.iter().filter(|m| m.text().contains("focus on the parser")).count();
    assert_eq!(copies, 1, "delivered once, and kept in the conversation");
    assert!(e.monitor_side.pending_interventions(agent, task).await.unwrap().is_empty(), "acknowledged");
    let log = events(&e.monitor_side).await;
    let acks: Vec<_> = log
        .iter()
        .filter_map(|ev| match ev {
            Event::InterventionAcknowledged { intervention_id, .. } => Some(*intervention_id),
            _ => None,
        })
        .collect();
    assert_eq!(acks, vec![steer.id]);
    let steering_steps = log
        .iter()
        .filter(|ev| {
            matches!(ev, Event::AgentStep { action, detail, .. }
            if action == "steering" && detail["intervention"] == json!(steer.id.to_string()))
        })
        .count();
    assert_eq!(steering_steps, 1);
    let listed = e.monitor_side.list_interventions(Some(agent), 10).await.unwrap();
    assert!(listed.iter().any(|i| i.id == other.id && i.is_pending()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emergency_recorded_mid_run_ends_the_attempt_as_retryable_and_destroys_the_sandbox() {
    let e = env().await;
    let task = NewTask::new("loop forever").mode(ExecutionMode::Implementation);
    e.agent_side.insert_tasks(vec![task.clone()]).await.unwrap();
    let holder = AgentId::new();
    let claimed = e.agent_side.claim(&ClaimRequest::new(holder, 1, Duration::from_secs(60))).await.unwrap().remove(0);
    // The first command waits until the monitor has recorded its stop (the local sandbox runs on
    // the host, so it can see the signal file).
    let go = e._dir.path().join("stop-recorded");
    let llm = Arc::new(ScriptedLlm::new());
    let wait = format!("while [ ! -f '{}' ]; do sleep 0.02; done", go.display());
    llm.push_tool_call("run_command", json!({ "command": wait }));
    llm.push_tool_call("run_command", json!({"command": "true"}));
    let executor = AgentExecutor::new(
        llm.clone(),
        Arc::new(e.provider.clone()),
        Arc::new(e.agent_side.clone()),
        Arc::new(e.agent_side.clone()),
        Arc::new(SystemClock),
    )
    .with_interventions(Arc::new(e.agent_side.clone()));
    // The monitor stops the run once the model has been called once.
    let stopper = {
        let (monitor, llm) = (e.monitor_side.clone(), llm.clone());
        tokio::spawn(async move {
            while llm.requests().is_empty() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let stop = NewIntervention::new(
                holder,
                Some(task.id),
                Severity::Emergency,
                InterventionSource::Conductor,
                "stop: duplicate of another agent's work",
            );
            monitor.record_intervention(stop).await.unwrap();
            std::fs::write(go, b"").unwrap();
        })
    };
    let ctx = ExecContext { agent_id: holder, lease: claimed.lease, cancel: CancellationToken::new() };
    let err = executor.execute(&claimed.task, &ctx).await.unwrap_err();
    stopper.await.unwrap();
    assert!(err.retryable, "an emergency stop loses the attempt; the task may run again");
    assert!(err.message.contains("stopped by conductor: stop: duplicate"), "{}", err.message);
    assert_eq!(llm.requests().len(), 1, "no model call after the stop");
    let leftovers = std::fs::read_dir(e.provider.root()).map(|d| d.count()).unwrap_or(0);
    assert_eq!(leftovers, 0, "the sandbox was destroyed");
    assert!(e.monitor_side.pending_interventions(holder, task.id).await.unwrap().is_empty());
}

#[tokio::test]
async fn an_identical_call_right_after_its_failure_is_refused_and_not_run_again() {
    let e = env().await;
    let sandbox = e.provider.create(SandboxSpec::default()).await.unwrap();
    let boxes = Mailboxes::new();
    let llm = ScriptedLlm::new();
    let failing = json!({"command": "echo run >> count.txt; exit 1"});
    llm.push_tool_call("run_command", failing.clone());
    llm.push_tool_call("run_command", failing.clone());
    llm.push_tool_call("write_file", json!({"path": "fix.txt", "content": "fixed"}));
    llm.push_tool_call("run_command", failing);
    llm.push_tool_call("finish", json!({"summary": "gave up", "output": {}}));
    let out = run(&llm, sandbox.as_ref(), &e.agent_side, &boxes).run().await.unwrap();
    assert_eq!(out.stop, StopCause::Finished);
    let count = sandbox.read_file(&WorkspacePath::parse("count.txt").unwrap()).await.unwrap();
    assert_eq!(String::from_utf8(count).unwrap(), "run\nrun\n", "run, refused, (fix), run again");
    let second_result = llm.requests()[2].messages.last().unwrap().clone();
    let text = format!("{second_result:?}");
    assert!(text.contains("refused: this exact `run_command` call just failed"), "{text}");
    let refusals = events(&e.agent_side)
        .await
        .into_iter()
        .filter(|ev| {
            matches!(ev, Event::AgentStep { action, detail, .. }
            if action == "refused" && detail["reason"] == "repeat_of_failed_call")
        })
        .count();
    assert_eq!(refusals, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emergency_stop_costs_the_worker_its_attempt_and_the_task_is_retried_to_completion() {
    use omoi_core::config::QueueConfig;
    use omoi_core::{BackoffPolicy, TaskState};
    use omoi_exec::worker::{Worker, WorkerConfig};

    let e = env().await;
    let task = NewTask::new("stopped once").mode(ExecutionMode::Exploration).backoff(BackoffPolicy::fixed(
        Duration::from_millis(10),
        1.0,
        Duration::from_millis(10),
    ));
    e.agent_side.insert_tasks(vec![task.clone()]).await.unwrap();
    let llm = Arc::new(ScriptedLlm::new());
    // Only the second attempt reaches the model: the first is stopped before its first turn.
    llm.push_tool_call("finish", json!({"summary": "done", "output": {}}));
    let executor = AgentExecutor::new(
        llm.clone(),
        Arc::new(e.provider.clone()),
        Arc::new(e.agent_side.clone()),
        Arc::new(e.agent_side.clone()),
        Arc::new(SystemClock),
    )
    .with_interventions(Arc::new(e.agent_side.clone()));
    let q = QueueConfig { poll_interval: Duration::from_millis(20), ..QueueConfig::default() };
    let worker = Worker::new(
        Arc::new(e.agent_side.clone()),
        Arc::new(e.agent_side.clone()),
        Arc::new(executor),
        Arc::new(SystemClock),
        WorkerConfig::new("stoppable", 1, &q),
    );
    let stop = NewIntervention::new(
        worker.id(),
        Some(task.id),
        Severity::Emergency,
        InterventionSource::Operator,
        "stop: wrong branch",
    );
    e.monitor_side.record_intervention(stop).await.unwrap();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn({
        let (w, s) = (worker.clone(), shutdown.clone());
        async move { w.run(s).await }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while e.agent_side.get_task(task.id).await.unwrap().state != TaskState::Completed {
        assert!(std::time::Instant::now() < deadline, "the task should complete on its second attempt");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    let stats = running.await.unwrap().unwrap();
    assert_eq!((stats.failed, stats.completed), (1, 1), "the stopped attempt is a failed one");
    let t = e.agent_side.get_task(task.id).await.unwrap();
    assert_eq!(t.attempts, 2, "the stop cost an attempt");
    let log = events(&e.monitor_side).await;
    let retry = log.iter().find_map(|ev| match ev {
        Event::TaskRetryScheduled { error, .. } => Some(error.clone()),
        _ => None,
    });
    assert!(retry.is_some_and(|err| err.contains("stopped by operator: stop: wrong branch")));
    assert_eq!(llm.requests().len(), 1, "the stopped attempt never called the model");
}
