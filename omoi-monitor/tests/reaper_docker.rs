//! The sandbox reaper against a real Docker engine: a worker process running an agent in a
//! Docker sandbox is killed with SIGKILL; its container is left behind; once the heartbeat
//! monitor has failed the agent and taken its task back, the reaper (in this process, on its
//! interval) finds the container by label and removes it. Also a sweep that keeps what is still
//! leased and leaves sandboxes that are not the executor's alone.
//!
//! The test binary re-executes itself as the worker (`worker_process` is a no-op unless
//! `OMOI_REAP_DB` is set).

use std::collections::{BTreeMap, HashMap};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::query_parameters::ListContainersOptions;
use omoi_core::config::{HeartbeatConfig, OmoiConfig, QueueConfig};
use omoi_core::testkit::{ManualClock, ScriptedLlm, service_url};
use omoi_core::{
    AgentId, AgentStatus, AgentStore, ClaimRequest, Cursor, Event, EventStore, NewTask, SandboxProvider, SandboxSpec,
    SystemClock, TaskStore,
};
use omoi_exec::agent::AgentExecutor;
use omoi_exec::worker::{Worker, WorkerConfig};
use omoi_monitor::{HeartbeatMonitor, MonitoringLoop, SandboxReaper};
use omoi_sandbox::DockerSandboxProvider;
use omoi_store::{InMemoryStore, SqliteStore};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const DB: &str = "OMOI_REAP_DB";
const RUN: &str = "OMOI_REAP_RUN";
const TEST_LABEL: &str = "omoi.test";

fn provider() -> Option<DockerSandboxProvider> {
    let host = service_url("DOCKER_HOST")?;
    let image = service_url("OMOI_TEST_DOCKER_IMAGE")?;
    Some(DockerSandboxProvider::builder().host(host).image(image).build().expect("docker provider"))
}

async fn engine() -> Docker {
    let host = std::env::var("DOCKER_HOST").expect("DOCKER_HOST");
    let path = host.trim_start_matches("unix://");
    Docker::connect_with_unix(path, 60, bollard::API_DEFAULT_VERSION).unwrap().negotiate_version().await.unwrap()
}

/// Containers (running or not) carrying `omoi.test=<run>`.
async fn containers(docker: &Docker, run: &str) -> usize {
    let filters = HashMap::from([("label".to_owned(), vec![format!("{TEST_LABEL}={run}")])]);
    let options = ListContainersOptions { all: true, filters: Some(filters), ..Default::default() };
    docker.list_containers(Some(options)).await.unwrap().len()
}

