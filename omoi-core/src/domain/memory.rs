//! Memories: lessons stored for later tasks, found again by hybrid (vector + keyword) search.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ids::MemoryId;
use crate::rrf::{self, RankedList, RrfParams};
use crate::string_enum;

string_enum! {
    /// What a memory records.
    pub enum MemoryKind: "memory kind" {
        /// How an error was fixed.
        ErrorFix => "error_fix",
        /// Something found about the system.
        Discovery => "discovery",
        /// A decision and its reason.
        Decision => "decision",
        /// A general lesson.
        Learning => "learning",
        /// A pitfall to avoid.
        Warning => "warning",
        /// Facts about the codebase.
        CodebaseKnowledge => "codebase_knowledge",
    }
}

/// Where a memory's knowledge comes from: lines of a file, and a hash of their text when the
/// memory was written. When the file's lines no longer hash the same, the memory is stale.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Citation {
    /// The file, relative to the workspace root.
    pub path: String,
    /// First cited line (1-based).
    pub start_line: u32,
    /// Last cited line (inclusive).
    pub end_line: u32,
    /// Hex SHA-256 of the cited lines, each followed by `\n`.
    pub content_hash: String,
}

/// A memory to store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NewMemory {
    /// Its id.
    pub id: MemoryId,
    /// What it records.
    pub kind: MemoryKind,
    /// The text (searched by keywords).
    pub text: String,
    /// Its embedding (searched by cosine similarity).
    pub embedding: Vec<f32>,
    /// Free-form details.
    pub metadata: Value,
    /// The code it is about.
    #[serde(default)]
    pub citations: Vec<Citation>,
}

impl NewMemory {
    /// A memory of `kind` with `text` and `embedding`.
    pub fn new(kind: MemoryKind, text: impl Into<String>, embedding: Vec<f32>) -> Self {
        Self { id: MemoryId::new(), kind, text: text.into(), embedding, metadata: Value::Null, citations: Vec::new() }
    }

    /// The same memory citing `citations`.
    pub fn with_citations(mut self, citations: Vec<Citation>) -> Self {
        self.citations = citations;
        self
    }
}

/// A stored memory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Memory {
    /// Its id.
    pub id: MemoryId,
    /// What it records.
    pub kind: MemoryKind,
    /// The text.
    pub text: String,
    /// Its embedding.
    pub embedding: Vec<f32>,
    /// Free-form details.
    pub metadata: Value,
    /// The code it is about (the latest citations, after reinforcement).
    pub citations: Vec<Citation>,
    /// How often a near-duplicate was written and merged into it instead.
    pub reinforcements: u32,
    /// How often it was put into an agent's context.
    pub uses: u32,
    /// When it was stored.
    pub created_at: DateTime<Utc>,
    /// When it was last stored again or reinforced (its age for recency ranking).
    pub refreshed_at: DateTime<Utc>,
    /// When it was last put into a context.
    pub last_used_at: Option<DateTime<Utc>>,
}

impl Memory {
    /// `new` as first stored at `now`: never reinforced or used yet.
    pub fn stored(new: NewMemory, now: DateTime<Utc>) -> Self {
        Self {
            id: new.id,
            kind: new.kind,
            text: new.text,
            embedding: new.embedding,
            metadata: new.metadata,
            citations: new.citations,
            reinforcements: 0,
            uses: 0,
            created_at: now,
            refreshed_at: now,
            last_used_at: None,
        }
    }
}

/// Merges reinforcing `fresh` citations into `old` ones: a fresh citation replaces an old one
/// of the same file and overlapping lines; the others are kept (old first).
pub fn merge_citations(old: &[Citation], fresh: &[Citation]) -> Vec<Citation> {
    let overlaps =
        |a: &Citation, b: &Citation| a.path == b.path && a.start_line <= b.end_line && b.start_line <= a.end_line;
    let mut out: Vec<Citation> = old.iter().filter(|o| !fresh.iter().any(|f| overlaps(o, f))).cloned().collect();
    for f in fresh {
        if !out.contains(f) {
            out.push(f.clone());
        }
    }
    out
}

/// Which signals a search uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SearchMode {
    /// Vector and keyword lists fused by weighted RRF.
    #[default]
    Hybrid,
    /// Cosine similarity only.
    Vector,
    /// Keyword relevance only.
    Keyword,
}

