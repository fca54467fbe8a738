//! Health, discoveries, interventions and cost.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use omoi_core::{AgentId, Discovery, DiscoveryFilter, Intervention, SpecId, Subject, TaskFilter, TaskId, Usage};
use serde::{Deserialize, Serialize};

use super::specs::owned_spec;
use super::tasks::owned_task;
use crate::server::app::AppState;
use crate::server::auth::Caller;
use crate::server::error::{ApiError, ApiQuery, ErrorBody};

/// `GET /health`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Health {
    /// `ok` or `degraded`.
    pub status: String,
    /// `ok`, or why the store failed.
    pub store: String,
}

/// Whether the server and its store answer (no key needed).
#[utoipa::path(get, path = "/health", responses((status = 200, body = Health), (status = 503, body = Health)))]
pub(crate) async fn health(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    match state.backend.events.last_cursor().await {
        Ok(_) => (StatusCode::OK, Json(Health { status: "ok".into(), store: "ok".into() })),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, Json(Health { status: "degraded".into(), store: e.to_string() })),
    }
}

/// `GET /api/discoveries` query.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct DiscoveryQuery {
    /// Only this spec's discoveries.
    #[param(value_type = Option<String>, format = Uuid)]
    pub spec: Option<SpecId>,
    /// Only discoveries reported by this task.
    #[param(value_type = Option<String>, format = Uuid)]
    pub task: Option<TaskId>,
}

/// `GET /api/discoveries`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct DiscoveryList {
    /// The discoveries, oldest first.
    #[schema(value_type = Vec<Object>)]
    pub discoveries: Vec<Discovery>,
}

/// The key's project's discoveries.
#[utoipa::path(get, path = "/api/discoveries", params(DiscoveryQuery), security(("api_key" = [])),
    responses((status = 200, body = DiscoveryList), (status = 404, body = ErrorBody)))]
pub(crate) async fn discoveries(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<DiscoveryQuery>,
) -> Result<Json<DiscoveryList>, ApiError> {
    let mut filters = Vec::new();
    if let Some(spec) = q.spec {
        owned_spec(&state, &caller, spec).await?;
    }
    if let Some(task) = q.task {
        owned_task(&state, &caller, task).await?;
        filters.push(DiscoveryFilter { spec_id: q.spec, source_task: Some(task), ..DiscoveryFilter::default() });
    } else if let Some(spec) = q.spec {
        filters.push(DiscoveryFilter { spec_id: Some(spec), ..DiscoveryFilter::default() });
    } else {
        for s in state.backend.access.owned_by(&caller.project).await? {
            match s {
                Subject::Spec(id) => filters.push(DiscoveryFilter { spec_id: Some(id), ..DiscoveryFilter::default() }),
                Subject::Task(t) => {
                    filters.push(DiscoveryFilter { source_task: Some(t), ..DiscoveryFilter::default() })
                }
                _ => {}
            }
        }
    }
    let mut out = Vec::new();
    for f in filters {
        out.extend(state.backend.discoveries.list_discoveries(&f).await?);
    }
    out.sort_by_key(|d| (d.created_at, d.id));
    out.dedup_by_key(|d| d.id);
    Ok(Json(DiscoveryList { discoveries: out }))
}

/// `GET /api/interventions` query.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct InterventionQuery {
    /// Only interventions for this agent.
    #[param(value_type = Option<String>, format = Uuid)]
    pub agent: Option<AgentId>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<usize>,
}

/// `GET /api/interventions`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct InterventionList {
    /// Newest first.
    #[schema(value_type = Vec<Object>)]
    pub interventions: Vec<Intervention>,
}

/// Interventions addressed to runs of the key's project's tasks, newest first.
#[utoipa::path(get, path = "/api/interventions", params(InterventionQuery), security(("api_key" = [])),
    responses((status = 200, body = InterventionList), (status = 400, body = ErrorBody)))]
