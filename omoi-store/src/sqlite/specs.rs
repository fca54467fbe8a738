//! `SpecStore` for the SQLite adapter: specs, checkpoints, tickets and idempotent sync.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use omoi_core::queue::{SyncedTask, draft_sync};
use omoi_core::{
    Event, ExecutionMode, NewSpec, PhaseCheckpoint, Spec, SpecEvent, SpecId, SpecPhase, SpecState, SpecStore,
    StoreError, SyncOutcome, SyncPlan, TaskId, TaskState, Ticket, TicketId, TicketStatus, Usage,
};
use sqlx::sqlite::SqliteRow;
use sqlx::{Sqlite, SqliteConnection};

use super::SqliteStore;
use super::codec::{get, get_json, get_parsed, get_parsed_opt, get_time, int, json, text_array, uint, us};
use super::error::{db, insert};
use super::late_edges::add_dependencies;
use super::tasks::insert_batch;
use super::write::Write;

macro_rules! spec_cols {
    () => {
        "id, title, idea, metadata, state, usage_in, usage_out, usage_cost, created_at, updated_at"
    };
}

macro_rules! ticket_cols {
    () => {
        "id, spec_id, local_id, title, description, priority, requirements, created_at"
    };
}

fn usage(r: &SqliteRow) -> Result<Usage, StoreError> {
    Ok(Usage {
        input_tokens: uint("usage_in", get(r, "usage_in")?)?,
        output_tokens: uint("usage_out", get(r, "usage_out")?)?,
        cost_usd: get(r, "usage_cost")?,
    })
}

fn decode_spec(r: &SqliteRow, checkpoints: BTreeMap<SpecPhase, PhaseCheckpoint>) -> Result<Spec, StoreError> {
    Ok(Spec {
        id: get_parsed(r, "id")?,
        title: get(r, "title")?,
        idea: get(r, "idea")?,
        metadata: get_json(r, "metadata")?,
        state: get_parsed(r, "state")?,
        checkpoints,
        usage: usage(r)?,
        created_at: get_time(r, "created_at")?,
        updated_at: get_time(r, "updated_at")?,
    })
}

/// Checkpoints of the specs among `ids` (all specs when `None`).
async fn checkpoints<'e, E>(
    exec: E,
    ids: Option<&[String]>,
) -> Result<HashMap<SpecId, BTreeMap<SpecPhase, PhaseCheckpoint>>, StoreError>
where
    E: sqlx::Executor<'e, Database = Sqlite>,
{
    let rows = sqlx::query(
        "SELECT spec_id, body FROM checkpoints WHERE ?1 IS NULL OR spec_id IN (SELECT value FROM json_each(?1))",
    )
    .bind(ids.map(text_array))
    .fetch_all(exec)
    .await
    .map_err(db)?;
    let mut out: HashMap<SpecId, BTreeMap<SpecPhase, PhaseCheckpoint>> = HashMap::new();
    for r in &rows {
        let cp: PhaseCheckpoint = get_json(r, "body")?;
        out.entry(get_parsed(r, "spec_id")?).or_default().insert(cp.phase, cp);
    }
    Ok(out)
}

async fn load_spec_row(conn: &mut SqliteConnection, id: SpecId) -> Result<SqliteRow, StoreError> {
    sqlx::query(concat!("SELECT ", spec_cols!(), " FROM specs WHERE id = ?1"))
        .bind(id.to_string())
        .fetch_optional(conn)
        .await
        .map_err(db)?
        .ok_or_else(|| StoreError::not_found("spec", id))
}

async fn exists(conn: &mut SqliteConnection, id: SpecId) -> Result<(), StoreError> {
    let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM specs WHERE id = ?1")
        .bind(id.to_string())
        .fetch_optional(conn)
        .await
        .map_err(db)?;
    found.map(|_| ()).ok_or_else(|| StoreError::not_found("spec", id))
}

