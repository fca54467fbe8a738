//! Conformance scenarios for [`EventStore`].

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use crate::event::{Cursor, Event, StoredEvent};
use crate::ids::AgentId;
use crate::ports::clock::Clock;
use crate::ports::event_store::{EventStore, EventStream};
use crate::testkit::ManualClock;

/// What the event-store scenarios run against.
#[derive(Clone)]
pub struct Harness {
    /// The store under test.
    pub events: Arc<dyn EventStore>,
    /// The clock the store was built with.
    pub clock: Arc<ManualClock>,
}

impl Harness {
    /// Wraps an adapter.
    pub fn new<S: EventStore + 'static>(store: Arc<S>, clock: Arc<ManualClock>) -> Self {
        Self { events: store, clock }
    }

    async fn append(&self, events: Vec<Event>) -> Vec<Cursor> {
        self.events.append_events(events).await.expect("append_events")
    }
}

fn ev(agent: AgentId, n: usize) -> Event {
    Event::MonitorIntervention { agent_id: agent, severity: "guidance".into(), message: format!("m{n}") }
}

fn message(e: &StoredEvent) -> String {
    match &e.event {
        Event::MonitorIntervention { message, .. } => message.clone(),
        other => other.name().to_owned(),
    }
}

async fn next(stream: &mut EventStream) -> StoredEvent {
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("no event within 10 s")
        .expect("stream ended")
        .expect("stream error")
}

/// Appends return strictly increasing cursors; reading from the start returns them in order.
pub async fn appended_events_get_increasing_cursors_and_read_back_in_order(h: Harness) {
    let agent = AgentId::new();
    let start = h.events.last_cursor().await.unwrap();
    let cursors = h.append((0..3).map(|i| ev(agent, i)).collect()).await;
    assert_eq!(cursors.len(), 3);
    assert!(cursors.windows(2).all(|w| w[0] < w[1]));
    assert!(cursors[0] > start);
    let read = h.events.read_events(start, 100).await.unwrap();
    assert_eq!(read.iter().map(|e| e.cursor).collect::<Vec<_>>(), cursors);
    assert_eq!(read.iter().map(message).collect::<Vec<_>>(), ["m0", "m1", "m2"]);
    assert_eq!(read[1].event, ev(agent, 1));
    assert!(read.iter().all(|e| e.at == h.clock.now()));
    assert_eq!(h.events.last_cursor().await.unwrap(), cursors[2]);
}

/// Reading after a cursor skips everything up to it and honours the limit.
pub async fn read_after_a_cursor_returns_only_later_events_up_to_the_limit(h: Harness) {
    let agent = AgentId::new();
    let cursors = h.append((0..10).map(|i| ev(agent, i)).collect()).await;
    let page = h.events.read_events(cursors[3], 4).await.unwrap();
    assert_eq!(page.iter().map(message).collect::<Vec<_>>(), ["m4", "m5", "m6", "m7"]);
    assert!(h.events.read_events(cursors[9], 10).await.unwrap().is_empty());
    let rest = h.events.read_events(page[3].cursor, 100).await.unwrap();
    assert_eq!(rest.iter().map(message).collect::<Vec<_>>(), ["m8", "m9"]);
}

/// A subscription replays what follows its cursor, then delivers new events live.
pub async fn subscribe_replays_then_tails_live_without_gaps_or_repeats(h: Harness) {
    let agent = AgentId::new();
    let cursors = h.append((0..5).map(|i| ev(agent, i)).collect()).await;
    let mut stream = h.events.subscribe(cursors[1]).await.unwrap();
    for want in ["m2", "m3", "m4"] {
        assert_eq!(message(&next(&mut stream).await), want);
    }
    let writer = {
        let h = h.clone();
        tokio::spawn(async move {
            for i in 5..8 {
                tokio::time::sleep(Duration::from_millis(20)).await;
                h.append(vec![ev(agent, i)]).await;
            }
        })
    };
    let mut last = cursors[4];
    for want in ["m5", "m6", "m7"] {
        let e = next(&mut stream).await;
        assert_eq!(message(&e), want);
        assert!(e.cursor > last);
        last = e.cursor;
    }
    writer.await.unwrap();
    let extra = tokio::time::timeout(Duration::from_millis(300), stream.next()).await;
    assert!(extra.is_err(), "no event beyond those written: {extra:?}");
}

/// A consumer that reconnects from the last cursor it saw misses nothing and repeats nothing.
pub async fn subscriber_resumes_from_its_last_cursor_after_reconnecting(h: Harness) {
    let agent = AgentId::new();
    let start = h.events.last_cursor().await.unwrap();
    h.append((0..3).map(|i| ev(agent, i)).collect()).await;
    let mut stream = h.events.subscribe(start).await.unwrap();
    let seen = [next(&mut stream).await, next(&mut stream).await];
    drop(stream);
    h.append((3..5).map(|i| ev(agent, i)).collect()).await;
    let mut stream = h.events.subscribe(seen[1].cursor).await.unwrap();
    let rest: Vec<String> =
        [next(&mut stream).await, next(&mut stream).await, next(&mut stream).await].iter().map(message).collect();
    assert_eq!(rest, ["m2", "m3", "m4"]);
}

/// Concurrent writers produce one gap-free total order that readers and subscribers agree on.
pub async fn concurrent_appenders_produce_one_total_order(h: Harness) {
    const WRITERS: usize = 8;
    const EACH: usize = 50;
    let start = h.events.last_cursor().await.unwrap();
    let mut stream = h.events.subscribe(start).await.unwrap();
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let h = h.clone();
        writers.push(tokio::spawn(async move {
            let agent = AgentId::new();
            for i in 0..EACH {
                h.append(vec![ev(agent, w * 1000 + i)]).await;
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    let all = h.events.read_events(start, 10_000).await.unwrap();
    assert_eq!(all.len(), WRITERS * EACH);
    assert!(all.windows(2).all(|p| p[0].cursor < p[1].cursor));
    let distinct: HashSet<String> = all.iter().map(message).collect();
    assert_eq!(distinct.len(), WRITERS * EACH);
    let mut live = Vec::with_capacity(all.len());
    for _ in 0..all.len() {
        live.push(next(&mut stream).await.cursor);
    }
    assert_eq!(live, all.iter().map(|e| e.cursor).collect::<Vec<_>>(), "subscriber saw the same order");
}

/// Runs the whole [`EventStore`](crate::EventStore) suite against an adapter. The factory
/// yields `Arc<S>` with `S: EventStore`.
#[macro_export]
macro_rules! event_store_suite {
    ($factory:expr) => {
        $crate::__omoi_suite!(
            event_store,
            $factory,
            [
                appended_events_get_increasing_cursors_and_read_back_in_order,
                read_after_a_cursor_returns_only_later_events_up_to_the_limit,
                subscribe_replays_then_tails_live_without_gaps_or_repeats,
                subscriber_resumes_from_its_last_cursor_after_reconnecting,
                concurrent_appenders_produce_one_total_order,
            ]
        );
    };
}
