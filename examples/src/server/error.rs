//! Typed JSON errors: `{"error": {"code": "not_found", "message": "…"}}` with the matching
//! status, and extractors whose rejections become such errors (never a 500 for bad input).

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use omoi_core::StoreError;
use omoi_exec::OrchestratorError;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// What went wrong, as the API reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Malformed JSON, query or id, or a refused value (400).
    BadRequest,
    /// No key, or an unknown or revoked one (401).
    Unauthorized,
    /// The key's role may not do this (403).
    Forbidden,
    /// No such entity, or one of another project (404).
    NotFound,
    /// The entity is not in a state that allows this (409).
    Conflict,
    /// The body is larger than the server accepts (413).
    PayloadTooLarge,
    /// The server was started without what this needs (501).
    NotConfigured,
    /// The store is unreachable; retry later (503).
    Unavailable,
    /// A bug or a store failure (500).
    Internal,
}

impl ErrorCode {
    /// The HTTP status of this code.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::BadRequest => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::Conflict => StatusCode::CONFLICT,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::NotConfigured => StatusCode::NOT_IMPLEMENTED,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// An error response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct ApiError {
    /// What kind of error.
    pub code: ErrorCode,
    /// Why, for people.
    pub message: String,
}

/// The body of an error response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// The error in an [`ErrorBody`].
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// What kind of error.
    pub code: ErrorCode,
    /// Why, for people.
    pub message: String,
}

impl ApiError {
    /// An error with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    /// 404 for `kind` `id` (also what another project's entity looks like).
    pub fn not_found(kind: &str, id: impl std::fmt::Display) -> Self {
        Self::new(ErrorCode::NotFound, format!("{kind} {id} not found"))
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let code = match &e {
            StoreError::NotFound { .. } => ErrorCode::NotFound,
            StoreError::InvalidTransition { .. }
            | StoreError::StaleLease { .. }
            | StoreError::AlreadyExists { .. }
            | StoreError::DuplicateKey { .. }
            | StoreError::SyncConflict { .. } => ErrorCode::Conflict,
            StoreError::InvalidInput(_)
            | StoreError::Cycle { .. }
            | StoreError::UnknownDependency { .. }
            | StoreError::DimensionMismatch { .. } => ErrorCode::BadRequest,
            StoreError::Unavailable { .. } => ErrorCode::Unavailable,
            _ => ErrorCode::Internal,
        };
        if code == ErrorCode::Internal {
            tracing::error!(error = %e, "store error");
        }
        Self::new(code, e.to_string())
    }
}

impl From<OrchestratorError> for ApiError {
    fn from(e: OrchestratorError) -> Self {
        match e {
            OrchestratorError::Store(s) => s.into(),
            OrchestratorError::InvalidInput(m) => Self::bad_request(m),
            OrchestratorError::NotConfigured(m) => Self::new(ErrorCode::NotConfigured, m),
            other => {
                tracing::error!(error = %other, "orchestrator error");
                Self::new(ErrorCode::Internal, other.to_string())
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { error: ErrorDetail { code: self.code, message: self.message } };
        (self.code.status(), Json(body)).into_response()
    }
}

/// A JSON body whose rejection is an [`ApiError`] (400, or 413 when too large).
#[derive(Debug)]
pub(crate) struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Self(v)),
            Err(r) => Err(json_rejection(r)),
        }
    }
}

fn json_rejection(r: JsonRejection) -> ApiError {
    if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(ErrorCode::PayloadTooLarge, r.body_text())
    } else {
        ApiError::bad_request(r.body_text())
    }
}

/// A query string whose rejection is a 400 [`ApiError`].
#[derive(Debug)]
pub(crate) struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Self(q.0))
            .map_err(|r: QueryRejection| ApiError::bad_request(r.body_text()))
    }
}

/// Path parameters whose rejection (e.g. a malformed id) is a 400 [`ApiError`].
#[derive(Debug)]
pub(crate) struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Self(p.0))
            .map_err(|r: PathRejection| ApiError::bad_request(r.body_text()))
    }
}
