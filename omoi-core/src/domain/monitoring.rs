//! What the monitors find: stuck patterns in a trajectory, an agent's alignment, system health.

use crate::string_enum;

string_enum! {
    /// A rule of the stuck detector that a trajectory tripped.
    pub enum StuckRule: "stuck rule" {
        /// The same action with the same result, again and again.
        RepeatedActionResult => "repeated_action_result",
        /// The same action failing, again and again.
        RepeatedFailure => "repeated_failure",
        /// The same message with nothing observed in between.
        Monologue => "monologue",
        /// Two actions alternating A/B/A/B with the same results.
        PingPong => "ping_pong",
        /// No file change, test result or finish for too long.
        NoProgress => "no_progress",
        /// The context window overflowed repeatedly.
        ContextWindow => "context_window",
    }
}

string_enum! {
    /// Health of the whole system, from the conductor's coherence score (checked in this order).
    pub enum SystemHealth: "system health" {
        /// No agent is running.
        NoAgents => "no_agents",
        /// Coherence below the critical threshold.
        Critical => "critical",
        /// Coherence below the warning threshold.
        Warning => "warning",
        /// Too many agents duplicate each other's work.
        Inefficient => "inefficient",
        /// Coherence above the optimal threshold.
        Optimal => "optimal",
        /// Anything else.
        Normal => "normal",
    }
}
