//! Trajectories: the `agent.step` events of each running task, reduced to what the monitors
//! compare (actions, observations, messages, progress), kept per task in a bounded window.
//!
//! A [`Trajectories`] book is fed the event log in cursor order; it forgets a task when the task
//! ends (completed, failed, cancelled, released or its lease lapsed).

use std::collections::{HashMap, VecDeque};

use chrono::{DateTime, Utc};
use omoi_core::{AgentId, Event, StoredEvent, TaskId};
use serde_json::Value;

/// One item of a trajectory.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// The agent called a tool (`name` and its arguments, canonical JSON).
    Action(String),
    /// What the tool answered (`name`, whether it failed, its output) or a refusal.
    Observation {
        /// Tool name, error flag and output, for equality.
        key: String,
        /// Whether it failed (or was refused).
        is_error: bool,
    },
    /// The model spoke without calling a tool.
    Message(String),
    /// The model call failed because the conversation no longer fits the context window.
    ContextWindowError,
}

/// A trajectory item with its time.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// When the step was recorded.
    pub at: DateTime<Utc>,
    /// What it was.
    pub item: Item,
}

/// The recent trajectory of one task run.
#[derive(Debug, Clone)]
pub struct Trajectory {
    /// The task.
    pub task_id: TaskId,
    /// The agent running it (the latest step's).
    pub agent_id: AgentId,
    /// The newest items since the last steering, oldest first (bounded).
    pub entries: VecDeque<Entry>,
    /// The last file change, test result or finish (else the first step seen).
    pub last_progress: DateTime<Utc>,
    /// The first step seen of this run.
    pub started: DateTime<Utc>,
    /// The last step seen.
    pub last_step: DateTime<Utc>,
    /// Steps seen in total (not bounded), for "new events since the last analysis".
    pub steps: u64,
    /// The newest steps as text, for the guardian (bounded).
    pub recent_text: VecDeque<String>,
    /// The command just called looks like a test run (its result is progress, pass or fail).
    test_running: bool,
}

impl Trajectory {
    /// An empty trajectory of `agent`'s run of `task`, first seen at `at`.
    pub fn new(task_id: TaskId, agent_id: AgentId, at: DateTime<Utc>) -> Self {
        Trajectory {
            task_id,
            agent_id,
            entries: VecDeque::new(),
            last_progress: at,
            started: at,
            last_step: at,
            steps: 0,
            recent_text: VecDeque::new(),
            test_running: false,
        }
    }
}

/// Phrases model APIs use when a request exceeds the context window.
const CONTEXT_WINDOW_PHRASES: &[&str] =
    &["context length", "context window", "maximum context", "prompt is too long", "too many tokens"];

/// Whether an error text says the context window overflowed.
pub fn is_context_window_error(text: &str) -> bool {
    let t = text.to_lowercase();
    CONTEXT_WINDOW_PHRASES.iter().any(|p| t.contains(p))
}

/// A `run_command`/`run_readonly` call whose command mentions tests.
fn looks_like_a_test_run(detail: &Value) -> bool {
    let name = str_of(detail, "name");
    let input = detail.get("input").map(Value::to_string).unwrap_or_default().to_lowercase();
    matches!(name, "run_command" | "run_readonly")
        && ["test", "pytest", "check", "spec"].iter().any(|w| input.contains(w))
}

fn str_of<'a>(detail: &'a Value, key: &str) -> &'a str {
    detail.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// What one `agent.step` means to the monitors: its item (if any), whether it is progress, and
