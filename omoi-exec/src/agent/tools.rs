//! The agent's tools: their JSON schemas for the model, and their execution in a sandbox.

use std::time::Duration;

use omoi_core::{
    DiscoveryKind, ExecOutput, ExecRequest, ReportedDiscovery, Sandbox, SandboxError, ToolCall, ToolSpec, WorkspacePath,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::policy::{ToolName, readonly_argv_allowed};

/// Largest file text returned by `read_file`.
const READ_LIMIT: usize = 100 * 1024;

/// What a finished agent reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinishArgs {
    /// What was done, for people and for dependent tasks.
    pub summary: String,
    /// Structured result: free-form for tasks, the phase's typed output for spec phases.
    #[serde(default)]
    pub output: Value,
}

/// The result of one tool call.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ToolOutcome {
    /// Text for the model; `is_error` marks failures and refusals.
    Output { text: String, is_error: bool },
    /// A discovery was reported.
    Discovery(ReportedDiscovery),
    /// The agent finished.
    Finish(FinishArgs),
}

impl ToolOutcome {
    fn ok(text: impl Into<String>) -> Self {
        ToolOutcome::Output { text: text.into(), is_error: false }
    }

    pub(crate) fn error(text: impl Into<String>) -> Self {
        ToolOutcome::Output { text: text.into(), is_error: true }
    }
}

/// The schema of `tool`; `finish_output` (a JSON schema) types `finish.output` when given.
pub(crate) fn spec(tool: ToolName, finish_output: Option<&Value>) -> ToolSpec {
    let (description, schema) = match tool {
        ToolName::ReadFile => (
            "Read a text file from the workspace.",
            json!({"type": "object", "properties": {"path": {"type": "string", "description": "relative to the workspace root"}}, "required": ["path"]}),
        ),
        ToolName::ListFiles => (
            "List files and directories under a workspace directory.",
            json!({"type": "object", "properties": {"path": {"type": "string", "default": "."}, "depth": {"type": "integer", "minimum": 1, "maximum": 6, "default": 2}}}),
        ),
        ToolName::Search => (
            "Search file contents with a regular expression (grep -rn).",
            json!({"type": "object", "properties": {"pattern": {"type": "string"}, "path": {"type": "string", "default": "."}}, "required": ["pattern"]}),
        ),
        ToolName::RunReadonly => (
            "Run a read-only program without a shell (ls, cat, head, tail, wc, grep, find, git log/show/diff/status, …).",
            json!({"type": "object", "properties": {"argv": {"type": "array", "items": {"type": "string"}, "minItems": 1}}, "required": ["argv"]}),
        ),
        ToolName::WriteFile => (
            "Create or overwrite a file in the workspace.",
            json!({"type": "object", "properties": {"path": {"type": "string"}, "content": {"type": "string"}}, "required": ["path", "content"]}),
        ),
        ToolName::EditFile => (
            "Replace exactly one occurrence of `old` with `new` in a file.",
            json!({"type": "object", "properties": {"path": {"type": "string"}, "old": {"type": "string"}, "new": {"type": "string"}}, "required": ["path", "old", "new"]}),
        ),
        ToolName::RunCommand => (
            "Run a shell command in the workspace (for builds and tests).",
            json!({"type": "object", "properties": {"command": {"type": "string"}, "timeout_secs": {"type": "integer", "minimum": 1}}, "required": ["command"]}),
        ),
        ToolName::ReportDiscovery => (
            "Report new work you found that is outside this task (a bug, a missing requirement, a security issue, …).",
            json!({"type": "object", "properties": {
                "kind": {"type": "string", "enum": DiscoveryKind::ALL.iter().map(|k| k.as_str()).collect::<Vec<_>>()},
                "title": {"type": "string"}, "description": {"type": "string"},
                "done_definition": {"type": "string", "description": "when the new work is done"},
                "files": {"type": "array", "items": {"type": "string"}, "description": "files involved"},
                "blocking": {"type": "boolean", "description": "work after this task must wait for it"},
                "requeue": {"type": "boolean", "description": "this task cannot go on until the new work is done: \
                    it stops now and runs again after it (implies blocking)"},
                "priority_boost": {"type": "boolean"}},
                "required": ["kind", "title", "description", "done_definition"]}),
        ),
        ToolName::Finish => (
            "Finish the task: summarize what you did and give the result.",
            json!({"type": "object", "properties": {
                "summary": {"type": "string"},
                "output": finish_output.cloned().unwrap_or_else(|| json!({"type": "object", "description": "structured result for dependent tasks"}))},
                "required": if finish_output.is_some() { json!(["summary", "output"]) } else { json!(["summary"]) }}),
        ),
    };
    ToolSpec { name: tool.as_str().to_owned(), description: description.to_owned(), input_schema: schema }
}

