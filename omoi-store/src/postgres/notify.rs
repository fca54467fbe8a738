//! Wake-ups for subscribers, sent after commit and coalesced.
//!
//! `pg_notify` inside a writing transaction would take Postgres' database-wide notify lock from
//! pre-commit to the end of the commit (its WAL flush included): every event-writing
//! transaction would wait for the previous one. Instead [`emitted`] records, per schema, the
//! highest cursor written in this process; one announcer task per schema waits until that
//! cursor is readable (below `omoi_visible_bound()`, i.e. its transaction ended), then sends a
//! single `NOTIFY` (asynchronous commit, outside any writer) for everything written meanwhile,
//! and wakes this process' subscribers directly. A transaction that rolled back only costs a
//! spurious wake-up. Subscribers still poll every [`POLL_BACKSTOP`](super::POLL_BACKSTOP).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use sqlx::PgPool;
use tokio::sync::watch;
use tracing::debug;

/// One schema's announcer state in this process.
pub(crate) struct Announcer {
    /// Highest cursor emitted and not yet announced (0 = none).
    pending: AtomicU64,
    /// Whether the announcer task runs.
    running: AtomicBool,
    /// A pool to query the bound and send `NOTIFY` with.
    pool: PgPool,
    /// `NOTIFY` channel.
    channel: String,
    /// Last announced cursor, for subscribers in this process.
    local: watch::Sender<u64>,
}

/// The announcers of this process by schema. Weak: the stores of a schema own its announcer
/// (and through it a handle on their pool), so when the last store of a schema is dropped its
/// pool closes instead of staying open for the life of the process.
static ANNOUNCERS: LazyLock<Mutex<HashMap<String, Weak<Announcer>>>> = LazyLock::new(Default::default);

/// The announcer of `schema` (created with `pool` when no live one exists).
pub(crate) fn announcer(schema: &str, pool: &PgPool, channel: &str) -> Arc<Announcer> {
    let mut map = ANNOUNCERS.lock();
    map.retain(|_, a| a.strong_count() > 0);
    if let Some(a) = map.get(schema).and_then(Weak::upgrade)
        && !a.pool.is_closed()
    {
        return a;
    }
    let a = Arc::new(Announcer {
        pending: AtomicU64::new(0),
        running: AtomicBool::new(false),
        pool: pool.clone(),
        channel: channel.to_owned(),
        local: watch::channel(0).0,
    });
    map.insert(schema.to_owned(), Arc::downgrade(&a));
    a
}

/// Forgets `schema`'s announcer (its schema was dropped).
pub(crate) fn forget(schema: &str) {
    ANNOUNCERS.lock().remove(schema);
}

/// Records that a transaction on `schema` wrote events up to `cursor` (it may not have committed
/// yet); subscribers are woken once it is readable.
pub(crate) fn emitted(schema: &str, cursor: u64) {
    let Some(a) = ANNOUNCERS.lock().get(schema).and_then(Weak::upgrade) else { return };
    a.pending.fetch_max(cursor, Ordering::AcqRel);
    a.ensure_running();
}

impl Announcer {
    /// Subscribes to this process' announcements.
    pub(crate) fn local(&self) -> watch::Receiver<u64> {
        self.local.subscribe()
    }

    fn ensure_running(self: &Arc<Self>) {
        if self.running.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            self.running.store(false, Ordering::Release);
            return;
        };
        let me = self.clone();
        rt.spawn(async move { me.announce().await });
    }

    async fn announce(self: Arc<Self>) {
        let mut delay = Duration::from_micros(500);
        loop {
            let target = self.pending.load(Ordering::Acquire);
            if target == 0 {
                self.running.store(false, Ordering::Release);
                // Emitted between the load and the store: take the job back if nobody else did.
                if self.pending.load(Ordering::Acquire) != 0 && !self.running.swap(true, Ordering::AcqRel) {
                    continue;
                }
                return;
            }
            let bound: Result<i64, _> = sqlx::query_scalar("SELECT omoi_visible_bound()").fetch_one(&self.pool).await;
            match bound {
                Ok(b) if u64::try_from(b).unwrap_or(0) > target => {
                    // Clear what this announcement covers (a larger cursor stays pending).
                    let _ = self.pending.compare_exchange(target, 0, Ordering::AcqRel, Ordering::Acquire);
                    self.local.send_replace(target);
                    let sql = format!(
                        "BEGIN; SET LOCAL synchronous_commit = off; SELECT pg_notify('{}', ''); COMMIT",
                        self.channel
                    );
                    if let Err(e) = sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&self.pool).await {
                        debug!(error = %e, "NOTIFY failed; subscribers fall back to polling");
                    }
                    delay = Duration::from_micros(500);
                }
                Ok(_) => {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_millis(50));
                }
                Err(e) => {
                    debug!(error = %e, "cannot read the visible bound; retrying");
                    tokio::time::sleep(super::POLL_BACKSTOP).await;
                    if self.pool.is_closed() {
                        self.pending.store(0, Ordering::Release);
                    }
                }
            }
        }
    }
}
