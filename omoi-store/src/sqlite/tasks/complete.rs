//! Completing a batch: every item checked first, one statement for the whole batch, and the
//! dependents each completion releases.

use std::collections::HashMap;

use omoi_core::queue;
use omoi_core::task::check_payload;
use omoi_core::{AgentId, Completion, Event, FencingToken, Lease, StoreError, TaskEvent, TaskId, TaskState};

use crate::sqlite::codec::{self, get, get_parsed, get_time, int, json, text_array, uint, us};
use crate::sqlite::error::db;
use crate::sqlite::write::Write;

/// What `complete_many` knows of a task while it goes through the batch.
struct Leased {
    state: TaskState,
    lease: Option<Lease>,
}

pub(super) async fn complete_many(
    w: &mut Write,
    items: Vec<(TaskId, FencingToken, Completion)>,
) -> Result<Vec<Result<Vec<TaskId>, StoreError>>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, state, lease_holder, lease_token, lease_expires FROM tasks \
         WHERE id IN (SELECT value FROM json_each(?1))",
    )
    .bind(text_array(items.iter().map(|i| i.0)))
    .fetch_all(w.conn())
    .await
    .map_err(db)?;
    let mut known: HashMap<TaskId, Leased> = HashMap::with_capacity(rows.len());
    for r in &rows {
        let lease = match get::<Option<i64>>(r, "lease_token")? {
            Some(t) => Some(Lease {
                holder: get_parsed(r, "lease_holder")?,
                token: FencingToken(uint("lease_token", t)?),
                expires_at: get_time(r, "lease_expires")?,
            }),
            None => None,
        };
        known.insert(get_parsed(r, "id")?, Leased { state: get_parsed(r, "state")?, lease });
    }
    // Check every item first (fencing, payload, transition), in order, so the writes below
    // cannot fail halfway for a reason of one item.
    let mut results: Vec<Result<Vec<TaskId>, StoreError>> = Vec::with_capacity(items.len());
    let mut accepted: Vec<(usize, TaskId, AgentId, TaskState, Completion)> = Vec::new();
    for (i, (id, token, completion)) in items.into_iter().enumerate() {
        let check = (|| {
            let t = known.get_mut(&id).ok_or_else(|| StoreError::not_found("task", id))?;
            let lease = queue::fence(id, t.state, t.lease, token)?;
            check_payload("result", &completion.result).map_err(StoreError::InvalidInput)?;
            let next = t.state.apply(TaskEvent::Complete).map_err(|e| StoreError::transition("task", id, e))?;
            t.state = next;
            t.lease = None;
            Ok((lease.holder, next))
        })();
        match check {
            Ok((holder, next)) => {
                accepted.push((i, id, holder, next, completion));
                results.push(Ok(Vec::new()));
            }
            Err(e) => results.push(Err(e)),
        }
    }
    if accepted.is_empty() {
        return Ok(results);
    }
    let edges = sqlx::query(
        "SELECT dep_id, task_id FROM task_deps WHERE dep_id IN (SELECT value FROM json_each(?1)) ORDER BY rowid",
    )
    .bind(text_array(accepted.iter().map(|a| a.1)))
    .fetch_all(w.conn())
    .await
    .map_err(db)?;
    let mut dependents: HashMap<String, Vec<String>> = HashMap::new();
    for r in &edges {
        dependents.entry(get(r, "dep_id")?).or_default().push(get(r, "task_id")?);
    }
    let now = us(w.now);
    // One statement for the whole batch: each item's new state, result and usage as JSON.
    let mut updates = Vec::with_capacity(accepted.len());
    for (_, id, _, next, completion) in &accepted {
        updates.push(serde_json::json!({
            "id": id.to_string(),
            "s": next.as_str(),
            "r": completion.result,
            "i": int("input tokens", completion.usage.input_tokens)?,
            "o": int("output tokens", completion.usage.output_tokens)?,
            "c": completion.usage.cost_usd,
        }));
    }
    sqlx::query(
        "UPDATE tasks SET state = j.value ->> '$.s', result = j.value -> '$.r', \
         usage_in = usage_in + (j.value ->> '$.i'), usage_out = usage_out + (j.value ->> '$.o'), \
         usage_cost = usage_cost + (j.value ->> '$.c'), lease_holder = NULL, lease_token = NULL, \
         lease_expires = NULL, updated_at = ?1 FROM json_each(?2) AS j WHERE tasks.id = j.value ->> '$.id'",
    )
    .bind(now)
    .bind(json(&updates)?)
    .execute(w.conn())
    .await
    .map_err(db)?;
    for (i, id, holder, _, _) in accepted {
        w.emit(Event::TaskCompleted { task_id: id, holder });
        let mut released = Vec::new();
        for d in dependents.remove(&id.to_string()).unwrap_or_default() {
            let row = sqlx::query("UPDATE tasks SET unmet = MAX(unmet - 1, 0) WHERE id = ?1 RETURNING state, unmet")
                .bind(&d)
                .fetch_optional(w.conn())
                .await
                .map_err(db)?;
            let Some(row) = row else { continue };
            let (state, unmet): (TaskState, i64) = (get_parsed(&row, "state")?, get(&row, "unmet")?);
            if unmet == 0 && state == TaskState::Waiting {
                let dep_id: TaskId = codec::parse("task id", &d)?;
                let ready =
                    state.apply(TaskEvent::DependenciesMet).map_err(|e| StoreError::transition("task", dep_id, e))?;
                sqlx::query("UPDATE tasks SET state = ?2, updated_at = ?3 WHERE id = ?1")
                    .bind(&d)
                    .bind(ready.as_str())
                    .bind(now)
                    .execute(w.conn())
                    .await
                    .map_err(db)?;
                w.emit(Event::TaskReady { task_id: dep_id });
                released.push(dep_id);
            }
        }
        results[i] = Ok(released);
    }
    Ok(results)
}
