//! Conformance scenarios for [`TaskStore`] (with its [`EventStore`]).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::json;

use crate::error::{StoreError, TaskRef};
use crate::event::{Cursor, Event, Subject};
use crate::ids::{AgentId, SpecId, TaskId, TicketId};
use crate::ports::clock::{Clock, add_duration};
use crate::ports::event_store::EventStore;
use crate::ports::task_store::{ClaimRequest, ClaimedTask, Completion, FailOutcome, Failure, TaskFilter, TaskStore};
use crate::state::TaskState;
use crate::task::{BackoffPolicy, MAX_TASK_PAYLOAD_BYTES, NewTask, TaskLinks};
use crate::testkit::ManualClock;
use crate::testkit::fixtures::{chain, diamond, independent, task};
use crate::{ExecutionMode, Priority, WorkPhase};

/// What the task-store scenarios run against.
#[derive(Clone)]
pub struct Harness {
    /// The store under test.
    pub tasks: Arc<dyn TaskStore>,
    /// Its event log.
    pub events: Arc<dyn EventStore>,
    /// The clock the store was built with.
    pub clock: Arc<ManualClock>,
}

impl Harness {
    /// Wraps an adapter implementing both ports.
    pub fn new<S: TaskStore + EventStore + 'static>(store: Arc<S>, clock: Arc<ManualClock>) -> Self {
        Self { tasks: store.clone(), events: store, clock }
    }

    async fn claim_with(&self, holder: AgentId, caps: &[&str], limit: usize) -> Vec<ClaimedTask> {
        let req = ClaimRequest::new(holder, limit, TTL).with_capabilities(caps.iter().copied());
        self.tasks.claim(&req).await.expect("claim")
    }

    async fn claim(&self, limit: usize) -> Vec<ClaimedTask> {
        self.claim_with(AgentId::new(), &[], limit).await
    }

    async fn claim_ids(&self, limit: usize) -> Vec<TaskId> {
        self.claim(limit).await.into_iter().map(|c| c.task.id).collect()
    }

    async fn state(&self, id: TaskId) -> TaskState {
        self.tasks.get_task(id).await.expect("get_task").state
    }

    async fn insert(&self, batch: Vec<NewTask>) -> Vec<TaskId> {
        self.tasks.insert_tasks(batch).await.expect("insert_tasks")
    }

    async fn complete(&self, c: &ClaimedTask) -> Vec<TaskId> {
        self.tasks.complete(c.task.id, c.lease.token, Completion::default()).await.expect("complete")
    }

    async fn all(&self) -> Vec<crate::Task> {
        self.tasks.list_tasks(&TaskFilter::default()).await.expect("list_tasks")
    }
}

const TTL: Duration = Duration::from_secs(30);

fn set<T: std::hash::Hash + Eq>(v: impl IntoIterator<Item = T>) -> HashSet<T> {
    v.into_iter().collect()
}

/// Every field given at insert comes back from `get_task`.
pub async fn insert_and_get_round_trip_every_field(h: Harness) {
    let parent = task("parent");
    h.insert(vec![parent.clone()]).await;
    let now = h.clock.now();
    let mut t = NewTask::new("full")
        .description("every field set")
        .priority(Priority::High)
        .mode(ExecutionMode::Validation)
        .phase(WorkPhase::Testing)
        .requires(["python", "git"])
        .input(json!({"k": [1, 2, {"nested": "yes"}], "f": 0.5}))
        .max_attempts(5)
        .backoff(BackoffPolicy::fixed(Duration::from_secs(3), 3.0, Duration::from_secs(90)))
        .dedup_key("dedup-full")
        .concurrency("repo-a", 2)
        .estimate_hours(2.5)
        .depends_on([parent.id])
        .run_at(add_duration(now, Duration::from_secs(5)))
        .links(TaskLinks {
            spec_id: Some(SpecId::new()),
            ticket_id: Some(TicketId::new()),
            parent_id: Some(parent.id),
            local_id: Some("TSK-042".into()),
        });
    t.def.acceptance_criteria = vec!["tests pass".into(), "docs updated".into()];
    t.def.owned_files = vec!["src/**/*.rs".into()];
    t.def.timeout = Some(Duration::from_secs(90));
    t.def.deadline = Some(add_duration(now, Duration::from_secs(3600)));
    let ids = h.insert(vec![t.clone()]).await;
    assert_eq!(ids, vec![t.id]);
    let got = h.tasks.get_task(t.id).await.unwrap();
    assert_eq!(got.id, t.id);
    assert_eq!(got.def, t.def);
    assert_eq!(got.links, t.links);
    assert_eq!(got.dependencies, vec![parent.id]);
    assert_eq!(got.state, TaskState::Waiting);
    assert_eq!(got.attempts, 0);
    assert_eq!(got.lease, None);
    assert_eq!(got.run_at, t.run_at.unwrap());
    assert_eq!(got.created_at, now);
    assert_eq!(got.result, None);
    assert!(matches!(h.tasks.get_task(TaskId::new()).await, Err(StoreError::NotFound { kind: "task", .. })));
}

