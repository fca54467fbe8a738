//! `MemoryStore` for the Postgres adapter: pgvector (HNSW, cosine) and a generated `tsvector`
//! (GIN, any-term match ranked by `ts_rank`), fused with the shared RRF.

use std::sync::atomic::Ordering;

use async_trait::async_trait;
use omoi_core::memory::{Citation, fuse_candidates, merge_citations, terms};
use omoi_core::ports::memory_store::{check_new_embedding, query_embedding};
use omoi_core::{Event, Memory, MemoryHit, MemoryId, MemoryQuery, MemoryStore, NewMemory, SearchMode, StoreError};
use pgvector::Vector;
use sqlx::postgres::PgRow;
use tracing::instrument;
use uuid::Uuid;

use super::error::{db, is_unique_violation};
use super::rows::{self, get};
use super::{PostgresStore, emit};

/// The keyword query: every term of `text`, OR-ed (`'a' | 'b'`). Terms are runs of letters and
/// digits (`omoi_core::memory::terms`), so they carry no tsquery syntax; quoting keeps them
/// literal anyway.
fn or_query(text: &str) -> Option<String> {
    let mut ts = terms(text);
    ts.sort();
    ts.dedup();
    let quoted: Vec<String> = ts.iter().map(|t| format!("'{}'", t.replace('\'', ""))).collect();
    (!quoted.is_empty()).then(|| quoted.join(" | "))
}

impl PostgresStore {
    /// Reads the embedding column's dimension, if fixed.
    pub(super) async fn load_dimensions(&self) -> Result<Option<usize>, StoreError> {
        let typmod: i32 = sqlx::query_scalar(
            "SELECT atttypmod FROM pg_attribute WHERE attrelid = 'memories'::regclass AND attname = 'embedding'",
        )
        .fetch_one(self.pool())
        .await
        .map_err(db)?;
        let dims = usize::try_from(typmod).ok().filter(|d| *d > 0);
        if let Some(d) = dims {
            self.inner.dims.store(d, Ordering::Relaxed);
        }
        Ok(dims)
    }

    /// Fixes the embedding column to `dims` dimensions (with its HNSW index), or checks that it
    /// already has them.
    pub(super) async fn fix_dimensions(&self, dims: usize) -> Result<(), StoreError> {
        if let Some(have) = self.load_dimensions().await? {
            return if have == dims {
                Ok(())
            } else {
                Err(StoreError::DimensionMismatch { expected: have, got: dims })
            };
        }
        let mut tx = self.begin().await?;
        sqlx::query("LOCK TABLE memories IN ACCESS EXCLUSIVE MODE").execute(&mut *tx).await.map_err(db)?;
        let typmod: i32 = sqlx::query_scalar(
            "SELECT atttypmod FROM pg_attribute WHERE attrelid = 'memories'::regclass AND attname = 'embedding'",
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
        if typmod <= 0 {
            let alter = format!("ALTER TABLE memories ALTER COLUMN embedding TYPE vector({dims})");
            sqlx::query(sqlx::AssertSqlSafe(alter)).execute(&mut *tx).await.map_err(db)?;
            sqlx::query("CREATE INDEX memories_embedding ON memories USING hnsw (embedding vector_cosine_ops)")
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        tx.commit().await.map_err(db)?;
        match self.load_dimensions().await? {
            Some(d) if d == dims => Ok(()),
            Some(d) => Err(StoreError::DimensionMismatch { expected: d, got: dims }),
            None => Err(StoreError::Backend {
                backend: super::error::BACKEND,
                message: "embedding dimension was not fixed".into(),
                source: None,
            }),
        }
    }

    /// The embedding dimension, once fixed.
    fn fixed_dims(&self) -> Option<usize> {
        Some(self.inner.dims.load(Ordering::Relaxed)).filter(|d| *d > 0)
    }

    fn kinds(q: &MemoryQuery) -> Vec<&'static str> {
        q.kinds.iter().map(|k| k.as_str()).collect()
    }

    /// Best cosine first (ties by id), at most `n`, as (row, similarity).
    async fn vector_hits(&self, q: &MemoryQuery, e: &[f32], n: i64) -> Result<Vec<(PgRow, f64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT *, 1 - (embedding <=> $1) AS similarity FROM memories \
              WHERE cardinality($2::text[]) = 0 OR kind = ANY($2) \
              ORDER BY embedding <=> $1, id LIMIT $3",
        )
        .bind(Vector::from(e.to_vec()))
        .bind(Self::kinds(q))
        .bind(n)
        .fetch_all(self.pool())
        .await
        .map_err(db)?;
        rows.into_iter()
            .map(|r| {
                let s: Option<f64> = get(&r, "similarity")?;
                Ok((r, s.filter(|s| s.is_finite()).unwrap_or(0.0)))
            })
            .collect()
    }

