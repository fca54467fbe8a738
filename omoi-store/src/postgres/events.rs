//! `EventStore` for the Postgres adapter: the outbox table, read by cursor and tailed with
//! `LISTEN`/`NOTIFY` plus a polling backstop.

use std::collections::VecDeque;

use async_trait::async_trait;
use futures::stream;
use omoi_core::{Cursor, Event, EventStore, EventStream, StoreError, StoredEvent};
use sqlx::postgres::{PgListener, PgPoolOptions};
use tracing::instrument;

use super::error::db;
use super::rows;
use super::{POLL_BACKSTOP, PostgresStore, emit};

/// Events fetched per read of a subscriber.
const PAGE: i64 = 512;

fn cursor_param(c: Cursor) -> i64 {
    i64::try_from(c.0).unwrap_or(i64::MAX)
}

impl PostgresStore {
    async fn events_after(&self, after: Cursor, limit: i64) -> Result<Vec<StoredEvent>, StoreError> {
        sqlx::query("SELECT cursor, at, data FROM events WHERE cursor > $1 ORDER BY cursor LIMIT $2")
            .bind(cursor_param(after))
            .bind(limit)
            .fetch_all(self.pool())
            .await
            .map_err(db)?
            .iter()
            .map(rows::event)
            .collect()
    }

    /// A listener on this schema's channel, on a connection of its own.
    async fn listener(&self) -> Result<PgListener, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .max_lifetime(None)
            .idle_timeout(None)
            .acquire_timeout(std::time::Duration::from_secs(5))
            .connect_lazy_with(self.inner.options.clone());
        let mut listener = PgListener::connect_with(&pool).await.map_err(db)?;
        listener.listen(&self.inner.channel).await.map_err(db)?;
        Ok(listener)
    }
}

/// A subscription's state between items.
struct Tail {
    store: PostgresStore,
    /// `None` after the listener's connection failed; re-created on the next wait.
    listener: Option<PgListener>,
    cursor: Cursor,
    buf: VecDeque<StoredEvent>,
}

impl Tail {
    /// Waits for a notification, at most the polling backstop.
    async fn wait(&mut self) {
        if self.listener.is_none() {
            self.listener = self.store.listener().await.ok();
        }
        match &mut self.listener {
            Some(l) => match tokio::time::timeout(POLL_BACKSTOP, l.try_recv()).await {
                Ok(Ok(Some(_))) => {
                    // Drain what else arrived; one read covers them all.
                    while l.next_buffered().is_some() {}
                }
                Ok(Ok(None)) | Err(_) => {}
                Ok(Err(_)) => self.listener = None,
            },
            None => tokio::time::sleep(POLL_BACKSTOP).await,
        }
    }
}

#[async_trait]
impl EventStore for PostgresStore {
    #[instrument(level = "debug", skip_all, fields(events = events.len()))]
    async fn append_events(&self, events: Vec<Event>) -> Result<Vec<Cursor>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.now();
        let mut tx = self.begin().await?;
        let last = emit(&mut tx, now, &events).await?.unwrap_or(0);
        tx.commit().await.map_err(db)?;
        let n = events.len() as u64;
        Ok((0..n).map(|i| Cursor(last - n + 1 + i)).collect())
    }

    #[instrument(level = "debug", skip_all, fields(after = %after, limit))]
    async fn read_events(&self, after: Cursor, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
        self.events_after(after, i64::try_from(limit).unwrap_or(i64::MAX)).await
    }

    #[instrument(level = "debug", skip_all, fields(after = %after))]
    async fn subscribe(&self, after: Cursor) -> Result<EventStream, StoreError> {
        // Listen before the first read, so nothing written in between goes unnoticed.
        let listener = Some(self.listener().await?);
        let tail = Tail { store: self.clone(), listener, cursor: after, buf: VecDeque::new() };
        let s = stream::unfold(tail, |mut t| async move {
            loop {
                if let Some(e) = t.buf.pop_front() {
                    t.cursor = e.cursor;
                    return Some((Ok(e), t));
                }
                match t.store.events_after(t.cursor, PAGE).await {
                    Ok(page) if !page.is_empty() => t.buf.extend(page),
                    Ok(_) => t.wait().await,
                    Err(e) => {
                        // Report, then keep trying from the same cursor (the caller may drop us).
                        tokio::time::sleep(POLL_BACKSTOP).await;
                        return Some((Err(e), t));
                    }
                }
            }
        });
        Ok(Box::pin(s))
    }

    #[instrument(level = "debug", skip_all)]
    async fn last_cursor(&self) -> Result<Cursor, StoreError> {
        let last: i64 =
            sqlx::query_scalar("SELECT last_cursor FROM event_counter").fetch_one(self.pool()).await.map_err(db)?;
        Ok(Cursor(rows::count(last)))
    }
}
