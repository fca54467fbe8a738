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
