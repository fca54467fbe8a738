//! `TaskStore` for the SQLite adapter: the `tasks` table with its queue index, the `task_deps`
//! edges, and every state change in one write transaction with its events.
//!
//! The hot path (claim, complete) uses set-based statements: a claim is one candidate query in
//! queue order, one `UPDATE … RETURNING` and one event insert; `complete_many` reads the batch's
//! leases in one query and writes each completion, releasing dependents in the same transaction.
//! The rarer paths (fail, release, cancel, redrive, reclaim) load a row, change it through
//! [`TaskState::apply`] like the in-memory adapter does, and write it back.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use async_trait::async_trait;
use omoi_core::ports::clock::add_duration;
use omoi_core::queue::{self, AttemptLoss, LossOutcome, plan_batch};
use omoi_core::task::check_payload;
use omoi_core::{
    AgentId, ClaimRequest, ClaimedTask, Completion, Event, FailOutcome, Failure, FencingToken, Lease, NewTask, SpecId,
    StoreError, Task, TaskCounts, TaskEvent, TaskFilter, TaskId, TaskLinks, TaskState, TaskStore, Usage,
};
use sqlx::sqlite::SqliteRow;
use sqlx::{Sqlite, SqliteConnection};

use super::SqliteStore;
use super::codec::{
    from_json, get, get_json, get_parsed, get_parsed_opt, get_time, int, json, text_array, u32_of, uint, us,
};
use super::error::{corrupt, db, insert};
use super::write::Write;

/// The columns a [`Row`] is decoded from.
macro_rules! task_cols {
    () => {
        "id, state, run_at, def, deps, spec_id, ticket_id, parent_id, local_id, unmet, attempts, claims, \
         lease_holder, lease_token, lease_expires, result, last_error, usage_in, usage_out, usage_cost, \
         created_at, updated_at"
    };
}

/// A stored task with the bookkeeping the port does not show.
pub(super) struct Row {
    pub(super) task: Task,
    /// Dependencies not yet completed.
    unmet: i64,
    /// Claims so far: the source of fencing tokens.
    claims: i64,
}

fn decode(r: &SqliteRow) -> Result<Row, StoreError> {
    let lease = match get::<Option<i64>>(r, "lease_token")? {
        Some(token) => Some(Lease {
            holder: get_parsed(r, "lease_holder")?,
            token: FencingToken(uint("lease_token", token)?),
            expires_at: get_time(r, "lease_expires")?,
        }),
        None => None,
    };
    let result = get::<Option<String>>(r, "result")?.map(|s| from_json("result", &s)).transpose()?;
    let task = Task {
        id: get_parsed(r, "id")?,
        def: get_json(r, "def")?,
        links: TaskLinks {
            spec_id: get_parsed_opt(r, "spec_id")?,
            ticket_id: get_parsed_opt(r, "ticket_id")?,
            parent_id: get_parsed_opt(r, "parent_id")?,
            local_id: get(r, "local_id")?,
        },
        dependencies: get_json(r, "deps")?,
        state: get_parsed(r, "state")?,
        attempts: u32_of("attempts", get(r, "attempts")?)?,
        run_at: get_time(r, "run_at")?,
        lease,
        result,
        last_error: get(r, "last_error")?,
        usage: Usage {
            input_tokens: uint("usage_in", get(r, "usage_in")?)?,
            output_tokens: uint("usage_out", get(r, "usage_out")?)?,
            cost_usd: get(r, "usage_cost")?,
        },
        created_at: get_time(r, "created_at")?,
        updated_at: get_time(r, "updated_at")?,
    };
    Ok(Row { task, unmet: get(r, "unmet")?, claims: get(r, "claims")? })
}

/// Queue band: 0 = critical … 3 = low.
fn band(task: &NewTask) -> i64 {
    i64::from(3 - task.def.priority.rank())
}

/// Moves `row` through `event` at `now`.
fn step(row: &mut Row, event: TaskEvent, now: chrono::DateTime<chrono::Utc>) -> Result<TaskState, StoreError> {
    let next = row.task.state.apply(event).map_err(|e| StoreError::transition("task", row.task.id, e))?;
    row.task.state = next;
    row.task.updated_at = now;
    Ok(next)
}

/// The row if `token` is its current lease, else `StaleLease`.
fn fenced(row: &Row, token: FencingToken) -> Result<Lease, StoreError> {
    match row.task.lease {
        Some(l) if l.token == token && row.task.state.is_leased() => Ok(l),
        _ => Err(StoreError::StaleLease { task: row.task.id, presented: token }),
    }
}

async fn load_opt(conn: &mut SqliteConnection, id: TaskId) -> Result<Option<Row>, StoreError> {
    let row = sqlx::query(concat!("SELECT ", task_cols!(), " FROM tasks WHERE id = ?1"))
        .bind(id.to_string())
        .fetch_optional(conn)
        .await
        .map_err(db)?;
    row.as_ref().map(decode).transpose()
}

