//! Events: one typed enum with dotted names, each stored with a monotonic cursor.
//!
//! Stores write the event of a state change in the same transaction as the change (outbox), so
//! no event is fire-and-forget; readers resume from any cursor. On the wire an event is
//! `{"type": "task.completed", "data": {...}}`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::discovery::DiscoveryKind;
use super::intervention::{InterventionSource, Severity};
use super::monitoring::{StuckRule, SystemHealth};
use super::task::FencingToken;
use crate::ids::{AgentId, DiscoveryId, InterventionId, MemoryId, SpecId, TaskId, TicketId};
use crate::state::{AgentStatus, SpecPhase, SpecState};

/// Position in the event log. Events carry strictly increasing cursors; reading "after" a
/// cursor returns every later event.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(transparent)]
pub struct Cursor(pub u64);

impl Cursor {
    /// Before the first event.
    pub const START: Cursor = Cursor(0);
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The entity an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Subject {
    /// A task.
    Task(TaskId),
    /// A spec.
    Spec(SpecId),
    /// A ticket.
    Ticket(TicketId),
    /// An agent.
    Agent(AgentId),
    /// A discovery.
    Discovery(DiscoveryId),
    /// A memory.
    Memory(MemoryId),
}

impl std::fmt::Display for Subject {
    /// `task 0190…`, `spec 0190…`: the kind and the id (honours width and alignment).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The serde form names the kind once, for every variant.
        let v = serde_json::to_value(self).unwrap_or_default();
        let (kind, id) = (v["kind"].as_str().unwrap_or("entity"), v["id"].as_str().unwrap_or_default());
        f.pad(&format!("{kind} {id}"))
    }
}

impl std::fmt::Display for Event {
    /// `task.completed (task 0190…)`: the dotted name and the subject (honours width and
    /// alignment). The payload is in `Debug` and the serde form.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(&format!("{} ({})", self.name(), self.subject()))
    }
}

