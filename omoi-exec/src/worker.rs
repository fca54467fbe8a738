//! The worker: claims tasks by capability with concurrency N, runs them through a
//! [`TaskExecutor`], and keeps the queue's promises.
//!
//! - Wakes on store events (`task.ready`, `task.created`, …) with a polling backstop.
//! - Marks each claimed task running, renews its lease well inside the TTL, and cancels the
//!   execution if the lease is lost (another holder took over: fencing).
//! - Completes or fails with the fencing token; retryable store errors are retried with backoff.
//! - Sweeps expired leases (any worker can), so a crashed worker's tasks come back.
//! - Registers as an agent and heartbeats when given an [`AgentStore`].
//! - Shuts down gracefully: stops claiming, lets running tasks finish for a grace period, then
//!   cancels them and releases their leases (their attempts are given back).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use omoi_core::config::QueueConfig;
use omoi_core::{
    AgentId, AgentKind, AgentStatus, AgentStore, ClaimRequest, ClaimedTask, Clock, Completion, Event, EventStore,
    Failure, Heartbeat, Lease, NewAgent, StoreError, Task, TaskId, TaskStore, Usage,
};
use serde_json::Value;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

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
    /// Lease length.
    pub lease_ttl: Duration,
    /// Lease renewal period (well inside `lease_ttl`).
    pub renew_every: Duration,
    /// Polling backstop when no event wakes the worker.
    pub poll_interval: Duration,
    /// Expired-lease sweep period.
    pub reclaim_interval: Duration,
    /// How long running tasks may finish after shutdown is requested.
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
            lease_ttl: q.lease_ttl,
            renew_every: q.lease_renew_every,
            poll_interval: q.poll_interval,
            reclaim_interval: q.reclaim_interval,
            grace_period: Duration::from_secs(10),
            heartbeat_every: Duration::from_secs(5),
        }
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
    /// Attempts that failed (retried or dead-lettered).
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

    /// Runs until `shutdown` fires, then shuts down gracefully.
    pub async fn run(&self, shutdown: CancellationToken) -> Result<WorkerStats, StoreError> {
        let span = info_span!("worker", name = %self.config.name, agent = %self.id);
        self.run_inner(shutdown).instrument(span).await
    }

    async fn run_inner(&self, shutdown: CancellationToken) -> Result<WorkerStats, StoreError> {
        let hard_stop = CancellationToken::new();
        let heartbeat = self.start_heartbeats(hard_stop.clone()).await?;
        let mut wake = match self.events.subscribe(self.events.last_cursor().await?).await {
            Ok(s) => Some(s),
            Err(e) => {
                warn!(error = %e, "no event subscription; polling only");
                None
            }
        };
        let mut running: JoinSet<Ending> = JoinSet::new();
        let mut stats = WorkerStats::default();
        let mut next_sweep = self.clock.now();
        let mut store_backoff = Duration::from_millis(50);
        while !shutdown.is_cancelled() {
            if self.clock.now() >= next_sweep {
                match self.tasks.reclaim_expired().await {
                    Ok(ids) if !ids.is_empty() => info!(count = ids.len(), "reclaimed expired leases"),
                    Ok(_) => {}
                    Err(e) => warn!(error = %e, "lease sweep failed"),
                }
                next_sweep = omoi_core::ports::clock::add_duration(self.clock.now(), self.config.reclaim_interval);
            }
            let free = self.config.concurrency.saturating_sub(running.len());
            let mut claimed_any = false;
            if free > 0 {
                let req = ClaimRequest::new(self.id, free, self.config.lease_ttl)
                    .with_capabilities(self.config.capabilities.clone());
                match self.tasks.claim(&req).await {
                    Ok(claimed) => {
                        store_backoff = Duration::from_millis(50);
                        claimed_any = !claimed.is_empty();
                        for c in claimed {
                            let me = self.clone();
                            let cancel = hard_stop.child_token();
                            running.spawn(async move { me.run_one(c, cancel).await });
                        }
                        self.set_busy(!running.is_empty()).await;
                    }
                    Err(e) if e.is_retryable() => {
                        warn!(error = %e, backoff = ?store_backoff, "claim failed; retrying");
                        self.clock.sleep(store_backoff).await;
                        store_backoff = (store_backoff * 2).min(Duration::from_secs(5));
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            }
            if claimed_any && running.len() < self.config.concurrency {
                continue; // there may be more work right away
            }
            tokio::select! {
                _ = shutdown.cancelled() => {}
                Some(done) = running.join_next(), if !running.is_empty() => {
                    tally(&mut stats, done);
                    self.set_busy(!running.is_empty()).await;
                }
                Some(_) = next_wake(&mut wake) => {}
                _ = self.clock.sleep(self.config.poll_interval) => {}
            }
        }
        info!(running = running.len(), "shutting down: no more claims");
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

    async fn run_one(self, claimed: ClaimedTask, cancel: CancellationToken) -> Ending {
        let ClaimedTask { task, lease } = claimed;
        let span =
            info_span!("task", id = %task.id, title = %task.def.title, mode = %task.def.mode, attempt = task.attempts);
        async move {
            let id = task.id;
            if let Err(e) = self.tasks.start(id, lease.token).await {
                warn!(error = %e, "could not mark running");
                if matches!(e, StoreError::StaleLease { .. }) {
                    return Ending::Lost;
                }
            }
            let lost = CancellationToken::new();
            let exec_cancel = CancellationToken::new();
            let renewer = self.spawn_renewer(id, lease, lost.clone());
            let ctx = ExecContext { agent_id: self.id, lease, cancel: exec_cancel.clone() };
            let outcome = tokio::select! {
                r = self.executor.execute(&task, &ctx) => Some(r),
                _ = lost.cancelled() => None,
                _ = cancel.cancelled() => {
                    exec_cancel.cancel();
                    None
                }
            };
            renewer.abort();
            match outcome {
                None if lost.is_cancelled() => {
                    exec_cancel.cancel();
                    warn!("lease lost while running; the new holder owns the task");
                    Ending::Lost
                }
                None => {
                    self.with_retries("release", || self.tasks.release(id, lease.token)).await;
                    Ending::Released
                }
                Some(Ok(out)) => {
                    let completion = Completion { result: out.result, usage: out.usage };
                    match self
                        .with_retries("complete", || self.tasks.complete(id, lease.token, completion.clone()))
                        .await
                    {
                        Some(released) => {
                            info!(released = released.len(), "completed");
                            Ending::Completed
                        }
                        None => Ending::Lost,
                    }
                }
                Some(Err(e)) => {
                    warn!(error = %e, retryable = e.retryable, "execution failed");
                    let failure = Failure { error: e.message.clone(), retryable: e.retryable, usage: e.usage };
                    self.with_retries("fail", || self.tasks.fail(id, lease.token, failure.clone())).await;
                    Ending::Failed
                }
            }
        }
        .instrument(span)
        .await
    }

    /// Retries a store write while it fails with a retryable error (bounded); gives up on
    /// anything else (a stale lease means another holder owns the task now).
    async fn with_retries<T, F, Fut>(&self, what: &str, mut op: F) -> Option<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        let mut delay = Duration::from_millis(100);
        for _ in 0..8 {
            match op().await {
                Ok(v) => return Some(v),
                Err(e) if e.is_retryable() => {
                    warn!(error = %e, what, ?delay, "store unavailable; retrying");
                    self.clock.sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                Err(e) => {
                    warn!(error = %e, what, "store refused");
                    return None;
                }
            }
        }
        None
    }

    fn spawn_renewer(&self, id: TaskId, lease: Lease, lost: CancellationToken) -> tokio::task::JoinHandle<()> {
        let (tasks, clock, every, ttl) =
            (self.tasks.clone(), self.clock.clone(), self.config.renew_every, self.config.lease_ttl);
        tokio::spawn(async move {
            loop {
                clock.sleep(every).await;
                match tasks.renew_lease(id, lease.token, ttl).await {
                    Ok(_) => {}
                    Err(e) if e.is_retryable() => warn!(error = %e, "lease renewal failed; will retry"),
                    Err(e) => {
                        warn!(error = %e, "lease lost");
                        lost.cancel();
                        return;
                    }
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

/// Waits for an event that may mean new claimable work; `None` when there is no stream.
async fn next_wake(wake: &mut Option<omoi_core::EventStream>) -> Option<()> {
    let stream = wake.as_mut()?;
    loop {
        match stream.next().await {
            Some(Ok(e)) => match e.event {
                Event::TaskCreated { .. }
                | Event::TaskReady { .. }
                | Event::TaskRetryScheduled { .. }
                | Event::TaskReleased { .. }
                | Event::TaskLeaseExpired { .. }
                | Event::TaskRedriven { .. }
                | Event::TaskCompleted { .. } => return Some(()),
                _ => continue,
            },
            Some(Err(e)) => {
                warn!(error = %e, "event stream failed; polling only");
                *wake = None;
                return None;
            }
            None => {
                *wake = None;
                return None;
            }
        }
    }
}