async fn load(conn: &mut SqliteConnection, id: TaskId) -> Result<Row, StoreError> {
    load_opt(conn, id).await?.ok_or_else(|| StoreError::not_found("task", id))
}

/// Writes back every mutable column of `row`.
async fn save(conn: &mut SqliteConnection, row: &Row) -> Result<(), StoreError> {
    let t = &row.task;
    let result = t.result.as_ref().map(json).transpose()?;
    sqlx::query(
        "UPDATE tasks SET state = ?2, run_at = ?3, unmet = ?4, attempts = ?5, claims = ?6, lease_holder = ?7, \
         lease_token = ?8, lease_expires = ?9, result = ?10, last_error = ?11, usage_in = ?12, usage_out = ?13, \
         usage_cost = ?14, updated_at = ?15 WHERE id = ?1",
    )
    .bind(t.id.to_string())
    .bind(t.state.as_str())
    .bind(us(t.run_at))
    .bind(row.unmet)
    .bind(i64::from(t.attempts))
    .bind(row.claims)
    .bind(t.lease.map(|l| l.holder.to_string()))
    .bind(t.lease.map(|l| int("fencing token", l.token.0)).transpose()?)
    .bind(t.lease.map(|l| us(l.expires_at)))
    .bind(result)
    .bind(t.last_error.as_deref())
    .bind(int("input tokens", t.usage.input_tokens)?)
    .bind(int("output tokens", t.usage.output_tokens)?)
    .bind(t.usage.cost_usd)
    .bind(us(t.updated_at))
    .execute(conn)
    .await
    .map_err(db)?;
    Ok(())
}

/// States of the stored tasks among `ids`.
async fn states_of(
    conn: &mut SqliteConnection,
    ids: impl IntoIterator<Item = TaskId>,
) -> Result<HashMap<TaskId, TaskState>, StoreError> {
    let rows = sqlx::query("SELECT id, state FROM tasks WHERE id IN (SELECT value FROM json_each(?1))")
        .bind(text_array(ids))
        .fetch_all(conn)
        .await
        .map_err(db)?;
    rows.iter().map(|r| Ok((get_parsed(r, "id")?, get_parsed(r, "state")?))).collect()
}

/// One task, read inside a transaction (discovery branching).
pub(super) async fn get_in(conn: &mut SqliteConnection, id: TaskId) -> Result<Task, StoreError> {
    load(conn, id).await.map(|r| r.task)
}

/// Tasks depending directly on `id`, in insertion order.
pub(super) async fn dependents_of<'e, E>(exec: E, id: TaskId) -> Result<Vec<TaskId>, StoreError>
where
    E: sqlx::Executor<'e, Database = Sqlite>,
{
    let rows: Vec<String> = sqlx::query_scalar("SELECT task_id FROM task_deps WHERE dep_id = ?1 ORDER BY rowid")
        .bind(id.to_string())
        .fetch_all(exec)
        .await
        .map_err(db)?;
    rows.iter().map(|s| super::codec::parse("task_id", s)).collect()
}

/// Validates and inserts a batch (see [`TaskStore::insert_tasks`]); used by sync too.
pub(super) async fn insert_batch(w: &mut Write, batch: Vec<NewTask>) -> Result<Vec<TaskId>, StoreError> {
    let referenced = batch.iter().flat_map(|t| std::iter::once(t.id).chain(t.dependencies.iter().copied()));
    let existing = states_of(w.conn(), referenced).await?;
    let states = plan_batch(&batch, |id| existing.get(id).copied())?;
    let keys: Vec<&str> = batch.iter().filter_map(|t| t.def.dedup_key.as_deref()).collect();
    if !keys.is_empty() {
        let held = sqlx::query(
            "SELECT dedup_key, id FROM tasks WHERE dedup_key IN (SELECT value FROM json_each(?1)) \
             AND state NOT IN ('completed', 'failed', 'cancelled')",
        )
        .bind(text_array(&keys))
        .fetch_all(w.conn())
        .await
        .map_err(db)?;
        let held: HashMap<String, String> =
            held.iter().map(|r| Ok((get(r, "dedup_key")?, get(r, "id")?))).collect::<Result<_, StoreError>>()?;
        for key in keys {
            if let Some(holder) = held.get(key) {
                let existing = Some(super::codec::parse("task id", holder)?);
                return Err(StoreError::DuplicateKey { key: key.to_owned(), existing });
            }
        }
    }
    let now = us(w.now);
    let mut ids = Vec::with_capacity(batch.len());
    for (new, state) in batch.into_iter().zip(states) {
        let unmet = new.dependencies.iter().filter(|d| existing.get(d) != Some(&TaskState::Completed)).count();
        let caps = if new.def.capabilities.is_empty() { None } else { Some(json(&new.def.capabilities)?) };
        let deps = json(&new.dependencies)?;
        let run_at = new.run_at.map_or(now, us);
        sqlx::query(
            "INSERT INTO tasks (id, state, band, run_at, def, caps, conc_key, conc_limit, dedup_key, spec_id, \
             ticket_id, parent_id, local_id, deps, unmet, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?16)",
        )
        .bind(new.id.to_string())
        .bind(state.as_str())
        .bind(band(&new))
        .bind(run_at)
        .bind(json(&new.def)?)
        .bind(caps)
        .bind(new.def.concurrency.as_ref().map(|c| c.key.as_str()))
        .bind(new.def.concurrency.as_ref().map(|c| i64::from(c.limit)))
        .bind(new.def.dedup_key.as_deref())
        .bind(new.links.spec_id.map(|i| i.to_string()))
        .bind(new.links.ticket_id.map(|i| i.to_string()))
        .bind(new.links.parent_id.map(|i| i.to_string()))
        .bind(new.links.local_id.as_deref())
        .bind(&deps)
        .bind(unmet as i64)
        .bind(now)
        .execute(w.conn())
        .await
        .map_err(insert("task", new.id))?;
        if !new.dependencies.is_empty() {
            sqlx::query("INSERT INTO task_deps (task_id, dep_id) SELECT ?1, value FROM json_each(?2) ORDER BY key")
                .bind(new.id.to_string())
                .bind(&deps)
                .execute(w.conn())
                .await
                .map_err(db)?;
        }
        w.emit(Event::TaskCreated { task_id: new.id, state, spec_id: new.links.spec_id });
        ids.push(new.id);
    }
    Ok(ids)
}

