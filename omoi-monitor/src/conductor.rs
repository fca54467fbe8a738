//! The conductor: on an interval, the coherence of the whole system and its health status, and
//! duplicate work between running tasks.
//!
//! - **Coherence** ([`coherence`]): OmoiOS's formula with weights from
//!   `monitor.coherence.weights`, over the latest guardian analysis of each running task (read
//!   from `monitor.agent_analysed` events; a run whose alignment is unknown counts as 0, so
//!   missing analyses never look healthy).
//! - **Health** ([`health`]): checked in order: no agents, critical, warning, inefficient (too many
//!   duplicates), optimal, normal.
//! - **Duplicates**: running tasks' goals and latest summaries are embedded; pairs at or above
//!   `monitor.coherence.duplicate_prefilter` cosine go to one structured model call each
//!   ([`DuplicateVerdict`]); a pair is confirmed when the model says so with a similarity above
//!   `monitor.coherence.duplicate_similarity`. Validation tasks are never duplicates. The less
//!   advanced run of a confirmed pair (fewer steps; on a tie, the later task) gets an emergency
//!   stop through the [`Steerer`]. A failed confirmation confirms nothing.
//!
//! Each assessment is logged as `monitor.system_assessed`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use omoi_core::config::MonitorConfig;
use omoi_core::memory::cosine;
use omoi_core::{
    AgentId, CompletionRequest, Cursor, Embedder, Event, EventStore, ExecutionMode, InterventionSource, LlmClient,
    Severity, StoreError, SystemHealth, Task, TaskFilter, TaskId, TaskState, TaskStore, complete_as,
};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use tracing::{Instrument, info, info_span, warn};

use crate::steer::{SteerOutcome, Steerer};
use crate::stuck_monitor::catch_up;
use crate::text::clip;

/// The model's answer about two agents' work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DuplicateVerdict {
    /// Whether the two agents do the same work (not merely similar work).
    pub is_duplicate: bool,
    /// How much of the work overlaps, 0–1.
    pub similarity: f64,
    /// What is duplicated, or why it is not.
    pub reason: String,
}

/// One running task as the conductor sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct RunView {
    /// The task.
    pub task: Task,
    /// Its lease holder.
    pub agent: AgentId,
    /// The latest known alignment (`None`: unknown or not analysed yet).
    pub alignment: Option<f64>,
    /// The latest trajectory summary.
    pub summary: String,
    /// Steps recorded for this run.
    pub steps: u64,
}

/// A confirmed duplicate pair and what was done about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Duplicate {
    /// The run kept.
    pub kept: TaskId,
    /// The run stopped (the less advanced one).
    pub stopped: TaskId,
    /// The model's verdict.
    pub verdict: DuplicateVerdict,
    /// What the steering policy did with the stop.
    pub outcome: SteerOutcome,
}

/// One assessment.
#[derive(Debug, Clone, PartialEq)]
pub struct Assessment {
    /// Coherence 0–1.
    pub coherence: f64,
    /// Health status.
    pub health: SystemHealth,
    /// Runs assessed.
    pub runs: usize,
    /// Confirmed duplicates.
    pub duplicates: Vec<Duplicate>,
    /// A person should look: health critical, or the mean known alignment below
    /// `monitor.alert_mean_alignment_below` (logged as a warning).
    pub alert: bool,
}

/// OmoiOS's coherence score over `runs` (alignment unknown counts as 0), with `cfg`'s weights
/// and steering thresholds, clamped to 0–1. No runs: 0.
pub fn coherence(runs: &[RunView], cfg: &MonitorConfig) -> f64 {
    if runs.is_empty() {
        return 0.0;
    }
    let n = runs.len() as f64;
    let w = &cfg.coherence.weights;
    let scores: Vec<f64> = runs.iter().map(|r| r.alignment.unwrap_or(0.0)).collect();
    let mean = scores.iter().sum::<f64>() / n;
    let unaligned = scores.iter().filter(|s| **s < cfg.steering.correction_below).count() as f64;
    let needs = scores.iter().filter(|s| **s < cfg.steering.guidance_below).count() as f64;
    let phases = runs.iter().map(|r| r.task.def.phase).collect::<HashSet<_>>().len() as f64;
    let mut per_agent: HashMap<AgentId, f64> = HashMap::new();
    for r in runs {
        *per_agent.entry(r.agent).or_default() += 1.0;
    }
    let loads: Vec<f64> = per_agent.into_values().collect();
    let load_mean = loads.iter().sum::<f64>() / loads.len() as f64;
    let var = loads.iter().map(|l| (l - load_mean).powi(2)).sum::<f64>() / loads.len() as f64;
    let balance = 1.0 - var / (load_mean * load_mean);
    let score = mean - w.unaligned * unaligned / n - w.needs_steering * needs / n
        + w.phase_diversity * phases / n
        + w.load_balance * balance;
    score.clamp(0.0, 1.0)
}

