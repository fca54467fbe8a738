//! `AgentStore` for the Postgres adapter: one row per agent, heartbeats checked under its lock.

use async_trait::async_trait;
use omoi_core::agent::accept_heartbeat;
use omoi_core::config::HeartbeatConfig;
use omoi_core::{
    Agent, AgentId, AgentStatus, AgentStore, Event, Heartbeat, HeartbeatAck, NewAgent, OverdueAgent, StoreError,
};
use tracing::instrument;

use super::error::{db, is_unique_violation};
use super::rows;
use super::{PostgresStore, emit};

impl PostgresStore {
    async fn lock_agent(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
        id: AgentId,
    ) -> Result<Agent, StoreError> {
        let row = sqlx::query("SELECT * FROM agents WHERE id = $1 FOR UPDATE")
            .bind(id.as_uuid())
            .fetch_optional(&mut **tx)
            .await
            .map_err(db)?
            .ok_or_else(|| StoreError::not_found("agent", id))?;
        rows::agent(&row)
    }
}

#[async_trait]
impl AgentStore for PostgresStore {
    #[instrument(level = "debug", skip_all, fields(agent = %new.id))]
    async fn register_agent(&self, new: NewAgent) -> Result<Agent, StoreError> {
        let now = self.now();
        let mut tx = self.begin().await?;
        let row = sqlx::query(
            "INSERT INTO agents (id, name, kind, capabilities, capacity, status, last_heartbeat_at, registered_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING *",
        )
        .bind(new.id.as_uuid())
        .bind(&new.name)
        .bind(new.kind.as_str())
        .bind(&new.capabilities)
        .bind(i32::try_from(new.capacity).unwrap_or(i32::MAX))
        .bind(AgentStatus::Spawning.as_str())
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| {
            if is_unique_violation(&e, "agents_pkey") {
                StoreError::AlreadyExists { kind: "agent", id: new.id.to_string() }
            } else {
                db(e)
            }
        })?;
        let agent = rows::agent(&row)?;
        emit(&mut tx, now, &[Event::AgentRegistered { agent_id: agent.id, name: agent.name.clone() }]).await?;
        tx.commit().await.map_err(db)?;
        Ok(agent)
    }

    #[instrument(level = "debug", skip_all, fields(agent = %id, seq = hb.seq))]
    async fn heartbeat(&self, id: AgentId, hb: Heartbeat) -> Result<HeartbeatAck, StoreError> {
        let now = self.now();
        let mut tx = self.begin().await?;
        let agent = self.lock_agent(&mut tx, id).await?;
        let (ack, event) = accept_heartbeat(&agent, hb)?;
        sqlx::query("UPDATE agents SET last_seq = $2, last_heartbeat_at = $3, status = $4 WHERE id = $1")
            .bind(id.as_uuid())
            .bind(i64::try_from(hb.seq).unwrap_or(i64::MAX))
            .bind(now)
            .bind(ack.status.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        if let Some(event) = event {
            emit(&mut tx, now, &[event]).await?;
        }
        tx.commit().await.map_err(db)?;
        Ok(ack)
    }

    #[instrument(level = "debug", skip_all, fields(agent = %id, to = %to))]
    async fn transition_agent(&self, id: AgentId, to: AgentStatus, reason: &str) -> Result<Agent, StoreError> {
        let now = self.now();
        let mut tx = self.begin().await?;
        let mut agent = self.lock_agent(&mut tx, id).await?;
        let from = agent.status;
        agent.status = from.transition(to).map_err(|e| StoreError::transition("agent", id, e))?;
        sqlx::query("UPDATE agents SET status = $2 WHERE id = $1")
            .bind(id.as_uuid())
            .bind(agent.status.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        emit(&mut tx, now, &[Event::AgentStatusChanged { agent_id: id, from, to, reason: reason.to_owned() }]).await?;
        tx.commit().await.map_err(db)?;
        Ok(agent)
    }

    #[instrument(level = "debug", skip_all, fields(agent = %id))]
    async fn get_agent(&self, id: AgentId) -> Result<Agent, StoreError> {
        let row = sqlx::query("SELECT * FROM agents WHERE id = $1")
            .bind(id.as_uuid())
            .fetch_optional(self.pool())
            .await
            .map_err(db)?
            .ok_or_else(|| StoreError::not_found("agent", id))?;
        rows::agent(&row)
    }

    #[instrument(level = "debug", skip_all)]
    async fn list_agents(&self, status: Option<AgentStatus>) -> Result<Vec<Agent>, StoreError> {
        sqlx::query("SELECT * FROM agents WHERE ($1::text IS NULL OR status = $1) ORDER BY seq")
            .bind(status.map(|s| s.as_str()))
            .fetch_all(self.pool())
            .await
            .map_err(db)?
            .iter()
            .map(rows::agent)
            .collect()
    }

    #[instrument(level = "debug", skip_all)]
    async fn overdue_agents(&self, ttl: &HeartbeatConfig) -> Result<Vec<OverdueAgent>, StoreError> {
        let now = self.now();
        let agents = self.list_agents(None).await?;
        Ok(agents.iter().filter_map(|a| OverdueAgent::check(a, ttl, now)).collect())
    }
}
