//! Files in and out of a container: `dd` run **as the sandbox user** (never the engine's
//! root-privileged archive copy), after resolving the path inside the container, and without
//! following a symlink at any step (see [`READ`]).

use bollard::query_parameters::UploadToContainerOptions;
use omoi_core::ports::sandbox::PathRejected;
use omoi_core::{SandboxError, WorkspacePath};

use super::sandbox::{DockerSandbox, run_helper_io};
use super::{engine_error, status_of};

/// A one-entry tar archive: a regular file, or a directory when `contents` is `None`.
pub(super) fn archive(name: &str, contents: Option<&[u8]>, mode: u32, owner: (u64, u64)) -> std::io::Result<Vec<u8>> {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(if contents.is_some() { tar::EntryType::Regular } else { tar::EntryType::Directory });
    header.set_size(contents.map_or(0, |c| c.len() as u64));
    header.set_mode(mode);
    header.set_uid(owner.0);
    header.set_gid(owner.1);
    header.set_mtime(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()));
    let mut builder = tar::Builder::new(Vec::new());
    builder.append_data(&mut header, name, contents.unwrap_or_default())?;
    builder.into_inner()
}

/// Reads `$1` (a workspace-relative path) as the calling user, at most `$2` bytes. The path is
/// resolved and confined like every path, then the script moves into the resolved parent
/// directory and checks, physically (`pwd -P`), that it is still that directory: a parent
/// swapped for a symlink in between is caught here, and the file itself is opened relative to
/// it with `O_NOFOLLOW` (and `O_NONBLOCK`, so a FIFO swapped in cannot block). Only regular
/// files are read: FIFOs, sockets and devices are refused before anything is opened.
const READ: &str = r#"root=/workspace
t=$(realpath -m -- "$root/$1") || exit 7
case "$t" in "$root"/*) ;; *) exit 3;; esac
[ -e "$t" ] || exit 4
[ -d "$t" ] && exit 5
[ -L "$t" ] && exit 9
[ -f "$t" ] || exit 8
d=${t%/*}; n=${t##*/}
cd -P -- "$d" 2>/dev/null || exit 9
[ "$(pwd -P)" = "$d" ] || exit 9
exec dd if="./$n" iflag=nofollow,nonblock,count_bytes count="$2" bs=65536 status=none"#;

/// Writes standard input to `$1` as the calling user, with the same resolution and checks as
/// [`READ`]; parents are created; an existing file keeps its mode (a new one gets the umask's).
const WRITE: &str = r#"root=/workspace
t=$(realpath -m -- "$root/$1") || exit 7
case "$t" in "$root"/*) ;; *) exit 3;; esac
[ -d "$t" ] && exit 5
[ -L "$t" ] && exit 9
[ -e "$t" ] && ! [ -f "$t" ] && exit 8
d=${t%/*}; n=${t##*/}
mkdir -p -- "$d" 2>/dev/null
[ -d "$d" ] || exit 6
cd -P -- "$d" 2>/dev/null || exit 9
[ "$(pwd -P)" = "$d" ] || exit 9
exec dd of="./$n" oflag=nofollow,nonblock bs=65536 status=none"#;

fn transfer_error(path: &WorkspacePath, code: Option<i64>, stderr: &[u8]) -> SandboxError {
    let rejected = |reason: &str| {
        SandboxError::PathRejected(PathRejected { path: path.as_str().to_owned(), reason: reason.to_owned() })
    };
    let stderr = String::from_utf8_lossy(stderr);
    match code {
        Some(3) => rejected("resolves outside the workspace through a symlink"),
        Some(7) => rejected("cannot be resolved (symlink loop?)"),
        Some(9) => rejected("a symlink was swapped in while it was being resolved"),
        Some(4) => SandboxError::FileNotFound(path.clone()),
        Some(5) => SandboxError::InvalidRequest(format!("{path} is a directory")),
        Some(6) => SandboxError::InvalidRequest(format!("a parent of {path} is not a directory")),
        Some(8) => SandboxError::InvalidRequest(format!("{path} is not a regular file (a FIFO, socket or device)")),
        _ if stderr.contains("symbolic links") => rejected("is a symlink"),
        _ if stderr.contains("No such device") || stderr.contains("not a regular") => {
            SandboxError::InvalidRequest(format!("{path} is not a regular file (a FIFO, socket or device)"))
        }
        other => SandboxError::Backend {
            provider: "docker",
            message: format!("transferring {path} failed (exit {other:?}): {}", stderr.trim()),
        },
    }
}

