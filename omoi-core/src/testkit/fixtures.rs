//! Fixture builders: task graphs, sync plans, the memory-search fixture.

use std::time::Duration;

use serde_json::json;

use crate::memory::{MemoryKind, NewMemory};
use crate::spec::{PlannedTask, PlannedTicket, SyncPlan};
use crate::task::{BackoffPolicy, NewTask, TaskDefinition};
use crate::{ExecutionMode, Priority};

/// A task with a fixed, jitter-free backoff of 10 s, 20 s, 40 s … (predictable in tests).
pub fn task(title: &str) -> NewTask {
    NewTask::new(title).backoff(BackoffPolicy::fixed(Duration::from_secs(10), 2.0, Duration::from_secs(300)))
}

/// `n` independent tasks.
pub fn independent(n: usize) -> Vec<NewTask> {
    (0..n).map(|i| task(&format!("task {i}")).input(json!({ "i": i }))).collect()
}

/// A chain `t0 ← t1 ← … ← t(n-1)`: each task depends on the previous one.
pub fn chain(n: usize) -> Vec<NewTask> {
    let mut out: Vec<NewTask> = Vec::with_capacity(n);
    for i in 0..n {
        let mut t = task(&format!("step {i}"));
        if let Some(prev) = out.last() {
            t = t.depends_on([prev.id]);
        }
        out.push(t);
    }
    out
}

/// A diamond: `top`, then `left` and `right` (both on `top`), then `join` (on both).
/// Returned in that order.
pub fn diamond() -> [NewTask; 4] {
    let top = task("top");
    let left = task("left").depends_on([top.id]);
    let right = task("right").depends_on([top.id]);
    let join = task("join").depends_on([left.id, right.id]);
    [top, left, right, join]
}

/// `layers` layers of `width` tasks; every task depends on two tasks of the layer before.
/// Deterministic; used by stress tests and benchmarks.
pub fn layered(layers: usize, width: usize) -> Vec<NewTask> {
    let mut out: Vec<NewTask> = Vec::with_capacity(layers * width);
    for l in 0..layers {
        for w in 0..width {
            let mut t = task(&format!("L{l}-{w}"));
            if l > 0 {
                let base = (l - 1) * width;
                let a = out[base + w].id;
                let b = out[base + (w + 1) % width].id;
                t = t.depends_on(if a == b { vec![a] } else { vec![a, b] });
            }
            out.push(t);
        }
    }
    out
}

/// A plan with two tickets and four tasks: TSK-001 → TSK-002 → TSK-004 and TSK-001 → TSK-003
/// → TSK-004, TSK-004 being validation.
pub fn sync_plan() -> SyncPlan {
    let ticket = |id: &str, title: &str| PlannedTicket {
        local_id: id.into(),
        title: title.into(),
        description: format!("{title} ticket"),
        priority: Priority::High,
        requirements: vec!["REQ-SLUG-FUNC-001".into()],
    };
    let task = |id: &str, ticket: &str, deps: &[&str], mode: ExecutionMode| PlannedTask {
        local_id: id.into(),
        ticket: Some(ticket.into()),
        depends_on: deps.iter().map(|d| (*d).to_owned()).collect(),
        def: TaskDefinition {
            title: format!("{id} work"),
            description: format!("do {id}"),
            mode,
            estimate_hours: Some(2.0),
            ..TaskDefinition::default()
        },
    };
    SyncPlan {
        tickets: vec![ticket("TKT-001", "Core"), ticket("TKT-002", "Tests")],
        tasks: vec![
            task("TSK-001", "TKT-001", &[], ExecutionMode::Implementation),
            task("TSK-002", "TKT-001", &["TSK-001"], ExecutionMode::Implementation),
            task("TSK-003", "TKT-001", &["TSK-001"], ExecutionMode::Implementation),
            task("TSK-004", "TKT-002", &["TSK-002", "TSK-003"], ExecutionMode::Validation),
        ],
    }
}

/// The memory-search fixture, with 3-dimensional embeddings, and its query:
/// `(memories, query text, query embedding)`.
///
/// Memories in order: `pool` (has every query term, far in vector space), `network` (no query
/// term, nearest vector), `conn` (one query term, second-nearest vector) and `noise` (neither).
/// Vector-only ranks network, conn, pool; keyword-only ranks pool, conn; hybrid RRF (k 60,
/// 0.6/0.4, missing at len + 10) ranks conn, the one both lists agree on, first.
pub fn memory_fixture() -> (Vec<NewMemory>, &'static str, Vec<f32>) {
    let m = |kind, text: &str, e: [f32; 3]| NewMemory::new(kind, text, e.to_vec());
    (
        vec![
            m(MemoryKind::ErrorFix, "database connection pool exhausted under heavy load", [0.2, 0.98, 0.0]),
            m(MemoryKind::Learning, "flaky network call fixed with exponential backoff", [0.95, 0.31, 0.0]),
            m(MemoryKind::Warning, "connection retries need jitter", [0.7, 0.71, 0.0]),
            m(MemoryKind::Decision, "chose tabs over spaces for makefiles", [-0.5, 0.0, 0.86]),
        ],
        "database connection pool",
        vec![1.0, 0.0, 0.0],
    )
}
