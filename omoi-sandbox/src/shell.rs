//! Shell fragments run inside remote sandboxes (Docker, Daytona): quoting, and the path
//! resolution that refuses symlink escapes before any file is transferred.
//!
//! The scripts need a POSIX `sh` and GNU coreutils (`realpath -m`), as in Debian or Ubuntu
//! based images.

use omoi_core::ports::sandbox::PathRejected;
use omoi_core::{SandboxError, WorkspacePath};

/// Quotes `s` as one POSIX shell word.
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// Whether `name` can be `export`ed by a POSIX shell.
#[cfg_attr(not(feature = "daytona"), allow(dead_code))]
pub(crate) fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// What the resolved path must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(feature = "daytona"), allow(dead_code))]
pub(crate) enum Expect {
    /// An existing non-directory; the script prints the resolved path.
    File,
    /// An existing directory; the script prints the resolved path.
    Dir,
    /// Not a directory; parents are created; the script prints `<octal mode>\n<resolved path>`
    /// (mode 644 for a new file).
    Writable,
}

const OUTSIDE: i64 = 3;
const MISSING: i64 = 4;
const IS_DIR: i64 = 5;
const NOT_DIR: i64 = 6;
const UNRESOLVABLE: i64 = 7;
const NOT_REGULAR: i64 = 8;

/// A script that resolves `rel` under `root` like `realpath -m`, refuses a result outside
/// `root`, checks `expect`, and prints the resolved path. Exit codes are interpreted by
/// [`interpret`].
pub(crate) fn resolve_script(root: &str, rel: &WorkspacePath, expect: Expect) -> String {
    let check = match expect {
        Expect::File => format!(
            r#"[ -e "$t" ] || exit {MISSING}; [ -d "$t" ] && exit {IS_DIR}; [ -f "$t" ] || exit {NOT_REGULAR}; printf '%s' "$t""#
        ),
        Expect::Dir => format!(r#"[ -e "$t" ] || exit {MISSING}; [ -d "$t" ] || exit {NOT_DIR}; printf '%s' "$t""#),
        Expect::Writable => format!(
            r#"[ -d "$t" ] && exit {IS_DIR}; [ -e "$t" ] && ! [ -f "$t" ] && exit {NOT_REGULAR}; d=$(dirname -- "$t"); mkdir -p -- "$d" 2>/dev/null; [ -d "$d" ] || exit {NOT_DIR}; m=$(stat -c %a -- "$t" 2>/dev/null) || m=644; printf '%s\n%s' "$m" "$t""#
        ),
    };
    format!(
        r#"root={root}; t=$(realpath -m -- "$root"/{rel}) || exit {UNRESOLVABLE}; case "$t" in "$root"|"$root"/*) ;; *) exit {OUTSIDE};; esac; {check}"#,
        root = quote(root),
        rel = quote(rel.as_str()),
    )
}

/// What a resolution told us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Resolved {
    /// The absolute resolved path inside the sandbox.
    pub(crate) path: String,
    /// The existing file's permission bits ([`Expect::Writable`] only; 0o644 for a new file).
    pub(crate) mode: u32,
}

