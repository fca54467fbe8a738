//! The OpenAPI document (`GET /openapi.json`), generated from the handlers' annotations.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::auth::Caller;
use super::error::{ErrorBody, ErrorCode, ErrorDetail};
use super::routes::*;
use super::stream::{EventNames, RecentEvents};

struct BearerKey;

impl Modify for BearerKey {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("omoi_<64 hex>").build(),
            ),
        );
    }
}

/// The API description.
#[derive(OpenApi)]
#[openapi(
    info(title = "omoi reference server", description = "Specs, tasks, agents, discoveries, interventions, cost and the live event stream of one omoi store. Every route but /health needs `Authorization: Bearer <key>`."),
    modifiers(&BearerKey),
    paths(
        super::routes::observe::health,
        super::routes::specs::create, super::routes::specs::list, super::routes::specs::get,
        super::routes::specs::approve, super::routes::specs::reject,
        super::routes::tasks::list, super::routes::tasks::counts, super::routes::tasks::detail,
        super::routes::tasks::cancel, super::routes::tasks::retry,
        super::routes::tasks::cancel_many, super::routes::tasks::retry_many,
        super::routes::agents::list, super::routes::agents::steer,
        super::routes::observe::discoveries, super::routes::observe::interventions,
        super::routes::observe::cost,
        super::stream::events, super::stream::recent, super::stream::names,
        super::routes::keys::create, super::routes::keys::revoke,
    ),
    components(schemas(
        ErrorBody, ErrorDetail, ErrorCode, CreateSpec, SpecAccepted, SpecList, SpecDetail, Reject, TaskList,
        TaskCounts, TaskDetail, Attempt, WhyWaiting, TaskFilterBody, BulkOutcome, BulkRefusal, AgentList, AgentView,
        Steer, DiscoveryList, InterventionList, CostReport, CostRow, Health, CreateKey, CreatedKey, EventNames, RecentEvents,
    ))
)]
pub struct ApiDoc;

/// The document (needs a key, like every route but health).
pub(crate) async fn document(_caller: Caller) -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