/// First page of claim candidates: ready, due, capabilities covered by `?2`, in queue order.
const CANDIDATES: &str = "SELECT id, band, run_at, conc_key, conc_limit FROM tasks \
     WHERE state = 'ready' AND run_at <= ?1 \
     AND (caps IS NULL OR NOT EXISTS (SELECT 1 FROM json_each(tasks.caps) AS c \
          WHERE c.value NOT IN (SELECT value FROM json_each(?2)))) \
     ORDER BY band, run_at, id LIMIT ?3";

/// Later pages, after the last candidate seen (`?4`, `?5`, `?6`).
const MORE_CANDIDATES: &str = "SELECT id, band, run_at, conc_key, conc_limit FROM tasks \
     WHERE state = 'ready' AND run_at <= ?1 AND (band, run_at, id) > (?4, ?5, ?6) \
     AND (caps IS NULL OR NOT EXISTS (SELECT 1 FROM json_each(tasks.caps) AS c \
          WHERE c.value NOT IN (SELECT value FROM json_each(?2)))) \
     ORDER BY band, run_at, id LIMIT ?3";

/// Every claim candidate in aged queue order ([`queue::aged_band`]; `?4` is the aging cutoff).
/// Used only while some ready task has aged: it sorts all due ready tasks.
const AGED_CANDIDATES: &str = "SELECT id, band - (CASE WHEN band > 0 AND run_at <= ?4 THEN 1 ELSE 0 END) AS band, \
     run_at, conc_key, conc_limit FROM tasks \
     WHERE state = 'ready' AND run_at <= ?1 \
     AND (caps IS NULL OR NOT EXISTS (SELECT 1 FROM json_each(tasks.caps) AS c \
          WHERE c.value NOT IN (SELECT value FROM json_each(?2)))) \
     ORDER BY 2, run_at, id LIMIT ?3";