/// Weights and RRF parameters for hybrid search.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct HybridParams {
    /// Weight of the vector list (OmoiOS: 0.6).
    pub vector_weight: f64,
    /// Weight of the keyword list (OmoiOS: 0.4).
    pub keyword_weight: f64,
    /// Fusion constant and missing-rank rule.
    pub rrf: RrfParams,
    /// Candidates fetched from each list, as a multiple of the limit (OmoiOS: 2).
    pub candidate_factor: usize,
}

impl Default for HybridParams {
    fn default() -> Self {
        Self { vector_weight: 0.6, keyword_weight: 0.4, rrf: RrfParams::default(), candidate_factor: 2 }
    }
}

/// A search request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MemoryQuery {
    /// Keyword query: a memory matches if it contains any of the terms; more and rarer
    /// matching terms rank higher.
    pub text: String,
    /// Query embedding (required for vector and hybrid search).
    pub embedding: Option<Vec<f32>>,
    /// Results wanted.
    pub limit: usize,
    /// Restrict to these kinds (empty = all).
    pub kinds: Vec<MemoryKind>,
    /// Signals used.
    pub mode: SearchMode,
    /// Fusion parameters for hybrid mode.
    pub hybrid: HybridParams,
}

impl MemoryQuery {
    /// A hybrid query with OmoiOS's defaults (top 5).
    pub fn hybrid(text: impl Into<String>, embedding: Vec<f32>) -> Self {
        Self {
            text: text.into(),
            embedding: Some(embedding),
            limit: 5,
            kinds: Vec::new(),
            mode: SearchMode::Hybrid,
            hybrid: HybridParams::default(),
        }
    }

    /// The same query with another mode.
    pub fn with_mode(mut self, mode: SearchMode) -> Self {
        self.mode = mode;
        self
    }

    /// The same query with another limit.
    pub fn with_limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    /// How many candidates each list should return before fusion.
    pub fn candidates(&self) -> usize {
        match self.mode {
            SearchMode::Hybrid => self.limit.saturating_mul(self.hybrid.candidate_factor.max(1)),
            _ => self.limit,
        }
    }
}

/// One search result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MemoryHit {
    /// The memory.
    pub memory: Memory,
    /// Fused score (hybrid), cosine similarity (vector) or keyword relevance (keyword).
    pub score: f64,
    /// 1-based rank in the vector list, if it was there.
    pub vector_rank: Option<usize>,
    /// 1-based rank in the keyword list, if it was there.
    pub keyword_rank: Option<usize>,
}

/// Fuses an adapter's vector and keyword candidate lists (best first) by the query's weights.
/// Every adapter calls this, so hybrid ranking is identical across backends. Returns
/// `(id, fused score, vector rank, keyword rank)`, best first, at most `query.limit`.
pub fn fuse_candidates(
    query: &MemoryQuery,
    vector: Vec<MemoryId>,
    keyword: Vec<MemoryId>,
) -> Vec<(MemoryId, f64, Option<usize>, Option<usize>)> {
    let lists =
        [RankedList::new(query.hybrid.vector_weight, vector), RankedList::new(query.hybrid.keyword_weight, keyword)];
    rrf::fuse(&lists, &query.hybrid.rrf)
        .into_iter()
        .take(query.limit)
        .map(|f| (f.item, f.score, f.ranks[0], f.ranks[1]))
        .collect()
}

/// Weights of the re-ranking that picks which retrieved memories go into an agent's context
/// (Hephaestus: 0.5 similarity + 0.2 recency + 0.3 kind).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RerankWeights {
    /// Weight of the cosine similarity to the task.
    pub similarity: f64,
    /// Weight of [`recency_score`].
    pub recency: f64,
    /// Weight of [`MemoryKind::rank_weight`].
    pub kind: f64,
    /// Factor applied to the score of a stale memory (its cited code changed).
    pub stale_factor: f64,
}

impl Default for RerankWeights {
    fn default() -> Self {
        Self { similarity: 0.5, recency: 0.2, kind: 0.3, stale_factor: 0.5 }
    }
}

impl MemoryKind {
    /// How much a memory of this kind is worth in a context (Hephaestus's type weights): error
    /// fixes 0.9, learnings 0.8, discoveries 0.6, decisions 0.5, anything else 0.4.
    pub fn rank_weight(self) -> f64 {
        match self {
            MemoryKind::ErrorFix => 0.9,
            MemoryKind::Learning => 0.8,
            MemoryKind::Discovery => 0.6,
            MemoryKind::Decision => 0.5,
            MemoryKind::Warning | MemoryKind::CodebaseKnowledge => 0.4,
        }
    }
}