/// 16 workers race over 2,000 tasks: every task is claimed exactly once and completed.
pub async fn claim_is_exactly_once_under_16_concurrent_claimers(h: Harness) {
    const N: usize = 2000;
    for batch in independent(N).chunks(500) {
        h.insert(batch.to_vec()).await;
    }
    let seen: Arc<Mutex<HashMap<TaskId, u32>>> = Arc::default();
    let done = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..16 {
        let (h, seen, done) = (h.clone(), seen.clone(), done.clone());
        workers.push(tokio::spawn(async move {
            let holder = AgentId::new();
            let mut idle_rounds = 0;
            while done.load(Ordering::SeqCst) < N {
                let claimed = h.claim_with(holder, &[], 8).await;
                if claimed.is_empty() {
                    idle_rounds += 1;
                    assert!(idle_rounds < 100_000, "workers starved with tasks outstanding");
                    tokio::task::yield_now().await;
                    continue;
                }
                for c in &claimed {
                    assert_eq!(c.lease.holder, holder);
                    *seen.lock().entry(c.task.id).or_default() += 1;
                }
                for c in &claimed {
                    h.complete(c).await;
                    done.fetch_add(1, Ordering::SeqCst);
                }
            }
        }));
    }
    for w in workers {
        w.await.expect("worker panicked");
    }
    {
        let seen = seen.lock();
        assert_eq!(seen.len(), N, "every task claimed");
        assert!(seen.values().all(|&n| n == 1), "a task was claimed twice");
    }
    let counts = h.tasks.count_tasks(None).await.unwrap();
    assert_eq!(counts.get(&TaskState::Completed).copied(), Some(N as u64));
    assert_eq!(counts.values().sum::<u64>(), N as u64);
    assert_eq!(h.tasks.ready_count().await.unwrap(), 0);
}

/// In a chain only the head is claimable; completing each task releases exactly the next.
pub async fn chain_releases_each_task_only_after_its_dependency_completed(h: Harness) {
    let tasks = chain(5);
    let ids: Vec<TaskId> = tasks.iter().map(|t| t.id).collect();
    h.insert(tasks).await;
    assert_eq!(h.state(ids[0]).await, TaskState::Ready);
    for &id in &ids[1..] {
        assert_eq!(h.state(id).await, TaskState::Waiting);
    }
    for i in 0..ids.len() {
        let claimed = h.claim(10).await;
        assert_eq!(claimed.iter().map(|c| c.task.id).collect::<Vec<_>>(), vec![ids[i]], "step {i}");
        assert!(h.claim(10).await.is_empty(), "the next step is not claimable before step {i} completes");
        let released = h.complete(&claimed[0]).await;
        assert_eq!(released, ids.get(i + 1).copied().into_iter().collect::<Vec<_>>());
    }
    assert!(h.all().await.iter().all(|t| t.state == TaskState::Completed));
}

/// A join is claimable only after both branches completed.
pub async fn diamond_join_is_claimable_only_after_both_branches_completed(h: Harness) {
    let [top, left, right, join] = diamond();
    h.insert(vec![top.clone(), left.clone(), right.clone(), join.clone()]).await;
    let c = h.claim(10).await;
    assert_eq!(c.iter().map(|c| c.task.id).collect::<Vec<_>>(), vec![top.id]);
    assert_eq!(set(h.complete(&c[0]).await), set([left.id, right.id]));
    let branches = h.claim(10).await;
    assert_eq!(set(branches.iter().map(|c| c.task.id)), set([left.id, right.id]));
    let first = &branches[0];
    assert!(h.complete(first).await.is_empty(), "one branch is not enough");
    assert_eq!(h.state(join.id).await, TaskState::Waiting);
    assert!(h.claim(10).await.is_empty());
    assert_eq!(h.complete(&branches[1]).await, vec![join.id]);
    assert_eq!(h.claim_ids(10).await, vec![join.id]);
}

/// A cycle is rejected, the error names its path, and no task of the batch is stored.
pub async fn cycle_in_batch_is_rejected_naming_the_path_and_nothing_is_inserted(h: Harness) {
    let before = h.events.last_cursor().await.unwrap();
    let mut a = task("a");
    let b = task("b").depends_on([a.id]);
    let c = task("c").depends_on([b.id]);
    a.dependencies.push(c.id);
    let d = task("d");
    let err = h.tasks.insert_tasks(vec![d.clone(), a.clone(), b.clone(), c.clone()]).await.unwrap_err();
    let StoreError::Cycle { path } = err else { panic!("expected a cycle error, got {err}") };
    assert_eq!(path.len(), 4, "{path:?}");
    assert_eq!(path.first(), path.last());
    assert_eq!(set(path.iter().cloned()), set([a.id, b.id, c.id].map(TaskRef::Id)));
    assert!(matches!(h.tasks.get_task(d.id).await, Err(StoreError::NotFound { .. })));
    assert!(h.all().await.is_empty());
    assert_eq!(h.events.last_cursor().await.unwrap(), before, "no event for a rejected batch");
}

/// A dependency on a task that does not exist is rejected, naming both, and nothing is stored.
pub async fn unknown_dependency_is_rejected_and_nothing_is_inserted(h: Harness) {
    let ghost = TaskId::new();
    let x = task("x");
    let y = task("y").depends_on([x.id, ghost]);
    match h.tasks.insert_tasks(vec![x.clone(), y.clone()]).await {
        Err(StoreError::UnknownDependency { task: TaskRef::Id(t), missing: TaskRef::Id(m) }) => {
            assert_eq!((t, m), (y.id, ghost));
        }
        other => panic!("expected UnknownDependency, got {other:?}"),
    }
    assert!(h.all().await.is_empty());
}

/// Invalid definitions, ids repeated in a batch and ids already stored reject the whole batch.
pub async fn invalid_or_duplicate_tasks_reject_the_whole_batch(h: Harness) {
    let ok = task("fine");
    let err = h.tasks.insert_tasks(vec![ok.clone(), task("  ")]).await.unwrap_err();
    assert!(matches!(&err, StoreError::InvalidInput(m) if m.contains("title is empty")), "{err}");
    let err = h.tasks.insert_tasks(vec![ok.clone(), ok.clone()]).await.unwrap_err();
    assert!(matches!(err, StoreError::InvalidInput(_)), "{err}");
    assert!(h.all().await.is_empty());
    h.insert(vec![ok.clone()]).await;
    let err = h.tasks.insert_tasks(vec![task("other"), ok.clone()]).await.unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists { kind: "task", .. }), "{err}");
    assert_eq!(h.all().await.len(), 1);
}

