//! `OpenAiEmbedder`: the OpenAI-compatible embeddings API (`POST {base}/v1/embeddings`).

use std::sync::Arc;

use async_trait::async_trait;
use omoi_core::{EmbedError, Embedder, LlmError};
use serde::{Deserialize, Serialize};

use super::super::config::{LlmConfigError, Options, common_setters};
use super::super::transport::{Answer, Auth, Transport, parse_body, truncate_raw};

/// An [`Embedder`] over `POST {base}/v1/embeddings`: OpenAI, or any server speaking the same
/// wire format (Ollama, vLLM, llama.cpp, LM Studio, text-embeddings-inference).
///
/// - **Batching**: texts are sent in requests of at most [`OpenAiEmbedderBuilder::batch_size`]
///   inputs (default 256; OpenAI accepts 2048), one after another, and the vectors come back
///   in input order whatever order the server lists them in (`data[].index`).
/// - **Retries**: 429, 5xx, timeouts, broken connections and malformed bodies are retried with
///   backoff, honouring `retry-after`, as for the chat adapters (see [`crate::llm`]); a request
///   still failing is [`EmbedError::Unavailable`]. 400/404/422 answers are
///   [`EmbedError::InvalidInput`]; 401/403 and malformed answers [`EmbedError::Backend`].
/// - **Dimensions**: every vector must have [`Embedder::dimensions`] values (a server answering
///   otherwise is an error, never a silently mismatched store). The dimension defaults to the
///   model's when the model is known (`text-embedding-3-small` 1536, `text-embedding-3-large`
///   3072, `text-embedding-ada-002` 1536) and must be set otherwise.
///   [`OpenAiEmbedderBuilder::request_dimensions`] also sends it as the `dimensions` field, so
///   `text-embedding-3-*` shortens its vectors (to 384 to share a store with the local model).
/// - Empty texts are refused before anything is sent (the API rejects them).
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use omoi_core::Embedder;
/// use omoi_exec::embed::OpenAiEmbedder;
///
/// let local = OpenAiEmbedder::builder()
///     .base_url("http://localhost:11434")
///     .model("all-minilm")
///     .dimensions(384)
///     .build()?;
/// let vectors = local.embed(&["pool exhausted".to_owned()]).await?;
/// assert_eq!(vectors[0].len(), 384);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct OpenAiEmbedder {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    model: String,
    dims: usize,
    send_dims: bool,
    batch_size: usize,
    transport: Transport,
}

impl OpenAiEmbedder {
    /// The model used when none is set.
    pub const DEFAULT_MODEL: &'static str = "text-embedding-3-small";

    /// A builder with the defaults: OpenAI's base URL, [`Self::DEFAULT_MODEL`], no key, a
    /// 60-second timeout, 3 retries with backoff from 1 s to 30 s and batches of 256.
    pub fn builder() -> OpenAiEmbedderBuilder {
        let mut opts = Options::new(super::OpenAiClient::DEFAULT_BASE_URL, Self::DEFAULT_MODEL);
        opts.timeout = std::time::Duration::from_secs(60);
        OpenAiEmbedderBuilder { opts, dims: None, send_dims: false, batch_size: 256 }
    }

    /// A builder seeded from `OPENAI_API_KEY`, `OPENAI_BASE_URL`, `OPENAI_EMBEDDING_MODEL` and
    /// `OPENAI_EMBEDDING_DIMENSIONS` (all optional; an unparsable dimension is a build error).
    pub fn builder_from_env() -> OpenAiEmbedderBuilder {
        Self::builder().env(|k| std::env::var(k).ok())
    }

    /// The model asked.
    pub fn model(&self) -> &str {
        &self.inner.model
    }
}

/// A model's native dimension, where known.
fn known_dimensions(model: &str) -> Option<usize> {
    match model {
        "text-embedding-3-small" | "text-embedding-ada-002" => Some(1536),
        "text-embedding-3-large" => Some(3072),
        _ => None,
    }
}

/// Settings of an [`OpenAiEmbedder`]; see [`OpenAiEmbedder::builder`].
#[derive(Debug, Clone)]
pub struct OpenAiEmbedderBuilder {
    opts: Options,
    dims: Option<Result<usize, String>>,
    send_dims: bool,
    batch_size: usize,
}

