//! The reference server: one omoi store behind a REST API, a live event stream and a page.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use omoi_core::AccessRole;
//! use omoi_examples::server::Server;
//! use omoi_exec::{Orchestrator, executor_fn};
//! use omoi_store::SqliteStore;
//!
//! let store = SqliteStore::open("omoi.db").await?;
//! let orch = Orchestrator::builder(store.clone())
//!     .executor(executor_fn(|task, _ctx| async move { Ok(serde_json::json!({ "done": task.def.title })) }))
//!     .build()?;
//! orch.start();
//! let server = Server::new(store, Some(Arc::new(orch))).spawn("127.0.0.1:0").await?;
//! let key = server.create_key("demo", AccessRole::Admin).await?;
//! println!("{} — Authorization: Bearer {key}", server.url());
//! server.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Routes (see `GET /openapi.json` for the full description): `GET /health` (no key);
//! `/api/specs` (create, list, get, approve, reject); `/api/tasks` (list with filters, counts,
//! detail, cancel and retry, one or many); `/api/agents` (health, steer); `/api/discoveries`;
//! `/api/interventions`; `/api/cost`; `/api/events` (server-sent events resumable with
//! `Last-Event-ID`); `/api/keys` (admin). Every route but health needs an API key scoped to a
//! project ([`auth`]); another project's entity answers 404, a read-only key's write 403.

mod activity;
mod app;
pub mod auth;
mod error;
mod openapi;
mod page;
mod routes;
mod stream;

pub use activity::Activity;
pub use app::{App, AppState, Backend, RunningServer, Server, ServerOptions};
pub use error::{ApiError, ErrorBody, ErrorCode, ErrorDetail};
pub use omoi_core::AccessRole as Role;
pub use openapi::ApiDoc;
