//! Settings shared by the adapters' builders, their validation and the builder setters.

use std::sync::Arc;
use std::time::Duration;

use omoi_core::{Clock, SystemClock};

use super::price::PriceTable;
use super::secret::ApiKey;

/// A builder setting is missing or invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LlmConfigError {
    /// The provider needs an API key and none was given.
    #[error("no API key: pass one to the builder's `api_key` or set {env}")]
    MissingApiKey {
        /// The environment variable `from_env` reads it from.
        env: &'static str,
    },
    /// The base URL is not an absolute `http`/`https` URL.
    #[error("invalid base URL {url:?}: {reason}")]
    InvalidBaseUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Another setting is out of range.
    #[error("invalid setting `{name}`: {reason}")]
    InvalidSetting {
        /// The setting.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The HTTP client could not be created (TLS setup).
    #[error("cannot create the HTTP client: {0}")]
    HttpClient(String),
}

/// When and how long to retry transient failures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RetryPolicy {
    /// Retries after the first attempt.
    pub(crate) max_retries: u32,
    /// The first backoff; doubled on each further retry.
    pub(crate) backoff_base: Duration,
    /// The longest backoff.
    pub(crate) backoff_max: Duration,
    /// The longest wait a server's `retry-after` can impose.
    pub(crate) max_retry_after: Duration,
}

impl RetryPolicy {
    /// The backoff before retry number `retry` (1-based): exponential, capped, with "equal
    /// jitter" (half the step fixed, half random) so concurrent clients spread out.
    pub(crate) fn backoff(&self, retry: u32) -> Duration {
        let step = self.backoff_base.saturating_mul(2u32.saturating_pow(retry.saturating_sub(1))).min(self.backoff_max);
        let half = step / 2;
        half + half.mul_f64(fastrand::f64())
    }
}

/// Everything a builder collects.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) api_key: Option<ApiKey>,
    pub(crate) base_url: String,
    pub(crate) model: String,
    pub(crate) timeout: Duration,
    pub(crate) retry: RetryPolicy,
    pub(crate) prices: PriceTable,
    pub(crate) clock: Arc<dyn Clock>,
}

impl Options {
    pub(crate) fn new(base_url: &str, model: &str) -> Self {
        Self {
            api_key: None,
            base_url: base_url.to_owned(),
            model: model.to_owned(),
            timeout: Duration::from_secs(600),
            retry: RetryPolicy {
                max_retries: 3,
                backoff_base: Duration::from_secs(1),
                backoff_max: Duration::from_secs(30),
                max_retry_after: Duration::from_secs(60),
            },
            prices: PriceTable::default(),
            clock: Arc::new(SystemClock),
        }
    }

    /// Applies `NAME_API_KEY`, `NAME_BASE_URL` and `NAME_MODEL` from `var` (empty values are
    /// ignored).
    pub(crate) fn apply_env(&mut self, prefix: &str, var: impl Fn(&str) -> Option<String>) {
        let get = |suffix: &str| var(&format!("{prefix}_{suffix}")).filter(|v| !v.trim().is_empty());
        if let Some(key) = get("API_KEY") {
            self.api_key = Some(ApiKey::new(key.trim()));
        }
        if let Some(url) = get("BASE_URL") {
            self.base_url = url.trim().to_owned();
        }
        if let Some(model) = get("MODEL") {
            self.model = model.trim().to_owned();
        }
    }

    /// Checks the settings; returns the endpoint URL for `path` (`/v1/...`). A base URL that
    /// already ends in `/v1` (the OpenAI SDK convention) does not get a second one.
    pub(crate) fn validate(&self, path: &str) -> Result<String, LlmConfigError> {
        let invalid =
            |reason: &str| LlmConfigError::InvalidBaseUrl { url: self.base_url.clone(), reason: reason.into() };
        let url = reqwest::Url::parse(&self.base_url).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid("the scheme must be http or https"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid("a base URL takes no query or fragment"));
        }
        let setting = |name, reason: &str| Err(LlmConfigError::InvalidSetting { name, reason: reason.into() });
        if self.model.trim().is_empty() {
            return setting("model", "the model name is empty");
        }
        if self.timeout.is_zero() {
            return setting("timeout", "the request timeout must be positive");
        }
        if self.retry.backoff_base > self.retry.backoff_max {
            return setting("backoff_base", "the backoff base exceeds the backoff maximum");
        }
        let base = self.base_url.trim_end_matches('/');
        let path = if base.ends_with("/v1") { path.trim_start_matches("/v1") } else { path };
        Ok(format!("{base}{path}"))
    }
}

