//! `AgentStore` for the Redis adapter: one hash per agent, changed by compare-and-set scripts.
//!
//! A change reads the agent, decides in Rust with the shared rules ([`accept_heartbeat`],
//! [`AgentStatus::transition`]), then applies the result with [`UPDATE`] only if the agent's
//! version is still the one read; otherwise it reads again. So concurrent heartbeats and
//! transitions of one agent are serialized without a lock, and the rules are the same code as in
//! every other adapter.

use std::collections::HashMap;
use std::str::FromStr;

use async_trait::async_trait;
use omoi_core::agent::accept_heartbeat;
use omoi_core::config::HeartbeatConfig;
use omoi_core::{
    Agent, AgentId, AgentStatus, AgentStore, Event, Heartbeat, HeartbeatAck, NewAgent, OverdueAgent, StoreError,
};

use super::RedisStore;
use super::error::corrupt;
use super::scripts::{REGISTER, UPDATE};

/// Compare-and-set rounds before giving up with `Unavailable`.
const MAX_ROUNDS: usize = 64;

/// What an `UPDATE` does to the liveness key.
enum Alive {
    Keep,
    Delete,
    /// Set to the status with this TTL.
    Refresh(std::time::Duration),
}

fn field<T: FromStr>(map: &HashMap<String, String>, name: &str) -> Result<T, StoreError>
where
    T::Err: std::fmt::Display,
{
    let v = map.get(name).ok_or_else(|| corrupt("agent", format!("field {name} is missing")))?;
    v.parse().map_err(|e| corrupt("agent", format!("field {name}: {e}")))
}

fn time(map: &HashMap<String, String>, name: &str) -> Result<chrono::DateTime<chrono::Utc>, StoreError> {
    let us: i64 = field(map, name)?;
    chrono::DateTime::from_timestamp_micros(us).ok_or_else(|| corrupt("agent", format!("field {name}: {us}")))
}

/// The agent and its version.
fn decode(map: &HashMap<String, String>) -> Result<(Agent, String), StoreError> {
    let agent = Agent {
        id: field(map, "id")?,
        name: map.get("name").cloned().unwrap_or_default(),
        kind: field(map, "kind")?,
        capabilities: serde_json::from_str(map.get("caps").map_or("[]", String::as_str))
            .map_err(|e| corrupt("agent", format!("field caps: {e}")))?,
        capacity: field(map, "capacity")?,
        status: field(map, "status")?,
        last_seq: map.get("last_seq").map(|_| field(map, "last_seq")).transpose()?,
        last_heartbeat_at: time(map, "last_hb")?,
        registered_at: time(map, "registered")?,
    };
    Ok((agent, field::<String>(map, "ver")?))
}

fn event_json(e: &Event) -> Result<String, StoreError> {
    serde_json::to_string(e).map_err(|e| StoreError::InvalidInput(format!("cannot encode event: {e}")))
}

fn ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl RedisStore {
    async fn load_agent(&self, id: AgentId) -> Result<Option<(Agent, String)>, StoreError> {
        let map: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(self.inner.keys.agent(id))
            .query_async(&mut self.conn())
            .await
            .map_err(|e| self.redis().err(e))?;
        if map.is_empty() { Ok(None) } else { decode(&map).map(Some) }
    }

    /// Applies `fields` and `events` if the agent is still at `ver`. `Ok(false)`: it moved on.
    async fn update_agent(
        &self,
        id: AgentId,
        ver: &str,
        alive: Alive,
        status: AgentStatus,
        events: &[Event],
        fields: &[(&str, String)],
    ) -> Result<bool, StoreError> {
        let keys = &self.inner.keys;
        let mut inv = UPDATE.prepare_invoke();
        inv.key(keys.agent(id)).key(keys.alive(id)).key(keys.events()).key(keys.events_seq());
        inv.arg(ver);
        match alive {
            Alive::Keep => inv.arg("keep"),
            Alive::Delete => inv.arg("del"),
            Alive::Refresh(ttl) => inv.arg(ms(ttl)),
        };
        inv.arg(status.as_str()).arg(self.now().timestamp_micros()).arg(events.len());
        for e in events {
            inv.arg(event_json(e)?);
        }
        for (f, v) in fields {
            inv.arg(*f).arg(v);
        }
        let applied: i64 = inv.invoke_async(&mut self.conn()).await.map_err(|e| self.redis().err(e))?;
        match applied {
            1 => Ok(true),
            0 => Ok(false),
            _ => Err(StoreError::not_found("agent", id)),
        }
    }

    /// Every agent in registration order.
    async fn all_agents(&self) -> Result<Vec<Agent>, StoreError> {
        let mut conn = self.conn();
        let ids: Vec<String> = redis::cmd("ZRANGE")
            .arg(self.inner.keys.agents())
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.redis().err(e))?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            let id: AgentId = id.parse().map_err(|e| corrupt("agent index", e))?;
            pipe.cmd("HGETALL").arg(self.inner.keys.agent(id));
        }
        let maps: Vec<HashMap<String, String>> = pipe.query_async(&mut conn).await.map_err(|e| self.redis().err(e))?;
        maps.iter().filter(|m| !m.is_empty()).map(|m| decode(m).map(|(a, _)| a)).collect()
    }
}

