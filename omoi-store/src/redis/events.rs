//! `EventStore` for the Redis adapter: one Stream whose entry ids are the cursors (`<n>-0`).

use std::collections::VecDeque;
use std::time::Duration;

use async_trait::async_trait;
use futures::stream;
use omoi_core::{Cursor, Event, EventStore, EventStream, StoreError, StoredEvent};
use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamId, StreamRangeReply, StreamReadReply};

use super::RedisStore;
use super::error::{Redis, corrupt, is_transient};
use super::scripts::APPEND;

/// Entries fetched per read.
const PAGE: usize = 512;
/// How long one `XREAD` blocks waiting for new entries.
const BLOCK: Duration = Duration::from_secs(1);
/// First and longest wait before a subscriber reconnects.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// The cursor of entry id `<n>-0`.
fn cursor_of(id: &str) -> Result<u64, StoreError> {
    id.split_once('-').and_then(|(n, _)| n.parse().ok()).ok_or_else(|| corrupt("stream entry id", id))
}

fn decode(entry: &StreamId) -> Result<StoredEvent, StoreError> {
    let cursor = Cursor(cursor_of(&entry.id)?);
    let at_us: i64 = entry.get("at").ok_or_else(|| corrupt("event", format!("{} has no time", entry.id)))?;
    let at = chrono::DateTime::from_timestamp_micros(at_us).ok_or_else(|| corrupt("event time", at_us))?;
    let json: String = entry.get("event").ok_or_else(|| corrupt("event", format!("{} has no body", entry.id)))?;
    let event: Event = serde_json::from_str(&json).map_err(|e| corrupt("event", e))?;
    Ok(StoredEvent { cursor, at, event })
}

/// A subscriber's tail: a dedicated connection reading with `XREAD BLOCK` from the last
/// delivered cursor, reconnecting with backoff when the connection fails.
struct Tail {
    client: redis::Client,
    url: String,
    name: String,
    key: String,
    /// The last delivered cursor.
    last: u64,
    conn: Option<MultiplexedConnection>,
    /// Read but not yet delivered: (cursor, decoded event or why it does not decode).
    buf: VecDeque<(u64, Result<StoredEvent, StoreError>)>,
    backoff: Duration,
}

impl Tail {
    async fn connect(&self) -> redis::RedisResult<MultiplexedConnection> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(super::CONNECT_TIMEOUT))
            .set_response_timeout(Some(BLOCK + super::RESPONSE_TIMEOUT));
        let mut conn = self.client.get_multiplexed_async_connection_with_config(&config).await?;
        let _: () = redis::cmd("CLIENT").arg("SETNAME").arg(&self.name).query_async(&mut conn).await?;
        Ok(conn)
    }

    async fn wait_and_back_off(&mut self, why: &redis::RedisError) {
        tracing::warn!(url = %self.url, error = %why, after = self.last, retry_in = ?self.backoff, "redis event tail: reconnecting");
        tokio::time::sleep(self.backoff).await;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }

    /// The next event (replayed or live), in cursor order.
    async fn next(&mut self) -> Result<StoredEvent, StoreError> {
        loop {
            if let Some((cursor, event)) = self.buf.pop_front() {
                self.last = cursor;
                return event;
            }
            let conn = match &mut self.conn {
                Some(c) => c,
                None => match self.connect().await {
                    Ok(c) => self.conn.insert(c),
                    Err(e) => {
                        self.wait_and_back_off(&e).await;
                        continue;
                    }
                },
            };
            let reply: redis::RedisResult<Option<StreamReadReply>> = redis::cmd("XREAD")
                .arg("COUNT")
                .arg(PAGE)
                .arg("BLOCK")
                .arg(BLOCK.as_millis() as u64)
                .arg("STREAMS")
                .arg(&self.key)
                .arg(format!("{}-0", self.last))
                .query_async(conn)
                .await;
            match reply {
                Ok(reply) => {
                    self.backoff = BACKOFF_MIN;
                    for entry in reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids) {
                        match cursor_of(&entry.id) {
                            Ok(cursor) => self.buf.push_back((cursor, decode(&entry))),
                            Err(e) => return Err(e),
                        }
                    }
                }
                Err(e) if is_transient(&e) => {
                    self.conn = None;
                    self.wait_and_back_off(&e).await;
                }
                Err(e) => {
                    // Not a connection problem (e.g. the key holds something else): report it,
                    // and try again no sooner than the backoff.
                    tokio::time::sleep(self.backoff).await;
                    return Err(Redis { url: &self.url }.err(e));
                }
            }
        }
    }
}

#[async_trait]
impl EventStore for RedisStore {
    #[tracing::instrument(level = "debug", name = "redis.append_events", skip_all, fields(n = events.len()))]
    async fn append_events(&self, events: Vec<Event>) -> Result<Vec<Cursor>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        omoi_core::queue::check_events(&events)?;
        let keys = &self.inner.keys;
        let mut inv = APPEND.prepare_invoke();
        inv.key(keys.events()).key(keys.events_seq()).arg(self.now().timestamp_micros());
        for e in &events {
            inv.arg(
                serde_json::to_string(e).map_err(|e| StoreError::InvalidInput(format!("cannot encode event: {e}")))?,
            );
        }
        let cursors: Vec<u64> = inv.invoke_async(&mut self.conn()).await.map_err(|e| self.redis().err(e))?;
        Ok(cursors.into_iter().map(Cursor).collect())
    }

    #[tracing::instrument(level = "debug", name = "redis.read_events", skip(self))]
    async fn read_events(&self, after: Cursor, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // Entry ids are `<cursor>-0`, so `<after>-1` is the first id past `after`.
        let reply: StreamRangeReply = redis::cmd("XRANGE")
            .arg(self.inner.keys.events())
            .arg(format!("{}-1", after.0))
            .arg("+")
            .arg("COUNT")
            .arg(limit)
            .query_async(&mut self.conn())
            .await
            .map_err(|e| self.redis().err(e))?;
        reply.ids.iter().map(decode).collect()
    }

    #[tracing::instrument(level = "debug", name = "redis.subscribe", skip(self))]
    async fn subscribe(&self, after: Cursor) -> Result<EventStream, StoreError> {
        let mut tail = Tail {
            client: self.inner.client.clone(),
            url: self.inner.url.clone(),
            name: format!("omoi-sub:{}", self.inner.keys.prefix),
            key: self.inner.keys.events(),
            last: after.0,
            conn: None,
            buf: VecDeque::new(),
            backoff: BACKOFF_MIN,
        };
        // Connect now, so a server that is down is reported to the caller instead of retried.
        tail.conn = Some(tail.connect().await.map_err(|e| self.redis().err(e))?);
        Ok(Box::pin(stream::unfold(tail, |mut tail| async move {
            let item = tail.next().await;
            Some((item, tail))
        })))
    }

    #[tracing::instrument(level = "debug", name = "redis.last_cursor", skip(self))]
    async fn last_cursor(&self) -> Result<Cursor, StoreError> {
        let reply: StreamRangeReply = redis::cmd("XREVRANGE")
            .arg(self.inner.keys.events())
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut self.conn())
            .await
            .map_err(|e| self.redis().err(e))?;
        match reply.ids.first() {
            Some(entry) => Ok(Cursor(cursor_of(&entry.id)?)),
            None => Ok(Cursor::START),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_ids_are_cursors() {
        assert_eq!(cursor_of("42-0").unwrap(), 42);
        assert!(cursor_of("nope").is_err());
    }
}
