//! What spreads from one task to its dependents (blocking, unblocking) and what a lost attempt
//! or an unreadable row does to the task itself.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use omoi_core::queue::{self, AttemptLoss, LossOutcome};
use omoi_core::{Event, FailOutcome, StoreError, Task, TaskId, TaskState};
use tracing::warn;
use uuid::Uuid;

use super::{Tx, save, task_ids, uuids};
use crate::postgres::error::db;
use crate::postgres::rows::{self, get, parse};

/// Blocks every transitive dependent still waiting on `root`, walking them with
/// [`queue::Cascade`]. The rule of [`queue::block_dependent`] (only a `waiting` dependent
/// becomes `blocked`, with one `task.blocked` event) runs here in SQL, one `UPDATE` per cause;
/// the conformance scenarios `cancel_cascades_blocked_to_transitive_dependents` and
/// `exhausted_attempts_dead_letter_the_task_and_block_its_dependents` pin both to the same result.
pub(super) async fn block_dependents(
    tx: &mut Tx,
    root: TaskId,
    now: DateTime<Utc>,
    events: &mut Vec<Event>,
) -> Result<Vec<TaskId>, StoreError> {
    let mut walk = queue::Cascade::from(root);
    while let Some(cause) = walk.next_cause() {
        let rows = sqlx::query(
            "UPDATE tasks t SET state = 'blocked', updated_at = $2 \
               FROM task_edges e WHERE e.depends_on = $1 AND t.id = e.task_id AND t.state = 'waiting' \
             RETURNING t.id",
        )
        .bind(cause.as_uuid())
        .bind(now)
        .fetch_all(&mut **tx)
        .await
        .map_err(db)?;
        let mut ids: Vec<Uuid> = rows.iter().map(|r| get(r, "id")).collect::<Result<_, _>>()?;
        ids.sort();
        for d in task_ids(ids) {
            events.push(Event::TaskBlocked { task_id: d, blocked_by: cause });
            walk.reached(d);
        }
    }
    Ok(walk.finish())
}

/// Lets blocked dependents of `root` wait again where no dependency still blocks them
/// ([`queue::unblock_dependent`]).
pub(super) async fn unblock_dependents(
    tx: &mut Tx,
    root: TaskId,
    now: DateTime<Utc>,
    events: &mut Vec<Event>,
) -> Result<Vec<TaskId>, StoreError> {
    let mut walk = queue::Cascade::from(root);
    while let Some(cause) = walk.next_cause() {
        let rows = sqlx::query(
            "SELECT t.* FROM task_edges e JOIN tasks t ON t.id = e.task_id \
              WHERE e.depends_on = $1 AND t.state = 'blocked' ORDER BY t.id FOR UPDATE OF t",
        )
        .bind(cause.as_uuid())
        .fetch_all(&mut **tx)
        .await
        .map_err(db)?;
        for row in rows {
            let mut task = rows::task(&row)?;
            let deps: HashMap<TaskId, TaskState> = sqlx::query("SELECT id, state FROM tasks WHERE id = ANY($1)")
                .bind(uuids(task.dependencies.iter().copied()))
                .fetch_all(&mut **tx)
                .await
                .map_err(db)?
                .iter()
                .map(|r| Ok((TaskId::from_uuid(get(r, "id")?), parse("task state", get::<&str>(r, "state")?)?)))
                .collect::<Result<_, StoreError>>()?;
            let Some(event) = queue::unblock_dependent(&mut task, |d| deps.get(d).copied(), now)? else {
                continue;
            };
            let completed = deps.values().filter(|s| **s == TaskState::Completed).count();
            let unmet = task.dependencies.iter().collect::<HashSet<_>>().len().saturating_sub(completed);
            sqlx::query("UPDATE tasks SET state = $2, unmet = $3, updated_at = $4 WHERE id = $1")
                .bind(task.id.as_uuid())
                .bind(task.state.as_str())
                .bind(i32::try_from(unmet).unwrap_or(i32::MAX))
                .bind(now)
                .execute(&mut **tx)
                .await
                .map_err(db)?;
            events.push(event);
            walk.reached(task.id);
        }
    }
    Ok(walk.finish())
}

/// A lost attempt ([`queue::lose_attempt`]): back to the queue with backoff while attempts
/// remain, else dead-lettered with its dependents blocked.
pub(super) async fn lose_attempt(
    tx: &mut Tx,
    mut task: Task,
    loss: AttemptLoss,
    now: DateTime<Utc>,
    events: &mut Vec<Event>,
) -> Result<FailOutcome, StoreError> {
    let (outcome, event) = queue::lose_attempt(&mut task, loss, now)?;
    save(tx, &task).await?;
    events.push(event);
    match outcome {
        LossOutcome::Retrying { run_at } => Ok(FailOutcome::Retrying { run_at }),
        LossOutcome::DeadLettered => {
            let blocked = block_dependents(tx, task.id, now, events).await?;
            Ok(FailOutcome::DeadLettered { blocked })
        }
    }
}

/// Dead-letters a row that cannot be decoded (written by something other than this adapter,
/// or by an older version), with `reason` as its error, and blocks its dependents: one bad row
/// never stops a claim or a sweep. Touches only the columns that need no decoding.
pub(super) async fn quarantine(
    tx: &mut Tx,
    id: Uuid,
    reason: &str,
    now: DateTime<Utc>,
    events: &mut Vec<Event>,
) -> Result<(), StoreError> {
    let error = queue::quarantine_error(reason);
    warn!(task = %id, %error, "quarantining an unreadable task row");
    let attempts: Option<i32> = sqlx::query_scalar(
        "UPDATE tasks SET state = 'failed', last_error = $2, updated_at = $3 WHERE id = $1 RETURNING attempts",
    )
    .bind(id)
    .bind(&error)
    .bind(now)
    .fetch_optional(&mut **tx)
    .await
    .map_err(db)?;
    let Some(attempts) = attempts else { return Ok(()) };
    let task_id = TaskId::from_uuid(id);
    events.push(Event::TaskFailed { task_id, attempts: u32::try_from(attempts).unwrap_or(0), error });
    block_dependents(tx, task_id, now, events).await?;
    Ok(())
}
