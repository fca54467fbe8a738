//! The embedders: the OpenAI-compatible `/v1/embeddings` adapter against a local HTTP fake
//! speaking the documented wire format (batching, order, retries, error mapping, dimension
//! checks), and the local BERT model loaded from the directory `scripts/services` installs.

#[path = "llm/fake.rs"]
#[allow(dead_code)]
mod fake;

#[path = "embed/local.rs"]
mod local;
#[path = "embed/openai.rs"]
mod openai;
