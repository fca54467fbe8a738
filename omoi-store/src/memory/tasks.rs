//! `TaskStore` for the in-memory adapter: rows, a queue index and the dependency graph.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use omoi_core::late_edges::AddedDependencies;
use omoi_core::ports::clock::add_duration;
use omoi_core::queue::{self, AttemptLoss, LossOutcome, plan_batch};
use omoi_core::task::check_payload;
use omoi_core::{
    AgentId, ClaimRequest, ClaimedTask, Completion, Event, FailOutcome, Failure, FencingToken, Lease, NewTask, SpecId,
    StoreError, Task, TaskCounts, TaskEvent, TaskFilter, TaskId, TaskState, TaskStore, TicketId,
};
use uuid::Uuid;

use super::{InMemoryStore, State};

/// Queue order key: urgency band (0 = critical), then `run_at`, then id.
type QueueKey = (u8, DateTime<Utc>, TaskId);

struct Row {
    task: Task,
    /// Dependencies not yet completed.
    unmet: usize,
    /// Claims so far: the source of fencing tokens.
    claims: u64,
}

#[derive(Default)]
pub(super) struct Tasks {
    rows: BTreeMap<TaskId, Row>,
    dependents: HashMap<TaskId, Vec<TaskId>>,
    /// `Ready` tasks in queue order.
    ready: BTreeSet<QueueKey>,
    /// Leased tasks by expiry.
    leased: BTreeSet<(DateTime<Utc>, TaskId)>,
    /// Dedup key → the non-terminal task holding it.
    dedup: HashMap<String, TaskId>,
    /// Concurrency key → leased tasks with that key.
    running_per_key: HashMap<String, u32>,
    /// Ticket → its tasks.
    pub(super) by_ticket: HashMap<TicketId, Vec<TaskId>>,
}

fn key(task: &Task) -> QueueKey {
    (queue::band(task.def.priority), task.run_at, task.id)
}

impl Tasks {
    pub(super) fn len(&self) -> usize {
        self.rows.len()
    }

    pub(super) fn get(&self, id: &TaskId) -> Option<&Task> {
        self.rows.get(id).map(|r| &r.task)
    }

    fn row(&mut self, id: TaskId) -> Result<&mut Row, StoreError> {
        self.rows.get_mut(&id).ok_or_else(|| StoreError::not_found("task", id))
    }

    /// The row if `token` is its current lease, else `StaleLease` (or `NotFound`).
    fn fenced(&mut self, id: TaskId, token: FencingToken) -> Result<&mut Row, StoreError> {
        let row = self.row(id)?;
        queue::fenced(&row.task, token)?;
        Ok(row)
    }

    /// Validates a batch without changing anything; returns initial states.
    pub(super) fn validate(&self, batch: &[NewTask]) -> Result<Vec<TaskState>, StoreError> {
        let states = plan_batch(batch, |id| self.get(id).map(|t| t.state))?;
        for t in batch {
            if let Some(k) = &t.def.dedup_key
                && let Some(holder) = self.dedup.get(k)
            {
                return Err(StoreError::DuplicateKey { key: k.clone(), existing: Some(*holder) });
            }
        }
        Ok(states)
    }

    /// Inserts a validated batch.
    pub(super) fn apply(
        &mut self,
        batch: Vec<NewTask>,
        states: Vec<TaskState>,
        now: DateTime<Utc>,
        events: &mut Vec<Event>,
    ) -> Vec<TaskId> {
        let mut ids = Vec::with_capacity(batch.len());
        for (new, state) in batch.into_iter().zip(states) {
            let unmet =
                new.dependencies.iter().filter(|d| self.get(d).is_none_or(|t| t.state != TaskState::Completed)).count();
            for d in &new.dependencies {
                self.dependents.entry(*d).or_default().push(new.id);
            }
            let task = Task::inserted(new, state, now);
            if let Some(k) = &task.def.dedup_key {
                self.dedup.insert(k.clone(), task.id);
            }
            if let Some(ticket) = task.links.ticket_id {
                self.by_ticket.entry(ticket).or_default().push(task.id);
            }
            if state == TaskState::Ready {
                self.ready.insert(key(&task));
            }
            events.push(Event::TaskCreated { task_id: task.id, state, spec_id: task.links.spec_id });
            ids.push(task.id);
            self.rows.insert(task.id, Row { task, unmet, claims: 0 });
        }
        ids
    }

