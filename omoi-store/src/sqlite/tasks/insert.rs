//! Inserting a batch of tasks with their dependency edges (used by sync and branching too).

use std::collections::HashMap;

use omoi_core::queue::{self, plan_batch};
use omoi_core::{Event, NewTask, StoreError, TaskId, TaskState};

use super::rows::states_of;
use crate::sqlite::codec::{self, get, json, text_array, us};
use crate::sqlite::error::{db, insert};
use crate::sqlite::write::Write;

/// Validates and inserts a batch (see [`TaskStore::insert_tasks`](omoi_core::TaskStore::insert_tasks)); used by sync too.
pub(crate) async fn insert_batch(w: &mut Write, batch: Vec<NewTask>) -> Result<Vec<TaskId>, StoreError> {
    let referenced = batch.iter().flat_map(|t| std::iter::once(t.id).chain(t.dependencies.iter().copied()));
    let existing = states_of(w.conn(), referenced).await?;
    let states = plan_batch(&batch, |id| existing.get(id).copied())?;
    let keys: Vec<&str> = batch.iter().filter_map(|t| t.def.dedup_key.as_deref()).collect();
    if !keys.is_empty() {
        let held = sqlx::query(
            "SELECT dedup_key, id FROM tasks WHERE dedup_key IN (SELECT value FROM json_each(?1)) \
             AND state NOT IN ('completed', 'failed', 'cancelled')",
        )
        .bind(text_array(&keys))
        .fetch_all(w.conn())
        .await
        .map_err(db)?;
        let held: HashMap<String, String> =
            held.iter().map(|r| Ok((get(r, "dedup_key")?, get(r, "id")?))).collect::<Result<_, StoreError>>()?;
        for key in keys {
            if let Some(holder) = held.get(key) {
                let existing = Some(codec::parse("task id", holder)?);
                return Err(StoreError::DuplicateKey { key: key.to_owned(), existing });
            }
        }
    }
    let now = us(w.now);
    let mut ids = Vec::with_capacity(batch.len());
    for (new, state) in batch.into_iter().zip(states) {
        let unmet = new.dependencies.iter().filter(|d| existing.get(d) != Some(&TaskState::Completed)).count();
        let caps = if new.def.capabilities.is_empty() { None } else { Some(json(&new.def.capabilities)?) };
        let deps = json(&new.dependencies)?;
        let run_at = new.run_at.map_or(now, us);
        sqlx::query(
            "INSERT INTO tasks (id, state, band, run_at, def, caps, conc_key, conc_limit, dedup_key, spec_id, \
             ticket_id, parent_id, local_id, deps, unmet, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?16)",
        )
        .bind(new.id.to_string())
        .bind(state.as_str())
        .bind(i64::from(queue::band(new.def.priority)))
        .bind(run_at)
        .bind(json(&new.def)?)
        .bind(caps)
        .bind(new.def.concurrency.as_ref().map(|c| c.key.as_str()))
        .bind(new.def.concurrency.as_ref().map(|c| i64::from(c.limit)))
        .bind(new.def.dedup_key.as_deref())
        .bind(new.links.spec_id.map(|i| i.to_string()))
        .bind(new.links.ticket_id.map(|i| i.to_string()))
        .bind(new.links.parent_id.map(|i| i.to_string()))
        .bind(new.links.local_id.as_deref())
        .bind(&deps)
        .bind(unmet as i64)
        .bind(now)
        .execute(w.conn())
        .await
        .map_err(insert("task", new.id))?;
        if !new.dependencies.is_empty() {
            sqlx::query("INSERT INTO task_deps (task_id, dep_id) SELECT ?1, value FROM json_each(?2) ORDER BY key")
                .bind(new.id.to_string())
                .bind(&deps)
                .execute(w.conn())
                .await
                .map_err(db)?;
        }
        w.emit(Event::TaskCreated { task_id: new.id, state, spec_id: new.links.spec_id });
        ids.push(new.id);
    }
    Ok(ids)
}