/// Tickets decoded from rows, with their status derived from their tasks.
async fn with_status(conn: &mut SqliteConnection, rows: Vec<SqliteRow>) -> Result<Vec<Ticket>, StoreError> {
    let ids: Vec<String> = rows.iter().map(|r| get(r, "id")).collect::<Result<_, _>>()?;
    let task_rows = sqlx::query(
        "SELECT ticket_id, def ->> '$.mode' AS mode, state FROM tasks \
         WHERE ticket_id IN (SELECT value FROM json_each(?1)) ORDER BY id",
    )
    .bind(text_array(&ids))
    .fetch_all(conn)
    .await
    .map_err(db)?;
    let mut tasks: HashMap<String, Vec<(ExecutionMode, TaskState)>> = HashMap::new();
    for r in &task_rows {
        tasks.entry(get(r, "ticket_id")?).or_default().push((get_parsed(r, "mode")?, get_parsed(r, "state")?));
    }
    rows.iter()
        .map(|r| {
            let id: String = get(r, "id")?;
            let (status, blocked) = TicketStatus::derive(tasks.get(&id).map_or(&[][..], Vec::as_slice));
            Ok(Ticket {
                id: get_parsed(r, "id")?,
                spec_id: get_parsed_opt(r, "spec_id")?,
                local_id: get(r, "local_id")?,
                title: get(r, "title")?,
                description: get(r, "description")?,
                priority: get_parsed(r, "priority")?,
                requirements: get_json(r, "requirements")?,
                status,
                blocked,
                created_at: get_time(r, "created_at")?,
            })
        })
        .collect()
}

