//! The worker: claims tasks by capability with concurrency N, runs them through a
//! [`TaskExecutor`], and keeps the queue's promises.
//!
//! - Wakes on the store's wake-ups (no event is read or decoded for it) with a polling backstop,
//!   and subscribes again when the wake-ups end.
//! - Claims ahead: one call fills its free slots plus a local queue of `prefetch` more tasks
//!   (and marks them all running), so a freed slot starts its next task without a round trip
//!   and one claim carries more than the slots free at that moment. Queued tasks hold fenced
//!   leases, renewed with the rest; a queued task whose lease is lost is dropped; on shutdown
//!   the queue is released. Renews all its leases in one call per period, and cancels an
//!   execution whose lease is lost (another holder took over: fencing).
//! - Completes through a batcher: completions waiting at the same time go to the store in one
//!   `complete_many` call, each fenced by its token. A refused completion (e.g. a result over
//!   the size limit) fails the attempt with the refusal as its error.
//! - Enforces each task's `timeout` (retryable failure) and `deadline` (permanent failure).
//! - Never exits on a per-task or store error: retryable errors back off, others are logged.
//! - Sweeps expired leases (any worker can), so a crashed worker's tasks come back.
//! - Registers as an agent and heartbeats when given an [`AgentStore`].
//! - Shuts down gracefully: stops claiming, lets running tasks finish for a grace period, then
//!   cancels them and releases their leases (their attempts are given back).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use omoi_core::config::{OmoiConfig, QueueConfig};
use omoi_core::ports::clock::add_duration;
use omoi_core::validate::clean_error;
use omoi_core::{
    AgentId, AgentKind, AgentStatus, AgentStore, ClaimRequest, ClaimedTask, Clock, Completion, EventStore, Failure,
    FencingToken, Heartbeat, Lease, NewAgent, StoreError, Task, TaskId, TaskState, TaskStore, Usage, WakeStream,
};
use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

/// Runs one task. Implementations: the agent executor, or anything else.
#[async_trait]
pub trait TaskExecutor: Send + Sync {
    /// Executes `task`. Should return promptly once `ctx.cancel` fires.
    async fn execute(&self, task: &Task, ctx: &ExecContext) -> Result<TaskOutput, ExecError>;

    /// Waits for cleanup that abandoned executions left running in the background (e.g.
    /// sandboxes being destroyed). The worker calls it before it stops. Default: nothing.
    async fn wait_for_cleanup(&self) {}
}

/// What an execution gets besides the task.
#[derive(Debug, Clone)]
pub struct ExecContext {
    /// The worker (agent) holding the lease.
    pub agent_id: AgentId,
    /// The lease.
    pub lease: Lease,
    /// Fires when the worker shuts down past its grace period or the lease is lost.
    pub cancel: CancellationToken,
}

/// A successful execution.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskOutput {
    /// The task's result.
    pub result: Value,
    /// Model usage.
    pub usage: Usage,
}

/// A failed execution.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ExecError {
    /// What went wrong.
    pub message: String,
    /// Whether another attempt may succeed.
    pub retryable: bool,
    /// Model usage spent anyway.
    pub usage: Usage,
}

impl ExecError {
    /// A failure another attempt may fix.
    pub fn retryable(message: impl Into<String>) -> Self {
        Self { message: message.into(), retryable: true, usage: Usage::default() }
    }

    /// A failure another attempt will not fix.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self { message: message.into(), retryable: false, usage: Usage::default() }
    }

    /// The same error with usage attached.
    pub fn with_usage(mut self, usage: Usage) -> Self {
        self.usage = usage;
        self
    }
}

