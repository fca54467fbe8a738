//! A local fake of the documented subset of Daytona's API, for tests.
//!
//! Control API (`/api`): `POST /sandbox`, `GET /sandbox/{id}` (a new sandbox is `creating` for
//! two polls, then `started`), `DELETE /sandbox/{id}`. Toolbox (`/toolbox/{id}`):
//! `POST /process/execute` `{command, cwd, envs, timeout}` → `{exitCode, result}` — the command
//! really runs with `sh -c` in its own process group, in a directory per sandbox, with stdout
//! and stderr merged like the real daemon, and is killed (HTTP 408) at its timeout;
//! `POST /files/upload?path=` (multipart field `file`); `GET /files/download?path=`.
//! Every request needs `Authorization: Bearer <key>`. Faults can be injected: the next N
//! requests fail with a status, every request is delayed, or new sandboxes never start or go to
//! `error`.

#![allow(dead_code, unreachable_pub)]

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Multipart, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;

/// How a new sandbox behaves after `POST /sandbox`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// `creating` for two polls, then `started`.
    Normal,
    /// `creating` forever.
    Never,
    /// `error` with a reason.
    Error,
}

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: String,
    pub organization: Option<String>,
    pub status: u16,
}

struct FakeSandbox {
    dir: PathBuf,
    state: String,
    polls_left: u32,
    start: Start,
    env: HashMap<String, String>,
    groups: HashSet<u32>,
}

struct Inner {
    key: String,
    root: tempfile::TempDir,
    sandboxes: Mutex<HashMap<String, FakeSandbox>>,
    fail_next: Mutex<VecDeque<(Option<String>, u16)>>,
    delay: Mutex<Duration>,
    start: Mutex<Start>,
    seen: Mutex<Vec<Seen>>,
    bodies: Mutex<Vec<Value>>,
}

/// A running fake.
#[derive(Clone)]
pub struct FakeDaytona {
    base: String,
    inner: Arc<Inner>,
}

impl FakeDaytona {
    /// Starts a fake on the current runtime (it stops with the runtime).
    pub async fn start(key: &str) -> Self {
        let inner = Arc::new(Inner {
            key: key.to_owned(),
            root: tempfile::tempdir().unwrap(),
            sandboxes: Mutex::default(),
            fail_next: Mutex::default(),
            delay: Mutex::new(Duration::ZERO),
            start: Mutex::new(Start::Normal),
            seen: Mutex::default(),
            bodies: Mutex::default(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = Router::new()
            .route("/api/sandbox", post(create))
            .route("/api/sandbox/{id}", get(sandbox_info).delete(delete))
            .route("/toolbox/{id}/process/execute", post(execute))
            .route("/toolbox/{id}/files/upload", post(upload))
            .route("/toolbox/{id}/files/download", get(download))
            .layer(middleware::from_fn_with_state(Arc::clone(&inner), gate))
            .with_state(Arc::clone(&inner));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { base, inner }
    }

    /// One fake for the whole test binary, on its own thread and runtime (so it outlives
    /// every test's runtime).
    pub fn shared(key: &'static str) -> Self {
        static FAKE: OnceLock<FakeDaytona> = OnceLock::new();
        FAKE.get_or_init(|| {
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().unwrap();
                rt.block_on(async {
                    tx.send(FakeDaytona::start(key).await).unwrap();
                    std::future::pending::<()>().await
                });
            });
            rx.recv().unwrap()
        })
        .clone()
    }

    pub fn api_url(&self) -> String {
        format!("{}/api", self.base)
    }

    pub fn toolbox_url(&self) -> String {
        format!("{}/toolbox", self.base)
    }

    /// The next `n` requests fail with `status`.
    pub fn fail_next(&self, n: usize, status: u16) {
        self.inner.fail_next.lock().unwrap().extend(std::iter::repeat_n((None, status), n));
    }

    /// The next `n` requests whose path ends with `suffix` fail with `status`.
    pub fn fail_next_on(&self, suffix: &str, n: usize, status: u16) {
        self.inner.fail_next.lock().unwrap().extend(std::iter::repeat_n((Some(suffix.to_owned()), status), n));
    }

    pub fn clear_faults(&self) {
        self.inner.fail_next.lock().unwrap().clear();
        *self.inner.delay.lock().unwrap() = Duration::ZERO;
    }

    /// Every request waits this long first.
    pub fn delay(&self, d: Duration) {
        *self.inner.delay.lock().unwrap() = d;
    }

    pub fn start_behaviour(&self, start: Start) {
        *self.inner.start.lock().unwrap() = start;
    }

    /// Sandboxes that exist (not deleted).
    pub fn live_sandboxes(&self) -> Vec<String> {
        self.inner.sandboxes.lock().unwrap().keys().cloned().collect()
    }

    /// Labels of a live sandbox, from its create body.
    pub fn create_bodies(&self) -> Vec<Value> {
        self.inner.bodies.lock().unwrap().clone()
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.inner.seen.lock().unwrap().clone()
    }

    /// Deletes a sandbox behind the adapter's back.
    pub fn delete_directly(&self, id: &str) {
        if let Some(sb) = self.inner.sandboxes.lock().unwrap().remove(id) {
            let _ = std::fs::remove_dir_all(sb.dir);
        }
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "statusCode": status.as_u16(), "message": message }))).into_response()
}

