//! `DiscoveryService`: semantic dedup in front of the store's one atomic operation.

use std::collections::HashMap;
use std::sync::Arc;

use omoi_core::branching::{BranchLimits, default_branch};
use omoi_core::config::DiscoveryConfig;
use omoi_core::{
    DiscoveryFilter, DiscoveryReport, DiscoveryStatus, DiscoveryStore, DuplicateOf, EmbedError, Embedder, NewDiscovery,
    NewTask, RecordOutcome, StoreError, Task, TaskFilter, TaskState, TaskStore,
};
use parking_lot::Mutex;
use tracing::{Instrument, info, info_span, warn};

/// Why a report could not be handled (nothing was recorded).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// The store failed or refused the input (an unknown source, an invalid report, …).
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl DiscoveryError {
    /// Whether retrying later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            DiscoveryError::Store(e) => e.is_retryable(),
        }
    }
}

/// What happened to a report.
#[derive(Debug, Clone, PartialEq)]
pub struct Reported {
    /// The store's decision.
    pub outcome: RecordOutcome,
    /// The similarity of the semantic duplicate, when one was found.
    pub similarity: Option<f64>,
    /// Why semantic dedup was skipped (no embedder, or it failed), if it was.
    pub semantic_skipped: Option<String>,
}

impl Reported {
    /// One line for the model that reported it (and for progress output): `branched as
    /// TSK-004.1`, `duplicate of discovery … (covered by …)`, `refused: source_cap: …`.
    pub fn message(&self) -> String {
        match &self.outcome {
            RecordOutcome::Branched { discovery, local_ids, held, requeued, .. } => {
                let mut s = format!("discovery {discovery} branched as {}", local_ids.join(", "));
                if *requeued {
                    s.push_str(
                        " (blocking: this task is re-queued behind it and runs again once it completes; stop work \
                         on it now)",
                    );
                } else if !held.is_empty() {
                    s.push_str(&format!(" (blocking: {} dependent task(s) wait for it)", held.len()));
                }
                s
            }
            RecordOutcome::Duplicate { discovery, of, covered_by } => {
                let of = match of {
                    DuplicateOf::Discovery(d) => format!("discovery {d}"),
                    DuplicateOf::Task(t) => format!("task {t}"),
                };
                let sim = self.similarity.map(|s| format!(", similarity {s:.2}")).unwrap_or_default();
                let covered: Vec<String> = covered_by.iter().map(ToString::to_string).collect();
                format!("discovery {discovery} is a duplicate of {of}{sim}; covered by {}", covered.join(", "))
            }
            RecordOutcome::Refused { discovery, refusal } => {
                format!("discovery {discovery} recorded but refused: {refusal}")
            }
        }
    }
}

/// Records discoveries and branches the task graph, deduplicated and bounded.
///
/// Exact dedup, the limits and the branch itself are decided by the store in one transaction
/// ([`DiscoveryStore::record_discovery`]); before that the service looks for a *semantic*
/// duplicate through an [`Embedder`]: an open discovery, or an unfinished task, of the same spec
/// and phase whose text has a cosine similarity of at least `discovery.dedup_similarity`.
#[derive(Clone)]
pub struct DiscoveryService {
    store: Arc<dyn DiscoveryStore>,
    tasks: Arc<dyn TaskStore>,
    embedder: Option<Arc<dyn Embedder>>,
    threshold: f64,
    limits: BranchLimits,
    /// Embeddings by text, so candidates are embedded once.
    cache: Arc<Mutex<HashMap<String, Vec<f32>>>>,
}

impl std::fmt::Debug for DiscoveryService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiscoveryService")
            .field("threshold", &self.threshold)
            .field("limits", &self.limits)
            .field("semantic", &self.embedder.is_some())
            .finish()
    }
}

/// Most cached embeddings kept (the cache is cleared when it grows past this).
const CACHE_LIMIT: usize = 4096;

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut dot, mut na, mut nb) = (0f64, 0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        dot += f64::from(*x) * f64::from(*y);
        na += f64::from(*x) * f64::from(*x);
        nb += f64::from(*y) * f64::from(*y);
    }
    if na == 0.0 || nb == 0.0 { 0.0 } else { dot / (na.sqrt() * nb.sqrt()) }
}

