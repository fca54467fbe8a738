//! Shared set-up of the server tests: a real server on an ephemeral port over a real store,
//! an HTTP client, and an SSE reader.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use omoi_core::config::OmoiConfig;
use omoi_core::testkit::{Recording, ScriptedLlm};
use omoi_core::{
    AccessRole, AccessStore, AgentStore, DiscoveryStore, EventStore, InterventionStore, NewTask, SpecPhase, SpecStore,
    Subject, TaskStore,
};
use omoi_examples::server::{RunningServer, Server};
use omoi_exec::Orchestrator;
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// Every port the server uses, for a test to write to the store directly.
pub(crate) trait AllPorts:
    TaskStore + SpecStore + EventStore + AgentStore + DiscoveryStore + InterventionStore + AccessStore + Clone + 'static
{
}
impl<S> AllPorts for S where
    S: TaskStore
        + SpecStore
        + EventStore
        + AgentStore
        + DiscoveryStore
        + InterventionStore
        + AccessStore
        + Clone
        + 'static
{
}

/// The spec idea the recorded conversation answers.
pub(crate) const IDEA: &str = "Add a slugify(text, max_length=None) function with tests to pyutils, our tiny dependency-free \
Python utility package.";

/// A server over `store` with a spec pipeline replaying the spec demo's recording (no task
/// workers: tests move tasks through the store), gated at `gates`.
pub(crate) struct Env<S> {
    pub(crate) store: S,
    pub(crate) server: RunningServer,
    pub(crate) orch: Arc<Orchestrator>,
    pub(crate) http: reqwest::Client,
    /// An admin key of project `alpha`.
    pub(crate) admin: String,
    pub(crate) _dir: Option<tempfile::TempDir>,
}

/// A server on a fresh SQLite file.
pub(crate) async fn sqlite(gates: Vec<SpecPhase>) -> Env<omoi_store::SqliteStore> {
    let dir = tempfile::tempdir().unwrap();
    let store = omoi_store::SqliteStore::open(dir.path().join("omoi.db")).await.unwrap();
    let mut env = start(store, gates).await;
    env._dir = Some(dir);
    env
}

/// A server on a fresh Postgres schema, or `None` (skipped, said on stderr) outside CI when
/// `OMOI_TEST_POSTGRES_URL` is not set; under `CI=true` a missing Postgres fails.
pub(crate) async fn postgres() -> Option<Env<omoi_store::PostgresStore>> {
    let url = omoi_core::testkit::service_url("OMOI_TEST_POSTGRES_URL")?;
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let random = uuid::Uuid::now_v7().simple().to_string();
    let store = omoi_store::PostgresStore::builder(url)
        .schema(format!("omoi_t_{secs}_{}", &random[20..]))
        .max_connections(16)
        .connect()
        .await
        .expect("connect to the test postgres");
    Some(start(store, Vec::new()).await)
}

pub(crate) async fn start<S: AllPorts>(store: S, gates: Vec<SpecPhase>) -> Env<S> {
    let recording: Recording =
        serde_json::from_str(include_str!("../../recordings/spec_demo.json")).expect("the spec demo recording");
    let mut config = OmoiConfig::default();
    config.spec.approval_gates = gates;
    let orch = Orchestrator::builder(store.clone())
        .spec_model(Arc::new(ScriptedLlm::from_recording(recording)))
        .config(config)
        .build()
        .expect("orchestrator");
    let orch = Arc::new(orch);
    let server = Server::new(store.clone(), Some(orch.clone())).spawn("127.0.0.1:0").await.expect("spawn");
    let admin = server.create_key("alpha", AccessRole::Admin).await.expect("admin key");
    Env { store, server, orch, http: reqwest::Client::new(), admin, _dir: None }
}

impl<S: AllPorts> Env<S> {
    /// `method path` with `key` (none: no Authorization header) and an optional JSON body.
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.server.url()));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        let json =
            if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        (status, json)
    }

    pub(crate) async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, Some(&self.admin), None).await
    }

    pub(crate) async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(&self.admin), Some(body)).await
    }

    /// The store as its access port.
    pub(crate) fn store_access(&self) -> &dyn AccessStore {
        &self.store
    }

    /// A key of `project` with `role`.
    pub(crate) async fn key(&self, project: &str, role: AccessRole) -> String {
        self.server.create_key(project, role).await.unwrap()
    }

    /// Inserts `tasks` (no spec) owned by `project`.
    pub(crate) async fn insert_owned(&self, project: &str, tasks: Vec<NewTask>) -> Vec<omoi_core::TaskId> {
        let ids = self.store.insert_tasks(tasks).await.unwrap();
        for id in &ids {
            self.store.assign_owner(Subject::Task(*id), project).await.unwrap();
        }
        ids
    }

    /// Polls `GET /api/specs/{id}` until its state satisfies `done` (10 s at most).
    pub(crate) async fn wait_spec(&self, id: &str, done: impl Fn(&str) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let (status, body) = self.get(&format!("/api/specs/{id}")).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            let state = body["spec"]["state"].as_str().unwrap_or_default().to_owned();
            if done(&state) {
                return body;
            }
            assert!(tokio::time::Instant::now() < deadline, "spec {id} stuck in {state}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// One server-sent event.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sse {
    pub(crate) id: Option<String>,
    pub(crate) event: Option<String>,
    pub(crate) data: String,
}

/// Reads server-sent events from a response.
pub(crate) struct SseReader {
    body: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buf: String,
}

impl SseReader {
    /// Opens `url` (a full URL) with `key`, resuming after `last_id`.
    pub(crate) async fn open(http: &reqwest::Client, url: &str, key: &str, last_id: Option<&str>) -> Self {
        let mut req = http.get(url).bearer_auth(key);
        if let Some(id) = last_id {
            req = req.header("Last-Event-ID", id);
        }
        let resp = req.send().await.expect("connect the stream");
        assert_eq!(resp.status(), StatusCode::OK);
        let ct = resp.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(ct.starts_with("text/event-stream"), "{ct}");
        Self { body: resp.bytes_stream().boxed(), buf: String::new() }
    }

    /// The next event (comments such as keep-alives skipped), waiting at most `within`.
    pub(crate) async fn next(&mut self, within: Duration) -> Option<Sse> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut ev = Sse { id: None, event: None, data: String::new() };
                let mut any = false;
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        ev.id = Some(v.trim().to_owned());
                        any = true;
                    } else if let Some(v) = line.strip_prefix("event:") {
                        ev.event = Some(v.trim().to_owned());
                        any = true;
                    } else if let Some(v) = line.strip_prefix("data:") {
                        ev.data.push_str(v.strip_prefix(' ').unwrap_or(v));
                        any = true;
                    }
                }
                if any {
                    return Some(ev);
                }
                continue;
            }
            let chunk = tokio::time::timeout_at(deadline, self.body.next()).await.ok()??;
            self.buf.push_str(&String::from_utf8_lossy(&chunk.expect("stream chunk")));
        }
    }
}
