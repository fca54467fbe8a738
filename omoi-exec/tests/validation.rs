//! Validation that means something: verdicts from the recorded test runs, the revision loop as a
//! blocking discovery, merges of validated work only, and `report_discovery` through the
//! discovery service. A scripted model drives real local sandboxes, git and Python tests.

use std::sync::Arc;
use std::time::Duration;

use omoi_core::config::{DiscoveryConfig, ExecConfig};
use omoi_core::testkit::ScriptedLlm;
use omoi_core::{
    AgentId, ClaimRequest, ClaimedTask, Completion, ContentBlock, DiscoveryFilter, DiscoveryStatus, DiscoveryStore,
    ExecutionMode, Failure, NewTask, SystemClock, Task, TaskFilter, TaskId, TaskLinks, TaskState, TaskStore,
};
use omoi_discovery::DiscoveryService;
use omoi_exec::agent::{AgentExecutor, AgentResult, mergeable_branches};
use omoi_exec::git::{GitRepo, merge_in_conflict_order};
use omoi_exec::worker::{ExecContext, ExecError, TaskExecutor, TaskOutput};
use omoi_sandbox::LocalSandboxProvider;
use omoi_store::InMemoryStore;
use serde_json::json;
use tokio_util::sync::CancellationToken;

const TESTS: &str = "import unittest\n\nfrom calc import add\n\n\nclass AddTest(unittest.TestCase):\n    def test_add(self):\n        self.assertEqual(add(2, 3), 5)\n";
const BUGGY: &str = "def add(a, b):\n    return a - b\n";
const FIXED: &str = "def add(a, b):\n    return a + b\n";
const RUN_TESTS: &str = "python3 -m unittest discover -s tests -t .";

struct Env {
    _dirs: (tempfile::TempDir, tempfile::TempDir),
    store: InMemoryStore,
    origin: GitRepo,
    llm: Arc<ScriptedLlm>,
    executor: AgentExecutor,
}

async fn env() -> Env {
    let sandboxes = tempfile::tempdir().unwrap();
    let origin_dir = tempfile::tempdir().unwrap();
    tokio::fs::create_dir_all(origin_dir.path().join("tests")).await.unwrap();
    tokio::fs::write(origin_dir.path().join("tests/test_calc.py"), TESTS).await.unwrap();
    tokio::fs::write(origin_dir.path().join("tests/__init__.py"), "").await.unwrap();
    let origin = GitRepo::init(origin_dir.path()).await.unwrap();
    let store = InMemoryStore::new();
    let llm = Arc::new(ScriptedLlm::new());
    let service = DiscoveryService::new(Arc::new(store.clone()), Arc::new(store.clone()), &DiscoveryConfig::default());
    let executor = AgentExecutor::new(
        llm.clone(),
        Arc::new(LocalSandboxProvider::new(sandboxes.path())),
        Arc::new(store.clone()),
        Arc::new(store.clone()),
        Arc::new(SystemClock),
    )
    .with_origin(origin.clone(), "main")
    .with_config(ExecConfig { max_validation_iterations: 3, max_consecutive_errors: 5, ..ExecConfig::default() })
    .with_discoveries(service);
    Env { _dirs: (sandboxes, origin_dir), store, origin, llm, executor }
}

fn ctx(c: &ClaimedTask) -> ExecContext {
    ExecContext { agent_id: AgentId::new(), lease: c.lease, cancel: CancellationToken::new() }
}

impl Env {
    /// Claims the next task, which must be `expected`.
    async fn claim(&self, expected: TaskId) -> ClaimedTask {
        let c = self.store.claim(&ClaimRequest::new(AgentId::new(), 1, Duration::from_secs(600))).await.unwrap();
        assert_eq!(c.len(), 1, "nothing claimable; expected {expected}");
        assert_eq!(c[0].task.id, expected, "claimed {:?}", c[0].task.def.title);
        c.into_iter().next().unwrap()
    }

