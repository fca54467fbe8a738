//! `AccessStore` for the Postgres adapter.

use async_trait::async_trait;
use omoi_core::access::{subject_key, subject_of, validate_project};
use omoi_core::{AccessStore, ApiKey, ApiKeyId, NewApiKey, StoreError, Subject};
use sqlx::postgres::PgRow;
use tracing::instrument;
use uuid::Uuid;

use super::PostgresStore;
use super::error::{corrupt, db, is_unique_violation};
use super::rows::{get, parse};

macro_rules! cols {
    () => {
        "id, project, role, key_hash, created_at, revoked_at"
    };
}

fn decode(r: &PgRow) -> Result<ApiKey, StoreError> {
    Ok(ApiKey {
        id: ApiKeyId::from_uuid(get(r, "id")?),
        project: get(r, "project")?,
        role: parse("role", &get::<String>(r, "role")?)?,
        key_hash: get(r, "key_hash")?,
        created_at: get(r, "created_at")?,
        revoked_at: get(r, "revoked_at")?,
    })
}

#[async_trait]
impl AccessStore for PostgresStore {
    #[instrument(level = "debug", skip_all, fields(project = %key.project))]
    async fn create_key(&self, key: NewApiKey) -> Result<ApiKey, StoreError> {
        key.validate().map_err(StoreError::InvalidInput)?;
        let k = ApiKey::created(key, self.now());
        sqlx::query("INSERT INTO api_keys (id, project, role, key_hash, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(k.id.as_uuid())
            .bind(&k.project)
            .bind(k.role.as_str())
            .bind(&k.key_hash)
            .bind(k.created_at)
            .execute(self.pool())
            .await
            .map_err(|e| {
                if is_unique_violation(&e, "api_keys_pkey") || is_unique_violation(&e, "api_keys_hash_key") {
                    StoreError::AlreadyExists { kind: "api key", id: k.id.to_string() }
                } else {
                    db(e)
                }
            })?;
        Ok(k)
    }

    #[instrument(level = "debug", skip_all)]
    async fn key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKey>, StoreError> {
        let row = sqlx::query(concat!("SELECT ", cols!(), " FROM api_keys WHERE key_hash = $1"))
            .bind(key_hash)
            .fetch_optional(self.pool())
            .await
            .map_err(db)?;
        row.as_ref().map(decode).transpose()
    }

    #[instrument(level = "debug", skip(self))]
    async fn revoke_key(&self, id: ApiKeyId) -> Result<ApiKey, StoreError> {
        let row = sqlx::query(concat!(
            "UPDATE api_keys SET revoked_at = coalesce(revoked_at, $2) WHERE id = $1 RETURNING ",
            cols!(),
            ""
        ))
        .bind(id.as_uuid())
        .bind(self.now())
        .fetch_optional(self.pool())
        .await
        .map_err(db)?;
        row.as_ref().map(decode).transpose()?.ok_or_else(|| StoreError::not_found("api key", id))
    }

    #[instrument(level = "debug", skip(self))]
    async fn list_keys(&self, project: Option<&str>) -> Result<Vec<ApiKey>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            cols!(),
            " FROM api_keys WHERE $1::text IS NULL OR project = $1 ORDER BY pos"
        ))
        .bind(project)
        .fetch_all(self.pool())
        .await
        .map_err(db)?;
        rows.iter().map(decode).collect()
    }

    #[instrument(level = "debug", skip(self))]
    async fn assign_owner(&self, subject: Subject, project: &str) -> Result<(), StoreError> {
        validate_project(project).map_err(StoreError::InvalidInput)?;
        let (kind, id) = subject_key(subject);
        // One statement: insert, or read the existing owner (the CTE sees the row a racing
        // insert committed only through the second branch, so both are checked).
        let inserted: Option<String> = sqlx::query_scalar(
            "INSERT INTO entity_owners (kind, id, project) VALUES ($1, $2, $3) \
             ON CONFLICT (kind, id) DO NOTHING RETURNING project",
        )
        .bind(kind)
        .bind(id)
        .bind(project)
        .fetch_optional(self.pool())
        .await
        .map_err(db)?;
        let owner = match inserted {
            Some(p) => p,
            // Already owned (possibly by a racing insert, committed before ours gave way).
            None => self.owner_of(subject).await?.ok_or_else(|| corrupt("entity owner", "vanished"))?,
        };
        if owner != project {
            return Err(StoreError::AlreadyExists { kind: "entity owner", id: subject.to_string() });
        }
        Ok(())
    }

    #[instrument(level = "debug", skip(self))]
    async fn owner_of(&self, subject: Subject) -> Result<Option<String>, StoreError> {
        let (kind, id) = subject_key(subject);
        sqlx::query_scalar("SELECT project FROM entity_owners WHERE kind = $1 AND id = $2")
            .bind(kind)
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .map_err(db)
    }

    #[instrument(level = "debug", skip(self))]
    async fn owned_by(&self, project: &str) -> Result<Vec<Subject>, StoreError> {
        let rows: Vec<(String, Uuid)> =
            sqlx::query_as("SELECT kind, id FROM entity_owners WHERE project = $1 ORDER BY pos")
                .bind(project)
                .fetch_all(self.pool())
                .await
                .map_err(db)?;
        rows.into_iter()
            .map(|(kind, id)| subject_of(&kind, id).ok_or_else(|| corrupt("entity owner kind", kind)))
            .collect()
    }
}
