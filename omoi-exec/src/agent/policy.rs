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
//! Validation may run commands (tests) but not write: in exploration and validation every
//! command runs read-only, on a throwaway copy of the workspace that is discarded afterwards
//! (and, in Docker, in a container with a read-only root file system and no network), so no
//! argv can change the workspace. `run_readonly` always runs that way, in every mode.

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

    /// Whether commands run read-only (every mode but implementation): on a throwaway copy of
    /// the workspace, see [`ExecRequest::read_only`](omoi_core::ExecRequest).
    pub fn read_only(&self) -> bool {
        self.mode != ExecutionMode::Implementation
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

/// `find` actions that run programs or write files.
const FIND_WRITERS: &[&str] =
    &["-delete", "-exec", "-execdir", "-ok", "-okdir", "-fprint", "-fprint0", "-fprintf", "-fls"];

/// `git branch` options that only list (anything else creates, renames, copies or deletes).
const GIT_BRANCH_LISTING: &[&str] = &[
    "-a",
    "--all",
    "-r",
    "--remotes",
    "-v",
    "-vv",
    "--verbose",
    "-l",
    "--list",
    "--show-current",
    "--no-color",
    "--color",
    "--no-abbrev",
    "--ignore-case",
    "--omit-empty",
];

/// `git branch` options that take a commit or pattern and still only list.
const GIT_BRANCH_FILTERS: &[&str] =
    &["--contains", "--no-contains", "--merged", "--no-merged", "--points-at", "--sort", "--format", "--abbrev"];

/// Checks an argv for `run_readonly`: an allow-listed program, and no argument that turns it
/// into a writer or lets it start another program. The command itself then runs on a
/// throwaway copy of the workspace ([`ExecRequest::read_only`](omoi_core::ExecRequest)), so
/// the workspace is safe whatever slips through; this check is what protects everything
/// outside it where the sandbox cannot (the local adapter).
pub fn readonly_argv_allowed(argv: &[String]) -> Result<(), String> {
    let Some(program) = argv.first() else { return Err("empty command".into()) };
    if !READONLY_PROGRAMS.contains(&program.as_str()) {
        return Err(format!("`{program}` is not a read-only program (allowed: {})", READONLY_PROGRAMS.join(", ")));
    }
    let args = &argv[1..];
    let short_cluster = |a: &str, flag: char| a.starts_with('-') && !a.starts_with("--") && a[1..].contains(flag);
    let long = |a: &str, name: &str| a == name || a.starts_with(&format!("{name}="));
    match program.as_str() {
        "find" => {
            if let Some(bad) = args.iter().find(|a| FIND_WRITERS.contains(&a.as_str())) {
                return Err(format!("`find {bad}` runs programs or writes files"));
            }
        }
        "git" => check_git(args)?,
        "sort" => {
            if let Some(bad) = args.iter().find(|a| {
                short_cluster(a, 'o')
                    || short_cluster(a, 'T')
                    || long(a, "--output")
                    || long(a, "--compress-program")
                    || long(a, "--temporary-directory")
            }) {
                return Err(format!("`sort {bad}` writes files or runs a program"));
            }
        }
        "tree" => {
            if let Some(bad) = args.iter().find(|a| a.as_str() == "-o" || long(a, "--output")) {
                return Err(format!("`tree {bad}` writes a file"));
            }
        }
        "file" => {
            if let Some(bad) = args.iter().find(|a| short_cluster(a, 'C') || a.as_str() == "--compile") {
                return Err(format!("`file {bad}` writes a compiled magic file"));
            }
        }
        _ => {}
    }
    Ok(())
}

fn check_git(args: &[String]) -> Result<(), String> {
    // No global options: `-c`/`--config-env` set hooks and pagers that run programs, `-C`,
    // `--git-dir`, `--work-tree` and `--exec-path` point git elsewhere.
    let Some(sub) = args.first().map(String::as_str) else { return Err("`git` needs a subcommand".into()) };
    if sub.starts_with('-') {
        return Err(format!("git global option `{sub}` is not allowed; put the subcommand first"));
    }
    if !READONLY_GIT.contains(&sub) {
        return Err(format!("`git {sub}` is not read-only (allowed: {})", READONLY_GIT.join(", ")));
    }
    let rest = &args[1..];
    for a in rest {
        let a = a.as_str();
        if a == "--" {
            break;
        }
        let bad = a.starts_with("--output")
            || a == "-o" && sub != "grep"
            || a.starts_with("--ext-diff")
            || a.starts_with("--textconv")
            || a.starts_with("--open-files-in-pager")
            || (sub == "grep" && a.starts_with("-O"))
            || (sub == "grep" && a.starts_with('-') && !a.starts_with("--") && a.contains('O'))
            || a.starts_with("--exec")
            || a.starts_with("--upload-pack");
        if bad {
            return Err(format!("`git {sub} {a}` writes files or runs a program"));
        }
    }
    if sub == "branch" {
        let listing = rest.iter().any(|a| a == "-l" || a == "--list");
        for a in rest {
            let a = a.as_str();
            let filter = GIT_BRANCH_FILTERS.iter().any(|f| a == *f || a.starts_with(&format!("{f}=")));
            let ok = GIT_BRANCH_LISTING.contains(&a)
                || a.starts_with("--color=")
                || filter
                || (!a.starts_with('-') && (listing || follows_filter(rest, a)));
            if !ok {
                return Err(format!(
                    "`git branch {a}` changes branches; only listing is allowed (e.g. `git branch -a`, `git branch --list 'omoi/*'`)"
                ));
            }
        }
    }
    Ok(())
}

/// Whether the positional `arg` is the value of a preceding filter option (`--contains X`).
fn follows_filter(args: &[String], arg: &str) -> bool {
    args.windows(2).any(|w| w[1] == arg && GIT_BRANCH_FILTERS.contains(&w[0].as_str()))
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
    fn escape_attempts_through_allowed_programs_are_refused() {
        let argv = |s: &[&str]| s.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>();
        for bad in [
            &["git", "grep", "-Osh -c 'touch pwned'", "x"][..],
            &["git", "grep", "--open-files-in-pager=touch pwned", "x"],
            &["git", "grep", "-iO", "x"],
            &["find", ".", "-fprint0", "out.txt"],
            &["find", ".", "-fprint", "out.txt"],
            &["find", ".", "-exec", "touch", "{}", ";"],
            &["find", ".", "-execdir", "rm", "{}", "+"],
            &["find", ".", "-delete"],
            &["git", "branch", "-D", "main"],
            &["git", "branch", "new-branch"],
            &["git", "branch", "-m", "main", "other"],
            &["git", "branch", "--set-upstream-to=origin/main"],
            &["git", "-c", "core.fsmonitor=touch pwned", "status"],
            &["git", "-C", "/etc", "log"],
            &["git", "--git-dir=/tmp/x", "log"],
            &["git", "diff", "--ext-diff"],
            &["git", "log", "--output=/tmp/x"],
            &["sort", "-uo", "out.txt", "in.txt"],
            &["sort", "--compress-program=sh", "in.txt"],
            &["tree", "-o", "out.txt"],
            &["file", "-C", "-m", "magic"],
        ] {
            assert!(readonly_argv_allowed(&argv(bad)).is_err(), "escape allowed: {bad:?}");
        }
        for good in [
            &["git", "branch", "-a"][..],
            &["git", "branch", "--list", "omoi/*"],
            &["git", "branch", "--contains", "HEAD"],
            &["git", "branch", "--show-current"],
            &["git", "grep", "-n", "-o", "fn main"],
            &["find", ".", "-name", "*.rs", "-print0"],
            &["sort", "-u", "in.txt"],
        ] {
            assert!(readonly_argv_allowed(&argv(good)).is_ok(), "reader refused: {good:?}");
        }
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
        assert!(readonly_argv_allowed(&argv("git --no-pager log")).is_err(), "global options come first or not at all");
        assert!(readonly_argv_allowed(&argv("sort -o out.txt in.txt")).is_err());
        assert!(readonly_argv_allowed(&[]).is_err());
    }
}
