//! `AnthropicClient`: the Anthropic Messages API.

mod wire;

use std::sync::Arc;

use async_trait::async_trait;
use omoi_core::{CompletionRequest, CompletionResponse, LlmClient, LlmError};

use super::config::{LlmConfigError, Options, common_setters, price_setter};
use super::price::CostMeter;
use super::schema::{PreparedSchema, api_name};
use super::transport::{Auth, Transport};

/// The Messages API version sent in `anthropic-version`.
const API_VERSION: &str = "2023-06-01";

/// An [`LlmClient`] for the Anthropic Messages API (`POST {base}/v1/messages`).
///
/// - **Tools**: [`ContentBlock`](omoi_core::ContentBlock)s map one to one onto the API's
///   `text`, `tool_use` and `tool_result` blocks.
/// - **Structured output**: when the request has an [`OutputSchema`](omoi_core::OutputSchema),
///   the schema is offered as one more tool (named after the schema, its `input_schema` the
///   schema) and `tool_choice` forces the model to call it. The call's input comes back as the
///   response's only content: one text block holding it as JSON, stop reason `end_turn`, so
///   [`CompletionResponse::parse_json`] and
///   [`complete_as`](omoi_core::ports::llm::complete_as) work unchanged. A schema whose root
///   is not an object (the API requires one) is sent wrapped as `{"value": …}` and unwrapped
///   in the answer. While forced, the model cannot call the request's other tools. If the
///   model stops before calling it (`max_tokens`), the content is left as it came, so
///   `complete_as` reports `OutputMismatch` with that text.
/// - **Retries**: 429, 5xx (529 overloaded included), timeouts, broken connections and
///   malformed bodies are retried with exponential backoff and jitter, honouring
///   `retry-after`; 400, 401, 403, 404, 413 and 422 are not.
/// - **Cost**: `usage.cost_usd` from the builder's [`PriceTable`](crate::llm::PriceTable);
///   prompt-cache reads and writes count as input tokens.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use omoi_core::{CompletionRequest, LlmClient};
/// use omoi_exec::llm::AnthropicClient;
///
/// let client = AnthropicClient::builder()
///     .api_key(std::env::var("ANTHROPIC_API_KEY")?)
///     .model("claude-sonnet-4-5")
///     .timeout(Duration::from_secs(120))
///     .max_retries(5)
///     .build()?;
/// let answer = client.complete(&CompletionRequest::new("Name three prime numbers.")).await?;
/// println!("{} (${:.4})", answer.text(), answer.usage.cost_usd);
///
/// // Or from ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL and ANTHROPIC_MODEL:
/// let client = AnthropicClient::from_env()?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct AnthropicClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    model: String,
    transport: Transport,
    meter: CostMeter,
}

impl AnthropicClient {
    /// The default base URL.
    pub const DEFAULT_BASE_URL: &'static str = "https://api.anthropic.com";
    /// The model used when none is set.
    pub const DEFAULT_MODEL: &'static str = "claude-sonnet-4-5";

    /// A builder with the defaults: [`Self::DEFAULT_BASE_URL`], [`Self::DEFAULT_MODEL`], a
    /// 10-minute timeout, 3 retries with backoff from 1 s to 30 s, `retry-after` honoured up
    /// to 60 s, the default price table and the system clock. The key is required.
    pub fn builder() -> AnthropicBuilder {
        AnthropicBuilder { opts: Options::new(Self::DEFAULT_BASE_URL, Self::DEFAULT_MODEL) }
    }

    /// A builder seeded from `ANTHROPIC_API_KEY`, `ANTHROPIC_BASE_URL` and `ANTHROPIC_MODEL`
    /// (the last two optional). The environment is read here and nowhere else.
    pub fn builder_from_env() -> AnthropicBuilder {
        let mut builder = Self::builder();
        builder.opts.apply_env("ANTHROPIC", |k| std::env::var(k).ok());
        builder
    }

    /// [`Self::builder_from_env`], built.
    pub fn from_env() -> Result<Self, LlmConfigError> {
        Self::builder_from_env().build()
    }
}

/// Settings of an [`AnthropicClient`]; see [`AnthropicClient::builder`].
#[derive(Debug, Clone)]
pub struct AnthropicBuilder {
    opts: Options,
}

common_setters!(AnthropicBuilder);
price_setter!(AnthropicBuilder);

impl AnthropicBuilder {
    /// The client, or what is missing or wrong.
    pub fn build(self) -> Result<AnthropicClient, LlmConfigError> {
        let key = self.opts.api_key.clone().ok_or(LlmConfigError::MissingApiKey { env: "ANTHROPIC_API_KEY" })?;
        let transport = Transport::new(
            "anthropic",
            &self.opts,
            "/v1/messages",
            Auth::XApiKey(key),
            &[("anthropic-version", API_VERSION)],
        )?;
        Ok(AnthropicClient {
            inner: Arc::new(Inner {
                model: self.opts.model.trim().to_owned(),
                transport,
                meter: CostMeter::new(self.opts.prices),
            }),
        })
    }
}

#[async_trait]
impl LlmClient for AnthropicClient {
    async fn complete(&self, request: &CompletionRequest) -> Result<CompletionResponse, LlmError> {
        let inner = &*self.inner;
        let output = request.output.as_ref().map(|o| {
            let mut schema = PreparedSchema::new(o);
            if request.tools.iter().any(|t| t.name == schema.name) {
                schema.name = api_name(&format!("{}_output", schema.name));
            }
            schema
        });
        let body = wire::request(&inner.model, request, output.as_ref());
        inner
            .transport
            .complete("anthropic", &inner.model, request, output.is_some(), &body, |bytes| {
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
    fn a_key_is_required() {
        let err = AnthropicClient::builder().build().unwrap_err();
        assert_eq!(err, LlmConfigError::MissingApiKey { env: "ANTHROPIC_API_KEY" });
        assert!(err.to_string().contains("ANTHROPIC_API_KEY"));
        assert!(AnthropicClient::builder().api_key("k").build().is_ok());
    }

    #[test]
    fn a_key_that_cannot_be_a_header_is_refused() {
        let err = AnthropicClient::builder().api_key("line\nbreak").build().unwrap_err();
        assert!(matches!(err, LlmConfigError::InvalidSetting { name: "api_key", .. }), "{err:?}");
        assert!(!err.to_string().contains("line"));
    }
}
