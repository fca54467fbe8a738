//! # omoi-exec
//!
//! The execution engine: workers that claim tasks with leases and run them, agents that work in
//! sandboxes on their own git branches, and the [`Orchestrator`] that assembles it all.
//!
//! A queue with workers and a plain closure:
//!
//! ```
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
//! use omoi_core::NewTask;
//! use omoi_exec::{Orchestrator, executor_fn};
//! use omoi_store::InMemoryStore; // or SqliteStore / PostgresStore
//! use serde_json::json;
//!
//! let orch = Orchestrator::builder(InMemoryStore::new())
//!     .executor(executor_fn(|task, _ctx| async move { Ok(json!({ "done": task.def.title })) }))
//!     .workers(2)
//!     .build()
//!     .unwrap();
//! let fetch = NewTask::new("fetch");
//! orch.submit(vec![fetch.clone(), NewTask::new("report").depends_on([fetch.id])]).await.unwrap();
//! let report = orch.drain().await.unwrap();
//! assert!(report.all_completed());
//! # });
//! ```
//!
//! A feature idea to merged work: the spec pipeline plans it, agents in sandboxes execute the
//! tasks on their own branches, and the branches are merged into the repository (the model here
//! is whatever `Arc<dyn LlmClient>` you have: `llm::AnthropicClient`, `llm::OpenAiClient`, or a
//! recording):
//!
//! ```no_run
//! # async fn demo(llm: std::sync::Arc<dyn omoi_core::LlmClient>) -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use omoi_exec::{GitRepo, Orchestrator};
//! use omoi_sandbox::LocalSandboxProvider;
//! use omoi_store::SqliteStore;
//!
//! let store = SqliteStore::open("omoi.db").await?;
//! let repo = GitRepo::open("path/to/repo");
//! let orch = Orchestrator::builder(store)
//!     .agents(llm, Arc::new(LocalSandboxProvider::new("sandboxes")))
//!     .origin(repo, "main")
//!     .workers(2)
//!     .build()?;
//! orch.submit_spec("Add a slugify(text) function with unit tests").await?;
//! let report = orch.drain().await?;
//! println!("{} tasks, ${:.2}", report.tasks.len(), report.usage.cost_usd);
//! let merge = orch.merge().await?;
//! println!("merged {} branches", merge.merged.len());
//! # Ok(()) }
//! ```
//!
//! What it is made of:
//!
//! - [`worker`]: a [`Worker`] claims tasks by capability with concurrency N (woken by store
//!   events, with a polling backstop), renews leases, fences every write, sweeps expired leases
//!   and shuts down gracefully; build one with [`Worker::builder`].
//! - [`agent`]: an [`AgentExecutor`] runs a task as an agent loop in a sandbox, with a tool policy
//!   per execution mode and budgets checked before every model call.
//! - [`synthesis`]: predecessor results merged into a task's context.
//! - [`git`]: task branches, workspaces seeded by bundle, conflict-ordered merges.
//! - [`spec_agent`]: spec phases as read-only exploration agents over a repository.
//! - [`memory`]: the context every task starts with (requirements, design, feedback, relevant
//!   memories) and the lessons written back after it; [`OrchestratorBuilder::memory`] gives it
//!   to an orchestrator's agents and agentic spec phases.
//! - [`orchestrator`]: the [`Orchestrator`] over one store value; its agents read the
//!   interventions recorded in that store between turns, and
//!   [`OrchestratorBuilder::background`] runs services such as the monitoring loop of
//!   `omoi-monitor` beside the workers.
//! - `llm` (features below): the LLM adapters.
//!
//! | feature | what it adds |
//! |---|---|
//! | `anthropic` | `llm::AnthropicClient`: the Anthropic Messages API |
//! | `openai` | `llm::OpenAiClient`: OpenAI-compatible chat completions (OpenAI, Ollama, vLLM, llama.cpp); `llm::OpenAiEmbedder`: `/v1/embeddings` |
//! | `local-embed` | `embed::LocalEmbedder`: a sentence-embedding model run on the CPU from a local directory |
//!
//! Both implement [`omoi_core::LlmClient`], so engines take an `Arc<dyn LlmClient>` and tests use
//! `omoi_core::testkit::ScriptedLlm` instead.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod agent;
pub mod embed;
mod executor_fn;
pub mod git;
pub mod integrate;
pub mod memory;
pub mod orchestrator;
pub mod spec_agent;
pub mod synthesis;
pub mod worker;
mod worker_builder;

pub use agent::AgentExecutor;
pub use executor_fn::{FnExecutor, executor_fn};
pub use git::{GitRepo, MergeReport, merge_in_conflict_order, score_branches};
pub use orchestrator::{Orchestrator, OrchestratorBuilder, OrchestratorError, RunReport, SpecSubmission, TaskOutcome};
pub use worker::{ExecContext, ExecError, TaskExecutor, TaskOutput, Worker, WorkerConfig, WorkerStats};
pub use worker_builder::{BuildError, WorkerBuilder};

#[cfg(any(feature = "anthropic", feature = "openai"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "anthropic", feature = "openai"))))]
pub mod llm;
