//! Faults: a database that is not there, and one restarted in the middle of a claim/complete
//! loop. Errors are typed and retryable; after retrying nothing is lost or done twice.

mod pg_common;

use std::collections::HashMap;
use std::time::Duration;

use omoi_core::testkit::fixtures::independent;
use omoi_core::{
    AgentId, ClaimRequest, ClaimedTask, Completion, Cursor, Event, EventStore, StoreError, SystemClock, TaskState,
    TaskStore,
};
use omoi_store::PostgresStore;
use tokio::sync::RwLock;

/// The restart test holds this exclusively; the other tests of this binary that use the
/// database hold it shared, so the restart never cuts them off.
static DATABASE: RwLock<()> = RwLock::const_new(());

#[tokio::test]
async fn unreachable_database_fails_with_a_clear_error_naming_the_redacted_url() {
    // Port 1 on loopback: nothing listens there, the connection is refused at once.
    // With a pool timeout of 10 minutes, the error can only come from the direct first attempt
    // (the outer timeout fails the test long before the pool would give up).
    let url = "postgres://omoi:hunter2@127.0.0.1:1/omoi_db";
    let err = tokio::time::timeout(
        Duration::from_secs(120),
        PostgresStore::builder(url).acquire_timeout(Duration::from_secs(600)).connect(),
    )
    .await
    .expect("a refused connection is reported at once, not after the pool's acquire timeout")
    .expect_err("nothing listens on port 1");
    assert!(err.is_retryable(), "{err}");
    assert!(err.to_string().to_lowercase().contains("refused"), "says the connection was refused: {err}");
    assert!(std::error::Error::source(&err).is_some(), "keeps the driver error as its source: {err:?}");
    assert!(matches!(err, StoreError::Unavailable { backend: "postgres", .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("postgres://omoi:***@127.0.0.1:1/omoi_db"), "names the URL: {text}");
    assert!(!text.contains("hunter2"), "leaks the password: {text}");
    assert!(!format!("{err:?}").contains("hunter2"), "leaks the password in Debug: {err:?}");
    let builder = PostgresStore::builder(url);
    assert!(!format!("{builder:?}").contains("hunter2"), "builder Debug leaks the password");
}

#[tokio::test]
async fn malformed_url_and_schema_are_invalid_input() {
    let err = PostgresStore::builder("not a url").connect().await.unwrap_err();
    assert!(matches!(err, StoreError::InvalidInput(_)), "{err}");
    let err = PostgresStore::builder("postgres://u:pw@127.0.0.1:1/d").schema("x; DROP").connect().await.unwrap_err();
    assert!(matches!(&err, StoreError::InvalidInput(m) if m.contains("schema")), "{err}");
    // The message states the rule the check applies: lowercase only.
    let err = PostgresStore::builder("postgres://u:pw@127.0.0.1:1/d").schema("Omoi").connect().await.unwrap_err();
    assert!(matches!(&err, StoreError::InvalidInput(m) if m.contains("lowercase")), "{err}");
}

/// Retries `op` while it fails with a retryable error, backing off from 50 ms to 1 s. Counts
/// the retryable errors seen.
async fn retry<T, F, Fut>(errors: &mut usize, mut op: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let mut delay = Duration::from_millis(50);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        match op().await {
            Err(e) if e.is_retryable() && tokio::time::Instant::now() < deadline => {
                *errors += 1;
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(1));
            }
            other => return other,
        }
    }
}

/// Completes a claimed task, retrying through outages. A completion whose commit outcome was
/// lost with the connection may in fact have committed: the retry then finds the lease gone
/// (`StaleLease`), and the task's state tells whether it is done.
async fn complete_surely(store: &PostgresStore, c: &ClaimedTask, errors: &mut usize) -> Result<(), StoreError> {
    let first = retry(errors, || store.complete(c.task.id, c.lease.token, Completion::default())).await;
    match first {
        Ok(_) => Ok(()),
        Err(StoreError::StaleLease { .. }) => {
            let task = retry(errors, || store.get_task(c.task.id)).await?;
            if task.state == TaskState::Completed {
                Ok(())
            } else {
                Err(StoreError::InvalidInput(format!("lease lost and task {} is {}", task.id, task.state)))
            }
        }
        Err(e) => Err(e),
    }
}