impl DiscoveryService {
    /// A service over `store` (which must hold `tasks`), with the limits and threshold of the
    /// `discovery` config section, without semantic dedup until [`Self::with_embedder`].
    pub fn new(store: Arc<dyn DiscoveryStore>, tasks: Arc<dyn TaskStore>, config: &DiscoveryConfig) -> Self {
        Self {
            store,
            tasks,
            embedder: None,
            threshold: config.dedup_similarity,
            limits: BranchLimits::from(config),
            cache: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Enables semantic dedup through `embedder`.
    pub fn with_embedder(mut self, embedder: Arc<dyn Embedder>) -> Self {
        self.embedder = Some(embedder);
        self
    }

    /// The limits enforced.
    pub fn limits(&self) -> BranchLimits {
        self.limits
    }

    /// The task store.
    pub fn tasks(&self) -> &Arc<dyn TaskStore> {
        &self.tasks
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn DiscoveryStore> {
        &self.store
    }

    /// Reports `d` with the default branch ([`default_branch`]: one task in the source's phase).
    pub async fn report(&self, d: NewDiscovery) -> Result<Reported, DiscoveryError> {
        let source = self.tasks.get_task(d.source_task).await?;
        let branch = default_branch(&source, &d);
        self.report_with_branch(d, branch).await
    }

    /// Reports `d` with its own branch (one or more tasks, any phase and mode).
    pub async fn report_with_branch(&self, d: NewDiscovery, branch: Vec<NewTask>) -> Result<Reported, DiscoveryError> {
        let span = info_span!("discovery", id = %d.id, kind = %d.kind, source = %d.source_task);
        async move {
            d.validate().map_err(StoreError::InvalidInput)?;
            let source = self.tasks.get_task(d.source_task).await?;
            let phase = branch.first().map_or(source.def.phase, |t| t.def.phase);
            let (duplicate_of, similarity, semantic_skipped) = match self.semantic_duplicate(&d, &source, phase).await {
                Ok(Some((of, sim))) => (Some(of), Some(sim), None),
                Ok(None) => (None, None, None),
                Err(why) => (None, None, Some(why)),
            };
            let report = DiscoveryReport { discovery: d, branch, limits: self.limits, duplicate_of };
            let outcome = self.store.record_discovery(report).await?;
            let reported = Reported { outcome, similarity, semantic_skipped };
            info!(outcome = %reported.message(), "discovery recorded");
            Ok(reported)
        }
        .instrument(span)
        .await
    }

    /// The most similar live discovery or unfinished task of the source's spec and `phase` at or
    /// above the threshold. `Err` says why the check was skipped.
    async fn semantic_duplicate(
        &self,
        d: &NewDiscovery,
        source: &Task,
        phase: omoi_core::WorkPhase,
    ) -> Result<Option<(DuplicateOf, f64)>, String> {
        let Some(embedder) = &self.embedder else { return Err("no embedder configured".into()) };
        let Some(spec) = source.links.spec_id else { return Ok(None) };
        let live = DiscoveryFilter {
            spec_id: Some(spec),
            statuses: vec![DiscoveryStatus::Open, DiscoveryStatus::Branched],
            ..DiscoveryFilter::default()
        };
        let discoveries = self.store.list_discoveries(&live).await.map_err(|e| e.to_string())?;
        let unfinished = TaskFilter {
            spec_id: Some(spec),
            states: vec![
                TaskState::Waiting,
                TaskState::Ready,
                TaskState::Claimed,
                TaskState::Running,
                TaskState::Blocked,
            ],
            ..TaskFilter::default()
        };
        let tasks = self.tasks.list_tasks(&unfinished).await.map_err(|e| e.to_string())?;
        let mut candidates: Vec<(DuplicateOf, String)> = discoveries
            .into_iter()
            .filter(|x| x.kind == d.kind)
            .map(|x| (DuplicateOf::Discovery(x.id), format!("{}\n{}", x.title, x.description)))
            .collect();
        candidates.extend(
            tasks
                .into_iter()
                .filter(|t| t.id != source.id && t.def.phase == phase)
                .map(|t| (DuplicateOf::Task(t.id), format!("{}\n{}", t.def.title, t.def.description))),
        );
        if candidates.is_empty() {
            return Ok(None);
        }
        let mut texts = vec![d.dedup_text()];
        texts.extend(candidates.iter().map(|(_, t)| t.clone()));
        let vectors = self.embed(embedder.as_ref(), &texts).await.map_err(|e| {
            warn!(error = %e, "semantic dedup skipped: the embedder failed");
            format!("embedder failed: {e}")
        })?;
        let best = candidates
            .iter()
            .zip(&vectors[1..])
            .map(|((of, _), v)| (*of, cosine(&vectors[0], v)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        Ok(best.filter(|(_, sim)| *sim >= self.threshold))
    }

    async fn embed(&self, embedder: &dyn Embedder, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut out: Vec<Option<Vec<f32>>> = {
            let cache = self.cache.lock();
            texts.iter().map(|t| cache.get(t).cloned()).collect()
        };
        let missing: Vec<usize> = (0..texts.len()).filter(|i| out[*i].is_none()).collect();
        if !missing.is_empty() {
            let batch: Vec<String> = missing.iter().map(|i| texts[*i].clone()).collect();
            let vectors = embedder.embed(&batch).await?;
            if vectors.len() != batch.len() {
                return Err(EmbedError::Backend(format!("{} vectors for {} texts", vectors.len(), batch.len())));
            }
            let mut cache = self.cache.lock();
            if cache.len() + batch.len() > CACHE_LIMIT {
                cache.clear();
            }
            for (i, v) in missing.into_iter().zip(vectors) {
                cache.insert(texts[i].clone(), v.clone());
                out[i] = Some(v);
            }
        }
        Ok(out.into_iter().map(Option::unwrap_or_default).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::cosine;

    #[test]
    fn cosine_of_parallel_orthogonal_and_zero_vectors() {
        assert!((cosine(&[1.0, 2.0], &[2.0, 4.0]) - 1.0).abs() < 1e-9);
        assert_eq!(cosine(&[1.0, 0.0], &[0.0, 1.0]), 0.0);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 1.0]), 0.0);
    }
}