    /// Runs the claimed task through the executor and completes or fails it, as a worker does.
    async fn run(&self, c: &ClaimedTask) -> Result<TaskOutput, ExecError> {
        let out = self.executor.execute(&c.task, &ctx(c)).await;
        match &out {
            Ok(o) => {
                self.store
                    .complete(
                        c.task.id,
                        c.lease.token,
                        Completion { result: o.result.clone(), ..Completion::default() },
                    )
                    .await
                    .unwrap();
            }
            Err(e) => {
                let f = if e.retryable { Failure::retryable(&e.message) } else { Failure::permanent(&e.message) };
                self.store.fail(c.task.id, c.lease.token, f).await.unwrap();
            }
        }
        out
    }

    fn implement(&self, content: &str) {
        self.llm.push_tool_call("write_file", json!({"path": "calc.py", "content": content}));
        self.llm.push_tool_call("finish", json!({"summary": "wrote add()"}));
    }

    fn validate(&self, claim_passed: bool) {
        self.llm.push_tool_call("run_command", json!({ "command": RUN_TESTS }));
        self.llm.push_tool_call("finish", json!({"summary": "ran the tests", "output": {"passed": claim_passed}}));
    }

    async fn get(&self, id: TaskId) -> Task {
        self.store.get_task(id).await.unwrap()
    }

    async fn all(&self) -> Vec<Task> {
        self.store.list_tasks(&TaskFilter::default()).await.unwrap()
    }
}

