//! Read-only commands: each runs in a throwaway container made from the sandbox's own
//! template, with a read-only root file system, no network, and a tmpfs `/workspace` holding a
//! copy of the sandbox's workspace (and a tmpfs `/tmp`). The container is removed afterwards —
//! by a drop guard if the caller stops waiting — so nothing the command does reaches the
//! sandbox.

use std::collections::HashMap;

use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::CreateContainerOptionsBuilder;
use omoi_core::SandboxError;
use tracing::Instrument;

use super::create::LABEL;
use super::sandbox::{DockerSandbox, remove_container, run_helper_io};
use super::{WORKSPACE, engine_error};

/// The label a read-only copy carries, with the sandbox id as value (instead of [`LABEL`]).
pub(crate) const READONLY_LABEL: &str = "omoi.sandbox.readonly";

/// A running throwaway container; removed by [`ReadonlyCopy::remove`] or, failing that, on drop.
pub(super) struct ReadonlyCopy {
    docker: bollard::Docker,
    pub(super) container: String,
    armed: bool,
}

impl ReadonlyCopy {
    /// Removes the container (a failure is logged: the drop guard cannot do better).
    pub(super) async fn remove(mut self) {
        self.armed = false;
        if let Err(e) = remove_container(&self.docker, &self.container).await {
            tracing::error!(container = %self.container, error = %e, "could not remove a read-only copy");
        }
    }
}

impl Drop for ReadonlyCopy {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let (docker, container) = (self.docker.clone(), self.container.clone());
        runtime.spawn(async move {
            if let Err(e) = remove_container(&docker, &container).await {
                tracing::error!(%container, error = %e, "could not remove an abandoned read-only copy");
            }
        });
    }
}

/// The template with a read-only root, no network, tmpfs `/workspace` (owned by the sandbox
/// user) and `/tmp`, `HOME=/tmp` unless the spec set one, and the read-only label.
fn readonly_body(template: &ContainerCreateBody, sandbox: &str, owner: (u64, u64)) -> ContainerCreateBody {
    let mut body = template.clone();
    let mut labels = body.labels.take().unwrap_or_default();
    labels.remove(LABEL);
    labels.insert(READONLY_LABEL.to_owned(), sandbox.to_owned());
    body.labels = Some(labels);
    let mut env = body.env.take().unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push("HOME=/tmp".into());
    }
    body.env = Some(env);
    let host = body.host_config.take().unwrap_or_default();
    let tmpfs = HashMap::from([
        (WORKSPACE.to_owned(), format!("rw,nosuid,nodev,uid={},gid={},mode=755", owner.0, owner.1)),
        ("/tmp".to_owned(), "rw,nosuid,nodev,mode=1777".to_owned()),
    ]);
    body.host_config =
        Some(HostConfig { readonly_rootfs: Some(true), network_mode: Some("none".into()), tmpfs: Some(tmpfs), ..host });
    body
}

impl DockerSandbox {
    /// Starts a throwaway container holding a copy of the workspace.
    pub(super) async fn readonly_copy(&self) -> Result<ReadonlyCopy, SandboxError> {
        let span = tracing::info_span!("sandbox.readonly_copy", provider = "docker", sandbox_id = %self.id);
        async {
            let user = self.shared.config.user.clone();
            let limit = usize::try_from(self.shared.config.max_file_bytes).unwrap_or(usize::MAX);
            let pack = vec!["tar".into(), "-C".into(), WORKSPACE.into(), "-cf".into(), "-".into(), ".".into()];
            let (packed, cut) = run_helper_io(&self.shared, self.id, &self.container, pack, &user, None, limit).await?;
            if cut {
                return Err(SandboxError::TooLarge {
                    what: "workspace copy",
                    size: limit as u64 + 1,
                    limit: limit as u64,
                });
            }
            if packed.exit_code != Some(0) {
                return Err(backend("pack the workspace", &packed.stderr));
            }
            let docker = self.shared.docker().await?.clone();
            let body = readonly_body(&self.template, &self.id.to_string(), *self.owner.lock());
            let name = format!("omoi-{}-ro-{}", self.id, uuid::Uuid::now_v7().simple());
            let options = CreateContainerOptionsBuilder::default().name(&name).build();
            let created = docker.create_container(Some(options), body).await.map_err(|e| engine_error("create", e))?;
            let copy = ReadonlyCopy { docker: docker.clone(), container: created.id, armed: true };
            docker.start_container(&copy.container, None).await.map_err(|e| engine_error("start", e))?;
            let unpack = vec!["tar".into(), "-xf".into(), "-".into(), "-C".into(), WORKSPACE.into()];
            let (out, _) =
                run_helper_io(&self.shared, self.id, &copy.container, unpack, &user, Some(packed.stdout), 1 << 20)
                    .await?;
            if out.exit_code != Some(0) {
                return Err(backend("unpack the workspace copy", &out.stderr));
            }
            Ok(copy)
        }
        .instrument(span)
        .await
    }
}

fn backend(what: &str, stderr: &[u8]) -> SandboxError {
    SandboxError::Backend { provider: "docker", message: format!("{what}: {}", String::from_utf8_lossy(stderr).trim()) }
}
