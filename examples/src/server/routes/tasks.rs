//! Tasks: list with filters, counts, detail (trajectory, attempts, discoveries, interventions,
//! cost, why it waits), cancel and retry, one or many by filter.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use omoi_core::{
    AgentId, Discovery, DiscoveryFilter, Event, Intervention, SpecId, SpecState, StoreError, StoredEvent, Subject,
    Task, TaskFilter, TaskId, TaskState, TicketId, Usage,
};
use serde::{Deserialize, Serialize};

use super::specs::owned_spec;
use crate::server::app::AppState;
use crate::server::auth::Caller;
use crate::server::error::{ApiError, ApiJson, ApiPath, ApiQuery, ErrorBody};

/// Default page size of `GET /api/tasks`.
pub(crate) const DEFAULT_LIMIT: usize = 100;
/// Largest page size of `GET /api/tasks`.
pub(crate) const MAX_LIMIT: usize = 1000;
/// Most tasks one bulk cancel or retry touches.
pub(crate) const MAX_BULK: usize = 10_000;

/// `GET /api/tasks` query.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct TaskQuery {
    /// States, comma-separated (`ready,running`).
    pub state: Option<String>,
    /// Only this spec's tasks.
    #[param(value_type = Option<String>, format = Uuid)]
    pub spec: Option<SpecId>,
    /// Only this ticket's tasks.
    #[param(value_type = Option<String>, format = Uuid)]
    pub ticket: Option<TicketId>,
    /// Only children (discovery branches) of this task.
    #[param(value_type = Option<String>, format = Uuid)]
    pub parent: Option<TaskId>,
    /// Only tasks after this id (the previous page's `next`).
    #[param(value_type = Option<String>, format = Uuid)]
    pub after: Option<TaskId>,
    /// Page size (default 100, at most 1000).
    pub limit: Option<usize>,
}

/// The body of a bulk cancel or retry: which tasks.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TaskFilterBody {
    /// Only these states (retry: `["failed"]` when absent).
    #[serde(default)]
    #[schema(value_type = Option<Vec<String>>)]
    pub state: Option<Vec<TaskState>>,
    /// Only this spec's tasks.
    #[schema(value_type = Option<String>, format = Uuid)]
    pub spec: Option<SpecId>,
    /// Only this ticket's tasks.
    #[schema(value_type = Option<String>, format = Uuid)]
    pub ticket: Option<TicketId>,
    /// Only children of this task.
    #[schema(value_type = Option<String>, format = Uuid)]
    pub parent: Option<TaskId>,
}

/// A page of tasks.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct TaskList {
    /// The tasks, by id.
    #[schema(value_type = Vec<Object>)]
    pub tasks: Vec<Task>,
    /// Pass as `after` for the next page; `null` on the last page.
    #[schema(value_type = Option<String>, format = Uuid)]
    pub next: Option<TaskId>,
}

/// Tasks per state.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct TaskCounts {
    /// Count per state (states with none are absent).
    #[schema(value_type = Object)]
    pub counts: BTreeMap<TaskState, u64>,
    /// Sum of the counts.
    pub total: u64,
}

/// One attempt of a task, from its events.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Attempt {
    /// 1-based.
    pub attempt: u32,
    /// The agent that held the lease.
    #[schema(value_type = String, format = Uuid)]
    pub holder: AgentId,
    /// `running`, `completed`, `retrying`, `failed`, `released` or `lease_expired`.
    pub outcome: String,
    /// The failure, if any.
    pub error: Option<String>,
    /// When it was claimed.
    pub at: DateTime<Utc>,
}

/// Why a task is not running.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct WhyWaiting {
    /// Every reason, as `{"kind": …}` objects.
    #[schema(value_type = Vec<Object>)]
    pub reasons: Vec<serde_json::Value>,
}

/// `GET /api/tasks/{id}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct TaskDetail {
    /// The task.
    #[schema(value_type = Object)]
    pub task: Task,
    /// The agent's steps (`agent.step` events).
    #[schema(value_type = Vec<Object>)]
    pub trajectory: Vec<StoredEvent>,
    /// Every event about the task but its creation, oldest first.
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<StoredEvent>,
    /// Its attempts.
    pub attempts: Vec<Attempt>,
    /// Discoveries it reported, and the one it is a branch of.
    #[schema(value_type = Vec<Object>)]
    pub discoveries: Vec<Discovery>,
    /// Interventions addressed to its runs.
    #[schema(value_type = Vec<Object>)]
    pub interventions: Vec<Intervention>,
    /// Model usage of its attempts.
    #[schema(value_type = Object)]
    pub cost: Usage,
    /// Why it is not running (waiting, blocked, scheduled, spec awaiting approval).
    pub why_waiting: Option<WhyWaiting>,
    /// Tasks that depend on it.
    #[schema(value_type = Vec<String>)]
    pub dependents: Vec<TaskId>,
}

