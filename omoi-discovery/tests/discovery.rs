//! The discovery service, the revision loop and the analyzer, on the in-memory, SQLite and
//! Postgres stores (Postgres from `OMOI_TEST_POSTGRES_URL`; skipped outside CI when unset).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use omoi_core::config::DiscoveryConfig;
use omoi_core::testkit::{ManualClock, ScriptedLlm};
use omoi_core::{
    AgentId, ClaimRequest, ClaimedTask, Completion, DiscoveryKind, DiscoveryStatus, DiscoveryStore, DuplicateOf,
    EmbedError, Embedder, Event, EventStore, ExecutionMode, HashingEmbedder, LlmError, NewDiscovery, NewTask,
    RecordOutcome, SpecId, TaskId, TaskLinks, TaskState, TaskStore, WorkPhase,
};
use omoi_discovery::{Analyzer, DiscoveryService, FailedValidation, Recommendation, Revision, Severity};

/// Every port the tests need, from one store.
trait Store: DiscoveryStore + TaskStore + EventStore + 'static {}
impl<S: DiscoveryStore + TaskStore + EventStore + 'static> Store for S {}

struct Env {
    store: Arc<dyn Store>,
    clock: Arc<ManualClock>,
    spec: SpecId,
}

impl Env {
    fn tasks(&self) -> Arc<dyn TaskStore> {
        let s: Arc<dyn Store> = self.store.clone();
        upcast_tasks(s)
    }

    fn discoveries(&self) -> Arc<dyn DiscoveryStore> {
        upcast_discoveries(self.store.clone())
    }

    fn service(&self, config: &DiscoveryConfig) -> DiscoveryService {
        DiscoveryService::new(self.discoveries(), self.tasks(), config)
    }

    /// Inserts `new` in the env's spec.
    async fn insert(&self, new: Vec<NewTask>) {
        let new = new
            .into_iter()
            .map(|t| {
                let links = TaskLinks { spec_id: Some(self.spec), ..t.links.clone() };
                t.links(links)
            })
            .collect();
        self.store.insert_tasks(new).await.unwrap();
    }

    /// Claims (and starts) `id`, releasing whatever else the claim returned.
    async fn claim(&self, id: TaskId) -> ClaimedTask {
        loop {
            let got = self.store.claim(&ClaimRequest::new(AgentId::new(), 50, Duration::from_secs(60))).await.unwrap();
            let mut mine = None;
            for c in got {
                if c.task.id == id {
                    mine = Some(c);
                } else {
                    self.store.release(c.task.id, c.lease.token).await.unwrap();
                }
            }
            if let Some(c) = mine {
                self.store.start(id, c.lease.token).await.unwrap();
                return c;
            }
            assert_ne!(self.store.get_task(id).await.unwrap().state, TaskState::Waiting, "{id} is not claimable");
        }
    }

    async fn complete(&self, c: &ClaimedTask) {
        self.store.complete(c.task.id, c.lease.token, Completion::default()).await.unwrap();
    }

    async fn state(&self, id: TaskId) -> TaskState {
        self.store.get_task(id).await.unwrap().state
    }
}

fn upcast_tasks(s: Arc<dyn Store>) -> Arc<dyn TaskStore> {
    s
}

fn upcast_discoveries(s: Arc<dyn Store>) -> Arc<dyn DiscoveryStore> {
    s
}

/// An embedder that is down.
struct Down;

#[async_trait]
impl Embedder for Down {
    fn dimensions(&self) -> usize {
        8
    }

    async fn embed(&self, _: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        Err(EmbedError::Unavailable("connection refused".into()))
    }
}

fn bug(source: TaskId, title: &str, description: &str) -> NewDiscovery {
    NewDiscovery::new(source, DiscoveryKind::Bug, title, description, "fixed and tested")
}

