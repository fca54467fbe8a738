//! Lessons from a finished task's trajectory: an `error_fix` for every command that failed
//! and later passed (the error and the edits in between), a `learning` or `decision` from the
//! finish summary (`codebase_knowledge` for exploration), each citing the files involved.

use std::collections::BTreeMap;

use omoi_core::memory::Citation;
use omoi_core::{ExecutionMode, MemoryKind, TaskDefinition};
use serde_json::Value;

use super::citation::{SourceFiles, cite_file, cite_snippet};
use super::tap::Step;

/// Citations per lesson at most.
const MAX_CITATIONS: usize = 8;
/// Lines of one file a citation covers at most.
const MAX_CITED_LINES: u32 = 400;
/// Characters of an error output kept in an `error_fix`.
const ERROR_CHARS: usize = 600;

/// A memory to write, before it is embedded.
#[derive(Debug, Clone, PartialEq)]
pub struct Lesson {
    /// Its kind.
    pub kind: MemoryKind,
    /// Its text.
    pub text: String,
    /// The code it is about.
    pub citations: Vec<Citation>,
}

/// A file the agent touched, and the text it wrote there (for `edit_file`, the new text).
#[derive(Debug, Clone)]
struct Touch {
    path: String,
    snippet: Option<String>,
}

/// A command run, in step order.
#[derive(Debug, Clone)]
struct Run {
    command: String,
    failed: bool,
    output: String,
    /// Index into the touches made before it.
    touches_before: usize,
}

/// What a trajectory shows: commands with their outcomes, files edited, files read.
#[derive(Debug, Default)]
struct Digest {
    runs: Vec<Run>,
    edits: Vec<Touch>,
    reads: Vec<String>,
}

