//! The spec state machine.
//!
//! ```text
//! Draft ─Start(p)─► Running(p) ─Advance─► Running(next p) … Running(sync) ─Complete─► Completed
//!                      │  ▲  ▲
//!      RequestApproval │  │  └──── Resume ──── Failed(p) ◄── Fail ── Running(p)
//!                      ▼  │ Reject
//!             AwaitingApproval(p) ─Approve─► Running(next p)   (Completed after the last phase)
//! Draft | Running | AwaitingApproval | Failed ── Cancel ──► Cancelled
//! ```
//!
//! The table is data ([`SPEC_TRANSITIONS`]): each rule names the source state kind, the event,
//! a guard on the current phase and how the target is derived from it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::TransitionError;
use crate::macros::ParseEnumError;
use crate::string_enum;

string_enum! {
    /// The phases of the spec pipeline, in order.
    pub enum SpecPhase: "spec phase" {
        /// Read the codebase and frame the feature.
        Explore => "explore",
        /// Product requirements: goals, user stories, scope.
        Prd => "prd",
        /// EARS requirements with acceptance criteria.
        Requirements => "requirements",
        /// Architecture, components, data models, APIs.
        Design => "design",
        /// Tickets and atomic tasks with dependencies.
        Tasks => "tasks",
        /// Traceability check and materialization of tickets and tasks.
        Sync => "sync",
    }
}

impl SpecPhase {
    /// The first phase of the pipeline.
    pub const FIRST: SpecPhase = SpecPhase::Explore;

    /// The phase after this one, or `None` after the last.
    pub fn next(self) -> Option<SpecPhase> {
        let i = SpecPhase::ALL.iter().position(|p| *p == self)?;
        SpecPhase::ALL.get(i + 1).copied()
    }

    /// Zero-based position in the pipeline.
    pub fn index(self) -> usize {
        SpecPhase::ALL.iter().position(|p| *p == self).unwrap_or(0)
    }
}

/// Where a spec is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpecState {
    /// Created, not started.
    Draft,
    /// Executing `phase`.
    Running {
        /// The phase being executed.
        phase: SpecPhase,
    },
    /// `phase` passed and waits for a human to approve or reject it.
    AwaitingApproval {
        /// The gated phase.
        phase: SpecPhase,
    },
    /// Every phase passed (terminal).
    Completed,
    /// `phase` failed after its attempts; can be resumed.
    Failed {
        /// The failed phase.
        phase: SpecPhase,
    },
    /// Cancelled (terminal).
    Cancelled,
}

/// What happens to a spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpecEvent {
    /// Begin running at `phase` (the first phase not yet checkpointed).
    Start(SpecPhase),
    /// The current phase passed; move to the next one.
    Advance,
    /// The current phase passed and a human gate is configured for it.
    RequestApproval,
    /// A human approved the gated phase.
    Approve,
    /// A human rejected the gated phase; it runs again.
    Reject,
    /// The last phase passed.
    Complete,
    /// The current phase failed.
    Fail,
    /// Run the failed phase again.
    Resume,
    /// Stop for good.
    Cancel,
}

/// The kind of a [`SpecState`], without its phase: the "from" column of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecStateKind {
    /// [`SpecState::Draft`]
    Draft,
    /// [`SpecState::Running`]
    Running,
    /// [`SpecState::AwaitingApproval`]
    AwaitingApproval,
    /// [`SpecState::Completed`]
    Completed,
    /// [`SpecState::Failed`]
    Failed,
    /// [`SpecState::Cancelled`]
    Cancelled,
}

/// A condition on the current phase for a rule to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhaseGuard {
    /// Any phase (or none).
    Any,
    /// The current phase has a successor.
    HasNext,
    /// The current phase is the last one.
    IsLast,
}

/// How a rule's target state is derived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecTarget {
    /// `Running` at the phase the event names.
    RunningAtGiven,
    /// `Running` at the current phase.
    RunningSame,
    /// `Running` at the phase after the current one.
    RunningNext,
    /// `AwaitingApproval` at the current phase.
    AwaitingSame,
    /// `Failed` at the current phase.
    FailedSame,
    /// [`SpecState::Completed`].
    Completed,
    /// [`SpecState::Cancelled`].
    Cancelled,
}

