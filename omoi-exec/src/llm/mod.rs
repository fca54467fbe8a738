//! LLM adapters: [`LlmClient`](omoi_core::LlmClient) over the Anthropic Messages API
//! (feature `anthropic`, [`AnthropicClient`]) and OpenAI-compatible chat completions (feature
//! `openai`, [`OpenAiClient`]: OpenAI, Ollama, vLLM, llama.cpp, …).
//!
//! Both clients share:
//! - a builder: [`ApiKey`] (prints as `[redacted]`), base URL, model, request timeout, retries
//!   and backoff, a [`PriceTable`] for `Usage::cost_usd`, and an injectable
//!   [`Clock`](omoi_core::Clock) for retry waits; `from_env()` constructors are the only place
//!   the environment is read;
//! - retries of transient failures (429, 5xx, timeouts, broken connections, malformed bodies)
//!   with exponential backoff and jitter, honouring `retry-after` (seconds or an HTTP date,
//!   capped by `max_retry_after`); permanent errors (400, 401, 403, 404, 422) fail at once;
//! - structured output that [`complete_as`](omoi_core::ports::llm::complete_as) parses from
//!   the response text (see each client for how the schema is sent);
//! - a `tracing` span per call (`llm_complete`: provider, model, cost) and per HTTP attempt
//!   (`llm_request`: attempt, status, tokens). Prompts are never logged, and the key never
//!   appears in `Debug` output, logs or errors (server messages echoing it are scrubbed).

#[cfg(feature = "anthropic")]
mod anthropic;
mod config;
#[cfg(feature = "openai")]
mod openai;
mod price;
mod schema;
mod secret;
mod transport;

#[cfg(feature = "anthropic")]
#[cfg_attr(docsrs, doc(cfg(feature = "anthropic")))]
pub use anthropic::{AnthropicBuilder, AnthropicClient};
pub use config::LlmConfigError;
#[cfg(feature = "openai")]
#[cfg_attr(docsrs, doc(cfg(feature = "openai")))]
pub use openai::{MaxTokensParam, OpenAiBuilder, OpenAiClient, OpenAiEmbedder, OpenAiEmbedderBuilder};
pub use price::{ModelPrice, PriceTable};
pub use secret::ApiKey;
