//! The exec protocol over Daytona's `process/execute`, which takes one command string and
//! returns `{exitCode, result}` with stdout and stderr merged and no stdin.
//!
//! Every command is a generated `sh` script, sent base64-encoded (so the daemon's simple quote
//! splitting and any shell see the same single word). The script
//!
//! 1. resolves and enters the working directory (refusing symlink escapes),
//! 2. decodes stdin, the environment and the argv from base64,
//! 3. starts the command with `setsid` (its own process group) with stdout and stderr going to
//!    separate files, and a `setsid` watchdog that kills the whole group at the timeout,
//! 4. kills whatever is left of the group when the command exits, and
//! 5. prints one frame: exit status, timeout flag, byte counts, then both outputs (cut at the
//!    limit) in base64.
//!
//! So stdout and stderr stay separate, binary output survives, and the timeout kills the tree
//! even though the daemon itself would only kill the first process.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use omoi_core::{SandboxError, WorkspacePath};

use crate::shell::{self, Expect};

/// Base64 of a script up to this size is sent inline; larger scripts are uploaded first (one
/// argument may not exceed 128 KiB on Linux).
pub(crate) const INLINE_LIMIT: usize = 96 * 1024;

fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// The `command` string that runs `script` (inline).
pub(crate) fn inline_command(script: &str) -> String {
    format!("sh -c 'eval \"$(echo {} | base64 -d)\"'", b64(script.as_bytes()))
}

/// The `command` string that runs an uploaded script file (which removes itself).
pub(crate) fn file_command(path: &str) -> String {
    format!("sh {path}")
}

/// A shell expression assigning the decoded `bytes` to variable `var` exactly (trailing
/// newlines included).
fn assign(var: &str, bytes: &[u8]) -> String {
    format!("{var}=$(printf %s {} | base64 -d; printf x); {var}=${{{var}%x}}", b64(bytes))
}

/// A heredoc writing `bytes` to `file`.
fn heredoc(file: &str, bytes: &[u8]) -> String {
    let mut text = String::new();
    let encoded = b64(bytes);
    let _ = writeln!(text, "base64 -d > {file} <<'OMOI_B64_EOF'");
    for line in encoded.as_bytes().chunks(76) {
        text.push_str(std::str::from_utf8(line).unwrap_or_default());
        text.push('\n');
    }
    text.push_str("OMOI_B64_EOF\n");
    text
}

/// One command to run.
pub(crate) struct ExecScript<'a> {
    pub(crate) nonce: &'a str,
    pub(crate) root: &'a str,
    pub(crate) cwd: Option<&'a WorkspacePath>,
    pub(crate) argv: &'a [String],
    pub(crate) env: &'a BTreeMap<String, String>,
    pub(crate) stdin: Option<&'a [u8]>,
    pub(crate) timeout: Duration,
    pub(crate) output_limit: usize,
    /// Set when the script is uploaded as a file: it removes itself first.
    pub(crate) self_path: Option<&'a str>,
}

