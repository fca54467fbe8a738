//! The live event stream (`GET /api/events`, server-sent events).
//!
//! Each store event is one message: `id` is its cursor, `event` its dotted name, `data` the
//! stored event as JSON. `Last-Event-ID` (sent by `EventSource` on reconnect) or `?after=`
//! resumes right after that cursor: every missed event once, in order, then the live tail (the
//! store's `subscribe` guarantees it). Without either the stream starts at the current end.
//! Events about another project's entities are not sent.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::{Stream, StreamExt};
use omoi_core::{AgentId, Cursor, Event, SpecId, StoreError, StoredEvent, Subject, TaskId};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::app::AppState;
use super::auth::Caller;
use super::error::{ApiError, ApiQuery, ErrorBody};

/// `GET /api/events` query.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct StreamQuery {
    /// Only events about this spec or its tasks.
    #[param(value_type = Option<String>, format = Uuid)]
    pub spec: Option<SpecId>,
    /// Only events about this task.
    #[param(value_type = Option<String>, format = Uuid)]
    pub task: Option<TaskId>,
    /// Only events about this agent.
    #[param(value_type = Option<String>, format = Uuid)]
    pub agent: Option<AgentId>,
    /// Start after this cursor (`Last-Event-ID` wins when both are given).
    pub after: Option<u64>,
    /// The API key, for clients that cannot send headers (`EventSource`); read by the
    /// authentication, declared here so the query is accepted and documented.
    #[allow(dead_code)]
    pub key: Option<String>,
}

/// Most per-stream visibility answers kept before the cache is cleared.
const CACHE_LIMIT: usize = 100_000;

struct Ctx {
    state: AppState,
    project: String,
    query: StreamQuery,
    /// Visibility (and, for tasks, spec) per subject.
    seen: Mutex<HashMap<Subject, (bool, Option<SpecId>)>>,
}

enum Out {
    Skip,
    Send(Box<SseEvent>),
    End,
}

fn data_id(data: &Value, field: &str) -> Option<String> {
    data.get(field).and_then(Value::as_str).map(str::to_owned)
}

impl Ctx {
    fn new(state: AppState, project: String, query: StreamQuery) -> Self {
        Self { state, project, query, seen: Mutex::new(HashMap::new()) }
    }

    /// Whether the caller's project may see `subject`, and the spec of a task.
    async fn subject(&self, subject: Subject) -> Result<(bool, Option<SpecId>), StoreError> {
        if let Some(v) = self.seen.lock().get(&subject) {
            return Ok(*v);
        }
        let access = self.state.backend.access.as_ref();
        let owners = &self.state.owners;
        let v = match subject {
            Subject::Task(id) => match self.state.backend.tasks.get_task(id).await {
                Ok(t) => (owners.of_task(access, &t).await?.as_deref() == Some(self.project.as_str()), t.links.spec_id),
                Err(StoreError::NotFound { .. }) => (false, None),
                Err(e) => return Err(e),
            },
            Subject::Spec(id) => {
                (owners.of_spec(access, id).await?.as_deref() == Some(self.project.as_str()), Some(id))
            }
            Subject::Ticket(id) => match self.state.backend.specs.get_ticket(id).await {
                Ok(t) => match t.spec_id {
                    Some(spec) => {
                        (owners.of_spec(access, spec).await?.as_deref() == Some(self.project.as_str()), Some(spec))
                    }
                    None => (false, None),
                },
                Err(StoreError::NotFound { .. }) => (false, None),
                Err(e) => return Err(e),
            },
            Subject::Discovery(id) => match self.state.backend.discoveries.get_discovery(id).await {
                Ok(d) => Box::pin(self.subject(Subject::Task(d.source_task))).await?,
                Err(StoreError::NotFound { .. }) => (false, None),
                Err(e) => return Err(e),
            },
            // Agents are shared workers: their own events (heartbeats, status) are for everyone.
            Subject::Agent(_) => (true, None),
            Subject::Memory(_) => (false, None),
        };
        let mut seen = self.seen.lock();
        if seen.len() >= CACHE_LIMIT {
            seen.clear();
        }
        seen.insert(subject, v);
        Ok(v)
    }

    async fn render(&self, item: Result<StoredEvent, StoreError>) -> Out {
        let e = match item {
            Ok(e) => e,
            Err(err) => {
                // The client reconnects with Last-Event-ID and misses nothing.
                tracing::warn!(error = %err, "event stream ended by a store error");
                return Out::End;
            }
        };
        match self.visible(&e).await {
            Ok(true) => {}
            Ok(false) => return Out::Skip,
            Err(err) => {
                tracing::warn!(error = %err, "event stream ended by a store error");
                return Out::End;
            }
        }
        match serde_json::to_string(&e) {
            Ok(json) => {
                Out::Send(Box::new(SseEvent::default().id(e.cursor.to_string()).event(e.event.name()).data(json)))
            }
            Err(err) => {
                tracing::error!(error = %err, cursor = %e.cursor, "event does not serialize");
                Out::Skip
            }
        }
    }