/// One row of the spec transition table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpecRule {
    /// Source state kind.
    pub from: SpecStateKind,
    /// Event kind (the phase carried by [`SpecEvent::Start`] is ignored for matching).
    pub event: SpecEventKind,
    /// Condition on the current phase.
    pub guard: PhaseGuard,
    /// How the target is derived.
    pub to: SpecTarget,
}

/// The kind of a [`SpecEvent`], without payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecEventKind {
    /// [`SpecEvent::Start`]
    Start,
    /// [`SpecEvent::Advance`]
    Advance,
    /// [`SpecEvent::RequestApproval`]
    RequestApproval,
    /// [`SpecEvent::Approve`]
    Approve,
    /// [`SpecEvent::Reject`]
    Reject,
    /// [`SpecEvent::Complete`]
    Complete,
    /// [`SpecEvent::Fail`]
    Fail,
    /// [`SpecEvent::Resume`]
    Resume,
    /// [`SpecEvent::Cancel`]
    Cancel,
}

const fn rule(from: SpecStateKind, event: SpecEventKind, guard: PhaseGuard, to: SpecTarget) -> SpecRule {
    SpecRule { from, event, guard, to }
}

use PhaseGuard as G;
use SpecEventKind as Ev;
use SpecStateKind as K;
use SpecTarget as T;

/// The spec transition table. Every (state, event, phase) combination no rule matches is illegal.
pub const SPEC_TRANSITIONS: &[SpecRule] = &[
    rule(K::Draft, Ev::Start, G::Any, T::RunningAtGiven),
    rule(K::Draft, Ev::Cancel, G::Any, T::Cancelled),
    rule(K::Running, Ev::Advance, G::HasNext, T::RunningNext),
    rule(K::Running, Ev::RequestApproval, G::Any, T::AwaitingSame),
    rule(K::Running, Ev::Complete, G::IsLast, T::Completed),
    rule(K::Running, Ev::Fail, G::Any, T::FailedSame),
    rule(K::Running, Ev::Cancel, G::Any, T::Cancelled),
    rule(K::AwaitingApproval, Ev::Approve, G::HasNext, T::RunningNext),
    rule(K::AwaitingApproval, Ev::Approve, G::IsLast, T::Completed),
    rule(K::AwaitingApproval, Ev::Reject, G::Any, T::RunningSame),
    rule(K::AwaitingApproval, Ev::Cancel, G::Any, T::Cancelled),
    rule(K::Failed, Ev::Resume, G::Any, T::RunningSame),
    rule(K::Failed, Ev::Cancel, G::Any, T::Cancelled),
];

impl SpecEvent {
    /// The payload-free kind of this event.
    pub const fn kind(self) -> SpecEventKind {
        match self {
            SpecEvent::Start(_) => Ev::Start,
            SpecEvent::Advance => Ev::Advance,
            SpecEvent::RequestApproval => Ev::RequestApproval,
            SpecEvent::Approve => Ev::Approve,
            SpecEvent::Reject => Ev::Reject,
            SpecEvent::Complete => Ev::Complete,
            SpecEvent::Fail => Ev::Fail,
            SpecEvent::Resume => Ev::Resume,
            SpecEvent::Cancel => Ev::Cancel,
        }
    }
}

impl fmt::Display for SpecEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpecEvent::Start(p) => write!(f, "start({p})"),
            SpecEvent::Advance => f.write_str("advance"),
            SpecEvent::RequestApproval => f.write_str("request_approval"),
            SpecEvent::Approve => f.write_str("approve"),
            SpecEvent::Reject => f.write_str("reject"),
            SpecEvent::Complete => f.write_str("complete"),
            SpecEvent::Fail => f.write_str("fail"),
            SpecEvent::Resume => f.write_str("resume"),
            SpecEvent::Cancel => f.write_str("cancel"),
        }
    }
}

impl SpecState {
    /// The payload-free kind of this state.
    pub const fn kind(self) -> SpecStateKind {
        match self {
            SpecState::Draft => K::Draft,
            SpecState::Running { .. } => K::Running,
            SpecState::AwaitingApproval { .. } => K::AwaitingApproval,
            SpecState::Completed => K::Completed,
            SpecState::Failed { .. } => K::Failed,
            SpecState::Cancelled => K::Cancelled,
        }
    }

    /// The phase this state refers to, if any.
    pub const fn phase(self) -> Option<SpecPhase> {
        match self {
            SpecState::Running { phase } | SpecState::AwaitingApproval { phase } | SpecState::Failed { phase } => {
                Some(phase)
            }
            _ => None,
        }
    }

