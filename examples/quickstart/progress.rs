//! Live progress for the quickstart: phase scores, agent tool calls and a task board, printed
//! from the store's event stream as things happen.

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt;
use omoi_core::{AgentId, Cursor, Event, EventStore, SpecId, TaskId, TaskStore};
use omoi_examples::board_line;

/// Prints events until the stream ends or the task is aborted.
pub(crate) async fn print(
    tasks: Arc<dyn TaskStore>,
    events: Arc<dyn EventStore>,
    spec_for_board: Arc<parking_lot::Mutex<Option<SpecId>>>,
    workers: Arc<parking_lot::Mutex<HashMap<AgentId, String>>>,
) {
    let Ok(mut stream) = events.subscribe(Cursor::START).await else { return };
    let mut names: HashMap<TaskId, String> = HashMap::new();
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
                println!("      · {who:<8} {tool} {}", clip(&brief_input(tool, &detail["input"]), 70));
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
