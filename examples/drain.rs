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

use futures::StreamExt;
use omoi_core::{
    AgentId, BackoffPolicy, ClaimRequest, Completion, EventStore, ExecutionMode, Failure, NewTask, Priority, TaskStore,
    WorkPhase,
};
use omoi_examples::board_line;
use omoi_store::InMemoryStore;
use tracing::{Instrument, info_span};

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

async fn worker(name: &'static str, caps: &'static [&'static str], store: InMemoryStore) {
    let holder = AgentId::new();
    let mut wake = store.subscribe(store.last_cursor().await.expect("cursor")).await.expect("subscribe");
    loop {
        let req = ClaimRequest::new(holder, 2, Duration::from_secs(30)).with_capabilities(caps.iter().copied());
        let claimed = store.claim(&req).await.expect("claim");
        if claimed.is_empty() {
            let counts = store.count_tasks(None).await.expect("counts");
            let open: u64 = counts.iter().filter(|(s, _)| !s.is_terminal()).map(|(_, n)| n).sum();
            if open == 0 {
                return;
            }
            // Sleep until something happens in the store, with a polling backstop.
            let _ = tokio::time::timeout(Duration::from_millis(100), wake.next()).await;
            continue;
        }
        for c in claimed {
            let span = info_span!("task", worker = name, task = %c.task.id, title = %c.task.def.title);
            async {
                store.start(c.task.id, c.lease.token).await.expect("start");
                tokio::time::sleep(Duration::from_millis(30 + 10 * c.task.def.title.len() as u64)).await;
                let flaky = c.task.def.input.get("flaky").and_then(|v| v.as_bool()).unwrap_or(false);
                if flaky && c.task.attempts == 1 {
                    store
                        .fail(c.task.id, c.lease.token, Failure::retryable("transient test flake"))
                        .await
                        .expect("fail");
                    println!("  {name:<10} retry  {}", c.task.def.title);
                } else {
                    let result = serde_json::json!({ "by": name, "attempt": c.task.attempts });
                    store
                        .complete(c.task.id, c.lease.token, Completion { result, ..Completion::default() })
                        .await
                        .expect("complete");
                    println!("  {name:<10} done   {}", c.task.def.title);
                }
            }
            .instrument(span)
            .await;
        }
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
        tokio::spawn(worker("rustacean", &["rust"], store.clone())),
        tokio::spawn(worker("writer", &["rust", "docs"], store.clone())),
        tokio::spawn(worker("generalist", &["rust", "docs", "python"], store.clone())),
    ];
    for w in workers {
        w.await.expect("worker");
    }
    progress.abort();
    let counts = store.count_tasks(None).await.expect("counts");
    println!("{}", board_line(&counts));
    let events = store.read_events(omoi_core::Cursor::START, usize::MAX).await.expect("events");
    println!("drained: {} events recorded, from task.created to task.completed", events.len());
}
