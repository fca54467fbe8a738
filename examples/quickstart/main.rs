//! The omoi quickstart: a feature idea all the way to a merged, tested branch.
//!
//! ```text
//! cargo run --release --example quickstart
//! ```
//!
//! 1. Creates a sample repository (`textkit`, a tiny Python package with unit tests) in a fresh
//!    working directory (`$OMOI_QUICKSTART_DIR`, or a new temporary directory).
//! 2. Runs every spec phase for "add slugify": explore as an agent reading the repository in a
//!    sandbox, then prd, requirements, design and tasks, each scored by its evaluator (a weak
//!    first attempt is retried with the evaluator's feedback), and sync into tickets and tasks.
//! 3. Executes the tasks with two workers, each task an agent in its own local sandbox on its
//!    own git branch; the validation task runs the real test suite on the merged work.
//! 4. Merges the task branches into `main` in conflict order, prints the final branch and its
//!    diff stat, and runs the tests on `main`.
//! 5. Shows the memories the tasks wrote back (with their citations), and the context a
//!    follow-up feature request would start with: the memories it retrieves, checked against
//!    the merged code.
//!
//! Everything is stored in one SQLite file. The model is a recorded conversation played by
//! `ScriptedLlm` (the tools really run: files are written, commands and tests are executed); with
//! `ANTHROPIC_API_KEY` set it is Claude instead (or an OpenAI-compatible server with
//! `OPENAI_API_KEY` / `OPENAI_BASE_URL`).

mod progress;
mod sample;

use std::collections::HashMap;
use std::error::Error;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use omoi_core::config::{OmoiConfig, SpecConfig};
use omoi_core::testkit::{Recording, ScriptedLlm};
use omoi_core::{
    Clock, CompletionRequest, EventStore, HashingEmbedder, LlmClient, MemoryId, MemoryStore, NewSpec, SpecStore,
    SystemClock, TaskFilter, TaskState, TaskStore,
};
use omoi_exec::agent::AgentExecutor;
use omoi_exec::git::{GitRepo, merge_in_conflict_order};
use omoi_exec::llm::{AnthropicClient, OpenAiClient};
use omoi_exec::memory::{DirFiles, MemoryService};
use omoi_exec::spec_agent::AgentPhaseExecutor;
use omoi_exec::worker::{Worker, WorkerConfig};
use omoi_sandbox::LocalSandboxProvider;
use omoi_spec::{RunOutcome, SpecRunner};
use omoi_store::SqliteStore;
use tokio_util::sync::CancellationToken;

const IDEA: &str = "Add a slugify(text) function to textkit.strings that turns any title into a lower-case, \
ASCII, hyphen-separated URL slug; export it from the package, document it in the README and cover it with unit tests.";

const RECORDING: &str = include_str!("../recordings/quickstart.json");

/// The model: Claude or an OpenAI-compatible server when configured, else the recording.
fn model() -> Result<(Arc<dyn LlmClient>, String), Box<dyn Error>> {
    if std::env::var_os("ANTHROPIC_API_KEY").is_some() {
        let client = AnthropicClient::from_env()?;
        return Ok((Arc::new(client.clone()), format!("Anthropic ({})", client.model())));
    }
    if std::env::var_os("OPENAI_API_KEY").is_some() || std::env::var_os("OPENAI_BASE_URL").is_some() {
        let client = OpenAiClient::from_env()?;
        return Ok((Arc::new(client.clone()), format!("OpenAI-compatible ({})", client.model())));
    }
    let recording: Recording = serde_json::from_str(RECORDING)?;
    // Task agents run concurrently: each task's conversation is its own track, named by the
    // task title that opens its prompt; the spec phases share the default track in order.
    let llm = ScriptedLlm::from_recording(recording).with_router(|r: &CompletionRequest| {
        let first = r.messages.first().map(|m| m.text()).unwrap_or_default();
        first.strip_prefix("# Task: ").and_then(|rest| rest.lines().next()).unwrap_or_default().to_owned()
    });
    Ok((Arc::new(llm), "a recorded conversation (set ANTHROPIC_API_KEY to use Claude)".into()))
}

