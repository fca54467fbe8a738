//! The stuck monitor: tails the event log, keeps each running task's trajectory window, runs the
//! [stuck rules](crate::stuck) over it, and steers a stuck agent through the [`Steerer`]
//! (guidance first; ignored steers escalate). Each finding is logged as `monitor.stuck_detected`
//! once per rule and trajectory state.

use std::collections::HashMap;
use std::sync::Arc;

use omoi_core::config::StuckRules;
use omoi_core::{Clock, Cursor, Event, EventStore, InterventionSource, Severity, StoreError, StuckRule, TaskId};
use tokio::sync::Mutex;
use tracing::{Instrument, info_span, warn};

use crate::steer::{SteerOutcome, Steerer};
use crate::stuck::{StuckFinding, detect};
use crate::trajectory::Trajectories;

/// Events read per page while catching up with the log.
pub(crate) const PAGE: usize = 1000;

/// One finding of a check and what the steering policy did with it.
#[derive(Debug, Clone, PartialEq)]
pub struct StuckReport {
    /// The task whose run is stuck.
    pub task_id: TaskId,
    /// What was found.
    pub finding: StuckFinding,
    /// Whether a steer was sent or held.
    pub outcome: SteerOutcome,
}

struct State {
    book: Trajectories,
    cursor: Cursor,
    /// (rule, steps seen) last reported per task, so one state is reported once.
    reported: HashMap<TaskId, (StuckRule, u64)>,
}

/// Detects stuck agents; run [`StuckMonitor::check`] every `monitor.stuck_interval`.
pub struct StuckMonitor {
    events: Arc<dyn EventStore>,
    steerer: Steerer,
    clock: Arc<dyn Clock>,
    rules: StuckRules,
    state: Mutex<State>,
}

impl std::fmt::Debug for StuckMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StuckMonitor").field("rules", &self.rules).finish()
    }
}

impl StuckMonitor {
    /// A monitor reading the log from its start.
    pub fn new(events: Arc<dyn EventStore>, steerer: Steerer, clock: Arc<dyn Clock>, rules: StuckRules) -> Self {
        let window = usize::try_from(rules.window).unwrap_or(usize::MAX);
        let state = State { book: Trajectories::new(window), cursor: Cursor::START, reported: HashMap::new() };
        Self { events, steerer, clock, rules, state: Mutex::new(state) }
    }

    /// Reads the new events, checks every running task's trajectory and steers the stuck ones.
    pub async fn check(&self) -> Result<Vec<StuckReport>, StoreError> {
        async {
            let mut guard = self.state.lock().await;
            let st = &mut *guard;
            let book = &mut st.book;
            catch_up(self.events.as_ref(), &mut st.cursor, |e| book.observe(e)).await?;
            let now = self.clock.now();
            let found: Vec<_> = st
                .book
                .iter()
                .filter_map(|t| detect(t, &self.rules, now).map(|f| (t.task_id, t.agent_id, t.steps, f)))
                .collect();
            let mut out = Vec::new();
            for (task, agent, steps, finding) in found {
                if st.reported.get(&task) == Some(&(finding.rule, steps)) {
                    continue;
                }
                st.reported.insert(task, (finding.rule, steps));
                let repeats = finding.repeats;
                let event = Event::MonitorStuckDetected { task_id: task, agent_id: agent, rule: finding.rule, repeats };
                self.events.append_events(vec![event]).await?;
                let severity =
                    if finding.rule == StuckRule::ContextWindow { Severity::Correction } else { Severity::Guidance };
                let reason = format!("stuck: {} ({repeats})", finding.rule);
                let outcome = match self
                    .steerer
                    .steer(agent, task, severity, InterventionSource::StuckDetector, &finding.advice, &reason)
                    .await
                {
                    Ok(o) => o,
                    Err(e) => {
                        warn!(%task, error = %e, "could not record the stuck intervention; retried next check");
                        st.reported.remove(&task);
                        continue;
                    }
                };
                if matches!(outcome, SteerOutcome::Sent(_)) {
                    st.book.reset(task);
                }
                out.push(StuckReport { task_id: task, finding, outcome });
            }
            Ok(out)
        }
        .instrument(info_span!("monitor.stuck"))
        .await
    }
}

/// Feeds every event after `cursor` to `f`, page by page, advancing `cursor`.
pub(crate) async fn catch_up(
    events: &dyn EventStore,
    cursor: &mut Cursor,
    mut f: impl FnMut(&omoi_core::StoredEvent),
) -> Result<(), StoreError> {
    loop {
        let page = events.read_events(*cursor, PAGE).await?;
        for e in &page {
            f(e);
            *cursor = e.cursor;
        }
        if page.len() < PAGE {
            return Ok(());
        }
    }
}
