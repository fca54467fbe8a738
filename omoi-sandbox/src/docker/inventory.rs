//! `SandboxInventory` for Docker: sandboxes are found by their containers' labels, so the ones
//! a killed process left behind can be listed and removed from any other process.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use bollard::query_parameters::ListContainersOptions;
use omoi_core::{SandboxError, SandboxId, SandboxInventory, SandboxRecord};
use tracing::Instrument;

use super::create::LABEL;
use super::sandbox::remove_container;
use super::{DockerSandboxProvider, engine_error};

impl DockerSandboxProvider {
    /// Container ids (running or not) carrying every `key=value` label.
    async fn containers(&self, labels: &[String]) -> Result<Vec<bollard::models::ContainerSummary>, SandboxError> {
        let docker = self.shared.docker().await?;
        let filters = HashMap::from([("label".to_owned(), labels.to_vec())]);
        let options = ListContainersOptions { all: true, filters: Some(filters), ..Default::default() };
        docker.list_containers(Some(options)).await.map_err(|e| engine_error("list containers", e))
    }
}

#[async_trait]
impl SandboxInventory for DockerSandboxProvider {
    async fn list_sandboxes(&self, labels: &[(&str, &str)]) -> Result<Vec<SandboxRecord>, SandboxError> {
        let span = tracing::info_span!("sandbox.list", provider = "docker", labels = labels.len());
        async {
            let mut filter = vec![LABEL.to_owned()];
            filter.extend(labels.iter().map(|(k, v)| format!("{k}={v}")));
            let found = self.containers(&filter).await?;
            Ok(found
                .into_iter()
                .filter_map(|c| {
                    let labels: BTreeMap<String, String> = c.labels.unwrap_or_default().into_iter().collect();
                    let id: SandboxId = labels.get(LABEL)?.parse().ok()?;
                    Some(SandboxRecord { id, labels })
                })
                .collect())
        }
        .instrument(span)
        .await
    }

    async fn destroy_sandbox(&self, id: SandboxId) -> Result<(), SandboxError> {
        let span = tracing::info_span!("sandbox.destroy", provider = "docker", sandbox_id = %id, reaped = true);
        async {
            let docker = self.shared.docker().await?;
            for c in self.containers(&[format!("{LABEL}={id}")]).await? {
                if let Some(container) = c.id {
                    remove_container(docker, &container).await?;
                }
            }
            Ok(())
        }
        .instrument(span)
        .await
    }
}
