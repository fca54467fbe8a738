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
//!    own git branch; the validation task runs the real test suite on the merged work. Its
//!    verdict comes from the exit code of that run: the suite fails on an edge case, so the
//!    failed validation branches a blocking bug discovery — a revision task given the failing
//!    output, then a new validation — which the tasks after it wait for.
//! 4. Merges the branches a passing validation covers into `main` in conflict order (the fix
//!    included), prints the final branch and its diff stat, and runs the tests on `main`.
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

use omoi_core::config::OmoiConfig;
use omoi_core::{LlmClient, NewSpec, TaskFilter};
use omoi_exec::agent::AgentResult;
use omoi_exec::{GitRepo, Orchestrator};
use omoi_sandbox::LocalSandboxProvider;
use omoi_spec::RunOutcome;
use omoi_store::SqliteStore;

const IDEA: &str = "Add a slugify(text) function to textkit.strings that turns any title into a lower-case, \
ASCII, hyphen-separated URL slug; export it from the package, document it in the README and cover it with unit tests.";

const RECORDING: &str = include_str!("../recordings/quickstart.json");

/// The model: Claude or an OpenAI-compatible server when configured, else the recording.
fn model() -> Result<(Arc<dyn LlmClient>, String), Box<dyn Error>> {
    omoi_examples::model::from_env_or_recording(RECORDING)
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
    let (llm, source) = model()?;
    let sandboxes = Arc::new(LocalSandboxProvider::new(dir.join("sandboxes")));
    println!("  sample repository: {} (branch main, {})", repo_dir.display(), &initial[..8]);
    println!("  store: {}", dir.join("omoi.db").display());
    println!("  model: {source}");
    println!("  sandboxes: local processes under {}\n", dir.join("sandboxes").display());

    // The whole assembly: one store, a model with sandboxes, the repository, two workers.
    let mut config = OmoiConfig::default();
    config.queue.poll_interval = Duration::from_millis(250);
    let orch = Orchestrator::builder(store)
        .agents(llm, sandboxes)
        .origin(origin.clone(), "main")
        .workers(2)
        .config(config)
        .build()?;

    let (tasks, specs) = (orch.tasks().clone(), orch.specs().clone());
    let board_spec = Arc::new(parking_lot::Mutex::new(None));
    let names: HashMap<_, _> =
        orch.worker_ids().into_iter().enumerate().map(|(i, id)| (id, format!("worker-{}", i + 1))).collect();
    let printer = tokio::spawn(progress::print(
        tasks.clone(),
        orch.events().clone(),
        board_spec.clone(),
        Arc::new(parking_lot::Mutex::new(names)),
    ));

    // 1. The spec: explore runs as an agent over the repository; the other phases are one
    //    structured call each; sync is deterministic.
    println!("1. spec: \"{}\"", IDEA.chars().take(72).collect::<String>() + "…");
    let spec = orch.submit_new_spec(NewSpec::new("slugify", IDEA)).await?;
    if !matches!(spec.outcome, RunOutcome::Completed) {
        return Err(format!("the spec stopped early: {:?}", spec.outcome).into());
    }
    *board_spec.lock() = Some(spec.spec_id);
    tokio::time::sleep(Duration::from_millis(200)).await; // let the printer catch up
    println!("\n   tickets and tasks:");
    for ticket in specs.list_tickets(spec.spec_id).await? {
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
    let report = tokio::time::timeout(Duration::from_secs(600), orch.drain())
        .await
        .map_err(|_| "tasks did not settle within 10 minutes")??;
    if !report.all_completed() {
        for t in report.unfinished() {
            println!(
                "   {} ended {}: {}",
                t.local_id.clone().unwrap_or_default(),
                t.state,
                t.error.clone().unwrap_or_default()
            );
        }
        return Err(format!("{} task(s) did not complete", report.unfinished().count()).into());
    }
    let done = orch.submitted_tasks().await?;
    println!("\n   tasks after execution (branches under their parent):");
    let local = |id: omoi_core::TaskId| {
        done.iter().find(|t| t.id == id).and_then(|t| t.links.local_id.clone()).unwrap_or_else(|| id.to_string())
    };
    for t in &done {
        let parent = t.links.parent_id.map(|p| format!("  ← branch of {}", local(p))).unwrap_or_default();
        println!(
            "     {:<12} {:<44} {:<14} {}{parent}",
            t.links.local_id.clone().unwrap_or_default(),
            t.def.title,
            t.def.mode,
            t.state
        );
    }
    for v in done.iter().filter(|t| t.def.mode == omoi_core::ExecutionMode::Validation) {
        let Some(result) = AgentResult::of(v) else { continue };
        let verdict = result.validation.as_ref().map(|v| v.describe()).unwrap_or_else(|| "no verdict".into());
        println!(
            "   validation ({}): tests {} ({verdict})",
            v.links.local_id.clone().unwrap_or_default(),
            if result.validation_passed() { "passed" } else { "FAILED" }
        );
        if let Some(r) = &result.revision {
            println!(
                "     → blocking bug discovery {}: revision and re-validation branched as {}",
                r.discovery,
                r.local_ids.join(", ")
            );
        }
    }

    // 3. Merge into main, fewest conflicts first: only work a passing validation covers.
    println!("\n3. merge into main (fewest conflicts first)");
    let merge = orch.merge().await?;
    for s in &merge.order {
        let local = report
            .tasks
            .iter()
            .find(|t| s.branch.ends_with(&t.id.to_string()))
            .and_then(|t| t.local_id.clone())
            .unwrap_or_default();
        println!("   {:<8} {} ({} conflicting files)", local, s.branch, s.conflicts.len());
    }
    if let Some(stop) = &merge.stopped {
        return Err(format!("merge stopped at {}: conflicts in {}", stop.branch, stop.files.join(", ")).into());
    }
    println!("   merged {} branches", merge.merged.len());

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
    println!("\ndone in {:.1} s — inspect {}", started.elapsed().as_secs_f64(), repo_dir.display());
    if !tests.status.success() {
        return Err("the tests fail on main".into());
    }
    Ok(())
}
