//! Redis errors as store errors, and URLs with their password redacted.

use omoi_core::StoreError;
use redis::{RedisError, RetryMethod};

/// The backend name in errors.
pub(super) const BACKEND: &str = "redis";

/// Error context: the server's URL, already redacted.
pub(super) struct Redis<'a> {
    pub(super) url: &'a str,
}

impl Redis<'_> {
    /// Maps a redis error: connection trouble, timeouts and a loading or busy server are
    /// `Unavailable` (retrying later may succeed); everything else is `Backend`.
    pub(super) fn err(&self, e: RedisError) -> StoreError {
        let message = format!("{}: {e}", self.url);
        if is_transient(&e) {
            StoreError::Unavailable { backend: BACKEND, message, source: Some(Box::new(e)) }
        } else {
            StoreError::Backend { backend: BACKEND, message, source: Some(Box::new(e)) }
        }
    }
}

/// Whether `e` is about the connection or a temporarily unavailable server.
pub(super) fn is_transient(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_refusal()
        || e.is_connection_dropped()
        || e.is_timeout()
        || matches!(
            e.retry_method(),
            RetryMethod::Reconnect | RetryMethod::ReconnectFromInitialConnections | RetryMethod::WaitAndRetry
        )
}

/// A stored value that does not decode.
pub(super) fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend { backend: BACKEND, message: format!("corrupt {what} in redis: {e}"), source: None }
}

/// `url` with the password (if any) replaced by `***`: `redis://user:***@host:6379/0`.
pub(super) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    // The last `@` ends the user info, even when an unencoded password holds `/` or `@`.
    let Some((userinfo, host)) = rest.rsplit_once('@') else { return url.to_owned() };
    let user = match userinfo.split_once(':') {
        Some((user, _password)) => format!("{user}:***"),
        None if userinfo.is_empty() => String::new(),
        // `redis://secret@host` is a password without a user name.
        None => "***".to_owned(),
    };
    format!("{scheme}://{user}@{host}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted_and_the_rest_is_kept() {
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(redact("redis://:hunter2@db:6379/1"), "redis://:***@db:6379/1");
        assert_eq!(redact("rediss://app:p%40ss@db.example:6380"), "rediss://app:***@db.example:6380");
        assert_eq!(redact("redis://hunter2@db"), "redis://***@db");
        assert!(!redact("redis://u:s3cr3t@h/0?x=1").contains("s3cr3t"));
        assert_eq!(redact("redis://u:a/b@c@h:1/2"), "redis://u:***@h:1/2");
    }
}
