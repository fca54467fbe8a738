//! `TaskStore` for the SQLite adapter: the `tasks` table with its queue index, the `task_deps`
//! edges, and every state change in one write transaction with its events.
//!
//! The hot path (claim, complete) uses set-based statements: a claim is one candidate query in
//! queue order, one `UPDATE … RETURNING` and one event insert; `complete_many` reads the batch's
//! leases in one query and writes each completion, releasing dependents in the same transaction.
//! The rarer paths (fail, release, cancel, redrive, reclaim) load a row, change it through the
//! shared rules of [`omoi_core::queue`] (`step`, `fenced`, `lose_attempt`, the dependents'
//! cascade) like every adapter does, and write it back.

/// The columns a [`Row`] is decoded from.
macro_rules! task_cols {
    () => {
        "id, state, run_at, def, deps, spec_id, ticket_id, parent_id, local_id, unmet, attempts, claims, \
         lease_holder, lease_token, lease_expires, result, last_error, usage_in, usage_out, usage_cost, \
         created_at, updated_at"
    };
}

mod cascade;
mod claim;
mod complete;
mod insert;
mod rows;

use std::time::Duration;

use async_trait::async_trait;
use omoi_core::ports::clock::add_duration;
use omoi_core::queue::{self, AttemptLoss};
use omoi_core::{
    AgentId, ClaimRequest, ClaimedTask, Completion, Event, FailOutcome, Failure, FencingToken, Lease, NewTask, SpecId,
    StoreError, Task, TaskCounts, TaskEvent, TaskFilter, TaskId, TaskStore,
};

use self::cascade::{block_dependents, lose_attempt, unblock_dependents};
pub(super) use self::insert::insert_batch;
use self::rows::{decode, load, parse_ids, save};
pub(super) use self::rows::{dependents_of, get_in};
use super::SqliteStore;
use super::codec::{self, get, get_parsed, text_array, uint, us};
use super::error::db;

#[async_trait]
impl TaskStore for SqliteStore {
    #[tracing::instrument(level = "debug", name = "sqlite.insert_tasks", skip_all, fields(n = batch.len()))]
    async fn insert_tasks(&self, batch: Vec<NewTask>) -> Result<Vec<TaskId>, StoreError> {
        let mut w = self.begin().await?;
        let ids = insert_batch(&mut w, batch).await?;
        self.commit(w).await?;
        Ok(ids)
    }

    #[tracing::instrument(level = "debug", name = "sqlite.claim", skip_all, fields(holder = %request.holder, limit = request.limit))]
    async fn claim(&self, request: &ClaimRequest) -> Result<Vec<ClaimedTask>, StoreError> {
        if request.limit == 0 {
            return Ok(Vec::new());
        }
        let mut w = self.begin().await?;
        let out = claim::claim(&mut w, request).await?;
        self.commit(w).await?;
        Ok(out)
    }

    #[tracing::instrument(level = "debug", name = "sqlite.renew_lease", skip(self))]
    async fn renew_lease(&self, id: TaskId, token: FencingToken, ttl: Duration) -> Result<Lease, StoreError> {
        let mut w = self.begin().await?;
        let row = load(w.conn(), id).await?;
        let old = queue::fenced(&row.task, token)?;
        let lease = Lease { expires_at: add_duration(w.now, ttl), ..old };
        sqlx::query("UPDATE tasks SET lease_expires = ?2 WHERE id = ?1")
            .bind(id.to_string())
            .bind(us(lease.expires_at))
            .execute(w.conn())
            .await
            .map_err(db)?;
        self.commit(w).await?;
        Ok(Lease { expires_at: codec::truncate(lease.expires_at), ..lease })
    }

    #[tracing::instrument(level = "debug", name = "sqlite.start", skip(self))]
    async fn start(&self, id: TaskId, token: FencingToken) -> Result<(), StoreError> {
        let mut w = self.begin().await?;
        let mut row = load(w.conn(), id).await?;
        let lease = queue::fenced(&row.task, token)?;
        queue::step(&mut row.task, TaskEvent::Start, w.now)?;
        save(w.conn(), &row).await?;
        w.emit(Event::TaskStarted { task_id: id, holder: lease.holder });
        self.commit(w).await?;
        Ok(())
    }

