//! `MemoryStore` for the Postgres adapter: pgvector (HNSW, cosine) and a generated `tsvector`
//! (GIN, any-term match ranked by `ts_rank`), fused with the shared RRF.
//!
//! Both halves are served by their index and bounded however many memories match:
//!
//! - **vector**: the HNSW index in distance order (`hnsw.ef_search` and `hnsw.iterative_scan`
//!   are set on every connection, see `PostgresStoreBuilder::connect`), `LIMIT n`;
//! - **keyword**: `ts_rank` has no index, so it only ranks a bounded candidate set found
//!   through the GIN index, in disjoint tiers of how many query terms a memory holds — up to
//!   `n` memories holding every term, up to `n` holding at least two but not all (queries of up
//!   to [`PAIR_TERMS`] terms), and as many of the rest holding any as it takes to reach `n`
//!   (none when the first two tiers found `n`: that scan is skipped). `ts_rank` orders by the terms matched
//!   first (it has no IDF), so the top `n` among these candidates are the top `n` of a full
//!   ranking up to ties within a tier. Ranking every match instead cost 48 ms at 100k
//!   memories (see BENCHMARKS.md).
//!
//! A hybrid search runs both halves in one statement (one round trip, one backend) and returns
//! each candidate once with its rank in each list; the lists are fused in Rust by the shared
//! RRF ([`fuse_candidates`]).

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

/// Queries of at most this many terms also gather the memories holding at least two of them
/// (an OR of every pair: 28 pairs at 8 terms).
pub(super) const PAIR_TERMS: usize = 8;

/// The keyword tiers of `text`: (every term AND-ed, every pair of terms OR-ed, every term
/// OR-ed), e.g. `'a' & 'b'`, `'a' & 'b'` and `'a' | 'b'`. Terms are runs of letters and digits
/// (`omoi_core::memory::terms`), so they carry no tsquery syntax; quoting keeps them literal
/// anyway. Beyond [`PAIR_TERMS`] terms the pair tier repeats the every-term tier.
fn keyword_tiers(text: &str) -> Option<(String, String, String)> {
    let mut ts = terms(text);
    ts.sort();
    ts.dedup();
    let quoted: Vec<String> = ts.iter().map(|t| format!("'{}'", t.replace('\'', ""))).collect();
    if quoted.is_empty() {
        return None;
    }
    let every = quoted.join(" & ");
    let pairs = if quoted.len() > 2 && quoted.len() <= PAIR_TERMS {
        let mut pairs = Vec::new();
        for (i, a) in quoted.iter().enumerate() {
            for b in &quoted[i + 1..] {
                pairs.push(format!("({a} & {b})"));
            }
        }
        pairs.join(" | ")
    } else {
        every.clone()
    };
    Some((every, pairs, quoted.join(" | ")))
}