/// How tools run.
pub(crate) struct ToolRunner<'a> {
    pub(crate) sandbox: &'a dyn Sandbox,
    pub(crate) command_timeout: Duration,
    pub(crate) output_limit: usize,
    /// Commands run read-only (exploration, validation): see [`ToolPolicy::read_only`](super::policy::ToolPolicy::read_only).
    pub(crate) read_only: bool,
    /// Where `run_command` records its runs (the validation verdict rests on them).
    pub(crate) runs: &'a super::verdict::RunLog,
}

#[derive(Deserialize)]
struct PathArg {
    path: String,
}

#[derive(Deserialize)]
struct ListArgs {
    #[serde(default = "dot")]
    path: String,
    #[serde(default = "two")]
    depth: u32,
}

#[derive(Deserialize)]
struct SearchArgs {
    pattern: String,
    #[serde(default = "dot")]
    path: String,
}

#[derive(Deserialize)]
struct ArgvArgs {
    argv: Vec<String>,
}

#[derive(Deserialize)]
struct WriteArgs {
    path: String,
    content: String,
}

#[derive(Deserialize)]
struct EditArgs {
    path: String,
    old: String,
    new: String,
}

#[derive(Deserialize)]
struct CommandArgs {
    command: String,
    timeout_secs: Option<u64>,
}

fn dot() -> String {
    ".".into()
}

fn two() -> u32 {
    2
}

fn args<T: for<'de> Deserialize<'de>>(call: &ToolCall) -> Result<T, ToolOutcome> {
    serde_path_to_error::deserialize(&call.input).map_err(|e| {
        ToolOutcome::error(format!("invalid arguments for `{}`: {} at `{}`", call.name, e.inner(), e.path()))
    })
}

fn ws_path(p: &str) -> Result<WorkspacePath, ToolOutcome> {
    WorkspacePath::parse(p).map_err(|e| ToolOutcome::error(e.to_string()))
}

/// Sandbox errors an agent can act on become error results; the rest end the run.
fn soft(e: SandboxError) -> Result<ToolOutcome, SandboxError> {
    match e {
        SandboxError::PathRejected(r) => Ok(ToolOutcome::error(r.to_string())),
        SandboxError::FileNotFound(p) => Ok(ToolOutcome::error(format!("no such file: {p}"))),
        SandboxError::TooLarge { .. } | SandboxError::InvalidRequest(_) => Ok(ToolOutcome::error(e.to_string())),
        other => Err(other),
    }
}

fn render(out: &ExecOutput) -> String {
    let mut s = match (out.exit_code, out.timed_out) {
        (_, true) => format!("timed out after {:?}\n", out.duration),
        (Some(c), _) => format!("exit code {c}\n"),
        (None, _) => "killed by a signal\n".to_owned(),
    };
    for (name, bytes, cut) in
        [("stdout", &out.stdout, out.stdout_truncated), ("stderr", &out.stderr, out.stderr_truncated)]
    {
        if !bytes.is_empty() {
            s.push_str(&format!(
                "--- {name}{} ---\n{}\n",
                if cut { " (truncated)" } else { "" },
                String::from_utf8_lossy(bytes)
            ));
        }
    }
    s
}

