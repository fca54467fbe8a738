//! Interventions: steering messages a monitor (or a person) sends to a running agent.
//!
//! An intervention is stored with its event in one transaction, so it survives the process that
//! sent it and reaches the agent wherever the agent runs: the agent loop reads the pending
//! interventions addressed to it between turns and acknowledges each one as it applies it. An
//! acknowledgement is recorded once; a second one is refused, so an intervention is applied at
//! most once even when two readers race.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{AgentId, InterventionId, TaskId};
use crate::string_enum;

string_enum! {
    /// How strongly an intervention steers. Ordered: guidance < correction < emergency.
    pub enum Severity: "intervention severity" {
        /// A hint; the agent continues.
        Guidance => "guidance",
        /// The agent is off course and must change what it does.
        Correction => "correction",
        /// Stop now: the run ends, its attempt is lost and its sandbox destroyed.
        Emergency => "emergency",
    }
}

impl Severity {
    /// The next stronger severity (an emergency stays an emergency).
    pub const fn escalated(self) -> Severity {
        match self {
            Severity::Guidance => Severity::Correction,
            Severity::Correction | Severity::Emergency => Severity::Emergency,
        }
    }
}

string_enum! {
    /// Who decided to intervene.
    pub enum InterventionSource: "intervention source" {
        /// The per-agent trajectory guardian.
        Guardian => "guardian",
        /// The system-wide conductor (duplicate work).
        Conductor => "conductor",
        /// The rule-based stuck detector.
        StuckDetector => "stuck_detector",
        /// A person.
        Operator => "operator",
    }
}

/// An intervention to record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NewIntervention {
    /// Its id.
    pub id: InterventionId,
    /// The agent steered.
    pub agent_id: AgentId,
    /// The task run it is meant for; `None` addresses whatever the agent runs next.
    pub task_id: Option<TaskId>,
    /// How strongly.
    pub severity: Severity,
    /// Who decided.
    pub source: InterventionSource,
    /// What the agent is told.
    pub message: String,
    /// Why (for people and the event log; not shown to the agent).
    pub reason: String,
}

impl NewIntervention {
    /// An intervention of `severity` from `source` for `agent`'s run of `task`.
    pub fn new(
        agent_id: AgentId,
        task_id: Option<TaskId>,
        severity: Severity,
        source: InterventionSource,
        message: impl Into<String>,
    ) -> Self {
        Self {
            id: InterventionId::new(),
            agent_id,
            task_id,
            severity,
            source,
            message: message.into(),
            reason: String::new(),
        }
    }

    /// The same intervention with `reason` recorded.
    pub fn because(mut self, reason: impl Into<String>) -> Self {
        self.reason = reason.into();
        self
    }

    /// Checks the message is present and bounded.
    pub fn validate(&self) -> Result<(), String> {
        if self.message.trim().is_empty() {
            return Err("intervention message is empty".into());
        }
        if self.message.len() > MAX_INTERVENTION_MESSAGE_BYTES {
            return Err(format!(
                "intervention message is {} bytes (at most {MAX_INTERVENTION_MESSAGE_BYTES})",
                self.message.len()
            ));
        }
        if self.reason.len() > MAX_INTERVENTION_MESSAGE_BYTES {
            return Err(format!(
                "intervention reason is {} bytes (at most {MAX_INTERVENTION_MESSAGE_BYTES})",
                self.reason.len()
            ));
        }
        Ok(())
    }
}

/// Longest intervention message or reason, in bytes.
pub const MAX_INTERVENTION_MESSAGE_BYTES: usize = 16 * 1024;

/// A stored intervention.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Intervention {
    /// Its id.
    pub id: InterventionId,
    /// The agent steered.
    pub agent_id: AgentId,
    /// The task run it is meant for, if any.
    pub task_id: Option<TaskId>,
    /// How strongly.
    pub severity: Severity,
    /// Who decided.
    pub source: InterventionSource,
    /// What the agent is told.
    pub message: String,
    /// Why.
    pub reason: String,
    /// When it was recorded.
    pub created_at: DateTime<Utc>,
    /// When the agent applied it (`None` while pending).
    pub acknowledged_at: Option<DateTime<Utc>>,
}

impl Intervention {
    /// The intervention as recorded at `now`: pending.
    pub fn recorded(new: NewIntervention, now: DateTime<Utc>) -> Self {
        Intervention {
            id: new.id,
            agent_id: new.agent_id,
            task_id: new.task_id,
            severity: new.severity,
            source: new.source,
            message: new.message,
            reason: new.reason,
            created_at: now,
            acknowledged_at: None,
        }
    }

    /// Not acknowledged yet.
    pub fn is_pending(&self) -> bool {
        self.acknowledged_at.is_none()
    }

    /// Whether the run of `task` by `agent` should apply it: addressed to the agent, and to
    /// that task or to no task in particular. Every adapter applies this rule.
    pub fn is_for(&self, agent: AgentId, task: TaskId) -> bool {
        self.agent_id == agent && self.task_id.is_none_or(|t| t == task)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_escalates_up_to_emergency_and_orders_by_strength() {
        assert_eq!(Severity::Guidance.escalated(), Severity::Correction);
        assert_eq!(Severity::Correction.escalated(), Severity::Emergency);
        assert_eq!(Severity::Emergency.escalated(), Severity::Emergency);
        assert!(Severity::Guidance < Severity::Correction && Severity::Correction < Severity::Emergency);
    }

    #[test]
    fn empty_or_oversized_messages_are_refused() {
        let agent = AgentId::new();
        let ok =
            NewIntervention::new(agent, None, Severity::Guidance, InterventionSource::Operator, "look at the tests");
        assert!(ok.validate().is_ok());
        let empty = NewIntervention { message: "  ".into(), ..ok.clone() };
        assert!(empty.validate().unwrap_err().contains("empty"));
        let big = NewIntervention { message: "x".repeat(MAX_INTERVENTION_MESSAGE_BYTES + 1), ..ok };
        assert!(big.validate().unwrap_err().contains("bytes"));
    }

    #[test]
    fn an_intervention_without_a_task_is_for_every_run_of_its_agent() {
        let (agent, task) = (AgentId::new(), TaskId::new());
        let now = Utc::now();
        let any = Intervention::recorded(
            NewIntervention::new(agent, None, Severity::Guidance, InterventionSource::Guardian, "m"),
            now,
        );
        assert!(any.is_for(agent, task) && any.is_for(agent, TaskId::new()));
        assert!(!any.is_for(AgentId::new(), task));
        let one = Intervention { task_id: Some(task), ..any };
        assert!(one.is_for(agent, task) && !one.is_for(agent, TaskId::new()));
    }
}
