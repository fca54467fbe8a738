//! `OpenAiClient`: OpenAI-compatible chat completions.

mod embeddings;
mod wire;

use std::sync::Arc;

use async_trait::async_trait;
use omoi_core::{CompletionRequest, CompletionResponse, LlmClient, LlmError};

use super::config::{LlmConfigError, Options, common_setters, price_setter};
use super::price::CostMeter;
use super::schema::PreparedSchema;
use super::transport::{Auth, Transport};

pub use embeddings::{OpenAiEmbedder, OpenAiEmbedderBuilder};

/// Which body field carries the completion token limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MaxTokensParam {
    /// `max_tokens`: what Ollama, vLLM, llama.cpp and most compatible servers read.
    MaxTokens,
    /// `max_completion_tokens`: what OpenAI's current models require (its reasoning models
    /// reject `max_tokens`).
    MaxCompletionTokens,
}

/// An [`LlmClient`] for OpenAI-compatible chat completions (`POST {base}/v1/chat/completions`).
/// Point [`OpenAiBuilder::base_url`] at Ollama (`http://localhost:11434`), vLLM, llama.cpp's
/// server or any other compatible server; the key is optional (without one no
/// `Authorization` header is sent).
///
/// - **Tools**: offered as `function` tools; the model's `tool_calls` become
///   [`ContentBlock::ToolUse`](omoi_core::ContentBlock) blocks (arguments that are not valid
///   JSON are [`LlmError::MalformedResponse`]), and tool results are sent back as `tool`
///   messages (a failed call's content starts with `Error: `, the API having no error flag).
/// - **Structured output**: `response_format: {type: "json_schema", json_schema: {name,
///   schema, strict}}`. Strict mode needs every object closed and every property required, so
///   the schemars schema is transformed: `additionalProperties: false` on every object, all
///   properties listed in `required` (optional fields become required-but-nullable), `oneOf`
///   as `anyOf`. Those changes only narrow the schema, so a strict answer always satisfies the
///   original type. Schemas with no strict form (maps, free-form JSON values, `allOf`) are
///   sent unchanged with `strict: false`, as is every schema when
///   [`OpenAiBuilder::strict_output`] is off. A root that is not an object is wrapped as
///   `{"value": …}` and unwrapped in the answer. The answer text is the response's text block,
///   which [`complete_as`](omoi_core::ports::llm::complete_as) parses; a refusal comes back as
///   that text (so `complete_as` reports `OutputMismatch` carrying it).
/// - **Retries and cost**: as for every client of this module (see [`crate::llm`]).
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use omoi_core::{CompletionRequest, LlmClient};
/// use omoi_exec::llm::{ModelPrice, OpenAiClient, PriceTable};
///
/// // OpenAI itself, from OPENAI_API_KEY, OPENAI_BASE_URL and OPENAI_MODEL:
/// let openai = OpenAiClient::from_env()?;
///
/// // A local Ollama: no key, a free model.
/// let local = OpenAiClient::builder()
///     .base_url("http://localhost:11434")
///     .model("llama3.1")
///     .prices(PriceTable::empty().with("llama3.1", ModelPrice::new(0.0, 0.0)))
///     .build()?;
/// let answer = local.complete(&CompletionRequest::new("Say hi.")).await?;
/// println!("{}", answer.text());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct OpenAiClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    model: String,
    transport: Transport,
    meter: CostMeter,
    shape: wire::Shape,
}

impl OpenAiClient {
    /// The default base URL.
    pub const DEFAULT_BASE_URL: &'static str = "https://api.openai.com";
    /// The model used when none is set.
    pub const DEFAULT_MODEL: &'static str = "gpt-4.1-mini";

    /// A builder with the defaults: [`Self::DEFAULT_BASE_URL`], [`Self::DEFAULT_MODEL`], no
    /// key, a 10-minute timeout, 3 retries with backoff from 1 s to 30 s, `retry-after`
    /// honoured up to 60 s, the default price table, the system clock and strict structured
    /// output.
    pub fn builder() -> OpenAiBuilder {
        OpenAiBuilder {
            opts: Options::new(Self::DEFAULT_BASE_URL, Self::DEFAULT_MODEL),
            max_tokens_param: None,
            strict_output: true,
        }
    }

