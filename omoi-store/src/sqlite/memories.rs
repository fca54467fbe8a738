//! `MemoryStore` for the SQLite adapter: FTS5 (BM25) for keywords, exact cosine over the stored
//! embeddings for vectors, fused by the shared RRF.
//!
//! Keyword search matches a memory containing any query term: the query's terms (as
//! [`terms`] splits them) are quoted, so no FTS5 syntax can be injected, and joined with `OR`;
//! FTS5's `bm25()` ranks them. Vector search reads the candidates' embeddings (little-endian
//! `f32` blobs) and computes cosine similarity in Rust with [`cosine`]. The embedding dimension is
//! kept in the `meta` table: fixed by the builder or by the first memory stored.

use std::collections::HashMap;

use async_trait::async_trait;
use omoi_core::memory::{Citation, cosine, fuse_candidates, merge_citations, terms};
use omoi_core::ports::memory_store::{check_configured_dimension, check_new_embedding, query_embedding};
use omoi_core::{Event, Memory, MemoryHit, MemoryId, MemoryQuery, MemoryStore, NewMemory, SearchMode, StoreError};
use sqlx::sqlite::SqliteRow;
use sqlx::{Sqlite, SqliteConnection};

use super::SqliteStore;
use super::codec::{
    embedding, embedding_blob, get, get_json, get_parsed, get_time, json, parse, text_array, time, u32_of, us,
};
use super::error::{corrupt, db, insert};

const DIMS_KEY: &str = "memory_dims";

macro_rules! memory_cols {
    () => {
        "id, kind, text, embedding, metadata, citations, reinforcements, uses, created_at, refreshed_at, last_used_at"
    };
}

fn decode(r: &SqliteRow) -> Result<Memory, StoreError> {
    Ok(Memory {
        id: get_parsed(r, "id")?,
        kind: get_parsed(r, "kind")?,
        text: get(r, "text")?,
        embedding: embedding(&get::<Vec<u8>>(r, "embedding")?)?,
        metadata: get_json(r, "metadata")?,
        citations: get_json(r, "citations")?,
        reinforcements: u32_of("reinforcements", get(r, "reinforcements")?)?,
        uses: u32_of("uses", get(r, "uses")?)?,
        created_at: get_time(r, "created_at")?,
        refreshed_at: get_time(r, "refreshed_at")?,
        last_used_at: get::<Option<i64>>(r, "last_used_at")?.map(time).transpose()?,
    })
}

/// The stored dimension, if any memory (or the builder) fixed it.
async fn stored_dims<'e, E>(exec: E) -> Result<Option<usize>, StoreError>
where
    E: sqlx::Executor<'e, Database = Sqlite>,
{
    let v: Option<String> = sqlx::query_scalar("SELECT value FROM meta WHERE key = ?1")
        .bind(DIMS_KEY)
        .fetch_optional(exec)
        .await
        .map_err(db)?;
    v.map(|s| parse::<usize>(DIMS_KEY, &s)).transpose()
}

async fn store_dims(conn: &mut SqliteConnection, dims: usize) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO meta (key, value) VALUES (?1, ?2)")
        .bind(DIMS_KEY)
        .bind(dims.to_string())
        .execute(conn)
        .await
        .map_err(db)?;
    Ok(())
}

/// An FTS5 query matching any of `text`'s terms, each quoted; `None` if it has no terms.
fn match_any(text: &str) -> Option<String> {
    let mut seen = std::collections::HashSet::new();
    let quoted: Vec<String> = terms(text)
        .into_iter()
        .filter(|t| seen.insert(t.clone()))
        .map(|t| format!("\"{}\"", t.replace('"', "\"\"")))
        .collect();
    (!quoted.is_empty()).then(|| quoted.join(" OR "))
}

impl SqliteStore {
    /// Checks the builder's dimension against the file's and records it if the file has none.
    pub(super) async fn init_dimensions(&self, configured: Option<usize>) -> Result<(), StoreError> {
        let stored = stored_dims(&self.inner.writer).await?;
        match (stored, configured) {
            (Some(s), Some(c)) if s != c => return Err(StoreError::DimensionMismatch { expected: s, got: c }),
            (None, Some(c)) => {
                check_configured_dimension(c)?;
                let mut w = self.begin().await?;
                // Another process may have fixed it meanwhile; the transaction re-reads under the lock.
                match stored_dims(w.conn()).await? {
                    Some(s) if s != c => return Err(StoreError::DimensionMismatch { expected: s, got: c }),
                    Some(_) => {}
                    None => store_dims(w.conn(), c).await?,
                }
                self.commit(w).await?;
            }
            _ => {}
        }
        if let Some(d) = stored.or(configured) {
            let _ = self.inner.dims.set(d);
        }
        Ok(())
    }

