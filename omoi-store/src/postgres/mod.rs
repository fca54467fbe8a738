//! The Postgres adapter: every store port on one Postgres database (with pgvector), shared by
//! any number of worker processes. See [`PostgresStore`] for how claims, completions and event
//! cursors work.

mod access;
mod agents;
mod discoveries;
mod error;
mod events;
mod interventions;
mod memories;
mod notify;
mod rows;
mod specs;
mod tasks;

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use omoi_core::{Clock, Event, StoreError, SystemClock};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Postgres, Transaction};

use self::error::{BACKEND, db, redact_url};

/// How often a subscriber polls when no notification arrives (a lost `NOTIFY` costs at most this).
pub(crate) const POLL_BACKSTOP: Duration = Duration::from_millis(500);

/// Every store port on one Postgres database (with pgvector), shared by any number of worker
/// processes. Cheap to clone: clones share one connection pool.
///
/// | port | how |
/// |---|---|
/// | `TaskStore` | `FOR UPDATE SKIP LOCKED` claims in batches on a partial index of ready tasks; fencing tokens from a per-task claim counter; batched completion releasing dependents through an edge table with unmet-dependency counts |
/// | `SpecStore` | specs, checkpoints, tickets; sync keyed by (spec, local id) in one transaction |
/// | `AgentStore` | one row per agent; heartbeats checked under a row lock |
/// | `EventStore` | an outbox table written in the same transaction as the state change; `LISTEN`/`NOTIFY` wake-ups with a polling backstop |
/// | `MemoryStore` | pgvector `vector(dims)` with an HNSW cosine index, a generated `tsvector` with a GIN index, fused by RRF |
///
/// # Claims
///
/// `omoi_claim` (a PL/pgSQL function, one round trip) picks up to `limit` ready rows in queue
/// order (band, `run_at`, id) from the partial index `tasks_ready` with `FOR UPDATE SKIP LOCKED`,
/// keeps those whose required capabilities are a subset of the worker's, and leases them. Rows
/// locked by another claimer are skipped, never waited on, so each lease is handed out once.
/// Tasks with a concurrency key take a transaction-scoped advisory lock per key (only keyed
/// tasks pay for it); the count of that key's leases is made after the lock, in a fresh
/// snapshot, so two claimers can never both push a key over its limit. Each claim increments
/// the task's claim counter, which is the fencing token (`DESIGN-NOTES.md`, item 1).
///
/// # Completions
///
/// `complete` and `complete_many` are one call of `omoi_complete` (one round trip, one
/// transaction for the whole batch): each item is fenced by its token, and dependents are
/// released in the same transaction through the `task_edges` table, whose unmet-dependency
/// counts are decremented set-wise (a dependent reaching zero goes `Waiting → Ready`). An
/// insert whose dependency is being completed concurrently cannot lose its edge: inserts lock
/// the dependency rows `FOR SHARE`, and the completion reads edges in a statement that starts
/// after it holds those rows. One `task.completed` event per item, then `task.ready` for what it
/// released; subscribers are woken after commit (see the cursors section).
///
/// # Faults
///
/// A dropped connection, a restarting server, a pool timeout, a serialization failure or a
/// deadlock is [`StoreError::Unavailable`]: retry with backoff. The pool re-connects by itself.
/// A call whose answer was lost may still have committed. Retrying a `complete` that did
/// commit yields `StaleLease` (the lease ended with the completion): read the task, and if it is
/// `Completed` the work is done. A `claim` whose answer was lost leaves leases nobody knows of;
/// they come back through [`reclaim_expired`](omoi_core::TaskStore::reclaim_expired) when they
/// lapse, or at once with [`reclaim_holder`](omoi_core::TaskStore::reclaim_holder) for the
/// claiming agent.
///
/// # Event cursors: a reader never skips an event, and writers share no lock
///
/// A reader that has seen cursor *n* must never later find an event below *n*. With a plain
/// sequence that fails: transaction A takes cursor 5, B takes 6 and commits first, a reader
/// sees 6 and moves past 5 before A commits. Here a cursor is the writing transaction's id
/// (`pg_current_xact_id()`) shifted left by 24 bits plus the event's ordinal in that
/// transaction (`omoi_emit`), and a read returns only cursors below `omoi_visible_bound()`: the
/// oldest transaction id still in flight (`pg_snapshot_xmin` of the reading statement's own
/// snapshot), shifted the same way. Every transaction that can still commit has an id at or
/// above that bound, so everything it writes sorts above every cursor already handed out. No
/// row is shared between writers (0001 had every event-writing transaction update one counter
/// row, which serialized all of them behind each other's commit and WAL flush); the price is
/// that a long transaction anywhere in the cluster holds readers back until it ends, and that
/// cursors increase with gaps. Wake-ups are sent after commit, coalesced, by one announcer per
/// schema and process (`NOTIFY` inside the writers would take Postgres' database-wide notify
/// lock through their commits); subscribers `LISTEN` on a connection of their own, reconnect
/// when it drops, and poll every 500 ms as a backstop (`DESIGN-NOTES.md`, note 11).
///
/// # Time, errors, schemas
///
/// Every timestamp comes from the injected [`Clock`] (truncated to microseconds, Postgres'
/// precision), never `now()`. Connection failures, pool timeouts, admin shutdowns,
/// serialization failures and deadlocks are [`StoreError::Unavailable`] (retryable). With
/// [`PostgresStoreBuilder::schema`] the store lives in its own schema (created if missing,
/// `search_path = <schema>, public` on every connection; pgvector's type stays in `public`).
/// Migrations (`migrations/postgres`) run on connect.
///
/// ```no_run
/// # async fn demo() -> Result<(), omoi_core::StoreError> {
/// use std::time::Duration;
/// use omoi_core::{AgentId, ClaimRequest, Completion, NewTask, TaskStore};
/// use omoi_store::PostgresStore;
///
/// let store = PostgresStore::builder("postgres://omoi@127.0.0.1/omoi").schema("omoi").dimensions(384).connect().await?;
/// let build = NewTask::new("build");
/// store.insert_tasks(vec![build.clone()]).await?;
/// let claimed = store.claim(&ClaimRequest::new(AgentId::new(), 10, Duration::from_secs(30))).await?;
/// store.complete(build.id, claimed[0].lease.token, Completion::default()).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    clock: Arc<dyn Clock>,
    /// Connection options (with the schema's search path), for listener connections.
    options: PgConnectOptions,
    schema: String,
    /// `LISTEN` channel of this schema's events.
    channel: String,
    /// Embedding dimension of memories (0 = not fixed yet).
    dims: AtomicUsize,
    /// The URL with its password redacted, for messages.
    url: String,
    /// This schema's announcer of new events (set after migrations, which create its function).
    announcer: std::sync::OnceLock<Arc<notify::Announcer>>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("url", &self.inner.url)
            .field("schema", &self.inner.schema)
            .field("dimensions", &self.inner.dims.load(Ordering::Relaxed))
            .field("clock", &self.inner.clock)
            .finish()
    }
}

