//! The `MemoryStore` port: memories found again by hybrid search.

use async_trait::async_trait;

use crate::error::StoreError;
use crate::ids::MemoryId;
use crate::memory::{Citation, Memory, MemoryHit, MemoryQuery, NewMemory, SearchMode};
use crate::ports::embedder::Embedder;

/// Storage and hybrid (vector + keyword, fused by RRF) search of memories.
#[async_trait]
pub trait MemoryStore: Send + Sync {
    /// Stores a memory. Embeddings must all have the store's dimension.
    async fn put_memory(&self, memory: NewMemory) -> Result<Memory, StoreError>;

    /// One memory.
    async fn get_memory(&self, id: MemoryId) -> Result<Memory, StoreError>;

    /// Searches by `query.mode`: cosine similarity, keyword relevance (a memory matches if it
    /// contains any query term), or both fused with [`fuse_candidates`](crate::memory::fuse_candidates).
    async fn search_memories(&self, query: &MemoryQuery) -> Result<Vec<MemoryHit>, StoreError>;

    /// The embedding dimension every memory must have, once fixed (by the store's
    /// configuration or by the first memory stored); `None` while any dimension is accepted.
    async fn memory_dimensions(&self) -> Result<Option<usize>, StoreError>;

    /// Merges a near-duplicate into memory `id` instead of storing it: one more reinforcement,
    /// `refreshed_at` set to now, and `citations` merged in with
    /// [`merge_citations`](crate::memory::merge_citations). Emits `memory.reinforced`.
    async fn reinforce_memory(&self, id: MemoryId, citations: Vec<Citation>) -> Result<Memory, StoreError>;

    /// Counts one use of each memory in `ids` (put into an agent's context), setting
    /// `last_used_at` to now. Ids of no memory are ignored; a repeated id counts once.
    async fn record_memory_uses(&self, ids: &[MemoryId]) -> Result<(), StoreError>;
}

/// Checks that `embedder` produces vectors of the store's dimension, so a mismatch is found
/// before anything is written: [`StoreError::DimensionMismatch`] (`expected` is the store's).
pub async fn check_dimensions(store: &dyn MemoryStore, embedder: &dyn Embedder) -> Result<(), StoreError> {
    check_dimension(store.memory_dimensions().await?, embedder.dimensions())
}

/// The checks every [`MemoryStore`] adapter makes, so they refuse the same input the same way.
///
/// A vector of `got` dimensions against the store's fixed dimension (`expected`; `None` while
/// any is accepted): [`StoreError::DimensionMismatch`] when they differ.
pub fn check_dimension(expected: Option<usize>, got: usize) -> Result<(), StoreError> {
    match expected {
        Some(expected) if expected != got => Err(StoreError::DimensionMismatch { expected, got }),
        _ => Ok(()),
    }
}

/// Refuses a dimension configured for a store (builder or config) that no embedding can have.
pub fn check_configured_dimension(dims: usize) -> Result<(), StoreError> {
    if dims == 0 {
        return Err(StoreError::InvalidInput("embedding dimension must be at least 1".into()));
    }
    Ok(())
}

/// Checks the embedding of a memory to store: not empty (`InvalidInput`), and of the store's
/// dimension ([`check_dimension`]) once one is fixed.
pub fn check_new_embedding(expected: Option<usize>, embedding: &[f32]) -> Result<(), StoreError> {
    if embedding.is_empty() {
        return Err(StoreError::InvalidInput("embedding is empty".into()));
    }
    check_dimension(expected, embedding.len())
}

/// The query embedding a search uses: `None` for a keyword search; for a vector or hybrid
/// search the query's embedding, which must be given (`InvalidInput`) and of the store's
/// dimension ([`check_dimension`]).
pub fn query_embedding(query: &MemoryQuery, expected: Option<usize>) -> Result<Option<&[f32]>, StoreError> {
    match (query.mode, &query.embedding) {
        (SearchMode::Keyword, _) => Ok(None),
        (_, Some(e)) => {
            check_dimension(expected, e.len())?;
            Ok(Some(e.as_slice()))
        }
        (mode, None) => Err(StoreError::InvalidInput(format!("{mode:?} search needs a query embedding"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embeddings_are_checked_against_the_fixed_dimension() {
        assert!(check_dimension(None, 7).is_ok());
        assert!(check_dimension(Some(3), 3).is_ok());
        assert!(matches!(check_dimension(Some(3), 2), Err(StoreError::DimensionMismatch { expected: 3, got: 2 })));
        assert!(matches!(check_new_embedding(None, &[]), Err(StoreError::InvalidInput(_))));
        assert!(matches!(check_new_embedding(Some(3), &[1.0]), Err(StoreError::DimensionMismatch { .. })));
        assert!(check_new_embedding(Some(1), &[1.0]).is_ok());
        assert!(matches!(check_configured_dimension(0), Err(StoreError::InvalidInput(_))));
        assert!(check_configured_dimension(384).is_ok());
    }

    #[test]
    fn a_search_needs_an_embedding_of_the_store_dimension_unless_it_is_by_keyword() {
        let keyword =
            MemoryQuery { embedding: None, ..MemoryQuery::hybrid("x", vec![]) }.with_mode(SearchMode::Keyword);
        assert_eq!(query_embedding(&keyword, Some(3)).unwrap(), None);
        let hybrid = MemoryQuery { embedding: None, ..MemoryQuery::hybrid("x", vec![]) };
        assert!(matches!(query_embedding(&hybrid, Some(3)), Err(StoreError::InvalidInput(m)) if m.contains("Hybrid")));
        let vector = MemoryQuery::hybrid("x", vec![1.0, 0.0]).with_mode(SearchMode::Vector);
        assert_eq!(query_embedding(&vector, None).unwrap(), Some(&[1.0, 0.0][..]));
        assert!(matches!(query_embedding(&vector, Some(3)), Err(StoreError::DimensionMismatch { .. })));
    }
}
