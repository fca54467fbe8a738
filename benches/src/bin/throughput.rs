//! `throughput`: queue throughput of a store adapter.
//!
//! ```text
//! cargo run --release -p omoi-benches --bin throughput -- \
//!     --backend memory|sqlite|postgres --workers N --tasks M [--batch B] [--url URL]
//! ```
//!
//! Inserts M independent no-op tasks (not timed), then N concurrent workers each loop: claim up
//! to B tasks, complete them with one `complete_many`, until the queue is empty. Progress goes
//! to stderr; one JSON line per run goes to stdout:
//!
//! `{"backend","workers","tasks","batch","jobs_per_s","p50_ms","p99_ms"}`
//!
//! Latency is per job, from the start of the claim call that leased it to the end of the
//! `complete_many` call that completed it (one claim + complete round of its batch).
//!
//! For `postgres` the same invocation also runs a raw-SQL baseline on a plain table of its own:
//! the same number of workers, each claiming ONE job per transaction with
//! `UPDATE … WHERE id = (SELECT … FOR UPDATE SKIP LOCKED LIMIT 1)` and completing it in a
//! second transaction; its rate is `"raw_sql_jobs_per_s"`. The URL comes from `--url` or
//! `OMOI_TEST_POSTGRES_URL`; each run uses fresh schemas, dropped afterwards. The `sqlite` arm
//! needs the crate feature `sqlite` and uses a temporary file.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use omoi_core::{AgentId, ClaimRequest, Completion, NewTask, StoreError, TaskState, TaskStore};
use omoi_store::InMemoryStore;
use serde_json::json;

const USAGE: &str = "usage: throughput --backend memory|sqlite|postgres --workers N --tasks M [--batch B] [--url URL]";

#[derive(Debug, Clone, Copy, PartialEq)]
enum Backend {
    Memory,
    Sqlite,
    Postgres,
}

#[derive(Debug)]
struct Args {
    backend: Backend,
    workers: usize,
    tasks: usize,
    batch: usize,
    url: Option<String>,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let (mut backend, mut workers, mut tasks, mut batch, mut url) = (None, None, None, 50usize, None);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        let number = |v: String| {
            v.parse::<usize>()
                .map_err(|e| format!("{flag}: {e}"))
                .and_then(|n| if n == 0 { Err(format!("{flag} must be at least 1")) } else { Ok(n) })
        };
        match flag.as_str() {
            "--backend" => {
                backend = Some(match value()?.as_str() {
                    "memory" => Backend::Memory,
                    "sqlite" => Backend::Sqlite,
                    "postgres" => Backend::Postgres,
                    other => return Err(format!("unknown backend {other:?} (memory, sqlite, postgres)")),
                })
            }
            "--workers" => workers = Some(number(value()?)?),
            "--tasks" => tasks = Some(number(value()?)?),
            "--batch" => batch = number(value()?)?,
            "--url" => url = Some(value()?),
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(Args {
        backend: backend.ok_or("--backend is required")?,
        workers: workers.ok_or("--workers is required")?,
        tasks: tasks.ok_or("--tasks is required")?,
        batch,
        url,
    })
}

/// What one run measured.
struct Measured {
    jobs_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i] as f64 / 1000.0
}

/// Prints `label: done/total (rate/s)` to stderr every second until `stop`.
fn progress(label: String, done: Arc<AtomicUsize>, total: usize, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let start = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let n = done.load(Ordering::Relaxed);
            eprintln!("[{label}] {n}/{total} ({:.0}/s)", n as f64 / start.elapsed().as_secs_f64());
        }
    })
}

