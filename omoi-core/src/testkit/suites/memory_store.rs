//! Conformance scenarios for [`MemoryStore`]. Adapters must store 3-dimensional embeddings.

use std::sync::Arc;

use serde_json::json;

use crate::error::StoreError;
use crate::ids::MemoryId;
use crate::memory::{Citation, MemoryHit, MemoryKind, MemoryQuery, NewMemory, SearchMode};
use crate::ports::clock::Clock;
use crate::ports::embedder::HashingEmbedder;
use crate::ports::memory_store::{MemoryStore, check_dimensions};
use crate::testkit::ManualClock;
use crate::testkit::fixtures::memory_fixture;

/// What the memory-store scenarios run against.
#[derive(Clone)]
pub struct Harness {
    /// The store under test.
    pub memory: Arc<dyn MemoryStore>,
    /// The clock the store was built with.
    pub clock: Arc<ManualClock>,
}

impl Harness {
    /// Wraps an adapter.
    pub fn new<S: MemoryStore + 'static>(store: Arc<S>, clock: Arc<ManualClock>) -> Self {
        Self { memory: store, clock }
    }

    /// Stores the fixture; returns the ids of (pool, network, conn, noise) and the query.
    async fn load(&self) -> ([MemoryId; 4], MemoryQuery) {
        let (memories, text, embedding) = memory_fixture();
        let mut ids = [MemoryId::new(); 4];
        for (i, m) in memories.into_iter().enumerate() {
            ids[i] = self.memory.put_memory(m).await.expect("put_memory").id;
        }
        (ids, MemoryQuery::hybrid(text, embedding))
    }

    async fn search(&self, q: &MemoryQuery) -> Vec<MemoryHit> {
        self.memory.search_memories(q).await.expect("search_memories")
    }
}

fn ids(hits: &[MemoryHit]) -> Vec<MemoryId> {
    hits.iter().map(|h| h.memory.id).collect()
}

fn descending(hits: &[MemoryHit]) -> bool {
    hits.windows(2).all(|w| w[0].score >= w[1].score)
}

/// A stored memory comes back whole.
pub async fn put_and_get_round_trip(h: Harness) {
    let mut m = NewMemory::new(MemoryKind::ErrorFix, "set PGOPTIONS to fix the timeout", vec![0.25, -0.5, 1.0])
        .with_citations(vec![citation("src/db.rs", 3, 9, "abc")]);
    m.metadata = json!({"task": "TSK-001", "tags": ["pg"]});
    let stored = h.memory.put_memory(m.clone()).await.unwrap();
    let got = h.memory.get_memory(m.id).await.unwrap();
    assert_eq!(got, stored);
    assert_eq!(
        (got.id, got.kind, got.text.as_str(), got.embedding.clone(), got.metadata.clone()),
        (m.id, m.kind, m.text.as_str(), m.embedding.clone(), m.metadata.clone())
    );
    assert_eq!(got.citations, m.citations);
    assert_eq!((got.reinforcements, got.uses, got.last_used_at), (0, 0, None));
    assert_eq!(got.created_at, h.clock.now());
    assert_eq!(got.refreshed_at, got.created_at);
    assert!(matches!(h.memory.get_memory(MemoryId::new()).await, Err(StoreError::NotFound { kind: "memory", .. })));
}

fn citation(path: &str, start_line: u32, end_line: u32, hash: &str) -> Citation {
    Citation { path: path.into(), start_line, end_line, content_hash: hash.into() }
}

/// Reinforcing a memory counts it, refreshes its age (not its creation time), and merges the
/// fresh citations in: an overlapping citation of the same file is replaced, others are kept.
pub async fn reinforcement_counts_refreshes_and_merges_citations(h: Harness) {
    let m = NewMemory::new(MemoryKind::ErrorFix, "pin the lockfile", vec![1.0, 0.0, 0.0])
        .with_citations(vec![citation("Cargo.toml", 1, 4, "old"), citation("src/a.rs", 10, 12, "a")]);
    let stored = h.memory.put_memory(m.clone()).await.unwrap();
    h.clock.advance(std::time::Duration::from_secs(3600));
    let fresh = vec![citation("Cargo.toml", 3, 6, "new")];
    let r = h.memory.reinforce_memory(m.id, fresh).await.unwrap();
    assert_eq!(r.reinforcements, 1);
    assert_eq!(r.created_at, stored.created_at);
    assert_eq!(r.refreshed_at, h.clock.now());
    assert_eq!(r.citations, vec![citation("src/a.rs", 10, 12, "a"), citation("Cargo.toml", 3, 6, "new")]);
    assert_eq!(h.memory.get_memory(m.id).await.unwrap(), r);
    let again = h.memory.reinforce_memory(m.id, Vec::new()).await.unwrap();
    assert_eq!((again.reinforcements, again.citations.len()), (2, 2));
    assert!(matches!(
        h.memory.reinforce_memory(MemoryId::new(), Vec::new()).await,
        Err(StoreError::NotFound { kind: "memory", .. })
    ));
}