fn workdir() -> Result<PathBuf, Box<dyn Error>> {
    let dir = match std::env::var_os("OMOI_QUICKSTART_DIR") {
        Some(d) => PathBuf::from(d),
        None => std::env::temp_dir().join(format!("omoi-quickstart-{}", uuid::Uuid::now_v7())),
    };
    if dir.exists() && std::fs::read_dir(&dir)?.next().is_some() {
        return Err(format!("{} is not empty; choose another OMOI_QUICKSTART_DIR", dir.display()).into());
    }
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .init();
    let started = Instant::now();
    let dir = workdir()?;
    let repo_dir = dir.join("textkit");
    println!("omoi quickstart\n  working directory: {}", dir.display());

    sample::write(&repo_dir).await?;
    let origin = GitRepo::init(&repo_dir).await?;
    let initial = origin.rev_parse("main").await?;
    let store = SqliteStore::open(dir.join("omoi.db")).await?;
    let (tasks, events, specs): (Arc<dyn TaskStore>, Arc<dyn EventStore>, Arc<dyn SpecStore>) =
        (Arc::new(store.clone()), Arc::new(store.clone()), Arc::new(store.clone()));
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let (llm, source) = model()?;
    let sandboxes = Arc::new(LocalSandboxProvider::new(dir.join("sandboxes")));
    let memories: Arc<dyn MemoryStore> = Arc::new(store.clone());
    let memory =
        MemoryService::new(memories.clone(), Arc::new(HashingEmbedder::new(256)), clock.clone(), Default::default())
            .await?
            .with_specs(specs.clone());
    println!("  sample repository: {} (branch main, {})", repo_dir.display(), &initial[..8]);
    println!("  store: {}", dir.join("omoi.db").display());
    println!("  model: {source}");
    println!("  sandboxes: local processes under {}\n", dir.join("sandboxes").display());

    let board_spec = Arc::new(parking_lot::Mutex::new(None));
    let worker_names = Arc::new(parking_lot::Mutex::new(HashMap::new()));
    let printer =
        tokio::spawn(progress::print(tasks.clone(), events.clone(), board_spec.clone(), worker_names.clone()));

    // 1. The spec: explore runs as an agent over the repository; the other phases are one
    //    structured call each; sync is deterministic.
    println!("1. spec: \"{}\"", IDEA.chars().take(72).collect::<String>() + "…");
    let phases =
        AgentPhaseExecutor::new(llm.clone(), sandboxes.clone(), events.clone(), clock.clone(), origin.clone(), "main")
            .with_memory(memory.clone());
    let runner = SpecRunner::new(specs.clone(), events.clone(), clock.clone(), Arc::new(phases), SpecConfig::default());
    let (spec_id, outcome) = runner.start(NewSpec::new("slugify", IDEA)).await?;
    if !matches!(outcome, RunOutcome::Completed) {
        return Err(format!("the spec stopped early: {outcome:?}").into());
    }
    *board_spec.lock() = Some(spec_id);
    tokio::time::sleep(Duration::from_millis(200)).await; // let the printer catch up
    println!("\n   tickets and tasks:");
    for ticket in specs.list_tickets(spec_id).await? {
        println!("   {} {} [{}]", ticket.local_id.clone().unwrap_or_default(), ticket.title, ticket.status);
        let filter = TaskFilter { ticket_id: Some(ticket.id), ..TaskFilter::default() };
        for t in tasks.list_tasks(&filter).await? {
            println!(
                "     {} {:<32} {:<14} {}",
                t.links.local_id.unwrap_or_default(),
                t.def.title,
                t.def.mode,
                t.state
            );
        }
    }

    // 2. Execution: two workers, each task an agent in its own sandbox on its own branch.
    println!("\n2. execution: 2 workers, one local sandbox per task");
    let executor = Arc::new(
        AgentExecutor::new(llm.clone(), sandboxes.clone(), tasks.clone(), events.clone(), clock.clone())
            .with_origin(origin.clone(), "main")
            .with_memory(memory.clone()),
    );
    let cfg = OmoiConfig::default();
    let stop = CancellationToken::new();
    let mut handles = Vec::new();
    for name in ["worker-1", "worker-2"] {
        let mut wc = WorkerConfig::new(name, 1, &cfg.queue);
        wc.poll_interval = Duration::from_millis(250);
        let worker = Worker::new(tasks.clone(), events.clone(), executor.clone(), clock.clone(), wc);
        worker_names.lock().insert(worker.id(), name.to_owned());
        let stop = stop.clone();
        handles.push(tokio::spawn(async move { worker.run(stop).await }));
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    let filter = TaskFilter { spec_id: Some(spec_id), ..TaskFilter::default() };
    loop {
        let all = tasks.list_tasks(&filter).await?;
        let busy = all.iter().any(|t| {
            matches!(t.state, TaskState::Ready | TaskState::Claimed | TaskState::Running | TaskState::Waiting)
        });
        if !busy {
            break;
        }
        if Instant::now() > deadline {
            return Err("tasks did not settle within 10 minutes".into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.cancel();
    for h in handles {
        h.await??;
    }
    let done = tasks.list_tasks(&filter).await?;
    let failed: Vec<_> = done.iter().filter(|t| t.state != TaskState::Completed).collect();
    if !failed.is_empty() {
        for t in &failed {
            println!(
                "   {} ended {}: {}",
                t.links.local_id.clone().unwrap_or_default(),
                t.state,
                t.last_error.clone().unwrap_or_default()
            );
        }
        return Err(format!("{} task(s) did not complete", failed.len()).into());
    }
    if let Some(v) = done.iter().find(|t| t.def.mode == omoi_core::ExecutionMode::Validation) {
        let passed = v.result.as_ref().and_then(|r| r["output"]["passed"].as_bool()).unwrap_or(false);
        println!(
            "   validation ({}): tests {}",
            v.links.local_id.clone().unwrap_or_default(),
            if passed { "passed" } else { "FAILED" }
        );
    }

    // 3. Merge the task branches into main, fewest conflicts first.
    println!("\n3. merge into main (fewest conflicts first)");
    let branches: Vec<String> =
        done.iter().filter_map(|t| t.result.as_ref()?.get("branch")?.as_str().map(str::to_owned)).collect();
    let report = merge_in_conflict_order(&origin, "main", &branches).await?;
    for s in &report.order {
        let local = done
            .iter()
            .find(|t| s.branch.ends_with(&t.id.to_string()))
            .and_then(|t| t.links.local_id.clone())
            .unwrap_or_default();
        println!("   {:<8} {} ({} conflicting files)", local, s.branch, s.conflicts.len());
    }
    if let Some(stop) = &report.stopped {
        return Err(format!("merge stopped at {}: conflicts in {}", stop.branch, stop.files.join(", ")).into());
    }
    println!("   merged {} branches", report.merged.len());

    println!("\nfinal branch: main at {}", &origin.rev_parse("main").await?[..8]);
    print!("{}", origin.run(&["log", "--oneline", "--first-parent", &format!("{initial}..main")]).await?);
    print!("{}", origin.diff_stat(&initial, "main").await?);
    let tests = tokio::process::Command::new("python3")
        .args(["-m", "unittest", "discover", "-s", "tests"])
        .current_dir(&repo_dir)
        .output()
        .await?;
    let summary = String::from_utf8_lossy(&tests.stderr);
    let ran = summary.lines().find(|l| l.starts_with("Ran ")).unwrap_or("no tests ran");
    println!("tests on main: {} ({ran})", if tests.status.success() { "OK" } else { "FAILED" });
    printer.abort();

    // 4. Memory: what the tasks wrote back, and what a follow-up request starts with.
    println!("\n4. memory");
    for t in &done {
        let stored = t
            .result
            .as_ref()
            .and_then(|r| serde_json::from_value::<Vec<MemoryId>>(r["memories"]["stored"].clone()).ok());
        for id in stored.unwrap_or_default() {
            let m = memories.get_memory(id).await?;
            let cites: Vec<String> =
                m.citations.iter().map(|c| format!("{}:{}-{}", c.path, c.start_line, c.end_line)).collect();
            let first = m.text.lines().next().unwrap_or_default().chars().take(90).collect::<String>();
            println!(
                "   wrote [{}] {first} (cites {})",
                m.kind,
                if cites.is_empty() { "nothing".into() } else { cites.join(", ") }
            );
        }
    }
    let follow_up = "Use slugify from textkit.strings to build URL slugs for blog post titles";
    let ctx = memory.query_context(follow_up, &DirFiles(repo_dir.clone())).await?;
    println!("   follow-up request \"{follow_up}\" retrieves:");
    for m in &ctx.memories {
        let cites: Vec<String> =
            m.citations.iter().map(|c| format!("{}:{}-{}", c.path, c.start_line, c.end_line)).collect();
        let first = m.text.lines().next().unwrap_or_default().chars().take(90).collect::<String>();
        println!(
            "   - [{}] {first} (score {:.2}{}; cites {})",
            m.kind,
            m.score,
            if m.stale { ", STALE" } else { "" },
            if cites.is_empty() { "nothing".into() } else { cites.join(", ") }
        );
    }
    println!("\ndone in {:.1} s — inspect {}", started.elapsed().as_secs_f64(), repo_dir.display());
    if !tests.status.success() {
        return Err("the tests fail on main".into());
    }
    Ok(())
}