impl ToolRunner<'_> {
    /// Runs an allowed tool call. Infrastructure failures (the sandbox is gone or unreachable)
    /// are errors; everything the agent can fix is an error *result*.
    pub(crate) async fn run(&self, tool: ToolName, call: &ToolCall) -> Result<ToolOutcome, SandboxError> {
        match tool {
            ToolName::ReadFile => self.read(call).await,
            ToolName::ListFiles => self.list(call).await,
            ToolName::Search => self.search(call).await,
            ToolName::RunReadonly => self.readonly(call).await,
            ToolName::WriteFile => self.write(call).await,
            ToolName::EditFile => self.edit(call).await,
            ToolName::RunCommand => self.command(call).await,
            ToolName::ReportDiscovery => {
                Ok(args::<ReportedDiscovery>(call).map(ToolOutcome::Discovery).unwrap_or_else(|e| e))
            }
            ToolName::Finish => Ok(args::<FinishArgs>(call).map(ToolOutcome::Finish).unwrap_or_else(|e| e)),
        }
    }

    async fn exec(&self, req: ExecRequest) -> Result<ExecOutput, SandboxError> {
        self.sandbox.exec(req.output_limit(self.output_limit)).await
    }

    async fn read(&self, call: &ToolCall) -> Result<ToolOutcome, SandboxError> {
        let path = match args::<PathArg>(call).and_then(|a| ws_path(&a.path)) {
            Ok(p) => p,
            Err(e) => return Ok(e),
        };
        // Never more than the cap is read, whatever the file's size.
        match self.sandbox.read_file_prefix(&path, READ_LIMIT as u64).await {
            Ok((bytes, cut)) => Ok(match String::from_utf8(bytes) {
                Ok(text) if cut => ToolOutcome::ok(format!("{text}\n[truncated: file is over {READ_LIMIT} bytes]")),
                Ok(text) => ToolOutcome::ok(text),
                // A cut can split a character: keep the valid prefix.
                Err(e) if cut && e.utf8_error().error_len().is_none() => {
                    let valid = e.utf8_error().valid_up_to();
                    let bytes = e.into_bytes();
                    let text = String::from_utf8_lossy(&bytes[..valid]);
                    ToolOutcome::ok(format!("{text}\n[truncated: file is over {READ_LIMIT} bytes]"))
                }
                Err(e) => {
                    ToolOutcome::error(format!("{path} is binary ({} bytes read), not shown", e.as_bytes().len()))
                }
            }),
            Err(e) => soft(e),
        }
    }

    async fn list(&self, call: &ToolCall) -> Result<ToolOutcome, SandboxError> {
        let (path, depth) =
            match args::<ListArgs>(call).and_then(|a| ws_path(&a.path).map(|p| (p, a.depth.clamp(1, 6)))) {
                Ok(x) => x,
                Err(e) => return Ok(e),
            };
        // A path such as `-delete` must stay a path, never become a `find` action.
        let dir = match path.as_str() {
            "" => ".".to_owned(),
            p if p.starts_with('-') => format!("./{p}"),
            p => p.to_owned(),
        };
        let depth = depth.to_string();
        let argv = [
            "find",
            &dir,
            "-maxdepth",
            &depth,
            "-not",
            "-path",
            "*/.git",
            "-not",
            "-path",
            "*/.git/*",
            "-not",
            "-name",
            ".omoi-*",
        ];
        let out = self.exec(ExecRequest::argv(argv).timeout(self.command_timeout)).await?;
        if !out.success() {
            return Ok(ToolOutcome::error(render(&out)));
        }
        let mut entries: Vec<&str> = out
            .stdout
            .split(|b| *b == b'\n')
            .filter_map(|l| std::str::from_utf8(l).ok())
            .filter(|l| !l.is_empty() && *l != ".")
            .collect();
        entries.sort_unstable();
        Ok(ToolOutcome::ok(entries.join("\n")))
    }

    async fn search(&self, call: &ToolCall) -> Result<ToolOutcome, SandboxError> {
        let (a, path) = match args::<SearchArgs>(call).and_then(|a| ws_path(&a.path).map(|p| (a, p))) {
            Ok(x) => x,
            Err(e) => return Ok(e),
        };
        let dir = if path.is_root() { ".".to_owned() } else { path.to_string() };
        let argv = ["grep", "-rnIE", "--exclude-dir=.git", "-e", &a.pattern, "--", &dir];
        let out = self.exec(ExecRequest::argv(argv).timeout(self.command_timeout)).await?;
        Ok(match out.exit_code {
            Some(0) => ToolOutcome::ok(render_stdout(&out)),
            Some(1) => ToolOutcome::ok("no matches"),
            _ => ToolOutcome::error(render(&out)),
        })
    }

    async fn readonly(&self, call: &ToolCall) -> Result<ToolOutcome, SandboxError> {
        let a = match args::<ArgvArgs>(call) {
            Ok(a) => a,
            Err(e) => return Ok(e),
        };
        if let Err(why) = readonly_argv_allowed(&a.argv) {
            return Ok(ToolOutcome::error(format!("refused: {why}")));
        }
        let out = self.exec(ExecRequest::argv(a.argv).timeout(self.command_timeout).read_only()).await?;
        Ok(ToolOutcome::Output { text: render(&out), is_error: !out.success() })
    }

    async fn write(&self, call: &ToolCall) -> Result<ToolOutcome, SandboxError> {
        let (a, path) = match args::<WriteArgs>(call).and_then(|a| ws_path(&a.path).map(|p| (a, p))) {
            Ok(x) => x,
            Err(e) => return Ok(e),
        };
        match self.sandbox.write_file(&path, a.content.as_bytes()).await {
            Ok(()) => Ok(ToolOutcome::ok(format!("wrote {} bytes to {path}", a.content.len()))),
            Err(e) => soft(e),
        }
    }

    async fn edit(&self, call: &ToolCall) -> Result<ToolOutcome, SandboxError> {
        let (a, path) = match args::<EditArgs>(call).and_then(|a| ws_path(&a.path).map(|p| (a, p))) {
            Ok(x) => x,
            Err(e) => return Ok(e),
        };
        let text = match self.sandbox.read_file(&path).await {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) => return soft(e),
        };
        let n = if a.old.is_empty() { 0 } else { text.matches(&a.old).count() };
        if n != 1 {
            return Ok(ToolOutcome::error(format!("`old` occurs {n} times in {path}; it must occur exactly once")));
        }
        match self.sandbox.write_file(&path, text.replacen(&a.old, &a.new, 1).as_bytes()).await {
            Ok(()) => Ok(ToolOutcome::ok(format!("edited {path}"))),
            Err(e) => soft(e),
        }
    }

    async fn command(&self, call: &ToolCall) -> Result<ToolOutcome, SandboxError> {
        let a = match args::<CommandArgs>(call) {
            Ok(a) => a,
            Err(e) => return Ok(e),
        };
        let timeout = a.timeout_secs.map_or(self.command_timeout, |s| Duration::from_secs(s).min(self.command_timeout));
        let mut req = ExecRequest::shell(a.command.clone()).timeout(timeout);
        if self.read_only {
            req = req.read_only();
        }
        let out = self.exec(req).await?;
        self.runs.record(&a.command, &out);
        Ok(ToolOutcome::Output { text: render(&out), is_error: !out.success() })
    }
}

fn render_stdout(out: &ExecOutput) -> String {
    let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.stdout_truncated {
        s.push_str("\n[truncated]");
    }
    s
}
