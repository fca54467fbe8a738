//! Shared set-up of the Postgres tests: the service URL, throwaway schemas, and clean-up of
//! schemas left by earlier runs.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use omoi_core::Clock;
use omoi_store::PostgresStore;
use tokio::sync::OnceCell;

/// Prefix of every throwaway test schema: `omoi_t_<unix seconds>_<random>`.
pub(crate) const PREFIX: &str = "omoi_t_";

/// The test database, or `None` (test skipped) outside CI when it is not configured.
pub(crate) fn url() -> Option<String> {
    omoi_core::testkit::service_url("OMOI_TEST_POSTGRES_URL")
}

/// A fresh schema name that sorts by creation time.
pub(crate) fn schema_name() -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let random = uuid::Uuid::now_v7().simple().to_string();
    format!("{PREFIX}{secs}_{}", &random[20..])
}

/// A store in a fresh schema on `clock`, with `dims`-dimensional memories.
pub(crate) async fn store(clock: Arc<dyn Clock>, dims: usize) -> Option<PostgresStore> {
    let url = url()?;
    sweep_old_schemas(&url).await;
    let store = PostgresStore::builder(url)
        .schema(schema_name())
        .clock(clock)
        .dimensions(dims)
        .max_connections(24)
        .connect()
        .await
        .expect("connect to the test postgres");
    Some(store)
}

/// Drops test schemas older than an hour (left by earlier runs that could not clean up), once
/// per test process.
pub(crate) async fn sweep_old_schemas(url: &str) {
    static ONCE: OnceCell<()> = OnceCell::const_new();
    ONCE.get_or_init(|| async {
        let Ok(mut conn) = <sqlx::PgConnection as sqlx::Connection>::connect(url).await else { return };
        let names: Vec<String> =
            sqlx::query_scalar("SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'omoi\\_t\\_%'")
                .fetch_all(&mut conn)
                .await
                .unwrap_or_default();
        let cutoff = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default() - Duration::from_secs(3600);
        for name in names {
            let secs: Option<u64> =
                name.strip_prefix(PREFIX).and_then(|r| r.split('_').next()).and_then(|s| s.parse().ok());
            if secs.is_some_and(|s| s < cutoff.as_secs()) {
                let sql = format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE");
                let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await;
            }
        }
    })
    .await;
}
