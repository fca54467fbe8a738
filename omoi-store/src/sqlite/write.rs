//! The write transaction: the writer connection, `BEGIN IMMEDIATE`, the time of the change and
//! the events it produced, appended to the log in the same transaction (outbox).

use chrono::{DateTime, Utc};
use omoi_core::{Cursor, Event, StoreError};
use sqlx::{Sqlite, SqliteConnection, Transaction};

use super::SqliteStore;
use super::codec::{json, us};
use super::error::db;

/// An open write transaction. Dropping it without [`SqliteStore::commit`] rolls it back.
pub(super) struct Write {
    tx: Transaction<'static, Sqlite>,
    /// The time of every change in this transaction.
    pub(super) now: DateTime<Utc>,
    events: Vec<Event>,
}

impl Write {
    /// The connection, for queries inside the transaction.
    pub(super) fn conn(&mut self) -> &mut SqliteConnection {
        &mut self.tx
    }

    /// Records `event`; it is appended to the log when the transaction commits.
    pub(super) fn emit(&mut self, event: Event) {
        self.events.push(event);
    }
}

impl SqliteStore {
    /// Takes the write lock (the writer connection, then the file's with `BEGIN IMMEDIATE`) and
    /// reads the clock.
    pub(super) async fn begin(&self) -> Result<Write, StoreError> {
        let tx = self.inner.writer.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
        Ok(Write { tx, now: self.now(), events: Vec::new() })
    }

    /// Appends the transaction's events, commits, and wakes this process's subscribers.
    /// Returns the events' cursors.
    pub(super) async fn commit(&self, mut w: Write) -> Result<Vec<Cursor>, StoreError> {
        let cursors = if w.events.is_empty() {
            Vec::new()
        } else {
            let mut cursors: Vec<i64> = sqlx::query_scalar(
                "INSERT INTO events (at, name, data) \
                 SELECT ?1, value ->> '$.type', value FROM json_each(?2) ORDER BY key RETURNING cursor",
            )
            .bind(us(w.now))
            .bind(json(&w.events)?)
            .fetch_all(w.conn())
            .await
            .map_err(db)?;
            cursors.sort_unstable();
            cursors.into_iter().map(|c| Cursor(c as u64)).collect()
        };
        w.tx.commit().await.map_err(db)?;
        if !cursors.is_empty() {
            self.inner.appended.notify_waiters();
        }
        Ok(cursors)
    }
}
