//! Symlink-aware confinement: resolve a workspace path the way `realpath -m` does and refuse
//! it if the result leaves the workspace.

use std::ffi::OsString;
use std::io;
use std::path::{Component, Path, PathBuf};

use omoi_core::SandboxError;
use omoi_core::WorkspacePath;
use omoi_core::ports::sandbox::PathRejected;

/// The most symlinks followed while resolving one path (Linux's limit).
const MAX_SYMLINKS: usize = 40;

/// What the resolved path must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expect {
    /// An existing regular file (or anything that is not a directory).
    File,
    /// An existing directory.
    Dir,
    /// Not a directory; parents are created.
    Writable,
}

fn rejected(path: &WorkspacePath, reason: &str) -> SandboxError {
    SandboxError::PathRejected(PathRejected { path: path.as_str().to_owned(), reason: reason.to_owned() })
}

/// Resolves `rel` under the canonical `root`, following symlinks (a missing tail is taken
/// lexically, as `realpath -m` does). Errors if the result is outside `root`.
pub(crate) fn resolve(root: &Path, rel: &WorkspacePath) -> Result<PathBuf, SandboxError> {
    let mut out = root.to_path_buf();
    let mut pending: Vec<OsString> = Path::new(rel.as_str()).iter().rev().map(OsString::from).collect();
    let mut hops = 0;
    while let Some(part) = pending.pop() {
        match part.to_str() {
            Some("" | ".") => continue,
            Some("..") => {
                out.pop();
                continue;
            }
            _ => {}
        }
        let next = out.join(&part);
        match std::fs::symlink_metadata(&next) {
            Ok(meta) if meta.file_type().is_symlink() => {
                hops += 1;
                if hops > MAX_SYMLINKS {
                    return Err(rejected(rel, "too many levels of symbolic links"));
                }
                let target = std::fs::read_link(&next).map_err(|e| backend(rel, e))?;
                if target.is_absolute() {
                    out = PathBuf::from("/");
                }
                for c in target.components().rev() {
                    match c {
                        Component::Normal(p) => pending.push(p.to_os_string()),
                        Component::ParentDir => pending.push("..".into()),
                        Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
                    }
                }
            }
            Ok(_) => out = next,
            Err(e) if e.kind() == io::ErrorKind::NotFound || e.kind() == io::ErrorKind::NotADirectory => out = next,
            Err(e) => return Err(backend(rel, e)),
        }
    }
    if out.starts_with(root) { Ok(out) } else { Err(rejected(rel, "resolves outside the workspace through a symlink")) }
}

/// [`resolve`], then checks what is there (and for [`Expect::Writable`] creates the parents).
pub(crate) fn resolve_for(root: &Path, rel: &WorkspacePath, expect: Expect) -> Result<PathBuf, SandboxError> {
    let target = resolve(root, rel)?;
    let meta = std::fs::metadata(&target);
    match (expect, meta) {
        (Expect::File | Expect::Dir, Err(e))
            if e.kind() == io::ErrorKind::NotFound || e.kind() == io::ErrorKind::NotADirectory =>
        {
            Err(SandboxError::FileNotFound(rel.clone()))
        }
        (_, Ok(m)) if m.is_dir() && expect != Expect::Dir => {
            Err(SandboxError::InvalidRequest(format!("{rel} is a directory")))
        }
        (Expect::Dir, Ok(m)) if !m.is_dir() => Err(SandboxError::InvalidRequest(format!("{rel} is not a directory"))),
        (Expect::Writable, _) => {
            let parent = target.parent().unwrap_or(root);
            match std::fs::create_dir_all(parent) {
                Ok(()) => Ok(target),
                Err(e) if e.kind() == io::ErrorKind::NotADirectory || e.kind() == io::ErrorKind::AlreadyExists => {
                    Err(SandboxError::InvalidRequest(format!("a parent of {rel} is not a directory")))
                }
                Err(e) => Err(backend(rel, e)),
            }
        }
        (_, Err(e)) => Err(backend(rel, e)),
        (_, Ok(_)) => Ok(target),
    }
}

pub(crate) fn backend(path: &WorkspacePath, e: io::Error) -> SandboxError {
    SandboxError::Backend { provider: "local", message: format!("{path}: {e}") }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    fn p(s: &str) -> WorkspacePath {
        WorkspacePath::parse(s).unwrap()
    }

    #[test]
    fn symlinks_are_followed_inside_and_refused_outside() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("real/sub")).unwrap();
        symlink("real", root.join("inside")).unwrap();
        symlink("/etc", root.join("out")).unwrap();
        symlink("../..", root.join("real/sub/up")).unwrap();
        symlink("../../..", root.join("real/sub/above")).unwrap();
        symlink("loop", root.join("loop")).unwrap();

        assert_eq!(resolve(&root, &p("inside/sub/x")).unwrap(), root.join("real/sub/x"));
        assert_eq!(resolve(&root, &p("real/sub/up/inside")).unwrap(), root.join("real"));
        assert_eq!(resolve(&root, &p("missing/a/b")).unwrap(), root.join("missing/a/b"));
        assert_eq!(resolve(&root, &WorkspacePath::root()).unwrap(), root);
        for bad in ["out", "out/passwd", "real/sub/above/x", "inside/sub/up/out/x"] {
            assert!(matches!(resolve(&root, &p(bad)), Err(SandboxError::PathRejected(_))), "{bad}");
        }
        match resolve(&root, &p("loop")) {
            Err(SandboxError::PathRejected(r)) => assert!(r.reason.contains("symbolic links")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn expectations_map_to_typed_errors() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::write(root.join("file"), b"x").unwrap();
        assert!(matches!(resolve_for(&root, &p("nope"), Expect::File), Err(SandboxError::FileNotFound(_))));
        assert!(matches!(resolve_for(&root, &p("file/x"), Expect::File), Err(SandboxError::FileNotFound(_))));
        assert!(matches!(resolve_for(&root, &p("file"), Expect::Dir), Err(SandboxError::InvalidRequest(_))));
        assert!(matches!(
            resolve_for(&root, &WorkspacePath::root(), Expect::File),
            Err(SandboxError::InvalidRequest(_))
        ));
        assert!(matches!(resolve_for(&root, &p("file/x"), Expect::Writable), Err(SandboxError::InvalidRequest(_))));
        assert_eq!(resolve_for(&root, &p("new/dir/f"), Expect::Writable).unwrap(), root.join("new/dir/f"));
        assert!(root.join("new/dir").is_dir());
    }
}
