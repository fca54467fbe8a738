//! Agents (shared workers) with their health, and steering an agent's run of a task.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::Utc;
use omoi_core::{
    Agent, AgentId, AgentStatus, Intervention, InterventionSource, NewIntervention, Severity, TaskFilter, TaskId,
    TaskState,
};
use serde::{Deserialize, Serialize};

use super::tasks::owned_task;
use crate::server::app::AppState;
use crate::server::auth::Caller;
use crate::server::error::{ApiError, ApiJson, ApiPath, ErrorBody};

/// An agent and how it is doing.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct AgentView {
    /// The agent.
    #[schema(value_type = Object)]
    pub agent: Agent,
    /// `healthy`, `degraded`, `failed` (failed, quarantined or terminated) or `stale` (no
    /// heartbeat for longer than the server's `stale_after`).
    pub health: String,
    /// Seconds since its last heartbeat.
    pub seconds_since_heartbeat: f64,
    /// The key's project's tasks it holds a lease on.
    #[schema(value_type = Vec<String>)]
    pub current_tasks: Vec<TaskId>,
    /// The guardian's latest alignment score (0–1), if any.
    pub alignment: Option<f64>,
}

/// `GET /api/agents`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct AgentList {
    /// Every agent. Agents are the server's shared workers: every project sees them, and only
    /// its own tasks among their current ones.
    pub agents: Vec<AgentView>,
}

/// `POST /api/agents/{id}/steer`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Steer {
    /// What the agent should do differently.
    pub message: String,
    /// The run it is meant for (must be the key's project's task, leased by this agent now or
    /// later).
    #[schema(value_type = String, format = Uuid)]
    pub task_id: TaskId,
    /// `guidance` (default), `correction` or `emergency`.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub severity: Option<Severity>,
}

/// Every agent with its health.
#[utoipa::path(get, path = "/api/agents", security(("api_key" = [])), responses((status = 200, body = AgentList)))]
pub(crate) async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<AgentList>, ApiError> {
    let agents = state.backend.agents.list_agents(None).await?;
    let leased = state
        .backend
        .tasks
        .list_tasks(&TaskFilter { states: vec![TaskState::Claimed, TaskState::Running], ..TaskFilter::default() })
        .await?;
    let mut mine = Vec::new();
    for t in leased {
        let owner = state.owners.of_task(state.backend.access.as_ref(), &t).await?;
        if owner.as_deref() == Some(caller.project.as_str()) {
            mine.push(t);
        }
    }
    let now = Utc::now();
    let views = agents
        .into_iter()
        .map(|a| {
            let age = (now - a.last_heartbeat_at).to_std().unwrap_or_default();
            let health = match a.status {
                AgentStatus::Failed | AgentStatus::Quarantined | AgentStatus::Terminated => "failed",
                AgentStatus::Degraded => "degraded",
                _ if age > state.options.stale_after => "stale",
                _ => "healthy",
            };
            AgentView {
                current_tasks: mine
                    .iter()
                    .filter(|t| t.lease.as_ref().is_some_and(|l| l.holder == a.id))
                    .map(|t| t.id)
                    .collect(),
                alignment: state.activity.alignment(a.id),
                health: health.into(),
                seconds_since_heartbeat: age.as_secs_f64(),
                agent: a,
            }
        })
        .collect();
    Ok(Json(AgentList { agents: views }))
}

/// Steers an agent's run of one of the key's project's tasks (a person's intervention).
#[utoipa::path(post, path = "/api/agents/{id}/steer", params(("id" = String, Path, format = Uuid)), request_body = Steer,
    security(("api_key" = [])),
    responses((status = 201, body = Object), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn steer(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<AgentId>,
    ApiJson(body): ApiJson<Steer>,
) -> Result<(StatusCode, Json<Intervention>), ApiError> {
    caller.require_write()?;
    if body.message.trim().is_empty() {
        return Err(ApiError::bad_request("the steering message is empty"));
    }
    match state.backend.agents.get_agent(id).await {
        Err(omoi_core::StoreError::NotFound { .. }) => return Err(ApiError::not_found("agent", id)),
        r => r?,
    };
    owned_task(&state, &caller, body.task_id).await?;
    let mut new = NewIntervention::new(
        id,
        Some(body.task_id),
        body.severity.unwrap_or(Severity::Guidance),
        InterventionSource::Operator,
        body.message,
    );
    new.reason = format!("steered through the API by key {}", caller.key_id);
    let i = state.backend.interventions.record_intervention(new).await?;
    Ok((StatusCode::CREATED, Json(i)))
}
