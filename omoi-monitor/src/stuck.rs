//! The stuck detector's rules: pure checks over the newest window of a trajectory (after the last
//! steering), with thresholds from [`StuckRules`]. Modelled on OpenHands' rules (4/3/3/6), plus
//! no progress for a while and repeated context-window errors.
//!
//! | rule | trips when |
//! |---|---|
//! | [`RepeatedFailure`](StuckRule::RepeatedFailure) | the last `same_failure_repeats` actions are equal and each failed |
//! | [`RepeatedActionResult`](StuckRule::RepeatedActionResult) | the last `same_action_repeats` actions are equal and so are their results |
//! | [`PingPong`](StuckRule::PingPong) | the last `oscillation_window` action/result pairs alternate A/B/A/B (A ≠ B) |
//! | [`Monologue`](StuckRule::Monologue) | the last `same_message_repeats` messages are equal with nothing observed between them |
//! | [`ContextWindow`](StuckRule::ContextWindow) | `context_window_errors` context-window errors in the window |
//! | [`NoProgress`](StuckRule::NoProgress) | no file change, test result or finish for `no_progress_for` |

use chrono::{DateTime, Utc};
use omoi_core::StuckRule;
use omoi_core::config::StuckRules;

use crate::trajectory::{Item, Trajectory};

/// A rule the trajectory tripped.
#[derive(Debug, Clone, PartialEq)]
pub struct StuckFinding {
    /// Which rule.
    pub rule: StuckRule,
    /// Repeats seen (minutes without progress for [`StuckRule::NoProgress`]).
    pub repeats: u32,
    /// What to tell the agent.
    pub advice: String,
}

/// An action with the observation that followed it.
#[derive(Debug, PartialEq)]
struct Pair<'a> {
    action: &'a str,
    observation: Option<(&'a str, bool)>,
}

fn pairs<'a>(items: &[&'a Item]) -> Vec<Pair<'a>> {
    let mut out: Vec<Pair<'a>> = Vec::new();
    for item in items {
        match item {
            Item::Action(a) => out.push(Pair { action: a, observation: None }),
            Item::Observation { key, is_error } => {
                if let Some(last) = out.last_mut().filter(|p| p.observation.is_none()) {
                    last.observation = Some((key, *is_error));
                }
            }
            _ => {}
        }
    }
    out
}

fn tail<T>(v: &[T], n: usize) -> Option<&[T]> {
    (n > 0 && v.len() >= n).then(|| &v[v.len() - n..])
}

fn all_equal<T: PartialEq>(v: &[T]) -> bool {
    v.windows(2).all(|w| w[0] == w[1])
}

fn n(v: u32) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