/// Authentication, fault injection and the request log.
async fn gate(State(inner): State<Arc<Inner>>, req: Request, next: Next) -> Response {
    let delay = *inner.delay.lock().unwrap();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut seen = Seen {
        method: req.method().to_string(),
        path: req.uri().path().to_owned(),
        query: req.uri().query().unwrap_or_default().to_owned(),
        organization: header(req.headers(), "x-daytona-organization-id"),
        status: 0,
    };
    let authorized = header(req.headers(), "authorization") == Some(format!("Bearer {}", inner.key));
    let injected = {
        let mut faults = inner.fail_next.lock().unwrap();
        let hit = faults.iter().position(|(suffix, _)| suffix.as_ref().is_none_or(|s| seen.path.ends_with(s.as_str())));
        hit.and_then(|i| faults.remove(i)).map(|(_, status)| status)
    };
    let response = if !authorized {
        error(StatusCode::UNAUTHORIZED, "Unauthorized")
    } else if let Some(status) = injected {
        error(StatusCode::from_u16(status).unwrap(), "injected failure")
    } else {
        next.run(req).await
    };
    seen.status = response.status().as_u16();
    inner.seen.lock().unwrap().push(seen);
    response
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

fn info(id: &str, sb: &FakeSandbox) -> Value {
    let reason = (sb.state == "error").then_some("injected start failure");
    json!({ "id": id, "state": sb.state, "errorReason": reason, "cpu": 1, "memory": 1, "disk": 3 })
}

async fn create(State(inner): State<Arc<Inner>>, axum::Json(body): axum::Json<Value>) -> Response {
    if !body.is_object() || body.get("labels").is_some_and(|l| !l.is_object()) {
        return error(StatusCode::BAD_REQUEST, "invalid body");
    }
    let id = uuid::Uuid::now_v7().to_string();
    let dir = inner.root.path().join(&id);
    std::fs::create_dir_all(&dir).unwrap();
    let env = body
        .get("env")
        .and_then(Value::as_object)
        .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned()))).collect())
        .unwrap_or_default();
    let start = *inner.start.lock().unwrap();
    let sb = FakeSandbox { dir, state: "creating".into(), polls_left: 2, start, env, groups: HashSet::new() };
    let answer = info(&id, &sb);
    inner.sandboxes.lock().unwrap().insert(id, sb);
    inner.bodies.lock().unwrap().push(body);
    axum::Json(answer).into_response()
}

async fn sandbox_info(State(inner): State<Arc<Inner>>, Path(id): Path<String>) -> Response {
    let mut sandboxes = inner.sandboxes.lock().unwrap();
    let Some(sb) = sandboxes.get_mut(&id) else { return error(StatusCode::NOT_FOUND, "Sandbox not found") };
    if sb.state == "creating" {
        match sb.start {
            Start::Never => {}
            Start::Error => sb.state = "error".into(),
            Start::Normal => {
                sb.polls_left = sb.polls_left.saturating_sub(1);
                if sb.polls_left == 0 {
                    sb.state = "started".into();
                }
            }
        }
    }
    axum::Json(info(&id, sb)).into_response()
}

fn kill_group(pgid: u32) {
    let _ = std::process::Command::new("kill").arg("-KILL").arg(format!("-{pgid}")).status();
}

async fn delete(State(inner): State<Arc<Inner>>, Path(id): Path<String>) -> Response {
    let Some(sb) = inner.sandboxes.lock().unwrap().remove(&id) else {
        return error(StatusCode::NOT_FOUND, "Sandbox not found");
    };
    sb.groups.iter().copied().for_each(kill_group);
    let _ = std::fs::remove_dir_all(&sb.dir);
    axum::Json(json!({ "id": id, "state": "destroyed" })).into_response()
}