pub(crate) async fn interventions(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<InterventionQuery>,
) -> Result<Json<InterventionList>, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if limit == 0 || limit > 1000 {
        return Err(ApiError::bad_request("limit must be 1 to 1000"));
    }
    // Read more than asked: some belong to other projects and are dropped.
    let all = state.backend.interventions.list_interventions(q.agent, limit * 4).await?;
    let mut out = Vec::new();
    for i in all {
        let Some(task) = i.task_id else { continue };
        let Ok(t) = state.backend.tasks.get_task(task).await else { continue };
        let owner = state.owners.of_task(state.backend.access.as_ref(), &t).await?;
        if owner.as_deref() == Some(caller.project.as_str()) {
            out.push(i);
        }
        if out.len() == limit {
            break;
        }
    }
    Ok(Json(InterventionList { interventions: out }))
}

/// One row of the cost report.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct CostRow {
    /// The spec, task or agent id.
    pub id: String,
    /// Its title or name.
    pub name: String,
    /// Its model usage.
    #[schema(value_type = Object)]
    pub usage: Usage,
}

/// `GET /api/cost`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct CostReport {
    /// Everything below summed (spec phases and task attempts).
    #[schema(value_type = Object)]
    pub total: Usage,
    /// Per spec: its phases plus its tasks.
    pub specs: Vec<CostRow>,
    /// The 50 most expensive tasks.
    pub tasks: Vec<CostRow>,
    /// Per agent: the tasks it completed.
    pub agents: Vec<CostRow>,
}

/// `GET /api/cost` query.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct CostQuery {
    /// Only this spec.
    #[param(value_type = Option<String>, format = Uuid)]
    pub spec: Option<SpecId>,
}

/// Model cost of the key's project per spec, task and agent.
#[utoipa::path(get, path = "/api/cost", params(CostQuery), security(("api_key" = [])),
    responses((status = 200, body = CostReport), (status = 404, body = ErrorBody)))]
pub(crate) async fn cost(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<CostQuery>,
) -> Result<Json<CostReport>, ApiError> {
    let specs: Vec<SpecId> = match q.spec {
        Some(s) => {
            owned_spec(&state, &caller, s).await?;
            vec![s]
        }
        None => state
            .backend
            .access
            .owned_by(&caller.project)
            .await?
            .into_iter()
            .filter_map(|s| match s {
                Subject::Spec(id) => Some(id),
                _ => None,
            })
            .collect(),
    };
    let mut total = Usage::default();
    let mut spec_rows = Vec::new();
    let mut task_rows = Vec::new();
    let mut by_task: BTreeMap<TaskId, Usage> = BTreeMap::new();
    for id in specs {
        let spec = state.backend.specs.get_spec(id).await?;
        let tasks = state.backend.tasks.list_tasks(&TaskFilter { spec_id: Some(id), ..TaskFilter::default() }).await?;
        let mut usage = spec.usage;
        for t in tasks {
            usage = usage + t.usage;
            by_task.insert(t.id, t.usage);
            task_rows.push(CostRow { id: t.id.to_string(), name: t.def.title, usage: t.usage });
        }
        total = total + usage;
        spec_rows.push(CostRow { id: id.to_string(), name: spec.title, usage });
    }
    task_rows.sort_by(|a, b| {
        b.usage.cost_usd.total_cmp(&a.usage.cost_usd).then(b.usage.output_tokens.cmp(&a.usage.output_tokens))
    });
    task_rows.truncate(50);
    let mut agent_rows = Vec::new();
    for a in state.backend.agents.list_agents(None).await? {
        let usage = state
            .activity
            .finished_by(a.id)
            .into_iter()
            .filter_map(|t| by_task.get(&t).copied())
            .fold(Usage::default(), |acc, u| acc + u);
        agent_rows.push(CostRow { id: a.id.to_string(), name: a.name, usage });
    }
    Ok(Json(CostReport { total, specs: spec_rows, tasks: task_rows, agents: agent_rows }))
}