/// A new task on a completed task starts ready; on a failed one, blocked; on a pending one, waiting.
pub async fn dependencies_on_stored_tasks_decide_the_initial_state(h: Harness) {
    let done = task("done");
    let dead = task("dead").max_attempts(1);
    let pending = task("pending");
    h.insert(vec![done.clone(), dead.clone(), pending.clone()]).await;
    for c in h.claim(10).await {
        if c.task.id == done.id {
            h.complete(&c).await;
        } else if c.task.id == dead.id {
            h.tasks.fail(c.task.id, c.lease.token, Failure::retryable("boom")).await.unwrap();
        } else {
            h.tasks.release(c.task.id, c.lease.token).await.unwrap();
        }
    }
    let on_done = task("on done").depends_on([done.id]);
    let on_dead = task("on dead").depends_on([dead.id, done.id]);
    let on_pending = task("on pending").depends_on([pending.id]);
    h.insert(vec![on_done.clone(), on_dead.clone(), on_pending.clone()]).await;
    assert_eq!(h.state(on_done.id).await, TaskState::Ready);
    assert_eq!(h.state(on_dead.id).await, TaskState::Blocked);
    assert_eq!(h.state(on_pending.id).await, TaskState::Waiting);
}

/// An expired lease is reclaimed with backoff; the stale holder can no longer complete, fail
/// or renew; the next claim gets a newer fencing token.
pub async fn expired_lease_is_reclaimed_and_the_stale_holder_is_fenced(h: Harness) {
    let t = task("leased");
    h.insert(vec![t.clone()]).await;
    let first = h.claim(1).await.remove(0);
    assert_eq!(first.lease.expires_at, add_duration(h.clock.now(), TTL));
    h.clock.advance(Duration::from_secs(29));
    assert!(h.tasks.reclaim_expired().await.unwrap().is_empty(), "not expired yet");
    h.clock.advance(Duration::from_secs(2));
    assert_eq!(h.tasks.reclaim_expired().await.unwrap(), vec![t.id]);
    let got = h.tasks.get_task(t.id).await.unwrap();
    assert_eq!(got.state, TaskState::Ready);
    assert_eq!(got.lease, None);
    assert_eq!(got.attempts, 1);
    assert_eq!(got.run_at, add_duration(h.clock.now(), Duration::from_secs(10)), "fixed 10 s backoff");
    let stale = first.lease.token;
    assert!(matches!(h.tasks.complete(t.id, stale, Completion::default()).await, Err(StoreError::StaleLease { .. })));
    assert!(matches!(h.tasks.fail(t.id, stale, Failure::retryable("x")).await, Err(StoreError::StaleLease { .. })));
    assert!(matches!(h.tasks.renew_lease(t.id, stale, TTL).await, Err(StoreError::StaleLease { .. })));
    assert!(h.claim(1).await.is_empty(), "backoff not elapsed");
    h.clock.advance(Duration::from_secs(10));
    let second = h.claim(1).await.remove(0);
    assert!(second.lease.token > stale);
    assert_eq!(second.task.attempts, 2);
    assert!(matches!(h.tasks.complete(t.id, stale, Completion::default()).await, Err(StoreError::StaleLease { .. })));
    h.complete(&second).await;
    assert_eq!(h.state(t.id).await, TaskState::Completed);
    let names: Vec<_> =
        h.events.read_events(Cursor::START, 100).await.unwrap().into_iter().map(|e| e.event.name()).collect();
    assert!(names.contains(&"task.lease_expired"), "{names:?}");
}

/// Renewing moves the expiry; the task is not reclaimed past its original expiry.
pub async fn renewed_lease_survives_past_its_original_expiry(h: Harness) {
    h.insert(vec![task("long")]).await;
    let c = h.claim(1).await.remove(0);
    h.clock.advance(Duration::from_secs(20));
    let lease = h.tasks.renew_lease(c.task.id, c.lease.token, TTL).await.unwrap();
    assert_eq!(lease.expires_at, add_duration(h.clock.now(), TTL));
    assert_eq!(lease.token, c.lease.token);
    h.clock.advance(Duration::from_secs(20));
    assert!(h.tasks.reclaim_expired().await.unwrap().is_empty());
    assert_eq!(h.state(c.task.id).await, TaskState::Claimed);
    h.complete(&c).await;
}

/// A retryable failure puts the task back with backoff: not claimable a second early.
pub async fn failed_attempt_is_not_claimable_before_its_backoff_elapses(h: Harness) {
    let t = task("flaky");
    h.insert(vec![t.clone()]).await;
    let c = h.claim(1).await.remove(0);
    let outcome = h.tasks.fail(t.id, c.lease.token, Failure::retryable("network")).await.unwrap();
    assert_eq!(outcome, FailOutcome::Retrying { run_at: add_duration(h.clock.now(), Duration::from_secs(10)) });
    assert!(h.claim(1).await.is_empty());
    assert_eq!(h.tasks.ready_count().await.unwrap(), 0);
    h.clock.advance(Duration::from_secs(9));
    assert!(h.claim(1).await.is_empty());
    h.clock.advance(Duration::from_secs(1));
    assert_eq!(h.tasks.ready_count().await.unwrap(), 1);
    let c2 = h.claim(1).await.remove(0);
    assert_eq!(c2.task.attempts, 2);
    assert_eq!(c2.task.last_error.as_deref(), Some("network"));
    let outcome = h.tasks.fail(t.id, c2.lease.token, Failure::retryable("again")).await.unwrap();
    assert_eq!(outcome, FailOutcome::Retrying { run_at: add_duration(h.clock.now(), Duration::from_secs(20)) });
}

