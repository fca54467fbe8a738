//! The Postgres adapter against every conformance suite, on the pgvector Postgres named by
//! `OMOI_TEST_POSTGRES_URL` (see `scripts/services`). Each test gets a fresh schema.

mod pg_common;

use std::sync::Arc;

use omoi_core::testkit::ManualClock;
use omoi_store::PostgresStore;

async fn store(clock: Arc<ManualClock>) -> Option<Arc<PostgresStore>> {
    pg_common::store(clock, 3).await.map(Arc::new)
}

omoi_core::task_store_suite!(store);
omoi_core::spec_store_suite!(store);
omoi_core::agent_store_suite!(store);
omoi_core::event_store_suite!(store);
omoi_core::memory_store_suite!(store);
omoi_core::discovery_store_suite!(store);
