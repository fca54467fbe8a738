//! Memory that agents use: lessons written back with near-duplicate reinforcement, task
//! contexts ranked by similarity, recency and kind with stale citations ranked down, on the
//! in-memory, SQLite and Postgres stores; and the agent executor carrying a memory from one
//! task into the next.

use std::sync::Arc;
use std::time::Duration;

use omoi_core::config::MemoryConfig;
use omoi_core::testkit::{ManualClock, ScriptedLlm};
use omoi_core::{
    AgentId, ClaimRequest, Clock, Cursor, Event, EventStore, ExecutionMode, FencingToken, HashingEmbedder, Lease,
    MemoryKind, MemoryStore, NewMemory, NewTask, StoreError, SystemClock, Task, TaskDefinition, TaskStore,
};
use omoi_exec::agent::AgentExecutor;
use omoi_exec::git::GitRepo;
use omoi_exec::memory::{DirFiles, Lesson, MemoryError, MemoryService, cite};
use omoi_exec::worker::{ExecContext, TaskExecutor};
use omoi_sandbox::LocalSandboxProvider;
use omoi_store::{InMemoryStore, PostgresStore, SqliteStore};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const DIMS: usize = 256;

/// A store kind under test, and whatever must outlive the store.
struct Backend {
    store: Arc<dyn MemoryStore>,
    _dir: Option<tempfile::TempDir>,
}

async fn backend(kind: &str, clock: Arc<ManualClock>) -> Option<Backend> {
    let clock: Arc<dyn Clock> = clock;
    Some(match kind {
        "memory" => Backend { store: Arc::new(InMemoryStore::with_clock(clock)), _dir: None },
        "sqlite" => {
            let dir = tempfile::tempdir().unwrap();
            let store = SqliteStore::builder(dir.path().join("omoi.db")).clock(clock).open().await.unwrap();
            Backend { store: Arc::new(store), _dir: Some(dir) }
        }
        _ => {
            let url = omoi_core::testkit::service_url("OMOI_TEST_POSTGRES_URL")?;
            let schema = format!("omoi_t_{}_{}", chrono::Utc::now().timestamp(), &uuid_tail());
            let store = PostgresStore::builder(url).schema(schema).clock(clock).connect().await.unwrap();
            Backend { store: Arc::new(store), _dir: None }
        }
    })
}

fn uuid_tail() -> String {
    omoi_core::MemoryId::new().to_string().replace('-', "")[20..].to_owned()
}

/// Runs `scenario` on each store kind.
macro_rules! on_every_store {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[tokio::test]
            async fn memory() {
                super::$scenario("memory").await;
            }
            #[tokio::test]
            async fn sqlite() {
                super::$scenario("sqlite").await;
            }
            #[tokio::test]
            async fn postgres() {
                super::$scenario("postgres").await;
            }
        }
    )*};
}

on_every_store!(
    near_duplicates_reinforce_instead_of_adding,
    contexts_rank_and_flag_stale_memories,
    an_embedder_of_another_dimension_is_refused_up_front
);

fn lesson(kind: MemoryKind, text: &str, citations: Vec<omoi_core::memory::Citation>) -> Lesson {
    Lesson { kind, text: text.into(), citations }
}

async fn service(store: Arc<dyn MemoryStore>, clock: Arc<ManualClock>, config: MemoryConfig) -> MemoryService {
    MemoryService::new(store, Arc::new(HashingEmbedder::new(DIMS)), clock, config).await.unwrap()
}

async fn near_duplicates_reinforce_instead_of_adding(kind: &str) {
    let clock = ManualClock::new();
    let Some(b) = backend(kind, clock.clone()).await else { return };
    let memory = service(b.store.clone(), clock.clone(), MemoryConfig::default()).await;
    let text = "`pytest -q` failed: ModuleNotFoundError: No module named 'slug'. Fix: add slug.py";
    let first = memory.learn(vec![lesson(MemoryKind::ErrorFix, text, vec![])], json!({"task": "T1"})).await.unwrap();
    assert_eq!(first.stored.len(), 1);
    let id = first.stored[0];

    clock.advance(Duration::from_secs(600));
    let cited = cite("slug.py", "def slugify(s):\n    return s\n", 1, 2).unwrap();
    let again = memory
        .learn(
            vec![
                // The same lesson (cosine 1.0), now with a citation: reinforces.
                lesson(MemoryKind::ErrorFix, text, vec![cited.clone()]),
                // The same text as another kind is another memory.
                lesson(MemoryKind::Learning, text, vec![]),
                // Something else entirely.
                lesson(
                    MemoryKind::ErrorFix,
                    "cargo build failed: linker cc not found; installed build-essential",
                    vec![],
                ),
            ],
            json!({"task": "T2"}),
        )
        .await
        .unwrap();
    assert_eq!(again.reinforced, vec![id]);
    assert_eq!(again.stored.len(), 2);
    let m = b.store.get_memory(id).await.unwrap();
    assert_eq!(m.reinforcements, 1);
    assert_eq!(m.citations, vec![cited]);
    assert_eq!(m.refreshed_at, clock.now());
    assert_eq!(m.metadata, json!({"task": "T1"}));
}