    fn claim(&mut self, req: &ClaimRequest, now: DateTime<Utc>, events: &mut Vec<Event>) -> Vec<ClaimedTask> {
        let mut chosen = Vec::new();
        let mut taken_per_key: HashMap<&str, u32> = HashMap::new();
        let (min_id, max_id) = (TaskId::from_uuid(Uuid::nil()), TaskId::from_uuid(Uuid::max()));
        let cutoff = queue::aging_cutoff(now, req.aging_after);
        // Claimed band e (`queue::aged_band`): band e + 1 tasks that aged, then, merged by
        // (run_at, id), band e tasks that did not (band 0 keeps all of its own).
        'bands: for b in 0..4u8 {
            let aged: Vec<QueueKey> = match cutoff {
                Some(c) if b < 3 => {
                    self.ready.range((b + 1, DateTime::<Utc>::MIN_UTC, min_id)..=(b + 1, c, max_id)).copied().collect()
                }
                _ => Vec::new(),
            };
            let lo = match cutoff {
                Some(c) if b > 0 => Bound::Excluded((b, c, max_id)),
                _ => Bound::Included((b, DateTime::<Utc>::MIN_UTC, min_id)),
            };
            let own = self.ready.range((lo, Bound::Included((b, now, max_id))));
            let mut aged = aged.into_iter().peekable();
            let mut own = own.copied().peekable();
            let merged = std::iter::from_fn(|| match (aged.peek(), own.peek()) {
                (Some(a), Some(o)) if (a.1, a.2) <= (o.1, o.2) => aged.next(),
                (Some(_), None) => aged.next(),
                _ => own.next(),
            });
            for (_, _, id) in merged {
                if chosen.len() >= req.limit {
                    break 'bands;
                }
                let task = &self.rows[&id].task;
                if !task.def.capabilities.iter().all(|c| req.capabilities.contains(c)) {
                    continue;
                }
                if let Some(c) = &task.def.concurrency {
                    let running = self.running_per_key.get(&c.key).copied().unwrap_or(0);
                    let taken = taken_per_key.entry(c.key.as_str()).or_default();
                    if running + *taken >= c.limit {
                        continue;
                    }
                    *taken += 1;
                }
                chosen.push(id);
            }
        }
        chosen
            .into_iter()
            .map(|id| {
                let row = self.rows.get_mut(&id).expect("ready task has a row");
                self.ready.remove(&key(&row.task));
                row.claims += 1;
                row.task.attempts += 1;
                let lease = Lease {
                    holder: req.holder,
                    token: FencingToken(row.claims),
                    expires_at: add_duration(now, req.lease_ttl),
                };
                row.task.lease = Some(lease);
                row.task.state = if req.start { TaskState::Running } else { TaskState::Claimed };
                row.task.updated_at = now;
                self.leased.insert((lease.expires_at, id));
                if let Some(c) = &row.task.def.concurrency {
                    *self.running_per_key.entry(c.key.clone()).or_default() += 1;
                }
                events.push(Event::TaskClaimed {
                    task_id: id,
                    holder: req.holder,
                    token: lease.token,
                    attempt: row.task.attempts,
                });
                if req.start {
                    events.push(Event::TaskStarted { task_id: id, holder: req.holder });
                }
                ClaimedTask { task: row.task.clone(), lease }
            })
            .collect()
    }

    /// Drops the lease bookkeeping of a leased row.
    fn drop_lease(&mut self, id: TaskId) -> Option<Lease> {
        let lease = self.rows.get_mut(&id)?.task.lease.take()?;
        self.unindex_lease(id, lease);
        Some(lease)
    }

    /// Forgets `lease` of task `id` in the lease indexes (the task no longer holds it).
    fn unindex_lease(&mut self, id: TaskId, lease: Lease) {
        self.leased.remove(&(lease.expires_at, id));
        if let Some(c) = self.rows.get(&id).and_then(|r| r.task.def.concurrency.as_ref())
            && let Some(n) = self.running_per_key.get_mut(&c.key)
        {
            *n = n.saturating_sub(1);
        }
    }

    fn free_dedup(&mut self, id: TaskId) {
        if let Some(k) = self.rows.get(&id).and_then(|r| r.task.def.dedup_key.clone())
            && self.dedup.get(&k) == Some(&id)
        {
            self.dedup.remove(&k);
        }
    }

    fn complete(
        &mut self,
        id: TaskId,
        token: FencingToken,
        completion: Completion,
        now: DateTime<Utc>,
        events: &mut Vec<Event>,
    ) -> Result<Vec<TaskId>, StoreError> {
        let row = self.fenced(id, token)?;
        check_payload("result", &completion.result).map_err(StoreError::InvalidInput)?;
        let holder = row.task.lease.map(|l| l.holder).expect("fenced row is leased");
        queue::step(&mut row.task, TaskEvent::Complete, now)?;
        row.task.result = Some(completion.result);
        row.task.usage += completion.usage;
        self.drop_lease(id);
        self.free_dedup(id);
        events.push(Event::TaskCompleted { task_id: id, holder });
        let mut released = Vec::new();
        for d in self.dependents.get(&id).cloned().unwrap_or_default() {
            let Some(row) = self.rows.get_mut(&d) else { continue };
            row.unmet = row.unmet.saturating_sub(1);
            if row.unmet == 0 && row.task.state == TaskState::Waiting {
                queue::step(&mut row.task, TaskEvent::DependenciesMet, now)?;
                self.ready.insert(key(&row.task));
                events.push(Event::TaskReady { task_id: d });
                released.push(d);
            }
        }
        Ok(released)
    }

    /// A lost attempt (a reported failure, or a lease that lapsed or whose holder failed),
    /// by the shared rule [`queue::lose_attempt`].
    fn lose_attempt(
        &mut self,
        id: TaskId,
        loss: AttemptLoss,
        now: DateTime<Utc>,
        events: &mut Vec<Event>,
    ) -> Result<FailOutcome, StoreError> {
        // Untrack the lease here; the rule takes it off the task itself (it names its holder).
        let lease = self.drop_lease(id);
        let row = self.row(id)?;
        row.task.lease = lease;
        let (outcome, event) = queue::lose_attempt(&mut row.task, loss, now)?;
        events.push(event);
        match outcome {
            LossOutcome::Retrying { run_at } => {
                self.ready.insert(key(&self.rows[&id].task));
                Ok(FailOutcome::Retrying { run_at })
            }
            LossOutcome::DeadLettered => {
                self.free_dedup(id);
                let blocked = self.block_dependents(id, now, events)?;
                Ok(FailOutcome::DeadLettered { blocked })
            }
        }
    }

    /// Blocks every transitive dependent still waiting on `root` ([`queue::block_dependent`]).
    fn block_dependents(
        &mut self,
        root: TaskId,
        now: DateTime<Utc>,
        events: &mut Vec<Event>,
    ) -> Result<Vec<TaskId>, StoreError> {
        let mut walk = queue::Cascade::from(root);
        while let Some(cause) = walk.next_cause() {
            for d in self.dependents.get(&cause).cloned().unwrap_or_default() {
                if let Some(event) = queue::block_dependent(&mut self.row(d)?.task, cause, now)? {
                    events.push(event);
                    walk.reached(d);
                }
            }
        }
        Ok(walk.finish())
    }

    /// Lets blocked dependents of `root` wait again where no dependency still blocks them
    /// ([`queue::unblock_dependent`]).
    fn unblock_dependents(
        &mut self,
        root: TaskId,
        now: DateTime<Utc>,
        events: &mut Vec<Event>,
    ) -> Result<Vec<TaskId>, StoreError> {
        let mut walk = queue::Cascade::from(root);
        while let Some(cause) = walk.next_cause() {
            for d in self.dependents.get(&cause).cloned().unwrap_or_default() {
                let Some(row) = self.rows.get(&d) else { continue };
                let deps: HashMap<TaskId, TaskState> =
                    row.task.dependencies.iter().filter_map(|x| self.get(x).map(|t| (*x, t.state))).collect();
                let row = self.row(d)?;
                let Some(event) = queue::unblock_dependent(&mut row.task, |x| deps.get(x).copied(), now)? else {
                    continue;
                };
                row.unmet = row.task.dependencies.iter().filter(|x| deps.get(x) != Some(&TaskState::Completed)).count();
                events.push(event);
                walk.reached(d);
            }
        }
        Ok(walk.finish())
    }

    fn reclaim(
        &mut self,
        ids: Vec<TaskId>,
        now: DateTime<Utc>,
        events: &mut Vec<Event>,
    ) -> Result<Vec<TaskId>, StoreError> {
        for &id in &ids {
            self.lose_attempt(id, AttemptLoss::LeaseLost, now, events)?;
        }
        Ok(ids)
    }

    fn holder_of(&self, id: &TaskId) -> Option<AgentId> {
        self.get(id).and_then(|t| t.lease.map(|l| l.holder))
    }

    /// Tasks depending directly on `id` (for discovery branching).
    pub(super) fn dependents_of(&self, id: TaskId) -> Vec<TaskId> {
        self.dependents.get(&id).cloned().unwrap_or_default()
    }

    /// Makes the stored task `task` also depend on `on` (a blocking discovery's branch).
    pub(super) fn add_dependency(&mut self, task: TaskId, on: TaskId) {
        let done = self.get(&on).is_some_and(|t| t.state == TaskState::Completed);
        let Some(row) = self.rows.get_mut(&task) else { return };
        if row.task.dependencies.contains(&on) {
            return;
        }
        row.task.dependencies.push(on);
        if !done {
            row.unmet += 1;
        }
        self.dependents.entry(on).or_default().push(task);
    }

    /// Applies dependencies added to a stored task by the shared rule
    /// ([`omoi_core::late_edges`]): the edges, then the move out of the ready queue or off the
    /// lease, with its event.
    pub(super) fn add_dependencies(&mut self, change: &AddedDependencies, now: DateTime<Utc>, events: &mut Vec<Event>) {
        if change.drops_lease() {
            self.drop_lease(change.task);
        }
        if let Some(row) = self.rows.get(&change.task)
            && change.leaves_ready_queue()
        {
            self.ready.remove(&key(&row.task));
        }
        for on in &change.added {
            self.add_dependency(change.task, *on);
        }
        if let Some(row) = self.rows.get_mut(&change.task) {
            if change.drops_lease() {
                row.task.attempts = row.task.attempts.saturating_sub(1);
            }
            row.task.state = change.to;
            row.task.updated_at = now;
        }
        events.push(change.event());
    }
}

