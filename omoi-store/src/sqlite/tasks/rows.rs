//! A task row as stored: decoding, loading, writing back, and the reads other writes build on.

use std::collections::HashMap;

use omoi_core::{FencingToken, Lease, StoreError, Task, TaskId, TaskLinks, TaskState, Usage};
use sqlx::sqlite::SqliteRow;
use sqlx::{Sqlite, SqliteConnection};

use crate::sqlite::codec::{
    self, from_json, get, get_json, get_parsed, get_parsed_opt, get_time, int, json, text_array, u32_of, uint, us,
};
use crate::sqlite::error::db;

/// A stored task with the bookkeeping the port does not show.
pub(crate) struct Row {
    pub(crate) task: Task,
    /// Dependencies not yet completed.
    pub(super) unmet: i64,
    /// Claims so far: the source of fencing tokens.
    pub(super) claims: i64,
}

pub(super) fn decode(r: &SqliteRow) -> Result<Row, StoreError> {
    let lease = match get::<Option<i64>>(r, "lease_token")? {
        Some(token) => Some(Lease {
            holder: get_parsed(r, "lease_holder")?,
            token: FencingToken(uint("lease_token", token)?),
            expires_at: get_time(r, "lease_expires")?,
        }),
        None => None,
    };
    let result = get::<Option<String>>(r, "result")?.map(|s| from_json("result", &s)).transpose()?;
    let task = Task {
        id: get_parsed(r, "id")?,
        def: get_json(r, "def")?,
        links: TaskLinks {
            spec_id: get_parsed_opt(r, "spec_id")?,
            ticket_id: get_parsed_opt(r, "ticket_id")?,
            parent_id: get_parsed_opt(r, "parent_id")?,
            local_id: get(r, "local_id")?,
        },
        dependencies: get_json(r, "deps")?,
        state: get_parsed(r, "state")?,
        attempts: u32_of("attempts", get(r, "attempts")?)?,
        run_at: get_time(r, "run_at")?,
        lease,
        result,
        last_error: get(r, "last_error")?,
        usage: Usage {
            input_tokens: uint("usage_in", get(r, "usage_in")?)?,
            output_tokens: uint("usage_out", get(r, "usage_out")?)?,
            cost_usd: get(r, "usage_cost")?,
        },
        created_at: get_time(r, "created_at")?,
        updated_at: get_time(r, "updated_at")?,
    };
    Ok(Row { task, unmet: get(r, "unmet")?, claims: get(r, "claims")? })
}

pub(super) async fn load_opt(conn: &mut SqliteConnection, id: TaskId) -> Result<Option<Row>, StoreError> {
    let row = sqlx::query(concat!("SELECT ", task_cols!(), " FROM tasks WHERE id = ?1"))
        .bind(id.to_string())
        .fetch_optional(conn)
        .await
        .map_err(db)?;
    row.as_ref().map(decode).transpose()
}

pub(super) async fn load(conn: &mut SqliteConnection, id: TaskId) -> Result<Row, StoreError> {
    load_opt(conn, id).await?.ok_or_else(|| StoreError::not_found("task", id))
}

/// Writes back every mutable column of `row`.
pub(super) async fn save(conn: &mut SqliteConnection, row: &Row) -> Result<(), StoreError> {
    let t = &row.task;
    let result = t.result.as_ref().map(json).transpose()?;
    sqlx::query(
        "UPDATE tasks SET state = ?2, run_at = ?3, unmet = ?4, attempts = ?5, claims = ?6, lease_holder = ?7, \
         lease_token = ?8, lease_expires = ?9, result = ?10, last_error = ?11, usage_in = ?12, usage_out = ?13, \
         usage_cost = ?14, updated_at = ?15 WHERE id = ?1",
    )
    .bind(t.id.to_string())
    .bind(t.state.as_str())
    .bind(us(t.run_at))
    .bind(row.unmet)
    .bind(i64::from(t.attempts))
    .bind(row.claims)
    .bind(t.lease.map(|l| l.holder.to_string()))
    .bind(t.lease.map(|l| int("fencing token", l.token.0)).transpose()?)
    .bind(t.lease.map(|l| us(l.expires_at)))
    .bind(result)
    .bind(t.last_error.as_deref())
    .bind(int("input tokens", t.usage.input_tokens)?)
    .bind(int("output tokens", t.usage.output_tokens)?)
    .bind(t.usage.cost_usd)
    .bind(us(t.updated_at))
    .execute(conn)
    .await
    .map_err(db)?;
    Ok(())
}

/// States of the stored tasks among `ids`.
pub(super) async fn states_of(
    conn: &mut SqliteConnection,
    ids: impl IntoIterator<Item = TaskId>,
) -> Result<HashMap<TaskId, TaskState>, StoreError> {
    let rows = sqlx::query("SELECT id, state FROM tasks WHERE id IN (SELECT value FROM json_each(?1))")
        .bind(text_array(ids))
        .fetch_all(conn)
        .await
        .map_err(db)?;
    rows.iter().map(|r| Ok((get_parsed(r, "id")?, get_parsed(r, "state")?))).collect()
}

/// One task, read inside a transaction (discovery branching).
pub(crate) async fn get_in(conn: &mut SqliteConnection, id: TaskId) -> Result<Task, StoreError> {
    load(conn, id).await.map(|r| r.task)
}

/// Tasks depending directly on `id`, in insertion order.
pub(crate) async fn dependents_of<'e, E>(exec: E, id: TaskId) -> Result<Vec<TaskId>, StoreError>
where
    E: sqlx::Executor<'e, Database = Sqlite>,
{
    let rows: Vec<String> = sqlx::query_scalar("SELECT task_id FROM task_deps WHERE dep_id = ?1 ORDER BY rowid")
        .bind(id.to_string())
        .fetch_all(exec)
        .await
        .map_err(db)?;
    rows.iter().map(|s| codec::parse("task_id", s)).collect()
}

pub(super) fn parse_ids(rows: Vec<String>) -> Result<Vec<TaskId>, StoreError> {
    rows.iter().map(|s| codec::parse("task id", s)).collect()
}
