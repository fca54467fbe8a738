//! Builds a task graph in memory and drains it with a few workers, printing progress.
//!
//! ```text
//! cargo run --release --example drain
//! ```
//!
//! The graph is a small release pipeline: design tasks fan out into implementation tasks per
//! module, each followed by a validation task, joined by an integration task. Workers have
//! different capabilities, some tasks fail once and are retried with backoff, and the board is
//! printed as tasks move.

use std::time::Duration;

use omoi_core::config::QueueConfig;
use omoi_core::{BackoffPolicy, EventStore, ExecutionMode, NewTask, Priority, TaskStore, WorkPhase};
use omoi_examples::board_line;
use omoi_exec::orchestrator::is_settled;
use omoi_exec::{ExecError, Worker, executor_fn};
use omoi_store::InMemoryStore;

const MODULES: [&str; 6] = ["parser", "lexer", "codegen", "runtime", "cli", "docs"];

fn pipeline() -> Vec<NewTask> {
    let quick = BackoffPolicy::fixed(Duration::from_millis(50), 2.0, Duration::from_millis(400));
    let design = NewTask::new("design the module boundaries").phase(WorkPhase::Design).priority(Priority::High);
    let mut tasks = vec![design.clone()];
    let mut validations = Vec::new();
    for (i, m) in MODULES.iter().enumerate() {
        let build = NewTask::new(format!("implement {m}"))
            .depends_on([design.id])
            .requires(if i % 2 == 0 { vec!["rust"] } else { vec!["rust", "docs"] })
            .backoff(quick)
            .input(serde_json::json!({ "module": m, "flaky": i % 3 == 0 }));
        let validate = NewTask::new(format!("validate {m}"))
            .mode(ExecutionMode::Validation)
            .phase(WorkPhase::Testing)
            .depends_on([build.id])
            .backoff(quick);
        validations.push(validate.id);
        tasks.push(build);
        tasks.push(validate);
    }
    tasks.push(
        NewTask::new("integrate all modules")
            .phase(WorkPhase::Integration)
            .priority(Priority::Critical)
            .depends_on(validations),
    );
    tasks
}

/// A worker named `name` offering `caps`: sleeps a little per task, fails flaky tasks once.
fn worker(name: &'static str, caps: &'static [&'static str], store: &InMemoryStore) -> Worker {
    let queue = QueueConfig { poll_interval: Duration::from_millis(100), ..QueueConfig::default() };
    Worker::builder(store.clone())
        .name(name)
        .concurrency(2)
        .capabilities(caps.iter().copied())
        .queue_config(queue)
        .executor(executor_fn(move |task, _ctx| async move {
            tokio::time::sleep(Duration::from_millis(30 + 10 * task.def.title.len() as u64)).await;
            let flaky = task.def.input.get("flaky").and_then(|v| v.as_bool()).unwrap_or(false);
            if flaky && task.attempts == 1 {
                println!("  {name:<10} retry  {}", task.def.title);
                return Err(ExecError::retryable("transient test flake"));
            }
            println!("  {name:<10} done   {}", task.def.title);
            Ok(serde_json::json!({ "by": name, "attempt": task.attempts }))
        }))
        .build()
        .expect("valid worker settings")
}

/// Resolves once nothing in the store can still run.
async fn settled(store: InMemoryStore) {
    while !is_settled(&store.count_tasks(None).await.expect("counts")) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    let store = InMemoryStore::new();
    let tasks = pipeline();
    println!("omoi drain: {} tasks, 3 workers (in-memory store)", tasks.len());
    store.insert_tasks(tasks).await.expect("insert");
    println!("{}", board_line(&store.count_tasks(None).await.expect("counts")));

    let progress = {
        let store = store.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(150)).await;
                println!("{}", board_line(&store.count_tasks(None).await.expect("counts")));
            }
        })
    };
    let workers = [
        worker("rustacean", &["rust"], &store),
        worker("writer", &["rust", "docs"], &store),
        worker("generalist", &["rust", "docs", "python"], &store),
    ];
    let runs = workers.map(|w| {
        let store = store.clone();
        tokio::spawn(async move { w.run_until(settled(store)).await })
    });
    for r in runs {
        r.await.expect("worker").expect("store");
    }
    progress.abort();
    let counts = store.count_tasks(None).await.expect("counts");
    println!("{}", board_line(&counts));
    let events = store.read_events(omoi_core::Cursor::START, usize::MAX).await.expect("events");
    println!("drained: {} events recorded, from task.created to task.completed", events.len());
}
