//! Claiming in queue order (with aging and concurrency keys) and taking leases back (expired,
//! or a failed holder's). An unreadable row is quarantined, never returned as an error.

use std::collections::HashMap;

use omoi_core::ports::clock::add_duration;
use omoi_core::queue::{self, AttemptLoss};
use omoi_core::{ClaimRequest, ClaimedTask, Event, StoreError, Task, TaskEvent, TaskId, TaskState};

use super::cascade::{lose_attempt, quarantine};
use super::rows::decode;
use crate::sqlite::codec::{get, json, text_array, us};
use crate::sqlite::error::{corrupt, db};
use crate::sqlite::write::Write;

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

pub(super) async fn claim(w: &mut Write, req: &ClaimRequest) -> Result<Vec<ClaimedTask>, StoreError> {
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

/// Takes back the leases of `ids` as lost attempts; unreadable rows are quarantined.
pub(super) async fn reclaim(w: &mut Write, ids: Vec<TaskId>) -> Result<Vec<TaskId>, StoreError> {
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