async fn claim(w: &mut Write, req: &ClaimRequest) -> Result<Vec<ClaimedTask>, StoreError> {
    let mut claimed =
        TaskState::Ready.apply(TaskEvent::Claim).map_err(|e| StoreError::transition("task", "queue", e))?;
    if req.start {
        claimed = claimed.apply(TaskEvent::Start).map_err(|e| StoreError::transition("task", "queue", e))?;
    }
    let caps = json(&req.capabilities)?;
    let now = us(w.now);
    let mut page = i64::try_from(req.limit.clamp(16, 1024)).unwrap_or(1024);
    let cutoff = queue::aging_cutoff(w.now, req.aging_after).map(us);
    let aged = match cutoff {
        Some(c) => sqlx::query_scalar::<_, bool>(
            "SELECT EXISTS (SELECT 1 FROM tasks WHERE state = 'ready' AND band IN (1, 2, 3) AND run_at <= ?1)",
        )
        .bind(c)
        .fetch_one(w.conn())
        .await
        .map_err(db)?,
        None => false,
    };
    if aged {
        page = i64::MAX;
    }
    let mut chosen: Vec<String> = Vec::new();
    // Concurrency key → tasks leased with it, counting this claim's picks.
    let mut leased_per_key: HashMap<String, i64> = HashMap::new();
    let mut last: Option<(i64, i64, String)> = None;
    'pages: loop {
        let q = match &last {
            None if aged => sqlx::query(AGED_CANDIDATES).bind(now).bind(&caps).bind(-1i64).bind(cutoff),
            None => sqlx::query(CANDIDATES).bind(now).bind(&caps).bind(page),
            Some((b, r, id)) => {
                sqlx::query(MORE_CANDIDATES).bind(now).bind(&caps).bind(page).bind(*b).bind(*r).bind(id.clone())
            }
        };
        let rows = q.fetch_all(w.conn()).await.map_err(db)?;
        let n = rows.len();
        for r in &rows {
            let id: String = get(r, "id")?;
            if let Some(key) = get::<Option<String>>(r, "conc_key")? {
                let limit: i64 = get::<Option<i64>>(r, "conc_limit")?.unwrap_or(i64::MAX);
                let held = match leased_per_key.get(&key) {
                    Some(n) => *n,
                    None => sqlx::query_scalar(
                        "SELECT COUNT(*) FROM tasks WHERE conc_key = ?1 AND state IN ('claimed', 'running')",
                    )
                    .bind(&key)
                    .fetch_one(w.conn())
                    .await
                    .map_err(db)?,
                };
                if held >= limit {
                    leased_per_key.insert(key, held);
                    continue;
                }
                leased_per_key.insert(key, held + 1);
            }
            chosen.push(id);
            if chosen.len() >= req.limit {
                break 'pages;
            }
        }
        if (n as i64) < page {
            break;
        }
        let r = &rows[n - 1];
        last = Some((get(r, "band")?, get(r, "run_at")?, get(r, "id")?));
    }
    if chosen.is_empty() {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(concat!(
        "UPDATE tasks SET state = ?1, attempts = attempts + 1, claims = claims + 1, lease_holder = ?2, \
         lease_token = claims + 1, lease_expires = ?3, updated_at = ?4 \
         WHERE id IN (SELECT value FROM json_each(?5)) AND state = 'ready' RETURNING ",
        task_cols!()
    ))
    .bind(claimed.as_str())
    .bind(req.holder.to_string())
    .bind(us(add_duration(w.now, req.lease_ttl)))
    .bind(now)
    .bind(text_array(&chosen))
    .fetch_all(w.conn())
    .await
    .map_err(db)?;
    let mut by_id: HashMap<String, Task> = HashMap::with_capacity(rows.len());
    let mut quarantined = Vec::new();
    for r in &rows {
        match decode(r) {
            Ok(row) => {
                by_id.insert(row.task.id.to_string(), row.task);
            }
            // One unreadable row never fails the claim: it is dead-lettered in this transaction.
            Err(e) => {
                let id: String = get(r, "id")?;
                quarantine(w, &id, &e.to_string()).await?;
                quarantined.push(id);
            }
        }
    }
    let mut out = Vec::with_capacity(chosen.len());
    for id in chosen {
        if quarantined.contains(&id) {
            continue;
        }
        let task = by_id.remove(&id).ok_or_else(|| corrupt("claim", format!("task {id} vanished while claimed")))?;
        let lease = task.lease.ok_or_else(|| corrupt("claim", format!("task {id} has no lease after claim")))?;
        w.emit(Event::TaskClaimed {
            task_id: task.id,
            holder: lease.holder,
            token: lease.token,
            attempt: task.attempts,
        });
        if req.start {
            w.emit(Event::TaskStarted { task_id: task.id, holder: lease.holder });
        }
        out.push(ClaimedTask { task, lease });
    }
    Ok(out)
}

/// What `complete_many` knows of a task while it goes through the batch.
struct Leased {
    state: TaskState,
    lease: Option<Lease>,
}

