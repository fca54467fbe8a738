//! The `MemoryStore` port: memories found again by hybrid search.

use async_trait::async_trait;

use crate::error::StoreError;
use crate::ids::MemoryId;
use crate::memory::{Citation, Memory, MemoryHit, MemoryQuery, NewMemory};
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
    match store.memory_dimensions().await? {
        Some(expected) if expected != embedder.dimensions() => {
            Err(StoreError::DimensionMismatch { expected, got: embedder.dimensions() })
        }
        _ => Ok(()),
    }
}
