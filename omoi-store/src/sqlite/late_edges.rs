//! Dependencies added to a stored task after its insert ([`omoi_core::late_edges`]), written in
//! the caller's write transaction.

use omoi_core::StoreError;
use omoi_core::late_edges::AddedDependencies;

use super::codec::us;
use super::error::db;
use super::write::Write;

/// Writes `change`: the edges, the unmet count, the state (a re-queued task gives back its
/// lease and the attempt it was using), and its event. The task must still be in
/// `change.from` (the write lock guarantees it when the caller read it in this transaction).
pub(super) async fn add_dependencies(w: &mut Write, change: &AddedDependencies) -> Result<(), StoreError> {
    let id = change.task.to_string();
    for on in &change.added {
        sqlx::query("INSERT INTO task_deps (task_id, dep_id) VALUES (?1, ?2)")
            .bind(&id)
            .bind(on.to_string())
            .execute(w.conn())
            .await
            .map_err(db)?;
        sqlx::query("UPDATE tasks SET deps = json_insert(deps, '$[#]', ?2) WHERE id = ?1")
            .bind(&id)
            .bind(on.to_string())
            .execute(w.conn())
            .await
            .map_err(db)?;
    }
    let now = us(w.now);
    let done = sqlx::query(
        "UPDATE tasks SET unmet = unmet + ?2, state = ?3, updated_at = ?4, \
         attempts = CASE WHEN ?5 THEN MAX(attempts - 1, 0) ELSE attempts END, \
         lease_holder = NULL, lease_token = NULL, lease_expires = NULL WHERE id = ?1 AND state = ?6",
    )
    .bind(&id)
    .bind(change.unmet as i64)
    .bind(change.to.as_str())
    .bind(now)
    .bind(change.drops_lease())
    .bind(change.from.as_str())
    .execute(w.conn())
    .await
    .map_err(db)?;
    if done.rows_affected() != 1 {
        return Err(change.moved_meanwhile());
    }
    w.emit(change.event());
    Ok(())
}