/// Inserts `tasks` no-op tasks, then drains them with `workers` claim/complete_many loops.
async fn run(store: Arc<dyn TaskStore>, label: &str, args: &Args) -> Result<Measured, StoreError> {
    let mut inserted = 0;
    while inserted < args.tasks {
        let n = (args.tasks - inserted).min(2000);
        store.insert_tasks((0..n).map(|i| NewTask::new(format!("noop {}", inserted + i))).collect()).await?;
        inserted += n;
    }
    eprintln!("[{label}] inserted {} tasks; draining with {} workers, batch {}", args.tasks, args.workers, args.batch);
    let done = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let ticker = progress(label.to_owned(), done.clone(), args.tasks, stop.clone());
    let start = Instant::now();
    let mut workers = Vec::with_capacity(args.workers);
    for _ in 0..args.workers {
        let (store, done) = (store.clone(), done.clone());
        let req = ClaimRequest::new(AgentId::new(), args.batch, Duration::from_secs(300));
        workers.push(tokio::spawn(async move {
            let mut latencies_us = Vec::new();
            loop {
                let t0 = Instant::now();
                let claimed = store.claim(&req).await?;
                if claimed.is_empty() {
                    return Ok::<_, StoreError>(latencies_us);
                }
                let items = claimed.iter().map(|c| (c.task.id, c.lease.token, Completion::default())).collect();
                for r in store.complete_many(items).await? {
                    r?;
                }
                let us = t0.elapsed().as_micros() as u64;
                latencies_us.extend(std::iter::repeat_n(us, claimed.len()));
                done.fetch_add(claimed.len(), Ordering::Relaxed);
            }
        }));
    }
    let mut latencies = Vec::with_capacity(args.tasks);
    for w in workers {
        latencies.extend(w.await.map_err(|e| StoreError::InvalidInput(format!("worker panicked: {e}")))??);
    }
    let elapsed = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    ticker.abort();
    let completed = store.count_tasks(None).await?.get(&TaskState::Completed).copied().unwrap_or(0);
    if completed != args.tasks as u64 || latencies.len() != args.tasks {
        return Err(StoreError::InvalidInput(format!(
            "{completed} tasks completed ({} by workers), expected {}",
            latencies.len(),
            args.tasks
        )));
    }
    latencies.sort_unstable();
    Ok(Measured {
        jobs_per_s: args.tasks as f64 / elapsed.as_secs_f64(),
        p50_ms: percentile(&latencies, 0.50),
        p99_ms: percentile(&latencies, 0.99),
    })
}

fn unique_suffix() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    format!("{}_{}", nanos / 1_000_000_000, nanos % 1_000_000_000)
}

#[cfg(feature = "postgres")]
mod pg {
    //! The Postgres arm and its raw-SQL baseline.

    use super::*;
    use omoi_store::PostgresStore;
    use sqlx::postgres::PgPoolOptions;
    use sqlx::{AssertSqlSafe, Executor};

    pub(super) async fn adapter(url: &str, args: &Args) -> Result<Measured, StoreError> {
        let store = PostgresStore::builder(url)
            .schema(format!("omoi_bench_{}", unique_suffix()))
            .max_connections(u32::try_from(args.workers + 2).unwrap_or(64))
            .connect()
            .await?;
        let measured = run(Arc::new(store.clone()), "postgres", args).await;
        store.drop_schema().await?;
        measured
    }