/// The outcome of a bulk cancel or retry.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct BulkOutcome {
    /// Tasks changed.
    #[schema(value_type = Vec<String>)]
    pub done: Vec<TaskId>,
    /// Tasks refused, with why.
    pub refused: Vec<BulkRefusal>,
}

/// One refused task of a bulk operation.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct BulkRefusal {
    /// The task.
    #[schema(value_type = String, format = Uuid)]
    pub id: TaskId,
    /// Why.
    pub error: String,
}

/// The outcome of a single cancel or retry.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Affected {
    /// Tasks whose state changed as a consequence (blocked or unblocked dependents).
    #[schema(value_type = Vec<String>)]
    pub affected: Vec<TaskId>,
}

fn parse_states(s: Option<&str>) -> Result<Vec<TaskState>, ApiError> {
    let Some(s) = s else { return Ok(Vec::new()) };
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| p.trim().parse::<TaskState>().map_err(|e| ApiError::bad_request(e.to_string())))
        .collect()
}

/// The task `id` if the caller's project owns it, else 404.
pub(crate) async fn owned_task(state: &AppState, caller: &Caller, id: TaskId) -> Result<Task, ApiError> {
    let task = match state.backend.tasks.get_task(id).await {
        Err(StoreError::NotFound { .. }) => return Err(ApiError::not_found("task", id)),
        r => r?,
    };
    let owner = state.owners.of_task(state.backend.access.as_ref(), &task).await?;
    if owner.as_deref() != Some(caller.project.as_str()) {
        return Err(ApiError::not_found("task", id));
    }
    Ok(task)
}

/// The caller's tasks matching `filter` (with its `after` and `limit`), by id.
async fn project_tasks(state: &AppState, caller: &Caller, filter: &TaskFilter) -> Result<Vec<Task>, ApiError> {
    let limit = filter.limit.unwrap_or(usize::MAX);
    if let Some(spec) = filter.spec_id {
        owned_spec(state, caller, spec).await?;
        return Ok(state.backend.tasks.list_tasks(filter).await?);
    }
    let mut out = Vec::new();
    let mut direct = Vec::new();
    for s in state.backend.access.owned_by(&caller.project).await? {
        match s {
            Subject::Spec(spec) => {
                let f = TaskFilter { spec_id: Some(spec), ..filter.clone() };
                out.extend(state.backend.tasks.list_tasks(&f).await?);
            }
            Subject::Task(t) if filter.after.is_none_or(|a| t > a) => direct.push(t),
            _ => {}
        }
    }
    for id in direct {
        match state.backend.tasks.get_task(id).await {
            Ok(t) if filter.matches(&t) && t.links.spec_id.is_none() => out.push(t),
            Ok(_) | Err(StoreError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    out.sort_by_key(|t| t.id);
    out.dedup_by_key(|t| t.id);
    out.truncate(limit);
    Ok(out)
}

/// Lists the key's project's tasks, filtered and paged by id.
#[utoipa::path(get, path = "/api/tasks", params(TaskQuery), security(("api_key" = [])),
    responses((status = 200, body = TaskList), (status = 400, body = ErrorBody)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<TaskQuery>,
) -> Result<Json<TaskList>, ApiError> {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::bad_request(format!("limit must be 1 to {MAX_LIMIT}")));
    }
    let filter = TaskFilter {
        states: parse_states(q.state.as_deref())?,
        spec_id: q.spec,
        ticket_id: q.ticket,
        parent_id: q.parent,
        after: q.after,
        limit: Some(limit),
    };
    let tasks = project_tasks(&state, &caller, &filter).await?;
    let next = if tasks.len() == limit { tasks.last().map(|t| t.id) } else { None };
    Ok(Json(TaskList { tasks, next }))
}

/// `GET /api/tasks/counts` query.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct CountQuery {
    /// Only this spec's tasks.
    #[param(value_type = Option<String>, format = Uuid)]
    pub spec: Option<SpecId>,
}

