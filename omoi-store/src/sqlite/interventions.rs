//! `InterventionStore` for the SQLite adapter.

use async_trait::async_trait;
use omoi_core::{AgentId, Event, Intervention, InterventionId, InterventionStore, NewIntervention, StoreError, TaskId};
use sqlx::sqlite::SqliteRow;

use super::SqliteStore;
use super::codec::{get, get_parsed, get_parsed_opt, get_time, time, us};
use super::error::{db, insert};

macro_rules! cols {
    () => {
        "id, agent_id, task_id, severity, source, message, reason, created_at, acknowledged_at"
    };
}

fn decode(r: &SqliteRow) -> Result<Intervention, StoreError> {
    Ok(Intervention {
        id: get_parsed(r, "id")?,
        agent_id: get_parsed(r, "agent_id")?,
        task_id: get_parsed_opt(r, "task_id")?,
        severity: get_parsed(r, "severity")?,
        source: get_parsed(r, "source")?,
        message: get(r, "message")?,
        reason: get(r, "reason")?,
        created_at: get_time(r, "created_at")?,
        acknowledged_at: get::<Option<i64>>(r, "acknowledged_at")?.map(time).transpose()?,
    })
}

#[async_trait]
impl InterventionStore for SqliteStore {
    #[tracing::instrument(level = "debug", name = "sqlite.record_intervention", skip_all, fields(agent = %new.agent_id))]
    async fn record_intervention(&self, new: NewIntervention) -> Result<Intervention, StoreError> {
        new.validate().map_err(StoreError::InvalidInput)?;
        let mut w = self.begin().await?;
        let i = Intervention::recorded(new, w.now);
        sqlx::query(
            "INSERT INTO interventions (id, agent_id, task_id, severity, source, message, reason, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )
        .bind(i.id.to_string())
        .bind(i.agent_id.to_string())
        .bind(i.task_id.map(|t| t.to_string()))
        .bind(i.severity.as_str())
        .bind(i.source.as_str())
        .bind(&i.message)
        .bind(&i.reason)
        .bind(us(i.created_at))
        .execute(w.conn())
        .await
        .map_err(insert("intervention", i.id))?;
        w.emit(Event::InterventionRecorded {
            intervention_id: i.id,
            agent_id: i.agent_id,
            task_id: i.task_id,
            severity: i.severity,
            source: i.source,
        });
        self.commit(w).await?;
        Ok(i)
    }

    #[tracing::instrument(level = "debug", name = "sqlite.pending_interventions", skip(self))]
    async fn pending_interventions(&self, agent: AgentId, task: TaskId) -> Result<Vec<Intervention>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            cols!(),
            " FROM interventions WHERE agent_id = ?1 AND acknowledged_at IS NULL \
             AND (task_id IS NULL OR task_id = ?2) ORDER BY created_at, id"
        ))
        .bind(agent.to_string())
        .bind(task.to_string())
        .fetch_all(self.readers())
        .await
        .map_err(db)?;
        rows.iter().map(decode).collect()
    }

    #[tracing::instrument(level = "debug", name = "sqlite.acknowledge_intervention", skip(self))]
    async fn acknowledge_intervention(&self, id: InterventionId) -> Result<Option<Intervention>, StoreError> {
        let mut w = self.begin().await?;
        let row = sqlx::query(concat!("SELECT ", cols!(), " FROM interventions WHERE id = ?1"))
            .bind(id.to_string())
            .fetch_optional(w.conn())
            .await
            .map_err(db)?
            .ok_or_else(|| StoreError::not_found("intervention", id))?;
        let mut i = decode(&row)?;
        if !i.is_pending() {
            return Ok(None);
        }
        i.acknowledged_at = Some(w.now);
        sqlx::query("UPDATE interventions SET acknowledged_at = ?2 WHERE id = ?1")
            .bind(id.to_string())
            .bind(us(w.now))
            .execute(w.conn())
            .await
            .map_err(db)?;
        w.emit(Event::InterventionAcknowledged { intervention_id: id, agent_id: i.agent_id, task_id: i.task_id });
        self.commit(w).await?;
        Ok(Some(i))
    }

    #[tracing::instrument(level = "debug", name = "sqlite.list_interventions", skip(self))]
    async fn list_interventions(&self, agent: Option<AgentId>, limit: usize) -> Result<Vec<Intervention>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            cols!(),
            " FROM interventions WHERE ?1 IS NULL OR agent_id = ?1 ORDER BY created_at DESC, id DESC LIMIT ?2"
        ))
        .bind(agent.map(|a| a.to_string()))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(self.readers())
        .await
        .map_err(db)?;
        rows.iter().map(decode).collect()
    }
}
