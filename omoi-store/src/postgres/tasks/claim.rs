//! Claiming (one call of `omoi_claim`) and taking leases back (expired, or a failed holder's).
//! A row that cannot be decoded is quarantined, never returned as an error: the claim still
//! hands out every good task and the sweep still takes back every other lease.

use chrono::{DateTime, Utc};
use omoi_core::ports::clock::add_duration;
use omoi_core::queue::AttemptLoss;
use omoi_core::{AgentId, ClaimRequest, ClaimedTask, StoreError, Task, TaskId};
use sqlx::postgres::PgRow;
use tracing::warn;
use uuid::Uuid;

use super::cascade::{lose_attempt, quarantine};
use super::micros;
use crate::postgres::PostgresStore;
use crate::postgres::error::db;
use crate::postgres::rows::{self, get};

/// The task of `row`, or its id and why it cannot be read.
fn decode(row: &PgRow) -> Result<Task, (Option<Uuid>, String)> {
    rows::task(row).map_err(|e| (get::<Uuid>(row, "id").ok(), e.to_string()))
}

impl PostgresStore {
    pub(super) async fn claim_tasks(&self, request: &ClaimRequest) -> Result<Vec<ClaimedTask>, StoreError> {
        if request.limit == 0 {
            return Ok(Vec::new());
        }
        let now = self.now();
        let expires = micros(add_duration(now, request.lease_ttl));
        let cutoff = omoi_core::queue::aging_cutoff(now, request.aging_after).map(micros);
        let rows = sqlx::query("SELECT * FROM omoi_claim($1, $2, $3, $4, $5, $6, $7)")
            .bind(request.holder.as_uuid())
            .bind(&request.capabilities)
            .bind(i32::try_from(request.limit).unwrap_or(i32::MAX))
            .bind(now)
            .bind(expires)
            .bind(request.start)
            .bind(cutoff)
            .fetch_all(self.pool())
            .await
            .map_err(db)?;
        let mut out = Vec::with_capacity(rows.len());
        let mut bad = Vec::new();
        for row in &rows {
            match decode(row) {
                Ok(task) => match task.lease {
                    Some(lease) => out.push(ClaimedTask { task, lease }),
                    None => bad.push((Some(task.id.as_uuid()), "claimed without a lease".to_owned())),
                },
                Err(b) => bad.push(b),
            }
        }
        if !bad.is_empty() {
            // The leases are committed; quarantine the unreadable rows in a transaction of their
            // own. Should that fail, their leases lapse and the sweep quarantines them.
            if let Err(e) = self.quarantine_all(&bad, now).await {
                warn!(error = %e, "could not quarantine unreadable claimed rows; the sweep will");
            }
        }
        Ok(out)
    }

    async fn quarantine_all(&self, bad: &[(Option<Uuid>, String)], now: DateTime<Utc>) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let mut events = Vec::new();
        for (id, reason) in bad {
            match id {
                Some(id) => quarantine(&mut tx, *id, reason, now, &mut events).await?,
                None => warn!(%reason, "a claimed row has no readable id"),
            }
        }
        self.finish(tx, now, &events).await
    }

    /// Takes back leased tasks: those whose lease expired, or with `holder` those it holds.
    /// Rows being changed by someone else right now are skipped (they are not stranded).
    pub(super) async fn reclaim(&self, holder: Option<AgentId>) -> Result<Vec<TaskId>, StoreError> {
        let now = self.now();
        let mut tx = self.begin().await?;
        // Two statements rather than one with an OR, so each keeps to the leased-tasks index.
        let query = match holder {
            None => sqlx::query(
                "SELECT * FROM tasks WHERE state IN ('claimed', 'running') AND lease_expires_at <= $1 \
                  ORDER BY lease_expires_at, id FOR UPDATE SKIP LOCKED",
            )
            .bind(now),
            Some(h) => sqlx::query(
                "SELECT * FROM tasks WHERE state IN ('claimed', 'running') AND lease_holder = $1 \
                  ORDER BY lease_expires_at, id FOR UPDATE SKIP LOCKED",
            )
            .bind(h.as_uuid()),
        };
        let rows = query.fetch_all(&mut *tx).await.map_err(db)?;
        let mut events = Vec::new();
        let mut ids = Vec::with_capacity(rows.len());
        for row in rows {
            match decode(&row) {
                Ok(task) => {
                    ids.push(task.id);
                    lose_attempt(&mut tx, task, AttemptLoss::LeaseLost, now, &mut events).await?;
                }
                Err((Some(id), reason)) => {
                    ids.push(TaskId::from_uuid(id));
                    quarantine(&mut tx, id, &reason, now, &mut events).await?;
                }
                Err((None, reason)) => warn!(%reason, "a leased row has no readable id; skipped"),
            }
        }
        self.finish(tx, now, &events).await?;
        Ok(ids)
    }
}
