//! The Docker adapter against a real engine (`DOCKER_HOST`, image `OMOI_TEST_DOCKER_IMAGE`).

use std::sync::Arc;

use omoi_core::testkit::{ManualClock, service_url};
use omoi_sandbox::DockerSandboxProvider;

fn builder() -> Option<omoi_sandbox::DockerSandboxProviderBuilder> {
    let host = service_url("DOCKER_HOST")?;
    let image = service_url("OMOI_TEST_DOCKER_IMAGE")?;
    Some(DockerSandboxProvider::builder().host(host).image(image))
}

async fn provider(_clock: Arc<ManualClock>) -> Option<Arc<DockerSandboxProvider>> {
    Some(Arc::new(builder()?.build().expect("docker provider")))
}

omoi_core::sandbox_suite!(provider);
omoi_core::sandbox_read_only_suite!(provider);

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bollard::Docker;
use bollard::models::ContainerInspectResponse;
use bollard::query_parameters::ListContainersOptions;
use omoi_core::{
    ExecRequest, NetworkPolicy, ResourceLimits, SandboxError, SandboxProvider, SandboxSpec, WorkspacePath,
};

async fn engine() -> Docker {
    let host = std::env::var("DOCKER_HOST").expect("DOCKER_HOST");
    let path = host.trim_start_matches("unix://");
    Docker::connect_with_unix(path, 60, bollard::API_DEFAULT_VERSION).unwrap().negotiate_version().await.unwrap()
}

/// Containers (running or not) carrying `label=value`.
async fn containers_labelled(docker: &Docker, label: &str, value: &str) -> Vec<String> {
    let filters = HashMap::from([("label".to_owned(), vec![format!("{label}={value}")])]);
    let options = ListContainersOptions { all: true, filters: Some(filters), ..Default::default() };
    docker.list_containers(Some(options)).await.unwrap().into_iter().filter_map(|c| c.id).collect()
}

async fn inspect_sandbox(docker: &Docker, id: omoi_core::SandboxId) -> ContainerInspectResponse {
    let found = containers_labelled(docker, "omoi.sandbox", &id.to_string()).await;
    assert_eq!(found.len(), 1, "exactly one container per sandbox: {found:?}");
    docker.inspect_container(&found[0], None).await.unwrap()
}