/// The builder setters both adapters share; `$builder` has an `opts: Options` field.
macro_rules! common_setters {
    ($builder:ident) => {
        impl $builder {
            /// The API key.
            pub fn api_key(mut self, key: impl Into<$crate::llm::ApiKey>) -> Self {
                self.opts.api_key = Some(key.into());
                self
            }

            /// The server's base URL, with or without a trailing `/v1`.
            pub fn base_url(mut self, url: impl Into<String>) -> Self {
                self.opts.base_url = url.into();
                self
            }

            /// The model to ask.
            pub fn model(mut self, model: impl Into<String>) -> Self {
                self.opts.model = model.into();
                self
            }

            /// The limit for one HTTP attempt, from sending to the last byte of the answer
            /// (default 10 minutes).
            pub fn timeout(mut self, timeout: ::std::time::Duration) -> Self {
                self.opts.timeout = timeout;
                self
            }

            /// Retries of transient failures (429, 5xx, timeouts, broken connections, malformed
            /// bodies) after the first attempt (default 3).
            pub fn max_retries(mut self, retries: u32) -> Self {
                self.opts.retry.max_retries = retries;
                self
            }

            /// The first backoff, doubled on each further retry, with jitter (default 1 s).
            pub fn backoff_base(mut self, base: ::std::time::Duration) -> Self {
                self.opts.retry.backoff_base = base;
                self
            }

            /// The longest backoff (default 30 s).
            pub fn backoff_max(mut self, max: ::std::time::Duration) -> Self {
                self.opts.retry.backoff_max = max;
                self
            }

            /// The longest wait a server's `retry-after` can impose; a longer one is cut to
            /// this (default 60 s).
            pub fn max_retry_after(mut self, max: ::std::time::Duration) -> Self {
                self.opts.retry.max_retry_after = max;
                self
            }

            /// The clock retry waits sleep on (default [`SystemClock`](omoi_core::SystemClock)).
            pub fn clock(mut self, clock: ::std::sync::Arc<dyn omoi_core::Clock>) -> Self {
                self.opts.clock = clock;
                self
            }
        }
    };
}
pub(crate) use common_setters;

/// The price-table setter of the chat adapters' builders; `$builder` has an `opts: Options` field.
macro_rules! price_setter {
    ($builder:ident) => {
        impl $builder {
            /// The prices used for `Usage::cost_usd` (default [`PriceTable::default`](crate::llm::PriceTable::default)).
            pub fn prices(mut self, prices: $crate::llm::PriceTable) -> Self {
                self.opts.prices = prices;
                self
            }
        }
    };
}
pub(crate) use price_setter;

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(base: &str) -> Options {
        Options::new(base, "m")
    }

    #[test]
    fn endpoint_joins_base_and_path_once() {
        assert_eq!(
            opts("https://api.openai.com").validate("/v1/chat/completions").unwrap(),
            "https://api.openai.com/v1/chat/completions"
        );
        assert_eq!(
            opts("http://127.0.0.1:11434/v1/").validate("/v1/chat/completions").unwrap(),
            "http://127.0.0.1:11434/v1/chat/completions"
        );
        assert_eq!(opts("http://proxy/llm/").validate("/v1/messages").unwrap(), "http://proxy/llm/v1/messages");
    }

    #[test]
    fn invalid_settings_are_typed_errors() {
        assert!(matches!(opts("localhost:8080").validate("/v1/x"), Err(LlmConfigError::InvalidBaseUrl { .. })));
        assert!(matches!(opts("ftp://host").validate("/v1/x"), Err(LlmConfigError::InvalidBaseUrl { .. })));
        assert!(matches!(opts("not a url").validate("/v1/x"), Err(LlmConfigError::InvalidBaseUrl { .. })));
        let mut o = opts("http://h");
        o.model = " ".into();
        assert!(matches!(o.validate("/v1/x"), Err(LlmConfigError::InvalidSetting { name: "model", .. })));
        let mut o = opts("http://h");
        o.retry.backoff_base = Duration::from_secs(60);
        assert!(matches!(o.validate("/v1/x"), Err(LlmConfigError::InvalidSetting { name: "backoff_base", .. })));
    }

    #[test]
    fn env_values_apply_and_empty_ones_are_ignored() {
        let mut o = opts("https://default");
        o.apply_env("ACME", |k| match k {
            "ACME_API_KEY" => Some("k-1".into()),
            "ACME_BASE_URL" => Some("  ".into()),
            "ACME_MODEL" => Some("big".into()),
            _ => None,
        });
        assert_eq!(o.api_key, Some(ApiKey::new("k-1")));
        assert_eq!(o.base_url, "https://default");
        assert_eq!(o.model, "big");
    }

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let p = RetryPolicy {
            max_retries: 5,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(60),
        };
        for _ in 0..50 {
            let b1 = p.backoff(1);
            assert!(b1 >= Duration::from_millis(500) && b1 <= Duration::from_secs(1), "{b1:?}");
            let b3 = p.backoff(3);
            assert!(b3 >= Duration::from_secs(2) && b3 <= Duration::from_secs(4), "{b3:?}");
            let b10 = p.backoff(10);
            assert!(b10 >= Duration::from_millis(2500) && b10 <= Duration::from_secs(5), "{b10:?}");
        }
        assert!(p.backoff(40) <= Duration::from_secs(5));
    }
}
