//! The `MemoryStore` port: memories found again by hybrid search.

use async_trait::async_trait;

use crate::error::StoreError;
use crate::ids::MemoryId;
use crate::memory::{Memory, MemoryHit, MemoryQuery, NewMemory};

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
}