async fn complete_many(
    w: &mut Write,
    items: Vec<(TaskId, FencingToken, Completion)>,
) -> Result<Vec<Result<Vec<TaskId>, StoreError>>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, state, lease_holder, lease_token, lease_expires FROM tasks \
         WHERE id IN (SELECT value FROM json_each(?1))",
    )
    .bind(text_array(items.iter().map(|i| i.0)))
    .fetch_all(w.conn())
    .await
    .map_err(db)?;
    let mut known: HashMap<TaskId, Leased> = HashMap::with_capacity(rows.len());
    for r in &rows {
        let lease = match get::<Option<i64>>(r, "lease_token")? {
            Some(t) => Some(Lease {
                holder: get_parsed(r, "lease_holder")?,
                token: FencingToken(uint("lease_token", t)?),
                expires_at: get_time(r, "lease_expires")?,
            }),
            None => None,
        };
        known.insert(get_parsed(r, "id")?, Leased { state: get_parsed(r, "state")?, lease });
    }
    // Check every item first (fencing, payload, transition), in order, so the writes below
    // cannot fail halfway for a reason of one item.
    let mut results: Vec<Result<Vec<TaskId>, StoreError>> = Vec::with_capacity(items.len());
    let mut accepted: Vec<(usize, TaskId, AgentId, TaskState, Completion)> = Vec::new();
    for (i, (id, token, completion)) in items.into_iter().enumerate() {
        let check = (|| {
            let t = known.get_mut(&id).ok_or_else(|| StoreError::not_found("task", id))?;
            let lease = match t.lease {
                Some(l) if l.token == token && t.state.is_leased() => l,
                _ => return Err(StoreError::StaleLease { task: id, presented: token }),
            };
            check_payload("result", &completion.result).map_err(StoreError::InvalidInput)?;
            let next = t.state.apply(TaskEvent::Complete).map_err(|e| StoreError::transition("task", id, e))?;
            t.state = next;
            t.lease = None;
            Ok((lease.holder, next))
        })();
        match check {
            Ok((holder, next)) => {
                accepted.push((i, id, holder, next, completion));
                results.push(Ok(Vec::new()));
            }
            Err(e) => results.push(Err(e)),
        }
    }
    if accepted.is_empty() {
        return Ok(results);
    }
    let edges = sqlx::query(
        "SELECT dep_id, task_id FROM task_deps WHERE dep_id IN (SELECT value FROM json_each(?1)) ORDER BY rowid",
    )
    .bind(text_array(accepted.iter().map(|a| a.1)))
    .fetch_all(w.conn())
    .await
    .map_err(db)?;
    let mut dependents: HashMap<String, Vec<String>> = HashMap::new();
    for r in &edges {
        dependents.entry(get(r, "dep_id")?).or_default().push(get(r, "task_id")?);
    }
    let now = us(w.now);
    // One statement for the whole batch: each item's new state, result and usage as JSON.
    let mut updates = Vec::with_capacity(accepted.len());
    for (_, id, _, next, completion) in &accepted {
        updates.push(serde_json::json!({
            "id": id.to_string(),
            "s": next.as_str(),
            "r": completion.result,
            "i": int("input tokens", completion.usage.input_tokens)?,
            "o": int("output tokens", completion.usage.output_tokens)?,
            "c": completion.usage.cost_usd,
        }));
    }
    sqlx::query(
        "UPDATE tasks SET state = j.value ->> '$.s', result = j.value -> '$.r', \
         usage_in = usage_in + (j.value ->> '$.i'), usage_out = usage_out + (j.value ->> '$.o'), \
         usage_cost = usage_cost + (j.value ->> '$.c'), lease_holder = NULL, lease_token = NULL, \
         lease_expires = NULL, updated_at = ?1 FROM json_each(?2) AS j WHERE tasks.id = j.value ->> '$.id'",
    )
    .bind(now)
    .bind(json(&updates)?)
    .execute(w.conn())
    .await
    .map_err(db)?;
    for (i, id, holder, _, _) in accepted {
        w.emit(Event::TaskCompleted { task_id: id, holder });
        let mut released = Vec::new();
        for d in dependents.remove(&id.to_string()).unwrap_or_default() {
            let row = sqlx::query("UPDATE tasks SET unmet = MAX(unmet - 1, 0) WHERE id = ?1 RETURNING state, unmet")
                .bind(&d)
                .fetch_optional(w.conn())
                .await
                .map_err(db)?;
            let Some(row) = row else { continue };
            let (state, unmet): (TaskState, i64) = (get_parsed(&row, "state")?, get(&row, "unmet")?);
            if unmet == 0 && state == TaskState::Waiting {
                let dep_id: TaskId = super::codec::parse("task id", &d)?;
                let ready =
                    state.apply(TaskEvent::DependenciesMet).map_err(|e| StoreError::transition("task", dep_id, e))?;
                sqlx::query("UPDATE tasks SET state = ?2, updated_at = ?3 WHERE id = ?1")
                    .bind(&d)
                    .bind(ready.as_str())
                    .bind(now)
                    .execute(w.conn())
                    .await
                    .map_err(db)?;
                w.emit(Event::TaskReady { task_id: dep_id });
                released.push(dep_id);
            }
        }
        results[i] = Ok(released);
    }
    Ok(results)
}

/// A lost attempt, by the shared rule [`queue::lose_attempt`].
async fn lose_attempt(w: &mut Write, mut row: Row, loss: AttemptLoss) -> Result<FailOutcome, StoreError> {
    let id = row.task.id;
    let (outcome, event) = queue::lose_attempt(&mut row.task, loss, w.now)?;
    save(w.conn(), &row).await?;
    w.emit(event);
    Ok(match outcome {
        LossOutcome::Retrying { run_at } => FailOutcome::Retrying { run_at },
        LossOutcome::DeadLettered => FailOutcome::DeadLettered { blocked: block_dependents(w, id).await? },
    })
}

/// Blocks every transitive dependent still waiting on `root`.
async fn block_dependents(w: &mut Write, root: TaskId) -> Result<Vec<TaskId>, StoreError> {
    let now = w.now;
    let mut blocked = Vec::new();
    let mut queue = VecDeque::from([root]);
    while let Some(cause) = queue.pop_front() {
        for d in dependents_of(&mut *w.conn(), cause).await? {
            let mut row = load(w.conn(), d).await?;
            if row.task.state == TaskState::Waiting {
                step(&mut row, TaskEvent::DependencyFailed, now)?;
                save(w.conn(), &row).await?;
                w.emit(Event::TaskBlocked { task_id: d, blocked_by: cause });
                blocked.push(d);
                queue.push_back(d);
            }
        }
    }
    Ok(blocked)
}

