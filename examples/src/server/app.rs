//! The server value: the stores it serves, its options, the router and a running instance.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::Request;
use omoi_core::{
    AccessRole, AccessStore, AgentStore, ApiKey, DiscoveryStore, EventStore, InterventionStore, SpecStore, StoreError,
    Subject, TaskId, TaskStore,
};
use omoi_exec::Orchestrator;
use tokio::net::{TcpListener, ToSocketAddrs};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::CorsLayer;
use tower_http::trace::TraceLayer;

use super::activity::Activity;
use super::auth::{self, Owners};
use super::error::{ApiError, ErrorCode};
use super::routes;

/// Every store port the server uses, as trait objects over one store value.
#[derive(Clone)]
pub struct Backend {
    /// Tasks.
    pub tasks: Arc<dyn TaskStore>,
    /// Specs and tickets.
    pub specs: Arc<dyn SpecStore>,
    /// The event log.
    pub events: Arc<dyn EventStore>,
    /// Agents.
    pub agents: Arc<dyn AgentStore>,
    /// Discoveries.
    pub discoveries: Arc<dyn DiscoveryStore>,
    /// Interventions.
    pub interventions: Arc<dyn InterventionStore>,
    /// API keys and ownership.
    pub access: Arc<dyn AccessStore>,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend").finish_non_exhaustive()
    }
}

impl Backend {
    /// The ports of one store value (the memory, SQLite and Postgres adapters implement them all).
    pub fn new<S>(store: S) -> Self
    where
        S: TaskStore
            + SpecStore
            + EventStore
            + AgentStore
            + DiscoveryStore
            + InterventionStore
            + AccessStore
            + Clone
            + 'static,
    {
        Self {
            tasks: Arc::new(store.clone()),
            specs: Arc::new(store.clone()),
            events: Arc::new(store.clone()),
            agents: Arc::new(store.clone()),
            discoveries: Arc::new(store.clone()),
            interventions: Arc::new(store.clone()),
            access: Arc::new(store),
        }
    }
}

/// Server settings.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Answer cross-origin requests from any origin (off by default).
    pub cors: bool,
    /// Largest request body accepted (413 beyond).
    pub max_body_bytes: usize,
    /// Interval of the event stream's keep-alive comments.
    pub keep_alive: Duration,
    /// An agent whose last heartbeat is older than this is reported `stale`.
    pub stale_after: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            cors: false,
            max_body_bytes: 64 * 1024,
            keep_alive: Duration::from_secs(15),
            stale_after: Duration::from_secs(90),
        }
    }
}

/// What every handler sees.
pub struct App {
    /// The stores.
    pub backend: Backend,
    /// The orchestrator running specs (`None`: spec routes answer 501).
    pub orchestrator: Option<Arc<Orchestrator>>,
    /// Settings.
    pub options: ServerOptions,
    /// The read model of the event log.
    pub activity: Activity,
    /// Ownership, cached.
    pub owners: Owners,
    /// Cancelled when the server stops (ends the event streams).
    pub stop: CancellationToken,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").field("options", &self.options).field("activity", &self.activity).finish()
    }
}

impl App {
    /// The orchestrator, or 501.
    pub fn orchestrator(&self) -> Result<&Arc<Orchestrator>, ApiError> {
        self.orchestrator
            .as_ref()
            .ok_or_else(|| ApiError::new(ErrorCode::NotConfigured, "this server runs no spec pipeline"))
    }
}

/// The handlers' state.
pub type AppState = Arc<App>;

/// The reference server: build it over a store, then [`spawn`](Self::spawn) it or take its
/// [`router`](Self::router).
#[derive(Debug)]
pub struct Server {
    backend: Backend,
    orchestrator: Option<Arc<Orchestrator>>,
    options: ServerOptions,
}

impl Server {
    /// A server over `store`, running specs with `orchestrator` (built over the same store).
    pub fn new<S>(store: S, orchestrator: Option<Arc<Orchestrator>>) -> Self
    where
        S: TaskStore
            + SpecStore
            + EventStore
            + AgentStore
            + DiscoveryStore
            + InterventionStore
            + AccessStore
            + Clone
            + 'static,
    {
        Self::from_backend(Backend::new(store), orchestrator)
    }

    /// A server over the ports of `backend`.
    pub fn from_backend(backend: Backend, orchestrator: Option<Arc<Orchestrator>>) -> Self {
        Self { backend, orchestrator, options: ServerOptions::default() }
    }

    /// Replaces the settings.
    pub fn options(mut self, options: ServerOptions) -> Self {
        self.options = options;
        self
    }

    /// The router, and its read model following the event log until `stop` is cancelled.
    pub fn router(self, stop: CancellationToken) -> Router {
        let activity = Activity::default();
        activity.follow(self.backend.events.clone(), stop.clone());
        let cors = self.options.cors;
        let limit = self.options.max_body_bytes;
        let state: AppState = Arc::new(App {
            backend: self.backend,
            orchestrator: self.orchestrator,
            options: self.options,
            activity,
            owners: Owners::default(),
            stop,
        });
        let trace = TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
            // The path only: the event stream's `?key=` must never reach the logs.
            tracing::info_span!("http", method = %req.method(), path = %req.uri().path(), project = tracing::field::Empty)
        });
        let mut router = routes::router()
            .with_state(state)
            .layer(DefaultBodyLimit::max(limit))
            .layer(CatchPanicLayer::custom(|_| {
                axum::response::IntoResponse::into_response(ApiError::new(ErrorCode::Internal, "internal error"))
            }))
            .layer(trace);
        if cors {
            router = router.layer(CorsLayer::permissive());
        }
        router
    }

    /// Binds `addr` (`"127.0.0.1:0"` for an ephemeral port) and serves until
    /// [`RunningServer::shutdown`].
    pub async fn spawn(self, addr: impl ToSocketAddrs) -> std::io::Result<RunningServer> {
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let backend = self.backend.clone();
        let stop = CancellationToken::new();
        let router = self.router(stop.clone());
        let graceful = stop.clone();
        let handle = tokio::spawn(async move {
            axum::serve(listener, router).with_graceful_shutdown(async move { graceful.cancelled().await }).await
        });
        Ok(RunningServer { addr: local, backend, stop, handle })
    }
}

/// A server serving on a port.
#[derive(Debug)]
pub struct RunningServer {
    addr: SocketAddr,
    backend: Backend,
    stop: CancellationToken,
    handle: JoinHandle<std::io::Result<()>>,
}

impl RunningServer {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The stores it serves.
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// A new key for `project` with `role`: returns the key itself (shown once).
    pub async fn create_key(&self, project: &str, role: AccessRole) -> Result<String, StoreError> {
        Ok(auth::create_key(self.backend.access.as_ref(), project, role).await?.1)
    }

    /// A new key and its stored form.
    pub async fn create_key_full(&self, project: &str, role: AccessRole) -> Result<(ApiKey, String), StoreError> {
        auth::create_key(self.backend.access.as_ref(), project, role).await
    }

    /// Gives task `id` (inserted without a spec) to `project`, so that project's keys see it.
    pub async fn assign_task(&self, project: &str, id: TaskId) -> Result<(), StoreError> {
        self.backend.access.assign_owner(Subject::Task(id), project).await
    }

    /// Stops accepting, finishes open requests (event streams end) and waits.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        match (&mut self.handle).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "server stopped with an error"),
            Err(e) => tracing::warn!(error = %e, "server task failed"),
        }
    }
}

impl Drop for RunningServer {
    /// A server dropped without [`shutdown`](Self::shutdown) stops too (without waiting).
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