/// Worker settings.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Agent name.
    pub name: String,
    /// Capabilities offered.
    pub capabilities: Vec<String>,
    /// Tasks run at once.
    pub concurrency: usize,
    /// Most tasks asked for per claim (`queue.claim_batch`).
    pub claim_batch: usize,
    /// Tasks claimed ahead of free slots and held in a local queue (leased and marked running,
    /// not yet executing). 0 claims only for free slots. Default: `concurrency`.
    pub prefetch: usize,
    /// Lease length.
    pub lease_ttl: Duration,
    /// Lease renewal period (well inside `lease_ttl`): one batched renewal of every lease held.
    pub renew_every: Duration,
    /// Polling backstop when no event wakes the worker.
    pub poll_interval: Duration,
    /// Expired-lease sweep period.
    pub reclaim_interval: Duration,
    /// A ready task waiting longer than this is claimed one priority level higher
    /// (`queue.aging_after`).
    pub aging_after: Option<Duration>,
    /// How long running tasks may finish after shutdown is requested (`heartbeat.graceful_stop`).
    pub grace_period: Duration,
    /// Heartbeat period (when an agent store is given).
    pub heartbeat_every: Duration,
}

impl WorkerConfig {
    /// Settings from the queue config, `concurrency` tasks at once.
    pub fn new(name: impl Into<String>, concurrency: usize, q: &QueueConfig) -> Self {
        Self {
            name: name.into(),
            capabilities: Vec::new(),
            concurrency: concurrency.max(1),
            claim_batch: q.claim_batch.max(1),
            prefetch: concurrency.max(1),
            lease_ttl: q.lease_ttl,
            renew_every: q.lease_renew_every,
            poll_interval: q.poll_interval,
            reclaim_interval: q.reclaim_interval,
            aging_after: q.aging_after,
            grace_period: Duration::from_secs(10),
            heartbeat_every: Duration::from_secs(5),
        }
    }

    /// Settings from the whole configuration: the queue section, and the grace period of a
    /// graceful stop from `heartbeat.graceful_stop`.
    pub fn from_config(name: impl Into<String>, concurrency: usize, config: &OmoiConfig) -> Self {
        let mut c = Self::new(name, concurrency, &config.queue);
        c.grace_period = config.heartbeat.graceful_stop;
        c
    }

    /// The same settings with a local queue of `prefetch` tasks claimed ahead (0: none).
    pub fn with_prefetch(mut self, prefetch: usize) -> Self {
        self.prefetch = prefetch;
        self
    }

    /// The same settings offering `caps`.
    pub fn with_capabilities(mut self, caps: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.capabilities = caps.into_iter().map(Into::into).collect();
        self
    }
}

/// What a worker did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerStats {
    /// Tasks completed.
    pub completed: u64,
    /// Attempts that failed (retried or dead-lettered), timeouts and missed deadlines included.
    pub failed: u64,
    /// Tasks given back on shutdown.
    pub released: u64,
    /// Tasks whose lease was lost while running.
    pub lost: u64,
}

/// A worker. Cheap to clone; run it with [`Worker::run`].
#[derive(Clone)]
pub struct Worker {
    tasks: Arc<dyn TaskStore>,
    events: Arc<dyn EventStore>,
    agents: Option<Arc<dyn AgentStore>>,
    executor: Arc<dyn TaskExecutor>,
    clock: Arc<dyn Clock>,
    config: WorkerConfig,
    id: AgentId,
}

enum Ending {
    Completed,
    Failed,
    Released,
    Lost,
}

/// Leases held by a running worker, renewed together: task → (token, fires when lost).
type Held = Arc<Mutex<HashMap<TaskId, (FencingToken, CancellationToken)>>>;

/// A completion waiting for the batcher, with where to send its result.
type Pending = (TaskId, FencingToken, Completion, oneshot::Sender<Result<Vec<TaskId>, StoreError>>);

/// Largest batch of completions written in one call.
const COMPLETION_BATCH: usize = 256;

