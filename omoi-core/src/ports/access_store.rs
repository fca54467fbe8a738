//! The `AccessStore` port: API keys (hashed) scoped to a project, and which project owns an
//! entity. A server checks every request against it: the key's project must own the entity the
//! request names.

use async_trait::async_trait;

use crate::access::{ApiKey, NewApiKey};
use crate::error::StoreError;
use crate::event::Subject;
use crate::ids::ApiKeyId;

/// Keys and ownership.
#[async_trait]
pub trait AccessStore: Send + Sync {
    /// Stores a key. Rejects an invalid project or hash (`InvalidInput`) and a duplicate id or
    /// hash (`AlreadyExists`), storing nothing.
    async fn create_key(&self, key: NewApiKey) -> Result<ApiKey, StoreError>;

    /// The key with this SHA-256 hash (hex), revoked or not; `None` if there is none.
    async fn key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKey>, StoreError>;

    /// Revokes a key (`NotFound` if unknown). Revoking twice keeps the first revocation time.
    async fn revoke_key(&self, id: ApiKeyId) -> Result<ApiKey, StoreError>;

    /// Every key of `project` (of every project when `None`), in creation order.
    async fn list_keys(&self, project: Option<&str>) -> Result<Vec<ApiKey>, StoreError>;

    /// Records that `project` owns `subject`. Idempotent for the same project; an entity owned
    /// by another project is `AlreadyExists` and keeps its owner. Rejects an invalid project
    /// name (`InvalidInput`).
    async fn assign_owner(&self, subject: Subject, project: &str) -> Result<(), StoreError>;

    /// The project that owns `subject`, if any.
    async fn owner_of(&self, subject: Subject) -> Result<Option<String>, StoreError>;

    /// Every entity `project` owns, in assignment order.
    async fn owned_by(&self, project: &str) -> Result<Vec<Subject>, StoreError>;
}
