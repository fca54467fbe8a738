//! The `EventStore` port: an append-only log of typed events with cursors, tailed live.

use async_trait::async_trait;
use futures::stream::BoxStream;

use crate::error::StoreError;
use crate::event::{Cursor, Event, StoredEvent};

/// A live event stream: every event after the starting cursor, then new ones as they are written.
pub type EventStream = BoxStream<'static, Result<StoredEvent, StoreError>>;

/// Wake-ups: an item after new events may have been appended (see [`EventStore::wake_ups`]).
pub type WakeStream = BoxStream<'static, ()>;

/// The event log.
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Appends events that are not tied to a stored state change (phase attempts, trajectory
    /// steps, interventions). Returns their cursors.
    async fn append_events(&self, events: Vec<Event>) -> Result<Vec<Cursor>, StoreError>;

    /// Up to `limit` events with a cursor greater than `after`, in cursor order.
    async fn read_events(&self, after: Cursor, limit: usize) -> Result<Vec<StoredEvent>, StoreError>;

    /// Every event after `after` (replay), then live events as they are written, in cursor
    /// order without gaps or repeats.
    async fn subscribe(&self, after: Cursor) -> Result<EventStream, StoreError>;

    /// The cursor of the latest event ([`Cursor::START`] if none).
    async fn last_cursor(&self) -> Result<Cursor, StoreError>;

    /// An item soon after new events were appended, for waiters that only need to know that
    /// something happened (a worker waiting for claimable work): items may be coalesced (one
    /// for many events) or spurious, and adapters need not read or decode events for them. The
    /// stream recovers from lost connections by itself; it ends only if the store is gone.
    /// Default: one item per event of [`subscribe`](Self::subscribe) from the current end.
    async fn wake_ups(&self) -> Result<WakeStream, StoreError> {
        use futures::StreamExt;
        let from = self.last_cursor().await?;
        Ok(self.subscribe(from).await?.map(|_| ()).boxed())
    }
}