impl DockerSandbox {
    /// Uploads `archive` to be unpacked in the directory `dir` of the container (as root, by
    /// the engine: only used before any sandbox command ran).
    pub(super) async fn upload(&self, dir: &str, archive: Vec<u8>) -> Result<(), SandboxError> {
        let docker = self.shared.docker().await?;
        let options = UploadToContainerOptions { path: dir.to_owned(), ..Default::default() };
        docker.upload_to_container(&self.container, Some(options), bollard::body_full(archive.into())).await.map_err(
            |e| {
                let gone =
                    status_of(&e) == Some(404) && e.to_string().to_ascii_lowercase().contains("no such container");
                if gone { SandboxError::Destroyed(self.id) } else { engine_error("upload", e) }
            },
        )
    }

    /// Runs a transfer script as the sandbox user.
    async fn transfer(
        &self,
        script: &str,
        path: &WorkspacePath,
        count: u64,
        stdin: Option<Vec<u8>>,
        output_limit: usize,
    ) -> Result<(Vec<u8>, bool), SandboxError> {
        let cmd = vec![
            "sh".into(),
            "-c".into(),
            script.into(),
            "omoi-file".into(),
            path.as_str().to_owned(),
            count.to_string(),
        ];
        let user = self.shared.config.user.clone();
        let (out, cut) = run_helper_io(&self.shared, self.id, &self.container, cmd, &user, stdin, output_limit).await?;
        if out.exit_code != Some(0) {
            return Err(transfer_error(path, out.exit_code, &out.stderr));
        }
        Ok((out.stdout, cut))
    }

    pub(super) async fn write_inner(&self, path: &WorkspacePath, contents: &[u8]) -> Result<(), SandboxError> {
        self.alive()?;
        let limit = self.shared.config.max_file_bytes;
        if contents.len() as u64 > limit {
            return Err(SandboxError::TooLarge { what: "file", size: contents.len() as u64, limit });
        }
        if path.is_root() {
            return Err(SandboxError::InvalidRequest(format!("{path} is a directory")));
        }
        self.transfer(WRITE, path, 0, Some(contents.to_vec()), 1 << 10).await.map(|_| ())
    }

    pub(super) async fn read_inner(&self, path: &WorkspacePath) -> Result<Vec<u8>, SandboxError> {
        let limit = self.shared.config.max_file_bytes;
        let (bytes, cut) = self.read_prefix_inner(path, limit).await?;
        if cut {
            return Err(SandboxError::TooLarge { what: "file", size: limit + 1, limit });
        }
        Ok(bytes)
    }

    /// At most `limit` bytes of the file, and whether it is longer.
    pub(super) async fn read_prefix_inner(
        &self,
        path: &WorkspacePath,
        limit: u64,
    ) -> Result<(Vec<u8>, bool), SandboxError> {
        self.alive()?;
        if path.is_root() {
            return Err(SandboxError::InvalidRequest(format!("{path} is a directory")));
        }
        let limit = limit.min(self.shared.config.max_file_bytes);
        let keep = usize::try_from(limit + 1).unwrap_or(usize::MAX);
        let (mut bytes, _) = self.transfer(READ, path, limit + 1, None, keep).await?;
        let cut = bytes.len() as u64 > limit;
        bytes.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok((bytes, cut))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archives_round_trip_with_long_names_and_owners() {
        let name = "n".repeat(150);
        let bytes: Vec<u8> = (0..=255u8).collect();
        let tar = archive(&name, Some(&bytes), 0o755, (1000, 1001)).unwrap();
        let mut a = tar::Archive::new(&tar[..]);
        let entry = a.entries().unwrap().next().unwrap().unwrap();
        assert_eq!(entry.path().unwrap().to_str().unwrap(), name);
        assert_eq!((entry.header().uid().unwrap(), entry.header().gid().unwrap()), (1000, 1001));
        assert_eq!(entry.header().mode().unwrap(), 0o755);
        let mut content = Vec::new();
        std::io::Read::read_to_end(&mut { entry }, &mut content).unwrap();
        assert_eq!(content, bytes);
    }
}
