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
//!    included).
//! 5. A second feature request on the same repository (`snake_case`), run by a new orchestrator
//!    over the same SQLite file: its agent starts with the memories the first run wrote back —
//!    the revision's error fix first, printed with its citation (path, lines, content hash) —
//!    and uses it. Its recorded conversation then loops (the same passing test run again and
//!    again): the stuck detector of the monitoring loop finds it, steers the agent through the
//!    store, the agent acknowledges the steer between turns and finishes. Its validated branch is
//!    merged, and the tests run on `main`.
//!
//! Everything is stored in one SQLite file. Memories are embedded by the zero-dependency
//! hashing embedder. The model is a recorded conversation played by `ScriptedLlm` (the tools
//! really run: files are written, commands and tests are executed); with `ANTHROPIC_API_KEY`
//! set it is Claude instead (or an OpenAI-compatible server with `OPENAI_API_KEY` /
//! `OPENAI_BASE_URL`).

mod progress;
mod sample;

use std::collections::HashMap;
use std::error::Error;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use omoi_core::config::OmoiConfig;
use omoi_core::testkit::ScriptedLlm;
use omoi_core::{Clock, ExecutionMode, HashingEmbedder, NewSpec, NewTask, SystemClock, TaskFilter, TaskId, TaskLinks};
use omoi_examples::model::Model;
use omoi_examples::monitoring::monitors;
use omoi_exec::agent::AgentResult;
use omoi_exec::git::MergeReport;
use omoi_exec::memory::MemoryService;
use omoi_exec::{GitRepo, Orchestrator, RunReport};
use omoi_sandbox::LocalSandboxProvider;
use omoi_spec::RunOutcome;
use omoi_store::SqliteStore;

const IDEA: &str = "Add a slugify(text) function to textkit.strings that turns any title into a lower-case, \
ASCII, hyphen-separated URL slug; export it from the package, document it in the README and cover it with unit tests.";

/// The second feature request, on the same repository.
const SECOND: &str = "Add snake_case to textkit.strings";
const SECOND_IDEA: &str = "Add a snake_case(text) function to textkit.strings that turns any title into a \
lower-case, ASCII, underscore-separated identifier; export it from the package and cover it with unit tests.";

const RECORDING: &str = include_str!("../recordings/quickstart.json");

/// The model: Claude or an OpenAI-compatible server when configured, else the recording.
fn model() -> Result<Model, Box<dyn Error>> {
    omoi_examples::model::from_env_or_recording(RECORDING)
}

/// What every orchestrator of the quickstart shares.
struct Parts {
    store: SqliteStore,
    model: Model,
    sandboxes: Arc<LocalSandboxProvider>,
    origin: GitRepo,
    memory: MemoryService,
    clock: Arc<dyn Clock>,
    config: OmoiConfig,
}

/// The whole assembly: one store, a model with sandboxes, the repository, memory, two workers,
/// and the monitors running beside them.
fn orchestrator(p: &Parts) -> Result<Orchestrator, Box<dyn Error>> {
    Ok(Orchestrator::builder(p.store.clone())
        .agents(p.model.llm.clone(), p.sandboxes.clone())
        .origin(p.origin.clone(), "main")
        .memory(p.memory.clone())
        .background("monitors", monitors(p.store.clone(), p.clock.clone(), p.config.clone()))
        .workers(2)
        .clock(p.clock.clone())
        .config(p.config.clone())
        .build()?)
}

/// Drains `orch`, printing the tasks that did not complete (an error if any).
async fn drain(orch: &Orchestrator) -> Result<RunReport, Box<dyn Error>> {
    let report = tokio::time::timeout(Duration::from_secs(600), orch.drain())
        .await
        .map_err(|_| "tasks did not settle within 10 minutes")??;
    if !report.all_completed() {
        for t in report.unfinished() {
            println!(
                "   {} ended {}: {}",
                t.local_id.clone().unwrap_or_else(|| t.title.clone()),
                t.state,
                t.error.clone().unwrap_or_default()
            );
        }
        return Err(format!("{} task(s) did not complete", report.unfinished().count()).into());
    }
    Ok(report)
}