fn run_label() -> (String, String) {
    ("omoi.test-run".to_owned(), uuid::Uuid::now_v7().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_has_no_network_runs_as_non_root_with_limits_applied() {
    let Some(builder) = builder() else { return };
    let provider = builder.build().unwrap();
    let docker = engine().await;
    let spec = SandboxSpec {
        limits: ResourceLimits { cpus: Some(0.5), memory_bytes: Some(128 << 20), pids: Some(64) },
        labels: BTreeMap::from([("omoi.task".to_owned(), "t-1".to_owned())]),
        ..SandboxSpec::default()
    };
    let sandbox = provider.create(spec).await.unwrap();
    let info = inspect_sandbox(&docker, sandbox.id()).await;
    let host = info.host_config.clone().unwrap();
    assert_eq!(host.network_mode.as_deref(), Some("none"));
    assert_eq!((host.nano_cpus, host.memory, host.pids_limit), (Some(500_000_000), Some(128 << 20), Some(64)));
    assert_eq!(host.cap_drop, Some(vec!["ALL".to_owned()]));
    assert_eq!(host.security_opt, Some(vec!["no-new-privileges".to_owned()]));
    let config = info.config.clone().unwrap();
    assert_eq!(config.user.as_deref(), Some("1000:1000"));
    assert_eq!(config.working_dir.as_deref(), Some("/workspace"));
    let labels = config.labels.unwrap();
    assert_eq!(labels.get("omoi.sandbox"), Some(&sandbox.id().to_string()));
    assert_eq!(labels.get("omoi.task").map(String::as_str), Some("t-1"));

    // From inside: the user, the interfaces, and the limits the kernel enforces.
    let script = "id -u; id -g; ls /sys/class/net; \
                  cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max; \
                  cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max";
    let out = sandbox.exec(ExecRequest::shell(script)).await.unwrap();
    assert_eq!(out.stdout_text(), format!("1000\n1000\nlo\n64\n{}\n", 128 << 20), "stderr: {}", out.stderr_text());
    // Nothing outside is reachable (no interface but loopback), and the user cannot become root.
    let out = sandbox.exec(ExecRequest::shell("cat /proc/net/route | wc -l; su -c true 2>/dev/null; echo su=$?")).await;
    let out = out.unwrap();
    assert_eq!(out.stdout_text(), "1\nsu=1\n", "only the header of an empty routing table");
    // Files written through the API belong to the sandbox user.
    sandbox.write_file(&WorkspacePath::parse("owned/by.txt").unwrap(), b"x").await.unwrap();
    let out = sandbox.exec(ExecRequest::shell("stat -c %u:%g:%a owned owned/by.txt")).await.unwrap();
    assert_eq!(out.stdout_text(), "1000:1000:755\n1000:1000:644\n");
    sandbox.destroy().await.unwrap();
    assert!(containers_labelled(&docker, "omoi.sandbox", &sandbox.id().to_string()).await.is_empty());
}

#[tokio::test]
async fn full_network_policy_attaches_a_network() {
    let Some(builder) = builder() else { return };
    let provider = builder.build().unwrap();
    let spec = SandboxSpec { network: NetworkPolicy::Full, ..SandboxSpec::default() };
    let sandbox = provider.create(spec).await.unwrap();
    let info = inspect_sandbox(&engine().await, sandbox.id()).await;
    // The test engine runs with `--bridge=none`, so only the requested mode can be checked.
    assert_eq!(info.host_config.unwrap().network_mode.as_deref(), Some("bridge"));
    sandbox.destroy().await.unwrap();
}

#[tokio::test]
async fn failing_setup_step_removes_the_started_container() {
    let Some(builder) = builder() else { return };
    let provider = builder.setup_command(["sh", "-c", "echo setup-broke >&2; exit 7"]).build().unwrap();
    let (key, value) = run_label();
    let spec = SandboxSpec { labels: BTreeMap::from([(key.clone(), value.clone())]), ..SandboxSpec::default() };
    match provider.create(spec).await {
        Err(SandboxError::CreateFailed { step, message }) => {
            assert_eq!(step, "setup");
            assert!(message.contains("setup-broke") && message.contains("Some(7)"), "{message}");
        }
        other => panic!("expected CreateFailed at setup, got {:?}", other.map(|s| s.id())),
    }
    assert!(containers_labelled(&engine().await, &key, &value).await.is_empty(), "the saga left a container");
}

#[tokio::test]
async fn failing_start_removes_the_created_container() {
    let Some(builder) = builder() else { return };
    let provider = builder.user("omoi-no-such-user").build().unwrap();
    let (key, value) = run_label();
    let spec = SandboxSpec { labels: BTreeMap::from([(key.clone(), value.clone())]), ..SandboxSpec::default() };
    match provider.create(spec).await {
        Err(SandboxError::CreateFailed { step, message }) => {
            assert_eq!(step, "start", "{message}");
            assert!(message.contains("omoi-no-such-user"), "{message}");
        }
        other => panic!("expected CreateFailed at start, got {:?}", other.map(|s| s.id())),
    }
    assert!(containers_labelled(&engine().await, &key, &value).await.is_empty(), "the saga left a container");
}

#[tokio::test]
async fn missing_image_fails_at_create_container() {
    let Some(builder) = builder() else { return };
    let provider = builder.build().unwrap();
    let (key, value) = run_label();
    let spec = SandboxSpec {
        image: Some("omoi-no-such-image:never".into()),
        labels: BTreeMap::from([(key.clone(), value.clone())]),
        ..SandboxSpec::default()
    };
    match provider.create(spec).await {
        Err(SandboxError::CreateFailed { step, .. }) => assert_eq!(step, "create_container"),
        other => panic!("expected CreateFailed at create_container, got {:?}", other.map(|s| s.id())),
    }
    assert!(containers_labelled(&engine().await, &key, &value).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_creation_abandoned_by_its_caller_leaves_no_container() {
    let Some(builder) = builder() else { return };
    // A slow setup step keeps the saga busy after the container exists.
    let provider = builder.setup_command(["sleep", "2"]).build().unwrap();
    let docker = engine().await;
    let (key, value) = run_label();
    let spec = SandboxSpec { labels: BTreeMap::from([(key.clone(), value.clone())]), ..SandboxSpec::default() };
    let mut create = Box::pin(provider.create(spec));
    let mut seen = false;
    for _ in 0..40 {
        tokio::select! {
            _ = &mut create => panic!("creation should still be in its setup step"),
            () = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
        if !containers_labelled(&docker, &key, &value).await.is_empty() {
            seen = true;
            break;
        }
    }
    assert!(seen, "the container should exist while setup runs");
    drop(create);
    for _ in 0..100 {
        if containers_labelled(&docker, &key, &value).await.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the abandoned sandbox's container was not removed");
}

#[tokio::test]
async fn timeout_leaves_no_process_of_the_tree_in_the_container() {
    let Some(builder) = builder() else { return };
    let sandbox = builder.build().unwrap().create(SandboxSpec::default()).await.unwrap();
    let script = "sh -c 'sleep 301 & sleep 302 & wait' & sleep 303 & wait";
    let out = sandbox.exec(ExecRequest::shell(script).timeout(Duration::from_millis(500))).await.unwrap();
    assert!(out.timed_out && out.exit_code.is_none(), "{out:?}");
    let ps = sandbox.exec(ExecRequest::shell("ps -eo args | grep -c '^sleep 30[123]' || true")).await.unwrap();
    assert_eq!(ps.stdout_text().trim(), "0", "sleepers survived the timeout");
    // Every exec has a group-id file while it runs (this one's holds its own pid, `$$`).
    let others =
        "for f in /tmp/omoi-exec-*; do [ -e \"$f\" ] && [ \"$(cat \"$f\")\" != $$ ] && echo \"$f\"; done | wc -l";
    let left = sandbox.exec(ExecRequest::shell(others)).await.unwrap();
    assert_eq!(left.stdout_text().trim(), "0", "the wrapper's group-id files are cleaned up");
    sandbox.destroy().await.unwrap();
}

#[tokio::test]
async fn unreachable_engine_is_a_retryable_error_and_root_is_refused() {
    match DockerSandboxProvider::builder().host("unix:///nonexistent/docker.sock").image("x").build() {
        Err(e) => assert!(e.is_retryable(), "{e}"),
        Ok(_) => panic!("a missing socket must be reported"),
    }
    let provider = DockerSandboxProvider::builder().host("tcp://127.0.0.1:9").image("x").build().unwrap();
    match provider.create(SandboxSpec::default()).await {
        Err(e @ SandboxError::Unavailable { .. }) => assert!(e.is_retryable()),
        other => panic!("expected Unavailable, got {:?}", other.map(|s| s.id())),
    }
    for root in ["0", "root", "0:0"] {
        assert!(matches!(
            DockerSandboxProvider::builder().host("tcp://127.0.0.1:9").user(root).build(),
            Err(SandboxError::InvalidRequest(_))
        ));
    }
    let provider = DockerSandboxProvider::builder().host("tcp://127.0.0.1:9").build().unwrap();
    let bad = SandboxSpec { limits: ResourceLimits { cpus: Some(-1.0), ..Default::default() }, ..Default::default() };
    assert!(matches!(provider.create(bad).await, Err(SandboxError::InvalidRequest(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_exec_kills_its_process_tree() {
    let Some(builder) = builder() else { return };
    let sandbox = builder.build().unwrap().create(SandboxSpec::default()).await.unwrap();
    let req = ExecRequest::shell("(sleep 2; echo late > marker) & sleep 304").timeout(Duration::from_secs(600));
    assert!(tokio::time::timeout(Duration::from_millis(700), sandbox.exec(req)).await.is_err());
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let marker = WorkspacePath::parse("marker").unwrap();
    assert!(matches!(sandbox.read_file(&marker).await, Err(SandboxError::FileNotFound(_))));
    let ps = sandbox.exec(ExecRequest::shell("ps -eo args | grep -c '^sleep 304' || true")).await.unwrap();
    assert_eq!(ps.stdout_text().trim(), "0");
    sandbox.destroy().await.unwrap();
}

/// Waits (bounded) until exactly `n` containers carry `key=value`.
async fn until_labelled(docker: &Docker, key: &str, value: &str, n: usize) -> usize {
    let mut found = containers_labelled(docker, key, value).await.len();
    for _ in 0..100 {
        if found == n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        found = containers_labelled(docker, key, value).await.len();
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_escape_outside_the_workspace_is_impossible_in_docker() {
    let Some(builder) = builder() else { return };
    let provider = builder.build().unwrap();
    let docker = engine().await;
    let (key, value) = run_label();
    // The sandbox itself has the network; its read-only copies never do.
    let spec = SandboxSpec {
        network: NetworkPolicy::Full,
        labels: BTreeMap::from([(key.clone(), value.clone())]),
        ..SandboxSpec::default()
    };
    let sandbox = provider.create(spec).await.unwrap();
    let script = "touch /tmp/pwned-tmp; touch /var/tmp/pwned-var 2>&1; touch ~/pwned-home 2>&1; \
                  echo x > /workspace/pwned-ws; ls /sys/class/net; ls /tmp /workspace";
    let out = sandbox.exec(ExecRequest::shell(script).read_only()).await.unwrap();
    let seen = out.stdout_text();
    assert!(seen.contains("Read-only file system"), "the root file system is writable: {seen}");
    assert!(
        seen.contains("pwned-tmp") && seen.contains("pwned-ws"),
        "the copy's /tmp and workspace are writable: {seen}"
    );
    let nets: Vec<&str> = seen.lines().filter(|l| *l == "lo" || l.starts_with("eth")).collect();
    assert_eq!(nets, ["lo"], "a read-only copy has no network: {seen}");

    // (The test engine runs with `--bridge=none`, so the sandbox's own network cannot be shown.)
    let main = sandbox.exec(ExecRequest::shell("ls -a /tmp /var/tmp /workspace ~")).await.unwrap();
    let main = main.stdout_text();
    assert!(!main.contains("pwned"), "a read-only command changed the sandbox: {main}");
    assert_eq!(containers_labelled(&docker, &key, &value).await.len(), 1, "the read-only copy was not removed");
    sandbox.destroy().await.unwrap();
    assert!(containers_labelled(&docker, &key, &value).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_copy_of_an_abandoned_exec_does_not_leak() {
    let Some(builder) = builder() else { return };
    let provider = builder.build().unwrap();
    let docker = engine().await;
    let (key, value) = run_label();
    let spec = SandboxSpec { labels: BTreeMap::from([(key.clone(), value.clone())]), ..SandboxSpec::default() };
    let sandbox = provider.create(spec).await.unwrap();
    let req = ExecRequest::shell("sleep 300").timeout(Duration::from_secs(600)).read_only();
    let mut run = Box::pin(sandbox.exec(req));
    // Give up once the copy exists (two containers carry the label).
    let gave_up = async {
        until_labelled(&docker, &key, &value, 2).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    tokio::select! {
        out = &mut run => panic!("a 300 s command returned: {out:?}"),
        () = gave_up => {}
    }
    drop(run);
    assert_eq!(until_labelled(&docker, &key, &value, 1).await, 1, "the abandoned read-only copy leaked");
    sandbox.destroy().await.unwrap();
    assert!(containers_labelled(&docker, &key, &value).await.is_empty());
}

/// A command keeps swapping the workspace directory `d` between a real directory, nothing, and
/// a symlink to `/etc` while `read_file("d/passwd")` and `write_file("d/<name>")` run: every read
/// returns the workspace's file or a refusal, never `/etc/passwd`, and nothing is ever written
/// outside the workspace.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn file_transfer_escape_through_a_racing_symlink_swap_never_leaves_the_workspace() {
    let Some(builder) = builder() else { return };
    let sandbox: Arc<dyn omoi_core::Sandbox> = builder.build().unwrap().create(SandboxSpec::default()).await.unwrap();
    let marker = format!("omoi-race-{}", uuid::Uuid::now_v7().simple());
    sandbox.exec(ExecRequest::shell("mkdir real && echo safe > real/passwd")).await.unwrap();
    let swapper = {
        let sandbox = Arc::clone(&sandbox);
        tokio::spawn(async move {
            let script = "while :; do mv -Tf real d 2>/dev/null; sleep 0.02; mv -Tf d real 2>/dev/null; \
                          ln -sfn /etc d 2>/dev/null; sleep 0.02; rm -rf d 2>/dev/null; done";
            sandbox.exec(ExecRequest::shell(script).timeout(Duration::from_secs(600))).await
        })
    };
    let passwd = WorkspacePath::parse("d/passwd").unwrap();
    let target = WorkspacePath::parse(&format!("d/{marker}")).unwrap();
    let (mut read_ok, mut write_ok, mut refused) = (0, 0, 0);
    for _ in 0..100 {
        let (read, write) = tokio::join!(sandbox.read_file(&passwd), sandbox.write_file(&target, b"race"));
        match read {
            Ok(bytes) => {
                assert_eq!(bytes, b"safe\n", "read something other than the workspace's file");
                read_ok += 1;
            }
            Err(SandboxError::PathRejected(_) | SandboxError::FileNotFound(_) | SandboxError::InvalidRequest(_)) => {
                refused += 1
            }
            Err(e) => panic!("unexpected read error: {e}"),
        }
        match write {
            Ok(()) => write_ok += 1,
            Err(SandboxError::PathRejected(_) | SandboxError::InvalidRequest(_) | SandboxError::Backend { .. }) => {
                refused += 1
            }
            Err(e) => panic!("unexpected write error: {e}"),
        }
    }
    swapper.abort();
    println!("race: {read_ok} reads and {write_ok} writes inside the workspace, {refused} refused");
    assert!(refused > 0, "the swap never interfered: the test did not race");
    let found = sandbox
        .exec(ExecRequest::shell(format!(
            "find / -xdev -name '{marker}' -not -path '/workspace/*' 2>/dev/null; ls -la /etc | grep -c '{marker}' || true"
        )))
        .await
        .unwrap()
        .stdout_text();
    assert_eq!(found.trim(), "0", "a file was written outside the workspace: {found}");
    sandbox.destroy().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_sandbox_gets_the_config_limits_and_a_fork_bomb_is_stopped() {
    let Some(builder) = builder() else { return };
    let sandbox = builder.build().unwrap().create(SandboxSpec::default()).await.unwrap();
    let defaults = omoi_core::config::SandboxConfig::default();
    let host = inspect_sandbox(&engine().await, sandbox.id()).await.host_config.unwrap();
    assert_eq!(host.nano_cpus, Some((defaults.cpus * 1e9) as i64));
    assert_eq!(host.memory, Some((defaults.memory_mib << 20) as i64));
    assert_eq!(host.pids_limit, Some(defaults.pids as i64));
    // More processes than the default pids limit: the kernel refuses the forks past it.
    let bomb = format!("for i in $(seq {}); do sleep 30 & done; ps -e | wc -l", defaults.pids + 100);
    let out = sandbox.exec(ExecRequest::shell(bomb).timeout(Duration::from_secs(120))).await.unwrap();
    let text = format!("{}{}", out.stdout_text(), out.stderr_text());
    assert!(
        text.contains("fork") || text.contains("Resource temporarily unavailable"),
        "the fork bomb was not stopped: {text}"
    );
    sandbox.destroy().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_memory_limit_stops_a_big_allocation() {
    let Some(builder) = builder() else { return };
    let config = omoi_core::config::SandboxConfig { memory_mib: 64, ..Default::default() };
    let sandbox = builder.config(&config).build().unwrap().create(SandboxSpec::default()).await.unwrap();
    let alloc = "python3 -c \"b = bytearray(512 << 20); b[::4096] = b'x' * len(b[::4096]); print('allocated')\"";
    let out = sandbox.exec(ExecRequest::shell(alloc).timeout(Duration::from_secs(120))).await.unwrap();
    assert!(!out.success() && !out.stdout_text().contains("allocated"), "512 MiB fit in a 64 MiB sandbox: {out:?}");
    let small = sandbox.exec(ExecRequest::shell("python3 -c \"b = bytearray(8 << 20); print('ok')\"")).await.unwrap();
    assert_eq!(small.stdout_text(), "ok\n");
    sandbox.destroy().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_create_timeout_fails_a_slow_creation_and_leaves_no_container() {
    let Some(builder) = builder() else { return };
    let config = omoi_core::config::SandboxConfig { create_timeout: Duration::from_millis(1), ..Default::default() };
    let provider = builder.config(&config).build().unwrap();
    let (key, value) = run_label();
    let spec = SandboxSpec { labels: BTreeMap::from([(key.clone(), value.clone())]), ..SandboxSpec::default() };
    match provider.create(spec).await {
        Err(SandboxError::CreateFailed { step: "timeout", .. }) => {}
        other => panic!("expected a creation timeout, got {:?}", other.map(|s| s.id())),
    }
    assert_eq!(until_labelled(&engine().await, &key, &value, 0).await, 0, "the timed-out creation left a container");
}