/// The keyword candidate tiers (each ranked by `ts_rank` as its rows are read, so no memory is
/// read twice) and their ranking, as CTEs ending in `kw (id, krank, kr)`: `$1`,
/// `$2`, `$3` the tiers of [`keyword_tiers`], `$4` the kinds (empty: any), `$5` the limit.
macro_rules! keyword_ctes {
    () => {
        "q AS (SELECT to_tsquery('english', $1) AS every, to_tsquery('english', $2) AS pairs, \
                      to_tsquery('english', $3) AS any), \
         every_term AS MATERIALIZED (SELECT m.id, ts_rank(m.search, q.any)::float8 AS krank \
             FROM memories m, q WHERE m.search @@ q.every \
             AND (cardinality($4::text[]) = 0 OR m.kind = ANY($4)) LIMIT $5), \
         two_terms AS MATERIALIZED (SELECT m.id, ts_rank(m.search, q.any)::float8 AS krank \
             FROM memories m, q WHERE m.search @@ q.pairs AND NOT m.search @@ q.every \
             AND (cardinality($4::text[]) = 0 OR m.kind = ANY($4)) LIMIT $5), \
         any_term AS MATERIALIZED (SELECT m.id, ts_rank(m.search, q.any)::float8 AS krank \
             FROM memories m, q WHERE m.search @@ q.any AND NOT m.search @@ q.pairs \
             AND (cardinality($4::text[]) = 0 OR m.kind = ANY($4)) \
             LIMIT greatest($5 - (SELECT count(*) FROM every_term) - (SELECT count(*) FROM two_terms), 0)), \
         kw AS MATERIALIZED (SELECT id, krank, row_number() OVER (ORDER BY krank DESC, id) AS kr FROM \
             (SELECT id, krank FROM every_term UNION SELECT id, krank FROM two_terms \
              UNION SELECT id, krank FROM any_term ORDER BY krank DESC, id LIMIT $5) k)"
    };
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

    /// Memories containing any query term, best `ts_rank` first (ties by id), at most `n`,
    /// ranked among the bounded candidate tiers of the module docs.
    async fn keyword_hits(&self, q: &MemoryQuery, n: i64) -> Result<Vec<(PgRow, f64)>, StoreError> {
        let Some((every, pairs, any)) = keyword_tiers(&q.text) else { return Ok(Vec::new()) };
        let rows = sqlx::query(concat!(
            "WITH ",
            keyword_ctes!(),
            " SELECT m.*, kw.krank FROM kw JOIN memories m USING (id) ORDER BY kw.kr"
        ))
        .bind(every)
        .bind(pairs)
        .bind(any)
        .bind(Self::kinds(q))
        .bind(n)
        .fetch_all(self.pool())
        .await
        .map_err(db)?;
        rows.into_iter().map(|r| Ok((get::<f64>(&r, "krank")?, r))).map(|x| x.map(|(s, r)| (r, s))).collect()
    }

    /// Both halves of a hybrid search in one statement: each candidate once, with its rank in
    /// the vector list (best cosine first, ties by id) and in the keyword list, at most `n` in
    /// each. `None` when the text has no keyword terms (then only the vector half applies).
    async fn hybrid_hits(
        &self,
        q: &MemoryQuery,
        e: &[f32],
        n: i64,
    ) -> Result<Option<Vec<(PgRow, Option<usize>, Option<usize>)>>, StoreError> {
        let Some((every, pairs, any)) = keyword_tiers(&q.text) else { return Ok(None) };
        let rows = sqlx::query(concat!(
            "WITH ",
            keyword_ctes!(),
            ", vec AS MATERIALIZED (SELECT id, row_number() OVER (ORDER BY d, id) AS vr FROM \
                 (SELECT id, embedding <=> $6 AS d FROM memories \
                   WHERE cardinality($4::text[]) = 0 OR kind = ANY($4) ORDER BY embedding <=> $6, id LIMIT $5) v) \
             SELECT m.*, vec.vr, kw.kr FROM (SELECT id FROM vec UNION SELECT id FROM kw) c \
               JOIN memories m USING (id) LEFT JOIN vec USING (id) LEFT JOIN kw USING (id)"
        ))
        .bind(every)
        .bind(pairs)
        .bind(any)
        .bind(Self::kinds(q))
        .bind(n)
        .bind(Vector::from(e.to_vec()))
        .fetch_all(self.pool())
        .await
        .map_err(db)?;
        let rank = |r: &PgRow, col: &str| -> Result<Option<usize>, StoreError> {
            Ok(get::<Option<i64>>(r, col)?.and_then(|x| usize::try_from(x).ok()))
        };
        rows.into_iter()
            .map(|r| {
                let (vr, kr) = (rank(&r, "vr")?, rank(&r, "kr")?);
                Ok((r, vr, kr))
            })
            .collect::<Result<Vec<_>, StoreError>>()
            .map(Some)
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
                let both = match embedding {
                    Some(e) if self.inner.dims.load(Ordering::Relaxed) != 0 => self.hybrid_hits(q, e, n).await?,
                    _ => None,
                };
                if let Some(rows) = both {
                    let ordered = |rank: fn(&(PgRow, Option<usize>, Option<usize>)) -> Option<usize>| {
                        let mut ranked: Vec<(usize, &PgRow)> =
                            rows.iter().filter_map(|row| Some((rank(row)?, &row.0))).collect();
                        ranked.sort_by_key(|(r, _)| *r);
                        ranked
                            .into_iter()
                            .map(|(_, row)| get::<Uuid>(row, "id").map(MemoryId::from_uuid))
                            .collect::<Result<Vec<_>, StoreError>>()
                    };
                    let (vids, kids) = (ordered(|r| r.1)?, ordered(|r| r.2)?);
                    let mut found: std::collections::HashMap<Uuid, &PgRow> = std::collections::HashMap::new();
                    for (row, _, _) in &rows {
                        found.insert(get(row, "id")?, row);
                    }
                    return fuse_candidates(q, vids, kids)
                        .into_iter()
                        .map(|(id, score, vr, kr)| hit(found[&id.as_uuid()], score, vr, kr))
                        .collect();
                }
                // No keyword terms, or no vectors yet: whichever half applies.
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
    use super::keyword_tiers;

    #[test]
    fn keyword_tiers_and_every_term_or_every_pair_and_or_any_distinct_term() {
        let (every, pairs, any) = keyword_tiers("Pool-exhausted: pool DB!").unwrap();
        assert_eq!(every, "'db' & 'exhausted' & 'pool'");
        assert_eq!(pairs, "('db' & 'exhausted') | ('db' & 'pool') | ('exhausted' & 'pool')");
        assert_eq!(any, "'db' | 'exhausted' | 'pool'");
        let (every, pairs, _) = keyword_tiers("one two").unwrap();
        assert_eq!((every.as_str(), pairs.as_str()), ("'one' & 'two'", "'one' & 'two'"));
        let long = "a1 a2 a3 a4 a5 a6 a7 a8 a9";
        let (every, pairs, _) = keyword_tiers(long).unwrap();
        assert_eq!(pairs, every, "beyond PAIR_TERMS terms there is no pair tier");
        assert_eq!(keyword_tiers(" -- !! "), None);
    }
}
