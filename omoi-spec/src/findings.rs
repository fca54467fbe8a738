//! What the spec phases' agents found (`report_discovery`) before any task existed: kept in
//! each phase's checkpoint, and reported by SYNC, once the plan is stored, as discoveries of
//! the synced tasks (see [`DiscoveryService::report_findings`]).

use omoi_core::{ReportedDiscovery, Spec, SpecPhase, SyncOutcome, SyncPlan};
use omoi_discovery::{DiscoveryError, DiscoveryService};

use crate::error::SpecError;

/// Reports every finding kept in `spec`'s checkpoints as a discovery of the stored plan
/// (`outcome` maps the plan's local ids to the stored tasks); one line per finding says what
/// became of it. Without a service nothing is reported and the lines say so.
pub(crate) async fn report(
    service: Option<&DiscoveryService>,
    spec: &Spec,
    plan: &SyncPlan,
    outcome: &SyncOutcome,
) -> Result<Vec<String>, SpecError> {
    let findings: Vec<ReportedDiscovery> = spec.checkpoints.values().flat_map(|c| c.findings.iter().cloned()).collect();
    if findings.is_empty() {
        return Ok(Vec::new());
    }
    let Some(service) = service else {
        tracing::warn!(spec = %spec.id, findings = findings.len(), "findings not reported: no discovery service");
        return Ok(findings
            .iter()
            .map(|f| format!("{}: {}: not reported (no discovery service configured)", f.kind, f.title))
            .collect());
    };
    let mut tasks = Vec::with_capacity(plan.tasks.len());
    for t in &plan.tasks {
        tasks.push(service.tasks().get_task(outcome.tasks[&t.local_id]).await?);
    }
    let reported = service.report_findings(&tasks, &findings).await.map_err(|e| match e {
        DiscoveryError::Store(e) => SpecError::Store(e),
        other => SpecError::Executor { phase: SpecPhase::Sync, message: other.to_string() },
    })?;
    Ok(findings.iter().zip(reported).map(|(f, r)| format!("{}: {}: {}", f.kind, f.title, r.message())).collect())
}
