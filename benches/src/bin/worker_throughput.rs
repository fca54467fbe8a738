//! `worker_throughput`: the [`Worker`] end to end, the figure users see.
//!
//! ```text
//! cargo run --release -p omoi-benches --bin worker_throughput -- \
//!     --backend memory|sqlite|postgres --tasks M [--shape independent|dag] \
//!     [--workers N] [--concurrency C] [--claim-batch K] [--prefetch Q]
//!     [--processes P | --hosts H] [--baseline B] [--url URL]
//! ```
//!
//! Inserts M no-op tasks (not timed): independent ones, or a DAG of layers 100 wide where each
//! task depends on two of the previous layer, closed by one task depending on the whole last
//! layer (fan-out and fan-in). Then N workers of concurrency C per process (in P processes,
//! each this binary started again; `memory` runs in one process only) drain the queue with a
//! no-op [`TaskExecutor`]. One JSON line per run on stdout:
//!
//! `{"bench":"worker","backend","shape","tasks","processes","hosts","workers","concurrency","claim_batch","prefetch","jobs_per_s","p50_ms","p99_ms","store_level","postgres","load"}`
//!
//! `--hosts H` (Postgres): the P = H worker processes run on H simulated hosts, network
//! namespaces made by `scripts/netns-hosts` (torn down afterwards), each reaching Postgres over
//! its own veth link; the server must listen there (`scripts/bench-postgres` does). Needs root.
//!
//! `--baseline B`: the same invocation also drains the same plan (fresh tasks, fresh
//! schema) at store level — C claimers each looping `claim` of up to B tasks started with the
//! claim + one `complete_many` — and reports it as `store_level.jobs_per_s`, so the worker's
//! figure has its baseline from the same moment. `load` is the 1-minute load average at the
//! end of the run and the number of CPUs.
//!
//! Latency is per task, from the event that made it ready (`task.created` in state ready, or
//! `task.ready`) to its `task.completed`, both timestamped by the store. For independent tasks,
//! all ready before the clock starts, it is mostly time spent queued. `postgres` gives the
//! server's `fsync`, `synchronous_commit` and `wal_sync_method`.

use std::collections::HashMap;
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use omoi_core::config::QueueConfig;
use omoi_core::testkit::url_on_host;
use omoi_core::{
    AgentId, ClaimRequest, Completion, Cursor, Event, EventStore, NewTask, StoreError, SystemClock, Task, TaskId,
    TaskState, TaskStore,
};
use omoi_exec::worker::{ExecContext, ExecError, TaskExecutor, TaskOutput, Worker, WorkerConfig};
use omoi_store::InMemoryStore;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_util::sync::CancellationToken;

const USAGE: &str = "usage: worker_throughput --backend memory|sqlite|postgres --tasks M [--shape independent|dag] \
                     [--workers N] [--concurrency C] [--claim-batch K] [--prefetch Q] [--processes P | --hosts H] [--baseline B] [--url URL]";

/// Does nothing.
struct NoOp;

#[async_trait]
impl TaskExecutor for NoOp {
    async fn execute(&self, _: &Task, _: &ExecContext) -> Result<TaskOutput, ExecError> {
        Ok(TaskOutput::default())
    }
}

