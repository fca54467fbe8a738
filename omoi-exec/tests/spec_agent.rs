//! The agentic spec phase executor: explore runs as a read-only agent over a real repository.

use std::sync::Arc;

use omoi_core::config::SpecConfig;
use omoi_core::testkit::{ManualClock, ScriptedLlm};
use omoi_core::{ContentBlock, Cursor, Event, EventStore, NewSpec, SpecPhase, SpecState, SpecStore};
use omoi_exec::git::GitRepo;
use omoi_exec::spec_agent::AgentPhaseExecutor;
use omoi_sandbox::LocalSandboxProvider;
use omoi_spec::output::ExploreOutput;
use omoi_spec::{SpecError, SpecRunner};
use omoi_store::InMemoryStore;
use serde_json::json;

async fn sample_repo(dir: &std::path::Path) -> GitRepo {
    tokio::fs::create_dir_all(dir.join("textkit")).await.unwrap();
    tokio::fs::write(dir.join("README.md"), "# textkit\nSmall string helpers.\n").await.unwrap();
    tokio::fs::write(dir.join("textkit/strings.py"), "def title_case(s):\n    return s.title()\n").await.unwrap();
    GitRepo::init(dir).await.unwrap()
}

/// The agentic explore phase over `repo` at `main`, in local sandboxes under `sandboxes`.
fn explorer(
    llm: &Arc<ScriptedLlm>,
    sandboxes: &std::path::Path,
    store: &Arc<InMemoryStore>,
    clock: &Arc<ManualClock>,
    repo: GitRepo,
) -> AgentPhaseExecutor {
    AgentPhaseExecutor::new(
        llm.clone(),
        Arc::new(LocalSandboxProvider::new(sandboxes)),
        store.clone(),
        clock.clone(),
        repo,
        "main",
    )
}

fn explore_output() -> serde_json::Value {
    json!({
        "codebase_summary": "textkit is a tiny pure-Python package of string helpers (title_case) with a README and no dependencies.",
        "project_type": "python library",
        "tech_stack": ["python3", "unittest"],
        "structure": {"textkit/": "the package", "README.md": "usage"},
        "key_files": [
            {"path": "textkit/strings.py", "purpose": "string helpers; slugify belongs here"},
            {"path": "README.md", "purpose": "documents the helpers"},
            {"path": "textkit/__init__.py", "purpose": "package marker (to be added)"}
        ],
        "conventions": {"naming": "snake_case functions", "testing": "unittest in tests/", "patterns": ["pure functions"]},
        "discovery_questions": [
            {"category": "behaviour", "questions": ["Should slugify transliterate accents?", "What separator is used?"]},
            {"category": "scope", "questions": ["Is a max length needed?"]}
        ],
        "feature_summary": {
            "name": "slugify",
            "problem_statement": "Callers need URL-safe slugs from arbitrary titles.",
            "scope_in": ["slugify(text) in textkit.strings", "unit tests"],
            "scope_out": ["unicode transliteration"],
            "risks": ["edge cases with punctuation"],
            "success_metrics": ["tests pass"]
        },
        "relevant_patterns": ["pure functions returning str"],
        "related_to_feature": ["textkit/strings.py"]
    })
}