#[derive(Deserialize)]
struct ExecuteBody {
    command: String,
    cwd: Option<String>,
    #[serde(default)]
    envs: HashMap<String, String>,
    timeout: Option<u32>,
}

async fn execute(
    State(inner): State<Arc<Inner>>,
    Path(id): Path<String>,
    axum::Json(body): axum::Json<ExecuteBody>,
) -> Response {
    let (dir, env) = {
        let sandboxes = inner.sandboxes.lock().unwrap();
        let Some(sb) = sandboxes.get(&id) else { return error(StatusCode::NOT_FOUND, "Sandbox not found") };
        if sb.state != "started" {
            return error(StatusCode::BAD_REQUEST, "sandbox is not started");
        }
        (sb.dir.clone(), sb.env.clone())
    };
    if body.command.trim().is_empty() {
        return error(StatusCode::BAD_REQUEST, "empty command");
    }
    let mut cmd = tokio::process::Command::new("sh");
    // Like the daemon: one output buffer for both streams.
    cmd.arg("-c")
        .arg(format!("exec 2>&1\n{}", body.command))
        .current_dir(body.cwd.map(PathBuf::from).unwrap_or_else(|| dir.clone()))
        .env("HOME", &dir)
        .envs(env)
        .envs(body.envs)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0);
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => return axum::Json(json!({ "exitCode": -1, "result": e.to_string() })).into_response(),
    };
    let pgid = child.id().unwrap();
    if let Some(sb) = inner.sandboxes.lock().unwrap().get_mut(&id) {
        sb.groups.insert(pgid);
    }
    let mut stdout = child.stdout.take().unwrap();
    let reader = tokio::spawn(async move {
        let mut out = Vec::new();
        let _ = stdout.read_to_end(&mut out).await;
        out
    });
    let limit = body.timeout.filter(|t| *t > 0).map(|t| Duration::from_secs(u64::from(t)));
    let waited = match limit {
        Some(limit) => tokio::time::timeout(limit, child.wait()).await.ok(),
        None => Some(child.wait().await),
    };
    let forget = |inner: &Inner| {
        if let Some(sb) = inner.sandboxes.lock().unwrap().get_mut(&id) {
            sb.groups.remove(&pgid);
        }
    };
    let Some(status) = waited else {
        kill_group(pgid);
        let _ = child.wait().await;
        forget(&inner);
        return error(StatusCode::REQUEST_TIMEOUT, "Command execution timed out");
    };
    // Like Go's exec: wait until every holder of the output pipe is gone.
    let output = reader.await.unwrap_or_default();
    forget(&inner);
    let code = status.ok().and_then(|s| s.code()).unwrap_or(-1);
    axum::Json(json!({ "exitCode": code, "result": String::from_utf8_lossy(&output) })).into_response()
}

#[derive(Deserialize)]
struct PathQuery {
    path: String,
}

fn known(inner: &Inner, id: &str) -> bool {
    inner.sandboxes.lock().unwrap().contains_key(id)
}

async fn upload(
    State(inner): State<Arc<Inner>>,
    Path(id): Path<String>,
    Query(q): Query<PathQuery>,
    mut form: Multipart,
) -> Response {
    if !known(&inner, &id) {
        return error(StatusCode::NOT_FOUND, "Sandbox not found");
    }
    let mut data: Option<Bytes> = None;
    while let Ok(Some(field)) = form.next_field().await {
        if field.name() == Some("file") {
            data = field.bytes().await.ok();
        }
    }
    let Some(data) = data else { return error(StatusCode::BAD_REQUEST, "no file field") };
    let path = PathBuf::from(&q.path);
    if let Some(Err(e)) = path.parent().map(std::fs::create_dir_all) {
        return error(StatusCode::BAD_REQUEST, &e.to_string());
    }
    match std::fs::write(&path, &data) {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

async fn download(State(inner): State<Arc<Inner>>, Path(id): Path<String>, Query(q): Query<PathQuery>) -> Response {
    if !known(&inner, &id) {
        return error(StatusCode::NOT_FOUND, "Sandbox not found");
    }
    match std::fs::metadata(&q.path) {
        Err(_) => error(StatusCode::NOT_FOUND, "file not found"),
        Ok(m) if m.is_dir() => error(StatusCode::BAD_REQUEST, "path must be a file"),
        Ok(_) => match std::fs::read(&q.path) {
            Ok(bytes) => ([("content-type", "application/octet-stream")], bytes).into_response(),
            Err(e) => error(StatusCode::FORBIDDEN, &e.to_string()),
        },
    }
}
