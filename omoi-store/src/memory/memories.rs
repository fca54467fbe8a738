//! `MemoryStore` for the in-memory adapter: exact cosine similarity and BM25 keyword ranking,
//! fused by the shared RRF.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use omoi_core::memory::{Citation, cosine, fuse_candidates, merge_citations, terms};
use omoi_core::ports::memory_store::{check_new_embedding, query_embedding};
use omoi_core::{Event, Memory, MemoryHit, MemoryId, MemoryQuery, MemoryStore, NewMemory, SearchMode, StoreError};

use super::InMemoryStore;

#[derive(Default)]
pub(super) struct Memories {
    /// Embedding dimension (fixed by config, or by the first memory stored).
    pub(super) dims: Option<usize>,
    rows: Vec<Memory>,
    index: HashMap<MemoryId, usize>,
    /// Terms of each row, for keyword search.
    terms: Vec<Vec<String>>,
}

const K1: f64 = 1.2;
const B: f64 = 0.75;

impl Memories {
    /// Rows passing the kind filter, best cosine first (ties by id), at most `n`.
    fn vector(&self, rows: &[usize], q: &[f32], n: usize) -> Vec<(usize, f64)> {
        let mut scored: Vec<(usize, f64)> = rows.iter().map(|&i| (i, cosine(&self.rows[i].embedding, q))).collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| self.rows[a.0].id.cmp(&self.rows[b.0].id)));
        scored.truncate(n);
        scored
    }

    /// Okapi BM25 over rows containing at least one query term, best first, at most `n`.
    fn keyword(&self, rows: &[usize], text: &str, n: usize) -> Vec<(usize, f64)> {
        let query: HashSet<String> = terms(text).into_iter().collect();
        if query.is_empty() || rows.is_empty() {
            return Vec::new();
        }
        let total = rows.len() as f64;
        let avg_len = rows.iter().map(|&i| self.terms[i].len()).sum::<usize>() as f64 / total;
        let df: HashMap<&str, usize> = query
            .iter()
            .map(|t| (t.as_str(), rows.iter().filter(|&&i| self.terms[i].iter().any(|x| x == t)).count()))
            .collect();
        let mut scored: Vec<(usize, f64)> = rows
            .iter()
            .filter_map(|&i| {
                let doc = &self.terms[i];
                let len = doc.len() as f64;
                let score: f64 = query
                    .iter()
                    .map(|t| {
                        let tf = doc.iter().filter(|x| *x == t).count() as f64;
                        if tf == 0.0 {
                            return 0.0;
                        }
                        let n_t = df[t.as_str()] as f64;
                        let idf = (1.0 + (total - n_t + 0.5) / (n_t + 0.5)).ln();
                        idf * tf * (K1 + 1.0) / (tf + K1 * (1.0 - B + B * len / avg_len.max(1.0)))
                    })
                    .sum();
                (score > 0.0).then_some((i, score))
            })
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| self.rows[a.0].id.cmp(&self.rows[b.0].id)));
        scored.truncate(n);
        scored
    }
}

#[async_trait]
impl MemoryStore for InMemoryStore {
    async fn put_memory(&self, new: NewMemory) -> Result<Memory, StoreError> {
        self.write(|s, now| {
            let m = &mut s.memories;
            check_new_embedding(m.dims, &new.embedding)?;
            if m.index.contains_key(&new.id) {
                return Err(StoreError::AlreadyExists { kind: "memory", id: new.id.to_string() });
            }
            m.dims.get_or_insert(new.embedding.len());
            let memory = Memory::stored(new, now);
            m.index.insert(memory.id, m.rows.len());
            m.terms.push(terms(&memory.text));
            m.rows.push(memory.clone());
            s.emit(now, Event::MemoryStored { memory_id: memory.id });
            Ok(memory)
        })
    }

    async fn get_memory(&self, id: MemoryId) -> Result<Memory, StoreError> {
        self.read(|s, _| {
            let m = &s.memories;
            m.index.get(&id).map(|&i| m.rows[i].clone()).ok_or_else(|| StoreError::not_found("memory", id))
        })
    }

    async fn memory_dimensions(&self) -> Result<Option<usize>, StoreError> {
        self.read(|s, _| Ok(s.memories.dims))
    }

    async fn reinforce_memory(&self, id: MemoryId, citations: Vec<Citation>) -> Result<Memory, StoreError> {
        self.write(|s, now| {
            let m = &mut s.memories;
            let i = *m.index.get(&id).ok_or_else(|| StoreError::not_found("memory", id))?;
            let row = &mut m.rows[i];
            row.reinforcements = row.reinforcements.saturating_add(1);
            row.refreshed_at = now;
            row.citations = merge_citations(&row.citations, &citations);
            let memory = row.clone();
            s.emit(now, Event::MemoryReinforced { memory_id: id, reinforcements: memory.reinforcements });
            Ok(memory)
        })
    }

    async fn record_memory_uses(&self, ids: &[MemoryId]) -> Result<(), StoreError> {
        let ids: HashSet<MemoryId> = ids.iter().copied().collect();
        self.write(|s, now| {
            let m = &mut s.memories;
            for id in &ids {
                if let Some(&i) = m.index.get(id) {
                    m.rows[i].uses = m.rows[i].uses.saturating_add(1);
                    m.rows[i].last_used_at = Some(now);
                }
            }
            Ok(())
        })
    }

    async fn search_memories(&self, q: &MemoryQuery) -> Result<Vec<MemoryHit>, StoreError> {
        self.read(|s, _| {
            let m = &s.memories;
            let embedding = query_embedding(q, m.dims)?;
            let rows: Vec<usize> =
                (0..m.rows.len()).filter(|&i| q.kinds.is_empty() || q.kinds.contains(&m.rows[i].kind)).collect();
            let n = q.candidates();
            let hit = |i: usize, score: f64, vr: Option<usize>, kr: Option<usize>| MemoryHit {
                memory: m.rows[i].clone(),
                score,
                vector_rank: vr,
                keyword_rank: kr,
            };
            Ok(match q.mode {
                SearchMode::Vector => m
                    .vector(&rows, embedding.unwrap_or_default(), n)
                    .into_iter()
                    .enumerate()
                    .map(|(r, (i, s))| hit(i, s, Some(r + 1), None))
                    .collect(),
                SearchMode::Keyword => m
                    .keyword(&rows, &q.text, n)
                    .into_iter()
                    .enumerate()
                    .map(|(r, (i, s))| hit(i, s, None, Some(r + 1)))
                    .collect(),
                SearchMode::Hybrid => {
                    let ids = |v: Vec<(usize, f64)>| v.into_iter().map(|(i, _)| m.rows[i].id).collect::<Vec<_>>();
                    let vector = ids(m.vector(&rows, embedding.unwrap_or_default(), n));
                    let keyword = ids(m.keyword(&rows, &q.text, n));
                    fuse_candidates(q, vector, keyword)
                        .into_iter()
                        .map(|(id, score, vr, kr)| hit(m.index[&id], score, vr, kr))
                        .collect()
                }
            })
        })
    }
}