/// What the per-task runners share with the worker loop.
#[derive(Clone)]
struct Shared {
    held: Held,
    completions: mpsc::UnboundedSender<Pending>,
    /// Executions in progress: the slots in use. A runner frees its slot when the execution
    /// ends, before its completion is written, so the next claim overlaps that write.
    executing: Arc<std::sync::atomic::AtomicUsize>,
    /// Fires when a slot frees up.
    slot_freed: Arc<tokio::sync::Notify>,
}

/// Frees an execution slot when dropped (whatever way the execution ended).
struct Slot<'a>(&'a Shared);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.executing.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        self.0.slot_freed.notify_one();
    }
}

impl Worker {
    /// A worker over `tasks` (and its event log) running `executor`.
    pub fn new(
        tasks: Arc<dyn TaskStore>,
        events: Arc<dyn EventStore>,
        executor: Arc<dyn TaskExecutor>,
        clock: Arc<dyn Clock>,
        config: WorkerConfig,
    ) -> Self {
        Self { tasks, events, agents: None, executor, clock, config, id: AgentId::new() }
    }

    /// Registers the worker as an agent and sends heartbeats.
    pub fn with_agent_store(mut self, agents: Arc<dyn AgentStore>) -> Self {
        self.agents = Some(agents);
        self
    }

    /// The worker's agent id (the lease holder).
    pub fn id(&self) -> AgentId {
        self.id
    }

    /// Runs until `shutdown` fires, then shuts down gracefully. Per-task and store errors never
    /// end the run (they are logged and retried); only a failure to register as an agent does.
    pub async fn run(&self, shutdown: CancellationToken) -> Result<WorkerStats, StoreError> {
        let span = info_span!("worker", name = %self.config.name, agent = %self.id);
        self.run_inner(shutdown).instrument(span).await
    }

    async fn subscribe(&self) -> Option<WakeStream> {
        match self.events.wake_ups().await {
            Ok(s) => Some(s),
            Err(e) => {
                warn!(error = %e, "no event subscription; polling until it comes back");
                None
            }
        }
    }

