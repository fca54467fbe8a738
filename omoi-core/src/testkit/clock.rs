//! `ManualClock`: time that moves only when a test says so.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::ports::clock::{Clock, add_duration};

/// A [`Clock`] whose time is set by the test. `sleep` resolves when [`ManualClock::advance`]
/// moves time past its deadline, so timeouts, backoff and heartbeat expiry run instantly.
///
/// ```
/// # tokio_test_block_on(async {
/// use std::time::Duration;
/// use omoi_core::{Clock, testkit::ManualClock};
///
/// let clock = ManualClock::new();
/// let t0 = clock.now();
/// let sleeper = { let c = clock.clone(); tokio::spawn(async move { c.sleep(Duration::from_secs(30)).await }) };
/// clock.wait_for_sleepers(1).await;
/// clock.advance(Duration::from_secs(30));
/// sleeper.await.unwrap();
/// assert_eq!(clock.now() - t0, chrono::Duration::seconds(30));
/// # });
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
/// # }
/// ```
#[derive(Debug)]
pub struct ManualClock {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    now: DateTime<Utc>,
    sleepers: Vec<(DateTime<Utc>, oneshot::Sender<()>)>,
}

impl ManualClock {
    /// A clock at 2026-01-01T00:00:00Z.
    pub fn new() -> Arc<Self> {
        Self::at(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).single().unwrap_or_default())
    }

    /// A clock at `start`.
    pub fn at(start: DateTime<Utc>) -> Arc<Self> {
        Arc::new(Self { inner: Mutex::new(Inner { now: start, sleepers: Vec::new() }) })
    }

    /// Moves time forward and wakes every sleeper whose deadline has passed.
    pub fn advance(&self, by: Duration) {
        let mut inner = self.inner.lock();
        inner.now = add_duration(inner.now, by);
        let now = inner.now;
        let (due, pending): (Vec<_>, Vec<_>) = inner.sleepers.drain(..).partition(|(at, _)| *at <= now);
        inner.sleepers = pending;
        drop(inner);
        for (_, tx) in due {
            let _ = tx.send(());
        }
    }

    /// Sets the time (forward only; use [`ManualClock::advance`] for relative moves).
    pub fn set(&self, to: DateTime<Utc>) {
        let now = self.inner.lock().now;
        if to > now {
            self.advance((to - now).to_std().unwrap_or_default());
        }
    }

    /// Number of pending sleepers.
    pub fn sleepers(&self) -> usize {
        self.inner.lock().sleepers.len()
    }

    /// Waits (in real time, yielding) until at least `n` sleepers are pending. Panics after 10 s.
    pub async fn wait_for_sleepers(&self, n: usize) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while self.sleepers() < n {
            assert!(std::time::Instant::now() < deadline, "timed out waiting for {n} sleepers");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

#[async_trait]
impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        self.inner.lock().now
    }

    async fn sleep(&self, duration: Duration) {
        let rx = {
            let mut inner = self.inner.lock();
            let deadline = add_duration(inner.now, duration);
            if deadline <= inner.now {
                return;
            }
            let (tx, rx) = oneshot::channel();
            inner.sleepers.push((deadline, tx));
            rx
        };
        let _ = rx.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sleepers_wake_only_when_their_deadline_passes() {
        let clock = ManualClock::new();
        let short = {
            let c = clock.clone();
            tokio::spawn(async move { c.sleep(Duration::from_secs(10)).await })
        };
        let long = {
            let c = clock.clone();
            tokio::spawn(async move { c.sleep(Duration::from_secs(60)).await })
        };
        clock.wait_for_sleepers(2).await;
        clock.advance(Duration::from_secs(10));
        short.await.unwrap();
        assert_eq!(clock.sleepers(), 1);
        assert!(!long.is_finished());
        clock.advance(Duration::from_secs(50));
        long.await.unwrap();
        assert_eq!(clock.sleepers(), 0);
    }

    #[tokio::test]
    async fn zero_sleep_returns_at_once() {
        let clock = ManualClock::new();
        clock.sleep(Duration::ZERO).await;
        assert_eq!(clock.sleepers(), 0);
    }
}