common_setters!(OpenAiEmbedderBuilder);

impl OpenAiEmbedderBuilder {
    fn env(mut self, var: impl Fn(&str) -> Option<String>) -> Self {
        let model = self.opts.model.clone();
        self.opts.apply_env("OPENAI", &var);
        // OPENAI_MODEL names the chat model; embeddings have their own variable.
        self.opts.model = var("OPENAI_EMBEDDING_MODEL").filter(|m| !m.trim().is_empty()).unwrap_or(model);
        if let Some(d) = var("OPENAI_EMBEDDING_DIMENSIONS").filter(|d| !d.trim().is_empty()) {
            self.dims = Some(d.trim().parse::<usize>().map_err(|_| d));
        }
        self
    }

    /// The dimension of the vectors the model returns (required for models not known to
    /// [`OpenAiEmbedder`]).
    pub fn dimensions(mut self, dims: usize) -> Self {
        self.dims = Some(Ok(dims));
        self
    }

    /// Asks the server for `dims`-dimensional vectors with the request's `dimensions` field
    /// (supported by `text-embedding-3-*`), and expects them.
    pub fn request_dimensions(mut self, dims: usize) -> Self {
        self.dims = Some(Ok(dims));
        self.send_dims = true;
        self
    }

    /// The most texts sent in one request (default 256).
    pub fn batch_size(mut self, size: usize) -> Self {
        self.batch_size = size;
        self
    }

    /// The embedder, or what is wrong.
    pub fn build(self) -> Result<OpenAiEmbedder, LlmConfigError> {
        let invalid = |name, reason: String| LlmConfigError::InvalidSetting { name, reason };
        let model = self.opts.model.trim().to_owned();
        let dims = match self.dims {
            Some(Ok(0)) => return Err(invalid("dimensions", "the dimension must be at least 1".into())),
            Some(Ok(d)) => d,
            Some(Err(raw)) => return Err(invalid("dimensions", format!("{raw:?} is not a number"))),
            None => known_dimensions(&model).ok_or_else(|| {
                invalid("dimensions", format!("the dimension of model {model:?} is not known: set it"))
            })?,
        };
        if self.batch_size == 0 {
            return Err(invalid("batch_size", "a batch holds at least one text".into()));
        }
        let transport =
            Transport::new("openai", &self.opts, "/v1/embeddings", Auth::Bearer(self.opts.api_key.clone()), &[])?;
        Ok(OpenAiEmbedder {
            inner: Arc::new(Inner { model, dims, send_dims: self.send_dims, batch_size: self.batch_size, transport }),
        })
    }
}

#[derive(Debug, Serialize)]
struct Request<'a> {
    model: &'a str,
    input: &'a [String],
    encoding_format: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    dimensions: Option<usize>,
}

#[derive(Debug, Deserialize)]
struct Response {
    data: Vec<Item>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Debug, Deserialize)]
struct Item {
    index: usize,
    embedding: Vec<f32>,
}

#[derive(Debug, Deserialize)]
struct Usage {
    #[serde(default)]
    prompt_tokens: u64,
}

/// One batch's vectors in input order.
struct Batch {
    vectors: Vec<Vec<f32>>,
    tokens: u64,
}

impl Answer for Batch {
    fn record(&self, span: &tracing::Span) {
        span.record("input_tokens", self.tokens);
    }
}

/// Checks an answer: one vector per input, indices `0..n` each once, every vector `dims` long.
fn parse(bytes: &[u8], inputs: usize, dims: usize) -> Result<Batch, LlmError> {
    let response: Response = parse_body(bytes, "embeddings")?;
    let malformed = |reason: String| LlmError::MalformedResponse { raw: truncate_raw(bytes), reason };
    if response.data.len() != inputs {
        return Err(malformed(format!("{} embeddings for {inputs} inputs", response.data.len())));
    }
    let mut vectors: Vec<Option<Vec<f32>>> = vec![None; inputs];
    for item in response.data {
        let slot =
            vectors.get_mut(item.index).ok_or_else(|| malformed(format!("index {} out of range", item.index)))?;
        if item.embedding.len() != dims {
            return Err(malformed(format!("an embedding has {} dimensions, expected {dims}", item.embedding.len())));
        }
        if slot.replace(item.embedding).is_some() {
            return Err(malformed(format!("index {} appears twice", item.index)));
        }
    }
    Ok(Batch {
        vectors: vectors.into_iter().flatten().collect(),
        tokens: response.usage.map_or(0, |u| u.prompt_tokens),
    })
}