/// whether it is steering (which starts a fresh window: the agent was told something new).
fn classify(action: &str, detail: &Value) -> (Option<Item>, bool, bool) {
    match action {
        "tool_call" => {
            let name = str_of(detail, "name");
            let input = detail.get("input").map(Value::to_string).unwrap_or_default();
            (Some(Item::Action(format!("{name} {input}"))), name == "finish", false)
        }
        "tool_result" => {
            let name = str_of(detail, "name");
            let is_error = detail.get("is_error").and_then(Value::as_bool).unwrap_or(false);
            let output = str_of(detail, "output");
            let progress = !is_error && matches!(name, "write_file" | "edit_file");
            (Some(Item::Observation { key: format!("{name} {is_error} {output}"), is_error }), progress, false)
        }
        "refused" => {
            let key =
                format!("refused {} {}", str_of(detail, "name"), detail.get("reason").cloned().unwrap_or_default());
            (Some(Item::Observation { key, is_error: true }), false, false)
        }
        "model" => {
            let calls = detail.get("tool_calls").and_then(Value::as_array).map_or(0, Vec::len);
            let text = str_of(detail, "text");
            ((calls == 0 && !text.is_empty()).then(|| Item::Message(text.to_owned())), false, false)
        }
        "model_error" => {
            let overflow = is_context_window_error(str_of(detail, "error"));
            (overflow.then_some(Item::ContextWindowError), false, false)
        }
        "steering" => (None, false, true),
        _ => (None, false, false),
    }
}

/// Trajectories of every running task, fed from the event log.
#[derive(Debug)]
pub struct Trajectories {
    window: usize,
    text_window: usize,
    tasks: HashMap<TaskId, Trajectory>,
}

impl Trajectories {
    /// A book keeping the newest `window` items per task.
    pub fn new(window: usize) -> Self {
        Self { window: window.max(1), text_window: 40, tasks: HashMap::new() }
    }

    /// Takes in one event.
    pub fn observe(&mut self, e: &StoredEvent) {
        match &e.event {
            Event::AgentStep { task_id, agent_id, action, detail, .. } => {
                let t = self.tasks.entry(*task_id).or_insert_with(|| Trajectory::new(*task_id, *agent_id, e.at));
                if t.agent_id != *agent_id {
                    // Another attempt by another agent: its own trajectory.
                    t.agent_id = *agent_id;
                    t.entries.clear();
                    t.recent_text.clear();
                    t.last_progress = e.at;
                    t.started = e.at;
                }
                t.steps += 1;
                t.last_step = e.at;
                // Steering is the monitors' own words, not the agent's work: it is left out of
                // what the guardian scores.
                if action != "steering" {
                    t.recent_text.push_back(format!("{action}: {}", crate::text::clip(&detail.to_string(), 400)));
                    while t.recent_text.len() > self.text_window {
                        t.recent_text.pop_front();
                    }
                }
                let (item, mut progress, steering) = classify(action, detail);
                match action.as_str() {
                    "tool_call" => t.test_running = looks_like_a_test_run(detail),
                    "tool_result" => progress |= std::mem::take(&mut t.test_running),
                    _ => {}
                }
                if progress {
                    t.last_progress = e.at;
                }
                if steering {
                    t.entries.clear();
                }
                if let Some(item) = item {
                    t.entries.push_back(Entry { at: e.at, item });
                    while t.entries.len() > self.window {
                        t.entries.pop_front();
                    }
                }
            }
            Event::TaskCompleted { task_id, .. }
            | Event::TaskFailed { task_id, .. }
            | Event::TaskCancelled { task_id }
            | Event::TaskReleased { task_id, .. }
            | Event::TaskRetryScheduled { task_id, .. }
            | Event::TaskLeaseExpired { task_id, .. } => {
                self.tasks.remove(task_id);
            }
            _ => {}
        }
    }

    /// The trajectory of `task`, if it is running and has steps.
    pub fn get(&self, task: TaskId) -> Option<&Trajectory> {
        self.tasks.get(&task)
    }

    /// Every tracked trajectory.
    pub fn iter(&self) -> impl Iterator<Item = &Trajectory> {
        self.tasks.values()
    }