impl InMemoryStore {
    /// Runs a task mutation and appends the events it produced, all under the lock.
    fn tasks_write<R>(
        &self,
        f: impl FnOnce(&mut Tasks, DateTime<Utc>, &mut Vec<Event>) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        self.write(|state: &mut State, now| {
            let mut events = Vec::new();
            let out = f(&mut state.tasks, now, &mut events)?;
            super::discoveries::resolve_completed(state, now, &mut events);
            for e in events {
                state.emit(now, e);
            }
            Ok(out)
        })
    }
}

#[async_trait]
impl TaskStore for InMemoryStore {
    async fn insert_tasks(&self, batch: Vec<NewTask>) -> Result<Vec<TaskId>, StoreError> {
        self.tasks_write(|tasks, now, events| {
            let states = tasks.validate(&batch)?;
            Ok(tasks.apply(batch, states, now, events))
        })
    }

    async fn claim(&self, request: &ClaimRequest) -> Result<Vec<ClaimedTask>, StoreError> {
        if request.limit == 0 {
            return Ok(Vec::new());
        }
        self.tasks_write(|tasks, now, events| Ok(tasks.claim(request, now, events)))
    }

    async fn renew_lease(&self, id: TaskId, token: FencingToken, ttl: Duration) -> Result<Lease, StoreError> {
        self.tasks_write(|tasks, now, _| {
            let row = tasks.fenced(id, token)?;
            let old = row.task.lease.expect("fenced row is leased");
            let lease = Lease { expires_at: add_duration(now, ttl), ..old };
            row.task.lease = Some(lease);
            tasks.leased.remove(&(old.expires_at, id));
            tasks.leased.insert((lease.expires_at, id));
            Ok(lease)
        })
    }

