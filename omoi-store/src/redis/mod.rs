//! The Redis adapter: agent heartbeats and cross-process event fan-out (see [`RedisStore`]).

mod agents;
mod error;
mod events;
mod scripts;

use std::sync::Arc;
use std::time::Duration;

use omoi_core::config::HeartbeatConfig;
use omoi_core::{AgentId, Clock, StoreError, SystemClock};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tracing::Instrument;

use self::error::{Redis, redact};

/// How long one command may take before it counts as failed (`Unavailable`).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Agents and events in Redis. Cheap to clone: clones share the connection.
///
/// | port | supported |
/// |---|---|
/// | `AgentStore` | yes: agents are hashes; every change is a Lua compare-and-set, so sequence checks and status transitions are atomic |
/// | `EventStore` | yes: one Stream; cursors are allocated atomically with the append (`INCR` + `XADD <n>-0` in one script), subscribers tail with `XREAD BLOCK` and reconnect without losing or repeating events |
///
/// Tasks, specs and memories live elsewhere (the SQLite or Postgres adapter); pair this store with
/// one of those when agents or event consumers run in many processes.
///
/// # Keys
///
/// Every key starts with the configured prefix in braces (a Redis Cluster hash tag, so the keys
/// of one store share a slot and scripts may touch them together). With the default prefix
/// `omoi`:
///
/// | key | type | holds |
/// |---|---|---|
/// | `{omoi}:agent:<id>` | hash | the agent (name, kind, capabilities, status, last sequence number, last heartbeat time, version) |
/// | `{omoi}:agent:<id>:alive` | string with a TTL | the agent's status; expires one TTL (for its kind and status) after its last heartbeat |
/// | `{omoi}:agents` | sorted set | agent ids in registration order |
/// | `{omoi}:events` | stream | events: entry id `<cursor>-0`, fields `at` (µs since the epoch) and `event` (JSON) |
/// | `{omoi}:events:seq` | string | the last allocated cursor |
///
/// # Liveness: the TTL key and `overdue_agents`
///
/// Each heartbeat also sets `…:alive` with `PX` = the agent's TTL (from the store's
/// [`HeartbeatConfig`](omoi_core::config::HeartbeatConfig), see [`RedisStoreBuilder::heartbeat`]), so external tools see liveness with
/// `EXISTS`/`PTTL`. [`AgentStore::overdue_agents`](omoi_core::AgentStore::overdue_agents) does **not** read those keys: it computes from
/// the stored last-heartbeat time and the store's [`Clock`] through
/// [`OverdueAgent::check`](omoi_core::OverdueAgent::check), exactly like every other adapter, so
/// it agrees with a `ManualClock` in tests (Redis's own expiry follows the server's wall clock,
/// which a test clock cannot move) and with the TTLs the caller passes.
///
/// # Subscriptions
///
/// [`EventStore::subscribe`](omoi_core::EventStore::subscribe) opens a dedicated connection named `omoi-sub:<prefix>` (see
/// `CLIENT LIST`) and reads with `XREAD BLOCK 1000` from the last delivered cursor: first what is
/// already stored (replay), then live events. If the connection fails, the stream reconnects with
/// backoff (100 ms doubling to 2 s) and resumes from the last delivered cursor, so nothing is lost
/// or repeated. Other operations share one auto-reconnecting connection (named `omoi:<prefix>`
/// when the store connects; the driver does not rename it after a reconnect).
///
/// Errors: a refused or dropped connection, a timeout or a loading server is
/// [`StoreError::Unavailable`](omoi_core::StoreError::Unavailable) (retryable; the URL in the message has its password redacted);
/// everything else is `Backend`.
///
/// ```no_run
/// # async fn demo() -> Result<(), omoi_core::StoreError> {
/// use omoi_core::{AgentStore, Heartbeat, NewAgent};
/// use omoi_store::RedisStore;
///
/// let store = RedisStore::builder("redis://127.0.0.1:6379").prefix("omoi-dev").connect().await?;
/// let agent = store.register_agent(NewAgent::worker("worker-1", ["python"])).await?;
/// store.heartbeat(agent.id, Heartbeat { seq: 1 }).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    client: redis::Client,
    conn: ConnectionManager,
    keys: Keys,
    clock: Arc<dyn Clock>,
    heartbeat: HeartbeatConfig,
    /// The URL with its password redacted, for messages.
    url: String,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.inner.url)
            .field("prefix", &self.inner.keys.prefix)
            .field("clock", &self.inner.clock)
            .finish()
    }
}