/// The planned graph: implement → validate → release notes.
async fn plan(e: &Env) -> (NewTask, NewTask, NewTask) {
    let build = NewTask::new("implement add").mode(ExecutionMode::Implementation);
    let check = NewTask::new("validate add").mode(ExecutionMode::Validation).depends_on([build.id]);
    let notes = NewTask::new("write release notes").depends_on([check.id]);
    e.store.insert_tasks(vec![build.clone(), check.clone(), notes.clone()]).await.unwrap();
    (build, check, notes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_tests_branch_a_revision_then_the_revalidation_passes_and_the_fix_is_merged() {
    let e = env().await;
    let (build, check, notes) = plan(&e).await;
    let c = e.claim(build.id).await;
    e.implement(BUGGY);
    e.run(&c).await.unwrap();

    // The validation's tests fail: the verdict says so, and a revision branches.
    let c = e.claim(check.id).await;
    e.validate(false);
    let out = e.run(&c).await.unwrap();
    let result: AgentResult = serde_json::from_value(out.result).unwrap();
    let verdict = result.validation.clone().unwrap();
    assert!(!verdict.passed);
    assert_eq!(verdict.runs[0].command, RUN_TESTS);
    assert_eq!(verdict.runs[0].exit_code, Some(1));
    let revision = result.revision.expect("a revision branched");
    assert_eq!(revision.next_iteration, 2);
    let [fix, recheck] = [revision.tasks[0], revision.tasks[1]];
    assert_eq!(e.get(notes.id).await.state, TaskState::Waiting, "the release notes wait for the re-validation");
    assert!(e.get(notes.id).await.dependencies.contains(&recheck));
    let d = e.store.get_discovery(revision.discovery).await.unwrap();
    assert_eq!((d.status, d.blocking, d.source_task), (DiscoveryStatus::Branched, true, check.id));

    // The revision gets the failing output as feedback and fixes the code.
    let c = e.claim(fix).await;
    assert_eq!(c.task.def.mode, ExecutionMode::Implementation);
    e.implement(FIXED);
    e.run(&c).await.unwrap();
    let prompt = e.llm.requests().iter().rev().nth(1).unwrap().messages[0].text();
    assert!(prompt.contains("AssertionError"), "the failing output is the revision's feedback: {prompt}");

    // The new validation passes; the release notes may run; the discovery is resolved.
    let c = e.claim(recheck).await;
    e.validate(true);
    let out = e.run(&c).await.unwrap();
    assert!(AgentResult::of(&Task { result: Some(out.result), ..e.get(recheck).await }).unwrap().validation_passed());
    assert_eq!(e.get(notes.id).await.state, TaskState::Ready);
    assert_eq!(e.store.get_discovery(revision.discovery).await.unwrap().status, DiscoveryStatus::Resolved);

    // Only validated work is merged: the implementation and its revision; main is fixed.
    let branches = mergeable_branches(&e.all().await);
    assert_eq!(branches, [format!("omoi/{}", build.id), format!("omoi/{fix}")]);
    let report = merge_in_conflict_order(&e.origin, "main", &branches).await.unwrap();
    assert!(report.stopped.is_none(), "{report:?}");
    assert_eq!(report.merged.len(), 2);
    assert_eq!(e.origin.run(&["show", "main:calc.py"]).await.unwrap(), FIXED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_failed_validations_fail_the_task_with_its_history_and_nothing_is_merged() {
    let e = env().await;
    let (build, check, notes) = plan(&e).await;
    let c = e.claim(build.id).await;
    e.implement(BUGGY);
    e.run(&c).await.unwrap();
    let mut validation = check.id;
    for iteration in 1..=3 {
        let c = e.claim(validation).await;
        e.validate(false);
        let out = e.run(&c).await;
        if iteration == 3 {
            let err = out.unwrap_err();
            assert!(!err.retryable);
            assert!(err.message.contains("max_validation_iterations is 3"), "{}", err.message);
            for n in 1..=3 {
                assert!(err.message.contains(&format!("iteration {n}:")), "history names run {n}: {}", err.message);
            }
            break;
        }
        let result: AgentResult = serde_json::from_value(out.unwrap().result).unwrap();
        let revision = result.revision.unwrap();
        assert_eq!(revision.next_iteration, iteration + 1);
        let c = e.claim(revision.tasks[0]).await;
        e.implement(BUGGY); // the revision does not fix it
        e.run(&c).await.unwrap();
        validation = revision.tasks[1];
    }
    assert_eq!(e.get(validation).await.state, TaskState::Failed);
    assert_eq!(e.get(notes.id).await.state, TaskState::Blocked, "nothing after the validation runs");
    assert!(mergeable_branches(&e.all().await).is_empty(), "nothing is merged");
    let revisions = e.store.list_discoveries(&DiscoveryFilter::default()).await.unwrap();
    let statuses: Vec<DiscoveryStatus> = revisions.iter().map(|d| d.status).collect();
    // The first revision's branch ran to its end (its re-validation failed and branched the
    // second); the second's re-validation failed for good.
    assert_eq!(statuses, [DiscoveryStatus::Resolved, DiscoveryStatus::Branched], "two revisions were tried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_claiming_passed_over_a_failing_run_is_not_believed() {
    let e = env().await;
    let (build, check, _) = plan(&e).await;
    let c = e.claim(build.id).await;
    e.implement(BUGGY);
    e.run(&c).await.unwrap();
    let c = e.claim(check.id).await;
    // Claims a pass without running anything, then over a failing run, then gives in.
    e.llm.push_tool_call("finish", json!({"summary": "looks fine", "output": {"passed": true}}));
    e.llm.push_tool_call("run_command", json!({ "command": RUN_TESTS }));
    e.llm.push_tool_call("finish", json!({"summary": "all good", "output": {"passed": true}}));
    e.llm.push_tool_call("finish", json!({"summary": "add() is wrong", "output": {"passed": false}}));
    let out = e.run(&c).await.unwrap();
    let told: Vec<(String, bool)> = e
        .llm
        .requests()
        .iter()
        .filter_map(|r| {
            r.messages.last()?.content.iter().find_map(|b| match b {
                ContentBlock::ToolResult { content, is_error, .. } => Some((content.clone(), *is_error)),
                _ => None,
            })
        })
        .collect();
    assert!(told.iter().any(|(t, err)| *err && t.contains("no test command was run")), "{told:?}");
    assert!(
        told.iter()
            .any(|(t, err)| *err && t.contains(&format!("you claim the tests passed, but `{RUN_TESTS}` exited 1"))),
        "{told:?}"
    );
    let result: AgentResult = serde_json::from_value(out.result).unwrap();
    assert!(!result.validation.unwrap().passed, "the recorded run decides");
    assert!(result.revision.is_some());
    assert!(mergeable_branches(&e.all().await).is_empty(), "the unvalidated implementation is not merged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_discovery_branches_through_the_service_and_the_model_is_told_the_branch() {
    let e = env().await;
    let links = TaskLinks { local_id: Some("TSK-001".into()), ..TaskLinks::default() };
    let build = NewTask::new("implement add").mode(ExecutionMode::Implementation).links(links);
    e.store.insert_tasks(vec![build.clone()]).await.unwrap();
    let c = e.claim(build.id).await;
    let report = json!({
        "kind": "missing_requirement", "title": "subtraction is needed too",
        "description": "callers also need sub(a, b)", "done_definition": "sub(a, b) exists and is tested",
        "files": ["calc.py"]
    });
    e.llm.push_tool_call("report_discovery", report.clone());
    e.llm.push_tool_call("report_discovery", report);
    e.llm.push_tool_call("report_discovery", json!({"kind": "bug", "title": "t", "description": "d"}));
    e.implement(FIXED);
    let out = e.run(&c).await.unwrap();
    let told: Vec<String> = e
        .llm
        .requests()
        .iter()
        .skip(1)
        .take(3)
        .map(|r| match r.messages.last().unwrap().content.first().unwrap() {
            ContentBlock::ToolResult { content, .. } => content.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert!(told[0].contains("branched as TSK-001.1"), "{told:?}");
    assert!(told[1].contains("duplicate of discovery"), "{told:?}");
    assert!(told[2].contains("done_definition"), "a report without a done definition is refused: {told:?}");
    let result: AgentResult = serde_json::from_value(out.result).unwrap();
    assert_eq!(result.discoveries.len(), 2);
    assert!(result.discoveries[0].outcome.contains("branched as TSK-001.1"));
    let branch = e.store.list_tasks(&TaskFilter { parent_id: Some(build.id), ..TaskFilter::default() }).await.unwrap();
    assert_eq!(branch.len(), 1);
    assert_eq!(branch[0].links.local_id.as_deref(), Some("TSK-001.1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_conflict_branches_a_resolution_task_and_the_merge_resumes_after_it() {
    let e = env().await;
    let formal = NewTask::new("greet formally").mode(ExecutionMode::Implementation);
    let casual = NewTask::new("greet casually").mode(ExecutionMode::Implementation);
    e.store.insert_tasks(vec![formal.clone(), casual.clone()]).await.unwrap();
    for (task, body) in
        [(&formal, "def greet():\n    return 'Good day'\n"), (&casual, "def greet():\n    return 'hey'\n")]
    {
        let c = e.claim(task.id).await;
        e.llm.push_tool_call("write_file", json!({"path": "greet.py", "content": body}));
        e.llm.push_tool_call("finish", json!({"summary": "wrote greet()"}));
        e.run(&c).await.unwrap();
    }
    let branches = vec![format!("omoi/{}", formal.id), format!("omoi/{}", casual.id)];
    let report = merge_in_conflict_order(&e.origin, "main", &branches).await.unwrap();
    let stop = report.stopped.clone().expect("the second branch conflicts");
    assert_eq!(stop.files, ["greet.py"]);
    let source = e.all().await.into_iter().find(|t| stop.branch.ends_with(&t.id.to_string())).unwrap();

    let service =
        DiscoveryService::new(Arc::new(e.store.clone()), Arc::new(e.store.clone()), &DiscoveryConfig::default());
    let reported = omoi_exec::integrate::report_conflict(&service, &source, "main", &stop).await.unwrap();
    let resolution = reported.outcome.spawned()[0];
    let d = e.store.get_discovery(reported.outcome.discovery()).await.unwrap();
    assert_eq!(d.kind, omoi_core::DiscoveryKind::IntegrationIssue);
    // The same conflict reported again is a duplicate: bounded like every discovery.
    let again = omoi_exec::integrate::report_conflict(&service, &source, "main", &stop).await.unwrap();
    assert!(again.message().contains("duplicate of discovery"), "{}", again.message());

    // The resolution agent starts in the conflicted merge and writes both intents.
    let c = e.claim(resolution).await;
    let resolved = "def greet(formal=True):\n    return 'Good day' if formal else 'hey'\n";
    e.llm.push_tool_call("read_file", json!({"path": "greet.py"}));
    e.llm.push_tool_call("write_file", json!({"path": "greet.py", "content": resolved}));
    e.llm.push_tool_call("finish", json!({"summary": "kept both greetings"}));
    let out = e.run(&c).await.unwrap();
    let seen = e
        .llm
        .requests()
        .iter()
        .rev()
        .find_map(|r| match r.messages.last().unwrap().content.first() {
            Some(ContentBlock::ToolResult { content, .. }) if content.contains("<<<<<<<") => Some(content.clone()),
            _ => None,
        })
        .expect("the agent saw the conflict markers");
    assert!(seen.contains("Good day") && seen.contains("hey"));
    let fix_branch =
        AgentResult::of(&Task { result: Some(out.result), ..e.get(resolution).await }).unwrap().branch.unwrap();

    // The merge resumes with the resolution in place of the stopped branch.
    let merged: Vec<String> = report.merged.iter().map(|(b, _)| b.clone()).collect();
    let rest = omoi_exec::integrate::resume_with(&branches, &merged, &stop.branch, &fix_branch);
    let resumed = merge_in_conflict_order(&e.origin, "main", &rest).await.unwrap();
    assert!(resumed.stopped.is_none(), "{resumed:?}");
    assert_eq!(e.origin.run(&["show", "main:greet.py"]).await.unwrap(), resolved);
    let log = e.origin.run(&["log", "--format=%P", "-1", &fix_branch]).await.unwrap();
    assert_eq!(log.split_whitespace().count(), 2, "the resolution is a merge commit of both sides");
    assert_eq!(e.store.get_discovery(d.id).await.unwrap().status, DiscoveryStatus::Resolved);
}

/// `report_discovery` with `requeue`: the blocking discovery re-queues the reporting task
/// behind its branch in the store's transaction, the run stops at once (its lease is gone, so
/// the worker's report is fenced), the branch runs, and then the task runs again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_discovery_with_requeue_stops_the_run_and_the_task_runs_again_after_the_branch() {
    let e = env().await;
    let (build, check, _) = plan(&e).await;
    let c = e.claim(build.id).await;
    e.llm.push_tool_call(
        "report_discovery",
        json!({
            "kind": "missing_requirement", "title": "add must accept strings of digits",
            "description": "callers pass '2' and '3'; add has to parse them first",
            "done_definition": "calc.parse exists and is tested", "requeue": true
        }),
    );
    let out = e.executor.execute(&c.task, &ctx(&c)).await;
    let err = out.expect_err("the run stops");
    assert!(err.retryable && err.message.contains("re-queued"), "{err:?}");
    assert_eq!(e.llm.requests().len(), 1, "no model call after the re-queue");
    let fenced = e.store.fail(c.task.id, c.lease.token, Failure::retryable(&err.message)).await.unwrap_err();
    assert!(matches!(fenced, omoi_core::StoreError::StaleLease { .. }), "{fenced:?}");
    let source = e.get(build.id).await;
    assert_eq!((source.state, source.attempts), (TaskState::Waiting, 0), "re-queued without using an attempt");
    let d = e.store.list_discoveries(&DiscoveryFilter::default()).await.unwrap().remove(0);
    assert!(d.requeue_source && d.blocking);
    assert!(source.dependencies.contains(&d.spawned[0]));

    let branch = e.claim(d.spawned[0]).await;
    e.implement(FIXED);
    e.run(&branch).await.unwrap();
    assert_eq!(e.get(build.id).await.state, TaskState::Ready, "the task runs again after the branch");
    let again = e.claim(build.id).await;
    e.implement(FIXED);
    e.run(&again).await.unwrap();
    assert_eq!(e.get(check.id).await.state, TaskState::Ready);
    assert_eq!(e.store.get_discovery(d.id).await.unwrap().status, DiscoveryStatus::Resolved);
}
