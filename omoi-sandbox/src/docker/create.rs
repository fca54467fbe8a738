//! Creating a container sandbox as a saga: create container → start → prepare workspace →
//! setup commands, each undone if a later one fails.

use std::collections::HashMap;
use std::sync::Arc;

use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::CreateContainerOptionsBuilder;
use omoi_core::{NetworkPolicy, ResourceLimits, Sandbox, SandboxError, SandboxId, SandboxSpec};
use tokio::sync::oneshot;
use tracing::Instrument;

use super::files::archive;
use super::sandbox::{DockerSandbox, kill_container, remove_container};
use super::{Shared, WORKSPACE, engine_error};
use crate::saga::Saga;

/// The label every sandbox container carries, with the sandbox id as value.
pub(crate) const LABEL: &str = "omoi.sandbox";

fn merged(spec: ResourceLimits, default: ResourceLimits) -> Result<ResourceLimits, SandboxError> {
    let limits = ResourceLimits {
        cpus: spec.cpus.or(default.cpus),
        memory_bytes: spec.memory_bytes.or(default.memory_bytes),
        pids: spec.pids.or(default.pids),
    };
    if limits.cpus.is_some_and(|c| !(c.is_finite() && c > 0.0)) {
        return Err(SandboxError::InvalidRequest(format!("cpus must be positive, got {:?}", limits.cpus)));
    }
    if limits.memory_bytes.is_some_and(|m| m < 6 << 20) {
        return Err(SandboxError::InvalidRequest("memory limit must be at least 6 MiB (Docker's minimum)".into()));
    }
    if limits.pids == Some(0) {
        return Err(SandboxError::InvalidRequest("pids limit must be positive".into()));
    }
    Ok(limits)
}