#[tokio::test]
async fn explore_runs_as_a_read_only_agent_over_the_repository_and_checkpoints_its_typed_output() {
    let repo_dir = tempfile::tempdir().unwrap();
    let repo = sample_repo(repo_dir.path()).await;
    let sandboxes = tempfile::tempdir().unwrap();
    let clock = ManualClock::new();
    let store = Arc::new(InMemoryStore::with_clock(clock.clone()));
    let llm = Arc::new(ScriptedLlm::new());
    llm.push_tool_call("list_files", json!({"path": ".", "depth": 2}));
    llm.push_tool_call("read_file", json!({"path": "textkit/strings.py"}));
    llm.push_tool_call("write_file", json!({"path": "textkit/strings.py", "content": "oops"}));
    llm.push_tool_call("finish", json!({"summary": "explored", "output": {"codebase_summary": 42}}));
    llm.push_tool_call("finish", json!({"summary": "explored textkit", "output": explore_output()}));
    // PRD then runs through the fallback structured call, whose script is empty: the run stops there.
    let executor = explorer(&llm, sandboxes.path(), &store, &clock, repo);
    let runner =
        SpecRunner::new(store.clone(), store.clone(), clock.clone(), Arc::new(executor), SpecConfig::default());
    let err =
        runner.start(NewSpec::new("slugify", "Add slugify(text) to textkit.strings with tests")).await.unwrap_err();
    assert!(matches!(err, SpecError::Model { .. }), "{err}");

    let spec = store.list_specs().await.unwrap().remove(0);
    assert_eq!(spec.state, SpecState::Failed { phase: SpecPhase::Prd });
    let explore: ExploreOutput = serde_json::from_value(spec.checkpoints[&SpecPhase::Explore].output.clone()).unwrap();
    assert_eq!(explore.feature_summary.name, "slugify");
    assert_eq!(spec.checkpoints[&SpecPhase::Explore].attempts, 1, "a rejected finish is fixed inside the attempt");

    let requests = llm.requests();
    let offered: Vec<_> = requests[0].tools.iter().map(|t| t.name.as_str()).collect();
    assert!(offered.contains(&"read_file") && !offered.contains(&"write_file") && !offered.contains(&"run_command"));
    let finish_schema = &requests[0].tools.iter().find(|t| t.name == "finish").unwrap().input_schema;
    assert!(
        finish_schema["properties"]["output"]["properties"]["key_files"].is_object(),
        "finish carries the phase schema"
    );
    let result = |i: usize| match &requests[i].messages.last().unwrap().content[0] {
        ContentBlock::ToolResult { content, is_error, .. } => (content.clone(), *is_error),
        other => panic!("{other:?}"),
    };
    assert!(result(1).0.contains("textkit/strings.py"), "the agent listed the real repository");
    assert!(result(2).0.contains("def title_case"), "and read it");
    assert!(result(3).1 && result(3).0.contains("not available in exploration mode"));
    assert!(result(4).1 && result(4).0.contains("finish rejected"), "{}", result(4).0);
    assert_eq!(
        tokio::fs::read_to_string(repo_dir.path().join("textkit/strings.py")).await.unwrap(),
        "def title_case(s):\n    return s.title()\n"
    );
    let steps = store
        .read_events(Cursor::START, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| matches!(e.event, Event::AgentStep { .. }))
        .count();
    assert!(steps >= 10, "the trajectory is recorded ({steps} steps)");
}

#[tokio::test]
async fn explore_starts_with_relevant_memories_and_writes_back_what_it_learned() {
    use omoi_core::config::MemoryConfig;
    use omoi_core::{HashingEmbedder, MemoryKind, MemoryQuery, MemoryStore, NewMemory, SearchMode};
    use omoi_exec::memory::MemoryService;

    let repo_dir = tempfile::tempdir().unwrap();
    let repo = sample_repo(repo_dir.path()).await;
    let sandboxes = tempfile::tempdir().unwrap();
    let clock = ManualClock::new();
    let store = Arc::new(InMemoryStore::with_clock(clock.clone()));
    let embedder = Arc::new(HashingEmbedder::new(128));
    let earlier = "slugify in textkit must keep digits";
    store.put_memory(NewMemory::new(MemoryKind::Decision, earlier, embedder.embed_one(earlier))).await.unwrap();
    let memory =
        MemoryService::new(store.clone(), embedder.clone(), clock.clone(), MemoryConfig::default()).await.unwrap();
    let llm = Arc::new(ScriptedLlm::new());
    llm.push_tool_call("read_file", json!({"path": "textkit/strings.py"}));
    llm.push_tool_call(
        "finish",
        json!({"summary": "textkit keeps string helpers in textkit/strings.py", "output": explore_output()}),
    );
    let executor = explorer(&llm, sandboxes.path(), &store, &clock, repo).with_memory(memory);
    let runner =
        SpecRunner::new(store.clone(), store.clone(), clock.clone(), Arc::new(executor), SpecConfig::default());
    runner.start(NewSpec::new("slugify", "Add slugify(text) to textkit.strings with tests")).await.unwrap_err();

    let prompt = llm.requests()[0].messages[0].text();
    assert!(prompt.contains(&format!("[decision] {earlier}")), "{prompt}");
    let query = MemoryQuery::hybrid("textkit string helpers", embedder.embed_one("textkit string helpers"))
        .with_mode(SearchMode::Keyword);
    let learned = store.search_memories(&query).await.unwrap();
    let knowledge = learned.iter().find(|h| h.memory.kind == MemoryKind::CodebaseKnowledge).expect("written back");
    assert!(knowledge.memory.text.contains("textkit/strings.py"));
    assert_eq!(knowledge.memory.citations[0].path, "textkit/strings.py");
    assert_eq!((knowledge.memory.citations[0].start_line, knowledge.memory.citations[0].end_line), (1, 2));
}