    /// `Completed` or `Cancelled`: nothing moves the spec any more.
    pub const fn is_terminal(self) -> bool {
        matches!(self, SpecState::Completed | SpecState::Cancelled)
    }

    /// The state after `event`, or the refusal if no rule of [`SPEC_TRANSITIONS`] matches.
    pub fn apply(self, event: SpecEvent) -> Result<SpecState, TransitionError<SpecState, SpecEvent>> {
        let phase = self.phase();
        let guard_holds = |g: PhaseGuard| match g {
            G::Any => true,
            G::HasNext => phase.and_then(SpecPhase::next).is_some(),
            G::IsLast => phase.is_some_and(|p| p.next().is_none()),
        };
        let refused = TransitionError { from: self, event };
        let rule = SPEC_TRANSITIONS
            .iter()
            .find(|r| r.from == self.kind() && r.event == event.kind() && guard_holds(r.guard))
            .ok_or(refused)?;
        let current = || phase.ok_or(refused);
        Ok(match rule.to {
            T::RunningAtGiven => match event {
                SpecEvent::Start(p) => SpecState::Running { phase: p },
                _ => return Err(refused),
            },
            T::RunningSame => SpecState::Running { phase: current()? },
            T::RunningNext => SpecState::Running { phase: current()?.next().ok_or(refused)? },
            T::AwaitingSame => SpecState::AwaitingApproval { phase: current()? },
            T::FailedSame => SpecState::Failed { phase: current()? },
            T::Completed => SpecState::Completed,
            T::Cancelled => SpecState::Cancelled,
        })
    }

    /// Every state: the phase-free ones plus each phase-carrying kind at each phase.
    pub fn all() -> Vec<SpecState> {
        let mut v = vec![SpecState::Draft, SpecState::Completed, SpecState::Cancelled];
        for &phase in SpecPhase::ALL {
            v.push(SpecState::Running { phase });
            v.push(SpecState::AwaitingApproval { phase });
            v.push(SpecState::Failed { phase });
        }
        v
    }
}

/// Storage form: `draft`, `running:design`, `awaiting_approval:requirements`, `failed:tasks`,
/// `completed`, `cancelled`.
impl fmt::Display for SpecState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpecState::Draft => f.write_str("draft"),
            SpecState::Running { phase } => write!(f, "running:{phase}"),
            SpecState::AwaitingApproval { phase } => write!(f, "awaiting_approval:{phase}"),
            SpecState::Completed => f.write_str("completed"),
            SpecState::Failed { phase } => write!(f, "failed:{phase}"),
            SpecState::Cancelled => f.write_str("cancelled"),
        }
    }
}

impl FromStr for SpecState {
    type Err = ParseEnumError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ParseEnumError {
            kind: "spec state",
            input: s.to_owned(),
            expected: "draft, running:<phase>, awaiting_approval:<phase>, completed, failed:<phase>, cancelled"
                .to_owned(),
        };
        Ok(match s.split_once(':') {
            None => match s {
                "draft" => SpecState::Draft,
                "completed" => SpecState::Completed,
                "cancelled" => SpecState::Cancelled,
                _ => return Err(bad()),
            },
            Some((kind, phase)) => {
                let phase: SpecPhase = phase.parse().map_err(|_| bad())?;
                match kind {
                    "running" => SpecState::Running { phase },
                    "awaiting_approval" => SpecState::AwaitingApproval { phase },
                    "failed" => SpecState::Failed { phase },
                    _ => return Err(bad()),
                }
            }
        })
    }
}

impl Serialize for SpecState {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SpecState {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for SpecState {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "SpecState".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^(draft|completed|cancelled|(running|awaiting_approval|failed):(explore|prd|requirements|design|tasks|sync))$"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use SpecPhase::*;
    use proptest::prelude::*;

    fn all_events() -> Vec<SpecEvent> {
        let mut v: Vec<SpecEvent> = SpecPhase::ALL.iter().map(|p| SpecEvent::Start(*p)).collect();
        v.extend([
            SpecEvent::Advance,
            SpecEvent::RequestApproval,
            SpecEvent::Approve,
            SpecEvent::Reject,
            SpecEvent::Complete,
            SpecEvent::Fail,
            SpecEvent::Resume,
            SpecEvent::Cancel,
        ]);
        v
    }

