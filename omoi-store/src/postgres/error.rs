//! Mapping driver errors to [`StoreError`], and redacting passwords from connection strings.

use omoi_core::StoreError;

/// Backend name in errors.
pub(crate) const BACKEND: &str = "postgres";

/// SQLSTATE classes and codes after which a retry may succeed: connection exceptions (08),
/// serialization failure and deadlock (40001, 40P01), insufficient resources (53), operator
/// intervention such as an admin shutdown or a restarting server (57P01–57P05), and lock
/// timeouts (55P03).
fn retryable_sqlstate(code: &str) -> bool {
    code.starts_with("08")
        || code.starts_with("53")
        || matches!(code, "40001" | "40P01" | "55P03" | "57P01" | "57P02" | "57P03" | "57P04" | "57P05")
}

/// The SQLSTATE of a database error, if it is one.
pub(crate) fn sqlstate(e: &sqlx::Error) -> Option<String> {
    match e {
        sqlx::Error::Database(d) => d.code().map(|c| c.into_owned()),
        _ => None,
    }
}

/// Whether `e` is a unique violation of constraint (or index) `name`.
pub(crate) fn is_unique_violation(e: &sqlx::Error, name: &str) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation() && d.constraint() == Some(name))
}

/// Maps a driver error: connection trouble and transient conflicts are `Unavailable`
/// (retryable), anything else is `Backend`.
pub(crate) fn db(e: sqlx::Error) -> StoreError {
    let retryable = match &e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_)
        | sqlx::Error::BeginFailed => true,
        sqlx::Error::Database(_) => sqlstate(&e).is_some_and(|c| retryable_sqlstate(&c)),
        _ => false,
    };
    let message = e.to_string();
    if retryable {
        StoreError::Unavailable { backend: BACKEND, message, source: Some(Box::new(e)) }
    } else {
        StoreError::Backend { backend: BACKEND, message, source: Some(Box::new(e)) }
    }
}

/// A stored value that does not decode (a corrupt row or a schema from another version).
pub(crate) fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend { backend: BACKEND, message: format!("cannot decode {what}: {e}"), source: None }
}

/// `url` with any password replaced by `***`: the password of `scheme://user:password@host`,
/// a `password=` query parameter, and a `password=` key of a `key=value` connection string.
pub(crate) fn redact_url(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(scheme_end) = out.find("://") {
        let start = scheme_end + 3;
        let end = out[start..].find(['/', '?']).map_or(out.len(), |i| start + i);
        if let Some(at) = out[start..end].rfind('@') {
            let userinfo = &out[start..start + at];
            if let Some(colon) = userinfo.find(':') {
                out.replace_range(start + colon + 1..start + at, "***");
            }
        }
    }
    redact_param(&out)
}

/// Replaces the value of every `password=` parameter (query string or key=value form).
fn redact_param(s: &str) -> String {
    // ASCII lowercasing keeps byte offsets.
    let lower = s.to_ascii_lowercase();
    let mut out = String::with_capacity(s.len());
    let (mut copied, mut search) = (0, 0);
    while let Some(i) = lower[search..].find("password=") {
        let at = search + i;
        let value_start = at + "password=".len();
        search = value_start;
        if at > 0 && !matches!(s.as_bytes()[at - 1], b'?' | b'&' | b' ') {
            continue;
        }
        let value_end = s[value_start..].find(['&', ' ']).map_or(s.len(), |j| value_start + j);
        out.push_str(&s[copied..value_start]);
        out.push_str("***");
        copied = value_end;
        search = value_end;
    }
    out.push_str(&s[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_in_userinfo_is_redacted() {
        assert_eq!(redact_url("postgres://omoi:s3cr%40t@db.local:5432/app"), "postgres://omoi:***@db.local:5432/app");
        assert_eq!(redact_url("postgresql://u:p@h/db?sslmode=disable"), "postgresql://u:***@h/db?sslmode=disable");
    }

    #[test]
    fn password_with_at_sign_and_colon_is_redacted_whole() {
        assert_eq!(redact_url("postgres://u:pa:ss@word@h:1/d"), "postgres://u:***@h:1/d");
    }

    #[test]
    fn urls_without_password_are_unchanged() {
        for url in ["postgres://postgres@127.0.0.1:55432/omoi_test", "postgres://h/db", "postgres://u@h"] {
            assert_eq!(redact_url(url), url);
        }
    }

    #[test]
    fn password_parameters_are_redacted() {
        assert_eq!(
            redact_url("postgres://u@h/db?password=hunter2&sslmode=off"),
            "postgres://u@h/db?password=***&sslmode=off"
        );
        assert_eq!(redact_url("host=h user=u password=hunter2 dbname=d"), "host=h user=u password=*** dbname=d");
        assert_eq!(redact_url("postgres://u@h/db?PASSWORD=x"), "postgres://u@h/db?PASSWORD=***");
        assert_eq!(redact_url("postgres://u@h/db?old_password=x"), "postgres://u@h/db?old_password=x");
    }

    #[test]
    fn connection_errors_are_retryable_and_constraint_errors_are_not() {
        assert!(db(sqlx::Error::PoolTimedOut).is_retryable());
        assert!(db(sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset))).is_retryable());
        assert!(!db(sqlx::Error::RowNotFound).is_retryable());
        for code in ["08006", "40001", "40P01", "57P01", "53300"] {
            assert!(retryable_sqlstate(code), "{code}");
        }
        for code in ["23505", "42P01", "22P02"] {
            assert!(!retryable_sqlstate(code), "{code}");
        }
    }
}