async fn sync(w: &mut Write, id: SpecId, plan: &SyncPlan) -> Result<SyncOutcome, StoreError> {
    exists(w.conn(), id).await?;
    let sid = id.to_string();
    let known_tickets: HashMap<String, TicketId> = sqlx::query("SELECT local_id, id FROM tickets WHERE spec_id = ?1")
        .bind(&sid)
        .fetch_all(w.conn())
        .await
        .map_err(db)?
        .iter()
        .map(|r| Ok((get(r, "local_id")?, get_parsed(r, "id")?)))
        .collect::<Result<_, StoreError>>()?;
    let known_tasks: HashMap<String, SyncedTask> = sqlx::query(
        "SELECT s.local_id, s.task_id, t.deps, t.state FROM spec_tasks s JOIN tasks t ON t.id = s.task_id \
         WHERE s.spec_id = ?1",
    )
    .bind(&sid)
    .fetch_all(w.conn())
    .await
    .map_err(db)?
    .iter()
    .map(|r| {
        let task = SyncedTask {
            id: get_parsed(r, "task_id")?,
            dependencies: get_json(r, "deps")?,
            state: get_parsed(r, "state")?,
        };
        Ok((get(r, "local_id")?, task))
    })
    .collect::<Result<_, StoreError>>()?;
    let draft = draft_sync(id, plan, |l| known_tickets.get(l).copied(), |l| known_tasks.get(l).cloned())?;
    let (out, new_tickets, batch) = (draft.outcome, draft.new_tickets, draft.new_tasks);
    let now = us(w.now);
    for (tid, t) in new_tickets {
        sqlx::query(
            "INSERT INTO tickets (id, spec_id, local_id, title, description, priority, requirements, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )
        .bind(tid.to_string())
        .bind(&sid)
        .bind(&t.local_id)
        .bind(&t.title)
        .bind(&t.description)
        .bind(t.priority.as_str())
        .bind(json(&t.requirements)?)
        .bind(now)
        .execute(w.conn())
        .await
        .map_err(insert("ticket", tid))?;
        w.emit(Event::TicketCreated { ticket_id: tid, spec_id: Some(id) });
    }
    let locals: Vec<(String, TaskId)> =
        batch.iter().map(|t| (t.links.local_id.clone().unwrap_or_default(), t.id)).collect();
    // Validates the whole batch first: a rejected plan rolls the transaction back, tickets too.
    insert_batch(w, batch).await?;
    for (local, task) in locals {
        sqlx::query("INSERT INTO spec_tasks (spec_id, local_id, task_id) VALUES (?1, ?2, ?3)")
            .bind(&sid)
            .bind(&local)
            .bind(task.to_string())
            .execute(w.conn())
            .await
            .map_err(insert("task", &local))?;
    }
    for change in &draft.added_dependencies {
        add_dependencies(w, change).await?;
    }
    w.emit(Event::SpecSynced { spec_id: id, tickets_created: out.tickets_created, tasks_created: out.tasks_created });
    Ok(out)
}

#[async_trait]
impl SpecStore for SqliteStore {
    #[tracing::instrument(level = "debug", name = "sqlite.create_spec", skip_all, fields(spec = %new.id))]
    async fn create_spec(&self, new: NewSpec) -> Result<Spec, StoreError> {
        let mut w = self.begin().await?;
        let now = w.now;
        let spec = Spec::drafted(new, now);
        sqlx::query(
            "INSERT INTO specs (id, title, idea, metadata, state, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
        )
        .bind(spec.id.to_string())
        .bind(&spec.title)
        .bind(&spec.idea)
        .bind(json(&spec.metadata)?)
        .bind(spec.state.to_string())
        .bind(us(now))
        .execute(w.conn())
        .await
        .map_err(insert("spec", spec.id))?;
        w.emit(Event::SpecCreated { spec_id: spec.id });
        self.commit(w).await?;
        Ok(spec)
    }

    #[tracing::instrument(level = "debug", name = "sqlite.get_spec", skip(self))]
    async fn get_spec(&self, id: SpecId) -> Result<Spec, StoreError> {
        let mut conn = self.readers().acquire().await.map_err(db)?;
        let row = load_spec_row(&mut conn, id).await?;
        let mut cps = checkpoints(&mut *conn, Some(&[id.to_string()])).await?;
        decode_spec(&row, cps.remove(&id).unwrap_or_default())
    }

    #[tracing::instrument(level = "debug", name = "sqlite.list_specs", skip(self))]
    async fn list_specs(&self) -> Result<Vec<Spec>, StoreError> {
        let mut conn = self.readers().acquire().await.map_err(db)?;
        let rows = sqlx::query(concat!("SELECT ", spec_cols!(), " FROM specs ORDER BY pos"))
            .fetch_all(&mut *conn)
            .await
            .map_err(db)?;
        let mut cps = checkpoints(&mut *conn, None).await?;
        rows.iter()
            .map(|r| {
                let id: SpecId = get_parsed(r, "id")?;
                decode_spec(r, cps.remove(&id).unwrap_or_default())
            })
            .collect()
    }

    #[tracing::instrument(level = "debug", name = "sqlite.transition_spec", skip(self))]
    async fn transition_spec(&self, id: SpecId, event: SpecEvent) -> Result<SpecState, StoreError> {
        let mut w = self.begin().await?;
        let row = load_spec_row(w.conn(), id).await?;
        let from: SpecState = get_parsed(&row, "state")?;
        let to = from.apply(event).map_err(|e| StoreError::transition("spec", id, e))?;
        sqlx::query("UPDATE specs SET state = ?2, updated_at = ?3 WHERE id = ?1")
            .bind(id.to_string())
            .bind(to.to_string())
            .bind(us(w.now))
            .execute(w.conn())
            .await
            .map_err(db)?;
        w.emit(Event::SpecStateChanged { spec_id: id, from, to });
        self.commit(w).await?;
        Ok(to)
    }

    #[tracing::instrument(level = "debug", name = "sqlite.save_checkpoint", skip(self, checkpoint), fields(phase = %checkpoint.phase))]
    async fn save_checkpoint(&self, id: SpecId, checkpoint: PhaseCheckpoint) -> Result<(), StoreError> {
        let mut w = self.begin().await?;
        exists(w.conn(), id).await?;
        sqlx::query(
            "INSERT INTO checkpoints (spec_id, phase, body) VALUES (?1, ?2, ?3) \
             ON CONFLICT (spec_id, phase) DO UPDATE SET body = excluded.body",
        )
        .bind(id.to_string())
        .bind(checkpoint.phase.as_str())
        .bind(json(&checkpoint)?)
        .execute(w.conn())
        .await
        .map_err(db)?;
        sqlx::query("UPDATE specs SET updated_at = ?2 WHERE id = ?1")
            .bind(id.to_string())
            .bind(us(w.now))
            .execute(w.conn())
            .await
            .map_err(db)?;
        w.emit(Event::SpecPhaseCompleted {
            spec_id: id,
            phase: checkpoint.phase,
            score: checkpoint.score,
            attempts: checkpoint.attempts,
        });
        self.commit(w).await?;
        Ok(())
    }

    #[tracing::instrument(level = "debug", name = "sqlite.add_usage", skip(self))]
    async fn add_usage(&self, id: SpecId, usage: Usage) -> Result<Usage, StoreError> {
        let mut w = self.begin().await?;
        let row = sqlx::query(
            "UPDATE specs SET usage_in = usage_in + ?2, usage_out = usage_out + ?3, usage_cost = usage_cost + ?4, \
             updated_at = ?5 WHERE id = ?1 RETURNING usage_in, usage_out, usage_cost",
        )
        .bind(id.to_string())
        .bind(int("input tokens", usage.input_tokens)?)
        .bind(int("output tokens", usage.output_tokens)?)
        .bind(usage.cost_usd)
        .bind(us(w.now))
        .fetch_optional(w.conn())
        .await
        .map_err(db)?
        .ok_or_else(|| StoreError::not_found("spec", id))?;
        let total = self::usage(&row)?;
        self.commit(w).await?;
        Ok(total)
    }

    #[tracing::instrument(level = "debug", name = "sqlite.sync", skip(self, plan), fields(tickets = plan.tickets.len(), tasks = plan.tasks.len()))]
    async fn sync(&self, id: SpecId, plan: &SyncPlan) -> Result<SyncOutcome, StoreError> {
        let mut w = self.begin().await?;
        let out = sync(&mut w, id, plan).await?;
        self.commit(w).await?;
        Ok(out)
    }

    #[tracing::instrument(level = "debug", name = "sqlite.list_tickets", skip(self))]
    async fn list_tickets(&self, spec: SpecId) -> Result<Vec<Ticket>, StoreError> {
        let mut conn = self.readers().acquire().await.map_err(db)?;
        let rows = sqlx::query(concat!("SELECT ", ticket_cols!(), " FROM tickets WHERE spec_id = ?1 ORDER BY pos"))
            .bind(spec.to_string())
            .fetch_all(&mut *conn)
            .await
            .map_err(db)?;
        with_status(&mut conn, rows).await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.get_ticket", skip(self))]
    async fn get_ticket(&self, id: TicketId) -> Result<Ticket, StoreError> {
        let mut conn = self.readers().acquire().await.map_err(db)?;
        let row = sqlx::query(concat!("SELECT ", ticket_cols!(), " FROM tickets WHERE id = ?1"))
            .bind(id.to_string())
            .fetch_optional(&mut *conn)
            .await
            .map_err(db)?
            .ok_or_else(|| StoreError::not_found("ticket", id))?;
        with_status(&mut conn, vec![row]).await?.pop().ok_or_else(|| StoreError::not_found("ticket", id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::codec::from_json;

    #[test]
    fn checkpoint_json_round_trips() {
        let cp = PhaseCheckpoint {
            phase: SpecPhase::Design,
            output: serde_json::json!({"a": [1, 2]}),
            score: 0.75,
            attempts: 2,
            usage: Usage { input_tokens: 1, output_tokens: 2, cost_usd: 0.5 },
            passed_at: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
        };
        let back: PhaseCheckpoint = from_json("checkpoint", &json(&cp).unwrap()).unwrap();
        assert_eq!(back, cp);
    }
}
