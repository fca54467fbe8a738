//! The guardian: per running task, on an interval and only when the trajectory has new steps
//! since its last analysis, asks a model how well the agent's work matches the task's goal and
//! done definition, through structured output ([`GuardianAnalysis`], schema from schemars).
//!
//! - **Input**: the task's title, description and acceptance criteria; the trajectory compacted to
//!   `monitor.guardian_trajectory_chars` (newest kept, the monitors' own steering left out); the
//!   task's last `monitor.guardian_history` analyses.
//! - **Decision**: by numbers, never by the model's opinion: the alignment score against
//!   `monitor.steering` thresholds gives none / guidance / correction / emergency ([`decide`]).
//! - **Fail closed**: a failed call, unparsable output or a score outside 0–1 is recorded as
//!   *unknown* (`alignment: None`), never as aligned, and steers nobody.
//! - **Steering** goes through the [`Steerer`] (one per cooldown, held until acknowledged,
//!   escalating when ignored), only with `monitor.auto_steering` on.
//! - At most `monitor.guardian_max_concurrent` analyses at once; runs younger than
//!   `monitor.guardian_min_agent_age` are left alone.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use futures::StreamExt;
use omoi_core::config::{MonitorConfig, SteeringThresholds};
use omoi_core::{
    AgentId, Clock, CompletionRequest, Cursor, Event, EventStore, InterventionSource, LlmClient, Severity, StoreError,
    TaskId, TaskStore, complete_as,
};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use tracing::{Instrument, info_span, warn};

use crate::steer::{SteerOutcome, Steerer};
use crate::stuck_monitor::catch_up;
use crate::text::clip;
use crate::trajectory::{Trajectories, Trajectory};

/// What the model answers about one agent's trajectory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct GuardianAnalysis {
    /// How well the work matches the goal and done definition: 0 (off course) to 1 (on course).
    pub alignment_score: f64,
    /// What the agent has done so far, in two or three sentences.
    pub trajectory_summary: String,
    /// What the agent is doing right now.
    pub current_focus: String,
    /// Why the work drifts from the goal (empty when it does not).
    pub drift_reasons: Vec<String>,
    /// What to tell the agent to get back on course (empty when nothing).
    pub steering_message: String,
}

/// The intervention an alignment score calls for under `thresholds` (`None`: leave it be).
pub fn decide(alignment: f64, thresholds: &SteeringThresholds) -> Option<Severity> {
    if alignment < thresholds.emergency_below {
        Some(Severity::Emergency)
    } else if alignment < thresholds.correction_below {
        Some(Severity::Correction)
    } else if alignment < thresholds.guidance_below {
        Some(Severity::Guidance)
    } else {
        None
    }
}

/// One analysis as the guardian keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalysisRecord {
    /// The agent.
    pub agent_id: AgentId,
    /// The task run.
    pub task_id: TaskId,
    /// The model's answer, or why there is none (unknown).
    pub analysis: Result<GuardianAnalysis, String>,
    /// The intervention the score called for.
    pub decision: Option<Severity>,
    /// What the steering policy did with it (`None`: no steer was called for, or auto-steering
    /// is off).
    pub steer: Option<SteerOutcome>,
}

impl AnalysisRecord {
    /// The alignment score; `None` is unknown.
    pub fn alignment(&self) -> Option<f64> {
        self.analysis.as_ref().ok().map(|a| a.alignment_score)
    }
}

struct State {
    book: Trajectories,
    cursor: Cursor,
    /// Steps seen at the last analysis, per task.
    analysed: HashMap<TaskId, u64>,
    /// Recent analyses per task, newest last.
    history: HashMap<TaskId, VecDeque<AnalysisRecord>>,
}

/// Analyses running agents; run [`Guardian::check`] every `monitor.guardian_interval`.
pub struct Guardian {
    llm: Arc<dyn LlmClient>,
    tasks: Arc<dyn TaskStore>,
    events: Arc<dyn EventStore>,
    steerer: Steerer,
    clock: Arc<dyn Clock>,
    config: MonitorConfig,
    state: Mutex<State>,
}

