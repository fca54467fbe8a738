//! The task state machine.
//!
//! ```text
//!            DependenciesMet          Claim          Start
//!  Waiting ──────────────────► Ready ──────► Claimed ──────► Running
//!     │  ▲                       ▲   ▲          │  │            │  │
//!     │  │ DependencyRestored    │   └─ Retry / Release ────────┘  │
//!     ▼  │                       │              │  Complete        │ Complete
//!  Blocked                   Redrive            ├────────────► Completed
//!     (DependencyFailed)         │              │  Fail
//!                             Failed ◄──────────┴──────────────────┘
//!  any non-terminal ── Cancel ──► Cancelled
//!  Ready, Claimed, Running ── DependencyAdded ──► Waiting
//! ```
//!
//! `Completed` and `Cancelled` absorb every event. `Failed` is the dead letter: it absorbs every
//! automatic event and leaves only through [`TaskEvent::Redrive`], an operator's manual retry.

use super::TransitionError;
use crate::string_enum;

string_enum! {
    /// Where a task is in its life.
    pub enum TaskState: "task state" {
        /// Some dependency has not completed yet.
        Waiting => "waiting",
        /// Every dependency completed; claimable once `run_at` has passed.
        Ready => "ready",
        /// Leased by a worker, not yet started.
        Claimed => "claimed",
        /// The holder reported that it started work.
        Running => "running",
        /// Finished successfully (terminal).
        Completed => "completed",
        /// Attempts exhausted or failed permanently: the dead letter (terminal, redrivable).
        Failed => "failed",
        /// Cancelled by a caller (terminal).
        Cancelled => "cancelled",
        /// A dependency ended `Failed` or `Cancelled`; waits for that dependency to be redriven.
        Blocked => "blocked",
    }
}

string_enum! {
    /// What happens to a task. The input of [`TaskState::apply`].
    pub enum TaskEvent: "task event" {
        /// The last unmet dependency completed.
        DependenciesMet => "dependencies_met",
        /// A dependency ended `Failed` or `Cancelled`.
        DependencyFailed => "dependency_failed",
        /// A failed dependency was redriven, so the task may run after all.
        DependencyRestored => "dependency_restored",
        /// A worker leased the task.
        Claim => "claim",
        /// The lease holder started work.
        Start => "start",
        /// The lease holder finished successfully.
        Complete => "complete",
        /// The attempt failed (or its lease expired) and attempts remain: back to the queue with backoff.
        Retry => "retry",
        /// The holder gave the task back unstarted or interrupted (graceful shutdown), without using an attempt.
        Release => "release",
        /// The attempt failed and no attempt remains, or the failure is permanent.
        Fail => "fail",
        /// A caller cancelled the task.
        Cancel => "cancel",
        /// An operator retried a dead-lettered task by hand.
        Redrive => "redrive",
        /// The task was given an unfinished dependency before it finished: a re-synced plan's
        /// new edge (from `Ready`), or a blocking discovery re-queuing its source behind the
        /// branch (from `Claimed`/`Running`, dropping the lease without using an attempt).
        DependencyAdded => "dependency_added",
    }
}

use TaskEvent as E;
use TaskState as S;

/// The task transition table: `(from, event, to)`. Every pair not listed is illegal.
pub const TASK_TRANSITIONS: &[(TaskState, TaskEvent, TaskState)] = &[
    (S::Waiting, E::DependenciesMet, S::Ready),
    (S::Waiting, E::DependencyFailed, S::Blocked),
    (S::Waiting, E::Cancel, S::Cancelled),
    (S::Blocked, E::DependencyRestored, S::Waiting),
    (S::Blocked, E::Cancel, S::Cancelled),
    (S::Ready, E::Claim, S::Claimed),
    (S::Ready, E::Cancel, S::Cancelled),
    (S::Ready, E::DependencyAdded, S::Waiting),
    (S::Claimed, E::Start, S::Running),
    (S::Claimed, E::Complete, S::Completed),
    (S::Claimed, E::Retry, S::Ready),
    (S::Claimed, E::Release, S::Ready),
    (S::Claimed, E::Fail, S::Failed),
    (S::Claimed, E::Cancel, S::Cancelled),
    (S::Claimed, E::DependencyAdded, S::Waiting),
    (S::Running, E::Complete, S::Completed),
    (S::Running, E::Retry, S::Ready),
    (S::Running, E::Release, S::Ready),
    (S::Running, E::Fail, S::Failed),
    (S::Running, E::Cancel, S::Cancelled),
    (S::Running, E::DependencyAdded, S::Waiting),
    (S::Failed, E::Redrive, S::Ready),
];

impl TaskState {
    /// The state after `event`, or the refusal if the table has no such move.
    pub fn apply(self, event: TaskEvent) -> Result<TaskState, TransitionError<TaskState, TaskEvent>> {
        TASK_TRANSITIONS
            .iter()
            .find(|(from, ev, _)| *from == self && *ev == event)
            .map(|(_, _, to)| *to)
            .ok_or(TransitionError { from: self, event })
    }

    /// `Completed`, `Failed` or `Cancelled`: no automatic event moves the task any more.
    pub const fn is_terminal(self) -> bool {
        matches!(self, S::Completed | S::Failed | S::Cancelled)
    }

    /// `Claimed` or `Running`: a lease is held.
    pub const fn is_leased(self) -> bool {
        matches!(self, S::Claimed | S::Running)
    }

