//! The pre-execution repetition guard: a tool call identical (same tool, same arguments) to the
//! call just before it, when that call failed, is refused with an explanation instead of being
//! run again. Anything in between (an edit, a different command) lifts the refusal, so "fix,
//! then re-run the tests" is never blocked; only the blind retry is.

use omoi_core::ToolCall;
use serde_json::Value;

/// Remembers the last tool call if it failed.
#[derive(Debug, Default)]
pub(super) struct RepeatGuard {
    last_failed: Option<(String, Value, String)>,
}

const ERROR_CHARS: usize = 300;

impl RepeatGuard {
    /// The refusal for `call`, if it repeats the call that just failed.
    pub(super) fn refusal(&self, call: &ToolCall) -> Option<String> {
        let (name, input, error) = self.last_failed.as_ref()?;
        (*name == call.name && *input == call.input).then(|| {
            format!(
                "refused: this exact `{name}` call just failed and running it again unchanged will fail the same way \
                 (it said: {error}). Change the arguments, fix the cause first, or try a different approach."
            )
        })
    }

    /// Records how `call` went.
    pub(super) fn record(&mut self, call: &ToolCall, is_error: bool, output: &str) {
        self.last_failed = is_error.then(|| {
            let error: String = output.chars().take(ERROR_CHARS).collect();
            (call.name.clone(), call.input.clone(), error)
        });
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn call(name: &str, input: Value) -> ToolCall {
        ToolCall { id: "c".into(), name: name.into(), input }
    }

    #[test]
    fn an_identical_call_right_after_its_failure_is_refused_naming_the_error() {
        let mut g = RepeatGuard::default();
        let c = call("run_command", json!({"command": "cargo test"}));
        assert_eq!(g.refusal(&c), None);
        g.record(&c, true, "exit 101: test parser::empty ... FAILED");
        let refusal = g.refusal(&c).expect("refused");
        assert!(refusal.contains("exit 101") && refusal.contains("run_command"), "{refusal}");
    }

    #[test]
    fn a_different_call_in_between_or_a_success_or_other_arguments_lift_the_refusal() {
        let mut g = RepeatGuard::default();
        let test = call("run_command", json!({"command": "cargo test"}));
        g.record(&test, true, "failed");
        assert!(g.refusal(&call("run_command", json!({"command": "cargo test -- parser"}))).is_none());
        assert!(g.refusal(&call("read_file", json!({"command": "cargo test"}))).is_none());
        g.record(&call("write_file", json!({"path": "src/lib.rs"})), false, "ok");
        assert!(g.refusal(&test).is_none(), "the fix in between lifts it");
        g.record(&test, false, "ok");
        assert!(g.refusal(&test).is_none(), "a success is not refused");
    }
}