    #[tracing::instrument(level = "debug", name = "sqlite.complete", skip(self, completion))]
    async fn complete(
        &self,
        id: TaskId,
        token: FencingToken,
        completion: Completion,
    ) -> Result<Vec<TaskId>, StoreError> {
        let mut w = self.begin().await?;
        let out = complete::complete_many(&mut w, vec![(id, token, completion)]).await?.pop().unwrap_or(Ok(Vec::new()));
        if out.is_ok() {
            super::discoveries::resolve_completed(&mut w, &[id]).await?;
            self.commit(w).await?;
        }
        out
    }

    #[tracing::instrument(level = "debug", name = "sqlite.complete_many", skip_all, fields(n = items.len()))]
    async fn complete_many(
        &self,
        items: Vec<(TaskId, FencingToken, Completion)>,
    ) -> Result<Vec<Result<Vec<TaskId>, StoreError>>, StoreError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let mut w = self.begin().await?;
        let ids: Vec<TaskId> = items.iter().map(|i| i.0).collect();
        let out = complete::complete_many(&mut w, items).await?;
        let done: Vec<TaskId> = ids.into_iter().zip(&out).filter(|(_, r)| r.is_ok()).map(|(id, _)| id).collect();
        super::discoveries::resolve_completed(&mut w, &done).await?;
        self.commit(w).await?;
        Ok(out)
    }

    #[tracing::instrument(level = "debug", name = "sqlite.fail", skip(self, failure))]
    async fn fail(&self, id: TaskId, token: FencingToken, failure: Failure) -> Result<FailOutcome, StoreError> {
        queue::check_failure(&failure)?;
        let mut w = self.begin().await?;
        let row = load(w.conn(), id).await?;
        queue::fenced(&row.task, token)?;
        let out = lose_attempt(&mut w, row, AttemptLoss::Failed(failure)).await?;
        self.commit(w).await?;
        Ok(out)
    }

    #[tracing::instrument(level = "debug", name = "sqlite.release", skip(self))]
    async fn release(&self, id: TaskId, token: FencingToken) -> Result<(), StoreError> {
        let mut w = self.begin().await?;
        let mut row = load(w.conn(), id).await?;
        let lease = queue::fenced(&row.task, token)?;
        let event = queue::release(&mut row.task, lease, w.now)?;
        save(w.conn(), &row).await?;
        w.emit(event);
        self.commit(w).await?;
        Ok(())
    }

    #[tracing::instrument(level = "debug", name = "sqlite.cancel", skip(self))]
    async fn cancel(&self, id: TaskId) -> Result<Vec<TaskId>, StoreError> {
        let mut w = self.begin().await?;
        let mut row = load(w.conn(), id).await?;
        let event = queue::cancel(&mut row.task, w.now)?;
        save(w.conn(), &row).await?;
        w.emit(event);
        let blocked = block_dependents(&mut w, id).await?;
        self.commit(w).await?;
        Ok(blocked)
    }

    #[tracing::instrument(level = "debug", name = "sqlite.redrive", skip(self))]
    async fn redrive(&self, id: TaskId) -> Result<Vec<TaskId>, StoreError> {
        let mut w = self.begin().await?;
        let mut row = load(w.conn(), id).await?;
        queue::check_redrive(&row.task)?;
        if let Some(key) = row.task.def.dedup_key.clone() {
            let holder: Option<String> = sqlx::query_scalar(
                "SELECT id FROM tasks WHERE dedup_key = ?1 AND id != ?2 \
                 AND state NOT IN ('completed', 'failed', 'cancelled')",
            )
            .bind(&key)
            .bind(id.to_string())
            .fetch_optional(w.conn())
            .await
            .map_err(db)?;
            if let Some(h) = holder {
                return Err(StoreError::DuplicateKey { key, existing: Some(codec::parse("task id", &h)?) });
            }
        }
        let event = queue::redrive(&mut row.task, w.now)?;
        save(w.conn(), &row).await?;
        w.emit(event);
        let unblocked = unblock_dependents(&mut w, id).await?;
        self.commit(w).await?;
        Ok(unblocked)
    }

    #[tracing::instrument(level = "debug", name = "sqlite.reclaim_expired", skip(self))]
    async fn reclaim_expired(&self) -> Result<Vec<TaskId>, StoreError> {
        let mut w = self.begin().await?;
        let expired: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM tasks WHERE lease_expires IS NOT NULL AND lease_expires <= ?1 ORDER BY lease_expires, id",
        )
        .bind(us(w.now))
        .fetch_all(w.conn())
        .await
        .map_err(db)?;
        if expired.is_empty() {
            return Ok(Vec::new());
        }
        let out = claim::reclaim(&mut w, parse_ids(expired)?).await?;
        self.commit(w).await?;
        Ok(out)
    }

    #[tracing::instrument(level = "debug", name = "sqlite.reclaim_holder", skip(self))]
    async fn reclaim_holder(&self, holder: AgentId) -> Result<Vec<TaskId>, StoreError> {
        let mut w = self.begin().await?;
        let held: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM tasks WHERE lease_holder = ?1 AND lease_expires IS NOT NULL ORDER BY lease_expires, id",
        )
        .bind(holder.to_string())
        .fetch_all(w.conn())
        .await
        .map_err(db)?;
        if held.is_empty() {
            return Ok(Vec::new());
        }
        let out = claim::reclaim(&mut w, parse_ids(held)?).await?;
        self.commit(w).await?;
        Ok(out)
    }

    #[tracing::instrument(level = "debug", name = "sqlite.get_task", skip(self))]
    async fn get_task(&self, id: TaskId) -> Result<Task, StoreError> {
        let mut conn = self.readers().acquire().await.map_err(db)?;
        Ok(load(&mut conn, id).await?.task)
    }

    #[tracing::instrument(level = "debug", name = "sqlite.list_tasks", skip(self))]
    async fn list_tasks(&self, filter: &TaskFilter) -> Result<Vec<Task>, StoreError> {
        let states = (!filter.states.is_empty()).then(|| text_array(filter.states.iter()));
        let limit = filter.limit.map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX));
        let rows = sqlx::query(concat!(
            "SELECT ",
            task_cols!(),
            " FROM tasks WHERE (?1 IS NULL OR state IN (SELECT value FROM json_each(?1))) \
             AND (?2 IS NULL OR spec_id = ?2) AND (?3 IS NULL OR ticket_id = ?3) \
             AND (?4 IS NULL OR parent_id = ?4) AND (?5 IS NULL OR id > ?5) ORDER BY id LIMIT ?6"
        ))
        .bind(states)
        .bind(filter.spec_id.map(|i| i.to_string()))
        .bind(filter.ticket_id.map(|i| i.to_string()))
        .bind(filter.parent_id.map(|i| i.to_string()))
        .bind(filter.after.map(|i| i.to_string()))
        .bind(limit)
        .fetch_all(self.readers())
        .await
        .map_err(db)?;
        rows.iter().map(|r| decode(r).map(|row| row.task)).collect()
    }

    #[tracing::instrument(level = "debug", name = "sqlite.dependents", skip(self))]
    async fn dependents(&self, id: TaskId) -> Result<Vec<TaskId>, StoreError> {
        let mut conn = self.readers().acquire().await.map_err(db)?;
        let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM tasks WHERE id = ?1")
            .bind(id.to_string())
            .fetch_optional(&mut *conn)
            .await
            .map_err(db)?;
        if exists.is_none() {
            return Err(StoreError::not_found("task", id));
        }
        dependents_of(&mut *conn, id).await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.count_tasks", skip(self))]
    async fn count_tasks(&self, spec_id: Option<SpecId>) -> Result<TaskCounts, StoreError> {
        let rows =
            sqlx::query("SELECT state, COUNT(*) AS n FROM tasks WHERE (?1 IS NULL OR spec_id = ?1) GROUP BY state")
                .bind(spec_id.map(|s| s.to_string()))
                .fetch_all(self.readers())
                .await
                .map_err(db)?;
        rows.iter().map(|r| Ok((get_parsed(r, "state")?, uint("count", get(r, "n")?)?))).collect()
    }

    #[tracing::instrument(level = "debug", name = "sqlite.ready_count", skip(self))]
    async fn ready_count(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tasks WHERE state = 'ready' AND run_at <= ?1")
            .bind(us(self.now()))
            .fetch_one(self.readers())
            .await
            .map_err(db)?;
        uint("count", n)
    }
}
