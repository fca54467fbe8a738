//! # omoi-exec
//!
//! The execution engine: a worker that claims tasks with leases (woken by store events, with a
//! polling backstop), renews them, and runs an agent loop in a sandbox with a tool policy per
//! execution mode and budgets checked before every model call; synthesis of predecessor results;
//! git branches per task and conflict-ordered merges. It also hosts the LLM adapters (Anthropic
//! Messages API, OpenAI-compatible chat completions) behind features.
//!
//! | feature | what it adds |
//! |---|---|
//! | `anthropic` | [`llm::AnthropicClient`]: the Anthropic Messages API |
//! | `openai` | [`llm::OpenAiClient`]: OpenAI-compatible chat completions (OpenAI, Ollama, vLLM, llama.cpp); [`llm::OpenAiEmbedder`]: `/v1/embeddings` |
//! | `local-embed` | `embed::LocalEmbedder`: a sentence-embedding model run on the CPU from a local directory |
//!
//! Both implement [`omoi_core::LlmClient`], so engines take an `Arc<dyn LlmClient>` and tests use
//! `omoi_core::testkit::ScriptedLlm` instead. See [`llm`] for what the adapters share (retries,
//! cost accounting, structured output, key redaction).
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod agent;
pub mod embed;
pub mod git;
pub mod memory;
pub mod spec_agent;
pub mod synthesis;
pub mod worker;

#[cfg(any(feature = "anthropic", feature = "openai"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "anthropic", feature = "openai"))))]
pub mod llm;
