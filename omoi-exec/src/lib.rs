//! # omoi-exec
//!
//! The execution engine: a worker that claims tasks with leases (woken by store events, with a
//! polling backstop), renews them, and runs an agent loop in a sandbox with a tool policy per
//! execution mode and budgets checked before every model call; synthesis of predecessor results;
//! git branches per task and conflict-ordered merges. It also hosts the LLM adapters (Anthropic
//! Messages API, OpenAI-compatible chat completions) behind features.
//!
//! This crate is filled by the execution and LLM-adapter issues; today it holds only this description.
