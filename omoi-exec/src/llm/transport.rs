//! The HTTP plumbing both adapters share: one POST with retries, backoff and `retry-after`,
//! status codes mapped to [`LlmError`], a tracing span per attempt, and the key kept out of
//! everything reported.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use omoi_core::{Clock, CompletionResponse, LlmError};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;
use tracing::{Instrument, field};

use super::config::{LlmConfigError, Options, RetryPolicy};
use super::secret::ApiKey;

/// The most bytes of a body kept in an error.
const RAW_LIMIT: usize = 4096;

/// How the key travels.
#[derive(Debug, Clone)]
pub(crate) enum Auth {
    /// `x-api-key: <key>` (Anthropic).
    #[cfg(feature = "anthropic")]
    XApiKey(ApiKey),
    /// `Authorization: Bearer <key>`, or nothing without a key (OpenAI-compatible).
    #[cfg(feature = "openai")]
    Bearer(Option<ApiKey>),
}

/// A parsed 2xx answer, which records its token counts on the `llm_request` span.
pub(crate) trait Answer {
    /// Records `input_tokens` (and `output_tokens` where there are any) on `span`.
    fn record(&self, span: &tracing::Span);
}

impl Answer for CompletionResponse {
    fn record(&self, span: &tracing::Span) {
        span.record("input_tokens", self.usage.input_tokens);
        span.record("output_tokens", self.usage.output_tokens);
    }
}

/// A failed attempt and the wait the server asked for.
struct Failure {
    error: LlmError,
    retry_after: Option<Duration>,
}

impl From<LlmError> for Failure {
    fn from(error: LlmError) -> Self {
        Self { error, retry_after: None }
    }
}

/// One endpoint of one provider.
pub(crate) struct Transport {
    provider: &'static str,
    http: reqwest::Client,
    url: String,
    headers: HeaderMap,
    key: Option<ApiKey>,
    timeout: Duration,
    retry: RetryPolicy,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("provider", &self.provider)
            .field("url", &self.url)
            .field("key", &self.key)
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

impl Transport {
    /// A transport posting to `path` under the options' base URL, with `auth` and `extra`
    /// headers on every request.
    pub(crate) fn new(
        provider: &'static str,
        opts: &Options,
        path: &str,
        auth: Auth,
        extra: &[(&'static str, &'static str)],
    ) -> Result<Self, LlmConfigError> {
        let url = opts.validate(path)?;
        let mut headers = HeaderMap::new();
        headers.insert(reqwest::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (name, value) in extra {
            headers.insert(HeaderName::from_static(name), HeaderValue::from_static(value));
        }
        let secret = |name: &'static str, value: String| {
            let mut value = HeaderValue::from_str(&value).map_err(|_| LlmConfigError::InvalidSetting {
                name: "api_key",
                reason: "the key contains characters not allowed in an HTTP header".into(),
            })?;
            value.set_sensitive(true);
            Ok::<_, LlmConfigError>((HeaderName::from_static(name), value))
        };
        let key = match auth {
            #[cfg(feature = "anthropic")]
            Auth::XApiKey(key) => {
                let (n, v) = secret("x-api-key", key.expose().to_owned())?;
                headers.insert(n, v);
                Some(key)
            }
            #[cfg(feature = "openai")]
            Auth::Bearer(Some(key)) => {
                let (n, v) = secret("authorization", format!("Bearer {}", key.expose()))?;
                headers.insert(n, v);
                Some(key)
            }
            #[cfg(feature = "openai")]
            Auth::Bearer(None) => None,
        };
        let http = reqwest::Client::builder()
            .user_agent(concat!("omoi-exec/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| LlmConfigError::HttpClient(chain(&e)))?;
        Ok(Self {
            provider,
            http,
            url,
            headers,
            key,
            timeout: opts.timeout,
            retry: opts.retry,
            clock: opts.clock.clone(),
        })
    }

    /// POSTs `body`, retrying transient failures, and turns a 2xx body into a response with
    /// `parse`. A parse failure ([`LlmError::MalformedResponse`]) is retried too.
    /// Sends one completion request in an `llm_complete` span (provider, model, limits, and the
    /// cost once known) with [`Transport::send`]'s retries.
    pub(crate) async fn complete(
        &self,
        provider: &'static str,
        model: &str,
        request: &omoi_core::CompletionRequest,
        structured: bool,
        body: &impl serde::Serialize,
        parse: impl Fn(&[u8]) -> Result<CompletionResponse, LlmError>,
    ) -> Result<CompletionResponse, LlmError> {
        let span = tracing::info_span!(
            "llm_complete",
            provider,
            model = %model,
            max_tokens = request.max_tokens,
            tools = request.tools.len(),
            structured,
            cost_usd = field::Empty,
        );
        async {
            let response = self.send(model, body, parse).await?;
            tracing::Span::current().record("cost_usd", response.usage.cost_usd);
            Ok(response)
        }
        .instrument(span)
        .await
    }

    pub(crate) async fn send<T: Answer>(
        &self,
        model: &str,
        body: &impl serde::Serialize,
        parse: impl Fn(&[u8]) -> Result<T, LlmError>,
    ) -> Result<T, LlmError> {
        let body = serde_json::to_vec(body).map_err(|e| LlmError::InvalidRequest {
            status: 400,
            message: format!("the request cannot be serialized: {e}"),
        })?;
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let span = tracing::info_span!(
                "llm_request",
                provider = self.provider,
                model,
                attempt,
                status = field::Empty,
                input_tokens = field::Empty,
                output_tokens = field::Empty,
            );
            let outcome = self.attempt(&body, &parse).instrument(span.clone()).await;
            let Failure { error, retry_after } = match outcome {
                Ok(response) => return Ok(response),
                Err(failure) => failure,
            };
            let error = self.scrub(error);
            if !error.is_retryable() || attempt > self.retry.max_retries {
                span.in_scope(
                    || tracing::warn!(error = %error, retryable = error.is_retryable(), "llm request failed"),
                );
                return Err(error);
            }
            let delay = match retry_after {
                Some(wait) => wait.min(self.retry.max_retry_after),
                None => self.retry.backoff(attempt),
            };
            span.in_scope(|| {
                tracing::warn!(error = %error, delay_ms = delay.as_millis() as u64, "llm request failed; retrying");
            });
            self.clock.sleep(delay).await;
        }
    }

    async fn attempt<T: Answer>(
        &self,
        body: &[u8],
        parse: &impl Fn(&[u8]) -> Result<T, LlmError>,
    ) -> Result<T, Failure> {
        let response = self
            .http
            .post(&self.url)
            .headers(self.headers.clone())
            .body(body.to_vec())
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| self.request_error(&e, "sending the request failed"))?;
        let status = response.status().as_u16();
        tracing::Span::current().record("status", status);
        let retry_after = retry_after(response.headers(), self.clock.now());
        let bytes = response.bytes().await.map_err(|e| self.request_error(&e, "reading the response body failed"))?;
        if !(200..300).contains(&status) {
            return Err(Failure { error: status_error(status, &bytes, retry_after), retry_after });
        }
        let parsed = parse(&bytes)?;
        parsed.record(&tracing::Span::current());
        tracing::debug!("llm request succeeded");
        Ok(parsed)
    }