#[async_trait]
impl AgentStore for RedisStore {
    #[tracing::instrument(level = "debug", name = "redis.register_agent", skip_all, fields(agent = %new.id))]
    async fn register_agent(&self, new: NewAgent) -> Result<Agent, StoreError> {
        let now = self.now();
        let agent = Agent::registered(new, now);
        let keys = &self.inner.keys;
        let caps = serde_json::to_string(&agent.capabilities)
            .map_err(|e| StoreError::InvalidInput(format!("cannot encode capabilities: {e}")))?;
        let event = Event::AgentRegistered { agent_id: agent.id, name: agent.name.clone() };
        let ttl = self.inner.heartbeat.ttl_for(agent.kind, agent.status);
        let at = now.timestamp_micros();
        let mut inv = REGISTER.prepare_invoke();
        inv.key(keys.agent(agent.id))
            .key(keys.agents())
            .key(keys.agents_seq())
            .key(keys.alive(agent.id))
            .key(keys.events())
            .key(keys.events_seq());
        inv.arg(agent.id.to_string()).arg(ms(ttl)).arg(agent.status.as_str()).arg(at).arg(event_json(&event)?);
        inv.arg("id").arg(agent.id.to_string());
        inv.arg("name").arg(&agent.name);
        inv.arg("kind").arg(agent.kind.as_str());
        inv.arg("caps").arg(caps);
        inv.arg("capacity").arg(agent.capacity);
        inv.arg("status").arg(agent.status.as_str());
        inv.arg("last_hb").arg(at);
        inv.arg("registered").arg(at);
        inv.arg("ver").arg(1);
        let created: i64 = inv.invoke_async(&mut self.conn()).await.map_err(|e| self.redis().err(e))?;
        if created == 0 {
            return Err(StoreError::AlreadyExists { kind: "agent", id: agent.id.to_string() });
        }
        Ok(agent)
    }

    #[tracing::instrument(level = "debug", name = "redis.heartbeat", skip(self))]
    async fn heartbeat(&self, id: AgentId, hb: Heartbeat) -> Result<HeartbeatAck, StoreError> {
        for _ in 0..MAX_ROUNDS {
            let (agent, ver) = self.load_agent(id).await?.ok_or_else(|| StoreError::not_found("agent", id))?;
            let (ack, event) = accept_heartbeat(&agent, hb)?;
            let next = ack.status;
            let events: Vec<Event> = event.into_iter().collect();
            let ttl = self.inner.heartbeat.ttl_for(agent.kind, next);
            let fields = [
                ("status", next.as_str().to_owned()),
                ("last_seq", hb.seq.to_string()),
                ("last_hb", self.now().timestamp_micros().to_string()),
            ];
            if self.update_agent(id, &ver, Alive::Refresh(ttl), next, &events, &fields).await? {
                return Ok(ack);
            }
        }
        Err(contended(id))
    }

    #[tracing::instrument(level = "debug", name = "redis.transition_agent", skip(self))]
    async fn transition_agent(&self, id: AgentId, to: AgentStatus, reason: &str) -> Result<Agent, StoreError> {
        for _ in 0..MAX_ROUNDS {
            let (mut agent, ver) = self.load_agent(id).await?.ok_or_else(|| StoreError::not_found("agent", id))?;
            let from = agent.status;
            agent.status = from.transition(to).map_err(|e| StoreError::transition("agent", id, e))?;
            let events = [Event::AgentStatusChanged { agent_id: id, from, to, reason: reason.to_owned() }];
            // A status that expects no heartbeats has no liveness to show.
            let alive = if agent.status.expects_heartbeats() { Alive::Keep } else { Alive::Delete };
            let fields = [("status", agent.status.as_str().to_owned())];
            if self.update_agent(id, &ver, alive, agent.status, &events, &fields).await? {
                return Ok(agent);
            }
        }
        Err(contended(id))
    }

    #[tracing::instrument(level = "debug", name = "redis.get_agent", skip(self))]
    async fn get_agent(&self, id: AgentId) -> Result<Agent, StoreError> {
        self.load_agent(id).await?.map(|(a, _)| a).ok_or_else(|| StoreError::not_found("agent", id))
    }

    #[tracing::instrument(level = "debug", name = "redis.list_agents", skip(self))]
    async fn list_agents(&self, status: Option<AgentStatus>) -> Result<Vec<Agent>, StoreError> {
        let mut all = self.all_agents().await?;
        all.retain(|a| status.is_none_or(|s| a.status == s));
        Ok(all)
    }

    #[tracing::instrument(level = "debug", name = "redis.overdue_agents", skip_all)]
    async fn overdue_agents(&self, ttl: &HeartbeatConfig) -> Result<Vec<OverdueAgent>, StoreError> {
        let now = self.now();
        Ok(self.all_agents().await?.iter().filter_map(|a| OverdueAgent::check(a, ttl, now)).collect())
    }
}

fn contended(id: AgentId) -> StoreError {
    StoreError::Unavailable {
        backend: super::error::BACKEND,
        message: format!("agent {id} changed concurrently {MAX_ROUNDS} times in a row; try again"),
        source: None,
    }
}
