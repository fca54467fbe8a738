//! `server_load`: the reference server under load, over HTTP on loopback.
//!
//! ```text
//! cargo run --release -p omoi-benches --bin server_load -- \
//!     --backend sqlite|postgres [--tasks N] [--seconds S] [--clients C] [--sse-clients K] [--events E] [--url URL]
//! ```
//!
//! Inserts N tasks (default 100,000) of one spec owned by the benchmark's project (not timed),
//! starts the server (`omoi_examples::server`) on an ephemeral port and prints one JSON line per
//! measurement:
//!
//! - `task_list`: C clients (default 16) each requesting `GET /api/tasks?limit=100&after=<a
//!   random task id>` back to back for S seconds (default 10): requests/s and per-request p50/p99.
//!   Baseline in the same run: the same query straight on the store (`list_tasks`, same
//!   concurrency and duration) — what the HTTP layer, the key check and the ownership check cost.
//! - `task_detail`: the same with `GET /api/tasks/<a random id>` (task, events, attempts,
//!   discoveries, interventions, dependents, why waiting); baseline: `get_task` on the store.
//! - `sse`: K clients (default 100) on `GET /api/events` while E events (default 5,000
//!   `agent.step` of one of the project's tasks) are appended as fast as the store takes them in
//!   batches of 100; `events_per_s` is deliveries (E × K) per second from the first append to the
//!   last delivery, `p50_ms`/`p99_ms` the append-to-delivery latency of every delivery (the event
//!   carries its append time). Baseline: the store's own `subscribe` (one subscriber) in the same
//!   run.
//!
//! Postgres uses a fresh schema, dropped afterwards; SQLite a temporary file. The Postgres
//! settings that decide durability (`fsync`, `synchronous_commit`) are printed in every line.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use omoi_core::{
    AccessRole, AccessStore, AgentId, Event, EventStore, NewSpec, NewTask, SpecId, SpecStore, StoreError, Subject,
    TaskFilter, TaskId, TaskStore,
};
use omoi_examples::server::Server;
use serde_json::json;

const USAGE: &str = "usage: server_load --backend sqlite|postgres [--tasks N] [--seconds S] [--clients C] \
[--sse-clients K] [--events E] [--url URL]";

#[derive(Debug, Clone)]
struct Args {
    backend: String,
    tasks: usize,
    seconds: u64,
    clients: usize,
    sse_clients: usize,
    events: usize,
    url: Option<String>,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut a = Args {
        backend: String::new(),
        tasks: 100_000,
        seconds: 10,
        clients: 16,
        sse_clients: 100,
        events: 5_000,
        url: None,
    };
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = || match value.parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!("{flag}: {value:?} is not a positive number")),
        };
        match flag.as_str() {
            "--backend" => a.backend = value.clone(),
            "--tasks" => a.tasks = number()?,
            "--seconds" => a.seconds = number()? as u64,
            "--clients" => a.clients = number()?,
            "--sse-clients" => a.sse_clients = number()?,
            "--events" => a.events = number()?,
            "--url" => a.url = Some(value.clone()),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if !matches!(a.backend.as_str(), "sqlite" | "postgres") {
        return Err("--backend must be sqlite or postgres".into());
    }
    Ok(a)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    (sorted[i.min(sorted.len() - 1)] * 100.0).round() / 100.0
}

/// SplitMix64, seeded per client.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) % n as u64) as usize
    }
}

/// Runs `clients` loops of `op` for `seconds`; returns (requests/s, sorted latencies in ms).
async fn hammer<F, Fut>(clients: usize, seconds: u64, op: F) -> Result<(f64, Vec<f64>), String>
where
    F: Fn(usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send,
{
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let mut handles = Vec::new();
    for c in 0..clients {
        let (op, stop) = (op.clone(), stop.clone());
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut rng = Rng(c as u64 * 7919 + 1);
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                op(rng.below(usize::MAX)).await?;
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            Ok::<_, String>(lat)
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.map_err(|e| e.to_string())??);
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort_by(f64::total_cmp);
    Ok((all.len() as f64 / elapsed, all))
}

fn micros_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_micros() as u64
}

trait Store:
    TaskStore
    + SpecStore
    + EventStore
    + AccessStore
    + omoi_core::AgentStore
    + omoi_core::DiscoveryStore
    + omoi_core::InterventionStore
    + Clone
    + 'static
{
}
impl<S> Store for S where
    S: TaskStore
        + SpecStore
        + EventStore
        + AccessStore
        + omoi_core::AgentStore
        + omoi_core::DiscoveryStore
        + omoi_core::InterventionStore
        + Clone
        + 'static
{
}

