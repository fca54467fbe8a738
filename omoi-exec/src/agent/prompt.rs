//! Prompts for task agents: a system prompt per mode and the task message.

use omoi_core::{ExecutionMode, Task};

use crate::synthesis::Synthesis;

/// Largest predecessor context put into a prompt.
const CONTEXT_CHARS: usize = 12_000;

/// The system prompt for `mode`. Tool limits are enforced by policy; the prompt only explains them.
pub(crate) fn system(mode: ExecutionMode) -> String {
    let role = match mode {
        ExecutionMode::Exploration => {
            "You are an exploration agent. Investigate and report; you cannot change files. \
             Read, list and search the workspace and run read-only programs."
        }
        ExecutionMode::Implementation => {
            "You are an implementation agent. Make the change the task asks for in the workspace \
             (a git checkout on the task's branch), keep it small and focused, add or update tests, \
             and run them. Your changes are committed for you when you finish."
        }
        ExecutionMode::Validation => {
            "You are a validation agent. Check the work against the acceptance criteria by reading \
             code and running the tests. You cannot write files; report what fails."
        }
    };
    format!(
        "{role}\n\nWork only through the tools. If you find work outside this task (a bug, a missing \
         requirement, a security issue), call `report_discovery` and carry on. When you are done, call \
         `finish` with a short summary and, in `output`, a structured result dependent tasks can use \
         (for validation: {{\"passed\": true|false, \"failures\": [...]}})."
    )
}

/// The first user message: the task, its acceptance criteria, and what predecessors produced.
pub(crate) fn task(task: &Task, synthesis: Option<&Synthesis>) -> String {
    let mut s = format!("# Task: {}\n\n{}\n", task.def.title, task.def.description);
    if !task.def.acceptance_criteria.is_empty() {
        s.push_str("\n## Acceptance criteria\n");
        for c in &task.def.acceptance_criteria {
            s.push_str(&format!("- {c}\n"));
        }
    }
    if !task.def.owned_files.is_empty() {
        s.push_str(&format!("\n## Files this task owns\n{}\n", task.def.owned_files.join(", ")));
    }
    if !task.def.input.is_null() {
        s.push_str(&format!("\n## Input\n{}\n", clip(&task.def.input.to_string())));
    }
    if let Some(syn) = synthesis {
        s.push_str(&format!("\n## Results of the tasks this one depends on ({:?} merge)\n", syn.strategy));
        s.push_str(&clip(&serde_json::to_string_pretty(&syn.merged).unwrap_or_default()));
        s.push('\n');
        if !syn.conflicts.is_empty() {
            let keys: Vec<_> = syn.conflicts.iter().map(|c| c.key.as_str()).collect();
            s.push_str(&format!("\nThese predecessors disagree on: {}. Resolve it explicitly.\n", keys.join(", ")));
        }
    }
    s.push_str(&format!("\nTask id: {} (branch omoi/{}).\n", task.id, task.id));
    s
}

fn clip(s: &str) -> String {
    if s.len() <= CONTEXT_CHARS {
        return s.to_owned();
    }
    let cut = s.char_indices().take_while(|(i, _)| *i < CONTEXT_CHARS).last().map_or(0, |(i, _)| i);
    format!("{}\n… [truncated, {} bytes in all]", &s[..cut], s.len())
}