    /// Forgets what was seen of `task` since its last steering (after a steer, the detector waits
    /// for new behaviour instead of firing on the same window again).
    pub fn reset(&mut self, task: TaskId) {
        if let Some(t) = self.tasks.get_mut(&task) {
            t.entries.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use omoi_core::{Cursor, StoredEvent};
    use serde_json::json;

    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    fn step(task: TaskId, agent: AgentId, secs: i64, action: &str, detail: Value) -> StoredEvent {
        let event = Event::AgentStep { task_id: task, agent_id: agent, step: 0, action: action.into(), detail };
        StoredEvent { cursor: Cursor(0), at: at(secs), event }
    }

    #[test]
    fn steps_become_actions_observations_messages_and_context_window_errors() {
        let (task, agent) = (TaskId::new(), AgentId::new());
        let mut book = Trajectories::new(20);
        book.observe(&step(task, agent, 0, "model", json!({"text": "thinking", "tool_calls": ["run_command"]})));
        book.observe(&step(task, agent, 1, "tool_call", json!({"name": "run_command", "input": {"command": "ls"}})));
        book.observe(&step(
            task,
            agent,
            2,
            "tool_result",
            json!({"name": "run_command", "is_error": false, "output": "a"}),
        ));
        book.observe(&step(task, agent, 3, "model", json!({"text": "done?", "tool_calls": []})));
        book.observe(&step(
            task,
            agent,
            4,
            "model_error",
            json!({"error": "invalid request (400): prompt is too long"}),
        ));
        let items: Vec<Item> = book.get(task).unwrap().entries.iter().map(|e| e.item.clone()).collect();
        assert_eq!(items.len(), 4, "a model turn that calls tools is not an item: {items:?}");
        assert!(matches!(&items[0], Item::Action(a) if a.starts_with("run_command")));
        assert!(matches!(&items[1], Item::Observation { is_error: false, .. }));
        assert_eq!(items[2], Item::Message("done?".into()));
        assert_eq!(items[3], Item::ContextWindowError);
        assert_eq!(book.get(task).unwrap().steps, 5);
    }

    #[test]
    fn file_changes_test_runs_and_finish_are_progress_and_reads_are_not() {
        let (task, agent) = (TaskId::new(), AgentId::new());
        let mut book = Trajectories::new(20);
        book.observe(&step(task, agent, 0, "tool_call", json!({"name": "read_file", "input": {"path": "a"}})));
        book.observe(&step(
            task,
            agent,
            5,
            "tool_result",
            json!({"name": "read_file", "is_error": false, "output": "x"}),
        ));
        assert_eq!(book.get(task).unwrap().last_progress, at(0), "reading is not progress");
        book.observe(&step(
            task,
            agent,
            10,
            "tool_call",
            json!({"name": "run_command", "input": {"command": "pytest -q"}}),
        ));
        book.observe(&step(
            task,
            agent,
            20,
            "tool_result",
            json!({"name": "run_command", "is_error": true, "output": "1 failed"}),
        ));
        assert_eq!(book.get(task).unwrap().last_progress, at(20), "a test result, even a failing one");
        book.observe(&step(task, agent, 30, "tool_call", json!({"name": "write_file", "input": {"path": "a"}})));
        book.observe(&step(
            task,
            agent,
            31,
            "tool_result",
            json!({"name": "write_file", "is_error": false, "output": "ok"}),
        ));
        assert_eq!(book.get(task).unwrap().last_progress, at(31));
        book.observe(&step(task, agent, 40, "tool_call", json!({"name": "finish", "input": {}})));
        assert_eq!(book.get(task).unwrap().last_progress, at(40));
    }

    #[test]
    fn steering_starts_a_fresh_window_a_new_agent_a_fresh_trajectory_and_an_ended_task_is_forgotten() {
        let (task, agent) = (TaskId::new(), AgentId::new());
        let mut book = Trajectories::new(3);
        for i in 0..5 {
            book.observe(&step(task, agent, i, "tool_call", json!({"name": "ls", "input": {"n": i}})));
        }
        assert_eq!(book.get(task).unwrap().entries.len(), 3, "bounded window");
        book.observe(&step(task, agent, 6, "steering", json!({"message": "focus"})));
        assert!(book.get(task).unwrap().entries.is_empty());
        assert!(book.get(task).unwrap().recent_text.iter().all(|l| !l.contains("focus")));
        let other = AgentId::new();
        book.observe(&step(task, other, 7, "tool_call", json!({"name": "ls", "input": {}})));
        let t = book.get(task).unwrap();
        assert_eq!((t.agent_id, t.started, t.entries.len()), (other, at(7), 1));
        let done =
            StoredEvent { cursor: Cursor(0), at: at(8), event: Event::TaskCompleted { task_id: task, holder: other } };
        book.observe(&done);
        assert!(book.get(task).is_none());
    }
}
