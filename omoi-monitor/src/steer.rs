//! The steering policy every monitor goes through before it records an intervention:
//!
//! - **held while unacknowledged**: no new steer for an agent while its previous one is pending;
//! - **cooldown**: at most one steer per agent per `steer_cooldown`;
//! - **escalation**: when an agent is steered again for the same task after acknowledging
//!   `escalate_after_ignored` steers of the current severity, the next one is one level stronger
//!   (guidance → correction → emergency stop); an emergency is also logged as a warning for people.
//!
//! Emergencies skip the cooldown (a stop must not wait), but not the hold.

use std::sync::Arc;
use std::time::Duration;

use omoi_core::{
    AgentId, Clock, Intervention, InterventionSource, InterventionStore, NewIntervention, Severity, StoreError, TaskId,
};
use tracing::{info, warn};

/// What [`Steerer::steer`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum SteerOutcome {
    /// Recorded (possibly escalated from what was asked).
    Sent(Intervention),
    /// Not sent: the previous steer is still unacknowledged.
    HeldUnacknowledged,
    /// Not sent: the previous steer is more recent than the cooldown.
    HeldCooldown,
}

/// Records interventions under the steering policy.
#[derive(Clone)]
pub struct Steerer {
    store: Arc<dyn InterventionStore>,
    clock: Arc<dyn Clock>,
    cooldown: Duration,
    escalate_after_ignored: u32,
}

impl std::fmt::Debug for Steerer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Steerer")
            .field("cooldown", &self.cooldown)
            .field("escalate_after_ignored", &self.escalate_after_ignored)
            .finish()
    }
}

impl Steerer {
    /// A steerer over `store` with the `monitor` config's cooldown and escalation.
    pub fn new(
        store: Arc<dyn InterventionStore>,
        clock: Arc<dyn Clock>,
        cfg: &omoi_core::config::MonitorConfig,
    ) -> Self {
        Self { store, clock, cooldown: cfg.steer_cooldown, escalate_after_ignored: cfg.escalate_after_ignored.max(1) }
    }

    /// Steers `agent`'s run of `task` with at least `severity`, unless the policy holds it.
    pub async fn steer(
        &self,
        agent: AgentId,
        task: TaskId,
        severity: Severity,
        source: InterventionSource,
        message: &str,
        reason: &str,
    ) -> Result<SteerOutcome, StoreError> {
        let depth = usize::try_from(self.escalate_after_ignored).unwrap_or(usize::MAX).saturating_add(2).min(64);
        let history = self.store.list_interventions(Some(agent), depth).await?;
        if let Some(last) = history.first() {
            if last.is_pending() {
                return Ok(SteerOutcome::HeldUnacknowledged);
            }
            let since = (self.clock.now() - last.created_at).to_std().unwrap_or_default();
            if since < self.cooldown && severity < Severity::Emergency {
                return Ok(SteerOutcome::HeldCooldown);
            }
        }
        let severity = self.escalated(&history, task, severity);
        let new = NewIntervention::new(agent, Some(task), severity, source, message).because(reason);
        let i = self.store.record_intervention(new).await?;
        if severity == Severity::Emergency {
            warn!(agent = %agent, task = %task, %source, message, reason, "emergency stop: a person should look at this task");
        } else {
            info!(agent = %agent, task = %task, %severity, %source, reason, "steered");
        }
        Ok(SteerOutcome::Sent(i))
    }

    /// `asked`, raised one level when the agent already ignored enough steers of the strongest
    /// severity sent for this task.
    fn escalated(&self, history: &[Intervention], task: TaskId, asked: Severity) -> Severity {
        let same_task: Vec<&Intervention> = history.iter().take_while(|i| i.task_id == Some(task)).collect();
        let Some(top) = same_task.iter().map(|i| i.severity).max() else { return asked };
        let at_top = same_task.iter().take_while(|i| i.severity == top).count();
        let base = asked.max(top);
        if top >= asked && at_top >= usize::try_from(self.escalate_after_ignored).unwrap_or(usize::MAX) {
            base.escalated()
        } else {
            base
        }
    }
}

#[cfg(test)]
mod tests {
    use omoi_core::config::MonitorConfig;
    use omoi_core::testkit::ManualClock;
    use omoi_store::InMemoryStore;

    use super::*;

    fn setup() -> (Steerer, InMemoryStore, Arc<ManualClock>) {
        let clock = ManualClock::new();
        let store = InMemoryStore::with_clock(clock.clone());
        let steerer = Steerer::new(Arc::new(store.clone()), clock.clone(), &MonitorConfig::default());
        (steerer, store, clock)
    }

    async fn guide(s: &Steerer, agent: AgentId, task: TaskId) -> SteerOutcome {
        s.steer(agent, task, Severity::Guidance, InterventionSource::Guardian, "refocus", "drifting").await.unwrap()
    }

    fn sent(o: SteerOutcome) -> Intervention {
        match o {
            SteerOutcome::Sent(i) => i,
            other => panic!("expected a steer, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_steer_is_held_while_the_previous_is_unacknowledged_and_during_the_cooldown() {
        let (s, store, clock) = setup();
        let (agent, task) = (AgentId::new(), TaskId::new());
        let first = sent(guide(&s, agent, task).await);
        clock.advance(Duration::from_secs(299));
        assert_eq!(guide(&s, agent, task).await, SteerOutcome::HeldUnacknowledged, "held until acknowledged");
        store.acknowledge_intervention(first.id).await.unwrap();
        assert_eq!(guide(&s, agent, task).await, SteerOutcome::HeldCooldown, "one per 5 minutes");
        clock.advance(Duration::from_secs(1));
        assert!(matches!(guide(&s, agent, task).await, SteerOutcome::Sent(_)));
        assert!(matches!(guide(&s, AgentId::new(), task).await, SteerOutcome::Sent(_)), "per agent");
    }

    #[tokio::test]
    async fn ignored_steers_escalate_guidance_to_correction_to_emergency() {
        let (s, store, clock) = setup();
        let (agent, task) = (AgentId::new(), TaskId::new());
        let mut seen = Vec::new();
        for _ in 0..4 {
            let i = sent(guide(&s, agent, task).await);
            seen.push(i.severity);
            store.acknowledge_intervention(i.id).await.unwrap();
            clock.advance(Duration::from_secs(301));
        }
        assert_eq!(seen, [Severity::Guidance, Severity::Correction, Severity::Emergency, Severity::Emergency]);
        let other_task = sent(guide(&s, agent, TaskId::new()).await);
        assert_eq!(other_task.severity, Severity::Guidance, "a new task starts over");
    }

    #[tokio::test]
    async fn an_emergency_skips_the_cooldown_but_not_the_hold() {
        let (s, store, _clock) = setup();
        let (agent, task) = (AgentId::new(), TaskId::new());
        let first = sent(guide(&s, agent, task).await);
        let stop = |s: Steerer| async move {
            s.steer(agent, task, Severity::Emergency, InterventionSource::Conductor, "stop", "duplicate").await.unwrap()
        };
        assert_eq!(stop(s.clone()).await, SteerOutcome::HeldUnacknowledged);
        store.acknowledge_intervention(first.id).await.unwrap();
        assert_eq!(sent(stop(s.clone()).await).severity, Severity::Emergency);
    }
}
