//! The routes, one module per resource.

pub(crate) mod agents;
pub(crate) mod keys;
pub(crate) mod observe;
pub(crate) mod specs;
pub(crate) mod tasks;

use axum::Router;
use axum::routing::{get, post};

use super::app::AppState;
use super::error::{ApiError, ErrorCode};
use super::{openapi, page, stream};

pub(crate) use agents::{AgentList, AgentView, Steer};
pub(crate) use keys::{CreateKey, CreatedKey};
pub(crate) use observe::{CostReport, CostRow, DiscoveryList, Health, InterventionList};
pub(crate) use specs::{CreateSpec, Reject, SpecAccepted, SpecDetail, SpecList};
pub(crate) use tasks::{
    Attempt, BulkOutcome, BulkRefusal, TaskCounts, TaskDetail, TaskFilterBody, TaskList, WhyWaiting,
};

/// Every route.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(page::index))
        .route("/page/{file}", get(page::asset))
        .route("/health", get(observe::health))
        .route("/openapi.json", get(openapi::document))
        .route("/api/specs", post(specs::create).get(specs::list))
        .route("/api/specs/{id}", get(specs::get))
        .route("/api/specs/{id}/approve", post(specs::approve))
        .route("/api/specs/{id}/reject", post(specs::reject))
        .route("/api/tasks", get(tasks::list))
        .route("/api/tasks/counts", get(tasks::counts))
        .route("/api/tasks/cancel", post(tasks::cancel_many))
        .route("/api/tasks/retry", post(tasks::retry_many))
        .route("/api/tasks/{id}", get(tasks::detail))
        .route("/api/tasks/{id}/cancel", post(tasks::cancel))
        .route("/api/tasks/{id}/retry", post(tasks::retry))
        .route("/api/agents", get(agents::list))
        .route("/api/agents/{id}/steer", post(agents::steer))
        .route("/api/discoveries", get(observe::discoveries))
        .route("/api/interventions", get(observe::interventions))
        .route("/api/cost", get(observe::cost))
        .route("/api/events", get(stream::events))
        .route("/api/events/recent", get(stream::recent))
        .route("/api/event-names", get(stream::names))
        .route("/api/keys", post(keys::create))
        .route("/api/keys/{id}", axum::routing::delete(keys::revoke))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
}

async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::bad_request("method not allowed on this route")
}