/// The spec SYNC path goes through the discovery service: what the explore agent reports with
/// `report_discovery` (no task exists yet) is kept in the explore checkpoint, and once SYNC has
/// stored the plan each finding is reported as a discovery of the task it concerns — a new one
/// branches (a task linked to its source), one the plan already covers is a duplicate of that
/// planned task and spawns nothing; the SYNC output says which.
#[tokio::test]
async fn explore_findings_are_reported_at_sync_branching_the_plan_or_deduplicated_against_it() {
    use omoi_core::config::DiscoveryConfig;
    use omoi_core::{
        DiscoveryFilter, DiscoveryStatus, DiscoveryStore, DuplicateOf, HashingEmbedder, TaskFilter, TaskStore,
    };
    use omoi_discovery::DiscoveryService;
    use omoi_spec::{RunOutcome, testkit};

    let repo_dir = tempfile::tempdir().unwrap();
    let repo = sample_repo(repo_dir.path()).await;
    let sandboxes = tempfile::tempdir().unwrap();
    let clock = ManualClock::new();
    let store = Arc::new(InMemoryStore::with_clock(clock.clone()));
    let llm = Arc::new(ScriptedLlm::new());
    llm.push_tool_call(
        "report_discovery",
        json!({
            "kind": "technical_debt",
            "title": "strings.py helpers are untested",
            "description": "title_case in pyutils/strings.py has no unit test; a refactor could break it unseen",
            "done_definition": "title_case has unit tests that pass",
            "files": ["pyutils/strings.py"],
            "blocking": false
        }),
    );
    // The plan (the canned TASKS output) already has this work as TSK-003.
    llm.push_tool_call(
        "report_discovery",
        json!({
            "kind": "missing_requirement",
            "title": "Support max_length",
            "description": "Add the max_length parameter and _truncate, cutting at the last hyphen that fits; reject max_length < 1.",
            "done_definition": "max_length is supported"
        }),
    );
    llm.push_tool_call(
        "finish",
        json!({"summary": "explored", "output": testkit::canned_output(SpecPhase::Explore).unwrap()}),
    );
    for phase in [SpecPhase::Prd, SpecPhase::Requirements, SpecPhase::Design, SpecPhase::Tasks] {
        llm.push_phase(phase, &testkit::canned_output(phase).unwrap());
    }
    let executor = explorer(&llm, sandboxes.path(), &store, &clock, repo);
    let service = DiscoveryService::new(store.clone(), store.clone(), &DiscoveryConfig::default())
        .with_embedder(Arc::new(HashingEmbedder::new(256)));
    let runner =
        SpecRunner::new(store.clone(), store.clone(), clock.clone(), Arc::new(executor), SpecConfig::default())
            .with_discoveries(service);
    let (id, outcome) = runner.start(NewSpec::new("slugify", testkit::IDEA)).await.unwrap();
    assert_eq!(outcome, RunOutcome::Completed);

    let told = llm
        .requests()
        .iter()
        .filter_map(|r| match r.messages.last().unwrap().content.first() {
            Some(ContentBlock::ToolResult { content, .. }) if content.contains("kept") => Some(content.clone()),
            _ => None,
        })
        .count();
    assert_eq!(told, 2, "the agent is told each finding is kept for SYNC");
    let spec = store.get_spec(id).await.unwrap();
    assert_eq!(spec.checkpoints[&SpecPhase::Explore].findings.len(), 2, "kept in the explore checkpoint");

    let tasks = store.list_tasks(&TaskFilter { spec_id: Some(id), ..TaskFilter::default() }).await.unwrap();
    let by_local = |l: &str| tasks.iter().find(|t| t.links.local_id.as_deref() == Some(l)).unwrap();
    let found = store.list_discoveries(&DiscoveryFilter { spec_id: Some(id), ..DiscoveryFilter::default() }).await;
    let found = found.unwrap();
    assert_eq!(found.len(), 2);
    let branched = &found[0];
    assert_eq!((branched.status, branched.source_task), (DiscoveryStatus::Branched, by_local("TSK-001").id));
    let branch = store.get_task(branched.spawned[0]).await.unwrap();
    assert_eq!(branch.links.local_id.as_deref(), Some("TSK-001.1"));
    assert_eq!(branch.links.parent_id, Some(by_local("TSK-001").id));
    let dup = &found[1];
    assert_eq!(dup.status, DiscoveryStatus::Duplicate);
    assert_eq!(dup.duplicate_of, Some(DuplicateOf::Task(by_local("TSK-003").id)), "the plan covers it already");
    assert_eq!(tasks.len(), 7, "six planned tasks and one branch");

    let sync = &spec.checkpoints[&SpecPhase::Sync].output["discoveries"];
    let lines: Vec<&str> = sync.as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
    assert_eq!(lines.len(), 2);
    assert!(lines[0].contains("branched as TSK-001.1"), "{lines:?}");
    assert!(lines[1].contains("duplicate of task"), "{lines:?}");
}
