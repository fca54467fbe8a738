//! The agent loop and the agent executor, with a scripted model in real local sandboxes.

use std::sync::Arc;
use std::time::Duration;

use omoi_core::testkit::{ManualClock, ScriptedLlm};
use omoi_core::{
    AgentId, ClaimRequest, Clock, ContentBlock, Cursor, Event, EventStore, ExecRequest, ExecutionMode, FencingToken,
    Lease, NewTask, Sandbox, SandboxProvider, SandboxSpec, SystemClock, TaskStore, WorkspacePath,
};
use omoi_exec::agent::{
    AgentExecutor, AgentRun, Budget, BudgetExceeded, BudgetLimits, CallGate, Mailboxes, Severity, Steering, StopCause,
    ToolPolicy,
};
use omoi_exec::git::GitRepo;
use omoi_exec::worker::{ExecContext, TaskExecutor};
use omoi_sandbox::LocalSandboxProvider;
use omoi_store::InMemoryStore;
use serde_json::json;
use tokio_util::sync::CancellationToken;

struct Env {
    _root: tempfile::TempDir,
    provider: LocalSandboxProvider,
    store: InMemoryStore,
}

fn env() -> Env {
    let root = tempfile::tempdir().unwrap();
    Env { provider: LocalSandboxProvider::new(root.path()), _root: root, store: InMemoryStore::new() }
}

fn run<'a>(
    llm: &'a ScriptedLlm,
    sandbox: &'a dyn Sandbox,
    events: &'a dyn EventStore,
    mode: ExecutionMode,
    gates: Vec<&'a dyn CallGate>,
) -> AgentRun<'a> {
    AgentRun {
        llm,
        sandbox,
        events,
        gates,
        policy: ToolPolicy::for_mode(mode),
        mailboxes: None,
        task_id: omoi_core::TaskId::new(),
        labels: Default::default(),
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
        discoveries: None,
    }
}

fn finish(llm: &ScriptedLlm, summary: &str) {
    llm.push_tool_call("finish", json!({"summary": summary, "output": {"passed": true}}));
}

