//! The SQLite adapter against every conformance suite, each test on a fresh database file.

use std::cell::RefCell;
use std::sync::Arc;

use omoi_core::testkit::ManualClock;
use omoi_store::SqliteStore;
use tempfile::TempDir;

thread_local! {
    /// Each test's database directory, removed when the test's thread ends (after its store).
    static DIRS: RefCell<Vec<TempDir>> = const { RefCell::new(Vec::new()) };
}

async fn open(clock: Arc<ManualClock>, dims: Option<usize>) -> SqliteStore {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("omoi.db");
    DIRS.with(|d| d.borrow_mut().push(dir));
    let builder = SqliteStore::builder(path).clock(clock);
    let builder = match dims {
        Some(d) => builder.dimensions(d),
        None => builder,
    };
    builder.open().await.expect("open sqlite store")
}

async fn store(clock: Arc<ManualClock>) -> Option<Arc<SqliteStore>> {
    Some(Arc::new(open(clock, None).await))
}

async fn three_dims(clock: Arc<ManualClock>) -> Option<Arc<SqliteStore>> {
    Some(Arc::new(open(clock, Some(3)).await))
}

omoi_core::task_store_suite!(store);
omoi_core::spec_store_suite!(store);
omoi_core::agent_store_suite!(store);
omoi_core::event_store_suite!(store);
omoi_core::memory_store_suite!(three_dims);
omoi_core::intervention_store_suite!(store);
omoi_core::access_store_suite!(store);
omoi_core::discovery_store_suite!(store);

/// Behaviour specific to the SQLite adapter: several stores (as several processes would) on one
/// file, errors at open, the persisted embedding dimension.
mod file {
    use std::collections::HashSet;
    use std::time::Duration;

    use futures::StreamExt;
    use omoi_core::{
        AgentId, ClaimRequest, Completion, Cursor, Event, EventStore, MemoryKind, MemoryStore, NewMemory, NewTask,
        StoreError, TaskStore,
    };

    use super::*;

    /// Two stores on one file claim from the same queue: every task exactly once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn two_stores_on_one_file_claim_each_task_exactly_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shared.db");
        let a = SqliteStore::open(&path).await.unwrap();
        let b = SqliteStore::open(&path).await.unwrap();
        let tasks: Vec<NewTask> = (0..400).map(|i| NewTask::new(format!("t{i}"))).collect();
        a.insert_tasks(tasks).await.unwrap();
        let mut workers = Vec::new();
        for store in [a.clone(), b.clone(), a.clone(), b.clone()] {
            workers.push(tokio::spawn(async move {
                let holder = AgentId::new();
                let mut mine = Vec::new();
                loop {
                    let req = ClaimRequest::new(holder, 7, Duration::from_secs(60));
                    let claimed = match store.claim(&req).await {
                        Ok(c) => c,
                        Err(e) if e.is_retryable() => continue,
                        Err(e) => panic!("{e}"),
                    };
                    if claimed.is_empty() {
                        break;
                    }
                    let items = claimed.iter().map(|c| (c.task.id, c.lease.token, Completion::default())).collect();
                    assert!(store.complete_many(items).await.unwrap().iter().all(Result::is_ok));
                    mine.extend(claimed.into_iter().map(|c| c.task.id));
                }
                mine
            }));
        }
        let mut all = Vec::new();
        for w in workers {
            all.extend(w.await.unwrap());
        }
        assert_eq!(all.len(), 400, "every task claimed once");
        assert_eq!(all.iter().collect::<HashSet<_>>().len(), 400, "no task claimed twice");
    }

    /// A subscriber of one store sees events committed through another store on the same file
    /// (the polling backstop), in order.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn subscriber_sees_events_written_by_another_store_on_the_same_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shared.db");
        let reader = SqliteStore::open(&path).await.unwrap();
        let writer = SqliteStore::open(&path).await.unwrap();
        let mut stream = reader.subscribe(Cursor::START).await.unwrap();
        let agent = AgentId::new();
        for i in 0..5 {
            let e =
                Event::MonitorIntervention { agent_id: agent, severity: "guidance".into(), message: format!("m{i}") };
            writer.append_events(vec![e]).await.unwrap();
        }
        let mut got = Vec::new();
        for _ in 0..5 {
            let e = tokio::time::timeout(Duration::from_secs(5), stream.next()).await.unwrap().unwrap().unwrap();
            got.push(e.cursor);
        }
        assert_eq!(
            got,
            writer.read_events(Cursor::START, 10).await.unwrap().iter().map(|e| e.cursor).collect::<Vec<_>>()
        );
    }

    /// A path whose directory does not exist is a mistake, not an outage: `InvalidInput` naming
    /// the directory, and not retryable.
    #[tokio::test]
    async fn a_missing_directory_is_named_and_not_retryable() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-such-dir");
        let path = missing.join("omoi.db");
        let err = SqliteStore::open(&path).await.unwrap_err();
        assert!(matches!(err, StoreError::InvalidInput(_)), "{err}");
        assert!(!err.is_retryable());
        assert!(err.to_string().contains(&format!("directory {} does not exist", missing.display())), "{err}");
    }

    /// A file that cannot be opened (here: the path is a directory) is `Unavailable`, naming
    /// the path.
    #[tokio::test]
    async fn unopenable_file_is_unavailable_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a-directory");
        std::fs::create_dir(&path).unwrap();
        let err = SqliteStore::open(&path).await.unwrap_err();
        assert!(matches!(err, StoreError::Unavailable { backend: "sqlite", .. }), "{err}");
        assert!(err.to_string().contains(&path.display().to_string()), "{err}");
    }

    /// The embedding dimension is kept in the file: reopening with another one is refused.
    #[tokio::test]
    async fn embedding_dimension_is_persisted_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("memories.db");
        let store = SqliteStore::open(&path).await.unwrap();
        store.put_memory(NewMemory::new(MemoryKind::Learning, "four dims", vec![1.0, 0.0, 0.0, 0.0])).await.unwrap();
        drop(store);
        let again = SqliteStore::open(&path).await.unwrap();
        let err = again.put_memory(NewMemory::new(MemoryKind::Learning, "three", vec![1.0, 0.0, 0.0])).await;
        assert!(matches!(err, Err(StoreError::DimensionMismatch { expected: 4, got: 3 })), "{err:?}");
        let err = SqliteStore::builder(&path).dimensions(8).open().await.unwrap_err();
        assert!(matches!(err, StoreError::DimensionMismatch { expected: 4, got: 8 }), "{err}");
    }
}

