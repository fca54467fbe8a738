//! The SQLite adapter: every store port in one file on disk (see [`SqliteStore`]).

mod access;
mod agents;
mod codec;
mod discoveries;
mod error;
mod events;
mod interventions;
mod memories;
mod specs;
mod tasks;
mod write;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use omoi_core::{Clock, StoreError, SystemClock};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use tokio::sync::Notify;
use tracing::Instrument;

use self::error::BACKEND;

/// How long a connection waits for another process's write lock before giving up (`Unavailable`).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an operation waits for a pooled connection before giving up (`Unavailable`).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);
/// Reader connections unless the builder says otherwise.
const DEFAULT_READERS: u32 = 4;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// Every store port on one SQLite file. Cheap to clone: clones share the connection pools.
///
/// Built on sqlx with a bundled libsqlite3 (FTS5 included), so it compiles anywhere. The
/// database runs in WAL mode with `synchronous = NORMAL` and a busy timeout; the schema comes from
/// the migrations in `migrations/sqlite`, applied on open.
///
/// | port | supported |
/// |---|---|
/// | `TaskStore` | yes: a claim is one `BEGIN IMMEDIATE` write transaction, so it is exactly-once across threads and processes |
/// | `SpecStore` | yes |
/// | `AgentStore` | yes |
/// | `EventStore` | yes: events are rows written in the transaction of their change (outbox); subscribers are woken in-process and poll every 250 ms for other processes' writes |
/// | `MemoryStore` | yes: FTS5 (BM25) keywords and exact cosine over little-endian `f32` blobs, fused by RRF |
/// | `DiscoveryStore` | yes: recording and branching is one `BEGIN IMMEDIATE` transaction |
///
/// Writes go through one writer connection per process (the process-wide write lock) and
/// `BEGIN IMMEDIATE` (the file's write lock), so writers never deadlock upgrading a read lock;
/// reads use a separate pool and never block the writer. Every time comes from the injected
/// [`Clock`] and is stored as integer microseconds since the epoch. Several processes may open the
/// same file: they share the queue and see each other's events.
///
/// Errors: a busy or locked database and pool timeouts are [`StoreError::Unavailable`]
/// (retryable); a file that cannot be opened is `Unavailable` naming the path.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use std::time::Duration;
/// use omoi_core::{AgentId, ClaimRequest, Completion, NewTask, TaskStore};
/// use omoi_store::SqliteStore;
///
/// let dir = tempfile::tempdir().unwrap();
/// let store = SqliteStore::open(dir.path().join("omoi.db")).await.unwrap();
/// let build = NewTask::new("build");
/// let test = NewTask::new("test").depends_on([build.id]);
/// store.insert_tasks(vec![build.clone(), test.clone()]).await.unwrap();
/// let claimed = store.claim(&ClaimRequest::new(AgentId::new(), 10, Duration::from_secs(30))).await.unwrap();
/// assert_eq!(claimed.len(), 1);
/// let released = store.complete(build.id, claimed[0].lease.token, Completion::default()).await.unwrap();
/// assert_eq!(released, vec![test.id]);
/// # });
/// ```
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    /// One connection: the process-wide write lock.
    writer: SqlitePool,
    /// Read-only work (gets, lists, event tails).
    readers: SqlitePool,
    clock: Arc<dyn Clock>,
    /// Woken after every commit that wrote events, for subscribers of this process.
    appended: Notify,
    /// The memory embedding dimension, once known (it never changes afterwards).
    dims: OnceLock<usize>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .field("dims", &self.inner.dims.get())
            .field("clock", &self.inner.clock)
            .finish()
    }
}

/// Options for [`SqliteStore`]; finish with [`SqliteStoreBuilder::open`].
#[derive(Debug)]
pub struct SqliteStoreBuilder {
    path: PathBuf,
    clock: Arc<dyn Clock>,
    dims: Option<usize>,
    max_connections: u32,
}

impl SqliteStoreBuilder {
    /// Takes time from `clock` (a `ManualClock` in tests) instead of the system clock.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Fixes the embedding dimension of memories. Without it the first memory stored fixes it.
    /// The dimension is kept in the file; opening it with another one fails.
    pub fn dimensions(mut self, dims: usize) -> Self {
        self.dims = Some(dims);
        self
    }

    /// Reader connections (at least 1; default 4). Writes always use one connection.
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// Opens (creating if needed) the database file and applies pending migrations.
    ///
    /// Errors: `Unavailable` naming the path if the file cannot be opened; `DimensionMismatch`
    /// if the file already holds memories of another dimension than [`Self::dimensions`].
    pub async fn open(self) -> Result<SqliteStore, StoreError> {
        let span = tracing::debug_span!("sqlite.open", path = %self.path.display());
        self.open_inner().instrument(span).await
    }

    async fn open_inner(self) -> Result<SqliteStore, StoreError> {
        // A missing directory is a mistake in the path, not an outage: say so, and do not
        // invite retries.
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty())
            && !dir.is_dir()
        {
            return Err(StoreError::InvalidInput(format!(
                "cannot open {}: directory {} does not exist",
                self.path.display(),
                dir.display()
            )));
        }
        let options = SqliteConnectOptions::new()
            .filename(&self.path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true)
            .statement_cache_capacity(256);
        let cannot_open = |e: sqlx::Error| StoreError::Unavailable {
            backend: BACKEND,
            message: format!("cannot open {}: {e}", self.path.display()),
            source: Some(Box::new(e)),
        };
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await
            .map_err(cannot_open)?;
        MIGRATOR.run(&writer).await.map_err(|e| StoreError::Backend {
            backend: BACKEND,
            message: format!("migrating {}: {e}", self.path.display()),
            source: Some(Box::new(e)),
        })?;
        let readers = SqlitePoolOptions::new()
            .max_connections(self.max_connections)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .test_before_acquire(false)
            .connect_with(options)
            .await
            .map_err(cannot_open)?;
        let store = SqliteStore {
            inner: Arc::new(Inner {
                path: self.path,
                writer,
                readers,
                clock: self.clock,
                appended: Notify::new(),
                dims: OnceLock::new(),
            }),
        };
        store.init_dimensions(self.dims).await?;
        Ok(store)
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` on the system clock, with default
    /// options. See [`SqliteStore::builder`] for more.
    pub async fn open(path: impl AsRef<Path>) -> Result<SqliteStore, StoreError> {
        Self::builder(path).open().await
    }

    /// Options for opening the database at `path`.
    pub fn builder(path: impl AsRef<Path>) -> SqliteStoreBuilder {
        SqliteStoreBuilder {
            path: path.as_ref().to_path_buf(),
            clock: Arc::new(SystemClock),
            dims: None,
            max_connections: DEFAULT_READERS,
        }
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    fn readers(&self) -> &SqlitePool {
        &self.inner.readers
    }

    /// The current time, truncated to what the database stores (microseconds).
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        codec::truncate(self.inner.clock.now())
    }
}