/// The last attempt failing dead-letters the task and blocks every transitive dependent.
pub async fn exhausted_attempts_dead_letter_the_task_and_block_its_dependents(h: Harness) {
    let t = task("doomed").max_attempts(2);
    let d1 = task("d1").depends_on([t.id]);
    let d2 = task("d2").depends_on([d1.id]);
    h.insert(vec![t.clone(), d1.clone(), d2.clone()]).await;
    let c = h.claim(1).await.remove(0);
    assert!(matches!(
        h.tasks.fail(t.id, c.lease.token, Failure::retryable("1")).await.unwrap(),
        FailOutcome::Retrying { .. }
    ));
    h.clock.advance(Duration::from_secs(10));
    let c = h.claim(1).await.remove(0);
    match h.tasks.fail(t.id, c.lease.token, Failure::retryable("2")).await.unwrap() {
        FailOutcome::DeadLettered { blocked } => assert_eq!(set(blocked), set([d1.id, d2.id])),
        other => panic!("expected dead letter, got {other:?}"),
    }
    let got = h.tasks.get_task(t.id).await.unwrap();
    assert_eq!((got.state, got.attempts, got.last_error.as_deref()), (TaskState::Failed, 2, Some("2")));
    assert_eq!(h.state(d1.id).await, TaskState::Blocked);
    assert_eq!(h.state(d2.id).await, TaskState::Blocked);
    assert!(h.claim(10).await.is_empty());
}

/// A permanent failure dead-letters even with attempts left.
pub async fn permanent_failure_dead_letters_at_once(h: Harness) {
    let t = task("bad input").max_attempts(5);
    h.insert(vec![t.clone()]).await;
    let c = h.claim(1).await.remove(0);
    let out = h.tasks.fail(t.id, c.lease.token, Failure::permanent("schema violation")).await.unwrap();
    assert_eq!(out, FailOutcome::DeadLettered { blocked: vec![] });
    let got = h.tasks.get_task(t.id).await.unwrap();
    assert_eq!((got.state, got.attempts), (TaskState::Failed, 1));
}

/// Cancelling blocks all transitive dependents; cancelling a terminal task is refused; a
/// cancelled holder's lease is dead.
pub async fn cancel_cascades_blocked_to_transitive_dependents(h: Harness) {
    let tasks = chain(3);
    let ids: Vec<_> = tasks.iter().map(|t| t.id).collect();
    h.insert(tasks).await;
    assert_eq!(set(h.tasks.cancel(ids[0]).await.unwrap()), set([ids[1], ids[2]]));
    assert_eq!(h.state(ids[0]).await, TaskState::Cancelled);
    assert_eq!(h.state(ids[1]).await, TaskState::Blocked);
    assert_eq!(h.state(ids[2]).await, TaskState::Blocked);
    assert!(matches!(h.tasks.cancel(ids[0]).await, Err(StoreError::InvalidTransition { .. })));
    assert_eq!(h.tasks.cancel(ids[1]).await.unwrap(), Vec::<TaskId>::new(), "already blocked downstream");
    assert_eq!(h.state(ids[1]).await, TaskState::Cancelled);
    let running = task("running");
    h.insert(vec![running.clone()]).await;
    let c = h.claim(1).await.remove(0);
    h.tasks.start(c.task.id, c.lease.token).await.unwrap();
    h.tasks.cancel(running.id).await.unwrap();
    assert!(matches!(
        h.tasks.complete(running.id, c.lease.token, Completion::default()).await,
        Err(StoreError::StaleLease { .. })
    ));
    assert_eq!(h.state(running.id).await, TaskState::Cancelled);
}

/// Redriving a dead letter resets its attempts and lets dependents blocked only by it wait again.
pub async fn redrive_of_a_dead_letter_unblocks_its_dependents(h: Harness) {
    let x = task("x").max_attempts(1);
    let y = task("y").max_attempts(1);
    let on_x = task("on x").depends_on([x.id]);
    let on_both = task("on both").depends_on([x.id, y.id]);
    let leaf = task("leaf").depends_on([on_x.id]);
    h.insert(vec![x.clone(), y.clone(), on_x.clone(), on_both.clone(), leaf.clone()]).await;
    for c in h.claim(10).await {
        h.tasks.fail(c.task.id, c.lease.token, Failure::retryable("down")).await.unwrap();
    }
    for id in [on_x.id, on_both.id, leaf.id] {
        assert_eq!(h.state(id).await, TaskState::Blocked);
    }
    assert!(matches!(h.tasks.redrive(on_x.id).await, Err(StoreError::InvalidTransition { .. })));
    assert_eq!(set(h.tasks.redrive(x.id).await.unwrap()), set([on_x.id, leaf.id]));
    let got = h.tasks.get_task(x.id).await.unwrap();
    assert_eq!((got.state, got.attempts), (TaskState::Ready, 0));
    assert_eq!(h.state(on_x.id).await, TaskState::Waiting);
    assert_eq!(h.state(leaf.id).await, TaskState::Waiting);
    assert_eq!(h.state(on_both.id).await, TaskState::Blocked, "y is still dead");
    let c = h.claim(10).await;
    assert_eq!(c.len(), 1);
    assert_eq!(h.complete(&c[0]).await, vec![on_x.id]);
    assert_eq!(h.tasks.redrive(y.id).await.unwrap(), vec![on_both.id]);
    assert_eq!(h.state(on_both.id).await, TaskState::Waiting);
}

