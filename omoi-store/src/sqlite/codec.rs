//! Values at the SQLite boundary: times as integer microseconds, ids as UUID text, enums as their
//! stable strings, structured values as JSON.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::error::{corrupt, db, too_large};
use omoi_core::StoreError;

/// `t` at the precision the database keeps (microseconds).
pub(super) fn truncate(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}

/// Microseconds since the epoch.
pub(super) fn us(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// The time `v` microseconds after the epoch.
pub(super) fn time(v: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_micros(v).ok_or_else(|| corrupt("timestamp", v))
}

/// A `u64` (tokens, sequence numbers) as a database integer.
pub(super) fn int(what: &str, v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| too_large(what, v))
}

/// A non-negative database integer as a `u64`.
pub(super) fn uint(what: &str, v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| corrupt(what, v))
}

/// A non-negative database integer as a `u32`.
pub(super) fn u32_of(what: &str, v: i64) -> Result<u32, StoreError> {
    u32::try_from(v).map_err(|_| corrupt(what, v))
}

/// JSON text of `v`.
pub(super) fn json<T: Serialize + ?Sized>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::InvalidInput(format!("cannot encode as JSON: {e}")))
}

/// `v` decoded from JSON text.
pub(super) fn from_json<T: DeserializeOwned>(what: &str, s: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| corrupt(what, e))
}

/// An id or enum parsed from its text form.
pub(super) fn parse<T: FromStr>(what: &str, s: &str) -> Result<T, StoreError>
where
    T::Err: std::fmt::Display,
{
    s.parse().map_err(|e| corrupt(what, e))
}

/// Column `col` of `row`.
pub(super) fn get<'r, T>(row: &'r SqliteRow, col: &str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
{
    row.try_get(col).map_err(db)
}

/// Column `col` of `row`, parsed from text.
pub(super) fn get_parsed<T: FromStr>(row: &SqliteRow, col: &str) -> Result<T, StoreError>
where
    T::Err: std::fmt::Display,
{
    parse(col, &get::<String>(row, col)?)
}

/// Nullable column `col` of `row`, parsed from text.
pub(super) fn get_parsed_opt<T: FromStr>(row: &SqliteRow, col: &str) -> Result<Option<T>, StoreError>
where
    T::Err: std::fmt::Display,
{
    get::<Option<String>>(row, col)?.map(|s| parse(col, &s)).transpose()
}

/// Time column `col` of `row`.
pub(super) fn get_time(row: &SqliteRow, col: &str) -> Result<DateTime<Utc>, StoreError> {
    time(get::<i64>(row, col)?)
}

/// JSON column `col` of `row`.
pub(super) fn get_json<T: DeserializeOwned>(row: &SqliteRow, col: &str) -> Result<T, StoreError> {
    from_json(col, &get::<String>(row, col)?)
}

/// A JSON array of the text forms of `items` (bound where SQL reads `json_each(?)`).
pub(super) fn text_array<T: ToString>(items: impl IntoIterator<Item = T>) -> String {
    let v: Vec<String> = items.into_iter().map(|i| i.to_string()).collect();
    serde_json::to_string(&v).unwrap_or_else(|_| "[]".into())
}

/// An embedding as little-endian `f32`s.
pub(super) fn embedding_blob(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// An embedding from little-endian `f32`s.
pub(super) fn embedding(blob: &[u8]) -> Result<Vec<f32>, StoreError> {
    if !blob.len().is_multiple_of(4) {
        return Err(corrupt("embedding", format!("{} bytes is not a whole number of f32s", blob.len())));
    }
    Ok(blob.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embeddings_round_trip_exactly() {
        let v = vec![0.25, -0.5, 1.0, f32::MIN_POSITIVE, 1e-30];
        assert_eq!(embedding(&embedding_blob(&v)).unwrap(), v);
        assert!(embedding(&[0, 1, 2]).is_err());
    }

    #[test]
    fn times_keep_microseconds() {
        let t = DateTime::from_timestamp(1_700_000_000, 123_456_789).unwrap();
        let stored = time(us(t)).unwrap();
        assert_eq!(stored, truncate(t));
        assert_eq!(stored.timestamp_subsec_nanos(), 123_456_000);
        assert_eq!(time(us(DateTime::<Utc>::MAX_UTC)).unwrap(), truncate(DateTime::<Utc>::MAX_UTC));
    }
}