    /// A builder seeded from `OPENAI_API_KEY`, `OPENAI_BASE_URL` and `OPENAI_MODEL` (all
    /// optional). The environment is read here and nowhere else.
    pub fn builder_from_env() -> OpenAiBuilder {
        let mut builder = Self::builder();
        builder.opts.apply_env("OPENAI", |k| std::env::var(k).ok());
        builder
    }

    /// [`Self::builder_from_env`], built.
    pub fn from_env() -> Result<Self, LlmConfigError> {
        Self::builder_from_env().build()
    }
}

/// Settings of an [`OpenAiClient`]; see [`OpenAiClient::builder`].
#[derive(Debug, Clone)]
pub struct OpenAiBuilder {
    opts: Options,
    max_tokens_param: Option<MaxTokensParam>,
    strict_output: bool,
}

common_setters!(OpenAiBuilder);
price_setter!(OpenAiBuilder);

impl OpenAiBuilder {
    /// The field carrying the token limit. By default `max_completion_tokens` for
    /// `api.openai.com` and `max_tokens` for any other server.
    pub fn max_tokens_param(mut self, param: MaxTokensParam) -> Self {
        self.max_tokens_param = Some(param);
        self
    }

    /// Whether structured output asks for strict schema adherence when the schema has a
    /// strict form (default `true`; some compatible servers reject or ignore `strict`).
    pub fn strict_output(mut self, strict: bool) -> Self {
        self.strict_output = strict;
        self
    }

    /// The client, or what is wrong.
    pub fn build(self) -> Result<OpenAiClient, LlmConfigError> {
        let transport =
            Transport::new("openai", &self.opts, "/v1/chat/completions", Auth::Bearer(self.opts.api_key.clone()), &[])?;
        let official =
            reqwest::Url::parse(&self.opts.base_url).ok().is_some_and(|u| u.host_str() == Some("api.openai.com"));
        let max_tokens = self.max_tokens_param.unwrap_or(if official {
            MaxTokensParam::MaxCompletionTokens
        } else {
            MaxTokensParam::MaxTokens
        });
        Ok(OpenAiClient {
            inner: Arc::new(Inner {
                model: self.opts.model.trim().to_owned(),
                transport,
                meter: CostMeter::new(self.opts.prices),
                shape: wire::Shape { max_tokens, strict_output: self.strict_output },
            }),
        })
    }
}

#[async_trait]
impl LlmClient for OpenAiClient {
    async fn complete(&self, request: &CompletionRequest) -> Result<CompletionResponse, LlmError> {
        let inner = &*self.inner;
        let output = request.output.as_ref().map(PreparedSchema::new);
        let body = wire::request(&inner.model, request, output.as_ref(), inner.shape)?;
        inner
            .transport
            .complete("openai", &inner.model, request, output.is_some(), &body, |bytes| {
                wire::response(bytes, output.as_ref(), &inner.model, &inner.meter)
            })
            .await
    }

    fn model(&self) -> &str {
        &self.inner.model
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_limit_field_defaults_by_server() {
        let official = OpenAiClient::builder().build().unwrap();
        assert_eq!(official.inner.shape.max_tokens, MaxTokensParam::MaxCompletionTokens);
        let local = OpenAiClient::builder().base_url("http://localhost:11434").build().unwrap();
        assert_eq!(local.inner.shape.max_tokens, MaxTokensParam::MaxTokens);
        let chosen = OpenAiClient::builder().max_tokens_param(MaxTokensParam::MaxTokens).build().unwrap();
        assert_eq!(chosen.inner.shape.max_tokens, MaxTokensParam::MaxTokens);
    }

    #[test]
    fn a_key_is_optional() {
        assert!(OpenAiClient::builder().base_url("http://localhost:8080/v1").build().is_ok());
    }
}