/// The health status for a coherence score, `runs` and confirmed `duplicates`, in OmoiOS's order.
pub fn health(coherence: f64, runs: usize, duplicates: usize, cfg: &MonitorConfig) -> SystemHealth {
    let c = &cfg.coherence;
    if runs == 0 {
        SystemHealth::NoAgents
    } else if coherence < c.critical_below {
        SystemHealth::Critical
    } else if coherence < c.warning_below {
        SystemHealth::Warning
    } else if duplicates as f64 > c.inefficient_duplicate_fraction * runs as f64 {
        SystemHealth::Inefficient
    } else if coherence > c.optimal_above {
        SystemHealth::Optimal
    } else {
        SystemHealth::Normal
    }
}

#[derive(Default)]
struct State {
    cursor: Cursor,
    /// Latest (alignment, summary) per task.
    analyses: HashMap<TaskId, (Option<f64>, String)>,
    /// Steps per task.
    steps: HashMap<TaskId, u64>,
}

/// Assesses the system; run [`Conductor::check`] every `monitor.conductor_interval`.
pub struct Conductor {
    id: AgentId,
    llm: Arc<dyn LlmClient>,
    embedder: Arc<dyn Embedder>,
    tasks: Arc<dyn TaskStore>,
    events: Arc<dyn EventStore>,
    steerer: Steerer,
    config: MonitorConfig,
    state: Mutex<State>,
}

impl std::fmt::Debug for Conductor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conductor").field("id", &self.id).field("model", &self.llm.model()).finish()
    }
}

const SYSTEM: &str = "You compare the work of two autonomous software agents. They duplicate each other only when \
they do the SAME work (the same change to the same code), not merely similar or related work. Answer only with the \
JSON object the schema describes.";

impl Conductor {
    /// A conductor with its own agent id (the subject of its events).
    pub fn new(
        id: AgentId,
        llm: Arc<dyn LlmClient>,
        embedder: Arc<dyn Embedder>,
        tasks: Arc<dyn TaskStore>,
        events: Arc<dyn EventStore>,
        steerer: Steerer,
        config: MonitorConfig,
    ) -> Self {
        Self { id, llm, embedder, tasks, events, steerer, config, state: Mutex::default() }
    }

    /// One assessment of the running tasks.
    pub async fn check(&self) -> Result<Assessment, StoreError> {
        async {
            let runs = self.runs().await?;
            let duplicates = self.duplicates(&runs).await?;
            let coherence = coherence(&runs, &self.config);
            let health = health(coherence, runs.len(), duplicates.len(), &self.config);
            let event = Event::MonitorSystemAssessed {
                conductor_id: self.id,
                coherence,
                health,
                agents: u32::try_from(runs.len()).unwrap_or(u32::MAX),
                duplicates: u32::try_from(duplicates.len()).unwrap_or(u32::MAX),
            };
            self.events.append_events(vec![event]).await?;
            info!(coherence, %health, runs = runs.len(), duplicates = duplicates.len(), "system assessed");
            let known: Vec<f64> = runs.iter().filter_map(|r| r.alignment).collect();
            let low = !known.is_empty()
                && known.iter().sum::<f64>() / (known.len() as f64) < self.config.alert_mean_alignment_below;
            let alert = health == SystemHealth::Critical || low;
            if alert {
                warn!(coherence, %health, "monitor alert: the system needs a person's attention");
            }
            Ok(Assessment { coherence, health, runs: runs.len(), duplicates, alert })
        }
        .instrument(info_span!("monitor.conductor"))
        .await
    }