macro_rules! events {
    ($(
        $(#[$doc:meta])*
        $variant:ident $name:literal => $subject:ident($field:ident) { $( $(#[$fdoc:meta])* $f:ident : $t:ty ),* $(,)? }
    )+) => {
        /// Everything that happens in omoi, as typed data.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
        #[serde(tag = "type", content = "data")]
        #[non_exhaustive]
        pub enum Event {
            $(
                $(#[$doc])*
                #[serde(rename = $name)]
                $variant { $( $(#[$fdoc])* $f: $t ),* },
            )+
        }

        impl Event {
            /// Every event name, in declaration order.
            pub const NAMES: &'static [&'static str] = &[ $( $name ),+ ];

            /// The dotted name, e.g. `task.completed`.
            pub const fn name(&self) -> &'static str {
                match self {
                    $( Event::$variant { .. } => $name, )+
                }
            }

            /// The entity the event is about.
            #[allow(unused_variables)]
            pub fn subject(&self) -> Subject {
                match self {
                    $( Event::$variant { $field, .. } => Subject::$subject(*$field), )+
                }
            }
        }
    };
}

events! {
    /// A task was inserted.
    TaskCreated "task.created" => Task(task_id) {
        /// The task.
        task_id: TaskId,
        /// Its initial state (`ready`, `waiting` or `blocked`).
        state: crate::state::TaskState,
        /// Its spec, if any.
        spec_id: Option<SpecId>,
    }
    /// Every dependency completed; the task is claimable.
    TaskReady "task.ready" => Task(task_id) {
        /// The task.
        task_id: TaskId,
    }
    /// A worker leased the task.
    TaskClaimed "task.claimed" => Task(task_id) {
        /// The task.
        task_id: TaskId,
        /// The lease holder.
        holder: AgentId,
        /// The lease's fencing token.
        token: FencingToken,
        /// Attempt number (1-based).
        attempt: u32,
    }
    /// The holder started work.
    TaskStarted "task.started" => Task(task_id) {
        /// The task.
        task_id: TaskId,
        /// The lease holder.
        holder: AgentId,
    }
    /// The task finished successfully.
    TaskCompleted "task.completed" => Task(task_id) {
        /// The task.
        task_id: TaskId,
        /// The lease holder.
        holder: AgentId,
    }
    /// An attempt failed; the task will be retried at `run_at`.
    TaskRetryScheduled "task.retry_scheduled" => Task(task_id) {
        /// The task.
        task_id: TaskId,
        /// The failed attempt.
        attempt: u32,
        /// When it becomes claimable again.
        run_at: DateTime<Utc>,
        /// Why the attempt failed.
        error: String,
    }
    /// The task was dead-lettered.
    TaskFailed "task.failed" => Task(task_id) {
        /// The task.
        task_id: TaskId,
        /// Attempts used.
        attempts: u32,
        /// Why.
        error: String,
    }
    /// The holder gave the task back without using an attempt.
    TaskReleased "task.released" => Task(task_id) {
        /// The task.
        task_id: TaskId,
        /// The former holder.
        holder: AgentId,
    }
    /// A lease lapsed (or its holder failed) and the task was taken back.
    TaskLeaseExpired "task.lease_expired" => Task(task_id) {
        /// The task.
        task_id: TaskId,
        /// The former holder.
        holder: AgentId,
        /// The token that is no longer valid.
        token: FencingToken,
    }
    /// The task was cancelled.
    TaskCancelled "task.cancelled" => Task(task_id) {
        /// The task.
        task_id: TaskId,
    }
    /// A dependency failed or was cancelled.
    TaskBlocked "task.blocked" => Task(task_id) {
        /// The task.
        task_id: TaskId,
        /// The dependency that ended badly.
        blocked_by: TaskId,
    }
    /// A blocking dependency was redriven; the task waits again.
    TaskUnblocked "task.unblocked" => Task(task_id) {
        /// The task.
        task_id: TaskId,
    }
    /// An operator retried a dead-lettered task.
    TaskRedriven "task.redriven" => Task(task_id) {
        /// The task.
        task_id: TaskId,
    }
    /// A task that had not finished was given more dependencies: a re-synced plan's new edges,
    /// or a blocking discovery's branch that its source was re-queued behind.
    TaskDependenciesAdded "task.dependencies_added" => Task(task_id) {
        /// The task.
        task_id: TaskId,
        /// The dependencies added.
        added: Vec<TaskId>,
        /// Its state before (`ready`, `waiting`, `claimed` or `running`).
        from: crate::state::TaskState,
        /// Its state after (`waiting` unless every added dependency already completed).
        to: crate::state::TaskState,
    }
    /// A spec was created.
    SpecCreated "spec.created" => Spec(spec_id) {
        /// The spec.
        spec_id: SpecId,
    }
    /// A spec changed state.
    SpecStateChanged "spec.state_changed" => Spec(spec_id) {
        /// The spec.
        spec_id: SpecId,
        /// Previous state.
        from: SpecState,
        /// New state.
        to: SpecState,
    }
    /// A phase attempt began.
    SpecPhaseStarted "spec.phase_started" => Spec(spec_id) {
        /// The spec.
        spec_id: SpecId,
        /// The phase.
        phase: SpecPhase,
        /// Attempt number (1-based).
        attempt: u32,
    }
    /// A phase attempt was evaluated.
    SpecPhaseEvaluated "spec.phase_evaluated" => Spec(spec_id) {
        /// The spec.
        spec_id: SpecId,
        /// The phase.
        phase: SpecPhase,
        /// Attempt number.
        attempt: u32,
        /// Evaluator score.
        score: f64,
        /// Whether it passed.
        passed: bool,
    }
    /// A phase attempt failed and will be retried.
    SpecPhaseRetry "spec.phase_retry" => Spec(spec_id) {
        /// The spec.
        spec_id: SpecId,
        /// The phase.
        phase: SpecPhase,
        /// The failed attempt.
        attempt: u32,
        /// Evaluator score, if the output could be scored.
        score: Option<f64>,
        /// Feedback for the next attempt.
        feedback: String,
    }
    /// A phase passed and was checkpointed.
    SpecPhaseCompleted "spec.phase_completed" => Spec(spec_id) {
        /// The spec.
        spec_id: SpecId,
        /// The phase.
        phase: SpecPhase,
        /// Final score.
        score: f64,
        /// Attempts used.
        attempts: u32,
    }
    /// A phase failed for good.
    SpecPhaseFailed "spec.phase_failed" => Spec(spec_id) {
        /// The spec.
        spec_id: SpecId,
        /// The phase.
        phase: SpecPhase,
        /// Why.
        error: String,
    }
    /// A spec's plan was materialized.
    SpecSynced "spec.synced" => Spec(spec_id) {
        /// The spec.
        spec_id: SpecId,
        /// Tickets created by this sync.
        tickets_created: usize,
        /// Tasks created by this sync.
        tasks_created: usize,
    }
    /// A ticket was created.
    TicketCreated "ticket.created" => Ticket(ticket_id) {
        /// The ticket.
        ticket_id: TicketId,
        /// Its spec.
        spec_id: Option<SpecId>,
    }
    /// An agent registered.
    AgentRegistered "agent.registered" => Agent(agent_id) {
        /// The agent.
        agent_id: AgentId,
        /// Its name.
        name: String,
    }
    /// An agent changed status.
    AgentStatusChanged "agent.status_changed" => Agent(agent_id) {
        /// The agent.
        agent_id: AgentId,
        /// Previous status.
        from: AgentStatus,
        /// New status.
        to: AgentStatus,
        /// Why.
        reason: String,
    }
    /// An agent missed heartbeats.
    AgentHeartbeatMissed "agent.heartbeat_missed" => Agent(agent_id) {
        /// The agent.
        agent_id: AgentId,
        /// Consecutive TTL periods missed.
        missed: u32,
    }
    /// One step of an agent's trajectory (a model turn, a tool call and its result).
    AgentStep "agent.step" => Task(task_id) {
        /// The task being executed.
        task_id: TaskId,
        /// The agent.
        agent_id: AgentId,
        /// Step number within the attempt.
        step: u32,
        /// What happened (`model`, `tool_call`, `tool_result`, `steering`, `finish`…).
        action: String,
        /// Details.
        detail: Value,
    }
    /// A discovery was recorded.
    DiscoveryRecorded "discovery.recorded" => Discovery(discovery_id) {
        /// The discovery.
        discovery_id: DiscoveryId,
        /// The task that found it.
        source_task: TaskId,
        /// What kind.
        kind: DiscoveryKind,
    }
    /// A discovery spawned a branch task.
    DiscoveryBranchCreated "discovery.branch_created" => Discovery(discovery_id) {
        /// The discovery.
        discovery_id: DiscoveryId,
        /// The new task.
        task_id: TaskId,
    }
    /// A discovery was resolved.
    DiscoveryResolved "discovery.resolved" => Discovery(discovery_id) {
        /// The discovery.
        discovery_id: DiscoveryId,
    }
    /// A monitor intervened in an agent's work.
    MonitorIntervention "monitor.intervention" => Agent(agent_id) {
        /// The agent steered.
        agent_id: AgentId,
        /// `guidance`, `correction` or `emergency`.
        severity: String,
        /// The message delivered.
        message: String,
    }
    /// A memory was stored.
    MemoryStored "memory.stored" => Memory(memory_id) {
        /// The memory.
        memory_id: MemoryId,
    }
    // --- monitoring and interventions (omoi-monitor) ---
    /// An intervention was recorded for an agent.
    InterventionRecorded "intervention.recorded" => Agent(agent_id) {
        /// The intervention.
        intervention_id: InterventionId,
        /// The agent steered.
        agent_id: AgentId,
        /// The task run it is meant for, if any.
        task_id: Option<TaskId>,
        /// How strongly.
        severity: Severity,
        /// Who decided.
        source: InterventionSource,
    }
    /// The agent applied an intervention.
    InterventionAcknowledged "intervention.acknowledged" => Agent(agent_id) {
        /// The intervention.
        intervention_id: InterventionId,
        /// The agent that applied it.
        agent_id: AgentId,
        /// The task run it was meant for, if any.
        task_id: Option<TaskId>,
    }
    /// The stuck detector found a loop in a task run's trajectory.
    MonitorStuckDetected "monitor.stuck_detected" => Task(task_id) {
        /// The task.
        task_id: TaskId,
        /// The agent running it.
        agent_id: AgentId,
        /// The rule tripped.
        rule: StuckRule,
        /// How many repeats (or minutes without progress) it saw.
        repeats: u32,
    }
    /// The guardian analysed an agent's trajectory.
    MonitorAgentAnalysed "monitor.agent_analysed" => Agent(agent_id) {
        /// The agent.
        agent_id: AgentId,
        /// The task run analysed.
        task_id: TaskId,
        /// Alignment 0–1; `None` when the analysis failed (unknown, never "aligned").
        alignment: Option<f64>,
        /// What the agent is doing, or why the analysis failed.
        summary: String,
    }
    /// The conductor assessed the whole system.
    MonitorSystemAssessed "monitor.system_assessed" => Agent(conductor_id) {
        /// The conductor.
        conductor_id: AgentId,
        /// Coherence 0–1.
        coherence: f64,
        /// Health status.
        health: SystemHealth,
        /// Running agents (task runs) assessed.
        agents: u32,
        /// Confirmed duplicate pairs.
        duplicates: u32,
    }
    /// A sandbox whose task is no longer leased by its holder was destroyed.
    MonitorSandboxReaped "monitor.sandbox_reaped" => Agent(holder) {
        /// The agent that held the task.
        holder: AgentId,
        /// The task the sandbox was for, if its labels named one.
        task_id: Option<TaskId>,
        /// Why it was reaped.
        reason: String,
    }
    /// A discovery duplicated known work and spawned nothing.
    DiscoveryDeduplicated "discovery.deduplicated" => Discovery(discovery_id) {
        /// The discovery.
        discovery_id: DiscoveryId,
        /// What it duplicates.
        of: super::discovery::DuplicateOf,
    }
    /// A limit refused a discovery's branch; the discovery is kept with the reason.
    DiscoveryRefused "discovery.refused" => Discovery(discovery_id) {
        /// The discovery.
        discovery_id: DiscoveryId,
        /// The task that found it.
        source_task: TaskId,
        /// Which limit.
        reason: super::discovery::RefusalReason,
        /// The numbers.
        detail: String,
    }
    /// The discovery analyzer found patterns and recommends actions.
    DiscoveryAnalyzed "discovery.analyzed" => Spec(spec_id) {
        /// The spec analysed.
        spec_id: SpecId,
        /// Discoveries in the window.
        discoveries: u32,
        /// Recommendations, as data (see `omoi-discovery`'s `Recommendation`).
        recommendations: Value,
    }
    /// A near-duplicate was merged into a memory instead of being stored.
    MemoryReinforced "memory.reinforced" => Memory(memory_id) {
        /// The memory.
        memory_id: MemoryId,
        /// Its reinforcements so far.
        reinforcements: u32,
    }
}

/// An event as stored, with its cursor and time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StoredEvent {
    /// Its position in the log.
    pub cursor: Cursor,
    /// When it was written.
    pub at: DateTime<Utc>,
    /// The event.
    pub event: Event,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_form_is_type_and_data_with_dotted_names() {
        let id = TaskId::new();
        let e = Event::TaskReady { task_id: id };
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["type"], "task.ready");
        assert_eq!(json["data"]["task_id"], id.to_string());
        assert_eq!(serde_json::from_value::<Event>(json).unwrap(), e);
        assert_eq!(e.subject(), Subject::Task(id));
        assert_eq!(e.name(), "task.ready");
    }

    #[test]
    fn display_names_the_event_and_its_subject_and_honours_width() {
        let id = TaskId::new();
        let e = Event::TaskReady { task_id: id };
        assert_eq!(e.to_string(), format!("task.ready (task {id})"));
        let wide = format!("{e:<70}|");
        assert_eq!(wide.chars().count(), 71, "{wide}");
        assert!(wide.ends_with(" |"));
        assert_eq!(format!("{:>50}", Subject::Task(id)), format!("{:>50}", format!("task {id}")));
    }

    #[test]
    fn names_are_unique_dotted_and_lowercase() {
        let mut seen = std::collections::HashSet::new();
        for n in Event::NAMES {
            assert!(seen.insert(n), "duplicate {n}");
            let (family, rest) = n.split_once('.').unwrap();
            assert!(!family.is_empty() && !rest.is_empty());
            assert_eq!(n.to_lowercase(), *n);
        }
    }
}
