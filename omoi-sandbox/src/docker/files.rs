//! Files in and out of a container as tar archives, after resolving the path inside it.

use std::io::Read;

use bollard::query_parameters::{DownloadFromContainerOptions, UploadToContainerOptions};
use futures::StreamExt;
use omoi_core::{SandboxError, WorkspacePath};

use super::sandbox::DockerSandbox;
use super::{engine_error, status_of};
use crate::shell::{Expect, split_parent};

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

/// The content of the first regular file in a tar archive.
fn first_file(archive: &[u8]) -> std::io::Result<Option<Vec<u8>>> {
    let mut archive = tar::Archive::new(archive);
    for entry in archive.entries()? {
        let mut entry = entry?;
        if entry.header().entry_type().is_file() {
            let mut bytes = Vec::with_capacity(entry.size() as usize);
            entry.read_to_end(&mut bytes)?;
            return Ok(Some(bytes));
        }
    }
    Ok(None)
}

fn tar_error(e: std::io::Error) -> SandboxError {
    SandboxError::Backend { provider: "docker", message: format!("tar archive: {e}") }
}

impl DockerSandbox {
    /// Uploads `archive` to be unpacked in the directory `dir` of the container.
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

    pub(super) async fn write_inner(&self, path: &WorkspacePath, contents: &[u8]) -> Result<(), SandboxError> {
        self.alive()?;
        let limit = self.shared.config.max_file_bytes;
        if contents.len() as u64 > limit {
            return Err(SandboxError::TooLarge { what: "file", size: contents.len() as u64, limit });
        }
        let resolved = self.resolve(path, Expect::Writable).await?;
        let (dir, name) = split_parent(&resolved.path);
        let owner = *self.owner.lock();
        let tar = archive(name, Some(contents), resolved.mode, owner).map_err(tar_error)?;
        self.upload(dir, tar).await
    }

    pub(super) async fn read_inner(&self, path: &WorkspacePath) -> Result<Vec<u8>, SandboxError> {
        self.alive()?;
        let resolved = self.resolve(path, Expect::File).await?;
        let docker = self.shared.docker().await?;
        let limit = self.shared.config.max_file_bytes;
        let options = DownloadFromContainerOptions { path: resolved.path };
        let mut stream = docker.download_from_container(&self.container, Some(options));
        let mut tar = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| match status_of(&e) {
                Some(404) => SandboxError::FileNotFound(path.clone()),
                _ => engine_error("download", e),
            })?;
            tar.extend_from_slice(&chunk);
            // The archive adds headers and padding: allow some slack over the file limit.
            if tar.len() as u64 > limit + (64 << 10) {
                return Err(SandboxError::TooLarge { what: "file", size: tar.len() as u64, limit });
            }
        }
        first_file(&tar).map_err(tar_error)?.ok_or_else(|| SandboxError::FileNotFound(path.clone()))
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
        assert_eq!(first_file(&tar).unwrap(), Some(bytes));
        let dir = archive("workspace", None, 0o755, (1, 2)).unwrap();
        assert_eq!(first_file(&dir).unwrap(), None);
    }
}