/// A semantic duplicate (same meaning, different wording, so not an exact duplicate) of a live
/// discovery is linked to it and spawns nothing; an unrelated report branches.
async fn semantic_duplicate_above_the_threshold_spawns_nothing(env: Env) {
    let a = NewTask::new("implement slugify").phase(WorkPhase::Implementation);
    let b = NewTask::new("document slugify").phase(WorkPhase::Implementation);
    env.insert(vec![a.clone(), b.clone()]).await;
    env.claim(a.id).await;
    env.claim(b.id).await;
    let service = env.service(&DiscoveryConfig::default()).with_embedder(Arc::new(HashingEmbedder::new(256)));
    let first = service
        .report(bug(a.id, "slugify drops digits", "slugify removes every digit from the title so 'a1' becomes 'a'"))
        .await
        .unwrap();
    let RecordOutcome::Branched { tasks, .. } = &first.outcome else { panic!("{first:?}") };
    let again = service
        .report(bug(
            b.id,
            "slugify drops digits!",
            "slugify removes every digit from the title so 'a1' becomes 'a' (seen in docs)",
        ))
        .await
        .unwrap();
    let RecordOutcome::Duplicate { of, covered_by, .. } = &again.outcome else { panic!("{again:?}") };
    assert_eq!(*of, DuplicateOf::Discovery(first.outcome.discovery()));
    assert!(covered_by.is_empty() || covered_by == tasks);
    assert!(again.similarity.unwrap() >= 0.90, "{:?}", again.similarity);
    assert!(again.message().contains("duplicate of discovery"), "{}", again.message());
    let other = service
        .report(bug(
            b.id,
            "README example is wrong",
            "the usage example in the README calls a function that does not exist",
        ))
        .await
        .unwrap();
    assert!(matches!(other.outcome, RecordOutcome::Branched { .. }), "{other:?}");
}

/// The threshold is the config's `dedup_similarity`: at 1.0 a reworded report is no duplicate.
async fn dedup_threshold_is_read_from_the_config(env: Env) {
    let a = NewTask::new("implement slugify");
    let b = NewTask::new("test slugify");
    env.insert(vec![a.clone(), b.clone()]).await;
    env.claim(a.id).await;
    env.claim(b.id).await;
    let strict = DiscoveryConfig { dedup_similarity: 1.0, ..DiscoveryConfig::default() };
    let service = env.service(&strict).with_embedder(Arc::new(HashingEmbedder::new(256)));
    service
        .report(bug(a.id, "unicode breaks slugify", "slugify fails on accented letters like é and ü"))
        .await
        .unwrap();
    let near = service
        .report(bug(b.id, "unicode breaks slugify", "slugify fails on accented letters like é, ü and ø"))
        .await
        .unwrap();
    assert!(matches!(near.outcome, RecordOutcome::Branched { .. }), "below a 1.0 threshold: {near:?}");
}

/// An unfinished task of the same spec and phase covering the same work is a duplicate too.
async fn unfinished_task_with_the_same_work_is_a_duplicate(env: Env) {
    let src = NewTask::new("implement slugify").phase(WorkPhase::Implementation);
    let planned = NewTask::new("handle unicode in slugify")
        .description("transliterate accented letters to ascii in slugify")
        .phase(WorkPhase::Implementation)
        .depends_on([src.id]);
    env.insert(vec![src.clone(), planned.clone()]).await;
    env.claim(src.id).await;
    let service = env.service(&DiscoveryConfig::default()).with_embedder(Arc::new(HashingEmbedder::new(256)));
    let out = service
        .report(NewDiscovery::new(
            src.id,
            DiscoveryKind::MissingRequirement,
            "handle unicode in slugify",
            "transliterate accented letters to ascii in slugify",
            "done",
        ))
        .await
        .unwrap();
    assert!(
        matches!(out.outcome, RecordOutcome::Duplicate { of: DuplicateOf::Task(t), .. } if t == planned.id),
        "{out:?}"
    );
}

