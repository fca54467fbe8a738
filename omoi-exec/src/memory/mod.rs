//! Memory that agents use: the context every task starts with, and the lessons written back
//! after it ends.
//!
//! - **Context** ([`MemoryService::task_context`]): the spec requirements the task traces to
//!   (through its ticket) and the spec's design, revision feedback from the task's input
//!   (`revision_feedback` or `feedback`), and the top `memory.top_k` memories: a hybrid search
//!   over the task's title, description and acceptance criteria, candidates below
//!   `memory.similarity_threshold` dropped unless they matched keywords, re-ranked by
//!   similarity, recency and kind with `memory.rerank` (a memory whose cited lines changed is
//!   flagged stale and its score multiplied by `stale_factor`), then packed into
//!   `memory.context_tokens` most relevant first, error fixes shown first. Each memory included
//!   counts one use. [`TaskContext`] says what was included; the executor records it in the
//!   trajectory as the `context` step.
//! - **Learning** ([`MemoryService::learn`]): [`lessons`] from the task's trajectory (an
//!   `error_fix` for each command that failed and later passed, a `learning`/`decision` from
//!   the finish summary, `codebase_knowledge` from exploration) with citations (path, lines,
//!   SHA-256 of the lines). A lesson whose embedding has cosine similarity of at least
//!   `memory.dedup_similarity` with a memory of the same kind reinforces that memory instead of
//!   adding one.
//!
//! Memory is an aid, not a dependency: the executor logs a memory failure and carries on.

mod citation;
mod context;
pub mod hooks;
mod learn;
mod tap;

use std::sync::Arc;

use omoi_core::config::MemoryConfig;
use omoi_core::memory::cosine;
use omoi_core::ports::memory_store::check_dimensions;
use omoi_core::{
    Clock, EmbedError, Embedder, MemoryId, MemoryQuery, MemoryStore, NewMemory, SearchMode, SpecStore, StoreError, Task,
};
use serde_json::json;
use tracing::{Instrument, debug, info_span};

pub use citation::{DirFiles, SandboxFiles, SourceFiles, cite, cite_file, cite_snippet, hash_lines, is_stale};
pub use context::{IncludedMemory, TaskContext, estimate_tokens};
pub use learn::{Lesson, lessons};
pub use tap::{Step, TrajectoryTap};

/// A memory operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MemoryError {
    /// The embedder failed.
    #[error("embedding failed: {0}")]
    Embed(#[from] EmbedError),
    /// The memory or spec store failed (including a dimension mismatch with the embedder).
    #[error("memory store: {0}")]
    Store(#[from] StoreError),
}

/// The memories section of a prompt (empty without memories).
fn memory_section(ctx: &TaskContext) -> String {
    if ctx.memories.is_empty() {
        return String::new();
    }
    let mut text = String::from("\n## Memories from earlier tasks (most relevant first; error fixes on top)\n");
    for m in &ctx.memories {
        text.push_str(&context::render_memory(m));
    }
    text
}

/// The metadata of memories learned from `task`.
pub fn task_metadata(task: &Task) -> serde_json::Value {
    json!({"task_id": task.id, "task": task.links.local_id, "title": task.def.title, "mode": task.def.mode})
}

/// What [`MemoryService::learn`] wrote.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Learned {
    /// New memories.
    pub stored: Vec<MemoryId>,
    /// Existing memories reinforced by a near-duplicate.
    pub reinforced: Vec<MemoryId>,
}

/// Reads and writes the memories of tasks. Cheap to clone.
#[derive(Clone)]
pub struct MemoryService {
    store: Arc<dyn MemoryStore>,
    embedder: Arc<dyn Embedder>,
    specs: Option<Arc<dyn SpecStore>>,
    clock: Arc<dyn Clock>,
    config: MemoryConfig,
}

