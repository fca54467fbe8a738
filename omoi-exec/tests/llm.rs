//! The LLM adapters against a local HTTP fake (axum on 127.0.0.1) speaking each provider's
//! documented wire format: request shapes, tool round trips, structured output, retries and
//! their waits, error mapping, and key redaction.

#[path = "llm/anthropic.rs"]
mod anthropic;
#[path = "llm/fake.rs"]
mod fake;
#[path = "llm/openai.rs"]
mod openai;
#[path = "llm/redaction.rs"]
mod redaction;
#[path = "llm/retry.rs"]
mod retry;
#[path = "llm/samples.rs"]
mod samples;