impl std::fmt::Debug for Guardian {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guardian").field("model", &self.llm.model()).finish()
    }
}

const SYSTEM: &str = "You are the guardian of an autonomous software agent. Judge whether the agent's recent work \
moves its task towards the done definition. Lines that are the monitors' own steering are not the agent's work. \
Score alignment from 0 (off course: unrelated work, ignoring constraints, looping) to 1 (on course). Answer only \
with the JSON object the schema describes.";

impl Guardian {
    /// A guardian asking `llm`, reading tasks and the event log, steering through `steerer`.
    pub fn new(
        llm: Arc<dyn LlmClient>,
        tasks: Arc<dyn TaskStore>,
        events: Arc<dyn EventStore>,
        steerer: Steerer,
        clock: Arc<dyn Clock>,
        config: MonitorConfig,
    ) -> Self {
        let window = usize::try_from(config.stuck.window).unwrap_or(usize::MAX);
        let state = State {
            book: Trajectories::new(window),
            cursor: Cursor::START,
            analysed: HashMap::new(),
            history: HashMap::new(),
        };
        Self { llm, tasks, events, steerer, clock, config, state: Mutex::new(state) }
    }

    /// The latest analysis of every task run analysed so far (for the conductor and people).
    pub async fn latest(&self) -> Vec<AnalysisRecord> {
        self.state.lock().await.history.values().filter_map(|h| h.back().cloned()).collect()
    }

    /// Analyses every running task with new steps since its last analysis; records each as
    /// `monitor.agent_analysed` and steers where the score calls for it.
    pub async fn check(&self) -> Result<Vec<AnalysisRecord>, StoreError> {
        async {
            let now = self.clock.now();
            let jobs: Vec<(Trajectory, Vec<AnalysisRecord>)> = {
                let mut guard = self.state.lock().await;
                let st = &mut *guard;
                let book = &mut st.book;
                catch_up(self.events.as_ref(), &mut st.cursor, |e| book.observe(e)).await?;
                let live: Vec<TaskId> = st.book.iter().map(|t| t.task_id).collect();
                st.history.retain(|t, _| live.contains(t));
                st.analysed.retain(|t, _| live.contains(t));
                st.book
                    .iter()
                    .filter(|t| t.steps > st.analysed.get(&t.task_id).copied().unwrap_or(0))
                    .filter(|t| (now - t.started).to_std().unwrap_or_default() >= self.config.guardian_min_agent_age)
                    .map(|t| {
                        (t.clone(), st.history.get(&t.task_id).map(|h| h.iter().cloned().collect()).unwrap_or_default())
                    })
                    .collect()
            };
            let limit = self.config.guardian_max_concurrent.max(1);
            let analyses: Vec<(Trajectory, Result<GuardianAnalysis, String>)> =
                futures::stream::iter(jobs.into_iter().map(|(t, past)| async move {
                    let result = self.analyse(&t, &past).await;
                    (t, result)
                }))
                .buffer_unordered(limit)
                .collect()
                .await;
            let mut out = Vec::new();
            for (t, analysis) in analyses {
                let record = self.act(&t, analysis).await?;
                let mut st = self.state.lock().await;
                st.analysed.insert(t.task_id, t.steps);
                let h = st.history.entry(t.task_id).or_default();
                h.push_back(record.clone());
                while h.len() > self.config.guardian_history.max(1) {
                    h.pop_front();
                }
                out.push(record);
            }
            Ok(out)
        }
        .instrument(info_span!("monitor.guardian"))
        .await
    }

