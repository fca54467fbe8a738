//! Scale-out across hosts: worker processes on two simulated hosts — network namespaces made by
//! `scripts/netns-hosts`, each reaching Postgres over its own veth link (inside a namespace
//! 127.0.0.1 is the namespace's own loopback, so the only way to the server is the link) —
//! drain one layered DAG of 300 tasks together. Afterwards every task completed exactly once
//! and no attempt started before its dependencies completed (`check_drain`, the checks of the
//! chaos test), and both hosts did work.
//!
//! Needs root and iproute2: under `CI=true` their absence fails the test, elsewhere it is
//! skipped. The server must listen on the links (`scripts/services` sets
//! `listen_addresses = '*'` and trusts 10.201.0.0/16).
//!
//! The test binary re-executes itself inside each namespace as the worker process
//! (`host_worker_process` is a no-op unless `OMOI_HOSTS_SCHEMA` is set).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use omoi_core::config::QueueConfig;
use omoi_core::testkit::{check_drain, fixtures, service_url, url_on_host};
use omoi_core::{EventStore, SystemClock, Task, TaskFilter, TaskId, TaskState, TaskStore};
use omoi_exec::worker::{ExecContext, ExecError, TaskExecutor, TaskOutput, Worker, WorkerConfig};
use omoi_store::PostgresStore;
use tokio_util::sync::CancellationToken;

const SCHEMA: &str = "OMOI_HOSTS_SCHEMA";
const READY_DIR: &str = "OMOI_HOSTS_READY_DIR";
const HOSTS: usize = 2;
const LAYERS: usize = 15;
const WIDTH: usize = 20;

/// Works 5 ms, so both hosts get a share.
struct Short;

#[async_trait]
impl TaskExecutor for Short {
    async fn execute(&self, _: &Task, _: &ExecContext) -> Result<TaskOutput, ExecError> {
        tokio::time::sleep(Duration::from_millis(5)).await;
        Ok(TaskOutput::default())
    }
}

/// The worker process, inside a namespace: connects through the host's gateway, says it is
/// ready (a file: the file system is shared), and works until every task is completed.
#[test]
fn host_worker_process() {
    let Ok(schema) = std::env::var(SCHEMA) else { return };
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"));
    let (ready, gateway, url) = (var(READY_DIR), var("OMOI_HOST_GATEWAY"), var("OMOI_TEST_POSTGRES_URL"));
    let host = std::env::var("OMOI_HOST").unwrap_or_default();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async move {
        let store = PostgresStore::builder(url_on_host(&url, &gateway))
            .schema(&schema)
            .max_connections(4)
            .connect()
            .await
            .expect("connect over the veth link");
        std::fs::write(Path::new(&ready).join(&host), b"").unwrap();
        let q = QueueConfig { poll_interval: Duration::from_millis(50), ..QueueConfig::default() };
        let worker = Worker::new(
            Arc::new(store.clone()),
            Arc::new(store.clone()),
            Arc::new(Short),
            Arc::new(SystemClock),
            WorkerConfig::new(format!("host-{host}"), 8, &q),
        );
        let stop = CancellationToken::new();
        let run = tokio::spawn({
            let stop = stop.clone();
            async move { worker.run(stop).await }
        });
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let counts = store.count_tasks(None).await.unwrap();
            if counts.get(&TaskState::Completed).copied().unwrap_or(0) == (LAYERS * WIDTH) as u64 {
                break;
            }
        }
        stop.cancel();
        let stats = run.await.unwrap().unwrap();
        println!("\nOMOI_HOST {host} completed {}", stats.completed);
    });
}

/// Whether this machine can make the hosts: root and `ip`. Under `CI=true` it must.
fn can_make_hosts() -> bool {
    let root = std::process::Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    let ip = std::process::Command::new("ip").arg("-V").output().is_ok_and(|o| o.status.success());
    if root && ip {
        return true;
    }
    let why = format!("simulated hosts need root and iproute2 (root: {root}, ip: {ip})");
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("{why}, and CI=true");
    }
    eprintln!("skipped: {why}");
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_on_veth_links_drain_one_dag_exactly_once_in_dependency_order() {
    let Some(url) = service_url("OMOI_TEST_POSTGRES_URL") else { return };
    if !can_make_hosts() {
        return;
    }
    let schema =
        format!("omoi_t_{}_{}", chrono::Utc::now().timestamp(), &uuid::Uuid::now_v7().simple().to_string()[20..]);
    let store = PostgresStore::builder(url.clone()).schema(&schema).max_connections(4).connect().await.unwrap();
    let start = store.last_cursor().await.unwrap();
    let ready = tempfile::tempdir().unwrap();

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/netns-hosts");
    let exe = std::env::current_exe().unwrap();
    let hosts = tokio::process::Command::new(script)
        .args(["run", &HOSTS.to_string(), "--"])
        .arg(exe)
        .args(["--exact", "host_worker_process", "--nocapture", "--test-threads=1"])
        .env(SCHEMA, &schema)
        .env(READY_DIR, ready.path())
        .env("OMOI_TEST_POSTGRES_URL", &url)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run scripts/netns-hosts");
    // Every host connected over its link before there is work: the hosts start together.
    for _ in 0..600 {
        if std::fs::read_dir(ready.path()).unwrap().count() == HOSTS {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(std::fs::read_dir(ready.path()).unwrap().count(), HOSTS, "every host connected within 30 s");
    let tasks = fixtures::layered(LAYERS, WIDTH);
    let deps: HashMap<TaskId, Vec<TaskId>> = tasks.iter().map(|t| (t.id, t.dependencies.clone())).collect();
    store.insert_tasks(tasks).await.unwrap();

    let out = tokio::time::timeout(Duration::from_secs(120), hosts.wait_with_output())
        .await
        .expect("the hosts drained the DAG within 120 s")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "a host failed: {stdout}");
    let per_host: Vec<u64> =
        stdout.lines().filter_map(|l| l[l.find("OMOI_HOST ")?..].split_whitespace().nth(3)?.parse().ok()).collect();
    assert_eq!(per_host.len(), HOSTS, "one summary per host: {stdout}");
    assert_eq!(per_host.iter().sum::<u64>(), (LAYERS * WIDTH) as u64, "completions per host: {per_host:?}");
    assert!(per_host.iter().all(|&n| n > 0), "every host did work: {per_host:?}");

    let all = store.list_tasks(&TaskFilter::default()).await.unwrap();
    assert_eq!(all.len(), LAYERS * WIDTH, "no task lost");
    assert!(all.iter().all(|t| t.state == TaskState::Completed && t.attempts == 1), "every task completed once");
    let report = check_drain(&store, start, &deps, "two hosts").await;
    assert_eq!(report.completed, LAYERS * WIDTH);
    println!("hosts: {HOSTS} hosts drained {} tasks; {per_host:?} per host", report.completed);
    store.drop_schema().await.unwrap();
}