/// Counts the key's project's tasks per state.
#[utoipa::path(get, path = "/api/tasks/counts", params(CountQuery), security(("api_key" = [])),
    responses((status = 200, body = TaskCounts)))]
pub(crate) async fn counts(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<CountQuery>,
) -> Result<Json<TaskCounts>, ApiError> {
    let mut counts = BTreeMap::new();
    let mut add = |c: omoi_core::TaskCounts| {
        for (s, n) in c {
            *counts.entry(s).or_insert(0) += n;
        }
    };
    if let Some(spec) = q.spec {
        owned_spec(&state, &caller, spec).await?;
        add(state.backend.tasks.count_tasks(Some(spec)).await?);
    } else {
        for s in state.backend.access.owned_by(&caller.project).await? {
            match s {
                Subject::Spec(spec) => add(state.backend.tasks.count_tasks(Some(spec)).await?),
                Subject::Task(t) => match state.backend.tasks.get_task(t).await {
                    Ok(task) if task.links.spec_id.is_none() => add([(task.state, 1)].into_iter().collect()),
                    Ok(_) | Err(StoreError::NotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                },
                _ => {}
            }
        }
    }
    let total = counts.values().sum();
    Ok(Json(TaskCounts { counts, total }))
}

fn attempts(events: &[StoredEvent]) -> Vec<Attempt> {
    let mut out: Vec<Attempt> = Vec::new();
    for e in events {
        match &e.event {
            Event::TaskClaimed { holder, attempt, .. } => out.push(Attempt {
                attempt: *attempt,
                holder: *holder,
                outcome: "running".into(),
                error: None,
                at: e.at,
            }),
            other => {
                let Some(last) = out.last_mut() else { continue };
                match other {
                    Event::TaskCompleted { .. } => last.outcome = "completed".into(),
                    Event::TaskRetryScheduled { error, .. } => {
                        last.outcome = "retrying".into();
                        last.error = Some(error.clone());
                    }
                    Event::TaskFailed { error, .. } => {
                        last.outcome = "failed".into();
                        last.error = Some(error.clone());
                    }
                    Event::TaskReleased { .. } => last.outcome = "released".into(),
                    Event::TaskLeaseExpired { .. } => last.outcome = "lease_expired".into(),
                    _ => {}
                }
            }
        }
    }
    out
}

async fn why_waiting(state: &AppState, task: &Task, now: DateTime<Utc>) -> Result<Option<WhyWaiting>, ApiError> {
    use serde_json::json;
    if !matches!(task.state, TaskState::Waiting | TaskState::Blocked | TaskState::Ready) {
        return Ok(None);
    }
    let mut reasons = Vec::new();
    for dep in &task.dependencies {
        let d = state.backend.tasks.get_task(*dep).await?;
        match d.state {
            TaskState::Completed => {}
            TaskState::Failed | TaskState::Cancelled => {
                reasons.push(json!({"kind": "blocked_by", "task_id": d.id, "state": d.state, "title": d.def.title}))
            }
            s => reasons.push(json!({"kind": "dependency", "task_id": d.id, "state": s, "title": d.def.title})),
        }
    }
    if task.run_at > now {
        reasons.push(json!({"kind": "scheduled", "run_at": task.run_at}));
    }
    if let Some(spec) = task.links.spec_id {
        let s = state.backend.specs.get_spec(spec).await?;
        if let SpecState::AwaitingApproval { phase } = s.state {
            reasons.push(json!({"kind": "awaiting_approval", "spec_id": spec, "phase": phase}));
        }
    }
    if task.state == TaskState::Ready && reasons.is_empty() {
        reasons.push(json!({"kind": "queued", "attempts_left": task.attempts_left()}));
    }
    Ok(Some(WhyWaiting { reasons }))
}

/// One task with everything known about it.
#[utoipa::path(get, path = "/api/tasks/{id}", params(("id" = String, Path, format = Uuid)), security(("api_key" = [])),
    responses((status = 200, body = TaskDetail), (status = 404, body = ErrorBody)))]
