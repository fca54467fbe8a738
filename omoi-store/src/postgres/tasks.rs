//! `TaskStore` for the Postgres adapter. The hot paths (claim, complete) are one round trip each
//! to the PL/pgSQL functions of the migration; the rarer state changes lock the task row, apply
//! the state machine in Rust and write the row back, with their events, in one transaction.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use omoi_core::ports::clock::add_duration;
use omoi_core::queue::plan_batch;
use omoi_core::task::check_payload;
use omoi_core::{
    AgentId, ClaimRequest, ClaimedTask, Completion, Event, FailOutcome, Failure, FencingToken, Lease, NewTask, SpecId,
    StoreError, Task, TaskCounts, TaskEvent, TaskFilter, TaskId, TaskState, TaskStore,
};
use sqlx::types::Json;
use sqlx::{Postgres, Transaction};
use tracing::instrument;
use uuid::Uuid;

use super::error::{db, is_unique_violation};
use super::rows::{self, count, get, parse};
use super::{PostgresStore, emit};

type Tx = Transaction<'static, Postgres>;

/// States that no longer hold a dedup key.
const TERMINAL: [&str; 3] = ["completed", "failed", "cancelled"];

/// Why an attempt was lost.
enum Loss {
    /// The holder reported a failure.
    Failed(Failure),
    /// The lease lapsed or its holder failed.
    LeaseLost,
}

/// `t` at Postgres' precision.
pub(super) fn micros(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}

/// Queue band: 0 = critical … 3 = low.
fn band(task: &NewTask) -> i16 {
    i16::from(3 - task.def.priority.rank())
}

fn step(task: &mut Task, event: TaskEvent, now: DateTime<Utc>) -> Result<TaskState, StoreError> {
    let next = task.state.apply(event).map_err(|e| StoreError::transition("task", task.id, e))?;
    task.state = next;
    task.updated_at = now;
    Ok(next)
}

/// The lease if `token` is current, else `StaleLease`.
fn fenced(task: &Task, token: FencingToken) -> Result<Lease, StoreError> {
    match task.lease {
        Some(l) if l.token == token && task.state.is_leased() => Ok(l),
        _ => Err(StoreError::StaleLease { task: task.id, presented: token }),
    }
}

fn uuids(ids: impl IntoIterator<Item = TaskId>) -> Vec<Uuid> {
    ids.into_iter().map(|i| i.as_uuid()).collect()
}

fn task_ids(ids: impl IntoIterator<Item = Uuid>) -> Vec<TaskId> {
    ids.into_iter().map(TaskId::from_uuid).collect()
}

/// The task, locked for the rest of the transaction.
async fn lock_task(tx: &mut Tx, id: TaskId) -> Result<Task, StoreError> {
    let row = sqlx::query("SELECT * FROM tasks WHERE id = $1 FOR UPDATE")
        .bind(id.as_uuid())
        .fetch_optional(&mut **tx)
        .await
        .map_err(db)?
        .ok_or_else(|| StoreError::not_found("task", id))?;
    rows::task(&row)
}

/// Writes back the fields the rarer state changes touch.
async fn save(tx: &mut Tx, task: &Task) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE tasks SET state = $2, attempts = $3, run_at = $4, last_error = $5, usage_input = $6, \
         usage_output = $7, usage_cost = $8, updated_at = $9 WHERE id = $1",
    )
    .bind(task.id.as_uuid())
    .bind(task.state.as_str())
    .bind(i32::try_from(task.attempts).unwrap_or(i32::MAX))
    .bind(task.run_at)
    .bind(&task.last_error)
    .bind(i64::try_from(task.usage.input_tokens).unwrap_or(i64::MAX))
    .bind(i64::try_from(task.usage.output_tokens).unwrap_or(i64::MAX))
    .bind(task.usage.cost_usd)
    .bind(task.updated_at)
    .execute(&mut **tx)
    .await
    .map_err(|e| dedup_clash(e, task))?;
    Ok(())
}

/// A unique violation of the dedup index becomes `DuplicateKey`.
fn dedup_clash(e: sqlx::Error, task: &Task) -> StoreError {
    match (&task.def.dedup_key, is_unique_violation(&e, "tasks_dedup")) {
        (Some(k), true) => StoreError::DuplicateKey { key: k.clone(), existing: None },
        _ => db(e),
    }
}