async fn contexts_rank_and_flag_stale_memories(kind: &str) {
    let clock = ManualClock::new();
    let Some(b) = backend(kind, clock.clone()).await else { return };
    let dir = tempfile::tempdir().unwrap();
    let (slug, router) = ("def slugify(s):\n    return s.lower()\n", "ROUTES = ['/a']\n");
    std::fs::write(dir.path().join("slug.py"), slug).unwrap();
    std::fs::write(dir.path().join("router.py"), router).unwrap();
    let files = DirFiles(dir.path().to_owned());
    let config = MemoryConfig { top_k: 3, similarity_threshold: 0.2, ..MemoryConfig::default() };
    let memory = service(b.store.clone(), clock.clone(), config.clone()).await;
    let learned = memory
        .learn(
            vec![
                lesson(
                    MemoryKind::Learning,
                    "slugify helper lives in slug.py and lowercases titles",
                    vec![cite("slug.py", slug, 1, 2).unwrap()],
                ),
                lesson(
                    MemoryKind::ErrorFix,
                    "slugify titles failed on unicode; fixed by normalizing titles first",
                    vec![cite("router.py", router, 1, 1).unwrap()],
                ),
                lesson(MemoryKind::Decision, "slugify titles with hyphens, chose hyphens over underscores", vec![]),
                lesson(MemoryKind::Warning, "docker daemon needs a private socket", vec![]),
            ],
            json!({}),
        )
        .await
        .unwrap();
    let [learning, fix, decision, unrelated] = learned.stored[..] else { panic!("{learned:?}") };
    let task = task_with("slugify titles", "use the slugify helper for titles");

    // Fresh: the error fix ranks first.
    let ctx = memory.task_context(&task, &files).await.unwrap();
    let order = |ctx: &omoi_exec::memory::TaskContext| ctx.memories.iter().map(|m| (m.id, m.stale)).collect::<Vec<_>>();
    assert_eq!(order(&ctx), vec![(fix, false), (learning, false), (decision, false)], "{ctx:?}");
    assert!(ctx.memories.windows(2).all(|w| w[0].score >= w[1].score));
    assert!(ctx.text.contains("## Memories from earlier tasks"));
    assert!(ctx.text.contains("(cites slug.py:1-2)"), "{}", ctx.text);
    let fresh_fix_score = ctx.memories[0].score;

    // The error fix's cited code changes: flagged stale and ranked down (still shown first, as
    // an error fix, but with half its score, below the others).
    std::fs::write(dir.path().join("router.py"), "ROUTES = ['/a', '/b']\n").unwrap();
    let ctx = memory.task_context(&task, &files).await.unwrap();
    assert_eq!(order(&ctx), vec![(fix, true), (learning, false), (decision, false)], "{ctx:?}");
    assert!((ctx.memories[0].score - fresh_fix_score * 0.5).abs() < 1e-9);
    assert!(ctx.memories[0].score < ctx.memories[2].score);
    assert!(ctx.text.contains("[STALE: the cited code changed since"), "{}", ctx.text);

    // top_k is honoured: the best non-stale memory alone.
    let one = service(b.store.clone(), clock.clone(), MemoryConfig { top_k: 1, ..config }).await;
    assert_eq!(order(&one.task_context(&task, &files).await.unwrap()), vec![(learning, false)]);

    // Uses are counted per context; the unrelated memory (below the similarity threshold, no
    // keyword in common) was never included.
    let uses = |id| {
        let store = b.store.clone();
        async move { store.get_memory(id).await.unwrap().uses }
    };
    assert_eq!((uses(fix).await, uses(learning).await, uses(decision).await, uses(unrelated).await), (2, 3, 2, 0));
}

fn task_with(title: &str, description: &str) -> Task {
    let now = chrono::Utc::now();
    Task {
        id: omoi_core::TaskId::new(),
        def: TaskDefinition { title: title.into(), description: description.into(), ..TaskDefinition::default() },
        links: Default::default(),
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
    }
}

/// The store's dimension (fixed here by its first memory) is checked when the service is
/// assembled: an embedder of another dimension is refused before anything is written.
async fn an_embedder_of_another_dimension_is_refused_up_front(kind: &str) {
    let Some(b) = backend(kind, ManualClock::new()).await else { return };
    b.store.put_memory(NewMemory::new(MemoryKind::Learning, "three dimensions", vec![1.0, 0.0, 0.0])).await.unwrap();
    let err = MemoryService::new(
        b.store.clone(),
        Arc::new(HashingEmbedder::new(DIMS)),
        Arc::new(SystemClock),
        MemoryConfig::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, MemoryError::Store(StoreError::DimensionMismatch { expected: 3, got: DIMS })), "{err}");
    MemoryService::new(b.store, Arc::new(HashingEmbedder::new(3)), Arc::new(SystemClock), MemoryConfig::default())
        .await
        .expect("the store's own dimension is accepted");
}