pub(crate) async fn detail(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<TaskId>,
) -> Result<Json<TaskDetail>, ApiError> {
    let task = owned_task(&state, &caller, id).await?;
    let events = state.activity.task_events(id);
    let trajectory = events.iter().filter(|e| matches!(e.event, Event::AgentStep { .. })).cloned().collect();
    let mut discoveries = state
        .backend
        .discoveries
        .list_discoveries(&DiscoveryFilter { source_task: Some(id), ..DiscoveryFilter::default() })
        .await?;
    if let Some(d) = state.backend.discoveries.discovery_of_task(id).await? {
        discoveries.push(d);
    }
    let mut interventions = Vec::new();
    let holders: std::collections::BTreeSet<AgentId> = events
        .iter()
        .filter_map(|e| match e.event {
            Event::TaskClaimed { holder, .. } => Some(holder),
            _ => None,
        })
        .collect();
    for agent in holders {
        interventions.extend(
            state
                .backend
                .interventions
                .list_interventions(Some(agent), 200)
                .await?
                .into_iter()
                .filter(|i| i.task_id == Some(id)),
        );
    }
    let why = why_waiting(&state, &task, Utc::now()).await?;
    let dependents = state.backend.tasks.dependents(id).await?;
    Ok(Json(TaskDetail {
        attempts: attempts(&events),
        cost: task.usage,
        task,
        trajectory,
        events,
        discoveries,
        interventions,
        why_waiting: why,
        dependents,
    }))
}

/// Cancels a task; its dependents become blocked.
#[utoipa::path(post, path = "/api/tasks/{id}/cancel", params(("id" = String, Path, format = Uuid)), security(("api_key" = [])),
    responses((status = 200, body = Affected), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<TaskId>,
) -> Result<Json<Affected>, ApiError> {
    caller.require_write()?;
    owned_task(&state, &caller, id).await?;
    Ok(Json(Affected { affected: state.backend.tasks.cancel(id).await? }))
}

/// Retries a failed (dead-lettered) task with a fresh attempt budget.
#[utoipa::path(post, path = "/api/tasks/{id}/retry", params(("id" = String, Path, format = Uuid)), security(("api_key" = [])),
    responses((status = 200, body = Affected), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn retry(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<TaskId>,
) -> Result<Json<Affected>, ApiError> {
    caller.require_write()?;
    owned_task(&state, &caller, id).await?;
    Ok(Json(Affected { affected: state.backend.tasks.redrive(id).await? }))
}

async fn bulk(
    state: &AppState,
    caller: &Caller,
    body: TaskFilterBody,
    default_states: &[TaskState],
    retry: bool,
) -> Result<BulkOutcome, ApiError> {
    caller.require_write()?;
    let filter = TaskFilter {
        states: body.state.unwrap_or_else(|| default_states.to_vec()),
        spec_id: body.spec,
        ticket_id: body.ticket,
        parent_id: body.parent,
        after: None,
        limit: Some(MAX_BULK),
    };
    let tasks = project_tasks(state, caller, &filter).await?;
    let mut out = BulkOutcome { done: Vec::new(), refused: Vec::new() };
    for t in tasks {
        let r = if retry { state.backend.tasks.redrive(t.id).await } else { state.backend.tasks.cancel(t.id).await };
        match r {
            Ok(_) => out.done.push(t.id),
            Err(e) if e.is_retryable() => return Err(e.into()),
            Err(e) => out.refused.push(BulkRefusal { id: t.id, error: e.to_string() }),
        }
    }
    Ok(out)
}

/// Cancels every task of the key's project matching the filter (non-terminal states by default).
#[utoipa::path(post, path = "/api/tasks/cancel", request_body = TaskFilterBody, security(("api_key" = [])),
    responses((status = 200, body = BulkOutcome), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(crate) async fn cancel_many(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<TaskFilterBody>,
) -> Result<Json<BulkOutcome>, ApiError> {
    let live = [TaskState::Waiting, TaskState::Ready, TaskState::Claimed, TaskState::Running, TaskState::Blocked];
    Ok(Json(bulk(&state, &caller, body, &live, false).await?))
}

/// Retries every failed task of the key's project matching the filter.
#[utoipa::path(post, path = "/api/tasks/retry", request_body = TaskFilterBody, security(("api_key" = [])),
    responses((status = 200, body = BulkOutcome), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(crate) async fn retry_many(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<TaskFilterBody>,
) -> Result<Json<BulkOutcome>, ApiError> {
    Ok(Json(bulk(&state, &caller, body, &[TaskState::Failed], true).await?))
}