/// Lets blocked dependents of `root` wait again where no dependency still blocks them.
async fn unblock_dependents(w: &mut Write, root: TaskId) -> Result<Vec<TaskId>, StoreError> {
    let now = w.now;
    let mut unblocked = Vec::new();
    let mut queue = VecDeque::from([root]);
    while let Some(cause) = queue.pop_front() {
        for d in dependents_of(&mut *w.conn(), cause).await? {
            let Some(mut row) = load_opt(w.conn(), d).await? else { continue };
            if row.task.state != TaskState::Blocked {
                continue;
            }
            let deps = states_of(w.conn(), row.task.dependencies.iter().copied()).await?;
            let still_blocked =
                deps.values().any(|s| matches!(s, TaskState::Failed | TaskState::Cancelled | TaskState::Blocked));
            if still_blocked {
                continue;
            }
            row.unmet =
                row.task.dependencies.iter().filter(|x| deps.get(x) != Some(&TaskState::Completed)).count() as i64;
            step(&mut row, TaskEvent::DependencyRestored, now)?;
            save(w.conn(), &row).await?;
            w.emit(Event::TaskUnblocked { task_id: d });
            unblocked.push(d);
            queue.push_back(d);
        }
    }
    Ok(unblocked)
}

/// Takes back the leases of `ids` as lost attempts; unreadable rows are quarantined.
async fn reclaim(w: &mut Write, ids: Vec<TaskId>) -> Result<Vec<TaskId>, StoreError> {
    for &id in &ids {
        let raw = sqlx::query(concat!("SELECT ", task_cols!(), " FROM tasks WHERE id = ?1"))
            .bind(id.to_string())
            .fetch_optional(w.conn())
            .await
            .map_err(db)?;
        let Some(raw) = raw else { continue };
        match decode(&raw) {
            Ok(row) => {
                lose_attempt(w, row, AttemptLoss::LeaseLost).await?;
            }
            Err(e) => quarantine(w, &id.to_string(), &e.to_string()).await?,
        }
    }
    Ok(ids)
}

/// Dead-letters a row that cannot be decoded (written by something other than this adapter),
/// with `reason` as its error, and blocks its dependents: one bad row never stops a claim or a
/// sweep. Touches only columns that need no decoding.
async fn quarantine(w: &mut Write, id: &str, reason: &str) -> Result<(), StoreError> {
    let error = omoi_core::validate::clean_error(&format!("quarantined: the stored row cannot be read: {reason}"));
    tracing::warn!(task = %id, %error, "quarantining an unreadable task row");
    let attempts: Option<i64> = sqlx::query_scalar(
        "UPDATE tasks SET state = 'failed', lease_holder = NULL, lease_token = NULL, lease_expires = NULL, \
         last_error = ?2, updated_at = ?3 WHERE id = ?1 RETURNING attempts",
    )
    .bind(id)
    .bind(&error)
    .bind(us(w.now))
    .fetch_optional(w.conn())
    .await
    .map_err(db)?;
    let (Some(attempts), Ok(task_id)) = (attempts, super::codec::parse::<TaskId>("task id", id)) else {
        return Ok(());
    };
    w.emit(Event::TaskFailed { task_id, attempts: u32::try_from(attempts).unwrap_or(0), error });
    block_dependents(w, task_id).await?;
    Ok(())
}

fn parse_ids(rows: Vec<String>) -> Result<Vec<TaskId>, StoreError> {
    rows.iter().map(|s| super::codec::parse("task id", s)).collect()
}

#[async_trait]
impl TaskStore for SqliteStore {
    #[tracing::instrument(level = "debug", name = "sqlite.insert_tasks", skip_all, fields(n = batch.len()))]
    async fn insert_tasks(&self, batch: Vec<NewTask>) -> Result<Vec<TaskId>, StoreError> {
        let mut w = self.begin().await?;
        let ids = insert_batch(&mut w, batch).await?;
        self.commit(w).await?;
        Ok(ids)
    }

    #[tracing::instrument(level = "debug", name = "sqlite.claim", skip_all, fields(holder = %request.holder, limit = request.limit))]
    async fn claim(&self, request: &ClaimRequest) -> Result<Vec<ClaimedTask>, StoreError> {
        if request.limit == 0 {
            return Ok(Vec::new());
        }
        let mut w = self.begin().await?;
        let out = claim(&mut w, request).await?;
        self.commit(w).await?;
        Ok(out)
    }