    /// Independent statement of the expected machine, written as plain `match` logic.
    fn expected(from: SpecState, event: SpecEvent) -> Option<SpecState> {
        use SpecEvent as Ev;
        use SpecState as St;
        let next = |p: SpecPhase| match p {
            Explore => Some(Prd),
            Prd => Some(Requirements),
            Requirements => Some(Design),
            Design => Some(Tasks),
            Tasks => Some(Sync),
            Sync => None,
        };
        match (from, event) {
            (St::Draft, Ev::Start(p)) => Some(St::Running { phase: p }),
            (St::Draft | St::Running { .. } | St::AwaitingApproval { .. } | St::Failed { .. }, Ev::Cancel) => {
                Some(St::Cancelled)
            }
            (St::Running { phase }, Ev::Advance) => next(phase).map(|p| St::Running { phase: p }),
            (St::Running { phase }, Ev::RequestApproval) => Some(St::AwaitingApproval { phase }),
            (St::Running { phase: Sync }, Ev::Complete) => Some(St::Completed),
            (St::Running { phase }, Ev::Fail) => Some(St::Failed { phase }),
            (St::AwaitingApproval { phase }, Ev::Approve) => {
                Some(next(phase).map_or(St::Completed, |p| St::Running { phase: p }))
            }
            (St::AwaitingApproval { phase }, Ev::Reject) => Some(St::Running { phase }),
            (St::Failed { phase }, Ev::Resume) => Some(St::Running { phase }),
            _ => None,
        }
    }

    #[test]
    fn every_legal_and_illegal_state_event_pair_matches_the_expected_machine() {
        let (mut legal, mut illegal) = (0, 0);
        for from in SpecState::all() {
            for event in all_events() {
                match (from.apply(event), expected(from, event)) {
                    (Ok(to), Some(want)) => {
                        assert_eq!(to, want, "{from} --{event}-->");
                        legal += 1;
                    }
                    (Err(e), None) => {
                        assert_eq!(e, TransitionError { from, event });
                        illegal += 1;
                    }
                    (got, want) => panic!("{from} --{event}--> got {got:?}, expected {want:?}"),
                }
            }
        }
        assert_eq!(legal + illegal, SpecState::all().len() * all_events().len());
        assert!(legal > 0 && illegal > 0);
    }

    #[test]
    fn every_from_to_pair_is_legal_exactly_when_some_event_leads_there() {
        for from in SpecState::all() {
            for to in SpecState::all() {
                let want = all_events().into_iter().any(|e| expected(from, e) == Some(to));
                let got = all_events().into_iter().any(|e| from.apply(e) == Ok(to));
                assert_eq!(got, want, "{from} -> {to}");
            }
        }
    }

    #[test]
    fn storage_strings_round_trip() {
        for s in SpecState::all() {
            assert_eq!(s.to_string().parse::<SpecState>().unwrap(), s);
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(serde_json::from_str::<SpecState>(&json).unwrap(), s);
        }
        assert!("running:nope".parse::<SpecState>().is_err());
        assert!("paused".parse::<SpecState>().is_err());
    }

    #[test]
    fn happy_path_walks_every_phase_in_order() {
        let mut s = SpecState::Draft.apply(SpecEvent::Start(Explore)).unwrap();
        let mut seen = vec![s.phase().unwrap()];
        while let Ok(n) = s.apply(SpecEvent::Advance) {
            s = n;
            seen.push(s.phase().unwrap());
        }
        assert_eq!(seen, SpecPhase::ALL);
        assert_eq!(s.apply(SpecEvent::Complete), Ok(SpecState::Completed));
    }

    proptest! {
        #[test]
        fn random_event_sequences_never_leave_the_table(
            start in proptest::sample::select(SpecState::all()),
            events in proptest::collection::vec(proptest::sample::select(all_events()), 0..64),
        ) {
            let mut state = start;
            for event in events {
                match state.apply(event) {
                    Ok(next) => {
                        prop_assert_eq!(Some(next), expected(state, event));
                        state = next;
                    }
                    Err(e) => prop_assert_eq!(e.from, state),
                }
            }
        }

        #[test]
        fn terminal_states_absorb(
            terminal in proptest::sample::select(vec![SpecState::Completed, SpecState::Cancelled]),
            events in proptest::collection::vec(proptest::sample::select(all_events()), 1..64),
        ) {
            for event in events {
                prop_assert!(terminal.apply(event).is_err());
            }
        }
    }
}
