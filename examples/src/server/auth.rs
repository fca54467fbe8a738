//! API keys and who may act on what.
//!
//! A key is `omoi_` followed by 64 hex digits (32 random bytes from the OS); the store keeps only
//! its SHA-256. A request names its key in `Authorization: Bearer <key>` (the event stream also
//! takes `?key=`, since a browser's `EventSource` cannot send headers). The key's project must
//! own the entity a request names, else the entity does not exist for it (404); a read-only key
//! is refused every write (403).

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use omoi_core::{AccessRole, AccessStore, ApiKey, ApiKeyId, NewApiKey, SpecId, StoreError, Subject, Task, TaskId};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::app::AppState;
use super::error::{ApiError, ErrorCode};

/// The prefix of every key.
pub const KEY_PREFIX: &str = "omoi_";

/// A fresh random key (shown once; only its hash is stored).
pub fn generate_key() -> String {
    let mut bytes = [0u8; 32];
    // The OS random source failing is not something a server can work around.
    getrandom::fill(&mut bytes).expect("the OS random number generator is unavailable");
    format!("{KEY_PREFIX}{}", hex::encode(bytes))
}

/// The SHA-256 of a key, as 64 lower-case hex digits (what the store keeps).
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Creates a key for `project` with `role` in `access`; returns the stored key and the key
/// itself (the only time it is available).
pub async fn create_key(
    access: &dyn AccessStore,
    project: &str,
    role: AccessRole,
) -> Result<(ApiKey, String), StoreError> {
    let key = generate_key();
    let stored = access.create_key(NewApiKey::new(project, role, hash_key(&key))).await?;
    Ok((stored, key))
}

/// Revokes key `id` in `access`.
pub async fn revoke_key(access: &dyn AccessStore, id: ApiKeyId) -> Result<ApiKey, StoreError> {
    access.revoke_key(id).await
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The key's id.
    pub key_id: ApiKeyId,
    /// The key's project.
    pub project: String,
    /// The key's role.
    pub role: AccessRole,
}

impl Caller {
    /// Refuses a read-only key (403).
    pub fn require_write(&self) -> Result<(), ApiError> {
        if self.role.can_write() { Ok(()) } else { Err(ApiError::new(ErrorCode::Forbidden, "this key is read-only")) }
    }

    /// Refuses a key that is not an admin key (403).
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.role.is_admin() {
            Ok(())
        } else {
            Err(ApiError::new(ErrorCode::Forbidden, "only an admin key may manage keys"))
        }
    }
}

fn bearer(parts: &Parts) -> Result<Option<String>, ApiError> {
    let Some(value) = parts.headers.get(AUTHORIZATION) else { return Ok(None) };
    let value = value.to_str().map_err(|_| unauthorized("the Authorization header is not text"))?;
    let key =
        value.strip_prefix("Bearer ").ok_or_else(|| unauthorized("the Authorization header must be `Bearer <key>`"))?;
    Ok(Some(key.trim().to_owned()))
}

/// `?key=` on the event stream only (EventSource cannot send headers).
fn query_key(parts: &Parts) -> Option<String> {
    if parts.uri.path() != "/api/events" {
        return None;
    }
    let query = parts.uri.query()?;
    query.split('&').find_map(|kv| kv.strip_prefix("key=")).map(str::to_owned)
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(ErrorCode::Unauthorized, message)
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let key = match bearer(parts)? {
            Some(k) => k,
            None => {
                query_key(parts).ok_or_else(|| unauthorized("an API key is required: Authorization: Bearer <key>"))?
            }
        };
        if !key.starts_with(KEY_PREFIX) {
            return Err(unauthorized("unknown API key"));
        }
        let hash = hash_key(&key);
        let stored = state.backend.access.key_by_hash(&hash).await?.ok_or_else(|| unauthorized("unknown API key"))?;
        // The lookup is by hash; compare again in constant time so nothing depends on how the
        // store compares.
        if !bool::from(stored.key_hash.as_bytes().ct_eq(hash.as_bytes())) {
            return Err(unauthorized("unknown API key"));
        }
        if !stored.is_active() {
            return Err(unauthorized("this API key was revoked"));
        }
        tracing::Span::current().record("project", stored.project.as_str());
        Ok(Caller { key_id: stored.id, project: stored.project, role: stored.role })
    }
}

/// Who owns what, with a cache of positive answers (an owner never changes once recorded).
#[derive(Default)]
pub struct Owners {
    cache: parking_lot::Mutex<std::collections::HashMap<Subject, Arc<str>>>,
}

impl std::fmt::Debug for Owners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Owners").field("cached", &self.cache.lock().len()).finish()
    }
}

impl Owners {
    fn cached(&self, s: Subject) -> Option<Arc<str>> {
        self.cache.lock().get(&s).cloned()
    }

    fn remember(&self, s: Subject, project: &str) -> Arc<str> {
        let p: Arc<str> = Arc::from(project);
        self.cache.lock().insert(s, p.clone());
        p
    }

    /// The project owning spec `id`.
    pub async fn of_spec(&self, access: &dyn AccessStore, id: SpecId) -> Result<Option<Arc<str>>, StoreError> {
        let s = Subject::Spec(id);
        if let Some(p) = self.cached(s) {
            return Ok(Some(p));
        }
        Ok(access.owner_of(s).await?.map(|p| self.remember(s, &p)))
    }

    /// The project owning `task`: its own owner, else its spec's, else (a branch without a
    /// spec) its parent's.
    pub async fn of_task(&self, access: &dyn AccessStore, task: &Task) -> Result<Option<Arc<str>>, StoreError> {
        let s = Subject::Task(task.id);
        if let Some(p) = self.cached(s) {
            return Ok(Some(p));
        }
        if let Some(p) = access.owner_of(s).await? {
            return Ok(Some(self.remember(s, &p)));
        }
        let inherited = match (task.links.spec_id, task.links.parent_id) {
            (Some(spec), _) => self.of_spec(access, spec).await?,
            // A discovery branch of a task without a spec belongs with its source task.
            (None, Some(parent)) => match self.cached(Subject::Task(parent)) {
                Some(p) => Some(p),
                None => access.owner_of(Subject::Task(parent)).await?.map(Arc::from),
            },
            (None, None) => None,
        };
        Ok(inherited.map(|p| self.remember(s, &p)))
    }

    /// The owner of task `id` if it is cached (no store call).
    pub fn cached_task(&self, id: TaskId) -> Option<Arc<str>> {
        self.cached(Subject::Task(id))
    }
}
