//! Races on one Postgres store: concurrent claimers never push a concurrency key over its limit,
//! and events written by concurrent transactions are never skipped by a live subscriber.

mod pg_common;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use omoi_core::testkit::fixtures::task;
use omoi_core::{AgentId, ClaimRequest, Completion, Cursor, Event, EventStore, SystemClock, TaskStore};

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
    // Sample the leases per key in single snapshots while the claimers race. (Cursor order is
    // the order in which transactions first wrote, not their commit order, so the log cannot
    // be replayed as a timeline of leases.)
    let mut peak = 0;
    let mut pool = sqlx::postgres::PgPoolOptions::new().max_connections(1);
    pool = pool.after_connect({
        let schema = store.schema().to_owned();
        move |conn, _| {
            let schema = schema.clone();
            Box::pin(async move {
                sqlx::query(sqlx::AssertSqlSafe(format!("SET search_path = {schema}, public"))).execute(conn).await?;
                Ok(())
            })
        }
    });
    let pool = pool.connect(&pg_common::url().unwrap()).await.unwrap();
    while workers.iter().any(|w| !w.is_finished()) {
        let counts: Vec<(String, i64)> = sqlx::query_as(
            "SELECT concurrency_key, count(*) FROM tasks WHERE state IN ('claimed', 'running') \
              AND concurrency_key IS NOT NULL GROUP BY concurrency_key",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        for (key, n) in counts {
            assert!(n <= i64::from(LIMIT), "key {key} had {n} leases at once");
            peak = peak.max(n);
        }
    }
    for w in workers {
        w.await.unwrap();
    }
    pool.close().await;
    let events = store.read_events(start, 100_000).await.unwrap();
    let claims = events.iter().filter(|e| matches!(e.event, Event::TaskClaimed { .. })).count();
    assert_eq!(claims, TASKS, "each task claimed once");
    assert_eq!(peak, i64::from(LIMIT), "the limit was reached, so the race was real");
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
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "in cursor order, no repeats");
    let log: Vec<Cursor> = store.read_events(start, total + 10).await.unwrap().iter().map(|e| e.cursor).collect();
    assert_eq!(seen, log, "the live subscriber saw exactly the log, nothing skipped");
    Arc::try_unwrap(store).unwrap().drop_schema().await.unwrap();
}

/// The promise behind cursors, against the race that breaks a plain sequence: transaction A
/// writes an event and stays open, B writes one after it and commits. A reader must not hand
/// out B's event while A can still commit below it; once A commits, both come in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_never_passes_an_event_of_a_transaction_still_in_flight() {
    use sqlx::Connection;
    let Some(store) = pg_common::store(Arc::new(SystemClock), 3).await else { return };
    let start = store.last_cursor().await.unwrap();
    let mut open = sqlx::PgConnection::connect(&pg_common::url().unwrap()).await.unwrap();
    let path = format!("SET search_path = {}, public", store.schema());
    sqlx::query(sqlx::AssertSqlSafe(path)).execute(&mut open).await.unwrap();
    let ev = |m: &str| Event::MonitorIntervention {
        agent_id: AgentId::new(),
        severity: "guidance".into(),
        message: m.into(),
    };
    sqlx::query("BEGIN").execute(&mut open).await.unwrap();
    let first: i64 = sqlx::query_scalar("SELECT omoi_emit(now(), $1)")
        .bind(serde_json::to_value(vec![ev("in flight")]).unwrap())
        .fetch_one(&mut open)
        .await
        .unwrap();
    let later = store.append_events(vec![ev("committed")]).await.unwrap()[0];
    assert!(later.0 > first as u64, "the later writer sorts above the open one");
    let read = store.read_events(start, 10).await.unwrap();
    assert!(read.iter().all(|e| e.cursor.0 < first as u64), "nothing past the open transaction: {read:?}");
    assert!(store.last_cursor().await.unwrap().0 < first as u64);
    sqlx::query("COMMIT").execute(&mut open).await.unwrap();
    let read: Vec<u64> = store.read_events(start, 10).await.unwrap().iter().map(|e| e.cursor.0).collect();
    assert_eq!(read, vec![first as u64, later.0], "both, in cursor order, once the first committed");
    store.drop_schema().await.unwrap();
}