    async fn run_inner(&self, shutdown: CancellationToken) -> Result<WorkerStats, StoreError> {
        let hard_stop = CancellationToken::new();
        let heartbeat = self.start_heartbeats(hard_stop.clone()).await?;
        let mut wake = self.subscribe().await;
        let held: Held = Arc::default();
        let renewer = self.spawn_renewer(held.clone(), hard_stop.clone());
        let (completions, completion_rx) = mpsc::unbounded_channel();
        let batcher = tokio::spawn(self.clone().complete_batches(completion_rx));
        let shared = Shared { held, completions, executing: Arc::default(), slot_freed: Arc::default() };
        let mut running: JoinSet<Ending> = JoinSet::new();
        let mut queued: VecDeque<ClaimedTask> = VecDeque::new();
        let mut stats = WorkerStats::default();
        let mut next_sweep = self.clock.now();
        let mut store_backoff = Duration::from_millis(50);
        let mut busy = false;
        while !shutdown.is_cancelled() {
            if self.clock.now() >= next_sweep {
                match self.tasks.reclaim_expired().await {
                    Ok(ids) if !ids.is_empty() => info!(count = ids.len(), "reclaimed expired leases"),
                    Ok(_) => {}
                    Err(e) => warn!(error = %e, "lease sweep failed"),
                }
                next_sweep = add_duration(self.clock.now(), self.config.reclaim_interval);
                if wake.is_none() {
                    wake = self.subscribe().await;
                }
            }
            while let Some(done) = running.try_join_next() {
                tally(&mut stats, done);
            }
            let executing = shared.executing.load(std::sync::atomic::Ordering::Acquire);
            let mut free = self.config.concurrency.saturating_sub(executing);
            // Freed slots take queued tasks first: no round trip.
            while free > 0
                && let Some(c) = queued.pop_front()
            {
                self.spawn_one(&mut running, c, &hard_stop, &shared);
                free -= 1;
            }
            let want = (free + self.config.prefetch).saturating_sub(queued.len()).min(self.config.claim_batch);
            let mut claimed_any = false;
            if want > 0 && (free > 0 || queued.len() * 2 <= self.config.prefetch) {
                let mut req = ClaimRequest::new(self.id, want, self.config.lease_ttl)
                    .with_capabilities(self.config.capabilities.clone())
                    .and_start();
                req.aging_after = self.config.aging_after;
                match self.tasks.claim(&req).await {
                    Ok(claimed) => {
                        store_backoff = Duration::from_millis(50);
                        claimed_any = !claimed.is_empty();
                        for c in claimed {
                            // Held from the claim on: renewed while queued, dropped if lost.
                            shared.held.lock().insert(c.task.id, (c.lease.token, CancellationToken::new()));
                            if free > 0 {
                                self.spawn_one(&mut running, c, &hard_stop, &shared);
                                free -= 1;
                            } else {
                                queued.push_back(c);
                            }
                        }
                    }
                    Err(e) => {
                        // Never exit on a claim error: a retryable one backs off, anything else
                        // is reported and retried after the polling interval.
                        let pause = if e.is_retryable() { store_backoff } else { self.config.poll_interval };
                        warn!(error = %e, ?pause, "claim failed; retrying");
                        store_backoff = (store_backoff * 2).min(Duration::from_secs(5));
                        tokio::select! {
                            _ = shutdown.cancelled() => {}
                            _ = self.clock.sleep(pause) => {}
                        }
                        continue;
                    }
                }
            }
            let now_busy = !running.is_empty();
            if busy != now_busy {
                busy = now_busy;
                self.set_busy(busy).await;
            }
            let executing = shared.executing.load(std::sync::atomic::Ordering::Acquire);
            if claimed_any && (executing < self.config.concurrency || queued.len() < self.config.prefetch) {
                continue; // there may be more work right away
            }
            if !queued.is_empty() && executing < self.config.concurrency {
                continue;
            }
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = shared.slot_freed.notified() => {
                    // Let the other runners finishing now free their slots too: one claim
                    // then refills all of them.
                    tokio::task::yield_now().await;
                }
                woke = next_wake(&mut wake) => if !woke {
                    wake = None;
                },
                _ = self.clock.sleep(self.config.poll_interval) => {}
            }
        }
        info!(running = running.len(), queued = queued.len(), "shutting down: no more claims");
        for c in queued.drain(..) {
            shared.held.lock().remove(&c.task.id);
            let (id, token) = (c.task.id, c.lease.token);
            match self.with_retries("release", || self.tasks.release(id, token)).await {
                Some(_) => stats.released += 1,
                None => stats.lost += 1,
            }
        }
        let grace = self.clock.sleep(self.config.grace_period);
        tokio::pin!(grace);
        loop {
            tokio::select! {
                done = running.join_next() => match done {
                    Some(d) => tally(&mut stats, d),
                    None => break,
                },
                _ = &mut grace => {
                    warn!(running = running.len(), "grace period over: cancelling and releasing");
                    hard_stop.cancel();
                    while let Some(d) = running.join_next().await {
                        tally(&mut stats, d);
                    }
                    break;
                }
            }
        }
        hard_stop.cancel();
        drop(shared);
        let _ = batcher.await;
        let _ = renewer.await;
        self.executor.wait_for_cleanup().await;
        if let Some(h) = heartbeat {
            let _ = h.await;
        }
        if let Some(agents) = &self.agents {
            let _ = agents.transition_agent(self.id, AgentStatus::Idle, "shutdown").await;
            let _ = agents.transition_agent(self.id, AgentStatus::Terminated, "shutdown").await;
        }
        info!(?stats, "worker stopped");
        Ok(stats)
    }

    /// Starts `c` in a slot (its lease already held).
    fn spawn_one(&self, running: &mut JoinSet<Ending>, c: ClaimedTask, hard_stop: &CancellationToken, shared: &Shared) {
        shared.executing.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        let me = self.clone();
        let cancel = hard_stop.child_token();
        let shared = shared.clone();
        running.spawn(async move { me.run_one(c, cancel, shared).await });
    }

    /// How long the attempt may run: the task's `timeout`, cut short by its `deadline`. `None`
    /// without either; `Some((ZERO, _))` when the deadline already passed.
    fn time_limit(&self, task: &Task) -> Option<(Duration, Limit)> {
        let by_timeout = task.def.timeout.map(|t| (t, Limit::Timeout(t)));
        let by_deadline = task.def.deadline.map(|d| {
            let left = (d - self.clock.now()).to_std().unwrap_or(Duration::ZERO);
            (left, Limit::Deadline(d))
        });
        match (by_timeout, by_deadline) {
            (Some(t), Some(d)) => Some(if d.0 <= t.0 { d } else { t }),
            (t, d) => t.or(d),
        }
    }

    async fn run_one(self, claimed: ClaimedTask, cancel: CancellationToken, shared: Shared) -> Ending {
        let ClaimedTask { task, lease } = claimed;
        let span =
            info_span!("task", id = %task.id, title = %task.def.title, mode = %task.def.mode, attempt = task.attempts);
        async move {
            let slot = Slot(&shared);
            let id = task.id;
            // The lease is held since the claim; the renewer removed it if it was lost while
            // the task was queued.
            let Some(lost) = shared.held.lock().get(&id).map(|(_, lost)| lost.clone()) else {
                warn!("lease lost while queued; the new holder owns the task");
                return Ending::Lost;
            };
            if task.state != TaskState::Running {
                // A store that did not start it with the claim.
                if let Err(e) = self.tasks.start(id, lease.token).await {
                    warn!(error = %e, "could not mark running");
                    if matches!(e, StoreError::StaleLease { .. }) {
                        shared.held.lock().remove(&id);
                        return Ending::Lost;
                    }
                }
            }
            let limit = self.time_limit(&task);
            if let Some((Duration::ZERO, Limit::Deadline(d))) = limit {
                shared.held.lock().remove(&id);
                let failure = Failure::permanent(format!("deadline {d} passed before the task started"));
                return self.fail(id, lease.token, failure).await;
            }
            let exec_cancel = CancellationToken::new();
            let ctx = ExecContext { agent_id: self.id, lease, cancel: exec_cancel.clone() };
            let timer = async {
                match limit {
                    Some((d, l)) => {
                        self.clock.sleep(d).await;
                        l
                    }
                    None => std::future::pending().await,
                }
            };
            let outcome = tokio::select! {
                r = self.executor.execute(&task, &ctx) => Outcome::Done(r),
                _ = lost.cancelled() => Outcome::Lost,
                l = timer => Outcome::OutOfTime(l),
                _ = cancel.cancelled() => Outcome::Stopped,
            };
            drop(slot);
            shared.held.lock().remove(&id);
            match outcome {
                Outcome::Lost => {
                    exec_cancel.cancel();
                    warn!("lease lost while running; the new holder owns the task");
                    Ending::Lost
                }
                Outcome::Stopped => {
                    exec_cancel.cancel();
                    self.with_retries("release", || self.tasks.release(id, lease.token)).await;
                    Ending::Released
                }
                Outcome::OutOfTime(l) => {
                    exec_cancel.cancel();
                    warn!(limit = %l, "out of time");
                    let failure = match l {
                        Limit::Timeout(_) => Failure::retryable(l.to_string()),
                        Limit::Deadline(_) => Failure::permanent(l.to_string()),
                    };
                    self.fail(id, lease.token, failure).await
                }
                Outcome::Done(Ok(out)) => {
                    let completion = Completion { result: out.result, usage: out.usage };
                    let (reply, answer) = oneshot::channel();
                    if shared.completions.send((id, lease.token, completion, reply)).is_err() {
                        return Ending::Lost;
                    }
                    match answer.await {
                        Ok(Ok(released)) => {
                            debug!(released = released.len(), "completed");
                            Ending::Completed
                        }
                        Ok(Err(StoreError::InvalidInput(refusal))) => {
                            // The store refused the result (e.g. too large): the attempt fails
                            // with the refusal, instead of waiting out its lease.
                            warn!(%refusal, "result refused; failing the attempt");
                            let failure = Failure::retryable(format!("result refused by the store: {refusal}"));
                            self.fail(id, lease.token, failure).await
                        }
                        Ok(Err(e)) => {
                            warn!(error = %e, "completion not recorded");
                            Ending::Lost
                        }
                        Err(_) => Ending::Lost,
                    }
                }
                Outcome::Done(Err(e)) => {
                    warn!(error = %e, retryable = e.retryable, "execution failed");
                    let failure = Failure { error: e.message.clone(), retryable: e.retryable, usage: e.usage };
                    self.fail(id, lease.token, failure).await
                }
            }
        }
        .instrument(span)
        .await
    }

    /// Records a failed attempt (the message cleaned so the store accepts it).
    async fn fail(&self, id: TaskId, token: FencingToken, mut failure: Failure) -> Ending {
        failure.error = clean_error(&failure.error);
        match self.with_retries("fail", || self.tasks.fail(id, token, failure.clone())).await {
            Some(_) => Ending::Failed,
            None => Ending::Lost,
        }
    }

    /// Writes completions in batches: whatever is waiting goes in one `complete_many` call
    /// (while one call is in flight the next batch gathers), each runner gets its own result.
    async fn complete_batches(self, mut rx: mpsc::UnboundedReceiver<Pending>) {
        let mut batch: Vec<Pending> = Vec::with_capacity(COMPLETION_BATCH);
        while let Some(first) = rx.recv().await {
            batch.push(first);
            while batch.len() < COMPLETION_BATCH {
                match rx.try_recv() {
                    Ok(p) => batch.push(p),
                    Err(_) => break,
                }
            }
            let items: Vec<(TaskId, FencingToken, Completion)> =
                batch.iter().map(|(id, token, c, _)| (*id, *token, c.clone())).collect();
            let results = self.with_retries_err("complete", || self.tasks.complete_many(items.clone())).await;
            match results {
                Ok(results) if results.len() == batch.len() => {
                    for ((.., reply), r) in batch.drain(..).zip(results) {
                        let _ = reply.send(r);
                    }
                }
                Ok(results) => {
                    warn!(expected = batch.len(), got = results.len(), "complete_many answered the wrong count");
                    batch.clear();
                }
                Err(e) => {
                    for (id, token, .., reply) in batch.drain(..) {
                        let _ = reply.send(Err(match &e {
                            StoreError::InvalidInput(m) => StoreError::InvalidInput(m.clone()),
                            _ => StoreError::StaleLease { task: id, presented: token },
                        }));
                    }
                }
            }
        }
    }

    /// Retries a store write while it fails with a retryable error (bounded); gives up on
    /// anything else (a stale lease means another holder owns the task now).
    async fn with_retries<T, F, Fut>(&self, what: &str, op: F) -> Option<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        self.with_retries_err(what, op).await.ok()
    }

    async fn with_retries_err<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        let mut delay = Duration::from_millis(100);
        let mut tries = 0;
        loop {
            tries += 1;
            match op().await {
                Ok(v) => return Ok(v),
                Err(e) if e.is_retryable() && tries < 8 => {
                    warn!(error = %e, what, ?delay, "store unavailable; retrying");
                    self.clock.sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                Err(e) => {
                    warn!(error = %e, what, "store refused");
                    return Err(e);
                }
            }
        }
    }

    /// One renewal call per period for every lease the worker holds; a lease the store no
    /// longer recognizes cancels its execution.
    fn spawn_renewer(&self, held: Held, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
        let (tasks, clock, every, ttl) =
            (self.tasks.clone(), self.clock.clone(), self.config.renew_every, self.config.lease_ttl);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = clock.sleep(every) => {}
                }
                let leases: Vec<(TaskId, FencingToken)> = held.lock().iter().map(|(id, (t, _))| (*id, *t)).collect();
                if leases.is_empty() {
                    continue;
                }
                match tasks.renew_leases(&leases, ttl).await {
                    Ok(results) => {
                        for ((id, _), r) in leases.iter().zip(results) {
                            match r {
                                Ok(_) => {}
                                Err(e) if e.is_retryable() => {
                                    warn!(task = %id, error = %e, "lease renewal failed; will retry")
                                }
                                Err(e) => {
                                    warn!(task = %id, error = %e, "lease lost");
                                    if let Some((_, lost)) = held.lock().remove(id) {
                                        lost.cancel();
                                    }
                                }
                            }
                        }
                    }
                    Err(e) => warn!(error = %e, "lease renewal failed; will retry"),
                }
            }
        })
    }

    async fn start_heartbeats(
        &self,
        stop: CancellationToken,
    ) -> Result<Option<tokio::task::JoinHandle<()>>, StoreError> {
        let Some(agents) = self.agents.clone() else { return Ok(None) };
        let new = NewAgent {
            id: self.id,
            name: self.config.name.clone(),
            kind: AgentKind::Worker,
            capabilities: self.config.capabilities.clone(),
            capacity: u32::try_from(self.config.concurrency).unwrap_or(u32::MAX),
        };
        agents.register_agent(new).await?;
        agents.heartbeat(self.id, Heartbeat { seq: 1 }).await?;
        let (id, clock, every) = (self.id, self.clock.clone(), self.config.heartbeat_every);
        Ok(Some(tokio::spawn(async move {
            let mut seq = 1;
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = clock.sleep(every) => {}
                }
                seq += 1;
                if let Err(e) = agents.heartbeat(id, Heartbeat { seq }).await {
                    warn!(error = %e, "heartbeat failed");
                }
            }
        })))
    }

    async fn set_busy(&self, busy: bool) {
        let Some(agents) = &self.agents else { return };
        let to = if busy { AgentStatus::Running } else { AgentStatus::Idle };
        if let Ok(a) = agents.get_agent(self.id).await
            && a.status != to
            && a.status.transition(to).is_ok()
        {
            let _ = agents.transition_agent(self.id, to, if busy { "working" } else { "idle" }).await;
        }
    }
}