/// Key names of one store.
struct Keys {
    prefix: String,
    /// `{prefix}`: the hash tag every key starts with.
    tag: String,
}

impl Keys {
    fn new(prefix: &str) -> Self {
        Self { prefix: prefix.to_owned(), tag: format!("{{{prefix}}}") }
    }

    fn agent(&self, id: AgentId) -> String {
        format!("{}:agent:{id}", self.tag)
    }

    fn alive(&self, id: AgentId) -> String {
        format!("{}:agent:{id}:alive", self.tag)
    }

    fn agents(&self) -> String {
        format!("{}:agents", self.tag)
    }

    fn agents_seq(&self) -> String {
        format!("{}:agents:seq", self.tag)
    }

    fn events(&self) -> String {
        format!("{}:events", self.tag)
    }

    fn events_seq(&self) -> String {
        format!("{}:events:seq", self.tag)
    }
}

/// Options for [`RedisStore`]; finish with [`RedisStoreBuilder::connect`].
pub struct RedisStoreBuilder {
    url: String,
    prefix: String,
    clock: Arc<dyn Clock>,
    heartbeat: HeartbeatConfig,
}

impl std::fmt::Debug for RedisStoreBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStoreBuilder")
            .field("url", &redact(&self.url))
            .field("prefix", &self.prefix)
            .field("clock", &self.clock)
            .finish()
    }
}

impl RedisStoreBuilder {
    /// Starts every key with `{prefix}` (default `omoi`), so several stores can share a server.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Takes time from `clock` (a `ManualClock` in tests) instead of the system clock.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The TTLs of the agents' liveness keys (default: [`HeartbeatConfig::default`]). Only the
    /// keys use them; `overdue_agents` takes its TTLs from its argument.
    pub fn heartbeat(mut self, cfg: HeartbeatConfig) -> Self {
        self.heartbeat = cfg;
        self
    }

    /// Connects and checks the server answers.
    ///
    /// Errors: `InvalidInput` for a malformed URL or prefix, `Unavailable` if the server cannot be
    /// reached.
    pub async fn connect(self) -> Result<RedisStore, StoreError> {
        let span = tracing::debug_span!("redis.connect", url = %redact(&self.url), prefix = %self.prefix);
        self.connect_inner().instrument(span).await
    }

    async fn connect_inner(self) -> Result<RedisStore, StoreError> {
        let url = redact(&self.url);
        if self.prefix.is_empty() || self.prefix.contains(['{', '}', ' ']) {
            return Err(StoreError::InvalidInput(format!(
                "redis key prefix {:?} must be non-empty without braces or spaces",
                self.prefix
            )));
        }
        let client = redis::Client::open(self.url.as_str())
            .map_err(|e| StoreError::InvalidInput(format!("invalid redis URL {url}: {e}")))?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_number_of_retries(2);
        let redis = Redis { url: &url };
        let mut conn = client.get_connection_manager_with_config(config).await.map_err(|e| redis.err(e))?;
        let name = format!("omoi:{}", self.prefix);
        let _: () =
            redis::cmd("CLIENT").arg("SETNAME").arg(&name).query_async(&mut conn).await.map_err(|e| redis.err(e))?;
        Ok(RedisStore {
            inner: Arc::new(Inner {
                client,
                conn,
                keys: Keys::new(&self.prefix),
                clock: self.clock,
                heartbeat: self.heartbeat,
                url,
            }),
        })
    }
}

impl RedisStore {
    /// Connects to `url` (e.g. `redis://127.0.0.1:6379`) with the default prefix, on the system
    /// clock.
    pub async fn connect(url: impl Into<String>) -> Result<RedisStore, StoreError> {
        Self::builder(url).connect().await
    }

    /// Options for connecting to `url`.
    pub fn builder(url: impl Into<String>) -> RedisStoreBuilder {
        RedisStoreBuilder {
            url: url.into(),
            prefix: "omoi".into(),
            clock: Arc::new(SystemClock),
            heartbeat: HeartbeatConfig::default(),
        }
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.inner.keys.prefix
    }

    fn redis(&self) -> Redis<'_> {
        Redis { url: &self.inner.url }
    }

    /// The shared connection (cheap clone of a multiplexed handle).
    fn conn(&self) -> ConnectionManager {
        self.inner.conn.clone()
    }

    /// The current time at the precision stored (microseconds).
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        let now = self.inner.clock.now();
        chrono::DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
    }
}