    #[tracing::instrument(level = "debug", name = "sqlite.renew_lease", skip(self))]
    async fn renew_lease(&self, id: TaskId, token: FencingToken, ttl: Duration) -> Result<Lease, StoreError> {
        let mut w = self.begin().await?;
        let row = load(w.conn(), id).await?;
        let old = fenced(&row, token)?;
        let lease = Lease { expires_at: add_duration(w.now, ttl), ..old };
        sqlx::query("UPDATE tasks SET lease_expires = ?2 WHERE id = ?1")
            .bind(id.to_string())
            .bind(us(lease.expires_at))
            .execute(w.conn())
            .await
            .map_err(db)?;
        self.commit(w).await?;
        Ok(Lease { expires_at: super::codec::truncate(lease.expires_at), ..lease })
    }

    #[tracing::instrument(level = "debug", name = "sqlite.start", skip(self))]
    async fn start(&self, id: TaskId, token: FencingToken) -> Result<(), StoreError> {
        let mut w = self.begin().await?;
        let mut row = load(w.conn(), id).await?;
        let lease = fenced(&row, token)?;
        step(&mut row, TaskEvent::Start, w.now)?;
        save(w.conn(), &row).await?;
        w.emit(Event::TaskStarted { task_id: id, holder: lease.holder });
        self.commit(w).await?;
        Ok(())
    }

    #[tracing::instrument(level = "debug", name = "sqlite.complete", skip(self, completion))]
    async fn complete(
        &self,
        id: TaskId,
        token: FencingToken,
        completion: Completion,
    ) -> Result<Vec<TaskId>, StoreError> {
        let mut w = self.begin().await?;
        let out = complete_many(&mut w, vec![(id, token, completion)]).await?.pop().unwrap_or(Ok(Vec::new()));
        if out.is_ok() {
            super::discoveries::resolve_completed(&mut w, &[id]).await?;
            self.commit(w).await?;
        }
        out
    }