    /// Whether the table allows some event leading from `self` to `to`.
    pub fn can_reach_in_one_step(self, to: TaskState) -> bool {
        TASK_TRANSITIONS.iter().any(|(f, _, t)| *f == self && *t == to)
    }
}

impl TaskEvent {
    /// Events only an operator issues by hand (never a worker, store or monitor).
    pub const fn is_manual(self) -> bool {
        matches!(self, E::Redrive)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn display_honours_width_fill_and_alignment() {
        assert_eq!(format!("[{:<9}]", TaskState::Ready), "[ready    ]");
        assert_eq!(format!("[{:>9}]", TaskState::Ready), "[    ready]");
        assert_eq!(format!("[{:*^9}]", TaskState::Ready), "[**ready**]");
        assert_eq!(format!("[{:.3}]", TaskState::Completed), "[com]");
        assert_eq!(TaskState::Ready.to_string(), "ready");
    }

    /// The expected table, written out independently of `TASK_TRANSITIONS` as a matrix of
    /// target states: rows are states, columns events in `TaskEvent::ALL` order, `-` = illegal.
    fn expected(from: TaskState, event: TaskEvent) -> Option<TaskState> {
        use TaskState::*;
        // columns: DepsMet DepFailed DepRestored Claim Start Complete Retry Release Fail Cancel Redrive DepAdded
        let row: [Option<TaskState>; 12] = match from {
            Waiting => {
                [Some(Ready), Some(Blocked), None, None, None, None, None, None, None, Some(Cancelled), None, None]
            }
            Ready => {
                [None, None, None, Some(Claimed), None, None, None, None, None, Some(Cancelled), None, Some(Waiting)]
            }
            Claimed => [
                None,
                None,
                None,
                None,
                Some(Running),
                Some(Completed),
                Some(Ready),
                Some(Ready),
                Some(Failed),
                Some(Cancelled),
                None,
                Some(Waiting),
            ],
            Running => [
                None,
                None,
                None,
                None,
                None,
                Some(Completed),
                Some(Ready),
                Some(Ready),
                Some(Failed),
                Some(Cancelled),
                None,
                Some(Waiting),
            ],
            Completed => [None; 12],
            Failed => [None, None, None, None, None, None, None, None, None, None, Some(Ready), None],
            Cancelled => [None; 12],
            Blocked => [None, None, Some(Waiting), None, None, None, None, None, None, Some(Cancelled), None, None],
        };
        let col = TaskEvent::ALL.iter().position(|e| *e == event).unwrap();
        row[col]
    }

    #[test]
    fn every_legal_and_illegal_state_event_pair_matches_the_expected_matrix() {
        let mut legal = 0;
        for &from in TaskState::ALL {
            for &event in TaskEvent::ALL {
                match (from.apply(event), expected(from, event)) {
                    (Ok(to), Some(want)) => {
                        assert_eq!(to, want, "{from} --{event}-->");
                        legal += 1;
                    }
                    (Err(err), None) => {
                        assert_eq!(err, TransitionError { from, event });
                        assert!(err.to_string().contains(from.as_str()));
                    }
                    (got, want) => panic!("{from} --{event}--> got {got:?}, expected {want:?}"),
                }
            }
        }
        assert_eq!(legal, TASK_TRANSITIONS.len());
    }

    #[test]
    fn every_from_to_pair_is_reachable_exactly_when_some_event_leads_there() {
        for &from in TaskState::ALL {
            for &to in TaskState::ALL {
                let by_events = TaskEvent::ALL.iter().any(|&e| expected(from, e) == Some(to));
                assert_eq!(from.can_reach_in_one_step(to), by_events, "{from} -> {to}");
            }
        }
    }

    #[test]
    fn table_has_no_duplicate_state_event_pairs() {
        for (i, (f, e, _)) in TASK_TRANSITIONS.iter().enumerate() {
            assert!(
                !TASK_TRANSITIONS[i + 1..].iter().any(|(f2, e2, _)| f2 == f && e2 == e),
                "duplicate rule for {f} {e}"
            );
        }
    }

    #[test]
    fn strings_round_trip() {
        for &s in TaskState::ALL {
            assert_eq!(s.as_str().parse::<TaskState>().unwrap(), s);
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
        assert!("done".parse::<TaskState>().unwrap_err().to_string().contains("waiting"));
    }

    fn any_event() -> impl Strategy<Value = TaskEvent> {
        proptest::sample::select(TaskEvent::ALL)
    }

    proptest! {
        #[test]
        fn random_event_sequences_never_leave_the_table(
            start in proptest::sample::select(TaskState::ALL),
            events in proptest::collection::vec(any_event(), 0..64),
        ) {
            let mut state = start;
            for event in events {
                let before = state;
                match state.apply(event) {
                    Ok(next) => {
                        prop_assert!(TASK_TRANSITIONS.contains(&(before, event, next)));
                        state = next;
                    }
                    Err(e) => prop_assert_eq!(e.from, before),
                }
            }
        }

        #[test]
        fn terminal_states_absorb(
            terminal in proptest::sample::select(vec![TaskState::Completed, TaskState::Failed, TaskState::Cancelled]),
            events in proptest::collection::vec(any_event(), 1..64),
        ) {
            let state = terminal;
            for event in events {
                match state.apply(event) {
                    Ok(next) => {
                        // The only way out of a terminal state is an operator's redrive of a dead letter.
                        prop_assert!(event.is_manual(), "{} left {} on {}", next, state, event);
                        prop_assert_eq!(state, TaskState::Failed);
                        break;
                    }
                    Err(_) => prop_assert!(state.is_terminal()),
                }
            }
        }
    }
}
