//! Live progress for the quickstart: phase scores, agent tool calls (a repeated call shown
//! once, with its count), memories given and learned, the monitors' findings and steers, and a
//! task board, printed from the store's event stream as things happen.

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt;
use omoi_core::memory::Citation;
use omoi_core::{AgentId, Cursor, Event, EventStore, MemoryId, MemoryStore, SpecId, TaskId, TaskStore};
use omoi_examples::board_line;
use serde_json::Value;

/// The last tool call of each task and how many times it was repeated since.
#[derive(Default)]
struct Repeats(HashMap<TaskId, (String, u32)>);

impl Repeats {
    /// Whether `call` repeats the task's previous call (then it is only counted).
    fn repeated(&mut self, task: TaskId, call: String, who: &str) -> bool {
        match self.0.get_mut(&task) {
            Some((last, n)) if *last == call => {
                *n += 1;
                true
            }
            _ => {
                self.flush(task, who);
                self.0.insert(task, (call, 0));
                false
            }
        }
    }

    /// Prints how often the task's last call was repeated, if it was.
    fn flush(&mut self, task: TaskId, who: &str) {
        if let Some((_, n)) = self.0.get_mut(&task).filter(|(_, n)| *n > 0) {
            println!("      · {who:<8} … the same call {n} more time{}", if *n == 1 { "" } else { "s" });
            *n = 0;
        }
    }
}

/// `path:start-end @hash` of a citation.
fn cited(c: &Citation) -> String {
    format!("{}:{}-{} sha256 {}", c.path, c.start_line, c.end_line, c.content_hash.chars().take(12).collect::<String>())
}