    fn request_error(&self, e: &reqwest::Error, what: &str) -> Failure {
        let error = if e.is_timeout() {
            LlmError::Timeout(self.timeout)
        } else {
            LlmError::Transport(format!("{what}: {}", chain(e)))
        };
        error.into()
    }

    /// `error` with the key removed from every text it carries.
    fn scrub(&self, error: LlmError) -> LlmError {
        let Some(key) = &self.key else { return error };
        match error {
            LlmError::RateLimited { retry_after, message } => {
                LlmError::RateLimited { retry_after, message: key.scrub(&message) }
            }
            LlmError::Server { status, message } => LlmError::Server { status, message: key.scrub(&message) },
            LlmError::Transport(m) => LlmError::Transport(key.scrub(&m)),
            LlmError::MalformedResponse { raw, reason } => {
                LlmError::MalformedResponse { raw: key.scrub(&raw), reason: key.scrub(&reason) }
            }
            LlmError::OutputMismatch { raw, reason } => {
                LlmError::OutputMismatch { raw: key.scrub(&raw), reason: key.scrub(&reason) }
            }
            LlmError::Auth(m) => LlmError::Auth(key.scrub(&m)),
            LlmError::InvalidRequest { status, message } => {
                LlmError::InvalidRequest { status, message: key.scrub(&message) }
            }
            other => other,
        }
    }
}

/// An error and its sources, joined with `: `.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// The wait a response asks for: `retry-after-ms`, else `retry-after` as seconds or an HTTP
/// date (relative to `now`; a past date means no wait).
pub(crate) fn retry_after(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(ms) = header("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        return Duration::try_from_secs_f64(ms / 1000.0).ok();
    }
    let value = header("retry-after")?;
    if let Ok(secs) = value.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).ok();
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?.with_timezone(&Utc);
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

/// The error for a non-2xx status.
pub(crate) fn status_error(status: u16, body: &[u8], retry_after: Option<Duration>) -> LlmError {
    let message = error_message(status, body);
    match status {
        429 => LlmError::RateLimited { retry_after, message },
        401 | 403 => LlmError::Auth(message),
        408 => LlmError::Transport(format!("the server timed out waiting for the request (408): {message}")),
        500..=599 => LlmError::Server { status, message },
        _ => LlmError::InvalidRequest { status, message },
    }
}

/// The message of an error body: Anthropic `{"error":{"type","message"}}`, OpenAI
/// `{"error":{"message","type","code"}}`, Ollama `{"error":"..."}`, or the raw body.
fn error_message(status: u16, body: &[u8]) -> String {
    if let Ok(json) = serde_json::from_slice::<Value>(body) {
        let error = json.get("error").unwrap_or(&json);
        if let Some(text) = error.as_str() {
            return text.to_owned();
        }
        if let Some(message) = error.get("message").and_then(Value::as_str) {
            return match error.get("type").and_then(Value::as_str) {
                Some(kind) if !kind.is_empty() => format!("{kind}: {message}"),
                _ => message.to_owned(),
            };
        }
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        format!("HTTP {status} with an empty body")
    } else {
        truncate_raw(body)
    }
}

/// The body as text, cut to a few KB.
pub(crate) fn truncate_raw(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    if text.len() <= RAW_LIMIT {
        return text.into_owned();
    }
    let mut end = RAW_LIMIT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… [truncated; {} bytes in all]", &text[..end], body.len())
}

/// Deserializes a 2xx body; anything else is [`LlmError::MalformedResponse`].
pub(crate) fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T, LlmError> {
    serde_json::from_slice(body).map_err(|e| LlmError::MalformedResponse {
        raw: truncate_raw(body),
        reason: format!("the body is not a valid {what} response: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (HeaderName::from_static(k), HeaderValue::from_str(v).unwrap())).collect()
    }

    #[test]
    fn retry_after_reads_seconds_ms_and_http_dates() {
        let now = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap().with_timezone(&Utc);
        assert_eq!(retry_after(&headers(&[("retry-after", "7")]), now), Some(Duration::from_secs(7)));
        assert_eq!(retry_after(&headers(&[("retry-after", "1.5")]), now), Some(Duration::from_millis(1500)));
        assert_eq!(
            retry_after(&headers(&[("retry-after", "3"), ("retry-after-ms", "250")]), now),
            Some(Duration::from_millis(250))
        );
        let date = "Thu, 01 Jan 2026 00:00:12 GMT";
        assert_eq!(retry_after(&headers(&[("retry-after", date)]), now), Some(Duration::from_secs(12)));
        let past = "Wed, 31 Dec 2025 23:59:00 GMT";
        assert_eq!(retry_after(&headers(&[("retry-after", past)]), now), Some(Duration::ZERO));
        assert_eq!(retry_after(&headers(&[("retry-after", "soon")]), now), None);
        assert_eq!(retry_after(&headers(&[("retry-after", "-4")]), now), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn statuses_map_to_typed_errors() {
        let anthropic = br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        assert_eq!(
            status_error(529, anthropic, None),
            LlmError::Server { status: 529, message: "overloaded_error: Overloaded".into() }
        );
        let ollama = br#"{"error":"model \"x\" not found"}"#;
        assert_eq!(
            status_error(404, ollama, None),
            LlmError::InvalidRequest { status: 404, message: "model \"x\" not found".into() }
        );
        assert!(matches!(status_error(403, b"", None), LlmError::Auth(m) if m.contains("empty body")));
        assert!(
            matches!(status_error(429, b"slow down", Some(Duration::from_secs(2))), LlmError::RateLimited { retry_after: Some(_), message } if message == "slow down")
        );
        assert!(status_error(408, b"", None).is_retryable());
        assert!(!status_error(422, b"{}", None).is_retryable());
    }

    #[test]
    fn raw_bodies_are_cut_to_a_few_kb_on_a_char_boundary() {
        let body = "é".repeat(5000);
        let cut = truncate_raw(body.as_bytes());
        assert!(cut.len() < RAW_LIMIT + 64, "{}", cut.len());
        assert!(cut.ends_with("[truncated; 10000 bytes in all]"));
        assert_eq!(truncate_raw(b"short"), "short");
    }
}
