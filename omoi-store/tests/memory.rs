//! The in-memory adapter against every conformance suite.

use std::sync::Arc;

use omoi_core::testkit::ManualClock;
use omoi_store::InMemoryStore;

async fn store(clock: Arc<ManualClock>) -> Option<Arc<InMemoryStore>> {
    Some(Arc::new(InMemoryStore::with_clock(clock)))
}

async fn three_dims(clock: Arc<ManualClock>) -> Option<Arc<InMemoryStore>> {
    Some(Arc::new(InMemoryStore::with_clock(clock).with_dimensions(3)))
}

omoi_core::task_store_suite!(store);
omoi_core::spec_store_suite!(store);
omoi_core::agent_store_suite!(store);
omoi_core::event_store_suite!(store);
omoi_core::memory_store_suite!(three_dims);
omoi_core::intervention_store_suite!(store);
omoi_core::access_store_suite!(store);
omoi_core::discovery_store_suite!(store);