/// Options for [`PostgresStore`]; finish with [`connect`](PostgresStoreBuilder::connect).
pub struct PostgresStoreBuilder {
    url: String,
    schema: String,
    clock: Arc<dyn Clock>,
    dims: Option<usize>,
    max_connections: u32,
    acquire_timeout: Duration,
}

impl std::fmt::Debug for PostgresStoreBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStoreBuilder")
            .field("url", &redact_url(&self.url))
            .field("schema", &self.schema)
            .field("clock", &self.clock)
            .field("dimensions", &self.dims)
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .finish()
    }
}

impl PostgresStoreBuilder {
    /// Keeps every table in `schema` (created if missing) instead of `public`. Lowercase ASCII
    /// letters, digits and underscores, starting with a lowercase letter or underscore, at most
    /// 48 characters (so the name never needs quoting).
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// Takes time from `clock` (a `ManualClock` in tests) instead of the system clock.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Fixes the embedding dimension of memories (else the first memory stored fixes it).
    pub fn dimensions(mut self, dims: usize) -> Self {
        self.dims = Some(dims);
        self
    }

    /// Size of the connection pool (default 16).
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// How long an operation waits for a pooled connection before failing with
    /// `Unavailable` (default 10 s).
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// Connects, creates the schema and the `vector` extension if missing, and runs migrations.
    /// An unreachable database is `Unavailable`, naming the URL with its password redacted.
    pub async fn connect(self) -> Result<PostgresStore, StoreError> {
        let url = redact_url(&self.url);
        if !valid_schema(&self.schema) {
            return Err(StoreError::InvalidInput(format!(
                "schema name {:?} must be lowercase ASCII letters, digits and underscores (at most 48), starting with a lowercase letter or underscore",
                self.schema
            )));
        }
        if self.dims == Some(0) {
            return Err(StoreError::InvalidInput("embedding dimension must be at least 1".into()));
        }
        let base = PgConnectOptions::from_str(&self.url)
            .map_err(|e| StoreError::InvalidInput(format!("invalid postgres url {url}: {}", scrub(&e, &self.url))))?;
        let search_path = if self.schema == "public" { "public".to_owned() } else { format!("{},public", self.schema) };
        let options = base.application_name("omoi").options([("search_path", search_path)]);
        // One direct attempt first: a refused or unresolvable server fails now, with its cause,
        // instead of after the pool's acquire timeout.
        let unreachable = |message: String, source: Option<omoi_core::BoxError>| StoreError::Unavailable {
            backend: BACKEND,
            message: format!("cannot connect to {url}: {message}"),
            source,
        };
        match tokio::time::timeout(self.acquire_timeout, sqlx::ConnectOptions::connect(&options)).await {
            Ok(Ok(conn)) => drop(sqlx::Connection::close(conn).await),
            Ok(Err(e)) => return Err(unreachable(scrub(&e, &self.url), Some(Box::new(e)))),
            Err(_) => return Err(unreachable(format!("no answer within {:?}", self.acquire_timeout), None)),
        }
        let pool = PgPoolOptions::new()
            .max_connections(self.max_connections)
            .acquire_timeout(self.acquire_timeout)
            .connect_with(options.clone())
            .await
            .map_err(|e| unreachable(scrub(&e, &self.url), Some(Box::new(e))))?;
        let store = PostgresStore {
            inner: Arc::new(Inner {
                pool,
                clock: self.clock,
                options,
                channel: format!("omoi_events_{}", self.schema),
                schema: self.schema,
                dims: AtomicUsize::new(0),
                url,
                announcer: std::sync::OnceLock::new(),
            }),
        };
        store.bootstrap().await?;
        let key: String = sqlx::query_scalar("SELECT current_database() || '.' || current_schema()")
            .fetch_one(store.pool())
            .await
            .map_err(db)?;
        let _ = store.inner.announcer.set(notify::announcer(&key, store.pool(), &store.inner.channel));
        if let Some(d) = self.dims {
            store.fix_dimensions(d).await?;
        } else {
            store.load_dimensions().await?;
        }
        Ok(store)
    }
}

