//! The agent status machine, with OmoiOS's transition table.
//!
//! For agents the "event" is the requested target status; the table lists, per status, the
//! statuses it may move to. `Terminated` is the only terminal status.

use super::TransitionError;
use crate::string_enum;

string_enum! {
    /// The status of a registered agent.
    pub enum AgentStatus: "agent status" {
        /// Registered; its first heartbeat has not arrived.
        Spawning => "spawning",
        /// Healthy and free for work.
        Idle => "idle",
        /// Healthy and working on a task.
        Running => "running",
        /// Missed heartbeats (default 2) or reported trouble.
        Degraded => "degraded",
        /// Unresponsive (default 3 missed heartbeats); its leased tasks go back to `Ready`.
        Failed => "failed",
        /// Held out of service for inspection.
        Quarantined => "quarantined",
        /// Stopped for good (terminal).
        Terminated => "terminated",
    }
}

use AgentStatus as A;

/// The agent transition table: for each status, the statuses it may move to.
pub const AGENT_TRANSITIONS: &[(AgentStatus, &[AgentStatus])] = &[
    (A::Spawning, &[A::Idle, A::Failed, A::Terminated]),
    (A::Idle, &[A::Running, A::Degraded, A::Quarantined, A::Terminated]),
    (A::Running, &[A::Idle, A::Failed, A::Degraded, A::Quarantined]),
    (A::Degraded, &[A::Idle, A::Failed, A::Quarantined, A::Terminated]),
    (A::Failed, &[A::Quarantined, A::Terminated]),
    (A::Quarantined, &[A::Idle, A::Terminated]),
    (A::Terminated, &[]),
];

impl AgentStatus {
    /// `to` if the table allows moving there from `self`.
    pub fn transition(self, to: AgentStatus) -> Result<AgentStatus, TransitionError<AgentStatus, AgentStatus>> {
        let allowed =
            AGENT_TRANSITIONS.iter().find(|(from, _)| *from == self).is_some_and(|(_, targets)| targets.contains(&to));
        if allowed { Ok(to) } else { Err(TransitionError { from: self, event: to }) }
    }

    /// Only idle and running agents count as active (eligible for work and monitoring).
    pub const fn is_active(self) -> bool {
        matches!(self, A::Idle | A::Running)
    }

    /// `Terminated`.
    pub const fn is_terminal(self) -> bool {
        matches!(self, A::Terminated)
    }

    /// Whether this status sends heartbeats that the monitor expects.
    pub const fn expects_heartbeats(self) -> bool {
        matches!(self, A::Spawning | A::Idle | A::Running | A::Degraded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// OmoiOS's agent status table as an adjacency matrix, written out
    /// independently. Rows/columns follow `AgentStatus::ALL`:
    /// spawning idle running degraded failed quarantined terminated.
    const EXPECTED: [[u8; 7]; 7] = [
        [0, 1, 0, 0, 1, 0, 1], // spawning
        [0, 0, 1, 1, 0, 1, 1], // idle
        [0, 1, 0, 1, 1, 1, 0], // running
        [0, 1, 0, 0, 1, 1, 1], // degraded
        [0, 0, 0, 0, 0, 1, 1], // failed
        [0, 1, 0, 0, 0, 0, 1], // quarantined
        [0, 0, 0, 0, 0, 0, 0], // terminated
    ];

    #[test]
    fn every_legal_and_illegal_from_to_pair_matches_omoios_table() {
        let mut legal = 0;
        for (i, &from) in AgentStatus::ALL.iter().enumerate() {
            for (j, &to) in AgentStatus::ALL.iter().enumerate() {
                let got = from.transition(to);
                if EXPECTED[i][j] == 1 {
                    assert_eq!(got, Ok(to), "{from} -> {to} should be legal");
                    legal += 1;
                } else {
                    assert_eq!(got, Err(TransitionError { from, event: to }), "{from} -> {to} should be illegal");
                }
            }
        }
        assert_eq!(legal, 19);
    }

    #[test]
    fn only_idle_and_running_are_active() {
        let active: Vec<_> = AgentStatus::ALL.iter().filter(|s| s.is_active()).collect();
        assert_eq!(active, [&A::Idle, &A::Running]);
    }

    proptest! {
        #[test]
        fn random_status_requests_never_leave_the_table(
            targets in proptest::collection::vec(proptest::sample::select(AgentStatus::ALL), 0..64),
        ) {
            let mut s = A::Spawning;
            for to in targets {
                if let Ok(next) = s.transition(to) {
                    let (_, allowed) = AGENT_TRANSITIONS.iter().find(|(f, _)| *f == s).unwrap();
                    prop_assert!(allowed.contains(&next));
                    s = next;
                }
            }
        }

        #[test]
        fn terminated_absorbs(targets in proptest::collection::vec(proptest::sample::select(AgentStatus::ALL), 1..32)) {
            for to in targets {
                prop_assert!(A::Terminated.transition(to).is_err());
            }
        }
    }
}