/// The embedder's error for a request that failed for good.
fn embed_error(e: LlmError) -> EmbedError {
    match e {
        LlmError::RateLimited { .. } | LlmError::Server { .. } | LlmError::Timeout(_) | LlmError::Transport(_) => {
            EmbedError::Unavailable(e.to_string())
        }
        LlmError::InvalidRequest { .. } => EmbedError::InvalidInput(e.to_string()),
        other => EmbedError::Backend(other.to_string()),
    }
}

#[async_trait]
impl Embedder for OpenAiEmbedder {
    fn dimensions(&self) -> usize {
        self.inner.dims
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let inner = &*self.inner;
        if let Some(i) = texts.iter().position(|t| t.trim().is_empty()) {
            return Err(EmbedError::InvalidInput(format!("text {i} is empty")));
        }
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(inner.batch_size) {
            let body = Request {
                model: &inner.model,
                input: chunk,
                encoding_format: "float",
                dimensions: inner.send_dims.then_some(inner.dims),
            };
            let batch = inner
                .transport
                .send(&inner.model, &body, |bytes| parse(bytes, chunk.len(), inner.dims))
                .await
                .map_err(embed_error)?;
            out.extend(batch.vectors);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_reordered_by_index_and_checked() {
        let body =
            br#"{"data":[{"index":1,"embedding":[0,1]},{"index":0,"embedding":[1,0]}],"usage":{"prompt_tokens":7}}"#;
        let batch = parse(body, 2, 2).unwrap();
        assert_eq!(batch.vectors, vec![vec![1.0, 0.0], vec![0.0, 1.0]]);
        assert_eq!(batch.tokens, 7);
        let twice = br#"{"data":[{"index":0,"embedding":[0,1]},{"index":0,"embedding":[1,0]}]}"#;
        assert!(
            matches!(parse(twice, 2, 2), Err(LlmError::MalformedResponse { reason, .. }) if reason.contains("twice"))
        );
        let short = br#"{"data":[{"index":0,"embedding":[0,1,2]}]}"#;
        assert!(
            matches!(parse(short, 1, 2), Err(LlmError::MalformedResponse { reason, .. }) if reason.contains("3 dimensions"))
        );
        assert!(matches!(parse(br#"{"data":[]}"#, 1, 2), Err(LlmError::MalformedResponse { .. })));
    }

    #[test]
    fn dimensions_default_for_known_models_and_are_required_otherwise() {
        assert_eq!(OpenAiEmbedder::builder().build().unwrap().dimensions(), 1536);
        let unknown = OpenAiEmbedder::builder().model("nomic-embed-text").build();
        assert!(matches!(unknown, Err(LlmConfigError::InvalidSetting { name: "dimensions", .. })));
        let set = OpenAiEmbedder::builder().model("nomic-embed-text").dimensions(768).build().unwrap();
        assert_eq!(set.dimensions(), 768);
        assert!(matches!(
            OpenAiEmbedder::builder().batch_size(0).build(),
            Err(LlmConfigError::InvalidSetting { name: "batch_size", .. })
        ));
    }

    #[test]
    fn the_environment_names_its_own_embedding_model() {
        let vars = |k: &str| match k {
            "OPENAI_MODEL" => Some("gpt-4.1".to_owned()),
            "OPENAI_EMBEDDING_MODEL" => Some("text-embedding-3-large".to_owned()),
            "OPENAI_EMBEDDING_DIMENSIONS" => Some("x".to_owned()),
            _ => None,
        };
        let b = OpenAiEmbedder::builder().env(vars);
        assert_eq!(b.opts.model, "text-embedding-3-large");
        assert!(matches!(b.build(), Err(LlmConfigError::InvalidSetting { name: "dimensions", .. })));
        let plain = OpenAiEmbedder::builder().env(|k| (k == "OPENAI_MODEL").then(|| "gpt-4.1".to_owned()));
        assert_eq!(plain.build().unwrap().model(), OpenAiEmbedder::DEFAULT_MODEL);
    }
}