/// Claims come in priority order, oldest first within a priority.
pub async fn claims_follow_priority_then_fifo_within_a_priority(h: Harness) {
    let low = task("low").priority(Priority::Low);
    let high1 = task("high 1").priority(Priority::High);
    let medium = task("medium");
    let high2 = task("high 2").priority(Priority::High);
    let critical = task("critical").priority(Priority::Critical);
    h.insert(vec![low.clone(), high1.clone(), medium.clone(), high2.clone(), critical.clone()]).await;
    let want = vec![critical.id, high1.id, high2.id, medium.id, low.id];
    let mut got = Vec::new();
    for _ in 0..5 {
        got.extend(h.claim_ids(1).await);
    }
    assert_eq!(got, want);
    let more = vec![task("m1"), task("m2").priority(Priority::Critical), task("m3")];
    let want = vec![more[1].id, more[0].id, more[2].id];
    h.insert(more).await;
    assert_eq!(h.claim_ids(10).await, want, "one batch claim is in queue order too");
}

/// A worker gets only tasks whose required capabilities it has.
pub async fn capability_filter_hands_out_only_matching_tasks(h: Harness) {
    let needs = task("needs python+docker").requires(["python", "docker"]);
    let plain = task("plain");
    h.insert(vec![needs.clone(), plain.clone()]).await;
    let holder = AgentId::new();
    let got: Vec<_> = h.claim_with(holder, &["python"], 10).await.into_iter().map(|c| c.task.id).collect();
    assert_eq!(got, vec![plain.id]);
    assert!(h.claim_with(holder, &["python"], 10).await.is_empty());
    let got: Vec<_> =
        h.claim_with(holder, &["gpu", "docker", "python"], 10).await.into_iter().map(|c| c.task.id).collect();
    assert_eq!(got, vec![needs.id]);
}

/// No more than `limit` tasks sharing a concurrency key are leased at once.
pub async fn concurrency_key_limits_simultaneous_leases(h: Harness) {
    let keyed: Vec<_> = (0..3).map(|i| task(&format!("k{i}")).concurrency("repo", 2)).collect();
    let other = task("other");
    h.insert(keyed.iter().cloned().chain([other.clone()]).collect()).await;
    let first = h.claim(10).await;
    let first_ids = set(first.iter().map(|c| c.task.id));
    assert_eq!(first.len(), 3, "two keyed tasks plus the unkeyed one");
    assert!(first_ids.contains(&other.id));
    assert!(!first_ids.contains(&keyed[2].id));
    assert!(h.claim(10).await.is_empty(), "the key is at its limit");
    let keyed_claim = first.iter().find(|c| c.task.id != other.id).unwrap();
    h.complete(keyed_claim).await;
    assert_eq!(h.claim_ids(10).await, vec![keyed[2].id]);
}

/// A dedup key is held by at most one non-terminal task; it frees when the holder ends.
pub async fn dedup_key_is_unique_among_non_terminal_tasks(h: Harness) {
    let a = task("a").dedup_key("fix-login");
    h.insert(vec![a.clone()]).await;
    let b = task("b").dedup_key("fix-login");
    match h.tasks.insert_tasks(vec![task("c"), b.clone()]).await {
        Err(StoreError::DuplicateKey { key, existing }) => {
            assert_eq!((key.as_str(), existing), ("fix-login", Some(a.id)))
        }
        other => panic!("expected DuplicateKey, got {other:?}"),
    }
    assert_eq!(h.all().await.len(), 1, "nothing of the rejected batch was stored");
    let c = h.claim(1).await.remove(0);
    h.complete(&c).await;
    h.insert(vec![b.clone()]).await;
    h.tasks.cancel(b.id).await.unwrap();
    h.insert(vec![task("d").dedup_key("fix-login")]).await;
}

/// Releasing gives the task back at once and returns its attempt.
pub async fn release_returns_the_task_without_using_an_attempt(h: Harness) {
    let t = task("interrupted");
    h.insert(vec![t.clone()]).await;
    let c = h.claim(1).await.remove(0);
    assert_eq!(c.task.attempts, 1);
    h.tasks.release(t.id, c.lease.token).await.unwrap();
    let got = h.tasks.get_task(t.id).await.unwrap();
    assert_eq!((got.state, got.attempts, got.lease), (TaskState::Ready, 0, None));
    assert!(matches!(
        h.tasks.complete(t.id, c.lease.token, Completion::default()).await,
        Err(StoreError::StaleLease { .. })
    ));
    let again = h.claim(1).await.remove(0);
    assert!(again.lease.token > c.lease.token);
    assert_eq!(again.task.attempts, 1);
}

/// A failed agent's leases are taken back; other holders keep theirs.
pub async fn reclaim_holder_takes_back_a_failed_agents_tasks(h: Harness) {
    h.insert(vec![task("one"), task("two")]).await;
    let (dead, alive) = (AgentId::new(), AgentId::new());
    let mine = h.claim_with(dead, &[], 1).await.remove(0);
    let theirs = h.claim_with(alive, &[], 1).await.remove(0);
    assert_eq!(h.tasks.reclaim_holder(dead).await.unwrap(), vec![mine.task.id]);
    let got = h.tasks.get_task(mine.task.id).await.unwrap();
    assert_eq!((got.state, got.attempts), (TaskState::Ready, 1));
    assert_eq!(h.state(theirs.task.id).await, TaskState::Claimed);
    h.complete(&theirs).await;
}