/// An embedder outage skips semantic dedup (and says so); the report is still recorded.
async fn embedder_failure_skips_semantic_dedup_and_loses_nothing(env: Env) {
    let a = NewTask::new("implement slugify");
    let later = NewTask::new("document slugify").depends_on([a.id]);
    env.insert(vec![a.clone(), later]).await;
    env.claim(a.id).await;
    let service = env.service(&DiscoveryConfig::default()).with_embedder(Arc::new(Down));
    let out = service.report(bug(a.id, "x breaks", "x breaks on y")).await.unwrap();
    assert!(matches!(out.outcome, RecordOutcome::Branched { .. }));
    assert!(out.semantic_skipped.unwrap().contains("connection refused"));
}

/// The answer to the model says what happened: branched as <local id>, refused with the limit.
async fn messages_say_branched_as_and_refused_cap(env: Env) {
    let a =
        NewTask::new("implement slugify").links(TaskLinks { local_id: Some("TSK-002".into()), ..TaskLinks::default() });
    env.insert(vec![a.clone()]).await;
    env.claim(a.id).await;
    let config = DiscoveryConfig { max_per_source_task: 1, ..DiscoveryConfig::default() };
    let service = env.service(&config);
    let first = service.report(bug(a.id, "one", "first finding")).await.unwrap();
    assert!(first.message().contains("branched as TSK-002.1"), "{}", first.message());
    env.clock.advance(Duration::from_secs(3600));
    let second = service.report(bug(a.id, "two", "second finding")).await.unwrap();
    assert!(second.message().contains("refused: source_cap"), "{}", second.message());
    let stored = env.discoveries().get_discovery(second.outcome.discovery()).await.unwrap();
    assert_eq!(stored.status, DiscoveryStatus::Refused);
}

/// A validation (iteration 1) whose tests fail gets a revision and a re-validation: the
/// validation's dependents wait for the re-validation; when it passes they are released.
async fn failed_validation_branches_a_revision_and_a_revalidation(env: Env) {
    let build = NewTask::new("implement slugify").mode(ExecutionMode::Implementation);
    let validate = NewTask::new("validate slugify").mode(ExecutionMode::Validation).depends_on([build.id]);
    let merge = NewTask::new("merge").depends_on([validate.id]);
    env.insert(vec![build.clone(), validate.clone(), merge.clone()]).await;
    let c = env.claim(build.id).await;
    env.complete(&c).await;
    let v = env.claim(validate.id).await;
    let service = env.service(&DiscoveryConfig::default());
    let failed = FailedValidation {
        validation: env.store.get_task(validate.id).await.unwrap(),
        commands: vec!["python3 -m unittest".into()],
        output: "FAIL: test_digits (tests.test_slugify)\nAssertionError: 'a' != 'a1'".into(),
        files: vec!["textkit/strings.py".into()],
    };
    let Revision::Branched { reported, next_iteration } = service.revise(failed, 3).await.unwrap() else { panic!() };
    assert_eq!(next_iteration, 2);
    let RecordOutcome::Branched { tasks, held, .. } = &reported.outcome else { panic!("{reported:?}") };
    assert_eq!(held, &[merge.id], "the merge waits for the re-validation");
    let revision = env.store.get_task(tasks[0]).await.unwrap();
    let revalidation = env.store.get_task(tasks[1]).await.unwrap();
    assert_eq!(revision.def.mode, ExecutionMode::Implementation);
    assert!(revision.def.description.contains("AssertionError: 'a' != 'a1'"), "the failing output is the feedback");
    assert_eq!(revision.dependencies, [build.id], "the revision starts from the validated work");
    assert_eq!(revalidation.def.mode, ExecutionMode::Validation);
    assert_eq!(revalidation.dependencies, [revision.id]);
    assert_eq!(omoi_discovery::iteration(&revalidation), 2);
    // A retried attempt of the same validation reuses its revision instead of branching again.
    let retry = FailedValidation {
        validation: env.store.get_task(validate.id).await.unwrap(),
        commands: vec!["python3 -m unittest".into()],
        output: "FAIL again".into(),
        files: vec![],
    };
    let Revision::Branched { reported: again, .. } = service.revise(retry, 3).await.unwrap() else { panic!() };
    assert_eq!(again.outcome.discovery(), reported.outcome.discovery());
    assert_eq!(again.outcome.spawned(), tasks.as_slice());
    env.complete(&v).await; // the failed validation's own job is done
    assert_eq!(env.state(merge.id).await, TaskState::Waiting);
    let r = env.claim(revision.id).await;
    env.complete(&r).await;
    let rv = env.claim(revalidation.id).await;
    env.complete(&rv).await;
    assert_eq!(env.state(merge.id).await, TaskState::Ready);
    let d = env.discoveries().get_discovery(reported.outcome.discovery()).await.unwrap();
    assert_eq!(d.status, DiscoveryStatus::Resolved);
}