/// Maps the script's exit code and output to the resolved path or a typed error.
pub(crate) fn interpret(
    provider: &'static str,
    rel: &WorkspacePath,
    expect: Expect,
    exit_code: Option<i64>,
    stdout: &[u8],
    stderr: &[u8],
) -> Result<Resolved, SandboxError> {
    let rejected = |reason: &str| {
        SandboxError::PathRejected(PathRejected { path: rel.as_str().to_owned(), reason: reason.to_owned() })
    };
    match exit_code {
        Some(0) => {}
        Some(OUTSIDE) => return Err(rejected("resolves outside the workspace through a symlink")),
        Some(UNRESOLVABLE) => return Err(rejected("cannot be resolved (symlink loop?)")),
        Some(MISSING) => return Err(SandboxError::FileNotFound(rel.clone())),
        Some(NOT_REGULAR) => {
            return Err(SandboxError::InvalidRequest(format!(
                "{rel} is not a regular file (a FIFO, socket or device)"
            )));
        }
        Some(IS_DIR) => return Err(SandboxError::InvalidRequest(format!("{rel} is a directory"))),
        Some(NOT_DIR) if expect == Expect::Dir => {
            return Err(SandboxError::InvalidRequest(format!("{rel} is not a directory")));
        }
        Some(NOT_DIR) => return Err(SandboxError::InvalidRequest(format!("a parent of {rel} is not a directory"))),
        other => {
            return Err(SandboxError::Backend {
                provider,
                message: format!("resolving {rel} failed (exit {other:?}): {}", String::from_utf8_lossy(stderr).trim()),
            });
        }
    }
    let text = String::from_utf8(stdout.to_vec())
        .map_err(|_| SandboxError::Backend { provider, message: format!("resolving {rel}: output is not UTF-8") })?;
    let (mode, path) = match expect {
        Expect::Writable => {
            let (mode, path) = text.split_once('\n').unwrap_or(("644", text.as_str()));
            (u32::from_str_radix(mode.trim(), 8).unwrap_or(0o644), path.to_owned())
        }
        Expect::File | Expect::Dir => (0, text),
    };
    if !path.starts_with('/') {
        return Err(SandboxError::Backend {
            provider,
            message: format!("resolving {rel}: unexpected output {path:?}"),
        });
    }
    Ok(Resolved { path, mode })
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    fn sh(script: &str) -> (Option<i64>, Vec<u8>, Vec<u8>) {
        let out = Command::new("sh").arg("-c").arg(script).output().unwrap();
        (out.status.code().map(i64::from), out.stdout, out.stderr)
    }

    #[test]
    fn quoting_survives_every_awkward_character() {
        let words: Vec<String> = ["plain", "", "it's", "a b", "$HOME", "`x`", "\\", "\"", "new\nline", "*"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let quoted: Vec<String> = words.iter().map(|w| quote(w)).collect();
        let (code, out, _) = sh(&format!("printf '%s|' {}", quoted.join(" ")));
        assert_eq!(code, Some(0));
        assert_eq!(String::from_utf8(out).unwrap(), words.iter().map(|w| format!("{w}|")).collect::<String>());
        assert!(is_env_name("_A1") && is_env_name("path") && !is_env_name("1A") && !is_env_name("A-B"));
        assert!(!is_env_name(""));
    }

    #[test]
    fn resolve_script_refuses_escapes_and_reports_kinds() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let root_s = root.to_str().unwrap();
        std::fs::create_dir_all(root.join("d")).unwrap();
        std::fs::write(root.join("d/f"), b"x").unwrap();
        std::os::unix::fs::symlink("/etc", root.join("out")).unwrap();
        std::os::unix::fs::symlink("d", root.join("in")).unwrap();
        let p = |s: &str| WorkspacePath::parse(s).unwrap();
        let run = |rel: &WorkspacePath, expect| {
            let (code, out, err) = sh(&resolve_script(root_s, rel, expect));
            interpret("test", rel, expect, code, &out, &err)
        };
        assert_eq!(run(&p("in/f"), Expect::File).unwrap().path, format!("{root_s}/d/f"));
        assert_eq!(run(&p("in"), Expect::Dir).unwrap().path, format!("{root_s}/d"));
        assert_eq!(run(&WorkspacePath::root(), Expect::Dir).unwrap().path, root_s);
        assert!(matches!(run(&p("out/passwd"), Expect::File), Err(SandboxError::PathRejected(_))));
        assert!(matches!(run(&p("out/new"), Expect::Writable), Err(SandboxError::PathRejected(_))));
        assert!(matches!(run(&p("nope"), Expect::File), Err(SandboxError::FileNotFound(_))));
        assert!(matches!(run(&p("d"), Expect::File), Err(SandboxError::InvalidRequest(_))));
        assert!(matches!(run(&p("d/f"), Expect::Dir), Err(SandboxError::InvalidRequest(_))));
        assert!(matches!(run(&p("d/f/x"), Expect::Writable), Err(SandboxError::InvalidRequest(_))));
        let w = run(&p("new/deep/file"), Expect::Writable).unwrap();
        assert_eq!((w.path, w.mode), (format!("{root_s}/new/deep/file"), 0o644));
        assert!(root.join("new/deep").is_dir());
        std::fs::write(root.join("exe"), b"#!/bin/sh").unwrap();
        sh(&format!("chmod 755 {}", quote(&format!("{root_s}/exe"))));
        assert_eq!(run(&p("exe"), Expect::Writable).unwrap().mode, 0o755);
        assert!(!root.join("out/new").exists() && !std::path::Path::new("/etc/new").exists());
    }
}
