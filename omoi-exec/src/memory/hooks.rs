//! The few calls the executors make: build and record a task's context before the run, write
//! its lessons after. A memory failure is logged and never fails the task.

use omoi_core::{AgentId, Event, EventStore, Task, TaskDefinition, TaskId};
use serde_json::{Value, json};
use tracing::warn;

use super::{MemoryService, SourceFiles, TaskContext, TrajectoryTap, lessons};

/// The context section for `task`'s prompt (empty without a memory service or on failure),
/// recorded in the trajectory as the `context` step (step 0, before the agent's own steps).
pub async fn context_for(
    memory: Option<&MemoryService>,
    task: &Task,
    agent_id: AgentId,
    files: &dyn SourceFiles,
    events: &dyn EventStore,
) -> String {
    let Some(memory) = memory else { return String::new() };
    recorded(memory.task_context(task, files).await, task.id, agent_id, events).await
}

/// Like [`context_for`], for work that is not a task (a spec phase run under `run_id`): the
/// memories relevant to `query`.
pub async fn context_for_query(
    memory: Option<&MemoryService>,
    query: &str,
    run_id: TaskId,
    agent_id: AgentId,
    files: &dyn SourceFiles,
    events: &dyn EventStore,
) -> String {
    let Some(memory) = memory else { return String::new() };
    recorded(memory.query_context(query, files).await, run_id, agent_id, events).await
}

async fn recorded(
    ctx: Result<TaskContext, super::MemoryError>,
    task_id: TaskId,
    agent_id: AgentId,
    events: &dyn EventStore,
) -> String {
    let ctx = match ctx {
        Ok(ctx) => ctx,
        Err(e) => {
            warn!(error = %e, "building the memory context failed; the task runs without it");
            return String::new();
        }
    };
    let step = Event::AgentStep { task_id, agent_id, step: 0, action: "context".into(), detail: record(&ctx) };
    if let Err(e) = events.append_events(vec![step]).await {
        warn!(error = %e, "recording the task context failed");
    }
    ctx.text
}

/// What the trajectory records of a context: everything but the text.
pub fn record(ctx: &TaskContext) -> Value {
    json!({
        "requirements": ctx.requirements,
        "design": ctx.design,
        "feedback": ctx.feedback,
        "memories": ctx.memories.iter().map(|m| json!({
            "id": m.id,
            "kind": m.kind,
            "similarity": m.similarity,
            "score": m.score,
            "stale": m.stale,
            "citations": m.citations,
        })).collect::<Vec<_>>(),
        "left_out": ctx.left_out,
        "memory_tokens": ctx.memory_tokens,
    })
}

/// Learns from the finished run of `def` recorded by `tap`; returns what was written, for the
/// task's result (`null` without a memory service or on failure).
pub async fn learn_from(
    memory: Option<&MemoryService>,
    def: &TaskDefinition,
    metadata: Value,
    summary: &str,
    tap: &TrajectoryTap,
    files: &dyn SourceFiles,
) -> Value {
    let Some(memory) = memory else { return Value::Null };
    let found = lessons(def, summary, &tap.steps(), files).await;
    match memory.learn(found, metadata).await {
        Ok(learned) => json!(learned),
        Err(e) => {
            warn!(error = %e, "writing the task's lessons failed");
            Value::Null
        }
    }
}