/// Three failed validations exhaust the loop (max 3): the third is not revised and the history
/// names every failed run.
async fn three_failed_validations_exhaust_the_revision_loop_with_history(env: Env) {
    let build = NewTask::new("implement slugify");
    let validate = NewTask::new("validate slugify").mode(ExecutionMode::Validation).depends_on([build.id]);
    env.insert(vec![build.clone(), validate.clone()]).await;
    let c = env.claim(build.id).await;
    env.complete(&c).await;
    let service = env.service(&DiscoveryConfig::default());
    let mut current = validate.id;
    for i in 1..=3u32 {
        let v = env.claim(current).await;
        let failed = FailedValidation {
            validation: env.store.get_task(current).await.unwrap(),
            commands: vec!["python3 -m unittest".into()],
            output: format!("FAIL run {i}"),
            files: vec![],
        };
        match service.revise(failed, 3).await.unwrap() {
            Revision::Branched { reported, .. } => {
                assert!(i < 3);
                env.complete(&v).await;
                let tasks = reported.outcome.spawned().to_vec();
                let r = env.claim(tasks[0]).await;
                env.complete(&r).await;
                current = tasks[1];
            }
            Revision::Exhausted { reason, history } => {
                assert_eq!(i, 3);
                assert!(reason.contains("max_validation_iterations is 3"), "{reason}");
                assert_eq!(history.len(), 3, "{history:?}");
                for (n, line) in history.iter().enumerate() {
                    assert!(
                        line.contains(&format!("iteration {}", n + 1)) && line.contains(&format!("FAIL run {}", n + 1)),
                        "{line}"
                    );
                }
                return;
            }
        }
    }
    panic!("the loop was never exhausted");
}

/// The analyzer counts by kind, finds file and component hotspots and recurring kinds, turns
/// them into recommendations, and announces them as an event; a model summary is optional.
async fn analyzer_finds_patterns_hotspots_and_recommends_as_data(env: Env) {
    let mut sources = Vec::new();
    for i in 0..4 {
        let t = NewTask::new(format!("task {i}"));
        env.insert(vec![t.clone()]).await;
        env.claim(t.id).await;
        sources.push(t.id);
    }
    let service = env.service(&DiscoveryConfig::default());
    for (i, s) in sources.iter().enumerate() {
        let d = bug(*s, &format!("bug {i}"), &format!("bug number {i}")).evidence(omoi_core::Evidence {
            files: vec!["textkit/strings.py".into(), format!("tests/test_{i}.py")],
            ..omoi_core::Evidence::default()
        });
        service.report(d).await.unwrap();
    }
    let llm = Arc::new(ScriptedLlm::new());
    llm.push_json(
        &serde_json::json!({"summary": "slugify is fragile", "health_score": 0.4, "likely_blockers": ["unicode"]}),
    );
    let before = env.store.last_cursor().await.unwrap();
    let analyzer =
        Analyzer::new(env.discoveries(), upcast_events(env.store.clone()), env.clock.clone()).with_llm(llm.clone());
    let a = analyzer.analyze(env.spec).await.unwrap();
    assert_eq!(a.total, 4);
    assert_eq!(a.by_kind.get("bug"), Some(&4));
    assert_eq!(a.file_hotspots[0].name, "textkit/strings.py");
    assert_eq!(a.file_hotspots[0].count, 4);
    assert_eq!(a.file_hotspots[0].tasks.len(), 4, "the hotspot's branch tasks");
    assert!(a.component_hotspots.iter().any(|h| h.name == "tests" && h.count == 4));
    assert_eq!(a.patterns.len(), 1);
    assert_eq!((a.patterns[0].kind, a.patterns[0].severity), (DiscoveryKind::Bug, Severity::Medium));
    assert!(a.recommendations.contains(&Recommendation::RaisePriority {
        hotspot: "textkit/strings.py".into(),
        tasks: a.file_hotspots[0].tasks.clone()
    }));
    assert!(a.recommendations.iter().any(|r| matches!(r, Recommendation::InvestigateRootCause { count: 4, .. })));
    assert_eq!(a.summary.as_ref().map(|s| s.health_score), Some(0.4));
    let events = env.store.read_events(before, 100).await.unwrap();
    let analyzed = events.iter().find_map(|e| match &e.event {
        Event::DiscoveryAnalyzed { discoveries, recommendations, .. } => Some((*discoveries, recommendations.clone())),
        _ => None,
    });
    let (n, recs) = analyzed.expect("discovery.analyzed");
    assert_eq!(n, 4);
    assert_eq!(recs, serde_json::to_value(&a.recommendations).unwrap());
    // Outside the window there is nothing; a failing model leaves the summary empty.
    env.clock.advance(Duration::from_secs(25 * 3600));
    llm.push_error(LlmError::Transport("connection refused".into()));
    let later = analyzer.analyze(env.spec).await.unwrap();
    assert_eq!(later.total, 0);
    assert!(later.summary.is_none());
}