/// Each state change writes exactly one event, in the order the changes happened.
pub async fn every_state_change_emits_one_event_in_order(h: Harness) {
    let start = h.events.last_cursor().await.unwrap();
    let a = task("a");
    let b = task("b").depends_on([a.id]);
    h.insert(vec![a.clone(), b.clone()]).await;
    let ca = h.claim(1).await.remove(0);
    h.tasks.start(a.id, ca.lease.token).await.unwrap();
    h.complete(&ca).await;
    let cb = h.claim(1).await.remove(0);
    h.tasks.fail(b.id, cb.lease.token, Failure::permanent("no")).await.unwrap();
    let events = h.events.read_events(start, 100).await.unwrap();
    let got: Vec<(&str, Subject)> = events.iter().map(|e| (e.event.name(), e.event.subject())).collect();
    let (sa, sb) = (Subject::Task(a.id), Subject::Task(b.id));
    assert_eq!(
        got,
        vec![
            ("task.created", sa),
            ("task.created", sb),
            ("task.claimed", sa),
            ("task.started", sa),
            ("task.completed", sa),
            ("task.ready", sb),
            ("task.claimed", sb),
            ("task.failed", sb),
        ]
    );
    assert!(events.windows(2).all(|w| w[0].cursor < w[1].cursor));
    match &events[2].event {
        Event::TaskClaimed { token, attempt, .. } => assert_eq!((*token, *attempt), (ca.lease.token, 1)),
        e => panic!("{e:?}"),
    }
}

/// A task scheduled in the future is not claimable before its time.
pub async fn future_run_at_delays_the_first_claim(h: Harness) {
    let t = task("later").run_at(add_duration(h.clock.now(), Duration::from_secs(60)));
    h.insert(vec![t.clone()]).await;
    assert_eq!(h.state(t.id).await, TaskState::Ready);
    assert!(h.claim(1).await.is_empty());
    assert_eq!(h.tasks.ready_count().await.unwrap(), 0);
    h.clock.advance(Duration::from_secs(60));
    assert_eq!(h.claim_ids(1).await, vec![t.id]);
}

/// `start` and `renew_lease` are fenced; starting twice is an illegal transition.
pub async fn start_and_renew_require_the_current_token(h: Harness) {
    let t = task("fenced");
    h.insert(vec![t.clone()]).await;
    let c = h.claim(1).await.remove(0);
    let wrong = crate::FencingToken(c.lease.token.0 + 1);
    assert!(matches!(h.tasks.start(t.id, wrong).await, Err(StoreError::StaleLease { .. })));
    assert!(matches!(h.tasks.renew_lease(t.id, wrong, TTL).await, Err(StoreError::StaleLease { .. })));
    h.tasks.start(t.id, c.lease.token).await.unwrap();
    assert_eq!(h.state(t.id).await, TaskState::Running);
    assert!(matches!(h.tasks.start(t.id, c.lease.token).await, Err(StoreError::InvalidTransition { .. })));
    h.tasks.renew_lease(t.id, c.lease.token, TTL).await.unwrap();
    h.complete(&c).await;
}

/// Listing filters by state, spec and limit (ordered by id); counting groups by state.
pub async fn list_and_count_filter_by_state_and_spec(h: Harness) {
    let spec = SpecId::new();
    let links = TaskLinks { spec_id: Some(spec), ..TaskLinks::default() };
    let mine: Vec<_> = (0..3).map(|i| task(&format!("s{i}")).links(links.clone())).collect();
    let others = vec![task("o1"), task("o2")];
    h.insert(mine.iter().cloned().chain(others.clone()).collect()).await;
    let c = h.claim(1).await.remove(0);
    assert_eq!(c.task.id, mine[0].id, "FIFO");
    h.complete(&c).await;
    let by_spec = h.tasks.list_tasks(&TaskFilter { spec_id: Some(spec), ..TaskFilter::default() }).await.unwrap();
    assert_eq!(by_spec.iter().map(|t| t.id).collect::<Vec<_>>(), mine.iter().map(|t| t.id).collect::<Vec<_>>());
    let done =
        h.tasks.list_tasks(&TaskFilter { states: vec![TaskState::Completed], ..TaskFilter::default() }).await.unwrap();
    assert_eq!(done.iter().map(|t| t.id).collect::<Vec<_>>(), vec![mine[0].id]);
    let page1 = h.tasks.list_tasks(&TaskFilter { limit: Some(2), ..TaskFilter::default() }).await.unwrap();
    let page2 = h.tasks.list_tasks(&TaskFilter { after: Some(page1[1].id), ..TaskFilter::default() }).await.unwrap();
    assert_eq!(page1.len() + page2.len(), 5);
    assert!(page1[1].id < page2[0].id);
    let counts = h.tasks.count_tasks(Some(spec)).await.unwrap();
    assert_eq!((counts.get(&TaskState::Completed), counts.get(&TaskState::Ready)), (Some(&1), Some(&2)));
    let all = h.tasks.count_tasks(None).await.unwrap();
    assert_eq!(all.get(&TaskState::Ready), Some(&4));
    assert_eq!(h.tasks.dependents(mine[0].id).await.unwrap(), Vec::<TaskId>::new());
}

/// An oversized result is refused with a clear error and the lease is kept, so nothing is lost.
pub async fn oversized_result_is_rejected_and_the_lease_is_kept(h: Harness) {
    let t = task("big output");
    h.insert(vec![t.clone()]).await;
    let c = h.claim(1).await.remove(0);
    let huge = Completion { result: json!("x".repeat(MAX_TASK_PAYLOAD_BYTES + 1)), ..Completion::default() };
    let err = h.tasks.complete(t.id, c.lease.token, huge).await.unwrap_err();
    assert!(matches!(&err, StoreError::InvalidInput(m) if m.contains("result")), "{err}");
    assert_eq!(h.state(t.id).await, TaskState::Claimed);
    let ok = Completion { result: json!({"summary": "done"}), ..Completion::default() };
    h.tasks.complete(t.id, c.lease.token, ok).await.unwrap();
    assert_eq!(h.tasks.get_task(t.id).await.unwrap().result, Some(json!({"summary": "done"})));
}