async fn steps(store: &InMemoryStore) -> Vec<String> {
    store
        .read_events(Cursor::START, 10_000)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|e| match e.event {
            Event::AgentStep { action, .. } => Some(action),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn validation_write_refused_and_the_refusal_goes_back_to_the_model() {
    let e = env();
    let sandbox = e.provider.create(SandboxSpec::default()).await.unwrap();
    let app = WorkspacePath::parse("app.py").unwrap();
    sandbox.write_file(&app, b"print('ok')\n").await.unwrap();
    let llm = ScriptedLlm::new();
    llm.push_tool_call("write_file", json!({"path": "app.py", "content": "hacked"}));
    llm.push_tool_call("run_command", json!({"command": "python3 app.py"}));
    finish(&llm, "validated");
    let out = run(&llm, sandbox.as_ref(), &e.store, ExecutionMode::Validation, vec![]).run().await.unwrap();
    assert_eq!(out.stop, StopCause::Finished);
    assert_eq!(sandbox.read_file(&app).await.unwrap(), b"print('ok')\n", "nothing was written");
    let requests = llm.requests();
    let offered: Vec<_> = requests[0].tools.iter().map(|t| t.name.as_str()).collect();
    assert!(!offered.contains(&"write_file") && offered.contains(&"run_command"), "{offered:?}");
    let refusal = requests[1].messages.last().unwrap().content.iter().find_map(|b| match b {
        ContentBlock::ToolResult { content, is_error: true, .. } => Some(content.clone()),
        _ => None,
    });
    assert!(refusal.unwrap().contains("`write_file` is not available in validation mode"));
    let third = requests[2].messages.last().unwrap();
    assert!(
        matches!(&third.content[0], ContentBlock::ToolResult { content, is_error: false, .. } if content.contains("exit code 0") && content.contains("ok"))
    );
    assert!(steps(&e.store).await.contains(&"refused".to_owned()));
}

#[tokio::test]
async fn budget_is_checked_before_every_model_call() {
    let e = env();
    let sandbox = e.provider.create(SandboxSpec::default()).await.unwrap();
    let llm = ScriptedLlm::new();
    for _ in 0..3 {
        llm.push_tool_call("list_files", json!({}));
    }
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let turns = Budget::start(
        BudgetLimits { max_turns: Some(2), max_tokens: None, max_cost_usd: None, max_wall_time: None },
        clock.clone(),
    );
    let out = run(&llm, sandbox.as_ref(), &e.store, ExecutionMode::Exploration, vec![&turns]).run().await.unwrap();
    assert_eq!(out.stop, StopCause::BudgetExceeded(BudgetExceeded::Turns { used: 2, limit: 2 }));
    assert_eq!(llm.requests().len(), 2, "the third call was never made");
    assert_eq!(llm.remaining(), 1);

    let pricey = ScriptedLlm::new().with_cost_per_token(0.01);
    pricey.push_tool_call("list_files", json!({}));
    pricey.push_tool_call("list_files", json!({}));
    let cost = Budget::start(
        BudgetLimits { max_turns: None, max_tokens: None, max_cost_usd: Some(0.05), max_wall_time: None },
        clock,
    );
    let out = run(&pricey, sandbox.as_ref(), &e.store, ExecutionMode::Exploration, vec![&cost]).run().await.unwrap();
    assert!(matches!(out.stop, StopCause::BudgetExceeded(BudgetExceeded::Cost { .. })), "{:?}", out.stop);
    assert_eq!(pricey.requests().len(), 1);
    assert!(steps(&e.store).await.contains(&"budget_exceeded".to_owned()));
}

#[tokio::test]
async fn wall_time_budget_uses_the_clock() {
    let e = env();
    let sandbox = e.provider.create(SandboxSpec::default()).await.unwrap();
    let clock = ManualClock::new();
    let budget = Budget::start(
        BudgetLimits {
            max_turns: None,
            max_tokens: None,
            max_cost_usd: None,
            max_wall_time: Some(Duration::from_secs(60)),
        },
        clock.clone(),
    );
    clock.advance(Duration::from_secs(61));
    let llm = ScriptedLlm::new();
    finish(&llm, "never");
    let out = run(&llm, sandbox.as_ref(), &e.store, ExecutionMode::Exploration, vec![&budget]).run().await.unwrap();
    assert!(matches!(out.stop, StopCause::BudgetExceeded(BudgetExceeded::WallTime { .. })));
    assert!(llm.requests().is_empty());
}

#[tokio::test]
async fn steering_reaches_the_model_between_turns_and_an_emergency_stops_the_run() {
    let e = env();
    let sandbox = e.provider.create(SandboxSpec::default()).await.unwrap();
    let boxes = Mailboxes::new();
    let llm = Arc::new(ScriptedLlm::new());
    llm.push_tool_call("run_command", json!({"command": "sleep 1"}));
    llm.push_tool_call("list_files", json!({}));
    let mut r = run(&llm, sandbox.as_ref(), &e.store, ExecutionMode::Implementation, vec![]);
    r.mailboxes = Some(&boxes);
    let task = r.task_id;
    boxes.send(task, Steering::new(Severity::Guidance, "guardian", "focus on the parser"));
    // The emergency arrives while the first turn's command runs: it is read before the second call.
    let sender = {
        let (boxes, llm) = (boxes.clone(), llm.clone());
        tokio::spawn(async move {
            while llm.requests().is_empty() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            boxes.send(task, Steering::new(Severity::Emergency, "guardian", "stop: wrong repository"));
        })
    };
    let out = r.run().await.unwrap();
    sender.await.unwrap();
    assert!(llm.requests()[0].messages[0].text().contains("[GUIDANCE from guardian] focus on the parser"));
    assert_eq!(out.stop, StopCause::Stopped { by: "guardian".into(), message: "stop: wrong repository".into() });
    assert_eq!(llm.requests().len(), 1, "no model call after the emergency");
    assert_eq!(out.turns, 1);
    let s = steps(&e.store).await;
    assert_eq!(s.iter().filter(|a| *a == "steering").count(), 2);
}

#[tokio::test]
async fn readonly_programs_are_allowed_in_exploration_and_writers_refused() {
    let e = env();
    let sandbox = e.provider.create(SandboxSpec::default()).await.unwrap();
    sandbox.write_file(&WorkspacePath::parse("notes.txt").unwrap(), b"hello\n").await.unwrap();
    let llm = ScriptedLlm::new();
    llm.push_tool_call("run_readonly", json!({"argv": ["cat", "notes.txt"]}));
    llm.push_tool_call("run_readonly", json!({"argv": ["rm", "notes.txt"]}));
    llm.push_tool_call("run_command", json!({"command": "rm notes.txt"}));
    finish(&llm, "explored");
    let out = run(&llm, sandbox.as_ref(), &e.store, ExecutionMode::Exploration, vec![]).run().await.unwrap();
    assert_eq!(out.stop, StopCause::Finished);
    let r = llm.requests();
    let result = |i: usize| match &r[i].messages.last().unwrap().content[0] {
        ContentBlock::ToolResult { content, is_error, .. } => (content.clone(), *is_error),
        other => panic!("{other:?}"),
    };
    assert!(result(1).0.contains("hello") && !result(1).1);
    assert!(result(2).0.contains("not a read-only program") && result(2).1);
    assert!(result(3).0.contains("not available in exploration mode") && result(3).1);
    assert!(sandbox.read_file(&WorkspacePath::parse("notes.txt").unwrap()).await.is_ok());
}

#[tokio::test]
async fn repeated_tool_failures_end_the_run() {
    let e = env();
    let sandbox = e.provider.create(SandboxSpec::default()).await.unwrap();
    let llm = ScriptedLlm::new();
    for _ in 0..3 {
        llm.push_tool_call("read_file", json!({"path": "missing.txt"}));
    }
    let out = run(&llm, sandbox.as_ref(), &e.store, ExecutionMode::Exploration, vec![]).run().await.unwrap();
    assert_eq!(out.stop, StopCause::TooManyErrors(3));
}

fn ctx() -> ExecContext {
    ExecContext {
        agent_id: AgentId::new(),
        lease: Lease { holder: AgentId::new(), token: FencingToken(1), expires_at: chrono::Utc::now() },
        cancel: CancellationToken::new(),
    }
}

#[tokio::test]
async fn implementation_task_commits_on_its_branch_and_validation_sees_it() {
    let e = env();
    let origin_dir = tempfile::tempdir().unwrap();
    tokio::fs::write(origin_dir.path().join("README.md"), "# sample\n").await.unwrap();
    let origin = GitRepo::init(origin_dir.path()).await.unwrap();
    let build = NewTask::new("add hello module").mode(ExecutionMode::Implementation);
    let check = NewTask::new("check hello module").mode(ExecutionMode::Validation).depends_on([build.id]);
    e.store.insert_tasks(vec![build.clone(), check.clone()]).await.unwrap();

    let llm = Arc::new(ScriptedLlm::new());
    llm.push_tool_call("write_file", json!({"path": "hello.py", "content": "def hello():\n    return 'hi'\n"}));
    llm.push_tool_call("run_command", json!({"command": "python3 -c 'import hello; print(hello.hello())'"}));
    llm.push_tool_call("finish", json!({"summary": "added hello()", "output": {"module": "hello"}}));
    let executor = AgentExecutor::new(
        llm.clone(),
        Arc::new(e.provider.clone()),
        Arc::new(e.store.clone()),
        Arc::new(e.store.clone()),
        Arc::new(SystemClock),
    )
    .with_origin(origin.clone(), "main");

    let claimed =
        e.store.claim(&ClaimRequest::new(AgentId::new(), 1, Duration::from_secs(60))).await.unwrap().remove(0);
    let out = executor.execute(&claimed.task, &ctx()).await.unwrap();
    let branch = format!("omoi/{}", build.id);
    assert_eq!(out.result["branch"], json!(branch));
    assert!(out.result["commit"].as_str().is_some_and(|c| c.len() == 40), "{}", out.result);
    assert!(out.result["diff_stat"].as_str().unwrap().contains("hello.py"));
    assert_eq!(origin.run(&["show", &format!("{branch}:hello.py")]).await.unwrap(), "def hello():\n    return 'hi'\n");
    let log = origin.run(&["log", "-1", "--format=%B", &branch]).await.unwrap();
    assert!(log.starts_with("add hello module") && log.contains(&format!("omoi-task: {}", build.id)));
    assert_eq!(e.store.get_task(build.id).await.unwrap().state, omoi_core::TaskState::Claimed);
    e.store
        .complete(
            build.id,
            claimed.lease.token,
            omoi_core::Completion { result: out.result.clone(), ..Default::default() },
        )
        .await
        .unwrap();

    llm.push_tool_call("write_file", json!({"path": "hello.py", "content": "broken"}));
    llm.push_tool_call(
        "run_command",
        json!({"command": "python3 -c 'import hello; assert hello.hello() == \"hi\"' && echo PASS"}),
    );
    llm.push_tool_call("finish", json!({"summary": "hello() works", "output": {"passed": true}}));
    let claimed =
        e.store.claim(&ClaimRequest::new(AgentId::new(), 1, Duration::from_secs(60))).await.unwrap().remove(0);
    assert_eq!(claimed.task.id, check.id);
    let out = executor.execute(&claimed.task, &ctx()).await.unwrap();
    assert_eq!(out.result["output"]["passed"], true);
    let prompt = llm.requests()[3].messages[0].text();
    assert!(prompt.contains("\"module\": \"hello\""), "predecessor results are in the context: {prompt}");
    let results: Vec<String> = llm.requests()[5]
        .messages
        .last()
        .unwrap()
        .content
        .iter()
        .filter_map(|b| match b {
            ContentBlock::ToolResult { content, .. } => Some(content.clone()),
            _ => None,
        })
        .collect();
    assert!(results[0].contains("PASS"), "the validation ran against the implementation branch: {results:?}");
    assert!(
        llm.requests()[4]
            .messages
            .last()
            .unwrap()
            .content
            .iter()
            .any(|b| matches!(b, ContentBlock::ToolResult { is_error: true, .. })),
        "write refused"
    );
    assert!(out.result.get("branch").is_none(), "validation creates no branch");
    assert!(!origin.has_branch(&format!("omoi/{}", check.id)).await.unwrap());
}

fn tool_results(llm: &ScriptedLlm) -> Vec<(String, bool)> {
    llm.requests()
        .iter()
        .skip(1)
        .map(|r| match &r.messages.last().unwrap().content[0] {
            ContentBlock::ToolResult { content, is_error, .. } => (content.clone(), *is_error),
            other => panic!("{other:?}"),
        })
        .collect()
}

#[tokio::test]
async fn validation_escape_through_shell_redirection_leaves_the_workspace_unchanged() {
    let e = env();
    let sandbox = e.provider.create(SandboxSpec::default()).await.unwrap();
    let app = WorkspacePath::parse("app.py").unwrap();
    sandbox.write_file(&app, b"print('ok')\n").await.unwrap();
    let llm = ScriptedLlm::new();
    llm.push_tool_call(
        "run_command",
        json!({"command": "echo hacked > app.py; sh -c 'echo more >> app.py; : > new.txt'; cat app.py"}),
    );
    finish(&llm, "validated");
    let out = run(&llm, sandbox.as_ref(), &e.store, ExecutionMode::Validation, vec![]).run().await.unwrap();
    assert_eq!(out.stop, StopCause::Finished);
    let (text, is_error) = tool_results(&llm).remove(0);
    assert!(text.contains("hacked\nmore") && !is_error, "the command ran on its copy: {text}");
    assert_eq!(sandbox.read_file(&app).await.unwrap(), b"print('ok')\n", "the workspace is unchanged");
    let new = WorkspacePath::parse("new.txt").unwrap();
    assert!(matches!(sandbox.read_file(&new).await, Err(omoi_core::SandboxError::FileNotFound(_))));
}

#[tokio::test]
async fn exploration_escape_attempts_through_readonly_programs_are_refused_and_change_nothing() {
    let e = env();
    let sandbox = e.provider.create(SandboxSpec::default()).await.unwrap();
    let notes = WorkspacePath::parse("notes.txt").unwrap();
    sandbox.write_file(&notes, b"hello\n").await.unwrap();
    let git =
        "git init -q -b main && git add -A && git -c user.name=t -c user.email=t@t commit -qm init && git branch keep";
    assert!(sandbox.exec(ExecRequest::shell(git)).await.unwrap().success());
    let llm = ScriptedLlm::new();
    let escapes = [
        json!(["git", "grep", "-Otouch pwned", "hello"]),
        json!(["find", ".", "-fprint0", "pwned"]),
        json!(["find", ".", "-name", "notes.txt", "-exec", "rm", "{}", ";"]),
        json!(["git", "branch", "-D", "keep"]),
        json!(["git", "branch", "pwned"]),
        json!(["git", "-c", "core.pager=touch pwned", "log"]),
    ];
    for argv in &escapes {
        llm.push_tool_call("run_readonly", json!({ "argv": argv }));
    }
    llm.push_tool_call("list_files", json!({"path": "-delete"}));
    llm.push_tool_call("run_readonly", json!({"argv": ["git", "branch", "--list"]}));
    finish(&llm, "explored");
    let mut agent = run(&llm, sandbox.as_ref(), &e.store, ExecutionMode::Exploration, vec![]);
    agent.max_consecutive_errors = 100;
    let out = agent.run().await.unwrap();
    assert_eq!(out.stop, StopCause::Finished);
    let results = tool_results(&llm);
    for (i, argv) in escapes.iter().enumerate() {
        assert!(results[i].1 && results[i].0.starts_with("refused"), "{argv}: {:?}", results[i]);
    }
    assert!(results[escapes.len()].1, "a path `-delete` is a missing directory, not a find action");
    let branches = &results[escapes.len() + 1].0;
    assert!(branches.contains("keep") && !branches.contains("pwned"), "{branches}");
    assert_eq!(sandbox.read_file(&notes).await.unwrap(), b"hello\n");
    let listing = sandbox.exec(ExecRequest::shell("ls -A")).await.unwrap().stdout_text();
    assert_eq!(listing, ".git\nnotes.txt\n");
}

#[tokio::test]
async fn read_file_tool_is_capped_and_a_fifo_is_refused_without_hanging() {
    let e = env();
    let sandbox = e.provider.create(SandboxSpec::default()).await.unwrap();
    let big = "x".repeat(3 << 20);
    sandbox.write_file(&WorkspacePath::parse("big.txt").unwrap(), big.as_bytes()).await.unwrap();
    assert!(sandbox.exec(ExecRequest::shell("mkfifo pipe")).await.unwrap().success());
    let llm = ScriptedLlm::new();
    llm.push_tool_call("read_file", json!({"path": "big.txt"}));
    llm.push_tool_call("read_file", json!({"path": "pipe"}));
    finish(&llm, "read");
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        run(&llm, sandbox.as_ref(), &e.store, ExecutionMode::Exploration, vec![]).run(),
    )
    .await
    .expect("a FIFO must not hang the tool")
    .unwrap();
    assert_eq!(out.stop, StopCause::Finished);
    let results = tool_results(&llm);
    let (text, is_error) = &results[0];
    assert!(!is_error && text.contains("[truncated") && text.len() < 110 * 1024, "{} bytes", text.len());
    let (text, is_error) = &results[1];
    assert!(*is_error && text.contains("not a regular file"), "{text}");
}
