//! `AccessStore` for the SQLite adapter.

use async_trait::async_trait;
use omoi_core::access::{subject_key, subject_of, validate_project};
use omoi_core::{AccessStore, ApiKey, ApiKeyId, NewApiKey, StoreError, Subject};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::SqliteStore;
use super::codec::{get, get_parsed, get_time, time, us};
use super::error::{corrupt, db, insert};

macro_rules! cols {
    () => {
        "id, project, role, key_hash, created_at, revoked_at"
    };
}

fn decode(r: &SqliteRow) -> Result<ApiKey, StoreError> {
    Ok(ApiKey {
        id: get_parsed(r, "id")?,
        project: get(r, "project")?,
        role: get_parsed(r, "role")?,
        key_hash: get(r, "key_hash")?,
        created_at: get_time(r, "created_at")?,
        revoked_at: get::<Option<i64>>(r, "revoked_at")?.map(time).transpose()?,
    })
}

#[async_trait]
impl AccessStore for SqliteStore {
    #[tracing::instrument(level = "debug", name = "sqlite.create_key", skip_all, fields(project = %key.project))]
    async fn create_key(&self, key: NewApiKey) -> Result<ApiKey, StoreError> {
        key.validate().map_err(StoreError::InvalidInput)?;
        let mut w = self.begin().await?;
        let k = ApiKey::created(key, w.now);
        sqlx::query("INSERT INTO api_keys (id, project, role, key_hash, created_at) VALUES (?1, ?2, ?3, ?4, ?5)")
            .bind(k.id.to_string())
            .bind(&k.project)
            .bind(k.role.as_str())
            .bind(&k.key_hash)
            .bind(us(k.created_at))
            .execute(w.conn())
            .await
            .map_err(insert("api key", k.id))?;
        self.commit(w).await?;
        Ok(k)
    }

    #[tracing::instrument(level = "debug", name = "sqlite.key_by_hash", skip_all)]
    async fn key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKey>, StoreError> {
        let row = sqlx::query(concat!("SELECT ", cols!(), " FROM api_keys WHERE key_hash = ?1"))
            .bind(key_hash)
            .fetch_optional(self.readers())
            .await
            .map_err(db)?;
        row.as_ref().map(decode).transpose()
    }

    #[tracing::instrument(level = "debug", name = "sqlite.revoke_key", skip(self))]
    async fn revoke_key(&self, id: ApiKeyId) -> Result<ApiKey, StoreError> {
        let mut w = self.begin().await?;
        let row = sqlx::query(concat!(
            "UPDATE api_keys SET revoked_at = coalesce(revoked_at, ?2) WHERE id = ?1 RETURNING ",
            cols!(),
            ""
        ))
        .bind(id.to_string())
        .bind(us(w.now))
        .fetch_optional(w.conn())
        .await
        .map_err(db)?;
        let key = row.as_ref().map(decode).transpose()?.ok_or_else(|| StoreError::not_found("api key", id))?;
        self.commit(w).await?;
        Ok(key)
    }

    #[tracing::instrument(level = "debug", name = "sqlite.list_keys", skip(self))]
    async fn list_keys(&self, project: Option<&str>) -> Result<Vec<ApiKey>, StoreError> {
        let rows =
            sqlx::query(concat!("SELECT ", cols!(), " FROM api_keys WHERE ?1 IS NULL OR project = ?1 ORDER BY pos"))
                .bind(project)
                .fetch_all(self.readers())
                .await
                .map_err(db)?;
        rows.iter().map(decode).collect()
    }

    #[tracing::instrument(level = "debug", name = "sqlite.assign_owner", skip(self))]
    async fn assign_owner(&self, subject: Subject, project: &str) -> Result<(), StoreError> {
        validate_project(project).map_err(StoreError::InvalidInput)?;
        let (kind, id) = subject_key(subject);
        let mut w = self.begin().await?;
        sqlx::query(
            "INSERT INTO entity_owners (kind, id, project) VALUES (?1, ?2, ?3) ON CONFLICT (kind, id) DO NOTHING",
        )
        .bind(kind)
        .bind(id.to_string())
        .bind(project)
        .execute(w.conn())
        .await
        .map_err(db)?;
        let owner: String = sqlx::query_scalar("SELECT project FROM entity_owners WHERE kind = ?1 AND id = ?2")
            .bind(kind)
            .bind(id.to_string())
            .fetch_one(w.conn())
            .await
            .map_err(db)?;
        self.commit(w).await?;
        if owner != project {
            return Err(StoreError::AlreadyExists { kind: "entity owner", id: subject.to_string() });
        }
        Ok(())
    }

    #[tracing::instrument(level = "debug", name = "sqlite.owner_of", skip(self))]
    async fn owner_of(&self, subject: Subject) -> Result<Option<String>, StoreError> {
        let (kind, id) = subject_key(subject);
        sqlx::query_scalar("SELECT project FROM entity_owners WHERE kind = ?1 AND id = ?2")
            .bind(kind)
            .bind(id.to_string())
            .fetch_optional(self.readers())
            .await
            .map_err(db)
    }

    #[tracing::instrument(level = "debug", name = "sqlite.owned_by", skip(self))]
    async fn owned_by(&self, project: &str) -> Result<Vec<Subject>, StoreError> {
        let rows = sqlx::query("SELECT kind, id FROM entity_owners WHERE project = ?1 ORDER BY pos")
            .bind(project)
            .fetch_all(self.readers())
            .await
            .map_err(db)?;
        rows.iter()
            .map(|r| {
                let (kind, id): (String, String) = (r.try_get("kind").map_err(db)?, r.try_get("id").map_err(db)?);
                let uuid = id.parse().map_err(|e| corrupt("entity owner id", e))?;
                subject_of(&kind, uuid).ok_or_else(|| corrupt("entity owner kind", kind))
            })
            .collect()
    }
}
