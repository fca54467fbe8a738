//! `EventStore` for the in-memory adapter: a vector of events and a `Notify` for live tails.

use std::collections::VecDeque;
use std::sync::Arc;

use async_trait::async_trait;
use futures::stream;
use omoi_core::{Cursor, Event, EventStore, EventStream, StoreError, StoredEvent};

use super::{InMemoryStore, Shared, State};

/// Events fetched per wake-up of a subscriber.
const PAGE: usize = 512;

fn after(state: &State, cursor: Cursor, limit: usize) -> Vec<StoredEvent> {
    // Cursors are 1-based positions in the vector.
    let start = usize::try_from(cursor.0).unwrap_or(usize::MAX).min(state.events.len());
    state.events[start..].iter().take(limit).cloned().collect()
}

#[async_trait]
impl EventStore for InMemoryStore {
    async fn append_events(&self, events: Vec<Event>) -> Result<Vec<Cursor>, StoreError> {
        omoi_core::queue::check_events(&events)?;
        Ok(self.write(|state, now| events.into_iter().map(|e| state.emit(now, e)).collect()))
    }

    async fn read_events(&self, cursor: Cursor, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
        Ok(self.read(|state, _| after(state, cursor, limit)))
    }

    async fn subscribe(&self, cursor: Cursor) -> Result<EventStream, StoreError> {
        let shared: Arc<Shared> = self.shared.clone();
        let init = (shared, cursor, VecDeque::<StoredEvent>::new());
        let s = stream::unfold(init, |(shared, mut cursor, mut buf)| async move {
            loop {
                if let Some(e) = buf.pop_front() {
                    cursor = e.cursor;
                    return Some((Ok(e), (shared, cursor, buf)));
                }
                // Register for the wake-up before looking, so an append between the look and
                // the wait is not missed.
                let notified = shared.appended.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                buf.extend(after(&shared.state.lock(), cursor, PAGE));
                if buf.is_empty() {
                    notified.await;
                }
            }
        });
        Ok(Box::pin(s))
    }

    async fn last_cursor(&self) -> Result<Cursor, StoreError> {
        Ok(self.read(|state, _| Cursor(state.events.len() as u64)))
    }
}