/// Each call counts one use of each memory named (repeats and unknown ids aside) and stamps it.
pub async fn uses_are_counted_once_per_call(h: Harness) {
    let ([pool, network, conn, _noise], _) = h.load().await;
    h.clock.advance(std::time::Duration::from_secs(60));
    h.memory.record_memory_uses(&[pool, pool, network, MemoryId::new()]).await.unwrap();
    h.clock.advance(std::time::Duration::from_secs(60));
    h.memory.record_memory_uses(&[pool]).await.unwrap();
    h.memory.record_memory_uses(&[]).await.unwrap();
    let (p, n, c) = (
        h.memory.get_memory(pool).await.unwrap(),
        h.memory.get_memory(network).await.unwrap(),
        h.memory.get_memory(conn).await.unwrap(),
    );
    assert_eq!((p.uses, n.uses, c.uses), (2, 1, 0));
    assert_eq!(p.last_used_at, Some(h.clock.now()));
    assert_eq!(n.last_used_at, Some(h.clock.now() - chrono::TimeDelta::seconds(60)));
    assert_eq!(c.last_used_at, None);
}

/// The store reports its dimension once fixed, and an embedder of another dimension is a typed
/// error before anything is written.
pub async fn embedder_dimensions_are_checked_against_the_store(h: Harness) {
    h.load().await;
    assert_eq!(h.memory.memory_dimensions().await.unwrap(), Some(3));
    check_dimensions(h.memory.as_ref(), &HashingEmbedder::new(3)).await.unwrap();
    assert!(matches!(
        check_dimensions(h.memory.as_ref(), &HashingEmbedder::new(384)).await,
        Err(StoreError::DimensionMismatch { expected: 3, got: 384 })
    ));
}

/// Where the vector list and the keyword list disagree, hybrid search puts first the memory
/// both rank well, with OmoiOS's RRF (k 60, weights 0.6/0.4, missing at len + 10).
pub async fn hybrid_search_ranks_agreement_first_where_vector_and_keyword_disagree(h: Harness) {
    let ([pool, network, conn, _noise], q) = h.load().await;
    let hits = h.search(&q.clone().with_limit(3)).await;
    assert_eq!(ids(&hits), vec![conn, pool, network]);
    assert_eq!((hits[0].vector_rank, hits[0].keyword_rank), (Some(2), Some(2)));
    assert_eq!((hits[1].vector_rank, hits[1].keyword_rank), (Some(3), Some(1)));
    assert_eq!((hits[2].vector_rank, hits[2].keyword_rank), (Some(1), None));
    assert!(descending(&hits));
    let expected = 0.6 / 62.0 + 0.4 / 62.0;
    assert!((hits[0].score - expected).abs() < 1e-9, "{} vs {expected}", hits[0].score);
}

/// Vector mode ranks by cosine similarity alone; keyword mode returns only matching memories.
pub async fn vector_and_keyword_modes_rank_by_one_signal(h: Harness) {
    let ([pool, network, conn, noise], q) = h.load().await;
    let vector = h.search(&q.clone().with_mode(SearchMode::Vector).with_limit(10)).await;
    assert_eq!(ids(&vector), vec![network, conn, pool, noise]);
    assert!(descending(&vector));
    assert!((vector[0].score - 0.95 / (0.95f64 * 0.95 + 0.31 * 0.31).sqrt()).abs() < 1e-3);
    let keyword = h.search(&q.clone().with_mode(SearchMode::Keyword).with_limit(10)).await;
    assert_eq!(ids(&keyword), vec![pool, conn]);
    assert!(descending(&keyword));
    assert!(keyword.iter().all(|k| k.score > 0.0));
}

/// Kind filters and limits apply to every mode.
pub async fn kind_filter_and_limit_apply(h: Harness) {
    let ([pool, _network, conn, _noise], mut q) = h.load().await;
    q.kinds = vec![MemoryKind::Warning, MemoryKind::ErrorFix];
    assert_eq!(ids(&h.search(&q).await), vec![conn, pool]);
    assert_eq!(ids(&h.search(&q.clone().with_limit(1)).await), vec![conn]);
    q.kinds = vec![MemoryKind::CodebaseKnowledge];
    assert!(h.search(&q).await.is_empty());
}

/// An embedding of the wrong dimension is refused on write and on search.
pub async fn wrong_dimension_is_rejected(h: Harness) {
    h.load().await;
    let bad = NewMemory::new(MemoryKind::Learning, "two dims", vec![1.0, 0.0]);
    assert!(matches!(h.memory.put_memory(bad).await, Err(StoreError::DimensionMismatch { expected: 3, got: 2 })));
    let q = MemoryQuery::hybrid("pool", vec![1.0, 0.0]);
    assert!(matches!(h.memory.search_memories(&q).await, Err(StoreError::DimensionMismatch { expected: 3, got: 2 })));
    let mut no_vec = MemoryQuery::hybrid("pool", vec![]);
    no_vec.embedding = None;
    assert!(matches!(h.memory.search_memories(&no_vec).await, Err(StoreError::InvalidInput(_))));
}

/// Runs the whole [`MemoryStore`](crate::MemoryStore) suite against an adapter. The factory
/// yields `Arc<S>` with `S: MemoryStore`, storing 3-dimensional embeddings.
#[macro_export]
macro_rules! memory_store_suite {
    ($factory:expr) => {
        $crate::__omoi_suite!(
            memory_store,
            $factory,
            [
                put_and_get_round_trip,
                hybrid_search_ranks_agreement_first_where_vector_and_keyword_disagree,
                vector_and_keyword_modes_rank_by_one_signal,
                kind_filter_and_limit_apply,
                wrong_dimension_is_rejected,
                reinforcement_counts_refreshes_and_merges_citations,
                uses_are_counted_once_per_call,
                embedder_dimensions_are_checked_against_the_store,
            ]
        );
    };
}
