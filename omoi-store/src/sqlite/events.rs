//! `EventStore` for the SQLite adapter: the `events` table, tailed by subscribers that are woken
//! by this process's commits and poll for other processes' writes.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::stream;
use omoi_core::{Cursor, Event, EventStore, EventStream, StoreError, StoredEvent};
use sqlx::SqlitePool;

use super::codec::{get, get_json, get_time};
use super::error::db;
use super::{Inner, SqliteStore};

/// Events fetched per read of a subscriber.
const PAGE: i64 = 512;
/// How often a subscriber looks for events written by other processes.
const POLL: Duration = Duration::from_millis(250);

/// Up to `limit` events after `cursor`, in cursor order.
async fn after(pool: &SqlitePool, cursor: Cursor, limit: i64) -> Result<Vec<StoredEvent>, StoreError> {
    let from = i64::try_from(cursor.0).unwrap_or(i64::MAX);
    let rows = sqlx::query("SELECT cursor, at, data FROM events WHERE cursor > ?1 ORDER BY cursor LIMIT ?2")
        .bind(from)
        .bind(limit)
        .fetch_all(pool)
        .await
        .map_err(db)?;
    rows.iter()
        .map(|r| {
            Ok(StoredEvent {
                cursor: Cursor(get::<i64>(r, "cursor")? as u64),
                at: get_time(r, "at")?,
                event: get_json::<Event>(r, "data")?,
            })
        })
        .collect()
}

#[async_trait]
impl EventStore for SqliteStore {
    #[tracing::instrument(level = "debug", name = "sqlite.append_events", skip_all, fields(n = events.len()))]
    async fn append_events(&self, events: Vec<Event>) -> Result<Vec<Cursor>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        omoi_core::queue::check_events(&events)?;
        let mut w = self.begin().await?;
        for e in events {
            w.emit(e);
        }
        self.commit(w).await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.read_events", skip(self))]
    async fn read_events(&self, after_cursor: Cursor, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
        after(self.readers(), after_cursor, i64::try_from(limit).unwrap_or(i64::MAX)).await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.subscribe", skip(self))]
    async fn subscribe(&self, cursor: Cursor) -> Result<EventStream, StoreError> {
        let init = (self.inner.clone(), cursor, VecDeque::<StoredEvent>::new());
        let s = stream::unfold(
            init,
            |(inner, mut cursor, mut buf): (Arc<Inner>, Cursor, VecDeque<StoredEvent>)| async move {
                loop {
                    if let Some(e) = buf.pop_front() {
                        cursor = e.cursor;
                        return Some((Ok(e), (inner, cursor, buf)));
                    }
                    let read = {
                        // Register for the wake-up before reading, so a commit between the read and
                        // the wait is not missed.
                        let notified = inner.appended.notified();
                        tokio::pin!(notified);
                        notified.as_mut().enable();
                        let read = after(&inner.readers, cursor, PAGE).await;
                        if read.as_ref().is_ok_and(Vec::is_empty) {
                            tokio::select! {
                                () = &mut notified => {}
                                () = tokio::time::sleep(POLL) => {}
                            }
                        }
                        read
                    };
                    match read {
                        Ok(page) => buf.extend(page),
                        Err(e) => {
                            tracing::warn!(error = %e, "sqlite event tail: read failed; retrying");
                            tokio::time::sleep(POLL).await;
                            return Some((Err(e), (inner, cursor, buf)));
                        }
                    }
                }
            },
        );
        Ok(Box::pin(s))
    }

    #[tracing::instrument(level = "debug", name = "sqlite.last_cursor", skip(self))]
    async fn last_cursor(&self) -> Result<Cursor, StoreError> {
        let last: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(cursor), 0) FROM events")
            .fetch_one(self.readers())
            .await
            .map_err(db)?;
        Ok(Cursor(last as u64))
    }
}
