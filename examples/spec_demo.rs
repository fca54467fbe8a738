//! Runs the spec pipeline for a small feature and prints each phase and the synced plan.
//!
//! ```text
//! cargo run --release --example spec_demo
//! ```
//!
//! The model:
//! - with `ANTHROPIC_API_KEY` set: Claude through `omoi_exec::llm::AnthropicClient`
//!   (`ANTHROPIC_MODEL`, `ANTHROPIC_BASE_URL` optional);
//! - else with `OPENAI_BASE_URL` or `OPENAI_API_KEY` set: any OpenAI-compatible server through
//!   `omoi_exec::llm::OpenAiClient` (`OPENAI_MODEL` optional);
//! - else a `ScriptedLlm` replaying `examples/recordings/spec_demo.json`, a recorded
//!   conversation in which the requirements phase first answers with flawed requirements (one
//!   acceptance criterion, an IF without THEN, a sentence without a modal verb) and the design
//!   phase first answers with truncated JSON; both are retried with the feedback after a 2 s
//!   backoff.
//!
//! The spec, its checkpoints, events, tickets and tasks are stored in a SQLite file
//! (`OMOI_SPEC_DEMO_DB`, or a new file in the temp directory), whose path is printed.
//! `RUST_LOG=omoi_spec=info` shows the runner's spans and decisions.

use std::collections::BTreeMap;
use std::error::Error;
use std::sync::Arc;

use futures::StreamExt;
use omoi_core::testkit::{Recording, ScriptedLlm};
use omoi_core::{Event, EventStore, LlmClient, NewSpec, SpecPhase, SpecStore, TaskFilter, TaskId, TaskStore};
use omoi_exec::Orchestrator;
use omoi_exec::llm::{AnthropicClient, OpenAiClient};
use omoi_spec::RunOutcome;
use omoi_store::SqliteStore;

const IDEA: &str = "Add a slugify(text, max_length=None) function with tests to pyutils, our tiny dependency-free \
Python utils package: lower-case, ASCII-transliterated, hyphen-separated slugs for URLs and file names.";

/// A model and where it comes from.
type Model = (Arc<dyn LlmClient>, &'static str);

/// A real model if the environment names one, else the recording.
fn model() -> Result<Model, Box<dyn Error>> {
    let set = |var: &str| std::env::var(var).is_ok_and(|v| !v.is_empty());
    if set("ANTHROPIC_API_KEY") {
        return Ok((Arc::new(AnthropicClient::from_env()?), "Anthropic Messages API"));
    }
    if set("OPENAI_BASE_URL") || set("OPENAI_API_KEY") {
        return Ok((Arc::new(OpenAiClient::from_env()?), "OpenAI-compatible chat completions"));
    }
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/recordings/spec_demo.json");
    let recording: Recording = serde_json::from_str(&std::fs::read_to_string(path)?)?;
    Ok((Arc::new(ScriptedLlm::from_recording(recording)), "recording examples/recordings/spec_demo.json"))
}

fn database_path() -> std::path::PathBuf {
    match std::env::var_os("OMOI_SPEC_DEMO_DB") {
        Some(p) => p.into(),
        None => std::env::temp_dir().join(format!("omoi-spec-demo-{}.db", std::process::id())),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .init();

    let (llm, source) = model()?;
    println!("model: {} ({source})", llm.model());
    let path = database_path();
    let store = SqliteStore::open(&path).await?;
    println!("store: SQLite at {}", path.display());
    let orch = Orchestrator::builder(store.clone()).spec_model(llm).build()?;

    // Tail the event log while the spec runs, so attempts and retries show as they happen.
    let mut events = store.subscribe(store.last_cursor().await?).await?;
    let tail = tokio::spawn(async move {
        while let Some(Ok(stored)) = events.next().await {
            match stored.event {
                Event::SpecPhaseEvaluated { phase, attempt, score, passed, .. } => {
                    let verdict = if passed { "passed" } else { "failed" };
                    println!("  {:<12} attempt {attempt}: score {score:.2} {verdict}", phase.as_str());
                }
                Event::SpecPhaseRetry { phase, feedback, .. } => {
                    println!("  {:<12} retrying after a backoff, with this feedback:", phase.as_str());
                    for line in feedback.lines().take(10) {
                        println!("  {:<12}   | {line}", "");
                    }
                }
                Event::SpecSynced { tickets_created, tasks_created, .. } => {
                    println!("  {:<12} materialized {tickets_created} tickets, {tasks_created} tasks", "sync");
                }
                _ => {}
            }
        }
    });

    println!("\nrunning the spec pipeline:");
    let submitted = orch.submit_new_spec(NewSpec::new("slugify", IDEA)).await?;
    tail.abort();
    assert_eq!(submitted.outcome, RunOutcome::Completed);
    let id = submitted.spec_id;

    let spec = store.get_spec(id).await?;
    println!("\nphases:");
    println!("  {:<12} {:>5} {:>8}", "phase", "score", "attempts");
    for phase in SpecPhase::ALL {
        let cp = &spec.checkpoints[phase];
        println!("  {:<12} {:>5.2} {:>8}", phase.as_str(), cp.score, cp.attempts);
    }
    println!("  usage: {} input + {} output tokens", spec.usage.input_tokens, spec.usage.output_tokens);

    let tasks = store.list_tasks(&TaskFilter { spec_id: Some(id), ..TaskFilter::default() }).await?;
    let local: BTreeMap<TaskId, String> =
        tasks.iter().map(|t| (t.id, t.links.local_id.clone().unwrap_or_default())).collect();
    println!("\ntickets and tasks:");
    for ticket in store.list_tickets(id).await? {
        println!(
            "  {} [{}] {} ({}, {})",
            ticket.local_id.as_deref().unwrap_or("-"),
            ticket.priority,
            ticket.title,
            ticket.status,
            ticket.requirements.join(", ")
        );
        for t in tasks.iter().filter(|t| t.links.ticket_id == Some(ticket.id)) {
            let deps: Vec<&str> = t.dependencies.iter().map(|d| local[d].as_str()).collect();
            println!(
                "    {} {:<30} {:>4}h {:<14} {:<8} after [{}]",
                local[&t.id],
                t.def.title,
                t.def.estimate_hours.unwrap_or_default(),
                t.def.mode.to_string(),
                t.state.to_string(),
                deps.join(", ")
            );
        }
    }
    let sync = &spec.checkpoints[&SpecPhase::Sync].output;
    println!(
        "\ncritical path: {} ({}h); parallel: {}",
        sync["dependency_analysis"]["critical_path"],
        sync["dependency_analysis"]["critical_path_hours"],
        sync["dependency_analysis"]["parallel_opportunities"]
    );
    Ok(())
}
