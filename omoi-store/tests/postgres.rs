//! The Postgres adapter against every conformance suite, on the pgvector Postgres named by
//! `OMOI_TEST_POSTGRES_URL` (see `scripts/services`). Each test gets a fresh schema.

mod pg_common;

use std::sync::Arc;

use omoi_core::testkit::ManualClock;
use omoi_store::PostgresStore;

async fn store(clock: Arc<ManualClock>) -> Option<Arc<PostgresStore>> {
    pg_common::store(clock, 3).await.map(Arc::new)
}

omoi_core::task_store_suite!(store);
omoi_core::spec_store_suite!(store);
omoi_core::agent_store_suite!(store);
omoi_core::event_store_suite!(store);
omoi_core::memory_store_suite!(store);
omoi_core::intervention_store_suite!(store);
omoi_core::access_store_suite!(store);

/// A row this adapter cannot decode (written by something else) never stops the queue.
mod quarantine {
    use std::time::Duration;

    use omoi_core::testkit::fixtures::task;
    use omoi_core::{ClaimRequest, TaskState, TaskStore};
    use sqlx::Connection;

    use super::*;

    async fn corrupt(store: &PostgresStore, id: omoi_core::TaskId) -> sqlx::PgConnection {
        let mut conn = sqlx::PgConnection::connect(&pg_common::url().unwrap()).await.unwrap();
        let path = format!("SET search_path = {}, public", store.schema());
        sqlx::query(sqlx::AssertSqlSafe(path)).execute(&mut conn).await.unwrap();
        sqlx::query("UPDATE tasks SET def = jsonb_set(def, '{title}', '5') WHERE id = $1")
            .bind(id.as_uuid())
            .execute(&mut conn)
            .await
            .unwrap();
        conn
    }

    async fn raw_state(conn: &mut sqlx::PgConnection, id: omoi_core::TaskId) -> (String, String) {
        sqlx::query_as("SELECT state, coalesce(last_error, '') FROM tasks WHERE id = $1")
            .bind(id.as_uuid())
            .fetch_one(conn)
            .await
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unreadable_row_is_dead_lettered_and_never_stops_a_claim_or_the_sweep() {
        let clock = ManualClock::new();
        let Some(store) = pg_common::store(clock.clone(), 3).await else { return };
        let (bad, good) = (task("bad"), task("good"));
        let dependent = task("after bad").depends_on([bad.id]);
        store.insert_tasks(vec![bad.clone(), good.clone(), dependent.clone()]).await.unwrap();
        let mut conn = corrupt(&store, bad.id).await;
        let req = ClaimRequest::new(omoi_core::AgentId::new(), 10, Duration::from_secs(30));
        let claimed = store.claim(&req).await.expect("the claim succeeds");
        assert_eq!(claimed.iter().map(|c| c.task.id).collect::<Vec<_>>(), vec![good.id]);
        let (state, error) = raw_state(&mut conn, bad.id).await;
        assert_eq!(state, "failed");
        assert!(error.starts_with("quarantined: the stored row cannot be read"), "{error}");
        assert_eq!(store.get_task(dependent.id).await.unwrap().state, TaskState::Blocked);

        // The sweep: a leased row goes bad, its lease lapses, the sweep still takes back the rest.
        let (leased_bad, leased_good) = (task("leased bad"), task("leased good"));
        store.insert_tasks(vec![leased_bad.clone(), leased_good.clone()]).await.unwrap();
        assert_eq!(store.claim(&req).await.unwrap().len(), 2);
        corrupt(&store, leased_bad.id).await;
        clock.advance(Duration::from_secs(31));
        let mut swept = store.reclaim_expired().await.expect("the sweep succeeds");
        swept.sort();
        let mut expected = vec![good.id, leased_bad.id, leased_good.id];
        expected.sort();
        assert_eq!(swept, expected);
        assert_eq!(raw_state(&mut conn, leased_bad.id).await.0, "failed");
        assert_eq!(store.get_task(leased_good.id).await.unwrap().state, TaskState::Ready);
        store.drop_schema().await.unwrap();
    }
}
omoi_core::discovery_store_suite!(store);

/// Subscriptions survive a dropped connection: the listener reconnects by itself.
mod reconnect {
    use std::time::Duration;

    use futures::StreamExt;
    use omoi_core::{EventStore, SystemClock};
    use sqlx::Connection;

    use super::*;

    async fn listener_pids(admin: &mut sqlx::PgConnection, name: &str) -> Vec<i32> {
        sqlx::query_scalar("SELECT pid FROM pg_stat_activity WHERE application_name = $1")
            .bind(name)
            .fetch_all(admin)
            .await
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_subscription_reconnects_its_listener_after_the_connection_drops() {
        let Some(store) = pg_common::store(Arc::new(SystemClock), 3).await else { return };
        let mut admin = sqlx::PgConnection::connect(&pg_common::url().unwrap()).await.unwrap();
        let name = format!("omoi-listen-{}", store.schema());
        let mut wake = store.wake_ups().await.unwrap();
        let drive = tokio::spawn(async move { while wake.next().await.is_some() {} });
        let before = listener_pids(&mut admin, &name).await;
        assert_eq!(before.len(), 1, "one listener connection");
        let killed: bool =
            sqlx::query_scalar("SELECT pg_terminate_backend($1)").bind(before[0]).fetch_one(&mut admin).await.unwrap();
        assert!(killed);
        let mut after = Vec::new();
        for _ in 0..100 {
            after = listener_pids(&mut admin, &name).await;
            if after.iter().any(|p| *p != before[0]) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(after.iter().any(|p| *p != before[0]), "a new listener connection replaced the dropped one");
        drive.abort();
        store.drop_schema().await.unwrap();
    }
}