impl ExecScript<'_> {
    /// Checks names and builds the script.
    pub(crate) fn render(&self) -> Result<String, SandboxError> {
        if self.argv.is_empty() {
            return Err(SandboxError::InvalidRequest("empty argv".into()));
        }
        let mut s = String::new();
        if let Some(me) = self.self_path {
            let _ = writeln!(s, "rm -f {}", shell::quote(me));
        }
        let frame = format!("OMOI-FRAME-{}", self.nonce);
        let end = format!("OMOI-END-{}", self.nonce);
        let cwd = self.cwd.cloned().unwrap_or_else(WorkspacePath::root);
        let resolve = shell::resolve_script(self.root, &cwd, Expect::Dir);
        let _ = writeln!(s, "t=$( ( {resolve} ) 2>/dev/null ); rc=$?");
        let _ = writeln!(s, "if [ $rc -ne 0 ]; then printf '\\n{frame} cwd %s\\n' \"$rc\"; exit 0; fi");
        let _ = writeln!(s, "cd -- \"$t\" || {{ printf '\\n{frame} cwd 4\\n'; exit 0; }}");
        let _ = writeln!(s, "d=$(mktemp -d /tmp/omoi-exec.XXXXXX) || exit 125");
        match self.stdin {
            Some(bytes) => s.push_str(&heredoc("\"$d/in\"", bytes)),
            None => s.push_str(": > \"$d/in\"\n"),
        }
        for (k, v) in self.env {
            if !shell::is_env_name(k) {
                return Err(SandboxError::InvalidRequest(format!("invalid environment variable name {k:?}")));
            }
            let _ = writeln!(s, "{}; export {k}", assign(k, v.as_bytes()));
        }
        s.push_str("set --\n");
        for arg in self.argv {
            let _ = writeln!(s, "{}; set -- \"$@\" \"$a\"", assign("a", arg.as_bytes()));
        }
        let secs = self.timeout.as_secs_f64().max(0.001);
        let _ = writeln!(s, "setsid \"$@\" < \"$d/in\" > \"$d/out\" 2> \"$d/err\" &");
        s.push_str("c=$!\n");
        let _ = writeln!(
            s,
            "setsid sh -c 'sleep \"$1\"; : > \"$2/timedout\"; kill -KILL -\"$3\"' omoi-watchdog {secs:.3} \"$d\" \"$c\" < /dev/null > /dev/null 2>&1 &"
        );
        s.push_str("w=$!\nwait \"$c\"; r=$?\n");
        s.push_str("kill -KILL -\"$c\" 2>/dev/null; kill -KILL -\"$w\" 2>/dev/null\n");
        s.push_str("to=0; [ -e \"$d/timedout\" ] && to=1\n");
        s.push_str("o=$(wc -c < \"$d/out\" | tr -d ' '); e=$(wc -c < \"$d/err\" | tr -d ' ')\n");
        let limit = self.output_limit;
        let _ = writeln!(s, "printf '\\n{frame} run %s %s %s %s\\n' \"$r\" \"$to\" \"$o\" \"$e\"");
        let _ = writeln!(s, "head -c {limit} \"$d/out\" | base64 | tr -d '\\n'; printf '\\n'");
        let _ = writeln!(s, "head -c {limit} \"$d/err\" | base64 | tr -d '\\n'; printf '\\n{end}\\n'");
        s.push_str("rm -rf \"$d\"\n");
        Ok(s)
    }
}

/// What the frame says.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The working directory could not be used (a [`shell`] resolution exit code).
    Cwd(i64),
    /// The command ran.
    Ran {
        exit_code: Option<i32>,
        timed_out: bool,
        stdout: Vec<u8>,
        stdout_truncated: bool,
        stderr: Vec<u8>,
        stderr_truncated: bool,
    },
}

fn protocol(message: String) -> SandboxError {
    SandboxError::Backend { provider: "daytona", message: format!("exec protocol: {message}") }
}

/// Parses the frame out of the daemon's `result` (anything the wrapper itself printed before
/// it is ignored).
pub(crate) fn parse(result: &str, nonce: &str, output_limit: usize) -> Result<Outcome, SandboxError> {
    let tag = format!("OMOI-FRAME-{nonce} ");
    let start = result.rfind(&tag).ok_or_else(|| protocol(format!("no frame in {:?}", tail(result))))?;
    let mut lines = result[start + tag.len()..].lines();
    let head: Vec<&str> = lines.next().unwrap_or_default().split_whitespace().collect();
    match head.as_slice() {
        ["cwd", code] => Ok(Outcome::Cwd(code.parse().map_err(|_| protocol(format!("bad cwd code {code}")))?)),
        ["run", status, timed_out, out_len, err_len] => {
            let number = |s: &str| s.parse::<u64>().map_err(|_| protocol(format!("bad number {s:?}")));
            let stdout = STANDARD.decode(lines.next().unwrap_or_default()).map_err(|e| protocol(e.to_string()))?;
            let stderr = STANDARD.decode(lines.next().unwrap_or_default()).map_err(|e| protocol(e.to_string()))?;
            if lines.next() != Some(&format!("OMOI-END-{nonce}")) {
                return Err(protocol("frame not terminated".into()));
            }
            let timed_out = *timed_out == "1";
            let status = number(status)?;
            Ok(Outcome::Ran {
                exit_code: if timed_out { None } else { Some(i32::try_from(status).unwrap_or(i32::MAX)) },
                timed_out,
                stdout_truncated: number(out_len)? > output_limit as u64,
                stderr_truncated: number(err_len)? > output_limit as u64,
                stdout,
                stderr,
            })
        }
        other => Err(protocol(format!("bad frame header {other:?}"))),
    }
}

