//! Inserting a batch of tasks with their dependency edges.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use omoi_core::queue::{self, plan_batch};
use omoi_core::{Event, NewTask, StoreError, TaskId, TaskState};
use sqlx::types::Json;
use uuid::Uuid;

use super::{TERMINAL, Tx, micros};
use crate::postgres::error::{db, is_unique_violation};
use crate::postgres::rows::{get, parse};

/// Validates and inserts `batch` inside `tx`, appending `task.created` events. Dependencies'
/// rows are locked (`FOR SHARE`) so a concurrent completion cannot miss the new edges.
pub(crate) async fn insert_batch(
    tx: &mut Tx,
    batch: Vec<NewTask>,
    now: DateTime<Utc>,
    events: &mut Vec<Event>,
) -> Result<Vec<TaskId>, StoreError> {
    if batch.is_empty() {
        return Ok(Vec::new());
    }
    let mut referenced: HashSet<Uuid> = batch.iter().map(|t| t.id.as_uuid()).collect();
    referenced.extend(batch.iter().flat_map(|t| t.dependencies.iter().map(|d| d.as_uuid())));
    let mut referenced: Vec<Uuid> = referenced.into_iter().collect();
    referenced.sort();
    let existing: HashMap<TaskId, TaskState> =
        sqlx::query("SELECT id, state FROM tasks WHERE id = ANY($1) ORDER BY id FOR SHARE")
            .bind(&referenced)
            .fetch_all(&mut **tx)
            .await
            .map_err(db)?
            .iter()
            .map(|r| Ok((TaskId::from_uuid(get(r, "id")?), parse("task state", get::<&str>(r, "state")?)?)))
            .collect::<Result<_, StoreError>>()?;
    let states = plan_batch(&batch, |id| existing.get(id).copied())?;
    let keys: Vec<&str> = batch.iter().filter_map(|t| t.def.dedup_key.as_deref()).collect();
    if !keys.is_empty() {
        let held: HashMap<String, Uuid> =
            sqlx::query("SELECT dedup_key, id FROM tasks WHERE dedup_key = ANY($1) AND state <> ALL($2)")
                .bind(&keys)
                .bind(&TERMINAL[..])
                .fetch_all(&mut **tx)
                .await
                .map_err(db)?
                .iter()
                .map(|r| Ok((get(r, "dedup_key")?, get(r, "id")?)))
                .collect::<Result<_, StoreError>>()?;
        if let Some(k) = keys.iter().find(|k| held.contains_key(**k)) {
            return Err(StoreError::DuplicateKey { key: (*k).to_owned(), existing: Some(TaskId::from_uuid(held[*k])) });
        }
    }

    let n = batch.len();
    let (mut ids, mut defs, mut bands, mut deps) =
        (Vec::with_capacity(n), Vec::with_capacity(n), Vec::new(), Vec::new());
    let (mut specs, mut tickets, mut parents, mut locals) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut state_names, mut unmets, mut run_ats) = (Vec::new(), Vec::new(), Vec::new());
    let (mut edge_from, mut edge_to) = (Vec::new(), Vec::new());
    for (t, state) in batch.iter().zip(&states) {
        let distinct: Vec<Uuid> = {
            let mut seen = HashSet::new();
            t.dependencies.iter().map(|d| d.as_uuid()).filter(|d| seen.insert(*d)).collect()
        };
        let unmet =
            distinct.iter().filter(|d| existing.get(&TaskId::from_uuid(**d)) != Some(&TaskState::Completed)).count();
        for d in &distinct {
            edge_from.push(*d);
            edge_to.push(t.id.as_uuid());
        }
        ids.push(t.id.as_uuid());
        defs.push(Json(&t.def));
        bands.push(i16::from(queue::band(t.def.priority)));
        deps.push(serde_json::Value::from(distinct.iter().map(|d| d.to_string()).collect::<Vec<_>>()));
        specs.push(t.links.spec_id.map(|s| s.as_uuid()));
        tickets.push(t.links.ticket_id.map(|s| s.as_uuid()));
        parents.push(t.links.parent_id.map(|s| s.as_uuid()));
        locals.push(t.links.local_id.clone());
        state_names.push(state.as_str());
        unmets.push(i32::try_from(unmet).unwrap_or(i32::MAX));
        run_ats.push(micros(t.run_at.unwrap_or(now)));
    }
    let inserted = sqlx::query(
        "INSERT INTO tasks (id, def, band, capabilities, concurrency_key, concurrency_limit, dedup_key, max_attempts, \
             spec_id, ticket_id, parent_id, local_id, dependencies, state, unmet, run_at, created_at, updated_at) \
         SELECT i.id, i.def, i.band, \
                ARRAY(SELECT jsonb_array_elements_text(i.def -> 'capabilities')), \
                i.def -> 'concurrency' ->> 'key', (i.def -> 'concurrency' ->> 'limit')::int, \
                i.def ->> 'dedup_key', (i.def ->> 'max_attempts')::int, \
                i.spec_id, i.ticket_id, i.parent_id, i.local_id, \
                ARRAY(SELECT jsonb_array_elements_text(i.deps)::uuid), \
                i.state, i.unmet, i.run_at, $12, $12 \
           FROM unnest($1::uuid[], $2::jsonb[], $3::int2[], $4::uuid[], $5::uuid[], $6::uuid[], $7::text[], \
                       $8::jsonb[], $9::text[], $10::int4[], $11::timestamptz[]) \
                WITH ORDINALITY AS i(id, def, band, spec_id, ticket_id, parent_id, local_id, deps, state, unmet, run_at, ord) \
          ORDER BY i.ord",
    )
    .bind(&ids)
    .bind(&defs)
    .bind(&bands)
    .bind(&specs)
    .bind(&tickets)
    .bind(&parents)
    .bind(&locals)
    .bind(&deps)
    .bind(&state_names)
    .bind(&unmets)
    .bind(&run_ats)
    .bind(now)
    .execute(&mut **tx)
    .await;
    if let Err(e) = inserted {
        return Err(if is_unique_violation(&e, "tasks_pkey") {
            StoreError::AlreadyExists { kind: "task", id: "in the batch".into() }
        } else if is_unique_violation(&e, "tasks_dedup") {
            StoreError::DuplicateKey { key: "of a task in the batch (inserted concurrently)".into(), existing: None }
        } else {
            db(e)
        });
    }
    if !edge_from.is_empty() {
        sqlx::query("INSERT INTO task_edges (depends_on, task_id) SELECT * FROM unnest($1::uuid[], $2::uuid[])")
            .bind(&edge_from)
            .bind(&edge_to)
            .execute(&mut **tx)
            .await
            .map_err(db)?;
    }
    for (t, state) in batch.iter().zip(states) {
        events.push(Event::TaskCreated { task_id: t.id, state, spec_id: t.links.spec_id });
    }
    Ok(batch.into_iter().map(|t| t.id).collect())
}
