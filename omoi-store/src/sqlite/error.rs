//! sqlx errors as store errors: contention and I/O are retryable (`Unavailable`), the rest is not.

use omoi_core::StoreError;

/// The backend name in errors.
pub(super) const BACKEND: &str = "sqlite";

// Primary result codes (https://www.sqlite.org/rescode.html).
const SQLITE_IOERR: i32 = 10;
const SQLITE_BUSY: i32 = 5;
const SQLITE_LOCKED: i32 = 6;
const SQLITE_FULL: i32 = 13;
const SQLITE_CANTOPEN: i32 = 14;

/// The primary result code of a database error, if it is one.
fn primary_code(e: &sqlx::Error) -> Option<i32> {
    match e {
        sqlx::Error::Database(d) => d.code().and_then(|c| c.parse::<i32>().ok()).map(|c| c & 0xff),
        _ => None,
    }
}

/// Maps a sqlx error: busy/locked databases, I/O trouble and pool timeouts are `Unavailable`
/// (retrying later may succeed); everything else is `Backend`.
pub(super) fn db(e: sqlx::Error) -> StoreError {
    let retryable = match &e {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::WorkerCrashed => true,
        _ => {
            matches!(primary_code(&e), Some(SQLITE_BUSY | SQLITE_LOCKED | SQLITE_IOERR | SQLITE_FULL | SQLITE_CANTOPEN))
        }
    };
    let message = match primary_code(&e) {
        Some(SQLITE_BUSY | SQLITE_LOCKED) => format!("database is busy: {e}"),
        _ => e.to_string(),
    };
    if retryable {
        StoreError::Unavailable { backend: BACKEND, message, source: Some(Box::new(e)) }
    } else {
        StoreError::Backend { backend: BACKEND, message, source: Some(Box::new(e)) }
    }
}

/// Maps the error of an insert: a clash on a unique key is `AlreadyExists` for `kind` `id`.
pub(super) fn insert(kind: &'static str, id: impl std::fmt::Display) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |e| match &e {
        sqlx::Error::Database(d) if d.kind() == sqlx::error::ErrorKind::UniqueViolation => {
            StoreError::AlreadyExists { kind, id: id.to_string() }
        }
        _ => db(e),
    }
}

/// A stored value that does not decode: the file was written by something else.
pub(super) fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend { backend: BACKEND, message: format!("corrupt {what} in the database: {e}"), source: None }
}

/// A value that does not fit the database's 64-bit integers.
pub(super) fn too_large(what: &str, v: u64) -> StoreError {
    StoreError::InvalidInput(format!("{what} {v} does not fit in a signed 64-bit integer"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_timeouts_are_retryable_and_decode_errors_are_not() {
        assert!(db(sqlx::Error::PoolTimedOut).is_retryable());
        assert!(!db(sqlx::Error::RowNotFound).is_retryable());
        assert!(!corrupt("task", "bad json").is_retryable());
    }
}
