//! `SpecStore` for the Postgres adapter: specs, checkpoints, tickets and idempotent sync.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use omoi_core::queue::{SyncedTask, draft_sync};
use omoi_core::{
    Event, NewSpec, PhaseCheckpoint, Spec, SpecEvent, SpecId, SpecState, SpecStore, StoreError, SyncOutcome, SyncPlan,
    TaskId, Ticket, TicketId, TicketStatus, Usage,
};
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use tracing::instrument;
use uuid::Uuid;

use super::error::{db, is_unique_violation};
use super::late_edges::add_dependencies;
use super::rows::{self, get, parse};
use super::tasks::insert_batch;
use super::{PostgresStore, emit};

fn u64_to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl PostgresStore {
    /// The spec with its checkpoints.
    async fn load_spec(&self, row: &PgRow) -> Result<Spec, StoreError> {
        let mut spec = rows::spec(row)?;
        let checkpoints: Vec<Json<PhaseCheckpoint>> =
            sqlx::query_scalar("SELECT checkpoint FROM spec_checkpoints WHERE spec_id = $1")
                .bind(spec.id.as_uuid())
                .fetch_all(self.pool())
                .await
                .map_err(db)?;
        spec.checkpoints = checkpoints.into_iter().map(|Json(c)| (c.phase, c)).collect::<BTreeMap<_, _>>();
        Ok(spec)
    }

    /// A ticket with its status derived from its tasks.
    async fn with_status(&self, row: &PgRow) -> Result<Ticket, StoreError> {
        let mut ticket = rows::ticket(row)?;
        let rows = sqlx::query("SELECT def ->> 'mode' AS mode, state FROM tasks WHERE ticket_id = $1")
            .bind(ticket.id.as_uuid())
            .fetch_all(self.pool())
            .await
            .map_err(db)?;
        let tasks = rows
            .iter()
            .map(|r| {
                Ok((parse("execution mode", get::<&str>(r, "mode")?)?, parse("task state", get::<&str>(r, "state")?)?))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        (ticket.status, ticket.blocked) = TicketStatus::derive(&tasks);
        Ok(ticket)
    }
}

#[async_trait]
impl SpecStore for PostgresStore {
    #[instrument(level = "debug", skip_all, fields(spec = %new.id))]
    async fn create_spec(&self, new: NewSpec) -> Result<Spec, StoreError> {
        let now = self.now();
        let mut tx = self.begin().await?;
        let row = sqlx::query(
            "INSERT INTO specs (id, title, idea, metadata, state, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING *",
        )
        .bind(new.id.as_uuid())
        .bind(&new.title)
        .bind(&new.idea)
        .bind(&new.metadata)
        .bind(SpecState::Draft.to_string())
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| {
            if is_unique_violation(&e, "specs_pkey") {
                StoreError::AlreadyExists { kind: "spec", id: new.id.to_string() }
            } else {
                db(e)
            }
        })?;
        let spec = rows::spec(&row)?;
        emit(&mut tx, now, &[Event::SpecCreated { spec_id: spec.id }]).await?;
        tx.commit().await.map_err(db)?;
        Ok(spec)
    }

    #[instrument(level = "debug", skip_all, fields(spec = %id))]
    async fn get_spec(&self, id: SpecId) -> Result<Spec, StoreError> {
        let row = sqlx::query("SELECT * FROM specs WHERE id = $1")
            .bind(id.as_uuid())
            .fetch_optional(self.pool())
            .await
            .map_err(db)?
            .ok_or_else(|| StoreError::not_found("spec", id))?;
        self.load_spec(&row).await
    }

    #[instrument(level = "debug", skip_all)]
    async fn list_specs(&self) -> Result<Vec<Spec>, StoreError> {
        let rows = sqlx::query("SELECT * FROM specs ORDER BY seq").fetch_all(self.pool()).await.map_err(db)?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            out.push(self.load_spec(r).await?);
        }
        Ok(out)
    }

    #[instrument(level = "debug", skip_all, fields(spec = %id, event = %event))]
    async fn transition_spec(&self, id: SpecId, event: SpecEvent) -> Result<SpecState, StoreError> {
        let now = self.now();
        let mut tx = self.begin().await?;
        let state: String = sqlx::query_scalar("SELECT state FROM specs WHERE id = $1 FOR UPDATE")
            .bind(id.as_uuid())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?
            .ok_or_else(|| StoreError::not_found("spec", id))?;
        let from: SpecState = parse("spec state", &state)?;
        let to = from.apply(event).map_err(|e| StoreError::transition("spec", id, e))?;
        sqlx::query("UPDATE specs SET state = $2, updated_at = $3 WHERE id = $1")
            .bind(id.as_uuid())
            .bind(to.to_string())
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        emit(&mut tx, now, &[Event::SpecStateChanged { spec_id: id, from, to }]).await?;
        tx.commit().await.map_err(db)?;
        Ok(to)
    }

    #[instrument(level = "debug", skip_all, fields(spec = %id, phase = %checkpoint.phase))]
    async fn save_checkpoint(&self, id: SpecId, checkpoint: PhaseCheckpoint) -> Result<(), StoreError> {
        let now = self.now();
        let mut tx = self.begin().await?;
        let found = sqlx::query("UPDATE specs SET updated_at = $2 WHERE id = $1")
            .bind(id.as_uuid())
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected();
        if found == 0 {
            return Err(StoreError::not_found("spec", id));
        }
        sqlx::query(
            "INSERT INTO spec_checkpoints (spec_id, phase, checkpoint) VALUES ($1, $2, $3) \
             ON CONFLICT (spec_id, phase) DO UPDATE SET checkpoint = EXCLUDED.checkpoint",
        )
        .bind(id.as_uuid())
        .bind(checkpoint.phase.as_str())
        .bind(Json(&checkpoint))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        let event = Event::SpecPhaseCompleted {
            spec_id: id,
            phase: checkpoint.phase,
            score: checkpoint.score,
            attempts: checkpoint.attempts,
        };
        emit(&mut tx, now, &[event]).await?;
        tx.commit().await.map_err(db)
    }

    #[instrument(level = "debug", skip_all, fields(spec = %id))]
    async fn add_usage(&self, id: SpecId, usage: Usage) -> Result<Usage, StoreError> {
        let row = sqlx::query(
            "UPDATE specs SET usage_input = usage_input + $2, usage_output = usage_output + $3, \
                    usage_cost = usage_cost + $4, updated_at = $5 \
              WHERE id = $1 RETURNING usage_input, usage_output, usage_cost",
        )
        .bind(id.as_uuid())
        .bind(u64_to_i64(usage.input_tokens))
        .bind(u64_to_i64(usage.output_tokens))
        .bind(usage.cost_usd)
        .bind(self.now())
        .fetch_optional(self.pool())
        .await
        .map_err(db)?
        .ok_or_else(|| StoreError::not_found("spec", id))?;
        rows::usage(&row)
    }

    #[instrument(level = "debug", skip_all, fields(spec = %id, tasks = plan.tasks.len()))]
    async fn sync(&self, id: SpecId, plan: &SyncPlan) -> Result<SyncOutcome, StoreError> {
        let now = self.now();
        let mut tx = self.begin().await?;
        // The spec row lock serializes syncs of one spec.
        let exists: Option<Uuid> = sqlx::query_scalar("SELECT id FROM specs WHERE id = $1 FOR UPDATE")
            .bind(id.as_uuid())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
        if exists.is_none() {
            return Err(StoreError::not_found("spec", id));
        }
        let known_tickets: HashMap<String, TicketId> =
            sqlx::query("SELECT local_id, id FROM tickets WHERE spec_id = $1")
                .bind(id.as_uuid())
                .fetch_all(&mut *tx)
                .await
                .map_err(db)?
                .iter()
                .map(|r| Ok((get(r, "local_id")?, TicketId::from_uuid(get(r, "id")?))))
                .collect::<Result<_, StoreError>>()?;
        // The spec's task rows stay locked until commit: a task that gains a dependency cannot
        // be claimed meanwhile.
        let known_tasks: HashMap<String, SyncedTask> = sqlx::query(
            "SELECT s.local_id, s.task_id, t.dependencies, t.state FROM sync_tasks s JOIN tasks t ON t.id = s.task_id \
             WHERE s.spec_id = $1 FOR UPDATE OF t",
        )
        .bind(id.as_uuid())
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?
        .iter()
        .map(|r| {
            let deps: Vec<uuid::Uuid> = get(r, "dependencies")?;
            let state: String = get(r, "state")?;
            let task = SyncedTask {
                id: TaskId::from_uuid(get(r, "task_id")?),
                dependencies: deps.into_iter().map(TaskId::from_uuid).collect(),
                state: parse("task state", &state)?,
            };
            Ok((get(r, "local_id")?, task))
        })
        .collect::<Result<_, StoreError>>()?;

        let draft = draft_sync(id, plan, |l| known_tickets.get(l).copied(), |l| known_tasks.get(l).cloned())?;
        let (out, new_tickets, batch) = (draft.outcome, draft.new_tickets, draft.new_tasks);

        let mut events = Vec::new();
        for (tid, t) in &new_tickets {
            sqlx::query(
                "INSERT INTO tickets (id, spec_id, local_id, title, description, priority, requirements, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(tid.as_uuid())
            .bind(id.as_uuid())
            .bind(&t.local_id)
            .bind(&t.title)
            .bind(&t.description)
            .bind(t.priority.as_str())
            .bind(&t.requirements)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            events.push(Event::TicketCreated { ticket_id: *tid, spec_id: Some(id) });
        }
        let (locals, task_ids): (Vec<String>, Vec<Uuid>) =
            batch.iter().map(|t| (t.links.local_id.clone().unwrap_or_default(), t.id.as_uuid())).unzip();
        // Validates the tasks (rejecting the whole sync, ticket rows included, on error).
        insert_batch(&mut tx, batch, now, &mut events).await?;
        if !locals.is_empty() {
            sqlx::query(
                "INSERT INTO sync_tasks (spec_id, local_id, task_id) SELECT $1, l, t FROM unnest($2::text[], $3::uuid[]) AS x(l, t)",
            )
            .bind(id.as_uuid())
            .bind(&locals)
            .bind(&task_ids)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        for change in &draft.added_dependencies {
            events.push(add_dependencies(&mut tx, change, now).await?);
        }
        events.push(Event::SpecSynced {
            spec_id: id,
            tickets_created: out.tickets_created,
            tasks_created: out.tasks_created,
        });
        emit(&mut tx, now, &events).await?;
        tx.commit().await.map_err(db)?;
        Ok(out)
    }

    #[instrument(level = "debug", skip_all, fields(spec = %spec))]
    async fn list_tickets(&self, spec: SpecId) -> Result<Vec<Ticket>, StoreError> {
        let rows = sqlx::query("SELECT * FROM tickets WHERE spec_id = $1 ORDER BY seq")
            .bind(spec.as_uuid())
            .fetch_all(self.pool())
            .await
            .map_err(db)?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            out.push(self.with_status(r).await?);
        }
        Ok(out)
    }

    #[instrument(level = "debug", skip_all, fields(ticket = %id))]
    async fn get_ticket(&self, id: TicketId) -> Result<Ticket, StoreError> {
        let row = sqlx::query("SELECT * FROM tickets WHERE id = $1")
            .bind(id.as_uuid())
            .fetch_optional(self.pool())
            .await
            .map_err(db)?
            .ok_or_else(|| StoreError::not_found("ticket", id))?;
        self.with_status(&row).await
    }
}