/// Why an attempt ran out of time.
#[derive(Debug, Clone, Copy)]
enum Limit {
    /// The task's `timeout` elapsed.
    Timeout(Duration),
    /// The task's `deadline` passed.
    Deadline(DateTime<Utc>),
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Limit::Timeout(t) => write!(f, "timed out after {t:?}"),
            Limit::Deadline(d) => write!(f, "deadline {d} passed"),
        }
    }
}

/// How an execution ended.
enum Outcome {
    Done(Result<TaskOutput, ExecError>),
    Lost,
    OutOfTime(Limit),
    Stopped,
}

fn tally(stats: &mut WorkerStats, done: Result<Ending, tokio::task::JoinError>) {
    match done {
        Ok(Ending::Completed) => stats.completed += 1,
        Ok(Ending::Failed) => stats.failed += 1,
        Ok(Ending::Released) => stats.released += 1,
        Ok(Ending::Lost) => stats.lost += 1,
        Err(e) => {
            warn!(error = %e, "task runner panicked");
            stats.failed += 1;
        }
    }
}

/// Waits for a wake-up. `false` when the stream ended (the caller subscribes again later);
/// never resolves without a stream.
async fn next_wake(wake: &mut Option<WakeStream>) -> bool {
    match wake.as_mut() {
        Some(stream) => stream.next().await.is_some(),
        None => std::future::pending().await,
    }
}