impl std::fmt::Debug for MemoryService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryService")
            .field("dimensions", &self.embedder.dimensions())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl MemoryService {
    /// A service over `store` with `embedder`, after checking that the embedder's dimension is
    /// the store's ([`StoreError::DimensionMismatch`] otherwise).
    pub async fn new(
        store: Arc<dyn MemoryStore>,
        embedder: Arc<dyn Embedder>,
        clock: Arc<dyn Clock>,
        config: MemoryConfig,
    ) -> Result<Self, MemoryError> {
        check_dimensions(store.as_ref(), embedder.as_ref()).await?;
        Ok(Self { store, embedder, specs: None, clock, config })
    }

    /// Reads the spec and ticket a task traces to from `specs`.
    pub fn with_specs(mut self, specs: Arc<dyn SpecStore>) -> Self {
        self.specs = Some(specs);
        self
    }

    /// The settings in use.
    pub fn config(&self) -> &MemoryConfig {
        &self.config
    }

    async fn embed_one(&self, text: &str) -> Result<Vec<f32>, MemoryError> {
        let mut v = self.embedder.embed(&[text.to_owned()]).await?;
        v.pop().ok_or_else(|| MemoryError::Embed(EmbedError::Backend("the embedder returned no vector".into())))
    }

    /// The context of `task`, checking citations against `files`; counts one use of each
    /// memory included.
    pub async fn task_context(&self, task: &Task, files: &dyn SourceFiles) -> Result<TaskContext, MemoryError> {
        let span = info_span!("memory_context", task = %task.id, memories = tracing::field::Empty);
        async {
            let mut ctx = TaskContext::default();
            let mut text = String::new();
            if let (Some(specs), Some(spec_id)) = (&self.specs, task.links.spec_id) {
                let spec = specs.get_spec(spec_id).await?;
                let ticket = match task.links.ticket_id {
                    Some(t) => Some(specs.get_ticket(t).await?),
                    None => None,
                };
                let (section, requirements, design) = context::spec_section(&spec, ticket.as_ref());
                text.push_str(&section);
                ctx.requirements = requirements;
                ctx.design = design;
            }
            ctx.feedback = context::feedback(&task.def);
            if !ctx.feedback.is_empty() {
                text.push_str("\n## Revision feedback (address every point)\n");
                for f in &ctx.feedback {
                    text.push_str(&format!("- {f}\n"));
                }
            }
            let query = std::iter::once(task.def.title.as_str())
                .chain(std::iter::once(task.def.description.as_str()))
                .chain(task.def.acceptance_criteria.iter().map(String::as_str))
                .collect::<Vec<_>>()
                .join("\n");
            self.add_memories(&query, files, &mut ctx).await?;
            text.push_str(&memory_section(&ctx));
            ctx.text = text;
            tracing::Span::current().record("memories", ctx.memories.len());
            Ok(ctx)
        }
        .instrument(span)
        .await
    }

    /// A context of the memories relevant to `query` alone (for work that is not a task, such
    /// as a spec phase); counts one use of each memory included.
    pub async fn query_context(&self, query: &str, files: &dyn SourceFiles) -> Result<TaskContext, MemoryError> {
        let mut ctx = TaskContext::default();
        self.add_memories(query, files, &mut ctx).await?;
        ctx.text = memory_section(&ctx);
        Ok(ctx)
    }

    /// Retrieves, re-ranks and packs memories relevant to `query` into `ctx`.
    async fn add_memories(
        &self,
        query: &str,
        files: &dyn SourceFiles,
        ctx: &mut TaskContext,
    ) -> Result<(), MemoryError> {
        let c = &self.config;
        if c.top_k == 0 || query.trim().is_empty() {
            return Ok(());
        }
        let embedding = self.embed_one(query).await?;
        let mut q = MemoryQuery::hybrid(query, embedding.clone()).with_limit(c.top_k.saturating_mul(4));
        q.hybrid = c.hybrid;
        let hits = self.store.search_memories(&q).await?;
        let now = self.clock.now();
        let mut candidates = Vec::with_capacity(hits.len());
        for hit in hits {
            let similarity = cosine(&embedding, &hit.memory.embedding);
            if similarity < c.similarity_threshold && hit.keyword_rank.is_none() {
                continue;
            }
            let m = hit.memory;
            let stale = is_stale(&m.citations, files).await;
            candidates.push(context::Candidate {
                age: now - m.refreshed_at,
                memory: IncludedMemory {
                    id: m.id,
                    kind: m.kind,
                    text: m.text,
                    citations: m.citations,
                    similarity,
                    score: 0.0,
                    stale,
                },
            });
        }
        let (kept, left_out, used) = context::select(candidates, &c.rerank, c.top_k, c.context_tokens);
        let ids: Vec<MemoryId> = kept.iter().map(|m| m.id).collect();
        self.store.record_memory_uses(&ids).await?;
        ctx.memories = kept;
        ctx.left_out = left_out;
        ctx.memory_tokens = used;
        Ok(())
    }

    /// Writes `lessons`: each is embedded, and reinforces the most similar memory of its kind
    /// when their cosine similarity is at least `dedup_similarity`, else is stored with
    /// `metadata` (where it came from).
    pub async fn learn(&self, lessons: Vec<Lesson>, metadata: serde_json::Value) -> Result<Learned, MemoryError> {
        let span = info_span!("memory_learn", lessons = lessons.len());
        async {
            let mut out = Learned::default();
            if lessons.is_empty() {
                return Ok(out);
            }
            let texts: Vec<String> = lessons.iter().map(|l| l.text.clone()).collect();
            let vectors = self.embedder.embed(&texts).await?;
            for (lesson, embedding) in lessons.into_iter().zip(vectors) {
                let mut q = MemoryQuery::hybrid(lesson.text.as_str(), embedding.clone())
                    .with_mode(SearchMode::Vector)
                    .with_limit(1);
                q.kinds = vec![lesson.kind];
                let nearest = self.store.search_memories(&q).await?.into_iter().next();
                match nearest.filter(|h| h.score >= self.config.dedup_similarity) {
                    Some(hit) => {
                        debug!(memory = %hit.memory.id, similarity = hit.score, "near-duplicate: reinforcing");
                        self.store.reinforce_memory(hit.memory.id, lesson.citations).await?;
                        out.reinforced.push(hit.memory.id);
                    }
                    None => {
                        let mut m =
                            NewMemory::new(lesson.kind, lesson.text, embedding).with_citations(lesson.citations);
                        m.metadata = metadata.clone();
                        out.stored.push(self.store.put_memory(m).await?.id);
                    }
                }
            }
            Ok(out)
        }
        .instrument(span)
        .await
    }
}