async fn run<S: Store>(store: S, args: &Args, settings: serde_json::Value) -> Result<(), String> {
    let e = |e: StoreError| e.to_string();
    // The data: one spec of N tasks owned by the benchmark's project.
    let project = "bench";
    let spec = NewSpec::new("load", "a spec with many tasks");
    let spec_id: SpecId = spec.id;
    store.assign_owner(Subject::Spec(spec_id), project).await.map_err(e)?;
    store.create_spec(spec).await.map_err(e)?;
    let load = Instant::now();
    let mut ids: Vec<TaskId> = Vec::with_capacity(args.tasks);
    for chunk in (0..args.tasks).collect::<Vec<_>>().chunks(1000) {
        let batch: Vec<NewTask> = chunk
            .iter()
            .map(|i| {
                let mut t = NewTask::new(format!("task {i}"));
                t.links.spec_id = Some(spec_id);
                t
            })
            .collect();
        ids.extend(store.insert_tasks(batch).await.map_err(e)?);
    }
    let load_s = load.elapsed().as_secs_f64();
    let ids = Arc::new(ids);

    let server = Server::new(store.clone(), None).spawn("127.0.0.1:0").await.map_err(|e| e.to_string())?;
    let key = server.create_key(project, AccessRole::ReadOnly).await.map_err(e)?;
    let base = server.url();
    let http =
        reqwest::Client::builder().pool_max_idle_per_host(args.clients * 2).build().map_err(|e| e.to_string())?;
    // The server replays the log at start; let it catch up before measuring.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let line = |measure: &str, rps: f64, lat: &[f64], baseline: f64| {
        println!(
            "{}",
            json!({
                "bench": "server_load", "backend": args.backend, "measure": measure, "tasks": args.tasks,
                "clients": args.clients, "seconds": args.seconds, "requests_per_s": (rps * 10.0).round() / 10.0,
                "p50_ms": percentile(lat, 0.50), "p99_ms": percentile(lat, 0.99),
                "store_baseline_per_s": (baseline * 10.0).round() / 10.0, "load_s": (load_s * 10.0).round() / 10.0,
                "postgres": settings,
            })
        );
    };

    // Task listing.
    let (h, k, b, ids2) = (http.clone(), key.clone(), base.clone(), ids.clone());
    let (rps, lat) = hammer(args.clients, args.seconds, move |r| {
        let (h, k, b, ids) = (h.clone(), k.clone(), b.clone(), ids2.clone());
        async move {
            let after = ids[r % ids.len()];
            let resp = h.get(format!("{b}/api/tasks?limit=100&after={after}")).bearer_auth(&k).send().await;
            let resp = resp.map_err(|e| e.to_string())?;
            if !resp.status().is_success() {
                return Err(format!("list: {}", resp.status()));
            }
            resp.bytes().await.map_err(|e| e.to_string())?;
            Ok(())
        }
    })
    .await?;
    let (s, ids2) = (store.clone(), ids.clone());
    let (base_rps, _) = hammer(args.clients, args.seconds, move |r| {
        let (s, ids) = (s.clone(), ids2.clone());
        async move {
            let f = TaskFilter {
                spec_id: Some(spec_id),
                after: Some(ids[r % ids.len()]),
                limit: Some(100),
                ..TaskFilter::default()
            };
            s.list_tasks(&f).await.map(drop).map_err(|e| e.to_string())
        }
    })
    .await?;
    line("task_list", rps, &lat, base_rps);

    // Task detail.
    let (h, k, b, ids2) = (http.clone(), key.clone(), base.clone(), ids.clone());
    let (rps, lat) = hammer(args.clients, args.seconds, move |r| {
        let (h, k, b, ids) = (h.clone(), k.clone(), b.clone(), ids2.clone());
        async move {
            let id = ids[r % ids.len()];
            let resp = h.get(format!("{b}/api/tasks/{id}")).bearer_auth(&k).send().await.map_err(|e| e.to_string())?;
            if !resp.status().is_success() {
                return Err(format!("detail: {}", resp.status()));
            }
            resp.bytes().await.map_err(|e| e.to_string())?;
            Ok(())
        }
    })
    .await?;
    let (s, ids2) = (store.clone(), ids.clone());
    let (base_rps, _) = hammer(args.clients, args.seconds, move |r| {
        let (s, ids) = (s.clone(), ids2.clone());
        async move { s.get_task(ids[r % ids.len()]).await.map(drop).map_err(|e| e.to_string()) }
    })
    .await?;
    line("task_detail", rps, &lat, base_rps);

    // The stream: K clients, E events.
    let task = ids[0];
    let from = store.last_cursor().await.map_err(e)?;
    let mut clients = Vec::new();
    for _ in 0..args.sse_clients {
        let resp = http
            .get(format!("{base}/api/events?after={}", from.0))
            .bearer_auth(&key)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("stream: {}", resp.status()));
        }
        let want = args.events;
        clients.push(tokio::spawn(async move {
            let mut body = resp.bytes_stream();
            let mut buf = String::new();
            let mut lat = Vec::with_capacity(want);
            let mut last = Instant::now();
            while lat.len() < want {
                let chunk = match tokio::time::timeout(Duration::from_secs(60), body.next()).await {
                    Ok(Some(Ok(c))) => c,
                    _ => return Err(format!("stream ended after {} events", lat.len())),
                };
                buf.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buf.find("\n\n") {
                    let block: String = buf.drain(..end + 2).collect();
                    let Some(data) = block.lines().find_map(|l| l.strip_prefix("data: ")) else { continue };
                    let v: serde_json::Value = serde_json::from_str(data).map_err(|e| e.to_string())?;
                    if let Some(t) = v["event"]["data"]["detail"]["t"].as_u64() {
                        lat.push(micros_now().saturating_sub(t) as f64 / 1000.0);
                        last = Instant::now();
                    }
                }
            }
            Ok::<_, String>((lat, last))
        }));
    }
    // The baseline subscriber: the store's own fan-out.
    let mut sub = store.subscribe(from).await.map_err(e)?;
    let want = args.events;
    let baseline = tokio::spawn(async move {
        let mut n = 0;
        while n < want {
            match sub.next().await {
                Some(Ok(_)) => n += 1,
                _ => break,
            }
        }
        Instant::now()
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let agent = AgentId::new();
    let start = Instant::now();
    for chunk in (0..args.events).collect::<Vec<_>>().chunks(100) {
        let events: Vec<Event> = chunk
            .iter()
            .map(|i| Event::AgentStep {
                task_id: task,
                agent_id: agent,
                step: *i as u32,
                action: "load".into(),
                detail: json!({ "t": micros_now() }),
            })
            .collect();
        store.append_events(events).await.map_err(e)?;
    }
    let mut lat = Vec::new();
    let mut end = start;
    for c in clients {
        let (l, last) = c.await.map_err(|e| e.to_string())??;
        lat.extend(l);
        end = end.max(last);
    }
    let base_end = baseline.await.map_err(|e| e.to_string())?;
    lat.sort_by(f64::total_cmp);
    let secs = (end - start).as_secs_f64();
    let base_secs = (base_end - start).as_secs_f64();
    println!(
        "{}",
        json!({
            "bench": "server_load", "backend": args.backend, "measure": "sse", "tasks": args.tasks,
            "sse_clients": args.sse_clients, "events": args.events, "deliveries": lat.len(),
            "events_per_s": (lat.len() as f64 / secs).round(), "p50_ms": percentile(&lat, 0.50),
            "p99_ms": percentile(&lat, 0.99), "store_subscriber_events_per_s": (args.events as f64 / base_secs).round(),
            "postgres": settings,
        })
    );
    server.shutdown().await;
    Ok(())
}

async fn postgres_settings(url: &str) -> serde_json::Value {
    use sqlx::Connection;
    let Ok(mut c) = sqlx::PgConnection::connect(url).await else { return serde_json::Value::Null };
    let mut out = serde_json::Map::new();
    for name in ["fsync", "synchronous_commit", "full_page_writes", "server_version"] {
        let v: Option<String> =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SHOW {name}"))).fetch_optional(&mut c).await.ok().flatten();
        out.insert(name.into(), json!(v));
    }
    serde_json::Value::Object(out)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = match args.backend.as_str() {
        "sqlite" => {
            let dir = match tempfile::tempdir() {
                Ok(d) => d,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::FAILURE;
                }
            };
            match omoi_store::SqliteStore::open(dir.path().join("bench.db")).await {
                Ok(s) => run(s, &args, serde_json::Value::Null).await,
                Err(e) => Err(e.to_string()),
            }
        }
        _ => {
            let Some(url) = args.url.clone().or_else(|| std::env::var("OMOI_TEST_POSTGRES_URL").ok()) else {
                eprintln!("--url or OMOI_TEST_POSTGRES_URL is required");
                return ExitCode::from(2);
            };
            let secs = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
            let schema = format!("omoi_bench_s_{secs}_{}", std::process::id());
            match omoi_store::PostgresStore::builder(&url).schema(&schema).max_connections(32).connect().await {
                Ok(s) => {
                    let settings = postgres_settings(&url).await;
                    let r = run(s.clone(), &args, settings).await;
                    if let Err(e) = s.drop_schema().await {
                        eprintln!("could not drop schema {schema}: {e}");
                    }
                    r
                }
                Err(e) => Err(e.to_string()),
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("server_load failed: {e}");
            ExitCode::FAILURE
        }
    }
}
