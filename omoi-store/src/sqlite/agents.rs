//! `AgentStore` for the SQLite adapter.

use async_trait::async_trait;
use omoi_core::agent::accept_heartbeat;
use omoi_core::config::HeartbeatConfig;
use omoi_core::{
    Agent, AgentId, AgentStatus, AgentStore, Event, Heartbeat, HeartbeatAck, NewAgent, OverdueAgent, StoreError,
};
use sqlx::SqliteConnection;
use sqlx::sqlite::SqliteRow;

use super::SqliteStore;
use super::codec::{get, get_json, get_parsed, get_time, int, json, u32_of, uint, us};
use super::error::{db, insert};

macro_rules! agent_cols {
    () => {
        "id, name, kind, capabilities, capacity, status, last_seq, last_heartbeat_at, registered_at"
    };
}

fn decode(r: &SqliteRow) -> Result<Agent, StoreError> {
    Ok(Agent {
        id: get_parsed(r, "id")?,
        name: get(r, "name")?,
        kind: get_parsed(r, "kind")?,
        capabilities: get_json(r, "capabilities")?,
        capacity: u32_of("capacity", get(r, "capacity")?)?,
        status: get_parsed(r, "status")?,
        last_seq: get::<Option<i64>>(r, "last_seq")?.map(|s| uint("last_seq", s)).transpose()?,
        last_heartbeat_at: get_time(r, "last_heartbeat_at")?,
        registered_at: get_time(r, "registered_at")?,
    })
}

async fn load(conn: &mut SqliteConnection, id: AgentId) -> Result<Agent, StoreError> {
    let row = sqlx::query(concat!("SELECT ", agent_cols!(), " FROM agents WHERE id = ?1"))
        .bind(id.to_string())
        .fetch_optional(conn)
        .await
        .map_err(db)?
        .ok_or_else(|| StoreError::not_found("agent", id))?;
    decode(&row)
}

async fn set_status(conn: &mut SqliteConnection, id: AgentId, status: AgentStatus) -> Result<(), StoreError> {
    sqlx::query("UPDATE agents SET status = ?2 WHERE id = ?1")
        .bind(id.to_string())
        .bind(status.as_str())
        .execute(conn)
        .await
        .map_err(db)?;
    Ok(())
}

#[async_trait]
impl AgentStore for SqliteStore {
    #[tracing::instrument(level = "debug", name = "sqlite.register_agent", skip_all, fields(agent = %new.id))]
    async fn register_agent(&self, new: NewAgent) -> Result<Agent, StoreError> {
        let mut w = self.begin().await?;
        let agent = Agent::registered(new, w.now);
        sqlx::query(
            "INSERT INTO agents (id, name, kind, capabilities, capacity, status, last_heartbeat_at, registered_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
        )
        .bind(agent.id.to_string())
        .bind(&agent.name)
        .bind(agent.kind.as_str())
        .bind(json(&agent.capabilities)?)
        .bind(i64::from(agent.capacity))
        .bind(agent.status.as_str())
        .bind(us(w.now))
        .execute(w.conn())
        .await
        .map_err(insert("agent", agent.id))?;
        w.emit(Event::AgentRegistered { agent_id: agent.id, name: agent.name.clone() });
        self.commit(w).await?;
        Ok(agent)
    }

    #[tracing::instrument(level = "debug", name = "sqlite.heartbeat", skip(self))]
    async fn heartbeat(&self, id: AgentId, hb: Heartbeat) -> Result<HeartbeatAck, StoreError> {
        let seq = int("heartbeat seq", hb.seq)?;
        let mut w = self.begin().await?;
        let agent = load(w.conn(), id).await?;
        let (ack, event) = accept_heartbeat(&agent, hb)?;
        sqlx::query("UPDATE agents SET status = ?2, last_seq = ?3, last_heartbeat_at = ?4 WHERE id = ?1")
            .bind(id.to_string())
            .bind(ack.status.as_str())
            .bind(seq)
            .bind(us(w.now))
            .execute(w.conn())
            .await
            .map_err(db)?;
        if let Some(event) = event {
            w.emit(event);
        }
        self.commit(w).await?;
        Ok(ack)
    }

    #[tracing::instrument(level = "debug", name = "sqlite.transition_agent", skip(self))]
    async fn transition_agent(&self, id: AgentId, to: AgentStatus, reason: &str) -> Result<Agent, StoreError> {
        let mut w = self.begin().await?;
        let mut agent = load(w.conn(), id).await?;
        let from = agent.status;
        agent.status = from.transition(to).map_err(|e| StoreError::transition("agent", id, e))?;
        set_status(w.conn(), id, agent.status).await?;
        w.emit(Event::AgentStatusChanged { agent_id: id, from, to, reason: reason.to_owned() });
        self.commit(w).await?;
        Ok(agent)
    }

    #[tracing::instrument(level = "debug", name = "sqlite.get_agent", skip(self))]
    async fn get_agent(&self, id: AgentId) -> Result<Agent, StoreError> {
        let mut conn = self.readers().acquire().await.map_err(db)?;
        load(&mut conn, id).await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.list_agents", skip(self))]
    async fn list_agents(&self, status: Option<AgentStatus>) -> Result<Vec<Agent>, StoreError> {
        let rows =
            sqlx::query(concat!("SELECT ", agent_cols!(), " FROM agents WHERE ?1 IS NULL OR status = ?1 ORDER BY pos"))
                .bind(status.map(AgentStatus::as_str))
                .fetch_all(self.readers())
                .await
                .map_err(db)?;
        rows.iter().map(decode).collect()
    }

    #[tracing::instrument(level = "debug", name = "sqlite.overdue_agents", skip_all)]
    async fn overdue_agents(&self, ttl: &HeartbeatConfig) -> Result<Vec<OverdueAgent>, StoreError> {
        let now = self.now();
        // Which statuses expect heartbeats is `OverdueAgent::check`'s decision, not the query's.
        let rows = sqlx::query(concat!("SELECT ", agent_cols!(), " FROM agents ORDER BY pos"))
            .fetch_all(self.readers())
            .await
            .map_err(db)?;
        let mut out = Vec::new();
        for r in &rows {
            if let Some(o) = OverdueAgent::check(&decode(r)?, ttl, now) {
                out.push(o);
            }
        }
        Ok(out)
    }
}
