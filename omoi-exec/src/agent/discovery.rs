//! Where the agent loop's `report_discovery` goes: a [`DiscoveryReporter`], implemented by
//! [`DiscoveryService`] (dedup, limits, the branch), whose answer is what the model is told.

use async_trait::async_trait;
use omoi_core::{NewDiscovery, RecordOutcome, ReportedDiscovery, TaskId};
use omoi_discovery::DiscoveryService;

/// What a recorded report means for the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The answer for the model (`branched as TSK-002.1`, `duplicate of …`, `refused: …`).
    pub text: String,
    /// The source task was re-queued behind the branch: its lease ended, so the run stops.
    pub requeued: bool,
}

/// Records a discovery reported by the agent working on `source`; `Ok` says what happened,
/// `Err` why it could not be recorded.
#[async_trait]
pub trait DiscoveryReporter: Send + Sync {
    /// Records `d`.
    async fn report(&self, source: TaskId, d: &ReportedDiscovery) -> Result<Reply, String>;
}

/// The report as a [`NewDiscovery`] of `source`.
pub fn to_new_discovery(source: TaskId, d: &ReportedDiscovery) -> NewDiscovery {
    d.to_new(source)
}

#[async_trait]
impl DiscoveryReporter for DiscoveryService {
    async fn report(&self, source: TaskId, d: &ReportedDiscovery) -> Result<Reply, String> {
        let reported = DiscoveryService::report(self, to_new_discovery(source, d)).await.map_err(|e| e.to_string())?;
        let requeued = matches!(reported.outcome, RecordOutcome::Branched { requeued: true, .. });
        Ok(Reply { text: reported.message(), requeued })
    }
}
