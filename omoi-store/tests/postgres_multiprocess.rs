//! Four worker processes drain one Postgres queue of 2,000 tasks with dependencies: every task
//! completes exactly once, and none is claimed before all its dependencies completed.
//!
//! The test binary re-executes itself: `worker_process` (ignored, so it only runs when asked
//! for) is the worker's entry point, configured through environment variables.

mod pg_common;

use std::collections::HashMap;
use std::time::Duration;

use omoi_core::testkit::fixtures::layered;
use omoi_core::{
    AgentId, ClaimRequest, Completion, Cursor, Event, EventStore, TaskFilter, TaskId, TaskState, TaskStore,
};
use omoi_store::PostgresStore;

const SCHEMA_VAR: &str = "OMOI_MP_SCHEMA";
const WORKERS: usize = 4;
const LAYERS: usize = 20;
const WIDTH: usize = 100;

async fn connect(url: String, schema: &str) -> PostgresStore {
    PostgresStore::builder(url).schema(schema).max_connections(4).connect().await.expect("connect")
}

/// A worker: claims up to 16 tasks, completes them in one batch, until nothing is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "entry point of the worker processes started by four_processes_drain_a_layered_graph_exactly_once"]
async fn worker_process() {
    let (Ok(schema), Some(url)) = (std::env::var(SCHEMA_VAR), pg_common::url()) else {
        eprintln!("worker_process runs only when started by the multiprocess test");
        return;
    };
    let store = connect(url, &schema).await;
    let holder = AgentId::new();
    let req = ClaimRequest::new(holder, 16, Duration::from_secs(300));
    let mut done = 0usize;
    let mut idle = Duration::from_millis(5);
    loop {
        let claimed = store.claim(&req).await.expect("claim");
        if claimed.is_empty() {
            let counts = store.count_tasks(None).await.expect("count");
            let open: u64 = [TaskState::Waiting, TaskState::Ready, TaskState::Claimed, TaskState::Running]
                .iter()
                .filter_map(|s| counts.get(s))
                .sum();
            if open == 0 {
                break;
            }
            tokio::time::sleep(idle).await;
            idle = (idle * 2).min(Duration::from_millis(100));
            continue;
        }
        idle = Duration::from_millis(5);
        let items = claimed.iter().map(|c| (c.task.id, c.lease.token, Completion::default())).collect();
        for r in store.complete_many(items).await.expect("complete_many") {
            r.expect("completion of a task this worker holds");
            done += 1;
        }
    }
    println!("\nOMOI_WORKER {holder} completed {done} tasks");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_drain_a_layered_graph_exactly_once() {
    let Some(url) = pg_common::url() else { return };
    pg_common::sweep_old_schemas(&url).await;
    let schema = pg_common::schema_name();
    let store = connect(url.clone(), &schema).await;
    let start = store.last_cursor().await.unwrap();
    let tasks = layered(LAYERS, WIDTH);
    let deps: HashMap<TaskId, Vec<TaskId>> = tasks.iter().map(|t| (t.id, t.dependencies.clone())).collect();
    store.insert_tasks(tasks).await.expect("insert 2,000 tasks");

    let exe = std::env::current_exe().expect("test binary path");
    let mut children = Vec::new();
    for _ in 0..WORKERS {
        children.push(
            tokio::process::Command::new(&exe)
                .args(["--exact", "worker_process", "--ignored", "--nocapture", "--test-threads=1"])
                .env(SCHEMA_VAR, &schema)
                .env("OMOI_TEST_POSTGRES_URL", &url)
                .stdout(std::process::Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .expect("spawn worker process"),
        );
    }
    let mut per_worker = Vec::new();
    for child in children {
        let out = tokio::time::timeout(Duration::from_secs(300), child.wait_with_output())
            .await
            .expect("worker finished within 300 s")
            .expect("worker output");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "worker failed: {stdout}");
        let line = stdout.lines().find(|l| l.starts_with("OMOI_WORKER ")).expect("worker summary line").to_owned();
        per_worker.push(line);
    }

    let all = store.list_tasks(&TaskFilter::default()).await.unwrap();
    assert_eq!(all.len(), LAYERS * WIDTH);
    assert!(all.iter().all(|t| t.state == TaskState::Completed && t.attempts == 1), "every task completed once");

    // The event log, in cursor (= commit) order.
    let mut events = Vec::new();
    let mut cursor: Cursor = start;
    loop {
        let page = store.read_events(cursor, 5000).await.unwrap();
        let Some(last) = page.last() else { break };
        cursor = last.cursor;
        events.extend(page);
    }
    let mut claimed: HashMap<TaskId, (Cursor, chrono::DateTime<chrono::Utc>, AgentId)> = HashMap::new();
    let mut completed: HashMap<TaskId, (Cursor, chrono::DateTime<chrono::Utc>)> = HashMap::new();
    for e in &events {
        match &e.event {
            Event::TaskClaimed { task_id, holder, .. } => {
                assert!(claimed.insert(*task_id, (e.cursor, e.at, *holder)).is_none(), "task {task_id} claimed twice");
            }
            Event::TaskCompleted { task_id, .. } => {
                assert!(completed.insert(*task_id, (e.cursor, e.at)).is_none(), "task {task_id} completed twice");
            }
            _ => {}
        }
    }
    assert_eq!(claimed.len(), LAYERS * WIDTH, "every task claimed exactly once");
    assert_eq!(completed.len(), LAYERS * WIDTH, "every task completed exactly once");
    // Cursors follow commit order (see the adapter's docs), so a claim's cursor above its
    // dependency's completion cursor proves the claim committed after the completion. The
    // events' `at` stamps cannot prove it: each process reads its own clock before its round
    // trip, so a claim stamped a little earlier may still have run after the completion.
    for (task, task_deps) in &deps {
        let (claim_cursor, _, _) = claimed[task];
        for d in task_deps {
            let (done_cursor, _) = completed[d];
            assert!(claim_cursor > done_cursor, "task {task} claimed (cursor {claim_cursor}) before {d} completed");
        }
    }
    let holders: std::collections::HashSet<AgentId> = claimed.values().map(|c| c.2).collect();
    assert!(holders.len() >= 2, "work spread over processes: {per_worker:?}");
    assert!(holders.len() <= WORKERS);
    eprintln!("{}", per_worker.join("\n"));
    store.drop_schema().await.unwrap();
}
