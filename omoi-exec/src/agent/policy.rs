//! Which tools an agent may use, by execution mode. This is a policy enforced by the loop —
//! a tool outside the policy is neither offered to the model nor run if the model asks for it
//! (the refusal goes back to the model as an error result) — not a sentence in a prompt.
//!
//! | tool | exploration | implementation | validation |
//! |---|---|---|---|
//! | `read_file`, `list_files`, `search` | yes | yes | yes |
//! | `run_readonly` (allow-listed programs, no shell) | yes | yes | yes |
//! | `write_file`, `edit_file` | — | yes | — |
//! | `run_command` (shell) | — | yes | yes |
//! | `report_discovery`, `finish` | yes | yes | yes |
//!
//! Validation may run commands (tests) but not write; any change its commands leave in the
//! workspace is discarded before the task completes.

use std::collections::BTreeSet;

use omoi_core::ExecutionMode;

omoi_core::string_enum! {
    /// The tools an agent loop knows.
    pub enum ToolName: "tool" {
        /// Read a file.
        ReadFile => "read_file",
        /// List files under a directory.
        ListFiles => "list_files",
        /// Search file contents.
        Search => "search",
        /// Run an allow-listed read-only program (argv, no shell).
        RunReadonly => "run_readonly",
        /// Write a whole file.
        WriteFile => "write_file",
        /// Replace one exact occurrence of a string in a file.
        EditFile => "edit_file",
        /// Run a shell command.
        RunCommand => "run_command",
        /// Report new work found while executing.
        ReportDiscovery => "report_discovery",
        /// End the task with a summary and a result.
        Finish => "finish",
    }
}

/// The set of tools an agent may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolPolicy {
    mode: ExecutionMode,
    allowed: BTreeSet<ToolName>,
}

impl ToolPolicy {
    /// The policy of `mode` (see the module table).
    pub fn for_mode(mode: ExecutionMode) -> Self {
        use ToolName::*;
        let mut allowed: BTreeSet<ToolName> =
            [ReadFile, ListFiles, Search, RunReadonly, ReportDiscovery, Finish].into();
        match mode {
            ExecutionMode::Exploration => {}
            ExecutionMode::Implementation => allowed.extend([WriteFile, EditFile, RunCommand]),
            ExecutionMode::Validation => allowed.extend([RunCommand]),
        }
        Self { mode, allowed }
    }

    /// The mode this policy belongs to.
    pub fn mode(&self) -> ExecutionMode {
        self.mode
    }

    /// Whether `tool` may be used.
    pub fn allows(&self, tool: ToolName) -> bool {
        self.allowed.contains(&tool)
    }

    /// The allowed tools, in a stable order.
    pub fn tools(&self) -> impl Iterator<Item = ToolName> + '_ {
        self.allowed.iter().copied()
    }

    /// Why a call to `name` is refused, or `None` if it is allowed.
    pub fn refusal(&self, name: &str) -> Option<String> {
        match name.parse::<ToolName>() {
            Ok(t) if self.allows(t) => None,
            Ok(t) => Some(format!(
                "refused: `{t}` is not available in {} mode (allowed: {})",
                self.mode,
                self.tools().map(|t| t.as_str()).collect::<Vec<_>>().join(", ")
            )),
            Err(_) => Some(format!("refused: there is no tool named `{name}`")),
        }
    }
}

/// Programs `run_readonly` may start. Each is checked with [`readonly_argv_allowed`].
pub const READONLY_PROGRAMS: &[&str] =
    &["ls", "cat", "head", "tail", "wc", "grep", "find", "git", "stat", "file", "du", "tree", "sort", "uniq", "diff"];

/// Git subcommands `run_readonly` may use.
pub const READONLY_GIT: &[&str] =
    &["log", "show", "diff", "status", "ls-files", "blame", "grep", "rev-parse", "branch"];

/// Checks an argv for `run_readonly`: an allow-listed program, and no argument that turns it
/// into a writer (`find -delete/-exec`, `git` subcommands other than readers, output redirects
/// are impossible without a shell).
pub fn readonly_argv_allowed(argv: &[String]) -> Result<(), String> {
    let Some(program) = argv.first() else { return Err("empty command".into()) };
    if !READONLY_PROGRAMS.contains(&program.as_str()) {
        return Err(format!("`{program}` is not a read-only program (allowed: {})", READONLY_PROGRAMS.join(", ")));
    }
    let args = &argv[1..];
    match program.as_str() {
        "find" => {
            if let Some(bad) = args.iter().find(|a| {
                matches!(
                    a.as_str(),
                    "-delete" | "-exec" | "-execdir" | "-ok" | "-okdir" | "-fprint" | "-fprintf" | "-fls"
                )
            }) {
                return Err(format!("`find {bad}` can modify files"));
            }
        }
        "git" => {
            let sub = args.iter().find(|a| !a.starts_with('-')).map(String::as_str).unwrap_or("");
            if !READONLY_GIT.contains(&sub) {
                return Err(format!("`git {sub}` is not read-only (allowed: {})", READONLY_GIT.join(", ")));
            }
            if args.iter().any(|a| a.starts_with("--output") || a == "-o") {
                return Err("git output files are not allowed".into());
            }
        }
        "sort" if args.iter().any(|a| a == "-o" || a.starts_with("--output")) => {
            return Err("`sort -o` writes a file".into());
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_mode_gets_exactly_its_tools() {
        let names = |m| ToolPolicy::for_mode(m).tools().map(|t| t.as_str()).collect::<Vec<_>>();
        assert_eq!(
            names(ExecutionMode::Exploration),
            ["read_file", "list_files", "search", "run_readonly", "report_discovery", "finish"]
        );
        assert!(names(ExecutionMode::Implementation).contains(&"write_file"));
        let v = names(ExecutionMode::Validation);
        assert!(v.contains(&"run_command") && !v.contains(&"write_file") && !v.contains(&"edit_file"));
    }

    #[test]
    fn refusals_name_the_tool_and_the_mode() {
        let p = ToolPolicy::for_mode(ExecutionMode::Validation);
        let r = p.refusal("write_file").unwrap();
        assert!(r.contains("`write_file` is not available in validation mode"), "{r}");
        assert!(p.refusal("read_file").is_none());
        assert!(p.refusal("rm_rf").unwrap().contains("no tool named"));
    }

    #[test]
    fn readonly_commands_are_allow_listed() {
        let argv = |s: &str| s.split(' ').map(str::to_owned).collect::<Vec<_>>();
        assert!(readonly_argv_allowed(&argv("git log --oneline")).is_ok());
        assert!(readonly_argv_allowed(&argv("grep -rn foo src")).is_ok());
        assert!(readonly_argv_allowed(&argv("rm -rf /")).is_err());
        assert!(readonly_argv_allowed(&argv("find . -delete")).is_err());
        assert!(readonly_argv_allowed(&argv("git commit -m x")).is_err());
        assert!(readonly_argv_allowed(&argv("git -C . push")).is_err());
        assert!(readonly_argv_allowed(&argv("sort -o out.txt in.txt")).is_err());
        assert!(readonly_argv_allowed(&[]).is_err());
    }
}