    /// Asks the model; any failure is the reason the analysis is unknown.
    async fn analyse(&self, t: &Trajectory, past: &[AnalysisRecord]) -> Result<GuardianAnalysis, String> {
        let task = self.tasks.get_task(t.task_id).await.map_err(|e| format!("task unavailable: {e}"))?;
        let mut prompt = format!("## Task\n{}\n\n{}\n", task.def.title, task.def.description);
        if !task.def.acceptance_criteria.is_empty() {
            prompt.push_str("\n## Done when\n");
            for c in &task.def.acceptance_criteria {
                prompt.push_str(&format!("- {c}\n"));
            }
        }
        if !past.is_empty() {
            prompt.push_str("\n## Your previous analyses (oldest first)\n");
            for p in past {
                match &p.analysis {
                    Ok(a) => prompt.push_str(&format!(
                        "- alignment {:.2}, focus: {}; {}\n",
                        a.alignment_score,
                        clip(&a.current_focus, 200),
                        clip(&a.trajectory_summary, 400)
                    )),
                    Err(_) => prompt.push_str("- unknown (analysis failed)\n"),
                }
            }
        }
        prompt.push_str("\n## Recent trajectory (newest last)\n");
        prompt.push_str(&compact(t, self.config.guardian_trajectory_chars));
        let request = CompletionRequest { system: Some(SYSTEM.into()), ..CompletionRequest::new(prompt) };
        match complete_as::<GuardianAnalysis>(self.llm.as_ref(), request, "guardian_analysis").await {
            Ok((a, _)) if (0.0..=1.0).contains(&a.alignment_score) => Ok(a),
            Ok((a, _)) => Err(format!("alignment score {} is outside 0..=1", a.alignment_score)),
            Err((e, _)) => Err(e.to_string()),
        }
    }

    /// Records the analysis and steers when its score calls for it.
    async fn act(
        &self,
        t: &Trajectory,
        analysis: Result<GuardianAnalysis, String>,
    ) -> Result<AnalysisRecord, StoreError> {
        let (alignment, summary) = match &analysis {
            Ok(a) => (Some(a.alignment_score), a.trajectory_summary.clone()),
            Err(why) => {
                warn!(task = %t.task_id, why, "guardian analysis failed: alignment unknown");
                (None, format!("unknown: {why}"))
            }
        };
        let event = Event::MonitorAgentAnalysed { agent_id: t.agent_id, task_id: t.task_id, alignment, summary };
        self.events.append_events(vec![event]).await?;
        let decision = alignment.and_then(|a| decide(a, &self.config.steering));
        let mut steer = None;
        if let (Some(severity), Ok(a), true) = (decision, &analysis, self.config.auto_steering) {
            let message = if a.steering_message.trim().is_empty() {
                format!("Your work drifts from the task: {}", a.drift_reasons.join("; "))
            } else {
                a.steering_message.clone()
            };
            let reason = format!("alignment {:.2}: {}", a.alignment_score, a.drift_reasons.join("; "));
            steer = Some(
                self.steerer
                    .steer(t.agent_id, t.task_id, severity, InterventionSource::Guardian, &message, &reason)
                    .await?,
            );
        }
        Ok(AnalysisRecord { agent_id: t.agent_id, task_id: t.task_id, analysis, decision, steer })
    }
}

/// The trajectory's recent steps, newest kept, within `budget` characters.
fn compact(t: &Trajectory, budget: usize) -> String {
    let mut kept: Vec<&str> = Vec::new();
    let mut used = 0;
    for line in t.recent_text.iter().rev() {
        if used + line.len() + 1 > budget {
            break;
        }
        used += line.len() + 1;
        kept.push(line);
    }
    let omitted = t.steps.saturating_sub(kept.len() as u64);
    let mut out = String::new();
    if omitted > 0 {
        out.push_str(&format!("[… {omitted} earlier steps omitted]\n"));
    }
    for line in kept.iter().rev() {
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_decide_the_intervention() {
        let t = SteeringThresholds::default(); // 0.7 / 0.5 / 0.3
        assert_eq!(decide(0.9, &t), None);
        assert_eq!(decide(0.7, &t), None);
        assert_eq!(decide(0.69, &t), Some(Severity::Guidance));
        assert_eq!(decide(0.49, &t), Some(Severity::Correction));
        assert_eq!(decide(0.29, &t), Some(Severity::Emergency));
        let strict = SteeringThresholds { guidance_below: 0.95, ..t };
        assert_eq!(decide(0.9, &strict), Some(Severity::Guidance));
    }
}
