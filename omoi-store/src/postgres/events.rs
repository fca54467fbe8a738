//! `EventStore` for the Postgres adapter: the outbox table, read by cursor below the visible
//! bound (see [`PostgresStore`] on cursors) and tailed with `LISTEN`/`NOTIFY`, this process'
//! own announcements and a polling backstop.

use std::collections::VecDeque;

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream;
use omoi_core::{Cursor, Event, EventStore, EventStream, StoreError, StoredEvent, WakeStream};
use sqlx::postgres::{PgListener, PgPoolOptions};
use tokio::sync::watch;
use tracing::{debug, instrument};

use super::error::db;
use super::rows;
use super::{POLL_BACKSTOP, PostgresStore, emit};

/// Events fetched per read of a subscriber.
const PAGE: i64 = 512;

/// Longest a read waits for transactions in flight to end (see `settle`).
const SETTLE_LIMIT: std::time::Duration = std::time::Duration::from_secs(2);

fn cursor_param(c: Cursor) -> i64 {
    i64::try_from(c.0).unwrap_or(i64::MAX)
}

impl PostgresStore {
    async fn events_after(&self, after: Cursor, limit: i64) -> Result<Vec<StoredEvent>, StoreError> {
        sqlx::query(
            "SELECT cursor, at, data FROM events WHERE cursor > $1 AND cursor < omoi_visible_bound() \
              ORDER BY cursor LIMIT $2",
        )
        .bind(cursor_param(after))
        .bind(limit)
        .fetch_all(self.pool())
        .await
        .map_err(db)?
        .iter()
        .map(rows::event)
        .collect()
    }

    /// Waits until every event committed before this call can be read: until the visible bound
    /// passed the highest cursor committed now (transactions older than those writers ended).
    /// Gives up after [`SETTLE_LIMIT`] (a long transaction elsewhere in the cluster); reads are
    /// then only late, never out of order.
    async fn settle(&self) -> Result<(), StoreError> {
        let (max, mut bound): (Option<i64>, i64) =
            sqlx::query_as("SELECT (SELECT max(cursor) FROM events), omoi_visible_bound()")
                .fetch_one(self.pool())
                .await
                .map_err(db)?;
        let Some(max) = max else { return Ok(()) };
        let deadline = tokio::time::Instant::now() + SETTLE_LIMIT;
        let mut delay = std::time::Duration::from_micros(500);
        while bound <= max && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(std::time::Duration::from_millis(20));
            bound = sqlx::query_scalar("SELECT omoi_visible_bound()").fetch_one(self.pool()).await.map_err(db)?;
        }
        Ok(())
    }

    /// The `application_name` of this schema's listener connections.
    pub(crate) fn listener_name(&self) -> String {
        format!("omoi-listen-{}", self.inner.schema)
    }

    /// A listener on this schema's channel, on a connection of its own.
    async fn listener(&self) -> Result<PgListener, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .max_lifetime(None)
            .idle_timeout(None)
            .acquire_timeout(std::time::Duration::from_secs(5))
            .connect_lazy_with(self.inner.options.clone().application_name(&self.listener_name()));
        let mut listener = PgListener::connect_with(&pool).await.map_err(db)?;
        listener.listen(&self.inner.channel).await.map_err(db)?;
        Ok(listener)
    }

    fn local_announcements(&self) -> Option<watch::Receiver<u64>> {
        self.inner.announcer.get().map(|a| a.local())
    }
}

/// What a subscriber waits on: `NOTIFY` from any process, announcements of this process.
struct Waiter {
    store: PostgresStore,
    /// `None` after the listener's connection failed; re-created on the next wait.
    listener: Option<PgListener>,
    local: Option<watch::Receiver<u64>>,
}

impl Waiter {
    async fn new(store: &PostgresStore) -> Result<Self, StoreError> {
        Ok(Self { store: store.clone(), listener: Some(store.listener().await?), local: store.local_announcements() })
    }

    /// Waits for a notification or an announcement, at most the polling backstop. Returns
    /// whether something woke it (else the backstop elapsed).
    async fn wait(&mut self) -> bool {
        if self.listener.is_none() {
            match self.store.listener().await {
                Ok(l) => {
                    debug!("event listener reconnected");
                    self.listener = Some(l);
                }
                Err(e) => debug!(error = %e, "event listener still down; polling"),
            }
        }
        let Waiter { listener, local, .. } = self;
        let local = async {
            match local {
                Some(rx) => {
                    if rx.changed().await.is_err() {
                        std::future::pending::<()>().await;
                    }
                }
                None => std::future::pending::<()>().await,
            }
        };
        let remote = async {
            match listener {
                Some(l) => match l.try_recv().await {
                    Ok(Some(_)) => {
                        // Drain what else arrived; one read covers them all.
                        while l.next_buffered().is_some() {}
                        true
                    }
                    // The connection dropped; the listener reconnects on the next call.
                    Ok(None) => false,
                    Err(_) => {
                        *listener = None;
                        false
                    }
                },
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = local => true,
            woke = remote => woke,
            _ = tokio::time::sleep(POLL_BACKSTOP) => false,
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
        omoi_core::queue::check_events(&events)?;
        let now = self.now();
        let mut tx = self.begin().await?;
        let last = emit(&mut tx, now, &events).await?.unwrap_or(0);
        tx.commit().await.map_err(db)?;
        let n = events.len() as u64;
        // Cursors within one transaction are consecutive.
        Ok((0..n).map(|i| Cursor(last - n + 1 + i)).collect())
    }

    #[instrument(level = "debug", skip_all, fields(after = %after, limit))]
    async fn read_events(&self, after: Cursor, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
        self.settle().await?;
        self.events_after(after, i64::try_from(limit).unwrap_or(i64::MAX)).await
    }

    #[instrument(level = "debug", skip_all, fields(after = %after))]
    async fn subscribe(&self, after: Cursor) -> Result<EventStream, StoreError> {
        // Listen before the first read, so nothing written in between goes unnoticed.
        let waiter = Waiter::new(self).await?;
        let tail = (waiter, after, VecDeque::<StoredEvent>::new());
        let s = stream::unfold(tail, |(mut w, mut cursor, mut buf)| async move {
            loop {
                if let Some(e) = buf.pop_front() {
                    cursor = e.cursor;
                    return Some((Ok(e), (w, cursor, buf)));
                }
                match w.store.events_after(cursor, PAGE).await {
                    Ok(page) if !page.is_empty() => buf.extend(page),
                    Ok(_) => {
                        w.wait().await;
                    }
                    Err(e) => {
                        // Report, then keep trying from the same cursor (the caller may drop us).
                        tokio::time::sleep(POLL_BACKSTOP).await;
                        return Some((Err(e), (w, cursor, buf)));
                    }
                }
            }
        });
        Ok(Box::pin(s))
    }

    #[instrument(level = "debug", skip_all)]
    async fn last_cursor(&self) -> Result<Cursor, StoreError> {
        self.settle().await?;
        let last: Option<i64> =
            sqlx::query_scalar("SELECT max(cursor) FROM events WHERE cursor < omoi_visible_bound()")
                .fetch_one(self.pool())
                .await
                .map_err(db)?;
        Ok(Cursor(last.map(rows::count).unwrap_or(0)))
    }

    #[instrument(level = "debug", skip_all)]
    async fn wake_ups(&self) -> Result<WakeStream, StoreError> {
        let waiter = Waiter::new(self).await?;
        // Without a wake-up, one item per backstop period (the waiter polls for the caller).
        Ok(stream::unfold(waiter, |mut w| async move {
            w.wait().await;
            Some(((), w))
        })
        .boxed())
    }
}
