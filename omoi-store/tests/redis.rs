//! The Redis adapter against the agent and event suites, on the real server at
//! `OMOI_TEST_REDIS_URL`. Each test uses its own random key prefix; its keys are deleted when
//! the test's thread ends.

use std::cell::RefCell;
use std::sync::Arc;

use omoi_core::testkit::{ManualClock, service_url};
use omoi_store::RedisStore;

/// Deletes every key of one test's prefix when dropped.
struct Cleanup {
    url: String,
    prefix: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let Ok(client) = redis::Client::open(self.url.as_str()) else { return };
        let Ok(mut conn) = client.get_connection() else { return };
        let keys: Vec<String> =
            redis::cmd("KEYS").arg(format!("{{{}}}:*", self.prefix)).query(&mut conn).unwrap_or_default();
        if !keys.is_empty() {
            let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query(&mut conn);
        }
    }
}

thread_local! {
    static CLEANUP: RefCell<Vec<Cleanup>> = const { RefCell::new(Vec::new()) };
}

async fn store(clock: Arc<ManualClock>) -> Option<Arc<RedisStore>> {
    let url = service_url("OMOI_TEST_REDIS_URL")?;
    let prefix = format!("omoi-test-{}", uuid::Uuid::now_v7().simple());
    CLEANUP.with(|c| c.borrow_mut().push(Cleanup { url: url.clone(), prefix: prefix.clone() }));
    let store = RedisStore::builder(url).prefix(prefix).clock(clock).connect().await.expect("connect to redis");
    Some(Arc::new(store))
}

omoi_core::agent_store_suite!(store);
omoi_core::event_store_suite!(store);

mod liveness {
    use std::time::Duration;

    use omoi_core::config::HeartbeatConfig;
    use omoi_core::{AgentStatus, AgentStore, Cursor, EventStore, Heartbeat, NewAgent};

    use super::*;

    async fn pttl(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> i64 {
        redis::cmd("PTTL").arg(key).query_async(conn).await.unwrap()
    }

    fn near(ms: i64, ttl: Duration) -> bool {
        let ttl = ttl.as_millis() as i64;
        ms > ttl - 5_000 && ms <= ttl
    }

    /// Heartbeats set `…:alive` with the TTL of the agent's kind and status; a terminated agent
    /// has none; registrations and status changes are events in the same store's stream.
    #[tokio::test]
    async fn heartbeats_refresh_a_liveness_key_with_the_ttl_of_the_agents_status() {
        let clock = ManualClock::new();
        let Some(store) = store(clock).await else { return };
        let url = service_url("OMOI_TEST_REDIS_URL").unwrap();
        let mut conn = redis::Client::open(url.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
        let cfg = HeartbeatConfig::default();
        let agent = store.register_agent(NewAgent::worker("w", ["python"])).await.unwrap();
        let key = format!("{{{}}}:agent:{}:alive", store.prefix(), agent.id);
        assert!(near(pttl(&mut conn, &key).await, cfg.ttl_for(agent.kind, AgentStatus::Spawning)));
        store.heartbeat(agent.id, Heartbeat { seq: 1 }).await.unwrap();
        let status: String = redis::cmd("GET").arg(&key).query_async(&mut conn).await.unwrap();
        assert_eq!(status, "idle");
        assert!(near(pttl(&mut conn, &key).await, cfg.ttl_for(agent.kind, AgentStatus::Idle)));
        store.transition_agent(agent.id, AgentStatus::Running, "task").await.unwrap();
        store.heartbeat(agent.id, Heartbeat { seq: 2 }).await.unwrap();
        assert!(near(pttl(&mut conn, &key).await, cfg.ttl_for(agent.kind, AgentStatus::Running)));
        store.transition_agent(agent.id, AgentStatus::Idle, "done").await.unwrap();
        store.transition_agent(agent.id, AgentStatus::Terminated, "stop").await.unwrap();
        assert_eq!(pttl(&mut conn, &key).await, -2, "a terminated agent has no liveness key");
        let names: Vec<&str> =
            store.read_events(Cursor::START, 100).await.unwrap().iter().map(|e| e.event.name()).collect();
        assert_eq!(
            names,
            [
                "agent.registered",
                "agent.status_changed",
                "agent.status_changed",
                "agent.status_changed",
                "agent.status_changed"
            ]
        );
    }

    /// Concurrent heartbeats of one agent are serialized: the highest sequence number wins and a
    /// repeat of it is stale.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_heartbeats_of_one_agent_never_move_the_sequence_backwards() {
        let Some(store) = store(ManualClock::new()).await else { return };
        let id = store.register_agent(NewAgent::worker("w", ["python"])).await.unwrap().id;
        let mut tasks = Vec::new();
        for seq in 1..=40u64 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move { store.heartbeat(id, Heartbeat { seq }).await.is_ok() }));
        }
        let mut accepted = 0;
        for t in tasks {
            accepted += usize::from(t.await.unwrap());
        }
        assert!(accepted >= 1);
        assert_eq!(store.get_agent(id).await.unwrap().last_seq, Some(40), "the highest sequence number wins");
        let again = store.heartbeat(id, Heartbeat { seq: 40 }).await;
        assert!(matches!(again, Err(omoi_core::StoreError::StaleHeartbeat { last: 40, got: 40, .. })), "{again:?}");
    }
}