fn container_body(shared: &Shared, id: SandboxId, spec: &SandboxSpec) -> Result<ContainerCreateBody, SandboxError> {
    let config = &shared.config;
    let image = spec.image.clone().or_else(|| config.image.clone()).ok_or_else(|| {
        SandboxError::InvalidRequest("no image: set one on the provider builder or in the spec".into())
    })?;
    let limits = merged(spec.limits, config.limits)?;
    let mut env = Vec::with_capacity(spec.env.len());
    for (k, v) in &spec.env {
        if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
            return Err(SandboxError::InvalidRequest(format!("invalid environment variable {k:?}")));
        }
        env.push(format!("{k}={v}"));
    }
    let mut labels: HashMap<String, String> = spec.labels.clone().into_iter().collect();
    labels.insert(LABEL.to_owned(), id.to_string());
    let network_mode = match spec.network {
        NetworkPolicy::None => "none",
        NetworkPolicy::Full => "bridge",
    };
    Ok(ContainerCreateBody {
        image: Some(image),
        cmd: Some(vec!["sleep".into(), "infinity".into()]),
        user: Some(config.user.clone()),
        working_dir: Some(WORKSPACE.into()),
        env: Some(env),
        labels: Some(labels),
        host_config: Some(HostConfig {
            network_mode: Some(network_mode.into()),
            nano_cpus: limits.cpus.map(|c| (c * 1e9) as i64),
            memory: limits.memory_bytes.map(|m| i64::try_from(m).unwrap_or(i64::MAX)),
            // No swap beyond the memory limit.
            memory_swap: limits.memory_bytes.map(|m| i64::try_from(m).unwrap_or(i64::MAX)),
            pids_limit: limits.pids.map(|p| i64::try_from(p).unwrap_or(i64::MAX)),
            init: Some(true),
            cap_drop: Some(vec!["ALL".into()]),
            security_opt: Some(vec!["no-new-privileges".into()]),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// Creates a sandbox. The saga runs in its own task, so a caller that stops waiting cannot
/// strand a half-made container: if nobody takes the finished sandbox, it is removed.
pub(super) async fn create(shared: Arc<Shared>, spec: SandboxSpec) -> Result<Arc<dyn Sandbox>, SandboxError> {
    let id = SandboxId::new();
    let span = tracing::info_span!("sandbox.create", provider = "docker", sandbox_id = %id);
    let (tx, rx) = oneshot::channel();
    let timeout = shared.config.create_timeout;
    tokio::spawn(
        async move {
            let result = run(shared, id, spec).await;
            if let Err(Ok(orphan)) = tx.send(result) {
                tracing::warn!("creation finished after the caller left; removing the container");
                if let Err(e) = orphan.remove().await {
                    tracing::error!(error = %e, "could not remove an abandoned sandbox container");
                }
            }
        }
        .instrument(span),
    );
    // Past the timeout the caller gets an error and the creation task, finding nobody to hand
    // its sandbox to, removes it.
    let sandbox = tokio::time::timeout(timeout, rx)
        .await
        .map_err(|_| SandboxError::CreateFailed {
            step: "timeout",
            message: format!("sandbox creation took longer than {timeout:?}"),
        })?
        .map_err(|_| SandboxError::Backend {
            provider: "docker",
            message: "sandbox creation task panicked".into(),
        })??;
    Ok(sandbox as Arc<dyn Sandbox>)
}

async fn run(shared: Arc<Shared>, id: SandboxId, spec: SandboxSpec) -> Result<Arc<DockerSandbox>, SandboxError> {
    let body = container_body(&shared, id, &spec)?;
    let readonly_template = body.clone();
    let docker = shared.docker().await?.clone();
    let mut saga = Saga::new("docker");

    let name = format!("omoi-{id}");
    let options = CreateContainerOptionsBuilder::default().name(&name).build();
    let container = saga
        .step("create_container", async {
            docker.create_container(Some(options), body).await.map(|r| r.id).map_err(|e| engine_error("create", e))
        })
        .await?;
    tracing::debug!(%container, "container created");
    let (d, c) = (docker.clone(), container.clone());
    saga.compensate("remove_container", async move { remove_container(&d, &c).await.map_err(|e| e.to_string()) });

    saga.step("start", async { docker.start_container(&container, None).await.map_err(|e| engine_error("start", e)) })
        .await?;
    let (d, c) = (docker.clone(), container.clone());
    saga.compensate("kill_container", async move { kill_container(&d, &c).await.map_err(|e| e.to_string()) });

    let sandbox = Arc::new(DockerSandbox::new(Arc::clone(&shared), id, container, readonly_template));
    saga.step("prepare_workspace", prepare_workspace(&sandbox)).await?;
    for argv in &shared.config.setup {
        saga.step("setup", setup(&sandbox, argv.clone())).await?;
    }
    saga.commit();
    tracing::info!(container = %sandbox.container, "docker sandbox ready");
    Ok(sandbox)
}

/// Learns the sandbox user's numeric ids, hands `/workspace` to that user (the engine unpacks
/// archives as root, so this works in a container without capabilities), and checks the user
/// can write there.
async fn prepare_workspace(sandbox: &DockerSandbox) -> Result<(), SandboxError> {
    let user = sandbox.shared.config.user.clone();
    let ids = sandbox.helper(vec!["sh".into(), "-c".into(), "id -u && id -g".into()], &user).await?;
    let text = String::from_utf8_lossy(&ids.stdout);
    let mut numbers = text.split_whitespace().map(str::parse::<u64>);
    let (Some(0), Some(Ok(uid)), Some(Ok(gid))) = (ids.exit_code, numbers.next(), numbers.next()) else {
        return Err(SandboxError::Backend {
            provider: "docker",
            message: format!(
                "cannot learn the ids of user {user:?}: {}{}",
                text.trim(),
                String::from_utf8_lossy(&ids.stderr).trim()
            ),
        });
    };
    if uid == 0 {
        return Err(SandboxError::InvalidRequest(format!("user {user:?} is root in this image")));
    }
    *sandbox.owner.lock() = (uid, gid);
    let dir = archive(WORKSPACE.trim_start_matches('/'), None, 0o755, (uid, gid))
        .map_err(|e| SandboxError::Backend { provider: "docker", message: e.to_string() })?;
    sandbox.upload("/", dir).await?;
    let check = format!("cd {WORKSPACE} && test -w . && realpath .");
    let out = sandbox.helper(vec!["sh".into(), "-c".into(), check], &user).await?;
    if out.exit_code != Some(0) || String::from_utf8_lossy(&out.stdout).trim() != WORKSPACE {
        return Err(SandboxError::Backend {
            provider: "docker",
            message: format!(
                "{WORKSPACE} is not a writable directory for {user:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(())
}

async fn setup(sandbox: &DockerSandbox, argv: Vec<String>) -> Result<(), SandboxError> {
    let shown = argv.join(" ");
    let out = sandbox.helper(argv, "0").await?;
    if out.exit_code == Some(0) {
        Ok(())
    } else {
        Err(SandboxError::Backend {
            provider: "docker",
            message: format!(
                "setup command `{shown}` exited with {:?}: {}",
                out.exit_code,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        })
    }
}