fn digest(steps: &[Step]) -> Digest {
    let mut d = Digest::default();
    let mut pending: Option<(String, Value)> = None;
    for s in steps {
        let name = s.detail.get("name").and_then(Value::as_str).unwrap_or_default().to_owned();
        match s.action.as_str() {
            "tool_call" => pending = Some((name, s.detail.get("input").cloned().unwrap_or(Value::Null))),
            "tool_result" => {
                let Some((call, input)) = pending.take().filter(|(n, _)| *n == name) else { continue };
                let failed = s.detail.get("is_error").and_then(Value::as_bool).unwrap_or(false);
                let text = |k: &str| input.get(k).and_then(Value::as_str).map(str::to_owned);
                match call.as_str() {
                    "run_command" => {
                        if let Some(command) = text("command") {
                            let output = s.detail.get("output").and_then(Value::as_str).unwrap_or_default();
                            d.runs.push(Run {
                                command,
                                failed,
                                output: output.to_owned(),
                                touches_before: d.edits.len(),
                            });
                        }
                    }
                    "write_file" | "edit_file" if !failed => {
                        if let Some(path) = text("path") {
                            let snippet = if call == "edit_file" { text("new") } else { None };
                            d.edits.push(Touch { path, snippet });
                        }
                    }
                    "read_file" if !failed => {
                        if let Some(path) = text("path")
                            && !d.reads.contains(&path)
                        {
                            d.reads.push(path);
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    d
}

fn clip(s: &str, n: usize) -> String {
    let s = s.trim();
    if s.len() <= n {
        return s.to_owned();
    }
    let cut = s.char_indices().take_while(|(i, _)| *i < n).last().map_or(0, |(i, _)| i);
    format!("{}…", &s[..cut])
}

/// Citations of `touches` (one per file, the latest snippet), read from `files` now.
async fn cite_touches(touches: &[Touch], files: &dyn SourceFiles) -> Vec<Citation> {
    let mut latest: BTreeMap<&str, Option<&str>> = BTreeMap::new();
    for t in touches {
        latest.insert(&t.path, t.snippet.as_deref());
    }
    let mut out = Vec::new();
    for (path, snippet) in latest.into_iter().take(MAX_CITATIONS) {
        let Some(text) = files.read_text(path).await else { continue };
        let c = match snippet {
            Some(s) => cite_snippet(path, &text, s, MAX_CITED_LINES),
            None => cite_file(path, &text, MAX_CITED_LINES),
        };
        out.extend(c);
    }
    out
}

/// The lessons of the task `task`, finished with `summary` after `steps`, citing `files` as
/// they are now.
pub async fn lessons(task: &TaskDefinition, summary: &str, steps: &[Step], files: &dyn SourceFiles) -> Vec<Lesson> {
    let d = digest(steps);
    let mut out = Vec::new();
    // error_fix: a failing command that later passed; the fix is the edits in between.
    let mut fixed = Vec::<&str>::new();
    for (i, failure) in d.runs.iter().enumerate().filter(|(_, r)| r.failed) {
        if fixed.contains(&failure.command.as_str()) {
            continue;
        }
        let Some(pass) = d.runs[i + 1..].iter().find(|r| !r.failed && r.command == failure.command) else { continue };
        fixed.push(&failure.command);
        let edits = &d.edits[failure.touches_before..pass.touches_before];
        let mut paths: Vec<&str> = edits.iter().map(|t| t.path.as_str()).collect();
        paths.dedup();
        let fix = if paths.is_empty() {
            "it passed on a later run without edits (a flaky or environmental failure)".to_owned()
        } else {
            format!("fixed by changing {}", paths.join(", "))
        };
        out.push(Lesson {
            kind: MemoryKind::ErrorFix,
            text: format!(
                "`{}` failed: {}\nFix ({}): {fix}. Task summary: {}",
                failure.command,
                clip(&failure.output, ERROR_CHARS),
                task.title,
                clip(summary, 400)
            ),
            citations: cite_touches(edits, files).await,
        });
    }
    let summary = summary.trim();
    if summary.is_empty() {
        return out;
    }
    match task.mode {
        ExecutionMode::Exploration => {
            let reads: Vec<Touch> = d.reads.iter().map(|p| Touch { path: p.clone(), snippet: None }).collect();
            out.push(Lesson {
                kind: MemoryKind::CodebaseKnowledge,
                text: format!("{}: {}", task.title, summary),
                citations: cite_touches(&reads, files).await,
            });
        }
        ExecutionMode::Implementation | ExecutionMode::Validation => {
            let lower = summary.to_lowercase();
            let decided = ["decided", "chose", "instead of", "opted"].iter().any(|w| lower.contains(w));
            out.push(Lesson {
                kind: if decided { MemoryKind::Decision } else { MemoryKind::Learning },
                text: format!("{}: {}", task.title, summary),
                citations: cite_touches(&d.edits, files).await,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::citation::DirFiles;
    use serde_json::json;

    fn call(name: &str, input: Value) -> Step {
        Step { action: "tool_call".into(), detail: json!({"name": name, "input": input}) }
    }

    fn result(name: &str, is_error: bool, output: &str) -> Step {
        Step { action: "tool_result".into(), detail: json!({"name": name, "is_error": is_error, "output": output}) }
    }

    fn task(mode: ExecutionMode) -> TaskDefinition {
        TaskDefinition { title: "Add slugify".into(), mode, ..TaskDefinition::default() }
    }

    #[tokio::test]
    async fn a_failure_that_later_passes_becomes_an_error_fix_citing_the_edit() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("lib.py"), "import re\n\ndef slugify(s):\n    return re.sub('x', '-', s)\n")
            .unwrap();
        let steps = vec![
            call("run_command", json!({"command": "pytest -q"})),
            result("run_command", true, "exit 1\nNameError: name 're' is not defined"),
            call("edit_file", json!({"path": "lib.py", "old": "def", "new": "import re\n\ndef"})),
            result("edit_file", false, "edited"),
            call("run_command", json!({"command": "pytest -q"})),
            result("run_command", false, "exit 0\n3 passed"),
        ];
        let lessons =
            lessons(&task(ExecutionMode::Implementation), "Added slugify.", &steps, &DirFiles(dir.path().into())).await;
        assert_eq!(lessons.len(), 2);
        let fix = &lessons[0];
        assert_eq!(fix.kind, MemoryKind::ErrorFix);
        assert!(fix.text.contains("`pytest -q` failed") && fix.text.contains("NameError"), "{}", fix.text);
        assert!(fix.text.contains("fixed by changing lib.py"), "{}", fix.text);
        assert_eq!(fix.citations.len(), 1);
        assert_eq!(
            (fix.citations[0].path.as_str(), fix.citations[0].start_line, fix.citations[0].end_line),
            ("lib.py", 1, 3)
        );
        assert_eq!(lessons[1].kind, MemoryKind::Learning);
        assert_eq!(lessons[1].citations, fix.citations);
    }

    #[tokio::test]
    async fn failures_that_never_pass_teach_no_fix_and_exploration_teaches_codebase_knowledge() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("README.md"), "# demo\nuses pytest\n").unwrap();
        let steps = vec![
            call("run_command", json!({"command": "make"})),
            result("run_command", true, "exit 2"),
            call("read_file", json!({"path": "README.md"})),
            result("read_file", false, "# demo"),
        ];
        let files = DirFiles(dir.path().into());
        let lessons = lessons(&task(ExecutionMode::Exploration), "Tests run with pytest.", &steps, &files).await;
        assert_eq!(lessons.len(), 1);
        assert_eq!(lessons[0].kind, MemoryKind::CodebaseKnowledge);
        assert_eq!(lessons[0].citations[0].path, "README.md");
        assert_eq!(lessons[0].citations[0].end_line, 2);
        let decided =
            super::lessons(&task(ExecutionMode::Implementation), "Chose regex over a loop.", &[], &files).await;
        assert_eq!(decided[0].kind, MemoryKind::Decision);
        assert!(super::lessons(&task(ExecutionMode::Implementation), "  ", &[], &files).await.is_empty());
    }
}