/// A row this adapter cannot decode (written by something else) never stops the queue.
mod quarantine {
    use std::time::Duration;

    use omoi_core::testkit::fixtures::task;
    use omoi_core::{ClaimRequest, TaskId, TaskState, TaskStore};
    use sqlx::Connection;

    use super::*;

    async fn raw(store: &SqliteStore) -> sqlx::SqliteConnection {
        sqlx::SqliteConnection::connect(&format!("sqlite://{}", store.path().display())).await.unwrap()
    }

    async fn corrupt(conn: &mut sqlx::SqliteConnection, id: TaskId) {
        sqlx::query("UPDATE tasks SET def = '{\"title\": 5}' WHERE id = ?1")
            .bind(id.to_string())
            .execute(conn)
            .await
            .unwrap();
    }

    async fn raw_state(conn: &mut sqlx::SqliteConnection, id: TaskId) -> (String, String) {
        sqlx::query_as("SELECT state, coalesce(last_error, '') FROM tasks WHERE id = ?1")
            .bind(id.to_string())
            .fetch_one(conn)
            .await
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unreadable_row_is_dead_lettered_and_never_stops_a_claim_or_the_sweep() {
        let clock = ManualClock::new();
        let store = open(clock.clone(), None).await;
        let mut conn = raw(&store).await;
        let (bad, good) = (task("bad"), task("good"));
        let dependent = task("after bad").depends_on([bad.id]);
        store.insert_tasks(vec![bad.clone(), good.clone(), dependent.clone()]).await.unwrap();
        corrupt(&mut conn, bad.id).await;
        let req = ClaimRequest::new(omoi_core::AgentId::new(), 10, Duration::from_secs(30));
        let claimed = store.claim(&req).await.expect("the claim succeeds");
        assert_eq!(claimed.iter().map(|c| c.task.id).collect::<Vec<_>>(), vec![good.id]);
        let (state, error) = raw_state(&mut conn, bad.id).await;
        assert_eq!(state, "failed");
        assert!(error.starts_with("quarantined: the stored row cannot be read"), "{error}");
        assert_eq!(store.get_task(dependent.id).await.unwrap().state, TaskState::Blocked);

        let (leased_bad, leased_good) = (task("leased bad"), task("leased good"));
        store.insert_tasks(vec![leased_bad.clone(), leased_good.clone()]).await.unwrap();
        assert_eq!(store.claim(&req).await.unwrap().len(), 2);
        corrupt(&mut conn, leased_bad.id).await;
        clock.advance(Duration::from_secs(31));
        let mut swept = store.reclaim_expired().await.expect("the sweep succeeds");
        swept.sort();
        let mut expected = vec![good.id, leased_bad.id, leased_good.id];
        expected.sort();
        assert_eq!(swept, expected);
        assert_eq!(raw_state(&mut conn, leased_bad.id).await.0, "failed");
        assert_eq!(store.get_task(leased_good.id).await.unwrap().state, TaskState::Ready);
    }
}
