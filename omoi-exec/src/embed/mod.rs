//! [`Embedder`](omoi_core::Embedder) adapters beyond core's zero-dependency
//! [`HashingEmbedder`](omoi_core::HashingEmbedder):
//!
//! | feature | embedder |
//! |---|---|
//! | `openai` | [`OpenAiEmbedder`]: `POST /v1/embeddings` on OpenAI or a compatible server (batched, retried) |
//! | `local-embed` | [`LocalEmbedder`]: a BERT sentence-embedding model (all-MiniLM-L6-v2) run on the CPU from a local directory |
//!
//! Whichever is used, its dimension must match the memory store's:
//! [`check_dimensions`](omoi_core::ports::memory_store::check_dimensions) turns a mismatch into a typed error before anything
//! is written.

#[cfg(feature = "local-embed")]
mod local;

#[cfg(feature = "openai")]
#[cfg_attr(docsrs, doc(cfg(feature = "openai")))]
pub use crate::llm::{OpenAiEmbedder, OpenAiEmbedderBuilder};
#[cfg(feature = "local-embed")]
#[cfg_attr(docsrs, doc(cfg(feature = "local-embed")))]
pub use local::{LocalEmbedder, LocalModelError};
