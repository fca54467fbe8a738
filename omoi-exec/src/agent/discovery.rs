//! Where the agent loop's `report_discovery` goes: a [`DiscoveryReporter`], implemented by
//! [`DiscoveryService`] (dedup, limits, the branch), whose answer is what the model is told.

use async_trait::async_trait;
use omoi_core::{NewDiscovery, ReportedDiscovery, TaskId};
use omoi_discovery::DiscoveryService;

/// Records a discovery reported by the agent working on `source`; `Ok` is the answer for the
/// model (`branched as TSK-002.1`, `duplicate of …`, `refused: source_cap: …`), `Err` why it
/// could not be recorded.
#[async_trait]
pub trait DiscoveryReporter: Send + Sync {
    /// Records `d`.
    async fn report(&self, source: TaskId, d: &ReportedDiscovery) -> Result<String, String>;
}

/// The report as a [`NewDiscovery`] of `source`.
pub fn to_new_discovery(source: TaskId, d: &ReportedDiscovery) -> NewDiscovery {
    d.to_new(source)
}

#[async_trait]
impl DiscoveryReporter for DiscoveryService {
    async fn report(&self, source: TaskId, d: &ReportedDiscovery) -> Result<String, String> {
        DiscoveryService::report(self, to_new_discovery(source, d))
            .await
            .map(|r| r.message())
            .map_err(|e| e.to_string())
    }
}