/// Prints a merge, naming each branch by its task; an error if it stopped at a conflict.
fn print_merge(merge: &MergeReport, report: &RunReport) -> Result<(), Box<dyn Error>> {
    for s in &merge.order {
        let local = report
            .tasks
            .iter()
            .find(|t| s.branch.ends_with(&t.id.to_string()))
            .map(|t| t.local_id.clone().unwrap_or_else(|| t.title.clone()))
            .unwrap_or_default();
        println!("   {:<8} {} ({} conflicting files)", local, s.branch, s.conflicts.len());
    }
    if let Some(stop) = &merge.stopped {
        return Err(format!("merge stopped at {}: conflicts in {}", stop.branch, stop.files.join(", ")).into());
    }
    println!("   merged {} branch{}", merge.merged.len(), if merge.merged.len() == 1 { "" } else { "es" });
    Ok(())
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
    let model = model()?;
    let sandboxes = Arc::new(LocalSandboxProvider::new(dir.join("sandboxes")));
    println!("  sample repository: {} (branch main, {})", repo_dir.display(), &initial[..8]);
    println!("  store: {}", dir.join("omoi.db").display());
    println!("  model: {}", model.source);
    println!("  sandboxes: local processes under {}", dir.join("sandboxes").display());
    println!("  memory: hybrid search in the store, hashing embedder (384 dimensions)");
    println!("  monitors: heartbeat and stuck detector beside the workers\n");

    let mut config = OmoiConfig::default();
    config.queue.poll_interval = Duration::from_millis(250);
    // Checked often, so a looping agent is caught within a turn or two.
    config.monitor.stuck_interval = Duration::from_millis(100);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    // The embedder's dimension is checked against the store's here.
    let embedder = Arc::new(HashingEmbedder::new(384));
    let memory = MemoryService::new(Arc::new(store.clone()), embedder, clock.clone(), config.memory.clone()).await?;
    let parts = Parts { store: store.clone(), model, sandboxes, origin: origin.clone(), memory, clock, config };
    let orch = orchestrator(&parts)?;

    let (tasks, specs) = (orch.tasks().clone(), orch.specs().clone());
    let board_spec = Arc::new(parking_lot::Mutex::new(None));
    let names: HashMap<_, _> =
        orch.worker_ids().into_iter().enumerate().map(|(i, id)| (id, format!("worker-{}", i + 1))).collect();
    let names = Arc::new(parking_lot::Mutex::new(names));
    let printer = tokio::spawn(progress::print(
        tasks.clone(),
        orch.events().clone(),
        Arc::new(store.clone()),
        board_spec.clone(),
        names.clone(),
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
    let report = drain(&orch).await?;
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
    print_merge(&orch.merge().await?, &report)?;

    // 4. A second feature request: a new orchestrator over the same store starts with what the
    //    first run learned, and the monitors watch it.
    println!(
        "\n4. a second feature request on the same repository: \"{}…\"",
        SECOND_IDEA.chars().take(60).collect::<String>()
    );
    let orch = orchestrator(&parts)?;
    names.lock().extend(orch.worker_ids().into_iter().enumerate().map(|(i, id)| (id, format!("worker-{}", i + 1))));
    *board_spec.lock() = None;
    let named = |id: &str| TaskLinks { local_id: Some(id.into()), ..TaskLinks::default() };
    let mut feature =
        NewTask::new(SECOND).description(SECOND_IDEA).mode(ExecutionMode::Implementation).links(named("SNK-001"));
    feature.def.acceptance_criteria = vec![
        "snake_case(\"Hello, World!\") returns \"hello_world\"".into(),
        "the result never starts or ends with an underscore".into(),
        "snake_case is exported from textkit and covered by unit tests".into(),
    ];
    let validation = NewTask::new("Run the test suite on snake_case")
        .description("Run the whole unittest suite on the snake_case work and report the verdict.")
        .mode(ExecutionMode::Validation)
        .links(named("SNK-002"))
        .depends_on([feature.id]);
    let feature_id: TaskId = feature.id;
    orch.submit(vec![feature, validation]).await?;
    let report = drain(&orch).await?;
    if let Some(recorded) = &parts.model.recorded {
        // What the model was given: the memories section of its first prompt.
        let track = ScriptedLlm::task_track(SECOND);
        if let Some(first) = recorded.requests_on(&track).first() {
            let prompt = first.messages[0].text();
            println!("\n   the memories in SNK-001's first prompt (what the model was given):");
            let section = prompt.lines().skip_while(|l| !l.starts_with("## Memories")).skip(1);
            for line in section.take_while(|l| !l.starts_with("## ")) {
                if line.starts_with("- [") {
                    println!("     {}", clip(line, 110));
                }
                if let Some(cites) = line.find("(cites ").map(|i| &line[i..]) {
                    println!("       {cites}");
                }
            }
        }
        let steered = recorded.requests_on(&ScriptedLlm::steered_track(&track)).len();
        println!("   the model answered {steered} request(s) after it was steered");
    }
    let result = report.tasks.iter().find(|t| t.id == feature_id).and_then(|t| t.result.clone());
    let learned = result.as_ref().map(|r| r["memories"].clone()).unwrap_or_default();
    println!(
        "   SNK-001 wrote back {} new memories and reinforced {}",
        learned["stored"].as_array().map_or(0, Vec::len),
        learned["reinforced"].as_array().map_or(0, Vec::len)
    );
    println!("\n5. merge into main");
    print_merge(&orch.merge().await?, &report)?;

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

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n { s.to_owned() } else { format!("{}…", s.chars().take(n).collect::<String>()) }
}