    async fn start(&self, id: TaskId, token: FencingToken) -> Result<(), StoreError> {
        self.tasks_write(|tasks, now, events| {
            let row = tasks.fenced(id, token)?;
            queue::step(&mut row.task, TaskEvent::Start, now)?;
            let holder = row.task.lease.map(|l| l.holder).expect("fenced row is leased");
            events.push(Event::TaskStarted { task_id: id, holder });
            Ok(())
        })
    }

    async fn complete(
        &self,
        id: TaskId,
        token: FencingToken,
        completion: Completion,
    ) -> Result<Vec<TaskId>, StoreError> {
        self.tasks_write(|tasks, now, events| tasks.complete(id, token, completion, now, events))
    }

    async fn complete_many(
        &self,
        items: Vec<(TaskId, FencingToken, Completion)>,
    ) -> Result<Vec<Result<Vec<TaskId>, StoreError>>, StoreError> {
        self.tasks_write(|tasks, now, events| {
            Ok(items.into_iter().map(|(id, token, c)| tasks.complete(id, token, c, now, events)).collect())
        })
    }

    async fn fail(&self, id: TaskId, token: FencingToken, failure: Failure) -> Result<FailOutcome, StoreError> {
        omoi_core::queue::check_failure(&failure)?;
        self.tasks_write(|tasks, now, events| {
            tasks.fenced(id, token)?;
            tasks.lose_attempt(id, AttemptLoss::Failed(failure), now, events)
        })
    }