    /// Plain SKIP LOCKED queue, one job per transaction: jobs per second.
    pub(super) async fn raw_sql(url: &str, args: &Args) -> Result<f64, sqlx::Error> {
        let schema = format!("omoi_bench_raw_{}", unique_suffix());
        let pool =
            PgPoolOptions::new().max_connections(u32::try_from(args.workers + 1).unwrap_or(64)).connect(url).await?;
        pool.execute(AssertSqlSafe(format!(
            "CREATE SCHEMA {schema};
             CREATE TABLE {schema}.jobs (
                 id bigserial PRIMARY KEY,
                 priority smallint NOT NULL DEFAULT 2,
                 run_at timestamptz NOT NULL DEFAULT now(),
                 state smallint NOT NULL DEFAULT 0);
             CREATE INDEX ON {schema}.jobs (priority, run_at, id) WHERE state = 0;"
        )))
        .await?;
        sqlx::query(AssertSqlSafe(format!("INSERT INTO {schema}.jobs (state) SELECT 0 FROM generate_series(1, $1)")))
            .bind(i64::try_from(args.tasks).unwrap_or(i64::MAX))
            .execute(&pool)
            .await?;
        eprintln!(
            "[raw-sql] inserted {} jobs; draining with {} workers, one job per transaction",
            args.tasks, args.workers
        );
        let claim = format!(
            "UPDATE {schema}.jobs SET state = 1 WHERE id = (SELECT id FROM {schema}.jobs WHERE state = 0 \
             ORDER BY priority, run_at, id LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING id"
        );
        let complete = format!("UPDATE {schema}.jobs SET state = 2 WHERE id = $1");
        let done = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let ticker = progress("raw-sql".into(), done.clone(), args.tasks, stop.clone());
        let start = Instant::now();
        let mut workers = Vec::new();
        for _ in 0..args.workers {
            let (pool, claim, complete, done) = (pool.clone(), claim.clone(), complete.clone(), done.clone());
            workers.push(tokio::spawn(async move {
                loop {
                    let id: Option<i64> =
                        sqlx::query_scalar(AssertSqlSafe(claim.as_str())).fetch_optional(&pool).await?;
                    let Some(id) = id else { return Ok::<_, sqlx::Error>(()) };
                    sqlx::query(AssertSqlSafe(complete.as_str())).bind(id).execute(&pool).await?;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        for w in workers {
            w.await.map_err(|e| sqlx::Error::Protocol(format!("worker panicked: {e}")))??;
        }
        let rate = args.tasks as f64 / start.elapsed().as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        ticker.abort();
        let left: i64 =
            sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM {schema}.jobs WHERE state <> 2")))
                .fetch_one(&pool)
                .await?;
        pool.execute(AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE"))).await?;
        if left != 0 {
            return Err(sqlx::Error::Protocol(format!("{left} raw jobs not completed")));
        }
        Ok(rate)
    }
}

#[cfg(feature = "sqlite")]
async fn sqlite(args: &Args) -> Result<Measured, StoreError> {
    let dir = tempfile::tempdir().map_err(|e| StoreError::InvalidInput(format!("temp dir: {e}")))?;
    let store = omoi_store::SqliteStore::builder(dir.path().join("bench.db")).open().await?;
    run(Arc::new(store), "sqlite", args).await
}

async fn bench(args: &Args) -> Result<serde_json::Value, String> {
    let mut line = json!({
        "backend": match args.backend { Backend::Memory => "memory", Backend::Sqlite => "sqlite", Backend::Postgres => "postgres" },
        "workers": args.workers,
        "tasks": args.tasks,
        "batch": args.batch,
    });
    let measured = match args.backend {
        Backend::Memory => run(Arc::new(InMemoryStore::new()), "memory", args).await.map_err(|e| e.to_string())?,
        #[cfg(feature = "sqlite")]
        Backend::Sqlite => sqlite(args).await.map_err(|e| e.to_string())?,
        #[cfg(not(feature = "sqlite"))]
        Backend::Sqlite => return Err("the sqlite arm needs the crate feature `sqlite`".into()),
        #[cfg(feature = "postgres")]
        Backend::Postgres => {
            let url = args
                .url
                .clone()
                .or_else(|| std::env::var("OMOI_TEST_POSTGRES_URL").ok())
                .ok_or("postgres needs --url or OMOI_TEST_POSTGRES_URL")?;
            let m = pg::adapter(&url, args).await.map_err(|e| e.to_string())?;
            let raw = pg::raw_sql(&url, args).await.map_err(|e| format!("raw-sql baseline: {e}"))?;
            line["raw_sql_jobs_per_s"] = json!((raw * 10.0).round() / 10.0);
            m
        }
        #[cfg(not(feature = "postgres"))]
        Backend::Postgres => return Err("the postgres arm needs the crate feature `postgres`".into()),
    };
    line["jobs_per_s"] = json!((measured.jobs_per_s * 10.0).round() / 10.0);
    line["p50_ms"] = json!((measured.p50_ms * 1000.0).round() / 1000.0);
    line["p99_ms"] = json!((measured.p99_ms * 1000.0).round() / 1000.0);
    Ok(line)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match bench(&args).await {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("throughput: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Result<Args, String> {
        parse_args(s.split_whitespace().map(str::to_owned))
    }

    #[test]
    fn arguments_parse_with_a_default_batch() {
        let a = args("--backend postgres --workers 16 --tasks 1000").unwrap();
        assert_eq!((a.backend, a.workers, a.tasks, a.batch), (Backend::Postgres, 16, 1000, 50));
        assert_eq!(args("--backend memory --workers 1 --tasks 5 --batch 7").unwrap().batch, 7);
        assert!(args("--backend mongo --workers 1 --tasks 1").unwrap_err().contains("unknown backend"));
        assert!(args("--backend memory --workers 0 --tasks 1").unwrap_err().contains("at least 1"));
        assert!(args("--backend memory --tasks 1").unwrap_err().contains("--workers"));
    }

    #[test]
    fn percentiles_pick_ranks() {
        let v: Vec<u64> = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(percentile(&v, 0.5), 50.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn memory_run_completes_every_task() {
        let a = args("--backend memory --workers 4 --tasks 500 --batch 10").unwrap();
        let m = run(Arc::new(InMemoryStore::new()), "memory", &a).await.unwrap();
        assert!(m.jobs_per_s > 0.0 && m.p50_ms <= m.p99_ms);
    }
}
