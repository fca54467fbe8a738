//! Fault tests of the Redis adapter against the real server at `OMOI_TEST_REDIS_URL`: a
//! subscriber whose connection is killed keeps delivering every event exactly once, in order;
//! an unreachable server is a retryable error that does not leak the password.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use omoi_core::testkit::{ManualClock, service_url};
use omoi_core::{AgentId, Cursor, Event, EventStore, StoreError};
use omoi_store::RedisStore;

fn event(agent: AgentId, n: usize) -> Event {
    Event::MonitorIntervention { agent_id: agent, severity: "guidance".into(), message: format!("m{n}") }
}

/// Ids of the server's clients named `name`.
async fn clients_named(admin: &mut redis::aio::MultiplexedConnection, name: &str) -> Vec<u64> {
    let list: String = redis::cmd("CLIENT").arg("LIST").arg("TYPE").arg("normal").query_async(admin).await.unwrap();
    list.lines()
        .filter(|l| l.split(' ').any(|f| f == format!("name={name}")))
        .filter_map(|l| l.split(' ').find_map(|f| f.strip_prefix("id=")).and_then(|id| id.parse().ok()))
        .collect()
}

async fn delete_keys(admin: &mut redis::aio::MultiplexedConnection, prefix: &str) {
    let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{{{prefix}}}:*")).query_async(admin).await.unwrap();
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL").arg(keys).query_async(admin).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_subscriber_connection_reconnects_and_delivers_every_event_once_in_order() {
    let Some(url) = service_url("OMOI_TEST_REDIS_URL") else { return };
    let prefix = format!("omoi-fault-{}", uuid::Uuid::now_v7().simple());
    let store = Arc::new(
        RedisStore::builder(url.clone()).prefix(prefix.clone()).clock(ManualClock::new()).connect().await.unwrap(),
    );
    let mut admin = redis::Client::open(url.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let sub_name = format!("omoi-sub:{prefix}");

    const N: usize = 300;
    let agent = AgentId::new();
    // Some events exist before the subscription: they are replayed first.
    store.append_events((0..20).map(|i| event(agent, i)).collect()).await.unwrap();
    let mut stream = store.subscribe(Cursor::START).await.unwrap();

    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for i in 20..N {
                store.append_events(vec![event(agent, i)]).await.unwrap();
                tokio::time::sleep(Duration::from_millis(8)).await;
            }
            Instant::now()
        })
    };
    let killer = {
        let (mut admin, sub_name) = (admin.clone(), sub_name.clone());
        tokio::spawn(async move {
            let mut kills = 0;
            let mut killed = HashSet::new();
            let deadline = Instant::now() + Duration::from_secs(30);
            while kills < 4 {
                assert!(Instant::now() < deadline, "the subscriber did not reconnect after {kills} kills");
                // Wait for a connection we have not killed yet (the reconnected subscriber).
                let fresh: Vec<u64> =
                    clients_named(&mut admin, &sub_name).await.into_iter().filter(|id| !killed.contains(id)).collect();
                if let Some(&id) = fresh.first() {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    let n: i64 =
                        redis::cmd("CLIENT").arg("KILL").arg("ID").arg(id).query_async(&mut admin).await.unwrap();
                    assert_eq!(n, 1, "killed the subscriber's connection");
                    killed.insert(id);
                    kills += 1;
                } else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            (kills, Instant::now())
        })
    };

    let mut got = Vec::with_capacity(N);
    while got.len() < N {
        let e = tokio::time::timeout(Duration::from_secs(20), stream.next())
            .await
            .expect("no event within 20 s")
            .expect("stream ended")
            .expect("stream error");
        got.push(e);
    }
    let writer_done = writer.await.unwrap();
    let (kills, last_kill) = killer.await.unwrap();
    assert_eq!(kills, 4);
    assert!(last_kill < writer_done, "events were still being written after the last kill");

    let messages: Vec<String> = got
        .iter()
        .map(|e| match &e.event {
            Event::MonitorIntervention { message, .. } => message.clone(),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    let want: Vec<String> = (0..N).map(|i| format!("m{i}")).collect();
    assert_eq!(messages, want, "every event exactly once, in order");
    assert!(got.windows(2).all(|w| w[0].cursor < w[1].cursor));
    let stored = store.read_events(Cursor::START, 10 * N).await.unwrap();
    assert_eq!(got.iter().map(|e| e.cursor).collect::<Vec<_>>(), stored.iter().map(|e| e.cursor).collect::<Vec<_>>());
    let extra = tokio::time::timeout(Duration::from_millis(300), stream.next()).await;
    assert!(extra.is_err(), "nothing beyond what was written: {extra:?}");
    drop(stream);
    delete_keys(&mut admin, &prefix).await;
}

#[tokio::test]
async fn unreachable_server_is_unavailable_and_the_password_is_redacted() {
    // Port 1 on loopback: nothing listens there, so the connection is refused at once.
    let err = RedisStore::connect("redis://omoi:s3cr3t-pw@127.0.0.1:1/0").await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(matches!(err, StoreError::Unavailable { backend: "redis", .. }), "{err}");
    let msg = err.to_string();
    assert!(!msg.contains("s3cr3t-pw"), "{msg}");
    assert!(msg.contains("redis://omoi:***@127.0.0.1:1/0"), "{msg}");
}

#[tokio::test]
async fn malformed_url_or_prefix_is_invalid_input() {
    let err = RedisStore::connect("http://:pw@nowhere").await.unwrap_err();
    assert!(matches!(err, StoreError::InvalidInput(_)), "{err}");
    assert!(!err.to_string().contains(":pw@"), "{err}");
    let err = RedisStore::builder("redis://127.0.0.1:6379").prefix("a}b").connect().await.unwrap_err();
    assert!(matches!(err, StoreError::InvalidInput(_)), "{err}");
}
