//! Races on one Postgres store: concurrent claimers never push a concurrency key over its limit,
//! and events written by concurrent transactions are never skipped by a live subscriber.

mod pg_common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use omoi_core::testkit::fixtures::task;
use omoi_core::{AgentId, ClaimRequest, Completion, Cursor, Event, EventStore, SystemClock, TaskId, TaskStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claimers_never_exceed_a_concurrency_limit() {
    const TASKS: usize = 300;
    const LIMIT: u32 = 3;
    let Some(store) = pg_common::store(Arc::new(SystemClock), 3).await else { return };
    let store = Arc::new(store);
    let start = store.last_cursor().await.unwrap();
    let batch: Vec<_> = (0..TASKS)
        .map(|i| {
            let key = if i % 3 == 0 { "repo-b" } else { "repo-a" };
            task(&format!("keyed {i}")).concurrency(key, LIMIT)
        })
        .collect();
    let key_of: HashMap<TaskId, String> =
        batch.iter().map(|t| (t.id, t.def.concurrency.as_ref().unwrap().key.clone())).collect();
    store.insert_tasks(batch).await.unwrap();
    let mut workers = Vec::new();
    for _ in 0..12 {
        let store = store.clone();
        workers.push(tokio::spawn(async move {
            let req = ClaimRequest::new(AgentId::new(), 4, Duration::from_secs(300));
            let mut idle = 0;
            loop {
                let claimed = store.claim(&req).await.unwrap();
                if claimed.is_empty() {
                    if store.ready_count().await.unwrap() == 0 {
                        let open = store.count_tasks(None).await.unwrap();
                        let leased = open.get(&omoi_core::TaskState::Claimed).copied().unwrap_or(0);
                        if leased == 0 {
                            return;
                        }
                    }
                    idle += 1;
                    assert!(idle < 20_000, "starved");
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
                let items = claimed.iter().map(|c| (c.task.id, c.lease.token, Completion::default())).collect();
                for r in store.complete_many(items).await.unwrap() {
                    r.unwrap();
                }
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    // Replay the log in cursor (= commit) order: leases per key at every point in time.
    let events = store.read_events(start, 100_000).await.unwrap();
    let mut leased: HashMap<&str, u32> = HashMap::new();
    let (mut peak, mut claims) = (0, 0);
    for e in &events {
        match &e.event {
            Event::TaskClaimed { task_id, .. } => {
                let n = leased.entry(key_of[task_id].as_str()).or_default();
                *n += 1;
                peak = peak.max(*n);
                claims += 1;
                assert!(*n <= LIMIT, "key {} had {n} leases at cursor {}", key_of[task_id], e.cursor);
            }
            Event::TaskCompleted { task_id, .. } => *leased.get_mut(key_of[task_id].as_str()).unwrap() -= 1,
            _ => {}
        }
    }
    assert_eq!(claims, TASKS, "each task claimed once");
    assert_eq!(peak, LIMIT, "the limit was reached, so the race was real");
    Arc::try_unwrap(store).unwrap().drop_schema().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_live_subscriber_sees_every_event_of_concurrent_writers_in_cursor_order() {
    const WRITERS: usize = 8;
    const EACH: usize = 60;
    let Some(store) = pg_common::store(Arc::new(SystemClock), 3).await else { return };
    let store = Arc::new(store);
    let start = store.last_cursor().await.unwrap();
    let mut stream = store.subscribe(start).await.unwrap();
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..EACH {
                // Mixed transaction sizes: state changes with several events and single appends.
                if i % 2 == 0 {
                    store.insert_tasks(vec![task(&format!("w{w} t{i}")), task(&format!("w{w} u{i}"))]).await.unwrap();
                } else {
                    let e = Event::MonitorIntervention {
                        agent_id: AgentId::new(),
                        severity: "guidance".into(),
                        message: format!("w{w} m{i}"),
                    };
                    store.append_events(vec![e]).await.unwrap();
                }
            }
        }));
    }
    let total = WRITERS * (EACH / 2 * 2 + EACH / 2);
    let mut seen = Vec::with_capacity(total);
    while seen.len() < total {
        let e = tokio::time::timeout(Duration::from_secs(20), stream.next())
            .await
            .expect("event within 20 s")
            .expect("stream open")
            .expect("no stream error");
        seen.push(e.cursor);
    }
    for w in writers {
        w.await.unwrap();
    }
    let expected: Vec<Cursor> = (1..=total as u64).map(|i| Cursor(start.0 + i)).collect();
    assert_eq!(seen, expected, "gap-free, in order, no repeats");
    Arc::try_unwrap(store).unwrap().drop_schema().await.unwrap();
}
