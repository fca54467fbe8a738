//! What the `Orchestrator` gives its agents beyond a model and sandboxes: memory (in the task
//! agents and the agentic spec phases, written back after each), steering recorded in its store
//! by any process (delivered between turns), and background services such as the monitoring
//! loop, run beside the workers and stopped after them.

use std::sync::Arc;
use std::time::Duration;

use omoi_core::config::{MemoryConfig, OmoiConfig};
use omoi_core::testkit::{Scripted, ScriptedLlm, tool_response};
use omoi_core::{
    Cursor, Event, EventStore, HashingEmbedder, InterventionSource, InterventionStore, MemoryKind, MemoryQuery,
    MemoryStore, NewIntervention, NewMemory, NewTask, SearchMode, Severity, SystemClock, TaskState, TaskStore,
};
use omoi_exec::git::GitRepo;
use omoi_exec::memory::MemoryService;
use omoi_exec::{BuildError, Orchestrator, executor_fn};
use omoi_sandbox::LocalSandboxProvider;
use omoi_store::InMemoryStore;
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

fn quick() -> OmoiConfig {
    let mut cfg = OmoiConfig::default();
    cfg.queue.poll_interval = Duration::from_millis(20);
    cfg
}

fn call(name: &str, input: Value) -> Scripted {
    Scripted::Response(tool_response(&[(name, input)]))
}

async fn sample_repo(dir: &std::path::Path) -> GitRepo {
    tokio::fs::create_dir_all(dir.join("textkit")).await.unwrap();
    tokio::fs::write(dir.join("README.md"), "# textkit\nSmall string helpers.\n").await.unwrap();
    tokio::fs::write(dir.join("textkit/strings.py"), "def title_case(s):\n    return s.title()\n").await.unwrap();
    GitRepo::init(dir).await.unwrap()
}

