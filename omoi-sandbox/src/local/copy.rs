//! Throwaway copies of a workspace, for read-only commands: the command runs in the copy, and
//! the copy is removed afterwards, so nothing it writes reaches the workspace.

use std::fs;
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt, symlink};
use std::path::Path;

use rustix::fs::OFlags;

/// Copies the canonical workspace `from` into a fresh temporary directory (removed when the
/// returned guard drops). Regular files keep their permission bits; symlinks are copied as
/// symlinks, an absolute one into the workspace re-pointed into the copy; FIFOs, sockets and
/// device nodes are left out (never opened). Nothing is followed: a file swapped for a symlink
/// or a FIFO while the copy runs is skipped, not opened.
pub(crate) fn copy_workspace(from: &Path) -> io::Result<tempfile::TempDir> {
    let dir = tempfile::Builder::new().prefix("omoi-readonly-").tempdir()?;
    let to = dir.path().canonicalize()?;
    copy_dir(from, from, &to)?;
    Ok(dir)
}

fn copy_dir(root: &Path, from: &Path, to: &Path) -> io::Result<()> {
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let meta = match fs::symlink_metadata(&src) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let kind = meta.file_type();
        if kind.is_dir() {
            fs::create_dir(&dst)?;
            fs::set_permissions(&dst, fs::Permissions::from_mode(meta.permissions().mode() | 0o700))?;
            copy_dir(root, &src, &dst)?;
        } else if kind.is_symlink() {
            let target = fs::read_link(&src)?;
            let target = match target.strip_prefix(root) {
                Ok(inside) if target.is_absolute() => to_root(root, to, from).join(inside),
                _ => target,
            };
            symlink(target, &dst)?;
        } else if kind.is_file() {
            copy_file(&src, &dst, meta.permissions().mode())?;
        }
    }
    Ok(())
}

/// The copy's root, from a directory `to` that mirrors `from` under `root`.
fn to_root(root: &Path, to: &Path, from: &Path) -> std::path::PathBuf {
    let depth = from.strip_prefix(root).map_or(0, |rel| rel.components().count());
    let mut r = to.to_path_buf();
    for _ in 0..depth {
        r.pop();
    }
    r
}

fn copy_file(src: &Path, dst: &Path, mode: u32) -> io::Result<()> {
    let flags = (OFlags::NOFOLLOW | OFlags::NONBLOCK).bits() as i32;
    let mut input = match fs::OpenOptions::new().read(true).custom_flags(flags).open(src) {
        Ok(f) => f,
        // Swapped for a symlink, or gone: not copied.
        Err(e)
            if e.kind() == io::ErrorKind::NotFound
                || e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) =>
        {
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    if !input.metadata()?.is_file() {
        return Ok(());
    }
    let mut output = fs::OpenOptions::new().write(true).create_new(true).mode(mode & 0o7777).open(dst)?;
    io::copy(&mut input, &mut output)?;
    fs::set_permissions(dst, fs::Permissions::from_mode(mode & 0o7777))
}