async fn wait_for(what: &str, mut probe: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !probe().await {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The worker process: one agent whose model runs a command that never ends.
#[test]
fn worker_process() {
    let (Ok(db), Ok(run)) = (std::env::var(DB), std::env::var(RUN)) else { return };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async move {
        let store = SqliteStore::open(&db).await.unwrap();
        let llm = ScriptedLlm::new();
        llm.push_tool_call("run_command", json!({"command": "sleep 3600"}));
        let spec = SandboxSpec { labels: BTreeMap::from([(TEST_LABEL.to_owned(), run)]), ..SandboxSpec::default() };
        let executor = AgentExecutor::new(
            Arc::new(llm),
            Arc::new(provider().expect("docker")),
            Arc::new(store.clone()),
            Arc::new(store.clone()),
            Arc::new(SystemClock),
        )
        .with_sandbox_spec(spec);
        let q = QueueConfig {
            lease_ttl: Duration::from_secs(120),
            lease_renew_every: Duration::from_secs(30),
            ..QueueConfig::default()
        };
        let mut cfg = WorkerConfig::new("reap-me", 1, &q);
        cfg.heartbeat_every = Duration::from_millis(200);
        let worker = Worker::new(
            Arc::new(store.clone()),
            Arc::new(store.clone()),
            Arc::new(executor),
            Arc::new(SystemClock),
            cfg,
        )
        .with_agent_store(Arc::new(store.clone()));
        worker.run(CancellationToken::new()).await.unwrap();
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_container_of_a_killed_worker_is_removed_by_the_reaper() {
    let Some(provider) = provider() else { return };
    let docker = engine().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("omoi.db");
    let store = SqliteStore::open(&db).await.unwrap();
    let run = uuid_like();
    let task = NewTask::new("hang in a container");
    store.insert_tasks(vec![task.clone()]).await.unwrap();
    let mut worker = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "worker_process", "--nocapture", "--test-threads=1"])
        .env(DB, &db)
        .env(RUN, &run)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    wait_for("the worker's sandbox container", async || containers(&docker, &run).await == 1).await;
    let holder = store.get_task(task.id).await.unwrap().lease.expect("leased").holder;
    worker.kill().unwrap();
    assert!(!worker.wait().unwrap().success());
    assert_eq!(containers(&docker, &run).await, 1, "the killed process left its container behind");

    let config = OmoiConfig {
        heartbeat: HeartbeatConfig {
            ttl_idle: Duration::from_secs(1),
            ttl_running: Duration::from_secs(1),
            check_interval: Duration::from_millis(200),
            ..HeartbeatConfig::default()
        },
        sandbox: omoi_core::config::SandboxConfig {
            cleanup_interval: Duration::from_millis(300),
            ..omoi_core::config::SandboxConfig::default()
        },
        ..OmoiConfig::default()
    };
    let s = Arc::new(store.clone());
    let handle = MonitoringLoop::new(Arc::new(SystemClock), config.clone())
        .with_heartbeat(HeartbeatMonitor::new(s.clone(), s.clone(), s.clone(), config.heartbeat.clone()))
        .with_reaper(SandboxReaper::new(Arc::new(provider), s.clone(), s).scoped(TEST_LABEL, run.clone()))
        .start();
    wait_for("the reaper to remove the container", async || containers(&docker, &run).await == 0).await;
    let stats = handle.shutdown().await;
    assert!(stats["reaper"].ok >= 1 && stats["reaper"].failed == 0, "{stats:?}");
    assert_eq!(store.get_agent(holder).await.unwrap().status, AgentStatus::Failed);
    let log = store.read_events(Cursor::START, 10_000).await.unwrap();
    let reaped: Vec<_> = log
        .iter()
        .filter_map(|e| match &e.event {
            Event::MonitorSandboxReaped { holder: h, task_id, .. } => Some((*h, *task_id)),
            _ => None,
        })
        .collect();
    assert_eq!(reaped, vec![(holder, Some(task.id))]);
}

fn uuid_like() -> String {
    omoi_core::TaskId::new().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_keeps_leased_sandboxes_and_those_without_task_labels_and_reaps_the_rest() {
    let Some(provider) = provider() else { return };
    let docker = engine().await;
    let clock = ManualClock::new();
    let store = InMemoryStore::with_clock(clock);
    let run = uuid_like();
    let (kept, released) = (NewTask::new("kept"), NewTask::new("released"));
    store.insert_tasks(vec![kept.clone(), released.clone()]).await.unwrap();
    let holder = AgentId::new();
    let leases = store.claim(&ClaimRequest::new(holder, 2, Duration::from_secs(600))).await.unwrap();
    let labels = |task: Option<&NewTask>, agent: AgentId| {
        let mut l = BTreeMap::from([(TEST_LABEL.to_owned(), run.clone())]);
        if let Some(t) = task {
            l.insert("omoi.task".into(), t.id.to_string());
            l.insert("omoi.agent".into(), agent.to_string());
        }
        SandboxSpec { labels: l, ..SandboxSpec::default() }
    };
    provider.create(labels(Some(&kept), holder)).await.unwrap();
    provider.create(labels(Some(&released), holder)).await.unwrap();
    provider.create(labels(Some(&kept), AgentId::new())).await.unwrap(); // another agent's leftover
    provider.create(labels(None, holder)).await.unwrap(); // not the executor's
    let lease = leases.iter().find(|c| c.task.id == released.id).unwrap().lease;
    store.release(released.id, lease.token).await.unwrap();
    assert_eq!(containers(&docker, &run).await, 4);

    let s = Arc::new(store.clone());
    let reaper = SandboxReaper::new(Arc::new(provider.clone()), s.clone(), s).scoped(TEST_LABEL, run.clone());
    let mut reaped = reaper.check().await.unwrap();
    reaped.sort();
    let mut expected = vec![released.id, kept.id];
    expected.sort();
    assert_eq!(reaped, expected, "the released task's sandbox and the stale agent's");
    assert_eq!(containers(&docker, &run).await, 2);
    assert!(reaper.check().await.unwrap().is_empty(), "nothing more to reap");
    // Clean up what the test kept.
    use omoi_core::SandboxInventory;
    for s in provider.list_sandboxes(&[(TEST_LABEL, &run)]).await.unwrap() {
        provider.destroy_sandbox(s.id).await.unwrap();
    }
    assert_eq!(containers(&docker, &run).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_heartbeat_monitor_destroys_a_failed_agents_sandboxes_and_only_those() {
    let Some(provider) = provider() else { return };
    let docker = engine().await;
    let clock = ManualClock::new();
    let store = InMemoryStore::with_clock(clock.clone());
    let run = uuid_like();
    let (silent, alive) = (AgentId::new(), AgentId::new());
    for (id, name) in [(silent, "silent"), (alive, "alive")] {
        let new = omoi_core::NewAgent { id, ..omoi_core::NewAgent::worker(name, Vec::<String>::new()) };
        store.register_agent(new).await.unwrap();
        store.heartbeat(id, omoi_core::Heartbeat { seq: 1 }).await.unwrap();
    }
    for agent in [silent, alive] {
        let labels = BTreeMap::from([
            (TEST_LABEL.to_owned(), run.clone()),
            ("omoi.agent".to_owned(), agent.to_string()),
            ("omoi.task".to_owned(), omoi_core::TaskId::new().to_string()),
        ]);
        provider.create(SandboxSpec { labels, ..SandboxSpec::default() }).await.unwrap();
    }
    let s = Arc::new(store.clone());
    let monitor = HeartbeatMonitor::new(s.clone(), s.clone(), s, HeartbeatConfig::default())
        .with_sandboxes(Arc::new(provider.clone()));
    clock.advance(Duration::from_secs(90));
    store.heartbeat(alive, omoi_core::Heartbeat { seq: 2 }).await.unwrap();
    let report = monitor.check().await.unwrap();
    assert_eq!((report.failed, report.sandboxes_destroyed), (vec![silent], 1));
    use omoi_core::SandboxInventory;
    let left = provider.list_sandboxes(&[(TEST_LABEL, &run)]).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].labels["omoi.agent"], alive.to_string(), "the live agent's sandbox is kept");
    provider.destroy_sandbox(left[0].id).await.unwrap();
    assert_eq!(containers(&docker, &run).await, 0);
}
