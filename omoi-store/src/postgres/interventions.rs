//! `InterventionStore` for the Postgres adapter: an acknowledgement is one conditional update,
//! so concurrent acknowledgers serialize on the row and only the first one wins.

use async_trait::async_trait;
use omoi_core::{AgentId, Event, Intervention, InterventionId, InterventionStore, NewIntervention, StoreError, TaskId};
use sqlx::postgres::PgRow;
use tracing::instrument;
use uuid::Uuid;

use super::error::{db, is_unique_violation};
use super::rows::{get, parse};
use super::{PostgresStore, emit};

fn decode(r: &PgRow) -> Result<Intervention, StoreError> {
    Ok(Intervention {
        id: InterventionId::from_uuid(get(r, "id")?),
        agent_id: AgentId::from_uuid(get(r, "agent_id")?),
        task_id: get::<Option<Uuid>>(r, "task_id")?.map(TaskId::from_uuid),
        severity: parse("severity", &get::<String>(r, "severity")?)?,
        source: parse("source", &get::<String>(r, "source")?)?,
        message: get(r, "message")?,
        reason: get(r, "reason")?,
        created_at: get(r, "created_at")?,
        acknowledged_at: get(r, "acknowledged_at")?,
    })
}

#[async_trait]
impl InterventionStore for PostgresStore {
    #[instrument(level = "debug", skip_all, fields(agent = %new.agent_id))]
    async fn record_intervention(&self, new: NewIntervention) -> Result<Intervention, StoreError> {
        new.validate().map_err(StoreError::InvalidInput)?;
        let now = self.now();
        let i = Intervention::recorded(new, now);
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO interventions (id, agent_id, task_id, severity, source, message, reason, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(i.id.as_uuid())
        .bind(i.agent_id.as_uuid())
        .bind(i.task_id.map(|t| t.as_uuid()))
        .bind(i.severity.as_str())
        .bind(i.source.as_str())
        .bind(&i.message)
        .bind(&i.reason)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            if is_unique_violation(&e, "interventions_pkey") {
                StoreError::AlreadyExists { kind: "intervention", id: i.id.to_string() }
            } else {
                db(e)
            }
        })?;
        let event = Event::InterventionRecorded {
            intervention_id: i.id,
            agent_id: i.agent_id,
            task_id: i.task_id,
            severity: i.severity,
            source: i.source,
        };
        emit(&mut tx, now, &[event]).await?;
        tx.commit().await.map_err(db)?;
        Ok(i)
    }

    #[instrument(level = "debug", skip(self))]
    async fn pending_interventions(&self, agent: AgentId, task: TaskId) -> Result<Vec<Intervention>, StoreError> {
        sqlx::query(
            "SELECT * FROM interventions WHERE agent_id = $1 AND acknowledged_at IS NULL \
             AND (task_id IS NULL OR task_id = $2) ORDER BY created_at, id",
        )
        .bind(agent.as_uuid())
        .bind(task.as_uuid())
        .fetch_all(self.pool())
        .await
        .map_err(db)?
        .iter()
        .map(decode)
        .collect()
    }

    #[instrument(level = "debug", skip(self))]
    async fn acknowledge_intervention(&self, id: InterventionId) -> Result<Option<Intervention>, StoreError> {
        let now = self.now();
        let mut tx = self.begin().await?;
        let row = sqlx::query(
            "UPDATE interventions SET acknowledged_at = $2 WHERE id = $1 AND acknowledged_at IS NULL RETURNING *",
        )
        .bind(id.as_uuid())
        .bind(now)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        let Some(row) = row else {
            let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM interventions WHERE id = $1)")
                .bind(id.as_uuid())
                .fetch_one(&mut *tx)
                .await
                .map_err(db)?;
            return if exists { Ok(None) } else { Err(StoreError::not_found("intervention", id)) };
        };
        let i = decode(&row)?;
        emit(
            &mut tx,
            now,
            &[Event::InterventionAcknowledged { intervention_id: id, agent_id: i.agent_id, task_id: i.task_id }],
        )
        .await?;
        tx.commit().await.map_err(db)?;
        Ok(Some(i))
    }

    #[instrument(level = "debug", skip(self))]
    async fn list_interventions(&self, agent: Option<AgentId>, limit: usize) -> Result<Vec<Intervention>, StoreError> {
        sqlx::query(
            "SELECT * FROM interventions WHERE ($1::uuid IS NULL OR agent_id = $1) \
             ORDER BY created_at DESC, id DESC LIMIT $2",
        )
        .bind(agent.map(|a| a.as_uuid()))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(self.pool())
        .await
        .map_err(db)?
        .iter()
        .map(decode)
        .collect()
    }
}