fn tail(s: &str) -> &str {
    let cut = s.len().saturating_sub(300);
    let cut = (cut..=s.len()).find(|i| s.is_char_boundary(*i)).unwrap_or(s.len());
    &s[cut..]
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    fn run_inline(script: &str, cwd: &std::path::Path) -> String {
        let out = Command::new("sh").arg("-c").arg(inline_command(script)).current_dir(cwd).output().unwrap();
        String::from_utf8(out.stdout).unwrap()
    }

    fn script<'a>(root: &'a str, argv: &'a [String], env: &'a BTreeMap<String, String>) -> ExecScript<'a> {
        ExecScript {
            nonce: "n1",
            root,
            cwd: None,
            argv,
            env,
            stdin: None,
            timeout: Duration::from_secs(10),
            output_limit: 1000,
            self_path: None,
        }
    }

    #[test]
    fn a_command_runs_with_separate_outputs_env_and_stdin() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let root_s = root.to_str().unwrap();
        let argv: Vec<String> = ["sh", "-c", "cat; printf '%s' \"$V\" >&2; exit 3"].map(String::from).to_vec();
        let env = BTreeMap::from([("V".to_owned(), "it's\n".to_owned())]);
        let mut s = script(root_s, &argv, &env);
        let stdin: Vec<u8> = (0..=255u8).collect();
        s.stdin = Some(&stdin);
        let result = run_inline(&s.render().unwrap(), &root);
        match parse(&result, "n1", 1000).unwrap() {
            Outcome::Ran { exit_code, timed_out, stdout, stderr, stdout_truncated, stderr_truncated } => {
                assert_eq!((exit_code, timed_out, stdout_truncated, stderr_truncated), (Some(3), false, false, false));
                assert_eq!(stdout, stdin);
                assert_eq!(stderr, b"it's\n");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn timeout_output_limit_and_cwd_errors_are_framed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let root_s = root.to_str().unwrap();
        let env = BTreeMap::new();
        let argv: Vec<String> = ["sh", "-c", "head -c 5000 /dev/zero; sleep 30 & wait"].map(String::from).to_vec();
        let mut s = script(root_s, &argv, &env);
        s.timeout = Duration::from_millis(300);
        let started = std::time::Instant::now();
        let result = run_inline(&s.render().unwrap(), &root);
        assert!(started.elapsed() < Duration::from_secs(10));
        match parse(&result, "n1", 1000).unwrap() {
            Outcome::Ran { exit_code, timed_out, stdout, stdout_truncated, .. } => {
                assert_eq!((exit_code, timed_out, stdout.len(), stdout_truncated), (None, true, 1000, true));
            }
            other => panic!("{other:?}"),
        }
        let missing = WorkspacePath::parse("nope").unwrap();
        s.cwd = Some(&missing);
        assert_eq!(parse(&run_inline(&s.render().unwrap(), &root), "n1", 1000).unwrap(), Outcome::Cwd(4));
        let bad_env = BTreeMap::from([("A-B".to_owned(), "x".to_owned())]);
        assert!(matches!(script(root_s, &argv, &bad_env).render(), Err(SandboxError::InvalidRequest(_))));
        assert!(parse("garbage", "n1", 10).is_err());
    }
}
