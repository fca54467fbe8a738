//! What spreads from one task to its dependents (blocking, unblocking) and what a lost attempt
//! or an unreadable row does to the task itself.

use omoi_core::queue::{self, AttemptLoss, LossOutcome};
use omoi_core::{Event, FailOutcome, StoreError, TaskId, TaskState};

use super::rows::{Row, dependents_of, load, load_opt, save, states_of};
use crate::sqlite::codec::{self, us};
use crate::sqlite::error::db;
use crate::sqlite::write::Write;

/// A lost attempt, by the shared rule [`queue::lose_attempt`].
pub(super) async fn lose_attempt(w: &mut Write, mut row: Row, loss: AttemptLoss) -> Result<FailOutcome, StoreError> {
    let id = row.task.id;
    let (outcome, event) = queue::lose_attempt(&mut row.task, loss, w.now)?;
    save(w.conn(), &row).await?;
    w.emit(event);
    Ok(match outcome {
        LossOutcome::Retrying { run_at } => FailOutcome::Retrying { run_at },
        LossOutcome::DeadLettered => FailOutcome::DeadLettered { blocked: block_dependents(w, id).await? },
    })
}

/// Blocks every transitive dependent still waiting on `root` ([`queue::block_dependent`]).
pub(super) async fn block_dependents(w: &mut Write, root: TaskId) -> Result<Vec<TaskId>, StoreError> {
    let now = w.now;
    let mut walk = queue::Cascade::from(root);
    while let Some(cause) = walk.next_cause() {
        for d in dependents_of(&mut *w.conn(), cause).await? {
            let mut row = load(w.conn(), d).await?;
            if let Some(event) = queue::block_dependent(&mut row.task, cause, now)? {
                save(w.conn(), &row).await?;
                w.emit(event);
                walk.reached(d);
            }
        }
    }
    Ok(walk.finish())
}

/// Lets blocked dependents of `root` wait again where no dependency still blocks them
/// ([`queue::unblock_dependent`]).
pub(super) async fn unblock_dependents(w: &mut Write, root: TaskId) -> Result<Vec<TaskId>, StoreError> {
    let now = w.now;
    let mut walk = queue::Cascade::from(root);
    while let Some(cause) = walk.next_cause() {
        for d in dependents_of(&mut *w.conn(), cause).await? {
            let Some(mut row) = load_opt(w.conn(), d).await? else { continue };
            if row.task.state != TaskState::Blocked {
                continue;
            }
            let deps = states_of(w.conn(), row.task.dependencies.iter().copied()).await?;
            let Some(event) = queue::unblock_dependent(&mut row.task, |x| deps.get(x).copied(), now)? else {
                continue;
            };
            row.unmet =
                row.task.dependencies.iter().filter(|x| deps.get(x) != Some(&TaskState::Completed)).count() as i64;
            save(w.conn(), &row).await?;
            w.emit(event);
            walk.reached(d);
        }
    }
    Ok(walk.finish())
}

/// Dead-letters a row that cannot be decoded (written by something other than this adapter),
/// with `reason` as its error, and blocks its dependents: one bad row never stops a claim or a
/// sweep. Touches only columns that need no decoding.
pub(super) async fn quarantine(w: &mut Write, id: &str, reason: &str) -> Result<(), StoreError> {
    let error = queue::quarantine_error(reason);
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
    let (Some(attempts), Ok(task_id)) = (attempts, codec::parse::<TaskId>("task id", id)) else {
        return Ok(());
    };
    w.emit(Event::TaskFailed { task_id, attempts: u32::try_from(attempts).unwrap_or(0), error });
    block_dependents(w, task_id).await?;
    Ok(())
}
