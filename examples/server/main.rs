//! The omoi reference server: the orchestrator (workers and spec pipeline), the monitors and an
//! HTTP API with a live event stream and a page, in one process over one store.
//!
//! ```text
//! cargo run --release --example server                      # SQLite under ./omoi-server, 127.0.0.1:8080
//! cargo run --release --example server -- --postgres URL    # on Postgres
//! cargo run --release --example server -- --workers-only    # no HTTP: only work (scale out)
//! cargo run --release --example server -- --create-key PROJECT [--read-only | --role write]
//! cargo run --release --example server -- --revoke-key KEY_ID
//! ```
//!
//! Other flags: `--data-dir DIR`, `--bind ADDR` (loopback by default), `--workers N` (2),
//! `--cors` (answer cross-origin requests; off by default), `--project NAME` (the project of
//! the admin key printed at start, `default`).
//!
//! The model is chosen as in the quickstart ([`omoi_examples::model`]): Claude with
//! `ANTHROPIC_API_KEY`, an OpenAI-compatible server with `OPENAI_API_KEY` / `OPENAI_BASE_URL`,
//! else a recorded conversation (the spec demo's: it plans the pyutils `slugify` spec; its tasks
//! need a real model). Tasks run as agents in local sandboxes under the data directory.

use std::error::Error;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use omoi_core::config::OmoiConfig;
use omoi_core::{
    AccessRole, AccessStore, AgentStore, ApiKeyId, DiscoveryStore, EventStore, InterventionStore, SpecStore,
    SystemClock, TaskStore,
};
use omoi_examples::server::{Server, ServerOptions, auth};
use omoi_exec::Orchestrator;
use omoi_monitor::{HeartbeatMonitor, MonitoringLoop, Steerer, StuckMonitor};
use omoi_sandbox::LocalSandboxProvider;
use omoi_store::{PostgresStore, SqliteStore};

/// Without an API key: the spec demo's recorded conversation, which plans its spec (the
/// quickstart's recording needs the quickstart's sample repository). Tasks then need a real
/// model to do their work; with the recording they fail, visibly, on the first model call.
const RECORDING: &str = include_str!("../recordings/spec_demo.json");

const USAGE: &str = "usage: server [--data-dir DIR] [--postgres URL] [--bind ADDR] [--workers N] [--workers-only] \
[--cors] [--project NAME] | --create-key PROJECT [--read-only | --role admin|write|read_only] | --revoke-key ID";

#[derive(Debug)]
struct Args {
    data_dir: PathBuf,
    postgres: Option<String>,
    bind: String,
    workers: usize,
    workers_only: bool,
    cors: bool,
    project: String,
    create_key: Option<(String, AccessRole)>,
    revoke_key: Option<ApiKeyId>,
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut a = Args {
        data_dir: PathBuf::from("omoi-server"),
        postgres: None,
        bind: "127.0.0.1:8080".into(),
        workers: 2,
        workers_only: false,
        cors: false,
        project: "default".into(),
        create_key: None,
        revoke_key: None,
    };
    let mut role = None;
    let mut new_key_project = None;
    let value = |it: &mut dyn Iterator<Item = String>, flag: &str| it.next().ok_or(format!("{flag} needs a value"));
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--data-dir" => a.data_dir = value(&mut it, &flag)?.into(),
            "--postgres" => a.postgres = Some(value(&mut it, &flag)?),
            "--bind" => a.bind = value(&mut it, &flag)?,
            "--workers" => {
                a.workers = value(&mut it, &flag)?.parse().map_err(|e| format!("--workers: {e}"))?;
            }
            "--workers-only" => a.workers_only = true,
            "--cors" => a.cors = true,
            "--project" => a.project = value(&mut it, &flag)?,
            "--create-key" => new_key_project = Some(value(&mut it, &flag)?),
            "--read-only" => role = Some(AccessRole::ReadOnly),
            "--role" => role = Some(value(&mut it, &flag)?.parse().map_err(|e| format!("--role: {e}"))?),
            "--revoke-key" => {
                a.revoke_key = Some(value(&mut it, &flag)?.parse().map_err(|e| format!("--revoke-key: {e}"))?);
            }
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    match (new_key_project, role) {
        (Some(p), r) => a.create_key = Some((p, r.unwrap_or(AccessRole::Write))),
        (None, Some(_)) => return Err("--read-only and --role go with --create-key".into()),
        (None, None) => {}
    }
    Ok(a)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn")),
        )
        .init();
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    std::fs::create_dir_all(&args.data_dir)?;
    match &args.postgres {
        Some(url) => run(PostgresStore::connect(url).await?, args).await,
        None => run(SqliteStore::open(args.data_dir.join("omoi.db")).await?, args).await,
    }
}

async fn run<S>(store: S, args: Args) -> Result<(), Box<dyn Error>>
where
    S: TaskStore
        + SpecStore
        + EventStore
        + AgentStore
        + DiscoveryStore
        + InterventionStore
        + AccessStore
        + Clone
        + 'static,
{
    // Key management: one command, then exit.
    if let Some((project, role)) = &args.create_key {
        let (stored, key) = auth::create_key(&store, project, *role).await?;
        println!("created key {} (project {}, {})\n{key}", stored.id, stored.project, stored.role);
        return Ok(());
    }
    if let Some(id) = args.revoke_key {
        let k = auth::revoke_key(&store, id).await?;
        println!("revoked key {} (project {})", k.id, k.project);
        return Ok(());
    }

    let (llm, source) = omoi_examples::model::from_env_or_recording(RECORDING)?;
    let sandboxes = Arc::new(LocalSandboxProvider::new(args.data_dir.join("sandboxes")));
    let mut config = OmoiConfig::default();
    config.queue.poll_interval = Duration::from_millis(250);
    let orch = Arc::new(
        Orchestrator::builder(store.clone())
            .agents(llm, sandboxes)
            .workers(args.workers)
            .config(config.clone())
            .build()?,
    );
    orch.start();
    let clock = Arc::new(SystemClock);
    let steerer = Steerer::new(Arc::new(store.clone()), clock.clone(), &config.monitor);
    let monitors = MonitoringLoop::new(clock.clone(), config.clone())
        .with_heartbeat(HeartbeatMonitor::new(
            Arc::new(store.clone()),
            Arc::new(store.clone()),
            Arc::new(store.clone()),
            config.heartbeat.clone(),
        ))
        .with_stuck(StuckMonitor::new(Arc::new(store.clone()), steerer, clock, config.monitor.stuck.clone()))
        .start();
    println!(
        "omoi server\n  store: {}",
        args.postgres
            .as_deref()
            .map_or_else(|| args.data_dir.join("omoi.db").display().to_string(), |_| "postgres".into())
    );
    println!("  model: {source}\n  workers: {}", args.workers);

    let server = if args.workers_only {
        println!("  workers only: no HTTP (ctrl-c stops)");
        None
    } else {
        let options = ServerOptions { cors: args.cors, ..ServerOptions::default() };
        let server = Server::new(store.clone(), Some(orch.clone())).options(options).spawn(&args.bind).await?;
        let key = server.create_key(&args.project, AccessRole::Admin).await?;
        println!("  url: {}\n  admin key for project {:?} (shown once): {key}", server.url(), args.project);
        println!("  page: {}/#key={key}", server.url());
        Some(server)
    };
    tokio::signal::ctrl_c().await?;
    println!("stopping…");
    if let Some(s) = server {
        s.shutdown().await;
    }
    monitors.shutdown().await;
    orch.shutdown().await?;
    Ok(())
}