/// Validates and inserts `batch` inside `tx`, appending `task.created` events. Dependencies'
/// rows are locked (`FOR SHARE`) so a concurrent completion cannot miss the new edges.
pub(super) async fn insert_batch(
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
        bands.push(band(t));
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

/// Blocks every transitive dependent still waiting on `root`.
async fn block_dependents(
    tx: &mut Tx,
    root: TaskId,
    now: DateTime<Utc>,
    events: &mut Vec<Event>,
) -> Result<Vec<TaskId>, StoreError> {
    let mut blocked = Vec::new();
    let mut queue = VecDeque::from([root]);
    while let Some(cause) = queue.pop_front() {
        let rows = sqlx::query(
            "UPDATE tasks t SET state = 'blocked', updated_at = $2 \
               FROM task_edges e WHERE e.depends_on = $1 AND t.id = e.task_id AND t.state = 'waiting' \
             RETURNING t.id",
        )
        .bind(cause.as_uuid())
        .bind(now)
        .fetch_all(&mut **tx)
        .await
        .map_err(db)?;
        let mut ids: Vec<Uuid> = rows.iter().map(|r| get(r, "id")).collect::<Result<_, _>>()?;
        ids.sort();
        for d in task_ids(ids) {
            events.push(Event::TaskBlocked { task_id: d, blocked_by: cause });
            blocked.push(d);
            queue.push_back(d);
        }
    }
    Ok(blocked)
}

/// Lets blocked dependents of `root` wait again where no dependency still blocks them.
async fn unblock_dependents(
    tx: &mut Tx,
    root: TaskId,
    now: DateTime<Utc>,
    events: &mut Vec<Event>,
) -> Result<Vec<TaskId>, StoreError> {
    let mut unblocked = Vec::new();
    let mut queue = VecDeque::from([root]);
    while let Some(cause) = queue.pop_front() {
        let rows = sqlx::query(
            "SELECT t.* FROM task_edges e JOIN tasks t ON t.id = e.task_id \
              WHERE e.depends_on = $1 AND t.state = 'blocked' ORDER BY t.id FOR UPDATE OF t",
        )
        .bind(cause.as_uuid())
        .fetch_all(&mut **tx)
        .await
        .map_err(db)?;
        for row in rows {
            let mut task = rows::task(&row)?;
            let deps: Vec<(TaskState,)> = sqlx::query("SELECT state FROM tasks WHERE id = ANY($1)")
                .bind(uuids(task.dependencies.iter().copied()))
                .fetch_all(&mut **tx)
                .await
                .map_err(db)?
                .iter()
                .map(|r| Ok((parse("task state", get::<&str>(r, "state")?)?,)))
                .collect::<Result<_, StoreError>>()?;
            if deps.iter().any(|(s,)| matches!(s, TaskState::Failed | TaskState::Cancelled | TaskState::Blocked)) {
                continue;
            }
            let completed = deps.iter().filter(|(s,)| *s == TaskState::Completed).count();
            let unmet = task.dependencies.iter().collect::<HashSet<_>>().len().saturating_sub(completed);
            step(&mut task, TaskEvent::DependencyRestored, now)?;
            sqlx::query("UPDATE tasks SET state = $2, unmet = $3, updated_at = $4 WHERE id = $1")
                .bind(task.id.as_uuid())
                .bind(task.state.as_str())
                .bind(i32::try_from(unmet).unwrap_or(i32::MAX))
                .bind(now)
                .execute(&mut **tx)
                .await
                .map_err(db)?;
            events.push(Event::TaskUnblocked { task_id: task.id });
            unblocked.push(task.id);
            queue.push_back(task.id);
        }
    }
    Ok(unblocked)
}

/// A lost attempt: back to the queue with backoff while attempts remain, else dead-lettered.
async fn lose_attempt(
    tx: &mut Tx,
    mut task: Task,
    loss: Loss,
    now: DateTime<Utc>,
    events: &mut Vec<Event>,
) -> Result<FailOutcome, StoreError> {
    let id = task.id;
    let lease = task.lease.take();
    let (error, retryable) = match &loss {
        Loss::Failed(f) => {
            task.usage += f.usage;
            (f.error.clone(), f.retryable)
        }
        Loss::LeaseLost => {
            (format!("lease lost (holder {})", lease.map(|l| l.holder.to_string()).unwrap_or_default()), true)
        }
    };
    task.last_error = Some(error.clone());
    if retryable && task.attempts < task.def.max_attempts {
        step(&mut task, TaskEvent::Retry, now)?;
        let delay = task.def.backoff.delay_for(id, task.attempts);
        task.run_at = micros(add_duration(now, delay));
        save(tx, &task).await?;
        let (run_at, attempt) = (task.run_at, task.attempts);
        events.push(match (loss, lease) {
            (Loss::LeaseLost, Some(l)) => Event::TaskLeaseExpired { task_id: id, holder: l.holder, token: l.token },
            _ => Event::TaskRetryScheduled { task_id: id, attempt, run_at, error },
        });
        Ok(FailOutcome::Retrying { run_at })
    } else {
        step(&mut task, TaskEvent::Fail, now)?;
        save(tx, &task).await?;
        events.push(Event::TaskFailed { task_id: id, attempts: task.attempts, error });
        let blocked = block_dependents(tx, id, now, events).await?;
        Ok(FailOutcome::DeadLettered { blocked })
    }
}

impl PostgresStore {
    /// Commits `tx` after appending `events`.
    async fn finish(&self, mut tx: Tx, now: DateTime<Utc>, events: &[Event]) -> Result<(), StoreError> {
        emit(&mut tx, now, events).await?;
        tx.commit().await.map_err(db)
    }

    /// Takes back leased tasks: those whose lease expired, or with `holder` those it holds.
    /// Rows being changed by someone else right now are skipped (they are not stranded).
    async fn reclaim(&self, holder: Option<AgentId>) -> Result<Vec<TaskId>, StoreError> {
        let now = self.now();
        let mut tx = self.begin().await?;
        // Two statements rather than one with an OR, so each keeps to the leased-tasks index.
        let query = match holder {
            None => sqlx::query(
                "SELECT * FROM tasks WHERE state IN ('claimed', 'running') AND lease_expires_at <= $1 \
                  ORDER BY lease_expires_at, id FOR UPDATE SKIP LOCKED",
            )
            .bind(now),
            Some(h) => sqlx::query(
                "SELECT * FROM tasks WHERE state IN ('claimed', 'running') AND lease_holder = $1 \
                  ORDER BY lease_expires_at, id FOR UPDATE SKIP LOCKED",
            )
            .bind(h.as_uuid()),
        };
        let rows = query.fetch_all(&mut *tx).await.map_err(db)?;
        let mut events = Vec::new();
        let mut ids = Vec::with_capacity(rows.len());
        for row in rows {
            let task = rows::task(&row)?;
            ids.push(task.id);
            lose_attempt(&mut tx, task, Loss::LeaseLost, now, &mut events).await?;
        }
        self.finish(tx, now, &events).await?;
        Ok(ids)
    }

    /// Completes distinct tasks in one call of `omoi_complete`; one result per item.
    async fn complete_distinct(
        &self,
        items: &[(TaskId, FencingToken, Completion)],
    ) -> Result<Vec<Result<Vec<TaskId>, StoreError>>, StoreError> {
        let n = items.len();
        let mut ids = Vec::with_capacity(n);
        let mut tokens = Vec::with_capacity(n);
        let mut results = Vec::with_capacity(n);
        let (mut input, mut output, mut cost) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
        for (id, token, c) in items {
            ids.push(id.as_uuid());
            tokens.push(i64::try_from(token.0).unwrap_or(i64::MAX));
            results.push(&c.result);
            input.push(i64::try_from(c.usage.input_tokens).unwrap_or(i64::MAX));
            output.push(i64::try_from(c.usage.output_tokens).unwrap_or(i64::MAX));
            cost.push(c.usage.cost_usd);
        }
        let rows = sqlx::query("SELECT * FROM omoi_complete($1, $2, $3, $4, $5, $6, $7)")
            .bind(&ids)
            .bind(&tokens)
            .bind(&results)
            .bind(&input)
            .bind(&output)
            .bind(&cost)
            .bind(self.now())
            .fetch_all(self.pool())
            .await
            .map_err(db)?;
        let mut out: Vec<Result<Vec<TaskId>, StoreError>> = Vec::with_capacity(n);
        for (row, (id, token, _)) in rows.iter().zip(items) {
            out.push(if get::<bool>(row, "completed")? {
                Ok(task_ids(get::<Vec<Uuid>>(row, "released")?))
            } else if get::<bool>(row, "found")? {
                Err(StoreError::StaleLease { task: *id, presented: *token })
            } else {
                Err(StoreError::not_found("task", id))
            });
        }
        Ok(out)
    }
}

#[async_trait]
impl TaskStore for PostgresStore {
    #[instrument(level = "debug", skip_all, fields(tasks = batch.len()))]
    async fn insert_tasks(&self, batch: Vec<NewTask>) -> Result<Vec<TaskId>, StoreError> {
        let now = self.now();
        let mut tx = self.begin().await?;
        let mut events = Vec::with_capacity(batch.len());
        let ids = insert_batch(&mut tx, batch, now, &mut events).await?;
        self.finish(tx, now, &events).await?;
        Ok(ids)
    }

    #[instrument(level = "debug", skip_all, fields(holder = %request.holder, limit = request.limit))]
    async fn claim(&self, request: &ClaimRequest) -> Result<Vec<ClaimedTask>, StoreError> {
        if request.limit == 0 {
            return Ok(Vec::new());
        }
        let now = self.now();
        let expires = micros(add_duration(now, request.lease_ttl));
        let rows = sqlx::query("SELECT * FROM omoi_claim($1, $2, $3, $4, $5)")
            .bind(request.holder.as_uuid())
            .bind(&request.capabilities)
            .bind(i32::try_from(request.limit).unwrap_or(i32::MAX))
            .bind(now)
            .bind(expires)
            .fetch_all(self.pool())
            .await
            .map_err(db)?;
        rows.iter()
            .map(|r| {
                let task = rows::task(r)?;
                let lease = task.lease.ok_or_else(|| super::error::corrupt("claimed task", "no lease"))?;
                Ok(ClaimedTask { task, lease })
            })
            .collect()
    }

    #[instrument(level = "debug", skip_all, fields(task = %id))]
    async fn renew_lease(&self, id: TaskId, token: FencingToken, ttl: Duration) -> Result<Lease, StoreError> {
        let expires_at = micros(add_duration(self.now(), ttl));
        let holder: Option<Uuid> = sqlx::query_scalar(
            "UPDATE tasks SET lease_expires_at = $3 \
              WHERE id = $1 AND lease_token = $2 AND state IN ('claimed', 'running') RETURNING lease_holder",
        )
        .bind(id.as_uuid())
        .bind(i64::try_from(token.0).unwrap_or(i64::MAX))
        .bind(expires_at)
        .fetch_optional(self.pool())
        .await
        .map_err(db)?
        .flatten();
        match holder {
            Some(h) => Ok(Lease { holder: AgentId::from_uuid(h), token, expires_at }),
            None => {
                self.get_task(id).await?;
                Err(StoreError::StaleLease { task: id, presented: token })
            }
        }
    }

    #[instrument(level = "debug", skip_all, fields(task = %id))]
    async fn start(&self, id: TaskId, token: FencingToken) -> Result<(), StoreError> {
        let now = self.now();
        let mut tx = self.begin().await?;
        let mut task = lock_task(&mut tx, id).await?;
        let lease = fenced(&task, token)?;
        step(&mut task, TaskEvent::Start, now)?;
        save(&mut tx, &task).await?;
        self.finish(tx, now, &[Event::TaskStarted { task_id: id, holder: lease.holder }]).await
    }

    #[instrument(level = "debug", skip_all, fields(task = %id))]
    async fn complete(
        &self,
        id: TaskId,
        token: FencingToken,
        completion: Completion,
    ) -> Result<Vec<TaskId>, StoreError> {
        check_payload("result", &completion.result).map_err(StoreError::InvalidInput)?;
        self.complete_distinct(&[(id, token, completion)]).await?.pop().unwrap_or_else(|| Ok(Vec::new()))
    }

    #[instrument(level = "debug", skip_all, fields(tasks = items.len()))]
    async fn complete_many(
        &self,
        items: Vec<(TaskId, FencingToken, Completion)>,
    ) -> Result<Vec<Result<Vec<TaskId>, StoreError>>, StoreError> {
        let mut out: Vec<Option<Result<Vec<TaskId>, StoreError>>> = (0..items.len()).map(|_| None).collect();
        let mut seen = HashSet::with_capacity(items.len());
        let (mut batch, mut at, mut repeated) = (Vec::with_capacity(items.len()), Vec::new(), Vec::new());
        for (i, item) in items.into_iter().enumerate() {
            if let Err(m) = check_payload("result", &item.2.result) {
                out[i] = Some(Err(StoreError::InvalidInput(m)));
            } else if seen.insert(item.0) {
                batch.push(item);
                at.push(i);
            } else {
                repeated.push((i, item));
            }
        }
        if !batch.is_empty() {
            for (i, r) in at.into_iter().zip(self.complete_distinct(&batch).await?) {
                out[i] = Some(r);
            }
        }
        // The same task twice: later occurrences run after the first, as if called in order.
        for (i, (id, token, c)) in repeated {
            out[i] = Some(self.complete_distinct(&[(id, token, c)]).await?.pop().unwrap_or_else(|| Ok(Vec::new())));
        }
        Ok(out.into_iter().map(|r| r.unwrap_or_else(|| Ok(Vec::new()))).collect())
    }

    #[instrument(level = "debug", skip_all, fields(task = %id))]
    async fn fail(&self, id: TaskId, token: FencingToken, failure: Failure) -> Result<FailOutcome, StoreError> {
        let now = self.now();
        let mut tx = self.begin().await?;
        let task = lock_task(&mut tx, id).await?;
        fenced(&task, token)?;
        let mut events = Vec::new();
        let outcome = lose_attempt(&mut tx, task, Loss::Failed(failure), now, &mut events).await?;
        self.finish(tx, now, &events).await?;
        Ok(outcome)
    }

    #[instrument(level = "debug", skip_all, fields(task = %id))]
    async fn release(&self, id: TaskId, token: FencingToken) -> Result<(), StoreError> {
        let now = self.now();
        let mut tx = self.begin().await?;
        let mut task = lock_task(&mut tx, id).await?;
        let lease = fenced(&task, token)?;
        step(&mut task, TaskEvent::Release, now)?;
        task.attempts = task.attempts.saturating_sub(1);
        task.run_at = now;
        save(&mut tx, &task).await?;
        self.finish(tx, now, &[Event::TaskReleased { task_id: id, holder: lease.holder }]).await
    }

    #[instrument(level = "debug", skip_all, fields(task = %id))]
    async fn cancel(&self, id: TaskId) -> Result<Vec<TaskId>, StoreError> {
        let now = self.now();
        let mut tx = self.begin().await?;
        let mut task = lock_task(&mut tx, id).await?;
        step(&mut task, TaskEvent::Cancel, now)?;
        save(&mut tx, &task).await?;
        let mut events = vec![Event::TaskCancelled { task_id: id }];
        let blocked = block_dependents(&mut tx, id, now, &mut events).await?;
        self.finish(tx, now, &events).await?;
        Ok(blocked)
    }

    #[instrument(level = "debug", skip_all, fields(task = %id))]
    async fn redrive(&self, id: TaskId) -> Result<Vec<TaskId>, StoreError> {
        let now = self.now();
        let mut tx = self.begin().await?;
        let mut task = lock_task(&mut tx, id).await?;
        task.state.apply(TaskEvent::Redrive).map_err(|e| StoreError::transition("task", id, e))?;
        if let Some(k) = &task.def.dedup_key {
            let holder: Option<Uuid> = sqlx::query_scalar(
                "SELECT id FROM tasks WHERE dedup_key = $1 AND state <> ALL($2) AND id <> $3 LIMIT 1",
            )
            .bind(k)
            .bind(&TERMINAL[..])
            .bind(id.as_uuid())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
            if let Some(h) = holder {
                return Err(StoreError::DuplicateKey { key: k.clone(), existing: Some(TaskId::from_uuid(h)) });
            }
        }
        step(&mut task, TaskEvent::Redrive, now)?;
        task.attempts = 0;
        task.run_at = now;
        save(&mut tx, &task).await?;
        let mut events = vec![Event::TaskRedriven { task_id: id }];
        let unblocked = unblock_dependents(&mut tx, id, now, &mut events).await?;
        self.finish(tx, now, &events).await?;
        Ok(unblocked)
    }

    #[instrument(level = "debug", skip_all)]
    async fn reclaim_expired(&self) -> Result<Vec<TaskId>, StoreError> {
        self.reclaim(None).await
    }

    #[instrument(level = "debug", skip_all, fields(holder = %holder))]
    async fn reclaim_holder(&self, holder: AgentId) -> Result<Vec<TaskId>, StoreError> {
        self.reclaim(Some(holder)).await
    }

    #[instrument(level = "debug", skip_all, fields(task = %id))]
    async fn get_task(&self, id: TaskId) -> Result<Task, StoreError> {
        let row = sqlx::query("SELECT * FROM tasks WHERE id = $1")
            .bind(id.as_uuid())
            .fetch_optional(self.pool())
            .await
            .map_err(db)?
            .ok_or_else(|| StoreError::not_found("task", id))?;
        rows::task(&row)
    }

    #[instrument(level = "debug", skip_all)]
    async fn list_tasks(&self, filter: &TaskFilter) -> Result<Vec<Task>, StoreError> {
        let states: Vec<&str> = filter.states.iter().map(|s| s.as_str()).collect();
        sqlx::query(
            "SELECT * FROM tasks \
              WHERE (cardinality($1::text[]) = 0 OR state = ANY($1)) \
                AND ($2::uuid IS NULL OR spec_id = $2) AND ($3::uuid IS NULL OR ticket_id = $3) \
                AND ($4::uuid IS NULL OR parent_id = $4) AND ($5::uuid IS NULL OR id > $5) \
              ORDER BY id LIMIT $6",
        )
        .bind(&states)
        .bind(filter.spec_id.map(|s| s.as_uuid()))
        .bind(filter.ticket_id.map(|s| s.as_uuid()))
        .bind(filter.parent_id.map(|s| s.as_uuid()))
        .bind(filter.after.map(|s| s.as_uuid()))
        .bind(filter.limit.map(|l| i64::try_from(l).unwrap_or(i64::MAX)))
        .fetch_all(self.pool())
        .await
        .map_err(db)?
        .iter()
        .map(rows::task)
        .collect()
    }

    #[instrument(level = "debug", skip_all, fields(task = %id))]
    async fn dependents(&self, id: TaskId) -> Result<Vec<TaskId>, StoreError> {
        let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM tasks WHERE id = $1)")
            .bind(id.as_uuid())
            .fetch_one(self.pool())
            .await
            .map_err(db)?;
        if !exists {
            return Err(StoreError::not_found("task", id));
        }
        let ids: Vec<Uuid> =
            sqlx::query_scalar("SELECT task_id FROM task_edges WHERE depends_on = $1 ORDER BY task_id")
                .bind(id.as_uuid())
                .fetch_all(self.pool())
                .await
                .map_err(db)?;
        Ok(task_ids(ids))
    }

    #[instrument(level = "debug", skip_all)]
    async fn count_tasks(&self, spec_id: Option<SpecId>) -> Result<TaskCounts, StoreError> {
        let rows = sqlx::query(
            "SELECT state, count(*) AS n FROM tasks WHERE ($1::uuid IS NULL OR spec_id = $1) GROUP BY state",
        )
        .bind(spec_id.map(|s| s.as_uuid()))
        .fetch_all(self.pool())
        .await
        .map_err(db)?;
        let mut counts = TaskCounts::new();
        for r in rows {
            counts.insert(parse("task state", get::<&str>(&r, "state")?)?, count(get(&r, "n")?));
        }
        Ok(counts)
    }

    #[instrument(level = "debug", skip_all)]
    async fn ready_count(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM tasks WHERE state = 'ready' AND run_at <= $1")
            .bind(self.now())
            .fetch_one(self.pool())
            .await
            .map_err(db)?;
        Ok(count(n))
    }
}