    async fn visible(&self, e: &StoredEvent) -> Result<bool, StoreError> {
        let data = serde_json::to_value(&e.event).ok().and_then(|mut v| v.get_mut("data").map(Value::take));
        let data = data.unwrap_or(Value::Null);
        let subject = e.event.subject();
        // An agent event about a task run is visible with the task.
        let (visible, spec) = match (subject, data_id(&data, "task_id").and_then(|t| t.parse::<TaskId>().ok())) {
            (Subject::Agent(_), Some(task)) => self.subject(Subject::Task(task)).await?,
            _ => self.subject(subject).await?,
        };
        if !visible {
            return Ok(false);
        }
        let q = &self.query;
        if let Some(task) = q.task {
            let s = task.to_string();
            if subject != Subject::Task(task) && data_id(&data, "task_id").as_deref() != Some(s.as_str()) {
                return Ok(false);
            }
        }
        if let Some(want) = q.spec
            && spec != Some(want)
            && data_id(&data, "spec_id") != Some(want.to_string())
        {
            return Ok(false);
        }
        if let Some(agent) = q.agent {
            let s = agent.to_string();
            let named = ["agent_id", "holder"].iter().any(|f| data_id(&data, f).as_deref() == Some(s.as_str()));
            if subject != Subject::Agent(agent) && !named {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

fn last_event_id(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(v) = headers.get("last-event-id") else { return Ok(None) };
    let s = v.to_str().map_err(|_| ApiError::bad_request("Last-Event-ID is not text"))?.trim();
    if s.is_empty() {
        return Ok(None);
    }
    s.parse().map(Some).map_err(|_| ApiError::bad_request(format!("Last-Event-ID {s:?} is not a cursor")))
}

/// The key's project's events, live (server-sent events).
#[utoipa::path(get, path = "/api/events", params(StreamQuery, ("Last-Event-ID" = Option<String>, Header, description = "resume after this cursor")),
    security(("api_key" = [])),
    responses((status = 200, content_type = "text/event-stream", description = "id: cursor, event: name, data: StoredEvent JSON"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub(crate) async fn events(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<StreamQuery>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let after = match last_event_id(&headers)?.or(query.after) {
        Some(c) => Cursor(c),
        None => state.backend.events.last_cursor().await?,
    };
    let live = state.backend.events.subscribe(after).await?;
    let keep_alive = KeepAlive::new().interval(state.options.keep_alive).text("keep-alive");
    let stop = state.stop.clone();
    let ctx = Arc::new(Ctx::new(state, caller.project, query));
    let stream = live
        .then(move |item| {
            let ctx = ctx.clone();
            async move { ctx.render(item).await }
        })
        .take_while(|o| std::future::ready(!matches!(o, Out::End)))
        .filter_map(|o| {
            std::future::ready(match o {
                Out::Send(e) => Some(Ok(*e)),
                Out::Skip | Out::End => None,
            })
        })
        .take_until(stop.cancelled_owned());
    Ok(Sse::new(stream).keep_alive(keep_alive))
}

/// `GET /api/events/recent` query.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct RecentQuery {
    /// Event names, comma-separated (`monitor.stuck_detected,monitor.system_assessed`).
    pub names: String,
    /// At most this many (default 50, at most 100).
    pub limit: Option<usize>,
}

/// `GET /api/events/recent`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct RecentEvents {
    /// Newest first.
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<StoredEvent>,
}

/// The latest events of the given names the key's project may see (the last 100 per name
/// since the server started reading the log), newest first: what a page needs at load that only
/// the log knows (stuck tasks, the last system assessment).
#[utoipa::path(get, path = "/api/events/recent", params(RecentQuery), security(("api_key" = [])),
    responses((status = 200, body = RecentEvents), (status = 400, body = ErrorBody)))]
pub(crate) async fn recent(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<RecentQuery>,
) -> Result<Json<RecentEvents>, ApiError> {
    let limit = q.limit.unwrap_or(50);
    if limit == 0 || limit > 100 {
        return Err(ApiError::bad_request("limit must be 1 to 100"));
    }
    let names: Vec<&str> = q.names.split(',').map(str::trim).filter(|n| !n.is_empty()).collect();
    if names.is_empty() {
        return Err(ApiError::bad_request("names is empty"));
    }
    if let Some(bad) = names.iter().find(|n| !Event::NAMES.contains(n)) {
        return Err(ApiError::bad_request(format!("unknown event name {bad:?} (see /api/event-names)")));
    }
    let ctx = Ctx::new(state.clone(), caller.project, StreamQuery::default());
    let mut events = Vec::new();
    for e in state.activity.recent(&names) {
        if ctx.visible(&e).await? {
            events.push(e);
            if events.len() == limit {
                break;
            }
        }
    }
    Ok(Json(RecentEvents { events }))
}

/// `GET /api/event-names`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct EventNames {
    /// Every SSE `event:` name the stream may send.
    pub names: Vec<&'static str>,
}

/// Every event name (listen for each with `EventSource.addEventListener`).
#[utoipa::path(get, path = "/api/event-names", security(("api_key" = [])), responses((status = 200, body = EventNames)))]
pub(crate) async fn names(_caller: Caller) -> Json<EventNames> {
    Json(EventNames { names: Event::NAMES.to_vec() })
}
