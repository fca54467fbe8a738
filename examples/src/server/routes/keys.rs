//! API keys through the API (admin keys only).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use omoi_core::{AccessRole, ApiKeyId};
use serde::{Deserialize, Serialize};

use crate::server::app::AppState;
use crate::server::auth::{self, Caller};
use crate::server::error::{ApiError, ApiJson, ApiPath, ErrorBody};

/// `POST /api/keys`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateKey {
    /// The project (the admin key's own when absent).
    #[serde(default)]
    pub project: Option<String>,
    /// `admin`, `write` or `read_only`.
    #[schema(value_type = String)]
    pub role: AccessRole,
}

/// A created key; `key` is shown this once.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct CreatedKey {
    /// Its id (to revoke it).
    #[schema(value_type = String, format = Uuid)]
    pub id: ApiKeyId,
    /// Its project.
    pub project: String,
    /// Its role.
    #[schema(value_type = String)]
    pub role: AccessRole,
    /// The key.
    pub key: String,
}

/// Creates a key (admin).
#[utoipa::path(post, path = "/api/keys", request_body = CreateKey, security(("api_key" = [])),
    responses((status = 201, body = CreatedKey), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(crate) async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateKey>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    caller.require_admin()?;
    let project = body.project.unwrap_or_else(|| caller.project.clone());
    let (stored, key) = auth::create_key(state.backend.access.as_ref(), &project, body.role).await?;
    tracing::info!(key = %stored.id, project = %stored.project, role = %stored.role, by = %caller.key_id, "api key created");
    Ok((StatusCode::CREATED, Json(CreatedKey { id: stored.id, project: stored.project, role: stored.role, key })))
}

/// Revokes a key of the admin key's project (admin).
#[utoipa::path(delete, path = "/api/keys/{id}", params(("id" = String, Path, format = Uuid)), security(("api_key" = [])),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<ApiKeyId>,
) -> Result<StatusCode, ApiError> {
    caller.require_admin()?;
    let keys = state.backend.access.list_keys(Some(&caller.project)).await?;
    if !keys.iter().any(|k| k.id == id) {
        return Err(ApiError::not_found("api key", id));
    }
    auth::revoke_key(state.backend.access.as_ref(), id).await?;
    tracing::info!(key = %id, by = %caller.key_id, "api key revoked");
    Ok(StatusCode::NO_CONTENT)
}
