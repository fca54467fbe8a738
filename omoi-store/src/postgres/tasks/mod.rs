//! `TaskStore` for the Postgres adapter. The hot paths (claim, complete) are one round trip each
//! to the PL/pgSQL functions of the migration; the rarer state changes lock the task row, apply
//! the shared rules of [`omoi_core::queue`] in Rust (`step`, `fenced`, `lose_attempt`, the
//! dependents' cascade) and write the row back, with their events, in one transaction.
//!
//! Where a rule runs in SQL instead, the conformance suite pins it to the Rust rule's result:
//! the fence of [`queue::fence`] in `omoi_complete` and in lease renewal (`lease_token` and a
//! leased state), the claim order of [`queue::band`] / [`queue::aged_band`] in `omoi_claim`, and
//! blocking a waiting dependent ([`queue::block_dependent`]) in `cascade::block_dependents`.

mod cascade;
mod claim;
mod insert;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use omoi_core::ports::clock::add_duration;
use omoi_core::queue::{self, AttemptLoss};
use omoi_core::task::check_payload;
use omoi_core::{
    AgentId, ClaimRequest, ClaimedTask, Completion, Event, FailOutcome, Failure, FencingToken, Lease, NewTask, SpecId,
    StoreError, Task, TaskCounts, TaskEvent, TaskFilter, TaskId, TaskStore,
};
use sqlx::{Postgres, Transaction};
use tracing::instrument;
use uuid::Uuid;

use self::cascade::{block_dependents, lose_attempt, unblock_dependents};
pub(crate) use self::insert::insert_batch;
use super::error::{db, is_unique_violation};
use super::rows::{self, count, get, parse};
use super::{PostgresStore, emit};

type Tx = Transaction<'static, Postgres>;

/// States that no longer hold a dedup key.
const TERMINAL: [&str; 3] = ["completed", "failed", "cancelled"];

/// `t` at Postgres' precision.
pub(crate) fn micros(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
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

impl PostgresStore {
    /// Commits `tx` after appending `events`.
    async fn finish(&self, mut tx: Tx, now: DateTime<Utc>, events: &[Event]) -> Result<(), StoreError> {
        emit(&mut tx, now, events).await?;
        tx.commit().await.map_err(db)
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
        self.claim_tasks(request).await
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

    #[instrument(level = "debug", skip_all, fields(leases = leases.len()))]
    async fn renew_leases(
        &self,
        leases: &[(TaskId, FencingToken)],
        ttl: Duration,
    ) -> Result<Vec<Result<Lease, StoreError>>, StoreError> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let expires_at = micros(add_duration(self.now(), ttl));
        let ids = uuids(leases.iter().map(|l| l.0));
        let tokens: Vec<i64> = leases.iter().map(|l| i64::try_from(l.1.0).unwrap_or(i64::MAX)).collect();
        // One statement for every lease; a second only when some were not renewed.
        let renewed: HashMap<Uuid, Uuid> = sqlx::query_as::<_, (Uuid, Uuid)>(
            "UPDATE tasks t SET lease_expires_at = $3 FROM unnest($1::uuid[], $2::int8[]) AS i(id, token) \
              WHERE t.id = i.id AND t.lease_token = i.token AND t.state IN ('claimed', 'running') \
              RETURNING t.id, t.lease_holder",
        )
        .bind(&ids)
        .bind(&tokens)
        .bind(expires_at)
        .fetch_all(self.pool())
        .await
        .map_err(db)?
        .into_iter()
        .collect();
        let missing: Vec<Uuid> = ids.iter().filter(|i| !renewed.contains_key(i)).copied().collect();
        let known: HashSet<Uuid> = if missing.is_empty() {
            HashSet::new()
        } else {
            sqlx::query_scalar("SELECT id FROM tasks WHERE id = ANY($1)")
                .bind(&missing)
                .fetch_all(self.pool())
                .await
                .map_err(db)?
                .into_iter()
                .collect()
        };
        Ok(leases
            .iter()
            .map(|&(id, token)| match renewed.get(&id.as_uuid()) {
                Some(h) => Ok(Lease { holder: AgentId::from_uuid(*h), token, expires_at }),
                None if known.contains(&id.as_uuid()) => Err(StoreError::StaleLease { task: id, presented: token }),
                None => Err(StoreError::not_found("task", id)),
            })
            .collect())
    }

    #[instrument(level = "debug", skip_all, fields(task = %id))]
    async fn start(&self, id: TaskId, token: FencingToken) -> Result<(), StoreError> {
        let now = self.now();
        let mut tx = self.begin().await?;
        let mut task = lock_task(&mut tx, id).await?;
        let lease = queue::fenced(&task, token)?;
        queue::step(&mut task, TaskEvent::Start, now)?;
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
        queue::check_failure(&failure)?;
        let now = self.now();
        let mut tx = self.begin().await?;
        let task = lock_task(&mut tx, id).await?;
        queue::fenced(&task, token)?;
        let mut events = Vec::new();
        let outcome = lose_attempt(&mut tx, task, AttemptLoss::Failed(failure), now, &mut events).await?;
        self.finish(tx, now, &events).await?;
        Ok(outcome)
    }

    #[instrument(level = "debug", skip_all, fields(task = %id))]
    async fn release(&self, id: TaskId, token: FencingToken) -> Result<(), StoreError> {
        let now = self.now();
        let mut tx = self.begin().await?;
        let mut task = lock_task(&mut tx, id).await?;
        let lease = queue::fenced(&task, token)?;
        let event = queue::release(&mut task, lease, now)?;
        save(&mut tx, &task).await?;
        self.finish(tx, now, &[event]).await
    }

    #[instrument(level = "debug", skip_all, fields(task = %id))]
    async fn cancel(&self, id: TaskId) -> Result<Vec<TaskId>, StoreError> {
        let now = self.now();
        let mut tx = self.begin().await?;
        let mut task = lock_task(&mut tx, id).await?;
        let mut events = vec![queue::cancel(&mut task, now)?];
        save(&mut tx, &task).await?;
        let blocked = block_dependents(&mut tx, id, now, &mut events).await?;
        self.finish(tx, now, &events).await?;
        Ok(blocked)
    }

    #[instrument(level = "debug", skip_all, fields(task = %id))]
    async fn redrive(&self, id: TaskId) -> Result<Vec<TaskId>, StoreError> {
        let now = self.now();
        let mut tx = self.begin().await?;
        let mut task = lock_task(&mut tx, id).await?;
        queue::check_redrive(&task)?;
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
        let mut events = vec![queue::redrive(&mut task, now)?];
        save(&mut tx, &task).await?;
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