#[derive(Debug, Clone)]
struct Args {
    backend: String,
    tasks: usize,
    dag: bool,
    workers: usize,
    concurrency: usize,
    processes: usize,
    /// Simulated hosts (network namespaces), one worker process each; 0: none.
    hosts: usize,
    /// Batch of the store-level baseline run; 0: none.
    baseline: usize,
    /// The workers' `claim_batch` (default: `QueueConfig`'s).
    claim_batch: Option<usize>,
    /// The workers' local queue (default: `WorkerConfig`'s, the concurrency).
    prefetch: Option<usize>,
    url: Option<String>,
    /// Set in a child process: where the store is (schema or file).
    child: Option<String>,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut a = Args {
        backend: String::new(),
        tasks: 0,
        dag: false,
        workers: 1,
        concurrency: 16,
        processes: 1,
        hosts: 0,
        baseline: 0,
        claim_batch: None,
        prefetch: None,
        url: None,
        child: None,
    };
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        let number = |v: String| v.parse::<usize>().map_err(|e| format!("{flag}: {e}")).map(|n| n.max(1));
        match flag.as_str() {
            "--backend" => a.backend = value()?,
            "--tasks" => a.tasks = number(value()?)?,
            "--shape" => a.dag = value()? == "dag",
            "--workers" => a.workers = number(value()?)?,
            "--concurrency" => a.concurrency = number(value()?)?,
            "--processes" => a.processes = number(value()?)?,
            "--hosts" => a.hosts = number(value()?)?,
            "--baseline" => a.baseline = number(value()?)?,
            "--claim-batch" => a.claim_batch = Some(number(value()?)?),
            "--prefetch" => a.prefetch = Some(value()?.parse().map_err(|e| format!("--prefetch: {e}"))?),
            "--url" => a.url = Some(value()?),
            "--child" => a.child = Some(value()?),
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    if !["memory", "sqlite", "postgres"].contains(&a.backend.as_str()) || a.tasks == 0 {
        return Err(USAGE.into());
    }
    if a.hosts > 0 {
        if a.backend != "postgres" {
            return Err("--hosts needs --backend postgres".into());
        }
        a.processes = a.hosts;
    }
    if a.backend == "memory" {
        a.processes = 1;
    }
    Ok(a)
}

/// The tasks to drain, in insertion order (dependencies first).
fn plan(n: usize, dag: bool) -> Vec<NewTask> {
    const WIDTH: usize = 100;
    if !dag {
        return (0..n).map(|i| NewTask::new(format!("job {i}"))).collect();
    }
    let mut out: Vec<NewTask> = Vec::with_capacity(n);
    while out.len() + 1 < n {
        let i = out.len();
        let (layer, pos) = (i / WIDTH, i % WIDTH);
        let mut t = NewTask::new(format!("node {i}"));
        if layer > 0 {
            let prev = (layer - 1) * WIDTH;
            t = t.depends_on([out[prev + pos].id, out[prev + (pos + 1) % WIDTH].id]);
        }
        out.push(t);
    }
    let last_layer = (out.len().saturating_sub(1) / WIDTH) * WIDTH;
    let join = NewTask::new("join").depends_on(out[last_layer..].iter().map(|t| t.id).collect::<Vec<_>>());
    out.push(join);
    out
}

struct Stores {
    tasks: Arc<dyn TaskStore>,
    events: Arc<dyn EventStore>,
    /// Drops the schema (Postgres) when the run is over.
    cleanup: Option<omoi_store::PostgresStore>,
    /// Where a child process finds the store.
    location: String,
    /// Keeps a SQLite file alive.
    _dir: Option<tempfile::TempDir>,
    postgres: serde_json::Value,
}

async fn open(args: &Args, pool: u32) -> Result<Stores, StoreError> {
    match args.backend.as_str() {
        "memory" => {
            let s = InMemoryStore::new();
            Ok(Stores {
                tasks: Arc::new(s.clone()),
                events: Arc::new(s),
                cleanup: None,
                location: String::new(),
                _dir: None,
                postgres: serde_json::Value::Null,
            })
        }
        "sqlite" => {
            let (dir, path) = match &args.child {
                Some(p) => (None, std::path::PathBuf::from(p)),
                None => {
                    let d = tempfile::tempdir().map_err(|e| StoreError::InvalidInput(e.to_string()))?;
                    let p = d.path().join("bench.db");
                    (Some(d), p)
                }
            };
            let s = omoi_store::SqliteStore::builder(&path).open().await?;
            Ok(Stores {
                tasks: Arc::new(s.clone()),
                events: Arc::new(s),
                cleanup: None,
                location: path.display().to_string(),
                _dir: dir,
                postgres: serde_json::Value::Null,
            })
        }
        _ => {
            let url = args
                .url
                .clone()
                .or_else(|| std::env::var("OMOI_TEST_POSTGRES_URL").ok())
                .ok_or_else(|| StoreError::InvalidInput("--url or OMOI_TEST_POSTGRES_URL is required".into()))?;
            let schema = args.child.clone().unwrap_or_else(|| {
                static RUNS: AtomicUsize = AtomicUsize::new(0);
                let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
                let run = RUNS.fetch_add(1, Ordering::Relaxed);
                format!("omoi_bench_w_{}_{}_{run}", secs.as_secs(), std::process::id())
            });
            let s = omoi_store::PostgresStore::builder(&url).schema(&schema).max_connections(pool).connect().await?;
            let settings = postgres_settings(&url).await;
            Ok(Stores {
                tasks: Arc::new(s.clone()),
                events: Arc::new(s.clone()),
                cleanup: args.child.is_none().then_some(s),
                location: schema,
                _dir: None,
                postgres: settings,
            })
        }
    }
}

async fn postgres_settings(url: &str) -> serde_json::Value {
    use sqlx::Connection;
    let Ok(mut c) = sqlx::PgConnection::connect(url).await else { return serde_json::Value::Null };
    let mut out = serde_json::Map::new();
    for name in ["fsync", "synchronous_commit", "full_page_writes", "wal_sync_method", "server_version"] {
        let v: Option<String> =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SHOW {name}"))).fetch_optional(&mut c).await.ok().flatten();
        out.insert(name.into(), json!(v));
    }
    serde_json::Value::Object(out)
}

/// Runs `args.workers` workers until no task is left to run.
async fn drain(stores: &Stores, args: &Args) -> Result<(), StoreError> {
    let q = QueueConfig { poll_interval: Duration::from_millis(100), ..QueueConfig::default() };
    let stop = CancellationToken::new();
    let mut handles = Vec::new();
    for w in 0..args.workers {
        let mut cfg = WorkerConfig::new(format!("bench-{w}"), args.concurrency, &q);
        cfg.claim_batch = args.claim_batch.unwrap_or(cfg.claim_batch);
        cfg.prefetch = args.prefetch.unwrap_or(cfg.prefetch);
        let worker =
            Worker::new(stores.tasks.clone(), stores.events.clone(), Arc::new(NoOp), Arc::new(SystemClock), cfg);
        let stop = stop.clone();
        handles.push(tokio::spawn(async move { worker.run(stop).await }));
    }
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let counts = stores.tasks.count_tasks(None).await?;
        let open: u64 = [TaskState::Waiting, TaskState::Ready, TaskState::Claimed, TaskState::Running]
            .iter()
            .map(|s| counts.get(s).copied().unwrap_or(0))
            .sum();
        if open == 0 {
            break;
        }
    }
    stop.cancel();
    for h in handles {
        h.await.map_err(|e| StoreError::InvalidInput(e.to_string()))??;
    }
    Ok(())
}