/// `complete_many` completes each valid item and reports a stale one, without failing the rest.
pub async fn complete_many_reports_each_item(h: Harness) {
    h.insert(independent(3)).await;
    let c = h.claim(3).await;
    let stale = crate::FencingToken(c[1].lease.token.0 + 100);
    let results = h
        .tasks
        .complete_many(vec![
            (c[0].task.id, c[0].lease.token, Completion::default()),
            (c[1].task.id, stale, Completion::default()),
            (c[2].task.id, c[2].lease.token, Completion::default()),
        ])
        .await
        .unwrap();
    assert_eq!(results.len(), 3);
    assert!(results[0].is_ok() && results[2].is_ok());
    assert!(matches!(results[1], Err(StoreError::StaleLease { .. })));
    assert_eq!(h.state(c[0].task.id).await, TaskState::Completed);
    assert_eq!(h.state(c[1].task.id).await, TaskState::Claimed);
    assert_eq!(h.state(c[2].task.id).await, TaskState::Completed);
}

/// Arbitrary JSON: scalars (with NUL characters and odd Unicode in strings and keys), shallow
/// trees, and values wrapped up to 80 levels deep (past [`MAX_JSON_DEPTH`](crate::validate::MAX_JSON_DEPTH)).
fn arb_json() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
    use proptest::prelude::*;
    use serde_json::Value;
    let text = prop_oneof![any::<String>(), "[a-c\u{0}é😀 ]{0,12}"];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e15f64..1e15).prop_map(Value::from),
        text.clone().prop_map(Value::String),
    ];
    let tree = leaf.prop_recursive(4, 24, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(text.clone(), inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    (tree, 0..80usize, any::<bool>()).prop_map(|(mut v, depth, arrays)| {
        for _ in 0..depth {
            v = if arrays { Value::Array(vec![v]) } else { Value::Object([("k".to_owned(), v)].into_iter().collect()) };
        }
        v
    })
}

/// Whatever text and JSON a caller sends, each store either refuses it up front with
/// `InvalidInput` (exactly when the core validation does) or reads it back exactly: titles,
/// inputs, results and failure messages (a property test, the same cases on every store).
pub async fn hostile_text_and_json_are_refused_up_front_or_read_back_exactly(h: Harness) {
    use proptest::prelude::*;
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let text = prop_oneof![any::<String>(), "[ a\u{0}é]{0,6}", Just("x".repeat(crate::validate::MAX_TITLE_BYTES + 1))];
    let cases = (text.clone(), arb_json(), arb_json(), text);
    let mut runner = TestRunner::deterministic();
    let (mut stored, mut refused) = (0, 0);
    for _ in 0..40 {
        let (title, input, result, error) = cases.new_tree(&mut runner).expect("case").current();
        let t = NewTask::new(title).input(input).max_attempts(1);
        let valid = t.def.validate();
        match h.tasks.insert_tasks(vec![t.clone()]).await {
            Err(StoreError::InvalidInput(m)) => {
                assert!(valid.is_err(), "refused what core accepts: {m}");
                refused += 1;
                continue;
            }
            Err(e) => panic!("insert failed with an untyped error: {e}"),
            Ok(_) => assert!(valid.is_ok(), "accepted what core refuses: {valid:?}"),
        }
        stored += 1;
        assert_eq!(h.tasks.get_task(t.id).await.expect("read back").def, t.def, "definition read back exactly");
        let c = h.claim(1).await.remove(0);
        assert_eq!(c.task.def, t.def, "claim reads the definition back");
        let payload_ok = crate::task::check_payload("result", &result).is_ok();
        match h
            .tasks
            .complete(t.id, c.lease.token, Completion { result: result.clone(), ..Completion::default() })
            .await
        {
            Ok(_) => {
                assert!(payload_ok, "accepted a result core refuses");
                assert_eq!(h.tasks.get_task(t.id).await.unwrap().result, Some(result), "result read back exactly");
                continue;
            }
            Err(StoreError::InvalidInput(_)) => assert!(!payload_ok, "refused a result core accepts"),
            Err(e) => panic!("complete failed with an untyped error: {e}"),
        }
        let failure_ok = crate::queue::check_failure(&Failure::permanent(error.clone())).is_ok();
        match h.tasks.fail(t.id, c.lease.token, Failure::permanent(error.clone())).await {
            Ok(_) => {
                assert!(failure_ok);
                assert_eq!(h.tasks.get_task(t.id).await.unwrap().last_error, Some(error), "error read back exactly");
            }
            Err(StoreError::InvalidInput(_)) => {
                assert!(!failure_ok, "refused a failure core accepts");
                let clean = crate::validate::clean_error(&error);
                h.tasks.fail(t.id, c.lease.token, Failure::permanent(clean.clone())).await.expect("a cleaned error");
                assert_eq!(h.tasks.get_task(t.id).await.unwrap().last_error, Some(clean));
            }
            Err(e) => panic!("fail failed with an untyped error: {e}"),
        }
        assert_eq!(h.state(t.id).await, TaskState::Failed);
    }
    assert!(stored > 5 && refused > 5, "both kinds of cases ran: {stored} stored, {refused} refused");
    let hostile = Event::MonitorIntervention { agent_id: AgentId::new(), severity: "x".into(), message: "a\0b".into() };
    assert!(matches!(h.events.append_events(vec![hostile]).await, Err(StoreError::InvalidInput(_))));
}

/// A claim with `start` leases and marks running in one step: `task.claimed` then `task.started`.
pub async fn claim_and_start_marks_tasks_running_in_one_step(h: Harness) {
    let ts = independent(3);
    h.insert(ts.clone()).await;
    let from = h.events.last_cursor().await.unwrap();
    let holder = AgentId::new();
    let claimed = h.tasks.claim(&ClaimRequest::new(holder, 2, TTL).and_start()).await.unwrap();
    assert_eq!(claimed.iter().map(|c| c.task.id).collect::<Vec<_>>(), vec![ts[0].id, ts[1].id]);
    for c in &claimed {
        assert_eq!(c.task.state, TaskState::Running);
        assert_eq!(h.state(c.task.id).await, TaskState::Running);
    }
    let names: Vec<&str> = h.events.read_events(from, 10).await.unwrap().iter().map(|e| e.event.name()).collect();
    assert_eq!(names, ["task.claimed", "task.started", "task.claimed", "task.started"]);
    // The lease is fenced as usual, and `start` on a running task is refused.
    assert!(h.tasks.start(claimed[0].task.id, claimed[0].lease.token).await.is_err());
    h.tasks.complete(claimed[0].task.id, claimed[0].lease.token, Completion::default()).await.unwrap();
    assert_eq!(h.state(ts[0].id).await, TaskState::Completed);
}

/// `renew_leases` renews each current lease and reports stale or unknown ones per item.
pub async fn renew_leases_reports_each_lease(h: Harness) {
    h.insert(independent(2)).await;
    let c = h.claim(2).await;
    h.clock.advance(Duration::from_secs(10));
    let ghost = TaskId::new();
    let out = h
        .tasks
        .renew_leases(
            &[(c[0].task.id, c[0].lease.token), (c[1].task.id, crate::FencingToken(99)), (ghost, c[0].lease.token)],
            TTL,
        )
        .await
        .unwrap();
    assert_eq!(out.len(), 3);
    let renewed = out[0].as_ref().expect("current lease renewed");
    assert!(renewed.expires_at > c[0].lease.expires_at);
    assert_eq!(h.tasks.get_task(c[0].task.id).await.unwrap().lease.unwrap().expires_at, renewed.expires_at);
    assert!(matches!(out[1], Err(StoreError::StaleLease { .. })));
    assert!(matches!(out[2], Err(StoreError::NotFound { .. })));
}

/// With `aging_after`, a ready task that waited longer is claimed one priority level higher:
/// a long-waiting `Low` task goes before a fresh `Medium` one, but not before a fresh `High`
/// one; without aging (or before it is due) priority alone decides.
pub async fn aging_bumps_a_long_waiting_task_one_priority_level(h: Harness) {
    let old_low = task("old low").priority(Priority::Low);
    h.insert(vec![old_low.clone()]).await;
    h.clock.advance(Duration::from_secs(3600));
    let (medium, high) = (task("fresh medium").priority(Priority::Medium), task("fresh high").priority(Priority::High));
    h.insert(vec![medium.clone(), high.clone()]).await;
    let claim = |aging: Option<Duration>| {
        let h = h.clone();
        async move {
            let req = ClaimRequest::new(AgentId::new(), 1, TTL).aging_after(aging);
            let c = h.tasks.claim(&req).await.expect("claim").remove(0);
            h.tasks.release(c.task.id, c.lease.token).await.expect("release");
            c.task.id
        }
    };
    assert_eq!(claim(None).await, high.id, "no aging: priority order");
    assert_eq!(claim(Some(Duration::from_secs(7200))).await, high.id, "not waited long enough");
    h.tasks.cancel(high.id).await.unwrap();
    assert_eq!(claim(None).await, medium.id);
    assert_eq!(claim(Some(Duration::from_secs(7200))).await, medium.id, "not aged yet");
    assert_eq!(
        claim(Some(Duration::from_secs(1800))).await,
        old_low.id,
        "aged: Low claimed as Medium, and it waited longer"
    );
    // One level only: a fresh Critical still goes first.
    let critical = task("fresh critical").priority(Priority::Critical);
    h.insert(vec![critical.clone()]).await;
    assert_eq!(claim(Some(Duration::from_secs(1800))).await, critical.id);
}

/// Runs the whole [`TaskStore`](crate::TaskStore) suite against an adapter. The factory is
/// `async fn(Arc<ManualClock>) -> Option<Arc<S>>` with `S: TaskStore + EventStore`.
#[macro_export]
macro_rules! task_store_suite {
    ($factory:expr) => {
        $crate::__omoi_suite!(
            task_store,
            $factory,
            [
                insert_and_get_round_trip_every_field,
                claim_is_exactly_once_under_16_concurrent_claimers,
                chain_releases_each_task_only_after_its_dependency_completed,
                diamond_join_is_claimable_only_after_both_branches_completed,
                cycle_in_batch_is_rejected_naming_the_path_and_nothing_is_inserted,
                unknown_dependency_is_rejected_and_nothing_is_inserted,
                invalid_or_duplicate_tasks_reject_the_whole_batch,
                dependencies_on_stored_tasks_decide_the_initial_state,
                expired_lease_is_reclaimed_and_the_stale_holder_is_fenced,
                renewed_lease_survives_past_its_original_expiry,
                failed_attempt_is_not_claimable_before_its_backoff_elapses,
                exhausted_attempts_dead_letter_the_task_and_block_its_dependents,
                permanent_failure_dead_letters_at_once,
                cancel_cascades_blocked_to_transitive_dependents,
                redrive_of_a_dead_letter_unblocks_its_dependents,
                claims_follow_priority_then_fifo_within_a_priority,
                capability_filter_hands_out_only_matching_tasks,
                concurrency_key_limits_simultaneous_leases,
                dedup_key_is_unique_among_non_terminal_tasks,
                release_returns_the_task_without_using_an_attempt,
                reclaim_holder_takes_back_a_failed_agents_tasks,
                every_state_change_emits_one_event_in_order,
                future_run_at_delays_the_first_claim,
                start_and_renew_require_the_current_token,
                list_and_count_filter_by_state_and_spec,
                oversized_result_is_rejected_and_the_lease_is_kept,
                complete_many_reports_each_item,
                hostile_text_and_json_are_refused_up_front_or_read_back_exactly,
                claim_and_start_marks_tasks_running_in_one_step,
                renew_leases_reports_each_lease,
                aging_bumps_a_long_waiting_task_one_priority_level,
            ]
        );
    };
}
