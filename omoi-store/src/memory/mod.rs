//! The in-memory adapter: every store port in one process, behind one mutex.
//!
//! It is the reference implementation the conformance suites are written against, the store
//! of examples and unit tests, and fast (see `BENCHMARKS.md`). It keeps nothing on disk: when the
//! process ends, everything is gone. Events are delivered to subscribers of the same process.
//!
//! | port | supported |
//! |---|---|
//! | `TaskStore` | yes: claims under the mutex are exactly-once |
//! | `SpecStore` | yes |
//! | `AgentStore` | yes |
//! | `EventStore` | yes, in-process fan-out |
//! | `MemoryStore` | yes: exact cosine + BM25 keywords, fused by RRF |
//! | `DiscoveryStore` | yes: record and branch under the mutex |
//! | `AccessStore` | yes: API keys (hashes) and entity owners |
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use std::time::Duration;
//! use omoi_core::{AgentId, ClaimRequest, Completion, NewTask, TaskStore};
//! use omoi_store::InMemoryStore;
//!
//! let store = InMemoryStore::new();
//! let build = NewTask::new("build");
//! let test = NewTask::new("test").depends_on([build.id]);
//! store.insert_tasks(vec![build.clone(), test.clone()]).await.unwrap();
//! let claimed = store.claim(&ClaimRequest::new(AgentId::new(), 10, Duration::from_secs(30))).await.unwrap();
//! assert_eq!(claimed.len(), 1);
//! let released = store.complete(build.id, claimed[0].lease.token, Completion::default()).await.unwrap();
//! assert_eq!(released, vec![test.id]);
//! # });
//! ```

mod access;
mod agents;
mod discoveries;
mod events;
mod interventions;
mod memories;
mod specs;
mod tasks;

use std::sync::Arc;

use omoi_core::{Clock, Event, StoredEvent, SystemClock};
use parking_lot::Mutex;
use tokio::sync::Notify;

/// Every store port, in memory. Cheap to clone: clones share the same data.
#[derive(Clone)]
pub struct InMemoryStore {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    clock: Arc<dyn Clock>,
    /// Woken after every event append, for subscribers.
    appended: Notify,
}

#[derive(Default)]
struct State {
    tasks: tasks::Tasks,
    access: access::Access,
    specs: specs::Specs,
    agents: agents::Agents,
    interventions: interventions::Interventions,
    discoveries: discoveries::Discoveries,
    memories: memories::Memories,
    events: Vec<StoredEvent>,
}

impl State {
    fn emit(&mut self, at: chrono::DateTime<chrono::Utc>, event: Event) -> omoi_core::Cursor {
        let cursor = omoi_core::Cursor(self.events.len() as u64 + 1);
        self.events.push(StoredEvent { cursor, at, event });
        cursor
    }
}

impl std::fmt::Debug for InMemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.shared.state.lock();
        f.debug_struct("InMemoryStore")
            .field("tasks", &s.tasks.len())
            .field("events", &s.events.len())
            .field("clock", &self.shared.clock)
            .finish()
    }
}

impl Default for InMemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl InMemoryStore {
    /// An empty store on the system clock; memory embeddings take the dimension of the first
    /// one stored.
    pub fn new() -> Self {
        Self::with_clock(Arc::new(SystemClock))
    }

    /// An empty store on `clock` (a `ManualClock` in tests).
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        Self { shared: Arc::new(Shared { state: Mutex::new(State::default()), clock, appended: Notify::new() }) }
    }

    /// Fixes the embedding dimension of memories.
    pub fn with_dimensions(self, dims: usize) -> Self {
        self.shared.state.lock().memories.dims = Some(dims);
        self
    }

    /// Runs `f` on the state under the lock with the current time, then wakes subscribers if
    /// it appended events.
    fn write<R>(&self, f: impl FnOnce(&mut State, chrono::DateTime<chrono::Utc>) -> R) -> R {
        let now = self.shared.clock.now();
        let (out, appended) = {
            let mut state = self.shared.state.lock();
            let before = state.events.len();
            let out = f(&mut state, now);
            (out, state.events.len() > before)
        };
        if appended {
            self.shared.appended.notify_waiters();
        }
        out
    }

    fn read<R>(&self, f: impl FnOnce(&State, chrono::DateTime<chrono::Utc>) -> R) -> R {
        let now = self.shared.clock.now();
        f(&self.shared.state.lock(), now)
    }
}