/// Ready → completed latencies in milliseconds, sorted, from the event log.
async fn latencies(events: &dyn EventStore) -> Result<Vec<f64>, StoreError> {
    let mut ready: HashMap<TaskId, chrono::DateTime<chrono::Utc>> = HashMap::new();
    let mut out = Vec::new();
    let mut after = Cursor::START;
    loop {
        let page = events.read_events(after, 10_000).await?;
        let Some(last) = page.last() else { break };
        after = last.cursor;
        for e in &page {
            match &e.event {
                Event::TaskCreated { task_id, state: TaskState::Ready, .. } | Event::TaskReady { task_id } => {
                    ready.insert(*task_id, e.at);
                }
                Event::TaskCompleted { task_id, .. } => {
                    if let Some(r) = ready.get(task_id) {
                        out.push((e.at - *r).num_microseconds().unwrap_or(0) as f64 / 1000.0);
                    }
                }
                _ => {}
            }
        }
    }
    out.sort_by(f64::total_cmp);
    Ok(out)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    (sorted[i.min(sorted.len() - 1)] * 100.0).round() / 100.0
}

/// The store-level baseline: `claimers` loops of `claim` (up to `batch`, started with the
/// claim) and one `complete_many`, until all `total` tasks are completed. Returns jobs/s.
async fn drain_store_level(
    tasks: Arc<dyn TaskStore>,
    claimers: usize,
    batch: usize,
    total: usize,
) -> Result<f64, StoreError> {
    let done = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..claimers {
        let (tasks, done) = (tasks.clone(), done.clone());
        handles.push(tokio::spawn(async move {
            let req = ClaimRequest::new(AgentId::new(), batch, Duration::from_secs(60)).and_start();
            while done.load(Ordering::Acquire) < total {
                let claimed = tasks.claim(&req).await?;
                if claimed.is_empty() {
                    // A DAG: the next tasks wait for completions in flight elsewhere.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                }
                let items = claimed.iter().map(|c| (c.task.id, c.lease.token, Completion::default())).collect();
                let results = tasks.complete_many(items).await?;
                done.fetch_add(results.iter().filter(|r| r.is_ok()).count(), Ordering::AcqRel);
            }
            Ok::<(), StoreError>(())
        }));
    }
    for h in handles {
        h.await.map_err(|e| StoreError::InvalidInput(e.to_string()))??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

/// Simulated hosts made by `scripts/netns-hosts`, removed when dropped.
struct Hosts {
    /// (namespace, address of its gateway in the root namespace), in host order.
    hosts: Vec<(String, String)>,
}

impl Hosts {
    fn script() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/netns-hosts")
    }

    fn up(n: usize) -> Result<Self, StoreError> {
        let err = |e: String| StoreError::InvalidInput(format!("scripts/netns-hosts: {e}"));
        let _ = std::process::Command::new(Self::script()).arg("down").status();
        let out = std::process::Command::new(Self::script())
            .args(["up", &n.to_string()])
            .output()
            .map_err(|e| err(e.to_string()))?;
        let me = Self {
            hosts: String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| l.split_once(' ').map(|(a, b)| (a.to_owned(), b.to_owned())))
                .collect(),
        };
        if !out.status.success() || me.hosts.len() != n {
            return Err(err(String::from_utf8_lossy(&out.stderr).into_owned()));
        }
        Ok(me)
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        let _ = std::process::Command::new(Self::script()).arg("down").status();
    }
}

/// The 1-minute load average and the number of CPUs.
fn load() -> serde_json::Value {
    let avg = std::fs::read_to_string("/proc/loadavg").ok().and_then(|l| l.split(' ').next()?.parse::<f64>().ok());
    json!({ "loadavg_1m": avg, "nproc": std::thread::available_parallelism().map(|n| n.get()).ok() })
}

async fn child(args: Args) -> Result<(), StoreError> {
    let stores = open(&args, (args.workers * args.concurrency).clamp(4, 32) as u32).await?;
    let mut stdout = tokio::io::stdout();
    stdout.write_all(b"ready\n").await.map_err(|e| StoreError::InvalidInput(e.to_string()))?;
    stdout.flush().await.map_err(|e| StoreError::InvalidInput(e.to_string()))?;
    let mut line = String::new();
    BufReader::new(tokio::io::stdin())
        .read_line(&mut line)
        .await
        .map_err(|e| StoreError::InvalidInput(e.to_string()))?;
    drain(&stores, &args).await
}

async fn parent(args: Args) -> Result<serde_json::Value, StoreError> {
    let stores = open(&args, (args.workers * args.concurrency).clamp(4, 32) as u32).await?;
    let tasks = plan(args.tasks, args.dag);
    for chunk in tasks.chunks(2_000) {
        stores.tasks.insert_tasks(chunk.to_vec()).await?;
    }
    let started;
    if args.processes <= 1 {
        started = Instant::now();
        drain(&stores, &args).await?;
    } else {
        let exe = std::env::current_exe().map_err(|e| StoreError::InvalidInput(e.to_string()))?;
        let hosts = if args.hosts > 0 { Some(Hosts::up(args.hosts)?) } else { None };
        let url = args.url.clone().or_else(|| std::env::var("OMOI_TEST_POSTGRES_URL").ok());
        let mut children = Vec::new();
        for p in 0..args.processes {
            let (mut cmd, url) = match hosts.as_ref().map(|h| &h.hosts[p]) {
                Some((netns, gateway)) => {
                    let mut cmd = tokio::process::Command::new("ip");
                    cmd.args(["netns", "exec", netns]).arg(&exe);
                    (cmd, url.as_deref().map(|u| url_on_host(u, gateway)))
                }
                None => (tokio::process::Command::new(&exe), url.clone()),
            };
            cmd.args(["--backend", &args.backend, "--tasks", "1", "--child", &stores.location]);
            cmd.args(["--workers", &args.workers.to_string(), "--concurrency", &args.concurrency.to_string()]);
            if let Some(b) = args.claim_batch {
                cmd.args(["--claim-batch", &b.to_string()]);
            }
            if let Some(p) = args.prefetch {
                cmd.args(["--prefetch", &p.to_string()]);
            }
            if let Some(u) = &url {
                cmd.args(["--url", u]);
            }
            let mut c = cmd
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .map_err(|e| StoreError::InvalidInput(e.to_string()))?;
            let mut out = BufReader::new(c.stdout.take().expect("piped"));
            let mut line = String::new();
            out.read_line(&mut line).await.map_err(|e| StoreError::InvalidInput(e.to_string()))?;
            children.push(c);
        }
        started = Instant::now();
        for c in &mut children {
            if let Some(mut stdin) = c.stdin.take() {
                let _ = stdin.write_all(b"go\n").await;
            }
        }
        for mut c in children {
            let status = c.wait().await.map_err(|e| StoreError::InvalidInput(e.to_string()))?;
            if !status.success() {
                return Err(StoreError::InvalidInput(format!("a worker process failed: {status}")));
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let counts = stores.tasks.count_tasks(None).await?;
    let completed = counts.get(&TaskState::Completed).copied().unwrap_or(0);
    if completed != args.tasks as u64 {
        return Err(StoreError::InvalidInput(format!(
            "only {completed} of {} tasks completed: {counts:?}",
            args.tasks
        )));
    }
    let lat = latencies(stores.events.as_ref()).await?;
    let store_level = if args.baseline > 0 {
        let base = open(&args, (args.concurrency as u32).clamp(4, 32)).await?;
        for chunk in plan(args.tasks, args.dag).chunks(2_000) {
            base.tasks.insert_tasks(chunk.to_vec()).await?;
        }
        let rate = drain_store_level(base.tasks.clone(), args.concurrency, args.baseline, args.tasks).await?;
        if let Some(pg) = base.cleanup.clone() {
            drop(base);
            pg.drop_schema().await?;
        }
        json!({ "claimers": args.concurrency, "batch": args.baseline, "jobs_per_s": rate.round() })
    } else {
        serde_json::Value::Null
    };
    let line = json!({
        "bench": "worker",
        "backend": args.backend,
        "shape": if args.dag { "dag" } else { "independent" },
        "tasks": args.tasks,
        "processes": args.processes,
        "hosts": args.hosts,
        "workers": args.workers,
        "concurrency": args.concurrency,
        "claim_batch": args.claim_batch.unwrap_or(QueueConfig::default().claim_batch),
        "prefetch": args.prefetch.unwrap_or(args.concurrency),
        "jobs_per_s": (args.tasks as f64 / secs).round(),
        "p50_ms": percentile(&lat, 0.5),
        "p99_ms": percentile(&lat, 0.99),
        "store_level": store_level,
        "postgres": stores.postgres,
        "load": load(),
    });
    if let Some(pg) = stores.cleanup.clone() {
        drop(stores);
        pg.drop_schema().await?;
    }
    Ok(line)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if args.child.is_some() {
        return match child(args).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("worker process: {e}");
                ExitCode::FAILURE
            }
        };
    }
    match parent(args).await {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