/// The error's text with the raw URL (should a driver message quote it) redacted.
fn scrub(e: &impl std::fmt::Display, raw_url: &str) -> String {
    let text = e.to_string();
    if raw_url.is_empty() { text } else { text.replace(raw_url, &redact_url(raw_url)) }
}

fn valid_schema(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && s.len() <= 48
}

impl PostgresStore {
    /// Connects with default options (schema `public`, system clock).
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::builder(url).connect().await
    }

    /// A builder for a store at `url` (`postgres://user:password@host:port/database`).
    pub fn builder(url: impl Into<String>) -> PostgresStoreBuilder {
        PostgresStoreBuilder {
            url: url.into(),
            schema: "public".into(),
            clock: Arc::new(SystemClock),
            dims: None,
            max_connections: 16,
            acquire_timeout: Duration::from_secs(10),
        }
    }

    /// The schema holding the store's tables.
    pub fn schema(&self) -> &str {
        &self.inner.schema
    }

    /// Drops the store's schema and everything in it, then closes the pool. For tests and
    /// benchmarks that use a throwaway schema; refuses to drop `public`.
    pub async fn drop_schema(self) -> Result<(), StoreError> {
        if self.inner.schema == "public" {
            return Err(StoreError::InvalidInput("refusing to drop schema public".into()));
        }
        let key: Option<String> = sqlx::query_scalar("SELECT current_database() || '.' || current_schema()")
            .fetch_optional(&self.inner.pool)
            .await
            .ok()
            .flatten();
        let sql = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.inner.schema);
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&self.inner.pool).await.map_err(db)?;
        if let Some(k) = key {
            notify::forget(&k);
        }
        self.inner.pool.close().await;
        Ok(())
    }

    async fn bootstrap(&self) -> Result<(), StoreError> {
        let pool = &self.inner.pool;
        let has_vector: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'vector')")
                .fetch_one(pool)
                .await
                .map_err(db)?;
        if !has_vector {
            // Concurrent creators race on the catalog's unique index; the loser finds it made.
            if let Err(e) = sqlx::query("CREATE EXTENSION IF NOT EXISTS vector SCHEMA public").execute(pool).await
                && error::sqlstate(&e).as_deref() != Some("23505")
            {
                return Err(db(e));
            }
        }
        if self.inner.schema != "public" {
            let sql = format!("CREATE SCHEMA IF NOT EXISTS \"{}\"", self.inner.schema);
            if let Err(e) = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(pool).await
                && error::sqlstate(&e).as_deref() != Some("23505")
            {
                return Err(db(e));
            }
        }
        sqlx::migrate!("./migrations/postgres").run(pool).await.map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(e) => db(e),
            other => StoreError::Backend {
                backend: BACKEND,
                message: format!("migrating schema {}: {other}", self.inner.schema),
                source: Some(Box::new(other)),
            },
        })?;
        Ok(())
    }

    fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// The clock's time at Postgres' precision (microseconds), so values read back compare equal.
    fn now(&self) -> DateTime<Utc> {
        let now = self.inner.clock.now();
        DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
    }

    async fn begin(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        self.inner.pool.begin().await.map_err(db)
    }
}

/// Appends `events` at `at` inside `tx` (see [`PostgresStore`] on cursor order) and has
/// subscribers woken once the transaction ended. Returns the last event's cursor.
async fn emit(
    tx: &mut Transaction<'static, Postgres>,
    at: DateTime<Utc>,
    events: &[Event],
) -> Result<Option<u64>, StoreError> {
    if events.is_empty() {
        return Ok(None);
    }
    let json = serde_json::to_value(events).map_err(|e| StoreError::InvalidInput(format!("event: {e}")))?;
    for v in json.as_array().into_iter().flatten() {
        omoi_core::validate::json_shape("event", v).map_err(StoreError::InvalidInput)?;
    }
    let (last, key): (Option<i64>, String) =
        sqlx::query_as("SELECT omoi_emit($1, $2), current_database() || '.' || current_schema()")
            .bind(at)
            .bind(json)
            .fetch_one(&mut **tx)
            .await
            .map_err(db)?;
    let last = last.map(|l| u64::try_from(l).unwrap_or(0));
    if let Some(l) = last {
        notify::emitted(&key, l);
    }
    Ok(last)
}
