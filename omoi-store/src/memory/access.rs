//! `AccessStore` for the in-memory adapter.

use std::collections::HashMap;

use async_trait::async_trait;
use omoi_core::access::subject_key;
use omoi_core::{AccessStore, ApiKey, ApiKeyId, NewApiKey, StoreError, Subject};

use super::InMemoryStore;

#[derive(Default)]
pub(super) struct Access {
    /// Creation order.
    keys: Vec<ApiKey>,
    /// Owner per entity.
    owners: HashMap<(&'static str, uuid::Uuid), String>,
    /// Assignment order.
    owned: Vec<(Subject, String)>,
}

#[async_trait]
impl AccessStore for InMemoryStore {
    async fn create_key(&self, key: NewApiKey) -> Result<ApiKey, StoreError> {
        key.validate().map_err(StoreError::InvalidInput)?;
        self.write(|s, now| {
            if s.access.keys.iter().any(|k| k.id == key.id || k.key_hash == key.key_hash) {
                return Err(StoreError::AlreadyExists { kind: "api key", id: key.id.to_string() });
            }
            let k = ApiKey::created(key, now);
            s.access.keys.push(k.clone());
            Ok(k)
        })
    }

    async fn key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKey>, StoreError> {
        self.read(|s, _| Ok(s.access.keys.iter().find(|k| k.key_hash == key_hash).cloned()))
    }

    async fn revoke_key(&self, id: ApiKeyId) -> Result<ApiKey, StoreError> {
        self.write(|s, now| {
            let k =
                s.access.keys.iter_mut().find(|k| k.id == id).ok_or_else(|| StoreError::not_found("api key", id))?;
            k.revoked_at.get_or_insert(now);
            Ok(k.clone())
        })
    }

    async fn list_keys(&self, project: Option<&str>) -> Result<Vec<ApiKey>, StoreError> {
        self.read(|s, _| Ok(s.access.keys.iter().filter(|k| project.is_none_or(|p| k.project == p)).cloned().collect()))
    }

    async fn assign_owner(&self, subject: Subject, project: &str) -> Result<(), StoreError> {
        omoi_core::access::validate_project(project).map_err(StoreError::InvalidInput)?;
        self.write(|s, _| match s.access.owners.get(&subject_key(subject)) {
            Some(p) if p == project => Ok(()),
            Some(_) => Err(StoreError::AlreadyExists { kind: "entity owner", id: subject.to_string() }),
            None => {
                s.access.owners.insert(subject_key(subject), project.to_owned());
                s.access.owned.push((subject, project.to_owned()));
                Ok(())
            }
        })
    }

    async fn owner_of(&self, subject: Subject) -> Result<Option<String>, StoreError> {
        self.read(|s, _| Ok(s.access.owners.get(&subject_key(subject)).cloned()))
    }

    async fn owned_by(&self, project: &str) -> Result<Vec<Subject>, StoreError> {
        self.read(|s, _| Ok(s.access.owned.iter().filter(|(_, p)| p == project).map(|(s, _)| *s).collect()))
    }
}