fn explore_output() -> Value {
    json!({
        "codebase_summary": "textkit is a tiny pure-Python package of string helpers.",
        "project_type": "python library",
        "tech_stack": ["python3"],
        "structure": {"textkit/": "the package"},
        "key_files": [{"path": "textkit/strings.py", "purpose": "string helpers"}],
        "conventions": {"naming": "snake_case functions", "testing": "unittest", "patterns": ["pure functions"]},
        "discovery_questions": [{"category": "scope", "questions": ["Is a max length needed?"]}],
        "feature_summary": {
            "name": "slugify",
            "problem_statement": "Callers need URL-safe slugs.",
            "scope_in": ["slugify(text)"],
            "scope_out": ["transliteration"],
            "risks": ["punctuation"],
            "success_metrics": ["tests pass"]
        },
        "relevant_patterns": ["pure functions"],
        "related_to_feature": ["textkit/strings.py"]
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_reaches_exploration_and_every_task_and_what_they_learned_is_written_back() {
    let repo_dir = tempfile::tempdir().unwrap();
    let repo = sample_repo(repo_dir.path()).await;
    let sandboxes = tempfile::tempdir().unwrap();
    let store = InMemoryStore::new();
    let embedder = Arc::new(HashingEmbedder::new(128));
    let earlier = "textkit string helpers must stay free of third-party dependencies";
    store.put_memory(NewMemory::new(MemoryKind::Decision, earlier, embedder.embed_one(earlier))).await.unwrap();
    let config = MemoryConfig { similarity_threshold: 0.1, ..MemoryConfig::default() };
    let memory =
        MemoryService::new(Arc::new(store.clone()), embedder.clone(), Arc::new(SystemClock), config).await.unwrap();
    let llm = Arc::new(ScriptedLlm::new());
    // Explore (the default track); the prd phase finds no answer, so the spec stops there.
    llm.push_tool_call("read_file", json!({"path": "textkit/strings.py"}));
    llm.push_tool_call(
        "finish",
        json!({"summary": "textkit keeps its string helpers in textkit/strings.py", "output": explore_output()}),
    );
    let check = "python3 -c 'import slug; assert slug.slugify(\"A B\") == \"a-b\"'";
    let first = NewTask::new("add a slugify helper");
    let second = NewTask::new("slugify post titles with the slugify helper").depends_on([first.id]);
    llm.push_task(&first.def.title, call("run_command", json!({ "command": check })));
    let code = "def slugify(s):\n    return s.lower().replace(' ', '-')\n";
    llm.push_task(&first.def.title, call("write_file", json!({"path": "slug.py", "content": code})));
    llm.push_task(&first.def.title, call("run_command", json!({ "command": check })));
    llm.push_task(&first.def.title, call("finish", json!({"summary": "added slug.slugify", "output": {}})));
    llm.push_task(&second.def.title, call("finish", json!({"summary": "titles are slugified", "output": {}})));
    let orch = Orchestrator::builder(store.clone())
        .agents(llm.clone(), Arc::new(LocalSandboxProvider::new(sandboxes.path())))
        .origin(repo, "main")
        .memory(memory)
        .config(quick())
        .build()
        .unwrap();

    orch.submit_spec("Add slugify(text) to the textkit string helpers").await.unwrap_err();
    let explore_prompt = llm.requests()[0].messages[0].text();
    assert!(explore_prompt.contains(&format!("[decision] {earlier}")), "{explore_prompt}");
    let query = MemoryQuery::hybrid("textkit string helpers", embedder.embed_one("textkit string helpers"))
        .with_mode(SearchMode::Keyword);
    let found = store.search_memories(&query).await.unwrap();
    let knowledge = found.iter().find(|h| h.memory.kind == MemoryKind::CodebaseKnowledge).expect("explore learned");
    assert_eq!(knowledge.memory.citations[0].path, "textkit/strings.py");

    orch.submit(vec![first.clone(), second.clone()]).await.unwrap();
    let report = orch.drain().await.unwrap();
    assert!(report.all_completed(), "{:?}", report.unfinished().collect::<Vec<_>>());
    let result = report.tasks.iter().find(|t| t.id == first.id).unwrap().result.clone().unwrap();
    let stored = result["memories"]["stored"].as_array().expect("the first task wrote memories back").clone();
    assert_eq!(stored.len(), 2, "an error fix and a learning: {result}");
    let fix = store.get_memory(serde_json::from_value(stored[0].clone()).unwrap()).await.unwrap();
    assert_eq!(fix.kind, MemoryKind::ErrorFix);
    let prompt = llm.requests_on(&ScriptedLlm::task_track(&second.def.title))[0].messages[0].text();
    assert!(prompt.contains(&format!("[error_fix] {}", fix.text.lines().next().unwrap())), "{prompt}");
    assert!(prompt.contains("(cites slug.py:1-2)"), "{prompt}");
    assert_eq!(store.get_memory(fix.id).await.unwrap().uses, 1, "its use is counted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_background_monitor_steers_a_running_agent_through_the_store_and_stops_after_the_workers() {
    let dir = tempfile::tempdir().unwrap();
    let store = InMemoryStore::new();
    let go = dir.path().join("steered");
    let task = NewTask::new("wait for the build");
    let llm = Arc::new(ScriptedLlm::new());
    let wait = format!("while [ ! -f '{}' ]; do sleep 0.02; done", go.display());
    llm.push_task(&task.def.title, call("run_command", json!({ "command": wait })));
    llm.push_task(&task.def.title, call("finish", json!({"summary": "read the README first", "output": {}})));
    // A stand-in for a monitor in any process: it records a guidance for the agent once its
    // first tool call shows, then lets the command return; at shutdown it notes what it saw.
    let seen_at_stop: Arc<Mutex<Option<Vec<TaskState>>>> = Arc::default();
    let monitor = {
        let (store, go, seen_at_stop) = (store.clone(), go.clone(), seen_at_stop.clone());
        move |stop: CancellationToken| {
            let (store, go, seen_at_stop) = (store.clone(), go.clone(), seen_at_stop.clone());
            async move {
                let mut steered = false;
                while !steered && !stop.is_cancelled() {
                    for e in store.read_events(Cursor::START, 1000).await.unwrap() {
                        if let Event::AgentStep { task_id, agent_id, action, .. } = e.event
                            && action == "tool_call"
                            && !steered
                        {
                            let steer = NewIntervention::new(
                                agent_id,
                                Some(task_id),
                                Severity::Guidance,
                                InterventionSource::Guardian,
                                "check the README first",
                            );
                            store.record_intervention(steer).await.unwrap();
                            std::fs::write(&go, b"").unwrap();
                            steered = true;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                stop.cancelled().await;
                let tasks = store.list_tasks(&Default::default()).await.unwrap();
                *seen_at_stop.lock() = Some(tasks.into_iter().map(|t| t.state).collect());
            }
        }
    };
    let orch = Orchestrator::builder(store.clone())
        .agents(llm.clone(), Arc::new(LocalSandboxProvider::new(dir.path().join("sandboxes"))))
        .background("monitor", monitor)
        .config(quick())
        .build()
        .unwrap();
    orch.submit(vec![task.clone()]).await.unwrap();
    let report = orch.drain().await.unwrap();
    assert!(report.all_completed(), "{:?}", report.unfinished().collect::<Vec<_>>());
    let requests = llm.requests_on(&ScriptedLlm::task_track(&task.def.title));
    let after = requests[1].messages.last().unwrap().text();
    assert!(after.contains("[GUIDANCE from guardian] check the README first"), "{after}");
    let interventions = store.list_interventions(None, 10).await.unwrap();
    assert_eq!(interventions.len(), 1);
    assert!(!interventions[0].is_pending(), "acknowledged when applied");
    assert_eq!(
        seen_at_stop.lock().clone(),
        Some(vec![TaskState::Completed]),
        "the background service ran until the workers had stopped"
    );
}

#[tokio::test]
async fn memory_without_agents_to_give_it_to_is_refused_when_built() {
    let store = InMemoryStore::new();
    let memory = MemoryService::new(
        Arc::new(store.clone()),
        Arc::new(HashingEmbedder::new(8)),
        Arc::new(SystemClock),
        MemoryConfig::default(),
    )
    .await
    .unwrap();
    let built = Orchestrator::builder(store)
        .executor(executor_fn(|_task, _ctx| async move { Ok(json!(null)) }))
        .memory(memory)
        .build();
    assert!(matches!(built, Err(BuildError::Missing("a model for the memory", _))), "{built:?}");
}