    /// Memories containing any query term, best `ts_rank` first (ties by id), at most `n`.
    async fn keyword_hits(&self, q: &MemoryQuery, n: i64) -> Result<Vec<(PgRow, f64)>, StoreError> {
        let Some(tsq) = or_query(&q.text) else { return Ok(Vec::new()) };
        let rows = sqlx::query(
            "SELECT m.*, ts_rank(m.search, q)::float8 AS rank FROM memories m, to_tsquery('english', $1) q \
              WHERE m.search @@ q AND (cardinality($2::text[]) = 0 OR m.kind = ANY($2)) \
              ORDER BY rank DESC, m.id LIMIT $3",
        )
        .bind(tsq)
        .bind(Self::kinds(q))
        .bind(n)
        .fetch_all(self.pool())
        .await
        .map_err(db)?;
        rows.into_iter().map(|r| Ok((get::<f64>(&r, "rank")?, r))).map(|x| x.map(|(s, r)| (r, s))).collect()
    }
}

#[async_trait]
impl MemoryStore for PostgresStore {
    #[instrument(level = "debug", skip_all, fields(memory = %new.id))]
    async fn put_memory(&self, new: NewMemory) -> Result<Memory, StoreError> {
        check_new_embedding(self.fixed_dims(), &new.embedding)?;
        if self.fixed_dims().is_none() {
            self.fix_dimensions(new.embedding.len()).await?;
        }
        let now = self.now();
        let mut tx = self.begin().await?;
        let row = sqlx::query(
            "INSERT INTO memories (id, kind, text, embedding, metadata, citations, created_at, refreshed_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING *",
        )
        .bind(new.id.as_uuid())
        .bind(new.kind.as_str())
        .bind(&new.text)
        .bind(Vector::from(new.embedding.clone()))
        .bind(&new.metadata)
        .bind(sqlx::types::Json(&new.citations))
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| {
            if is_unique_violation(&e, "memories_pkey") {
                StoreError::AlreadyExists { kind: "memory", id: new.id.to_string() }
            } else {
                db(e)
            }
        })?;
        let memory = rows::memory(&row)?;
        emit(&mut tx, now, &[Event::MemoryStored { memory_id: memory.id }]).await?;
        tx.commit().await.map_err(db)?;
        Ok(memory)
    }

    #[instrument(level = "debug", skip_all, fields(memory = %id))]
    async fn get_memory(&self, id: MemoryId) -> Result<Memory, StoreError> {
        let row = sqlx::query("SELECT * FROM memories WHERE id = $1")
            .bind(id.as_uuid())
            .fetch_optional(self.pool())
            .await
            .map_err(db)?
            .ok_or_else(|| StoreError::not_found("memory", id))?;
        rows::memory(&row)
    }

    async fn memory_dimensions(&self) -> Result<Option<usize>, StoreError> {
        match self.inner.dims.load(Ordering::Relaxed) {
            0 => self.load_dimensions().await,
            d => Ok(Some(d)),
        }
    }

    #[instrument(level = "debug", skip_all, fields(memory = %id))]
    async fn reinforce_memory(&self, id: MemoryId, citations: Vec<Citation>) -> Result<Memory, StoreError> {
        let now = self.now();
        let mut tx = self.begin().await?;
        let row = sqlx::query("SELECT * FROM memories WHERE id = $1 FOR UPDATE")
            .bind(id.as_uuid())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?
            .ok_or_else(|| StoreError::not_found("memory", id))?;
        let old = rows::memory(&row)?;
        let merged = merge_citations(&old.citations, &citations);
        let row = sqlx::query(
            "UPDATE memories SET reinforcements = reinforcements + 1, refreshed_at = $2, citations = $3 \
             WHERE id = $1 RETURNING *",
        )
        .bind(id.as_uuid())
        .bind(now)
        .bind(sqlx::types::Json(&merged))
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
        let memory = rows::memory(&row)?;
        emit(&mut tx, now, &[Event::MemoryReinforced { memory_id: id, reinforcements: memory.reinforcements }]).await?;
        tx.commit().await.map_err(db)?;
        Ok(memory)
    }

    #[instrument(level = "debug", skip_all, fields(count = ids.len()))]
    async fn record_memory_uses(&self, ids: &[MemoryId]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let uuids: Vec<Uuid> = ids.iter().map(|id| id.as_uuid()).collect();
        sqlx::query("UPDATE memories SET uses = uses + 1, last_used_at = $2 WHERE id = ANY($1)")
            .bind(uuids)
            .bind(self.now())
            .execute(self.pool())
            .await
            .map_err(db)?;
        Ok(())
    }

    #[instrument(level = "debug", skip_all, fields(mode = ?q.mode, limit = q.limit))]
    async fn search_memories(&self, q: &MemoryQuery) -> Result<Vec<MemoryHit>, StoreError> {
        let embedding = query_embedding(q, self.fixed_dims())?;
        let n = i64::try_from(q.candidates()).unwrap_or(i64::MAX);
        let hit = |row: &PgRow, score: f64, vr: Option<usize>, kr: Option<usize>| -> Result<MemoryHit, StoreError> {
            Ok(MemoryHit { memory: rows::memory(row)?, score, vector_rank: vr, keyword_rank: kr })
        };
        // An empty store has no fixed dimension yet: nothing to find.
        let vector_hits = async {
            match embedding {
                Some(e) if self.inner.dims.load(Ordering::Relaxed) != 0 => self.vector_hits(q, e, n).await,
                _ => Ok(Vec::new()),
            }
        };
        match q.mode {
            SearchMode::Vector => {
                let vector = vector_hits.await?;
                vector.iter().enumerate().map(|(r, (row, s))| hit(row, *s, Some(r + 1), None)).collect()
            }
            SearchMode::Keyword => {
                let keyword = self.keyword_hits(q, n).await?;
                keyword.iter().enumerate().map(|(r, (row, s))| hit(row, *s, None, Some(r + 1))).collect()
            }
            SearchMode::Hybrid => {
                // The two lists on two connections at once.
                let (vector, keyword) = futures::try_join!(vector_hits, self.keyword_hits(q, n))?;
                let mut found: std::collections::HashMap<Uuid, &PgRow> = std::collections::HashMap::new();
                let ids = |v: &[(PgRow, f64)]| -> Result<Vec<MemoryId>, StoreError> {
                    v.iter()
                        .map(|(row, _)| {
                            let id: Uuid = get(row, "id")?;
                            Ok(MemoryId::from_uuid(id))
                        })
                        .collect()
                };
                let (vids, kids) = (ids(&vector)?, ids(&keyword)?);
                for (row, _) in vector.iter().chain(keyword.iter()) {
                    found.insert(get(row, "id")?, row);
                }
                fuse_candidates(q, vids, kids)
                    .into_iter()
                    .map(|(id, score, vr, kr)| hit(found[&id.as_uuid()], score, vr, kr))
                    .collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::or_query;

    #[test]
    fn keyword_query_ors_distinct_terms() {
        assert_eq!(or_query("Pool-exhausted: pool DB!").as_deref(), Some("'db' | 'exhausted' | 'pool'"));
        assert_eq!(or_query(" -- !! "), None);
    }
}