    /// The running tasks with their latest analyses and step counts.
    async fn runs(&self) -> Result<Vec<RunView>, StoreError> {
        let mut st = self.state.lock().await;
        let st = &mut *st;
        let (analyses, steps) = (&mut st.analyses, &mut st.steps);
        catch_up(self.events.as_ref(), &mut st.cursor, |e| match &e.event {
            Event::MonitorAgentAnalysed { task_id, alignment, summary, .. } => {
                analyses.insert(*task_id, (*alignment, summary.clone()));
            }
            Event::AgentStep { task_id, .. } => *steps.entry(*task_id).or_default() += 1,
            _ => {}
        })
        .await?;
        let filter = TaskFilter { states: vec![TaskState::Running], ..TaskFilter::default() };
        let running = self.tasks.list_tasks(&filter).await?;
        let live: HashSet<TaskId> = running.iter().map(|t| t.id).collect();
        st.analyses.retain(|t, _| live.contains(t));
        st.steps.retain(|t, _| live.contains(t));
        Ok(running
            .into_iter()
            .filter_map(|task| {
                let agent = task.lease.as_ref()?.holder;
                let (alignment, summary) = st.analyses.get(&task.id).cloned().unwrap_or((None, String::new()));
                let steps = st.steps.get(&task.id).copied().unwrap_or(0);
                Some(RunView { task, agent, alignment, summary, steps })
            })
            .collect())
    }

    async fn duplicates(&self, runs: &[RunView]) -> Result<Vec<Duplicate>, StoreError> {
        let candidates: Vec<&RunView> = runs.iter().filter(|r| r.task.def.mode != ExecutionMode::Validation).collect();
        if candidates.len() < 2 {
            return Ok(Vec::new());
        }
        let texts: Vec<String> = candidates.iter().map(|r| describe(r)).collect();
        let vectors = match self.embedder.embed(&texts).await {
            Ok(v) => v,
            Err(e) => {
                warn!(error = %e, "embedding failed: no duplicate check this time");
                return Ok(Vec::new());
            }
        };
        let mut stopped: HashSet<TaskId> = HashSet::new();
        let mut out = Vec::new();
        for i in 0..candidates.len() {
            for j in (i + 1)..candidates.len() {
                let (a, b) = (candidates[i], candidates[j]);
                if stopped.contains(&a.task.id) || stopped.contains(&b.task.id) {
                    continue;
                }
                if cosine(&vectors[i], &vectors[j]) < self.config.coherence.duplicate_prefilter {
                    continue;
                }
                let Some(verdict) = self.confirm(&texts[i], &texts[j]).await else { continue };
                if !(verdict.is_duplicate && verdict.similarity > self.config.coherence.duplicate_similarity) {
                    continue;
                }
                let (keep, stop) = if ahead(a, b) { (a, b) } else { (b, a) };
                let message = format!(
                    "Stop: task \"{}\" duplicates the work of task \"{}\", which is further along ({}).",
                    stop.task.def.title, keep.task.def.title, verdict.reason
                );
                let reason = format!("duplicate of task {} (similarity {:.2})", keep.task.id, verdict.similarity);
                let outcome = self
                    .steerer
                    .steer(
                        stop.agent,
                        stop.task.id,
                        Severity::Emergency,
                        InterventionSource::Conductor,
                        &message,
                        &reason,
                    )
                    .await?;
                stopped.insert(stop.task.id);
                out.push(Duplicate { kept: keep.task.id, stopped: stop.task.id, verdict, outcome });
            }
        }
        Ok(out)
    }

    /// One structured model call; `None` when it fails (nothing is confirmed on a failure).
    async fn confirm(&self, a: &str, b: &str) -> Option<DuplicateVerdict> {
        let prompt = format!("## Agent A\n{a}\n\n## Agent B\n{b}\n");
        let request = CompletionRequest { system: Some(SYSTEM.into()), ..CompletionRequest::new(prompt) };
        match complete_as::<DuplicateVerdict>(self.llm.as_ref(), request, "duplicate_verdict").await {
            Ok((v, _)) if (0.0..=1.0).contains(&v.similarity) => Some(v),
            Ok((v, _)) => {
                warn!(similarity = v.similarity, "duplicate verdict out of range: not confirmed");
                None
            }
            Err((e, _)) => {
                warn!(error = %e, "duplicate confirmation failed: not confirmed");
                None
            }
        }
    }
}

/// What a run is about, for embedding and the model.
fn describe(r: &RunView) -> String {
    format!(
        "Task: {}\n{}\nPhase: {}\nSo far: {}",
        r.task.def.title,
        clip(&r.task.def.description, 1000),
        r.task.def.phase,
        clip(&r.summary, 1000)
    )
}

/// Whether `a` is further along than `b`: more steps; on a tie, the older task.
fn ahead(a: &RunView, b: &RunView) -> bool {
    (a.steps, std::cmp::Reverse(a.task.id)) > (b.steps, std::cmp::Reverse(b.task.id))
}