#[tokio::test]
async fn a_task_learns_an_error_fix_and_the_next_task_starts_with_it() {
    let root = tempfile::tempdir().unwrap();
    let provider = LocalSandboxProvider::new(root.path());
    let store = InMemoryStore::new();
    let origin_dir = tempfile::tempdir().unwrap();
    tokio::fs::write(origin_dir.path().join("README.md"), "# sample\n").await.unwrap();
    let origin = GitRepo::init(origin_dir.path()).await.unwrap();
    let first = NewTask::new("add a slugify helper").mode(ExecutionMode::Implementation);
    let second = NewTask::new("slugify post titles with the slugify helper")
        .mode(ExecutionMode::Implementation)
        .depends_on([first.id]);
    store.insert_tasks(vec![first.clone(), second.clone()]).await.unwrap();
    let memory = MemoryService::new(
        Arc::new(store.clone()),
        Arc::new(HashingEmbedder::new(DIMS)),
        Arc::new(SystemClock),
        MemoryConfig { similarity_threshold: 0.1, ..MemoryConfig::default() },
    )
    .await
    .unwrap();
    let llm = Arc::new(ScriptedLlm::new());
    let check = "python3 -c 'import slug; assert slug.slugify(\"A B\") == \"a-b\"'";
    llm.push_tool_call("run_command", json!({"command": check}));
    llm.push_tool_call(
        "write_file",
        json!({"path": "slug.py", "content": "def slugify(s):\n    return s.lower().replace(' ', '-')\n"}),
    );
    llm.push_tool_call("run_command", json!({"command": check}));
    llm.push_tool_call("finish", json!({"summary": "added slug.slugify", "output": {}}));
    let executor = AgentExecutor::new(
        llm.clone(),
        Arc::new(provider),
        Arc::new(store.clone()),
        Arc::new(store.clone()),
        Arc::new(SystemClock),
    )
    .with_origin(origin, "main")
    .with_memory(memory);

    let claim = |store: InMemoryStore| async move {
        store.claim(&ClaimRequest::new(AgentId::new(), 1, Duration::from_secs(60))).await.unwrap().remove(0)
    };
    let claimed = claim(store.clone()).await;
    let out = executor.execute(&claimed.task, &ctx()).await.unwrap();
    let stored = out.result["memories"]["stored"].as_array().unwrap().clone();
    assert_eq!(stored.len(), 2, "{}", out.result);
    let fix = store.get_memory(serde_json::from_value(stored[0].clone()).unwrap()).await.unwrap();
    assert_eq!(fix.kind, MemoryKind::ErrorFix);
    assert!(fix.text.contains("ModuleNotFoundError") && fix.text.contains("slug.py"), "{}", fix.text);
    assert_eq!(
        (fix.citations[0].path.as_str(), fix.citations[0].start_line, fix.citations[0].end_line),
        ("slug.py", 1, 2)
    );
    store
        .complete(first.id, claimed.lease.token, omoi_core::Completion { result: out.result, ..Default::default() })
        .await
        .unwrap();

    llm.push_tool_call("finish", json!({"summary": "titles are slugified", "output": {}}));
    let claimed = claim(store.clone()).await;
    assert_eq!(claimed.task.id, second.id);
    executor.execute(&claimed.task, &ctx()).await.unwrap();
    let prompt = llm.requests().last().unwrap().messages[0].text();
    assert!(prompt.contains("## Memories from earlier tasks"), "{prompt}");
    assert!(prompt.contains(&format!("[error_fix] {}", fix.text.lines().next().unwrap())), "{prompt}");
    assert!(prompt.contains("(cites slug.py:1-2)") && !prompt.contains("STALE"), "{prompt}");
    assert_eq!(store.get_memory(fix.id).await.unwrap().uses, 1);
    let context = store
        .read_events(Cursor::START, 10_000)
        .await
        .unwrap()
        .into_iter()
        .find_map(|e| match e.event {
            Event::AgentStep { task_id, step: 0, action, detail, .. }
                if task_id == second.id && action == "context" =>
            {
                Some(detail)
            }
            _ => None,
        })
        .expect("the context is recorded in the trajectory");
    assert_eq!(context["memories"][0]["id"], json!(fix.id));
    assert_eq!(context["memories"][0]["stale"], json!(false));
}

fn ctx() -> ExecContext {
    ExecContext {
        agent_id: AgentId::new(),
        lease: Lease { holder: AgentId::new(), token: FencingToken(1), expires_at: chrono::Utc::now() },
        cancel: CancellationToken::new(),
    }
}
