//! Specs: create (the run continues in the background), list, get, approve, reject.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use omoi_core::{NewSpec, Spec, SpecId, SpecState, Subject, TaskCounts as Counts, Ticket};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::server::app::AppState;
use crate::server::auth::Caller;
use crate::server::error::{ApiError, ApiJson, ApiPath, ErrorBody, ErrorCode};

/// `POST /api/specs`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateSpec {
    /// The feature idea.
    pub idea: String,
    /// A short name (default: the idea's first words).
    #[serde(default)]
    pub title: Option<String>,
    /// Free-form context.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: Value,
}

/// A spec whose run was accepted.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct SpecAccepted {
    /// The spec.
    #[schema(value_type = String, format = Uuid)]
    pub id: SpecId,
    /// Its state when the request was answered.
    #[schema(value_type = String)]
    pub state: SpecState,
}

/// `GET /api/specs`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct SpecList {
    /// The key's project's specs, oldest first.
    #[schema(value_type = Vec<Object>)]
    pub specs: Vec<Spec>,
}

/// `GET /api/specs/{id}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct SpecDetail {
    /// The spec.
    #[schema(value_type = Object)]
    pub spec: Spec,
    /// Its tickets.
    #[schema(value_type = Vec<Object>)]
    pub tickets: Vec<Ticket>,
    /// Its tasks per state.
    #[schema(value_type = Object)]
    pub counts: Counts,
}

/// `POST /api/specs/{id}/reject`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Reject {
    /// What to change (the phase runs again with it).
    pub feedback: String,
}

/// The spec `id` if the caller's project owns it, else 404.
pub(crate) async fn owned_spec(state: &AppState, caller: &Caller, id: SpecId) -> Result<Spec, ApiError> {
    let owner = state.owners.of_spec(state.backend.access.as_ref(), id).await?;
    if owner.as_deref() != Some(caller.project.as_str()) {
        return Err(ApiError::not_found("spec", id));
    }
    Ok(state.backend.specs.get_spec(id).await?)
}

/// Creates a spec and runs it in the background.
#[utoipa::path(post, path = "/api/specs", request_body = CreateSpec, security(("api_key" = [])),
    responses((status = 202, body = SpecAccepted), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 501, body = ErrorBody)))]
pub(crate) async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateSpec>,
) -> Result<(StatusCode, Json<SpecAccepted>), ApiError> {
    caller.require_write()?;
    let orch = state.orchestrator()?.clone();
    let idea = body.idea.trim();
    if idea.is_empty() {
        return Err(ApiError::bad_request("the spec idea is empty"));
    }
    let title = match body.title.as_deref().map(str::trim) {
        Some("") => return Err(ApiError::bad_request("the spec title is empty")),
        Some(t) => t.to_owned(),
        None => idea.split_whitespace().take(8).collect::<Vec<_>>().join(" "),
    };
    let mut new = NewSpec::new(title, idea);
    new.metadata = body.metadata;
    // Ownership first: a spec never exists without its project.
    state.backend.access.assign_owner(Subject::Spec(new.id), &caller.project).await?;
    let spec = state.backend.specs.create_spec(new).await?;
    let id = spec.id;
    tokio::spawn(async move {
        if let Err(e) = orch.run_spec(id).await {
            tracing::warn!(spec = %id, error = %e, "spec run failed");
        }
    });
    Ok((StatusCode::ACCEPTED, Json(SpecAccepted { id, state: spec.state })))
}

/// The key's project's specs.
#[utoipa::path(get, path = "/api/specs", security(("api_key" = [])), responses((status = 200, body = SpecList)))]
pub(crate) async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<SpecList>, ApiError> {
    let mut specs = Vec::new();
    for s in state.backend.access.owned_by(&caller.project).await? {
        if let Subject::Spec(id) = s {
            match state.backend.specs.get_spec(id).await {
                Ok(spec) => specs.push(spec),
                Err(omoi_core::StoreError::NotFound { .. }) => {} // assigned, creation failed
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(Json(SpecList { specs }))
}

/// One spec with its tickets and task counts.
#[utoipa::path(get, path = "/api/specs/{id}", params(("id" = String, Path, format = Uuid)), security(("api_key" = [])),
    responses((status = 200, body = SpecDetail), (status = 404, body = ErrorBody)))]
pub(crate) async fn get(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<SpecId>,
) -> Result<Json<SpecDetail>, ApiError> {
    let spec = owned_spec(&state, &caller, id).await?;
    let tickets = state.backend.specs.list_tickets(id).await?;
    let counts = state.backend.tasks.count_tasks(Some(id)).await?;
    Ok(Json(SpecDetail { spec, tickets, counts }))
}

async fn awaiting(state: &AppState, caller: &Caller, id: SpecId) -> Result<(), ApiError> {
    caller.require_write()?;
    state.orchestrator()?;
    let spec = owned_spec(state, caller, id).await?;
    if !matches!(spec.state, SpecState::AwaitingApproval { .. }) {
        return Err(ApiError::new(ErrorCode::Conflict, format!("spec {id} is {}, not awaiting approval", spec.state)));
    }
    Ok(())
}

/// Approves the gated phase; the run continues in the background.
#[utoipa::path(post, path = "/api/specs/{id}/approve", params(("id" = String, Path, format = Uuid)), security(("api_key" = [])),
    responses((status = 202, body = SpecAccepted), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn approve(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<SpecId>,
) -> Result<(StatusCode, Json<SpecAccepted>), ApiError> {
    awaiting(&state, &caller, id).await?;
    let orch = state.orchestrator()?.clone();
    let spec = state.backend.specs.get_spec(id).await?;
    tokio::spawn(async move {
        if let Err(e) = orch.approve(id).await {
            tracing::warn!(spec = %id, error = %e, "approved spec run failed");
        }
    });
    Ok((StatusCode::ACCEPTED, Json(SpecAccepted { id, state: spec.state })))
}

/// Rejects the gated phase with feedback; it runs again in the background.
#[utoipa::path(post, path = "/api/specs/{id}/reject", params(("id" = String, Path, format = Uuid)), request_body = Reject,
    security(("api_key" = [])),
    responses((status = 202, body = SpecAccepted), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn reject(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<SpecId>,
    ApiJson(body): ApiJson<Reject>,
) -> Result<(StatusCode, Json<SpecAccepted>), ApiError> {
    if body.feedback.trim().is_empty() {
        return Err(ApiError::bad_request("rejection feedback is empty"));
    }
    awaiting(&state, &caller, id).await?;
    let orch = state.orchestrator()?.clone();
    let spec = state.backend.specs.get_spec(id).await?;
    tokio::spawn(async move {
        if let Err(e) = orch.reject(id, &body.feedback).await {
            tracing::warn!(spec = %id, error = %e, "rejected spec run failed");
        }
    });
    Ok((StatusCode::ACCEPTED, Json(SpecAccepted { id, state: spec.state })))
}