    /// The dimension, cached once known.
    async fn dims(&self) -> Result<Option<usize>, StoreError> {
        if let Some(d) = self.inner.dims.get() {
            return Ok(Some(*d));
        }
        let d = stored_dims(self.readers()).await?;
        if let Some(d) = d {
            let _ = self.inner.dims.set(d);
        }
        Ok(d)
    }

    /// Memories passing the kind filter, best cosine first (ties by id), at most `n`.
    async fn vector(&self, kinds: Option<&str>, q: &[f32], n: usize) -> Result<Vec<(MemoryId, f64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, embedding FROM memories WHERE ?1 IS NULL OR kind IN (SELECT value FROM json_each(?1))",
        )
        .bind(kinds)
        .fetch_all(self.readers())
        .await
        .map_err(db)?;
        let mut scored = rows
            .iter()
            .map(|r| {
                let id: MemoryId = get_parsed(r, "id")?;
                Ok((id, cosine(&embedding(&get::<Vec<u8>>(r, "embedding")?)?, q)))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        scored.truncate(n);
        Ok(scored)
    }

    /// Memories containing any term of `text`, best BM25 first (ties by id), at most `n`.
    async fn keyword(&self, kinds: Option<&str>, text: &str, n: usize) -> Result<Vec<(MemoryId, f64)>, StoreError> {
        let Some(query) = match_any(text) else { return Ok(Vec::new()) };
        let rows = sqlx::query(
            "SELECT m.id AS id, bm25(memories_fts) AS rank FROM memories_fts \
             JOIN memories AS m ON m.pos = memories_fts.rowid \
             WHERE memories_fts MATCH ?1 AND (?2 IS NULL OR m.kind IN (SELECT value FROM json_each(?2))) \
             ORDER BY rank, m.id LIMIT ?3",
        )
        .bind(query)
        .bind(kinds)
        .bind(i64::try_from(n).unwrap_or(i64::MAX))
        .fetch_all(self.readers())
        .await
        .map_err(db)?;
        // bm25() is lower-is-better and negative; the port's scores are higher-is-better.
        rows.iter().map(|r| Ok((get_parsed(r, "id")?, -get::<f64>(r, "rank")?))).collect()
    }

    /// The memories `ids`, by id.
    async fn memories(&self, ids: impl IntoIterator<Item = MemoryId>) -> Result<HashMap<MemoryId, Memory>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            memory_cols!(),
            " FROM memories WHERE id IN (SELECT value FROM json_each(?1))"
        ))
        .bind(text_array(ids))
        .fetch_all(self.readers())
        .await
        .map_err(db)?;
        rows.iter().map(|r| decode(r).map(|m| (m.id, m))).collect()
    }
}

#[async_trait]
impl MemoryStore for SqliteStore {
    #[tracing::instrument(level = "debug", name = "sqlite.put_memory", skip_all, fields(memory = %new.id, kind = %new.kind))]
    async fn put_memory(&self, new: NewMemory) -> Result<Memory, StoreError> {
        let mut w = self.begin().await?;
        let dims = stored_dims(w.conn()).await?;
        check_new_embedding(dims, &new.embedding)?;
        let memory = Memory::stored(new, w.now);
        let pos: i64 = sqlx::query_scalar(
            "INSERT INTO memories (id, kind, text, embedding, metadata, citations, created_at, refreshed_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7) RETURNING pos",
        )
        .bind(memory.id.to_string())
        .bind(memory.kind.as_str())
        .bind(&memory.text)
        .bind(embedding_blob(&memory.embedding))
        .bind(json(&memory.metadata)?)
        .bind(json(&memory.citations)?)
        .bind(us(memory.created_at))
        .fetch_one(w.conn())
        .await
        .map_err(insert("memory", memory.id))?;
        sqlx::query("INSERT INTO memories_fts (rowid, text) VALUES (?1, ?2)")
            .bind(pos)
            .bind(&memory.text)
            .execute(w.conn())
            .await
            .map_err(db)?;
        if dims.is_none() {
            store_dims(w.conn(), memory.embedding.len()).await?;
        }
        w.emit(Event::MemoryStored { memory_id: memory.id });
        self.commit(w).await?;
        let _ = self.inner.dims.set(memory.embedding.len());
        Ok(memory)
    }