    #[tracing::instrument(level = "debug", name = "sqlite.complete_many", skip_all, fields(n = items.len()))]
    async fn complete_many(
        &self,
        items: Vec<(TaskId, FencingToken, Completion)>,
    ) -> Result<Vec<Result<Vec<TaskId>, StoreError>>, StoreError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let mut w = self.begin().await?;
        let ids: Vec<TaskId> = items.iter().map(|i| i.0).collect();
        let out = complete_many(&mut w, items).await?;
        let done: Vec<TaskId> = ids.into_iter().zip(&out).filter(|(_, r)| r.is_ok()).map(|(id, _)| id).collect();
        super::discoveries::resolve_completed(&mut w, &done).await?;
        self.commit(w).await?;
        Ok(out)
    }

    #[tracing::instrument(level = "debug", name = "sqlite.fail", skip(self, failure))]
    async fn fail(&self, id: TaskId, token: FencingToken, failure: Failure) -> Result<FailOutcome, StoreError> {
        queue::check_failure(&failure)?;
        let mut w = self.begin().await?;
        let row = load(w.conn(), id).await?;
        fenced(&row, token)?;
        let out = lose_attempt(&mut w, row, AttemptLoss::Failed(failure)).await?;
        self.commit(w).await?;
        Ok(out)
    }

    #[tracing::instrument(level = "debug", name = "sqlite.release", skip(self))]
    async fn release(&self, id: TaskId, token: FencingToken) -> Result<(), StoreError> {
        let mut w = self.begin().await?;
        let mut row = load(w.conn(), id).await?;
        let lease = fenced(&row, token)?;
        step(&mut row, TaskEvent::Release, w.now)?;
        row.task.lease = None;
        row.task.attempts = row.task.attempts.saturating_sub(1);
        row.task.run_at = w.now;
        save(w.conn(), &row).await?;
        w.emit(Event::TaskReleased { task_id: id, holder: lease.holder });
        self.commit(w).await?;
        Ok(())
    }

    #[tracing::instrument(level = "debug", name = "sqlite.cancel", skip(self))]
    async fn cancel(&self, id: TaskId) -> Result<Vec<TaskId>, StoreError> {
        let mut w = self.begin().await?;
        let mut row = load(w.conn(), id).await?;
        step(&mut row, TaskEvent::Cancel, w.now)?;
        row.task.lease = None;
        save(w.conn(), &row).await?;
        w.emit(Event::TaskCancelled { task_id: id });
        let blocked = block_dependents(&mut w, id).await?;
        self.commit(w).await?;
        Ok(blocked)
    }

    #[tracing::instrument(level = "debug", name = "sqlite.redrive", skip(self))]
    async fn redrive(&self, id: TaskId) -> Result<Vec<TaskId>, StoreError> {
        let mut w = self.begin().await?;
        let mut row = load(w.conn(), id).await?;
        row.task.state.apply(TaskEvent::Redrive).map_err(|e| StoreError::transition("task", id, e))?;
        if let Some(key) = row.task.def.dedup_key.clone() {
            let holder: Option<String> = sqlx::query_scalar(
                "SELECT id FROM tasks WHERE dedup_key = ?1 AND id != ?2 \
                 AND state NOT IN ('completed', 'failed', 'cancelled')",
            )
            .bind(&key)
            .bind(id.to_string())
            .fetch_optional(w.conn())
            .await
            .map_err(db)?;
            if let Some(h) = holder {
                return Err(StoreError::DuplicateKey { key, existing: Some(super::codec::parse("task id", &h)?) });
            }
        }
        step(&mut row, TaskEvent::Redrive, w.now)?;
        row.task.attempts = 0;
        row.task.run_at = w.now;
        save(w.conn(), &row).await?;
        w.emit(Event::TaskRedriven { task_id: id });
        let unblocked = unblock_dependents(&mut w, id).await?;
        self.commit(w).await?;
        Ok(unblocked)
    }

    #[tracing::instrument(level = "debug", name = "sqlite.reclaim_expired", skip(self))]
    async fn reclaim_expired(&self) -> Result<Vec<TaskId>, StoreError> {
        let mut w = self.begin().await?;
        let expired: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM tasks WHERE lease_expires IS NOT NULL AND lease_expires <= ?1 ORDER BY lease_expires, id",
        )
        .bind(us(w.now))
        .fetch_all(w.conn())
        .await
        .map_err(db)?;
        if expired.is_empty() {
            return Ok(Vec::new());
        }
        let out = reclaim(&mut w, parse_ids(expired)?).await?;
        self.commit(w).await?;
        Ok(out)
    }

    #[tracing::instrument(level = "debug", name = "sqlite.reclaim_holder", skip(self))]
    async fn reclaim_holder(&self, holder: AgentId) -> Result<Vec<TaskId>, StoreError> {
        let mut w = self.begin().await?;
        let held: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM tasks WHERE lease_holder = ?1 AND lease_expires IS NOT NULL ORDER BY lease_expires, id",
        )
        .bind(holder.to_string())
        .fetch_all(w.conn())
        .await
        .map_err(db)?;
        if held.is_empty() {
            return Ok(Vec::new());
        }
        let out = reclaim(&mut w, parse_ids(held)?).await?;
        self.commit(w).await?;
        Ok(out)
    }

    #[tracing::instrument(level = "debug", name = "sqlite.get_task", skip(self))]
    async fn get_task(&self, id: TaskId) -> Result<Task, StoreError> {
        let mut conn = self.readers().acquire().await.map_err(db)?;
        Ok(load(&mut conn, id).await?.task)
    }

    #[tracing::instrument(level = "debug", name = "sqlite.list_tasks", skip(self))]
    async fn list_tasks(&self, filter: &TaskFilter) -> Result<Vec<Task>, StoreError> {
        let states = (!filter.states.is_empty()).then(|| text_array(filter.states.iter()));
        let limit = filter.limit.map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX));
        let rows = sqlx::query(concat!(
            "SELECT ",
            task_cols!(),
            " FROM tasks WHERE (?1 IS NULL OR state IN (SELECT value FROM json_each(?1))) \
             AND (?2 IS NULL OR spec_id = ?2) AND (?3 IS NULL OR ticket_id = ?3) \
             AND (?4 IS NULL OR parent_id = ?4) AND (?5 IS NULL OR id > ?5) ORDER BY id LIMIT ?6"
        ))
        .bind(states)
        .bind(filter.spec_id.map(|i| i.to_string()))
        .bind(filter.ticket_id.map(|i| i.to_string()))
        .bind(filter.parent_id.map(|i| i.to_string()))
        .bind(filter.after.map(|i| i.to_string()))
        .bind(limit)
        .fetch_all(self.readers())
        .await
        .map_err(db)?;
        rows.iter().map(|r| decode(r).map(|row| row.task)).collect()
    }

    #[tracing::instrument(level = "debug", name = "sqlite.dependents", skip(self))]
    async fn dependents(&self, id: TaskId) -> Result<Vec<TaskId>, StoreError> {
        let mut conn = self.readers().acquire().await.map_err(db)?;
        let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM tasks WHERE id = ?1")
            .bind(id.to_string())
            .fetch_optional(&mut *conn)
            .await
            .map_err(db)?;
        if exists.is_none() {
            return Err(StoreError::not_found("task", id));
        }
        dependents_of(&mut *conn, id).await
    }

    #[tracing::instrument(level = "debug", name = "sqlite.count_tasks", skip(self))]
    async fn count_tasks(&self, spec_id: Option<SpecId>) -> Result<TaskCounts, StoreError> {
        let rows =
            sqlx::query("SELECT state, COUNT(*) AS n FROM tasks WHERE (?1 IS NULL OR spec_id = ?1) GROUP BY state")
                .bind(spec_id.map(|s| s.to_string()))
                .fetch_all(self.readers())
                .await
                .map_err(db)?;
        rows.iter().map(|r| Ok((get_parsed(r, "state")?, uint("count", get(r, "n")?)?))).collect()
    }

    #[tracing::instrument(level = "debug", name = "sqlite.ready_count", skip(self))]
    async fn ready_count(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tasks WHERE state = 'ready' AND run_at <= ?1")
            .bind(us(self.now()))
            .fetch_one(self.readers())
            .await
            .map_err(db)?;
        uint("count", n)
    }
}