/// Prints events until the stream ends or the task is aborted.
pub(crate) async fn print(
    tasks: Arc<dyn TaskStore>,
    events: Arc<dyn EventStore>,
    memories: Arc<dyn MemoryStore>,
    spec_for_board: Arc<parking_lot::Mutex<Option<SpecId>>>,
    workers: Arc<parking_lot::Mutex<HashMap<AgentId, String>>>,
) {
    let Ok(mut stream) = events.subscribe(Cursor::START).await else { return };
    let mut names: HashMap<TaskId, String> = HashMap::new();
    let mut repeats = Repeats::default();
    while let Some(Ok(e)) = stream.next().await {
        let task_name = |id: &TaskId, names: &HashMap<TaskId, String>| names.get(id).cloned();
        let moved = match &e.event {
            Event::SpecPhaseStarted { phase, attempt, .. } => {
                println!("  ▸ {phase:<12} attempt {attempt}");
                None
            }
            Event::SpecPhaseEvaluated { score, passed, .. } => {
                println!("    score {score:.2} {}", if *passed { "✓" } else { "✗ below the 0.70 pass mark" });
                None
            }
            Event::SpecPhaseRetry { feedback, .. } => {
                println!("    retrying with the evaluator's feedback, e.g.:");
                for item in feedback.lines().filter(|l| l.starts_with("  - ")).take(3) {
                    println!("      {}", clip(item.trim_start(), 100));
                }
                None
            }
            Event::SpecPhaseCompleted { phase, score, attempts, .. } => {
                println!(
                    "  ✓ {phase} passed with {score:.2} after {attempts} attempt{}",
                    if *attempts == 1 { "" } else { "s" }
                );
                None
            }
            Event::SpecPhaseFailed { phase, error, .. } => {
                println!("  ✗ {phase} failed: {error}");
                None
            }
            Event::SpecSynced { tickets_created, tasks_created, .. } => {
                println!("  ✓ synced: {tickets_created} tickets, {tasks_created} tasks created");
                None
            }
            Event::TaskCreated { task_id, .. } => {
                if let Ok(t) = tasks.get_task(*task_id).await {
                    names.insert(*task_id, t.links.local_id.unwrap_or_else(|| t.def.title.clone()));
                }
                None
            }
            Event::AgentStep { task_id, action, detail, .. } if action == "tool_call" => {
                let who = task_name(task_id, &names).unwrap_or_else(|| "explore".into());
                let tool = detail["name"].as_str().unwrap_or_default();
                if !repeats.repeated(*task_id, detail.to_string(), &who) {
                    println!("      · {who:<8} {tool} {}", clip(&brief_input(tool, &detail["input"]), 70));
                }
                None
            }
            Event::AgentStep { task_id, action, detail, .. } if action == "context" => {
                let who = task_name(task_id, &names).unwrap_or_else(|| "explore".into());
                let given = detail["memories"].as_array().cloned().unwrap_or_default();
                if !given.is_empty() {
                    println!(
                        "      ◇ {who:<8} starts with {} memor{}:",
                        given.len(),
                        if given.len() == 1 { "y" } else { "ies" }
                    );
                }
                for m in &given {
                    let Ok(id) = serde_json::from_value::<MemoryId>(m["id"].clone()) else { continue };
                    let Ok(memory) = memories.get_memory(id).await else { continue };
                    let first = memory.text.lines().next().unwrap_or_default();
                    let stale = if m["stale"] == Value::Bool(true) { " STALE" } else { "" };
                    println!("          [{}]{stale} {}", memory.kind, clip(first, 84));
                    if let Some(fix) = memory.text.lines().find(|l| l.starts_with("Fix (")) {
                        println!("            {}", clip(fix, 100));
                    }
                    for c in &memory.citations {
                        println!("            cites {}", cited(c));
                    }
                }
                None
            }
            Event::AgentStep { task_id, action, detail, .. } if action == "steering" => {
                let who = task_name(task_id, &names).unwrap_or_default();
                repeats.flush(*task_id, &who);
                println!(
                    "      ↪ {who:<8} steered between turns ({} from {}): {}",
                    detail["severity"].as_str().unwrap_or_default(),
                    detail["from"].as_str().unwrap_or_default(),
                    clip(detail["message"].as_str().unwrap_or_default(), 90)
                );
                None
            }
            Event::AgentStep { task_id, action, detail, .. } if action == "model" => {
                let text = detail["text"].as_str().unwrap_or_default();
                if !text.is_empty() {
                    let who = task_name(task_id, &names).unwrap_or_else(|| "explore".into());
                    println!("      “ {who:<8} {}", clip(text, 110));
                }
                None
            }
            Event::MemoryStored { memory_id } => {
                if let Ok(m) = memories.get_memory(*memory_id).await {
                    let first = m.text.lines().next().unwrap_or_default();
                    println!("      ✎ learned [{}] {}", m.kind, clip(first, 90));
                }
                None
            }
            Event::MemoryReinforced { memory_id, reinforcements } => {
                println!("      ✎ reinforced memory {memory_id} ({reinforcements}×)");
                None
            }
            Event::MonitorStuckDetected { task_id, rule, repeats: n, .. } => {
                let who = task_name(task_id, &names).unwrap_or_default();
                repeats.flush(*task_id, &who);
                println!("      ⚠ {who:<8} stuck: {rule} ({n}×), found by the stuck detector");
                None
            }
            Event::InterventionRecorded { task_id: Some(task_id), severity, source, .. } => {
                let who = task_name(task_id, &names).unwrap_or_default();
                println!("      ⚑ {who:<8} intervention recorded: {severity} from {source}");
                None
            }
            Event::InterventionAcknowledged { task_id: Some(task_id), .. } => {
                let who = task_name(task_id, &names).unwrap_or_default();
                println!("      ✓ {who:<8} acknowledged the intervention");
                None
            }
            Event::AgentStep { task_id, action, detail, .. } if action == "refused" => {
                let who = task_name(task_id, &names).unwrap_or_else(|| "explore".into());
                println!("      · {who:<8} refused: {}", clip(detail["reason"].as_str().unwrap_or_default(), 80));
                None
            }
            Event::TaskClaimed { task_id, holder, .. } => {
                let w = workers.lock().get(holder).cloned().unwrap_or_else(|| "a worker".into());
                Some(format!("{} claimed by {w}", task_name(task_id, &names).unwrap_or_default()))
            }
            Event::TaskReady { task_id } => {
                Some(format!("{} is ready", task_name(task_id, &names).unwrap_or_default()))
            }
            Event::TaskCompleted { task_id, .. } => {
                Some(format!("{} completed", task_name(task_id, &names).unwrap_or_default()))
            }
            Event::TaskRetryScheduled { task_id, error, .. } => {
                Some(format!("{} will retry: {}", task_name(task_id, &names).unwrap_or_default(), clip(error, 80)))
            }
            Event::TaskFailed { task_id, error, .. } => {
                Some(format!("{} FAILED: {}", task_name(task_id, &names).unwrap_or_default(), clip(error, 80)))
            }
            Event::TaskBlocked { task_id, .. } => {
                Some(format!("{} is blocked", task_name(task_id, &names).unwrap_or_default()))
            }
            Event::DiscoveryRecorded { source_task, kind, .. } => {
                let who = task_name(source_task, &names).unwrap_or_default();
                println!("      ◆ {who:<8} discovery: {kind}");
                None
            }
            Event::DiscoveryBranchCreated { task_id, .. } => {
                Some(format!("{} branched (discovery)", task_name(task_id, &names).unwrap_or_default()))
            }
            Event::DiscoveryDeduplicated { of, .. } => {
                println!("      ◆ duplicate of {of:?}: nothing spawned");
                None
            }
            Event::DiscoveryRefused { reason, detail, .. } => {
                println!("      ◆ discovery refused ({reason}): {detail}");
                None
            }
            Event::DiscoveryResolved { discovery_id } => {
                println!("      ◆ discovery {discovery_id} resolved: its branch completed");
                None
            }
            _ => None,
        };
        if let Some(what) = moved {
            let spec = *spec_for_board.lock();
            if let Ok(counts) = tasks.count_tasks(spec).await {
                println!("  {what:<34} │ {}", board_line(&counts));
            }
        }
    }
}

fn brief_input(tool: &str, input: &serde_json::Value) -> String {
    let field = |k: &str| input.get(k).and_then(|v| v.as_str()).map(str::to_owned);
    match tool {
        "run_command" => field("command").unwrap_or_default(),
        "run_readonly" => input.get("argv").map(|a| a.to_string()).unwrap_or_default(),
        "search" => field("pattern").unwrap_or_default(),
        "finish" => field("summary").unwrap_or_default(),
        "report_discovery" => field("title").unwrap_or_default(),
        _ => field("path").unwrap_or_default(),
    }
}

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n { s.to_owned() } else { format!("{}…", s.chars().take(n).collect::<String>()) }
}