    async fn release(&self, id: TaskId, token: FencingToken) -> Result<(), StoreError> {
        self.tasks_write(|tasks, now, events| {
            let row = tasks.row(id)?;
            let lease = queue::fenced(&row.task, token)?;
            events.push(queue::release(&mut row.task, lease, now)?);
            tasks.unindex_lease(id, lease);
            tasks.ready.insert(key(&tasks.rows[&id].task));
            Ok(())
        })
    }

    async fn cancel(&self, id: TaskId) -> Result<Vec<TaskId>, StoreError> {
        self.tasks_write(|tasks, now, events| {
            let row = tasks.row(id)?;
            let (was, queued, lease) = (row.task.state, key(&row.task), row.task.lease);
            events.push(queue::cancel(&mut row.task, now)?);
            if was == TaskState::Ready {
                tasks.ready.remove(&queued);
            }
            if let Some(lease) = lease {
                tasks.unindex_lease(id, lease);
            }
            tasks.free_dedup(id);
            tasks.block_dependents(id, now, events)
        })
    }

    async fn redrive(&self, id: TaskId) -> Result<Vec<TaskId>, StoreError> {
        self.tasks_write(|tasks, now, events| {
            let row = tasks.row(id)?;
            queue::check_redrive(&row.task)?;
            if let Some(k) = row.task.def.dedup_key.clone() {
                if let Some(holder) = tasks.dedup.get(&k) {
                    return Err(StoreError::DuplicateKey { key: k, existing: Some(*holder) });
                }
                tasks.dedup.insert(k, id);
            }
            events.push(queue::redrive(&mut tasks.row(id)?.task, now)?);
            tasks.ready.insert(key(&tasks.rows[&id].task));
            tasks.unblock_dependents(id, now, events)
        })
    }

    async fn reclaim_expired(&self) -> Result<Vec<TaskId>, StoreError> {
        self.tasks_write(|tasks, now, events| {
            let expired: Vec<TaskId> =
                tasks.leased.iter().take_while(|(at, _)| *at <= now).map(|(_, id)| *id).collect();
            tasks.reclaim(expired, now, events)
        })
    }

    async fn reclaim_holder(&self, holder: AgentId) -> Result<Vec<TaskId>, StoreError> {
        self.tasks_write(|tasks, now, events| {
            let held: Vec<TaskId> =
                tasks.leased.iter().map(|(_, id)| *id).filter(|id| tasks.holder_of(id) == Some(holder)).collect();
            tasks.reclaim(held, now, events)
        })
    }

    async fn get_task(&self, id: TaskId) -> Result<Task, StoreError> {
        self.read(|s, _| s.tasks.get(&id).cloned().ok_or_else(|| StoreError::not_found("task", id)))
    }

    async fn list_tasks(&self, filter: &TaskFilter) -> Result<Vec<Task>, StoreError> {
        self.read(|s, _| {
            let start = filter.after.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
            Ok(s.tasks
                .rows
                .range((start, std::ops::Bound::Unbounded))
                .map(|(_, r)| &r.task)
                .filter(|t| filter.matches(t))
                .take(filter.limit.unwrap_or(usize::MAX))
                .cloned()
                .collect())
        })
    }

    async fn dependents(&self, id: TaskId) -> Result<Vec<TaskId>, StoreError> {
        self.read(|s, _| {
            s.tasks.get(&id).ok_or_else(|| StoreError::not_found("task", id))?;
            Ok(s.tasks.dependents.get(&id).cloned().unwrap_or_default())
        })
    }

    async fn count_tasks(&self, spec_id: Option<SpecId>) -> Result<TaskCounts, StoreError> {
        self.read(|s, _| {
            let mut counts = TaskCounts::new();
            for r in s.tasks.rows.values() {
                if spec_id.is_none_or(|sp| r.task.links.spec_id == Some(sp)) {
                    *counts.entry(r.task.state).or_default() += 1;
                }
            }
            Ok(counts)
        })
    }

    async fn ready_count(&self) -> Result<u64, StoreError> {
        self.read(|s, now| Ok(s.tasks.ready.iter().filter(|(_, at, _)| *at <= now).count() as u64))
    }
}