/// The first rule `trajectory` trips at `now`, if any.
pub fn detect(trajectory: &Trajectory, rules: &StuckRules, now: DateTime<Utc>) -> Option<StuckFinding> {
    let items: Vec<&Item> = trajectory.entries.iter().map(|e| &e.item).collect();
    let overflows = items.iter().filter(|i| matches!(i, Item::ContextWindowError)).count();
    if rules.context_window_errors > 0 && overflows >= n(rules.context_window_errors) {
        return Some(StuckFinding {
            rule: StuckRule::ContextWindow,
            repeats: u32::try_from(overflows).unwrap_or(u32::MAX),
            advice: "The conversation keeps overflowing the context window. Work in smaller steps: read only the \
                     parts of files you need and keep command output short."
                .into(),
        });
    }
    let pairs = pairs(&items);
    let complete: Vec<&Pair<'_>> = pairs.iter().filter(|p| p.observation.is_some()).collect();
    if let Some(last) = tail(&complete, n(rules.same_failure_repeats))
        && all_equal(&last.iter().map(|p| p.action).collect::<Vec<_>>())
        && last.iter().all(|p| p.observation.is_some_and(|(_, err)| err))
    {
        return Some(StuckFinding {
            rule: StuckRule::RepeatedFailure,
            repeats: rules.same_failure_repeats,
            advice: format!(
                "The same action failed {} times in a row. Stop repeating it: read the error, change your approach, \
                 or report what blocks you.",
                rules.same_failure_repeats
            ),
        });
    }
    if let Some(last) = tail(&complete, n(rules.same_action_repeats))
        && all_equal(last)
    {
        return Some(StuckFinding {
            rule: StuckRule::RepeatedActionResult,
            repeats: rules.same_action_repeats,
            advice: format!(
                "You ran the same action {} times and got the same result each time. It will not change; do \
                 something different that moves the task forward.",
                rules.same_action_repeats
            ),
        });
    }
    if rules.oscillation_window >= 4
        && let Some(last) = tail(&complete, n(rules.oscillation_window))
        && last[0] != last[1]
        && last.iter().enumerate().all(|(i, p)| *p == last[i % 2])
    {
        return Some(StuckFinding {
            rule: StuckRule::PingPong,
            repeats: rules.oscillation_window / 2,
            advice: "You are alternating between the same two actions with the same results. Break the cycle: \
                     decide what you learned and take a different next step."
                .into(),
        });
    }
    let since_observation: Vec<&str> = items
        .iter()
        .rev()
        .take_while(|i| !matches!(i, Item::Observation { .. }))
        .filter_map(|i| match i {
            Item::Message(m) => Some(m.as_str()),
            _ => None,
        })
        .collect();
    if let Some(last) = tail(&since_observation, n(rules.same_message_repeats))
        && all_equal(last)
    {
        return Some(StuckFinding {
            rule: StuckRule::Monologue,
            repeats: rules.same_message_repeats,
            advice: "You keep saying the same thing without acting. Use a tool to make progress, or call `finish`."
                .into(),
        });
    }
    let idle = (now - trajectory.last_progress).to_std().unwrap_or_default();
    if !rules.no_progress_for.is_zero() && idle >= rules.no_progress_for {
        return Some(StuckFinding {
            rule: StuckRule::NoProgress,
            repeats: u32::try_from(idle.as_secs() / 60).unwrap_or(u32::MAX),
            advice: format!(
                "No file change, test result or finish for {} minutes. Focus on the smallest change that moves the \
                 task forward, test it, and finish.",
                idle.as_secs() / 60
            ),
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::time::Duration;

    use omoi_core::{AgentId, TaskId};

    use super::*;
    use crate::trajectory::Entry;

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    fn traj(items: Vec<Item>) -> Trajectory {
        let mut t = Trajectory::new(TaskId::new(), AgentId::new(), t0());
        t.entries = items.into_iter().map(|item| Entry { at: t0(), item }).collect::<VecDeque<_>>();
        t
    }

    fn act(a: &str) -> Item {
        Item::Action(a.into())
    }

    fn ok(o: &str) -> Item {
        Item::Observation { key: o.into(), is_error: false }
    }

    fn err(o: &str) -> Item {
        Item::Observation { key: o.into(), is_error: true }
    }

    fn msg(m: &str) -> Item {
        Item::Message(m.into())
    }

    fn found(items: Vec<Item>) -> Option<StuckRule> {
        detect(&traj(items), &StuckRules::default(), t0()).map(|f| f.rule)
    }

    fn repeat(n: usize, f: impl Fn(usize) -> Vec<Item>) -> Vec<Item> {
        (0..n).flat_map(f).collect()
    }

    #[test]
    fn same_action_and_same_result_four_times_trips() {
        let items = repeat(4, |_| vec![act("ls"), ok("a b")]);
        assert_eq!(found(items), Some(StuckRule::RepeatedActionResult));
    }

    #[test]
    fn same_action_three_times_or_a_changed_result_does_not_trip() {
        assert_eq!(found(repeat(3, |_| vec![act("ls"), ok("a b")])), None);
        let changing = repeat(4, |i| vec![act("ls"), ok(&format!("files {i}"))]);
        assert_eq!(found(changing), None);
    }

    #[test]
    fn same_failing_action_three_times_trips() {
        let items = repeat(3, |i| vec![act("cargo test"), err(&format!("failed at line {i}"))]);
        assert_eq!(found(items), Some(StuckRule::RepeatedFailure));
    }

    #[test]
    fn two_failures_or_three_failures_of_different_actions_do_not_trip() {
        assert_eq!(found(repeat(2, |_| vec![act("cargo test"), err("boom")])), None);
        let varied = repeat(3, |i| vec![act(&format!("cargo test {i}")), err("boom")]);
        assert_eq!(found(varied), None);
        let last_ok = vec![act("t"), err("x"), act("t"), err("x"), act("t"), ok("passed")];
        assert_eq!(found(last_ok), None);
    }

    #[test]
    fn same_message_three_times_with_nothing_observed_between_trips() {
        let items = vec![act("ls"), ok("a"), msg("I will fix it"), msg("I will fix it"), msg("I will fix it")];
        assert_eq!(found(items), Some(StuckRule::Monologue));
    }

    #[test]
    fn same_message_with_an_observation_between_does_not_trip() {
        let items = vec![msg("I will fix it"), msg("I will fix it"), act("ls"), ok("a"), msg("I will fix it")];
        assert_eq!(found(items), None);
        assert_eq!(found(vec![msg("a"), msg("a"), msg("b")]), None);
    }

    #[test]
    fn ab_ab_ab_ping_pong_over_six_steps_trips() {
        let items = repeat(3, |_| vec![act("open a"), ok("A"), act("open b"), ok("B")]);
        assert_eq!(found(items[..12].to_vec()), Some(StuckRule::PingPong));
    }

    #[test]
    fn ping_pong_over_five_steps_or_with_a_changed_result_does_not_trip() {
        let five: Vec<Item> = repeat(3, |_| vec![act("open a"), ok("A"), act("open b"), ok("B")])[..10].to_vec();
        assert_eq!(found(five), None);
        let mut changed: Vec<Item> = repeat(3, |_| vec![act("open a"), ok("A"), act("open b"), ok("B")]);
        changed[11] = ok("B'");
        assert_eq!(found(changed), None);
    }

    #[test]
    fn no_progress_for_the_configured_time_trips() {
        let t = traj(vec![act("ls"), ok("a")]);
        let rules = StuckRules::default();
        let late = t0() + chrono::Duration::from_std(rules.no_progress_for).unwrap();
        let f = detect(&t, &rules, late).unwrap();
        assert_eq!((f.rule, f.repeats), (StuckRule::NoProgress, 10));
    }

    #[test]
    fn no_progress_just_under_the_limit_does_not_trip() {
        let t = traj(vec![act("ls"), ok("a")]);
        let rules = StuckRules::default();
        let almost = t0() + chrono::Duration::from_std(rules.no_progress_for - Duration::from_secs(1)).unwrap();
        assert_eq!(detect(&t, &rules, almost), None);
    }

    #[test]
    fn repeated_context_window_errors_trip() {
        let items =
            vec![Item::ContextWindowError, act("ls"), ok("a"), Item::ContextWindowError, Item::ContextWindowError];
        assert_eq!(found(items), Some(StuckRule::ContextWindow));
    }

    #[test]
    fn two_context_window_errors_do_not_trip() {
        assert_eq!(found(vec![Item::ContextWindowError, act("ls"), ok("a"), Item::ContextWindowError]), None);
    }

    #[test]
    fn thresholds_come_from_config() {
        let rules = StuckRules { same_failure_repeats: 5, ..StuckRules::default() };
        let four = traj(repeat(4, |i| vec![act("make"), err(&format!("e{i}"))]));
        assert_eq!(detect(&four, &rules, t0()), None);
        let five = traj(repeat(5, |i| vec![act("make"), err(&format!("e{i}"))]));
        assert_eq!(detect(&five, &rules, t0()).map(|f| f.rule), Some(StuckRule::RepeatedFailure));
    }
}
