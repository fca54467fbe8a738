//! Validation verdicts from what actually ran.
//!
//! Every `run_command` call is recorded by the tool itself ([`RunLog`]): the command, its exit
//! code and the tail of its output. In validation mode those runs are the test runs, and the
//! verdict is theirs, never the model's: it passed only if at least one command ran and the last
//! run of every distinct command exited 0. A `finish` whose `output.passed` claims a pass the
//! runs contradict is refused and the model is told which run contradicts it; a model may only
//! make the verdict stricter (claim a failure the tests did not show).

use omoi_core::ExecOutput;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::tools::FinishArgs;

/// Output tail kept per run (bytes).
const TAIL: usize = 4096;

/// One command an agent ran, as the tool saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CommandRun {
    /// The shell command.
    pub command: String,
    /// Its exit code (`None`: killed by a signal).
    pub exit_code: Option<i32>,
    /// Whether it hit its timeout.
    pub timed_out: bool,
    /// The end of its stdout and stderr.
    pub output_tail: String,
}

impl CommandRun {
    /// The run of `command` that produced `out`.
    pub fn of(command: impl Into<String>, out: &ExecOutput) -> Self {
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        let err = String::from_utf8_lossy(&out.stderr);
        if !err.is_empty() {
            if !text.is_empty() {
                text.push('\n');
            }
            text.push_str(&err);
        }
        let mut start = text.len().saturating_sub(TAIL);
        while !text.is_char_boundary(start) {
            start += 1;
        }
        Self {
            command: command.into(),
            exit_code: out.exit_code,
            timed_out: out.timed_out,
            output_tail: text[start..].to_owned(),
        }
    }

    /// Exited 0 in time.
    pub fn passed(&self) -> bool {
        self.exit_code == Some(0) && !self.timed_out
    }

    fn describe(&self) -> String {
        match (self.exit_code, self.timed_out) {
            (_, true) => format!("`{}` timed out", self.command),
            (Some(c), _) => format!("`{}` exited {c}", self.command),
            (None, _) => format!("`{}` was killed by a signal", self.command),
        }
    }
}

/// The runs of one agent run, in order; written by the tools.
#[derive(Debug, Default)]
pub(crate) struct RunLog(Mutex<Vec<CommandRun>>);

impl RunLog {
    /// Records a run.
    pub(crate) fn record(&self, command: &str, out: &ExecOutput) {
        self.0.lock().push(CommandRun::of(command, out));
    }

    /// The runs so far.
    pub(crate) fn snapshot(&self) -> Vec<CommandRun> {
        self.0.lock().clone()
    }
}

/// A validation's verdict, from its recorded runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ValidationVerdict {
    /// Whether the tests passed.
    pub passed: bool,
    /// The runs it rests on: the last run of each distinct command, in first-run order.
    pub runs: Vec<CommandRun>,
}

impl ValidationVerdict {
    /// The verdict of `runs`, or `None` when no command ran (no verdict at all).
    pub fn of(runs: &[CommandRun]) -> Option<Self> {
        let mut last: Vec<CommandRun> = Vec::new();
        for r in runs {
            match last.iter_mut().find(|l| l.command == r.command) {
                Some(l) => *l = r.clone(),
                None => last.push(r.clone()),
            }
        }
        if last.is_empty() {
            return None;
        }
        Some(Self { passed: last.iter().all(CommandRun::passed), runs: last })
    }

    /// The failing runs.
    pub fn failures(&self) -> impl Iterator<Item = &CommandRun> {
        self.runs.iter().filter(|r| !r.passed())
    }

    /// One line: `passed: `a` exited 0` or `failed: `b` exited 1`.
    pub fn describe(&self) -> String {
        let runs: Vec<String> = self.runs.iter().map(CommandRun::describe).collect();
        format!("{}: {}", if self.passed { "passed" } else { "failed" }, runs.join(", "))
    }
}

/// What the model claims in `finish.output.passed`, if anything.
pub fn claimed_pass(finish: &FinishArgs) -> Option<bool> {
    finish.output.get("passed").and_then(serde_json::Value::as_bool)
}

/// Refuses a validation `finish` that no run backs, or whose claim the runs contradict.
pub(crate) fn check_validation_finish(finish: &FinishArgs, runs: &[CommandRun]) -> Result<(), String> {
    let Some(verdict) = ValidationVerdict::of(runs) else {
        return Err("no test command was run: run the tests with `run_command` before finishing".into());
    };
    match claimed_pass(finish) {
        Some(true) if !verdict.passed => {
            let failing: Vec<String> = verdict.failures().map(CommandRun::describe).collect();
            Err(format!(
                "you claim the tests passed, but {}. The verdict comes from the runs: report `passed: false` with the \
                 failures",
                failing.join(", ")
            ))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(command: &str, code: i32) -> CommandRun {
        CommandRun { command: command.into(), exit_code: Some(code), timed_out: false, output_tail: String::new() }
    }

    #[test]
    fn verdict_uses_the_last_run_of_each_command_and_needs_one() {
        assert_eq!(ValidationVerdict::of(&[]), None);
        let v = ValidationVerdict::of(&[run("pytest", 1), run("ruff", 0), run("pytest", 0)]).unwrap();
        assert!(v.passed);
        assert_eq!(v.runs.len(), 2);
        let v = ValidationVerdict::of(&[run("pytest", 0), run("ruff", 2)]).unwrap();
        assert!(!v.passed);
        assert_eq!(v.describe(), "failed: `pytest` exited 0, `ruff` exited 2");
        let timed = CommandRun { timed_out: true, ..run("pytest", 0) };
        assert!(!ValidationVerdict::of(&[timed]).unwrap().passed);
    }

    #[test]
    fn a_claimed_pass_over_a_failing_run_is_not_believed() {
        let f = |passed: bool| FinishArgs { summary: "s".into(), output: serde_json::json!({ "passed": passed }) };
        let err = check_validation_finish(&f(true), &[run("python3 -m unittest", 1)]).unwrap_err();
        assert!(err.contains("`python3 -m unittest` exited 1"), "{err}");
        assert!(check_validation_finish(&f(false), &[run("python3 -m unittest", 1)]).is_ok());
        assert!(check_validation_finish(&f(true), &[run("python3 -m unittest", 0)]).is_ok());
        assert!(check_validation_finish(&f(false), &[run("python3 -m unittest", 0)]).is_ok(), "stricter is allowed");
        assert!(check_validation_finish(&f(true), &[]).unwrap_err().contains("no test command"));
    }
}
