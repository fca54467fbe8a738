//! Dependencies added to a stored task after its insert ([`omoi_core::late_edges`]), written in
//! the caller's transaction.

use omoi_core::StoreError;
use omoi_core::late_edges::AddedDependencies;
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use super::error::db;

/// Writes `change`: the edges, the unmet count and the state (a re-queued task gives back the
/// attempt it was using; its lease ends with its leased state). Returns the event to append.
/// The task must still be in `change.from`: the caller holds its row lock.
pub(super) async fn add_dependencies(
    tx: &mut Transaction<'static, Postgres>,
    change: &AddedDependencies,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<omoi_core::Event, StoreError> {
    let added: Vec<Uuid> = change.added.iter().map(|t| t.as_uuid()).collect();
    let done = sqlx::query(
        "UPDATE tasks SET dependencies = dependencies || $2::uuid[], unmet = unmet + $3, state = $4, updated_at = $5, \
         attempts = CASE WHEN $6 THEN greatest(attempts - 1, 0) ELSE attempts END \
         WHERE id = $1 AND state = $7",
    )
    .bind(change.task.as_uuid())
    .bind(&added)
    .bind(i32::try_from(change.unmet).unwrap_or(i32::MAX))
    .bind(change.to.as_str())
    .bind(now)
    .bind(change.drops_lease())
    .bind(change.from.as_str())
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    if done.rows_affected() != 1 {
        return Err(change.moved_meanwhile());
    }
    sqlx::query("INSERT INTO task_edges (depends_on, task_id) SELECT unnest($1::uuid[]), $2")
        .bind(&added)
        .bind(change.task.as_uuid())
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    Ok(change.event())
}