    #[tracing::instrument(level = "debug", name = "sqlite.get_memory", skip(self))]
    async fn get_memory(&self, id: MemoryId) -> Result<Memory, StoreError> {
        let row = sqlx::query(concat!("SELECT ", memory_cols!(), " FROM memories WHERE id = ?1"))
            .bind(id.to_string())
            .fetch_optional(self.readers())
            .await
            .map_err(db)?
            .ok_or_else(|| StoreError::not_found("memory", id))?;
        decode(&row)
    }

    async fn memory_dimensions(&self) -> Result<Option<usize>, StoreError> {
        self.dims().await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.reinforce_memory", skip(self, citations))]
    async fn reinforce_memory(&self, id: MemoryId, citations: Vec<Citation>) -> Result<Memory, StoreError> {
        let mut w = self.begin().await?;
        let row = sqlx::query(concat!("SELECT ", memory_cols!(), " FROM memories WHERE id = ?1"))
            .bind(id.to_string())
            .fetch_optional(w.conn())
            .await
            .map_err(db)?
            .ok_or_else(|| StoreError::not_found("memory", id))?;
        let mut memory = decode(&row)?;
        memory.reinforcements = memory.reinforcements.saturating_add(1);
        memory.refreshed_at = w.now;
        memory.citations = merge_citations(&memory.citations, &citations);
        sqlx::query("UPDATE memories SET reinforcements = ?2, refreshed_at = ?3, citations = ?4 WHERE id = ?1")
            .bind(id.to_string())
            .bind(i64::from(memory.reinforcements))
            .bind(us(memory.refreshed_at))
            .bind(json(&memory.citations)?)
            .execute(w.conn())
            .await
            .map_err(db)?;
        w.emit(Event::MemoryReinforced { memory_id: id, reinforcements: memory.reinforcements });
        self.commit(w).await?;
        Ok(memory)
    }

    #[tracing::instrument(level = "debug", name = "sqlite.record_memory_uses", skip_all, fields(count = ids.len()))]
    async fn record_memory_uses(&self, ids: &[MemoryId]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut w = self.begin().await?;
        sqlx::query(
            "UPDATE memories SET uses = uses + 1, last_used_at = ?2 \
             WHERE id IN (SELECT DISTINCT value FROM json_each(?1))",
        )
        .bind(text_array(ids.iter()))
        .bind(us(w.now))
        .execute(w.conn())
        .await
        .map_err(db)?;
        self.commit(w).await?;
        Ok(())
    }

    #[tracing::instrument(level = "debug", name = "sqlite.search_memories", skip_all, fields(mode = ?q.mode, limit = q.limit))]
    async fn search_memories(&self, q: &MemoryQuery) -> Result<Vec<MemoryHit>, StoreError> {
        let embedding = query_embedding(q, self.dims().await?)?;
        let kinds = (!q.kinds.is_empty()).then(|| text_array(q.kinds.iter()));
        let kinds = kinds.as_deref();
        let n = q.candidates();
        let (vector, keyword) = match q.mode {
            SearchMode::Vector => (self.vector(kinds, embedding.unwrap_or_default(), n).await?, Vec::new()),
            SearchMode::Keyword => (Vec::new(), self.keyword(kinds, &q.text, n).await?),
            SearchMode::Hybrid => {
                (self.vector(kinds, embedding.unwrap_or_default(), n).await?, self.keyword(kinds, &q.text, n).await?)
            }
        };
        // (id, score, vector rank, keyword rank), best first.
        let ranked: Vec<(MemoryId, f64, Option<usize>, Option<usize>)> = match q.mode {
            SearchMode::Vector => {
                vector.into_iter().enumerate().map(|(r, (id, s))| (id, s, Some(r + 1), None)).collect()
            }
            SearchMode::Keyword => {
                keyword.into_iter().enumerate().map(|(r, (id, s))| (id, s, None, Some(r + 1))).collect()
            }
            SearchMode::Hybrid => fuse_candidates(
                q,
                vector.into_iter().map(|(id, _)| id).collect(),
                keyword.into_iter().map(|(id, _)| id).collect(),
            ),
        };
        let mut rows = self.memories(ranked.iter().map(|h| h.0)).await?;
        ranked
            .into_iter()
            .map(|(id, score, vector_rank, keyword_rank)| {
                let memory = rows.remove(&id).ok_or_else(|| corrupt("memory index", format!("{id} has no row")))?;
                Ok(MemoryHit { memory, score, vector_rank, keyword_rank })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyword_queries_quote_each_term_once() {
        assert_eq!(
            match_any("Pool OR pool \"x\"* NEAR(a)").as_deref(),
            Some("\"pool\" OR \"or\" OR \"x\" OR \"near\" OR \"a\"")
        );
        assert_eq!(match_any("  ...  "), None);
    }
}