/// Recency in buckets (Hephaestus): under an hour 1.0, a day 0.9, a week 0.7, 30 days 0.5,
/// older 0.3. A negative age (clock skew) counts as new.
pub fn recency_score(age: chrono::TimeDelta) -> f64 {
    let hours = age.num_minutes() as f64 / 60.0;
    match hours {
        h if h < 1.0 => 1.0,
        h if h < 24.0 => 0.9,
        h if h < 24.0 * 7.0 => 0.7,
        h if h < 24.0 * 30.0 => 0.5,
        _ => 0.3,
    }
}

/// The re-rank score of a memory: the weighted sum of its similarity, recency and kind weight,
/// multiplied by `stale_factor` when its cited code has changed.
pub fn rerank_score(w: &RerankWeights, similarity: f64, age: chrono::TimeDelta, kind: MemoryKind, stale: bool) -> f64 {
    let score = w.similarity * similarity + w.recency * recency_score(age) + w.kind * kind.rank_weight();
    if stale { score * w.stale_factor } else { score }
}

/// Cosine similarity of two vectors; 0 when either is all zeros or their lengths differ.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    if a.len() != b.len() {
        return 0.0;
    }
    let (mut dot, mut na, mut nb) = (0f64, 0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (f64::from(*x), f64::from(*y));
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 { 0.0 } else { dot / (na.sqrt() * nb.sqrt()) }
}

/// Lower-cased alphanumeric terms of `text`, as keyword search sees them.
pub fn terms(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric()).filter(|t| !t.is_empty()).map(str::to_lowercase).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_basics() {
        assert!((cosine(&[1.0, 0.0], &[1.0, 0.0]) - 1.0).abs() < 1e-12);
        assert!(cosine(&[1.0, 0.0], &[0.0, 1.0]).abs() < 1e-12);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 0.0]), 0.0);
        assert_eq!(cosine(&[1.0], &[1.0, 0.0]), 0.0);
    }

    #[test]
    fn recency_buckets_and_kind_weights_follow_hephaestus() {
        let h = chrono::TimeDelta::hours;
        let scores: Vec<f64> = [h(-1), h(0), h(5), h(48), h(24 * 10), h(24 * 40)].map(recency_score).to_vec();
        assert_eq!(scores, vec![1.0, 1.0, 0.9, 0.7, 0.5, 0.3]);
        let w = RerankWeights::default();
        let fix = rerank_score(&w, 0.8, h(0), MemoryKind::ErrorFix, false);
        assert!((fix - (0.5 * 0.8 + 0.2 + 0.3 * 0.9)).abs() < 1e-12);
        assert!((rerank_score(&w, 0.8, h(0), MemoryKind::ErrorFix, true) - fix * 0.5).abs() < 1e-12);
        assert!(fix > rerank_score(&w, 0.8, h(0), MemoryKind::Decision, false));
    }

    #[test]
    fn fresh_citations_replace_overlapping_ones_and_keep_the_rest() {
        let c = |path: &str, a, b, h: &str| Citation {
            path: path.into(),
            start_line: a,
            end_line: b,
            content_hash: h.into(),
        };
        let old = vec![c("a.rs", 1, 5, "x"), c("b.rs", 1, 2, "y")];
        let merged = merge_citations(&old, &[c("a.rs", 4, 9, "z")]);
        assert_eq!(merged, vec![c("b.rs", 1, 2, "y"), c("a.rs", 4, 9, "z")]);
        let merged = merge_citations(&old, &[c("b.rs", 1, 2, "y"), c("c.rs", 7, 7, "w")]);
        assert_eq!(merged, vec![c("a.rs", 1, 5, "x"), c("b.rs", 1, 2, "y"), c("c.rs", 7, 7, "w")]);
    }

    #[test]
    fn terms_split_on_punctuation_and_lowercase() {
        assert_eq!(terms("Pool-exhausted: DB_conn!"), ["pool", "exhausted", "db", "conn"]);
    }

    #[test]
    fn fusion_prefers_items_both_lists_agree_on() {
        let (a, b, c) = (MemoryId::new(), MemoryId::new(), MemoryId::new());
        let q = MemoryQuery::hybrid("x", vec![1.0]);
        let fused = fuse_candidates(&q, vec![b, c, a], vec![a, c]);
        let order: Vec<_> = fused.iter().map(|f| f.0).collect();
        assert_eq!(order, vec![c, a, b]);
        assert_eq!(fused[0].2, Some(2));
        assert_eq!(fused[0].3, Some(2));
    }
}