#[tokio::test]
async fn a_completion_retried_after_it_committed_is_recognized_as_done() {
    let _shared = DATABASE.read().await;
    let Some(store) = pg_common::store(std::sync::Arc::new(SystemClock), 3).await else { return };
    store.insert_tasks(independent(1)).await.unwrap();
    let c = store.claim(&ClaimRequest::new(AgentId::new(), 1, Duration::from_secs(60))).await.unwrap().remove(0);
    // The first call commits; pretend its answer was lost and the caller retries.
    store.complete(c.task.id, c.lease.token, Completion::default()).await.unwrap();
    let again = store.complete(c.task.id, c.lease.token, Completion::default()).await;
    assert!(matches!(again, Err(StoreError::StaleLease { .. })), "{again:?}");
    let mut errors = 0;
    complete_surely(&store, &c, &mut errors).await.expect("recognized as already completed");
    let done = store.read_events(Cursor::START, 100).await.unwrap();
    let completions = done.iter().filter(|e| matches!(e.event, Event::TaskCompleted { .. })).count();
    assert_eq!(completions, 1, "completed once, not twice");
    store.drop_schema().await.unwrap();
}

fn services_script() -> String {
    std::env::var("OMOI_SERVICES_SCRIPT")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/services").to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restart_mid_run_is_retryable_and_loses_nothing() {
    const N: usize = 400;
    let _exclusive = DATABASE.write().await;
    let Some(url) = pg_common::url() else { return };
    // A short acquire timeout, so the outage surfaces as errors instead of waits inside the pool.
    let store = PostgresStore::builder(url)
        .schema(pg_common::schema_name())
        .acquire_timeout(Duration::from_millis(100))
        .connect()
        .await
        .expect("connect");
    let tasks: Vec<_> = independent(N).into_iter().map(|t| t.max_attempts(10)).collect();
    store.insert_tasks(tasks).await.unwrap();
    let holder = AgentId::new();
    let req = ClaimRequest::new(holder, 5, Duration::from_secs(600));
    let mut errors = 0usize;
    let mut completed: HashMap<omoi_core::TaskId, usize> = HashMap::new();
    let mut restart: Option<tokio::task::JoinHandle<std::process::Output>> = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
    loop {
        assert!(tokio::time::Instant::now() < deadline, "loop did not finish; {} completed", completed.len());
        if restart.is_none() && completed.len() >= N / 20 {
            let script = services_script();
            restart = Some(tokio::spawn(async move {
                tokio::process::Command::new(script)
                    .arg("restart-postgres")
                    .output()
                    .await
                    .expect("run restart-postgres")
            }));
        }
        let claimed = match store.claim(&req).await {
            Ok(c) => c,
            Err(e) if e.is_retryable() => {
                errors += 1;
                // A claim whose answer was lost may have committed: take back this worker's own
                // leases (it holds none it knows of) so those tasks are not stranded.
                tokio::time::sleep(Duration::from_millis(100)).await;
                let _ = retry(&mut errors, || store.reclaim_holder(holder)).await.expect("reclaim own leases");
                continue;
            }
            Err(e) => panic!("claim failed with a non-retryable error: {e}"),
        };
        if claimed.is_empty() {
            let open = retry(&mut errors, || store.count_tasks(None)).await.unwrap();
            let left: u64 = open.iter().filter(|(s, _)| **s != TaskState::Completed).map(|(_, n)| *n).sum();
            if left == 0 && restart.as_ref().is_some_and(|r| r.is_finished()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        for c in &claimed {
            complete_surely(&store, c, &mut errors).await.expect("completion");
            *completed.entry(c.task.id).or_default() += 1;
        }
        // Paced so that the run spans the restart (which takes well under a second).
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    let out = restart.expect("restart was started").await.unwrap();
    assert!(out.status.success(), "restart-postgres failed: {}", String::from_utf8_lossy(&out.stderr));
    assert!(errors > 0, "the restart surfaced as retryable errors");
    assert_eq!(completed.len(), N);
    assert!(completed.values().all(|&n| n == 1), "no task was handed out twice to this worker");
    let counts = store.count_tasks(None).await.unwrap();
    assert_eq!(counts.get(&TaskState::Completed).copied(), Some(N as u64), "{counts:?}");
    let mut per_task: HashMap<omoi_core::TaskId, usize> = HashMap::new();
    let mut cursor = Cursor::START;
    loop {
        let page = store.read_events(cursor, 5000).await.unwrap();
        let Some(last) = page.last() else { break };
        cursor = last.cursor;
        for e in page {
            if let Event::TaskCompleted { task_id, .. } = e.event {
                *per_task.entry(task_id).or_default() += 1;
            }
        }
    }
    assert_eq!(per_task.len(), N);
    assert!(per_task.values().all(|&n| n == 1), "each task completed exactly once in the event log");
    eprintln!("restart survived with {errors} retryable errors");
    store.drop_schema().await.unwrap();
}