fn upcast_events(s: Arc<dyn Store>) -> Arc<dyn EventStore> {
    s
}

macro_rules! scenarios {
    ($factory:path) => {
        scenarios!(@each $factory, [
            semantic_duplicate_above_the_threshold_spawns_nothing,
            dedup_threshold_is_read_from_the_config,
            unfinished_task_with_the_same_work_is_a_duplicate,
            embedder_failure_skips_semantic_dedup_and_loses_nothing,
            messages_say_branched_as_and_refused_cap,
            failed_validation_branches_a_revision_and_a_revalidation,
            three_failed_validations_exhaust_the_revision_loop_with_history,
            analyzer_finds_patterns_hotspots_and_recommends_as_data,
        ]);
    };
    (@each $factory:path, [$($name:ident),* $(,)?]) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let clock = ManualClock::new();
                let Some(store) = $factory(clock.clone()).await else { return };
                super::$name(super::Env { store, clock, spec: SpecId::new() }).await;
            }
        )*
    };
}

mod memory {
    use super::*;

    async fn store(clock: Arc<ManualClock>) -> Option<Arc<dyn Store>> {
        Some(Arc::new(omoi_store::InMemoryStore::with_clock(clock)))
    }

    scenarios!(store);
}

mod sqlite {
    use super::*;

    thread_local! {
        /// Each test's database directory, removed when the test's thread ends.
        static DIRS: std::cell::RefCell<Vec<tempfile::TempDir>> = const { std::cell::RefCell::new(Vec::new()) };
    }

    async fn store(clock: Arc<ManualClock>) -> Option<Arc<dyn Store>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("omoi.db");
        DIRS.with(|d| d.borrow_mut().push(dir));
        let s = omoi_store::SqliteStore::builder(path).clock(clock).open().await.unwrap();
        Some(Arc::new(s))
    }

    scenarios!(store);
}

mod postgres {
    use super::*;

    async fn store(clock: Arc<ManualClock>) -> Option<Arc<dyn Store>> {
        let url = omoi_core::testkit::service_url("OMOI_TEST_POSTGRES_URL")?;
        let schema = format!("omoi_t_{}_{}", chrono::Utc::now().timestamp(), &uuid_suffix());
        let s = omoi_store::PostgresStore::builder(url).schema(schema).clock(clock).connect().await.unwrap();
        Some(Arc::new(s))
    }

    fn uuid_suffix() -> String {
        let id = TaskId::new().to_string().replace('-', "");
        id[20..].to_owned()
    }

    scenarios!(store);
}
