//! A scripted local HTTP server speaking whatever the test tells it to, recording every request;
//! and a clock that records retry waits and returns at once.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use chrono::{DateTime, TimeZone, Utc};
use futures::StreamExt;
use omoi_core::Clock;
use parking_lot::Mutex;
use serde_json::Value;

/// One scripted answer.
#[derive(Debug, Clone)]
pub(crate) enum Reply {
    /// A complete response.
    Full { status: u16, headers: Vec<(&'static str, String)>, body: String },
    /// The reply after a (real-time) delay.
    Delayed(Duration, Box<Reply>),
    /// A 200 whose body stream breaks after `partial` (chunked encoding never terminated).
    BrokenStream { partial: String },
    /// A 200 declaring a `content-length` longer than the `partial` body sent.
    ShortBody { partial: String, declared: usize },
}

impl Reply {
    /// 200 with a JSON body.
    pub(crate) fn ok(body: Value) -> Self {
        Self::status(200, body)
    }

    /// `status` with a JSON body.
    pub(crate) fn status(status: u16, body: Value) -> Self {
        Self::Full { status, headers: Vec::new(), body: body.to_string() }
    }

    /// `status` with a raw body.
    pub(crate) fn raw(status: u16, body: impl Into<String>) -> Self {
        Self::Full { status, headers: Vec::new(), body: body.into() }
    }

    /// This reply with one more header.
    pub(crate) fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        if let Self::Full { headers, .. } = &mut self {
            headers.push((name, value.into()));
        }
        self
    }

    /// This reply after `delay`.
    pub(crate) fn after(self, delay: Duration) -> Self {
        Self::Delayed(delay, Box::new(self))
    }
}

/// A request the fake received.
#[derive(Debug, Clone)]
pub(crate) struct Recorded {
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) headers: HeaderMap,
    /// The body as JSON (`Null` if it was not JSON).
    pub(crate) body: Value,
}

impl Recorded {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[derive(Debug, Default)]
struct Script {
    replies: VecDeque<Reply>,
    requests: Vec<Recorded>,
}

/// The running fake; stops when dropped.
pub(crate) struct Fake {
    url: String,
    script: Arc<Mutex<Script>>,
    server: tokio::task::JoinHandle<()>,
}

impl Fake {
    /// Serves `replies` in order on 127.0.0.1 (a free port); answers 418 once they run out.
    pub(crate) async fn start(replies: Vec<Reply>) -> Self {
        let script = Arc::new(Mutex::new(Script { replies: replies.into(), requests: Vec::new() }));
        let app = axum::Router::new().fallback(handle).with_state(script.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { url, script, server }
    }

    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// Every request received so far.
    pub(crate) fn requests(&self) -> Vec<Recorded> {
        self.script.lock().requests.clone()
    }

    /// The only request received (panics unless exactly one).
    pub(crate) fn only_request(&self) -> Recorded {
        let requests = self.requests();
        assert_eq!(requests.len(), 1, "expected exactly one request, got {}", requests.len());
        requests.into_iter().next().unwrap()
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn handle(
    State(script): State<Arc<Mutex<Script>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let reply = {
        let mut s = script.lock();
        let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
        s.requests.push(Recorded { method, path: uri.path().to_owned(), headers, body });
        s.replies.pop_front()
    };
    match reply {
        Some(reply) => respond(reply).await,
        None => build(418, &[], Body::from(r#"{"error":{"type":"fake","message":"script exhausted"}}"#)),
    }
}

async fn respond(mut reply: Reply) -> Response {
    loop {
        match reply {
            Reply::Delayed(delay, inner) => {
                tokio::time::sleep(delay).await;
                reply = *inner;
            }
            Reply::Full { status, headers, body } => return build(status, &headers, Body::from(body)),
            Reply::BrokenStream { partial } => {
                // The error comes a moment later, so the headers and the partial body go out first.
                let cut = futures::stream::once(async {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Err(std::io::Error::other("connection cut by the fake"))
                });
                let body = futures::stream::iter([Ok(Bytes::from(partial))]).chain(cut);
                return build(200, &[], Body::from_stream(body));
            }
            Reply::ShortBody { partial, declared } => {
                // The body ends a moment later, so the headers and the partial body go out first.
                let end = futures::stream::once(async {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Ok::<_, std::io::Error>(Bytes::new())
                });
                let body = futures::stream::iter([Ok(Bytes::from(partial))]).chain(end);
                let mut response = build(200, &[], Body::from_stream(body));
                response.headers_mut().insert("content-length", HeaderValue::from(declared));
                return response;
            }
        }
    }
}

fn build(status: u16, headers: &[(&'static str, String)], body: Body) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::from_u16(status).unwrap();
    response.headers_mut().insert("content-type", HeaderValue::from_static("application/json"));
    for (name, value) in headers {
        response.headers_mut().insert(*name, HeaderValue::from_str(value).unwrap());
    }
    response
}

/// A clock frozen at 2026-01-01T00:00:00Z whose `sleep` records the wait and returns at once.
#[derive(Debug, Default)]
pub(crate) struct RecordingClock {
    sleeps: Mutex<Vec<Duration>>,
}

impl RecordingClock {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub(crate) fn epoch() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
    }

    /// The waits asked for, in order.
    pub(crate) fn sleeps(&self) -> Vec<Duration> {
        self.sleeps.lock().clone()
    }
}

#[async_trait]
impl Clock for RecordingClock {
    fn now(&self) -> DateTime<Utc> {
        Self::epoch()
    }

    async fn sleep(&self, duration: Duration) {
        self.sleeps.lock().push(duration);
        tokio::task::yield_now().await;
    }
}
