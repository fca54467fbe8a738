//! `DiscoveryStore` for the Postgres adapter. Recording a discovery and spawning its branch is
//! one transaction, serialized per spec by a transaction-scoped advisory lock, so the caps and
//! the exact dedup hold across any number of processes. Resolution happens in the completing
//! transaction, by the deferred trigger of migration 0003.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use omoi_core::branching::{self, BranchFacts, Found};
use omoi_core::{
    Discovery, DiscoveryFilter, DiscoveryId, DiscoveryReport, DiscoveryStore, Event, RecordOutcome, StoreError, TaskId,
    TaskState,
};
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::{Postgres, Transaction};
use tracing::instrument;
use uuid::Uuid;

use super::error::{db, is_unique_violation};
use super::late_edges::add_dependencies;
use super::rows::{self, get, parse};
use super::tasks::insert_batch;
use super::{PostgresStore, emit};

type Tx = Transaction<'static, Postgres>;

/// A stored row: the recorded JSON with the live status and update time.
fn decode(r: &PgRow) -> Result<Discovery, StoreError> {
    let Json(mut d): Json<Discovery> = get(r, "data")?;
    d.status = parse("discovery status", get::<&str>(r, "status")?)?;
    d.updated_at = get(r, "updated_at")?;
    Ok(d)
}

fn as_u32(what: &str, v: i64) -> Result<u32, StoreError> {
    u32::try_from(v).map_err(|e| super::error::corrupt(what, e))
}

async fn find(tx: &mut Tx, report: &DiscoveryReport) -> Result<Found, StoreError> {
    let row = sqlx::query("SELECT * FROM tasks WHERE id = $1 FOR SHARE")
        .bind(report.discovery.source_task.as_uuid())
        .fetch_optional(&mut **tx)
        .await
        .map_err(db)?
        .ok_or_else(|| StoreError::not_found("task", report.discovery.source_task))?;
    let source = rows::task(&row)?;
    let spec: Option<Uuid> = source.links.spec_id.map(|s| s.as_uuid());
    // Every report of one spec (or of spec-less tasks) is decided one at a time.
    sqlx::query(
        "SELECT pg_advisory_xact_lock(hashtextextended('omoi.discovery:' || current_schema() || ':' || \
         coalesce($1::text, 'none'), 0))",
    )
    .bind(spec)
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    let row = sqlx::query(
        "SELECT count(*) AS n, max(created_at) AS last FROM discoveries WHERE source_task = $1 AND branched",
    )
    .bind(source.id.as_uuid())
    .fetch_one(&mut **tx)
    .await
    .map_err(db)?;
    let from_source = as_u32("branches", get(&row, "n")?)?;
    let last: Option<DateTime<Utc>> = get(&row, "last")?;
    let in_spec: i64 =
        sqlx::query_scalar("SELECT count(*) FROM discoveries WHERE spec_id IS NOT DISTINCT FROM $1 AND branched")
            .bind(spec)
            .fetch_one(&mut **tx)
            .await
            .map_err(db)?;
    let source_depth: Option<i32> = sqlx::query_scalar(
        "SELECT d.depth FROM discovery_tasks dt JOIN discoveries d ON d.id = dt.discovery_id WHERE dt.task_id = $1",
    )
    .bind(source.id.as_uuid())
    .fetch_optional(&mut **tx)
    .await
    .map_err(db)?;
    let diag = sqlx::query(
        "SELECT d.id, array_agg(t.state) AS states FROM \
           (SELECT id, seq FROM discoveries WHERE spec_id IS NOT DISTINCT FROM $1 AND branched \
             AND kind IN ('stuck', 'no_result', 'validation_loop') ORDER BY seq DESC LIMIT $2) d \
         JOIN discovery_tasks dt ON dt.discovery_id = d.id JOIN tasks t ON t.id = dt.task_id \
         GROUP BY d.id, d.seq ORDER BY d.seq DESC",
    )
    .bind(spec)
    .bind(i64::from(report.limits.max_consecutive_diagnostic_failures) + 1)
    .fetch_all(&mut **tx)
    .await
    .map_err(db)?;
    let mut diagnostics = Vec::with_capacity(diag.len());
    for r in &diag {
        let states: Vec<String> = get(r, "states")?;
        diagnostics.push(states.iter().map(|s| parse::<TaskState>("task state", s)).collect::<Result<Vec<_>, _>>()?);
    }
    let dup = sqlx::query(
        "SELECT data, status, updated_at FROM discoveries WHERE spec_id IS NOT DISTINCT FROM $1 \
         AND fingerprint = $2 AND status IN ('open', 'branched') ORDER BY seq LIMIT 1",
    )
    .bind(spec)
    .bind(report.discovery.fingerprint())
    .fetch_optional(&mut **tx)
    .await
    .map_err(db)?;
    Ok(Found {
        source_depth: source_depth.map(|d| as_u32("depth", i64::from(d))).transpose()?.unwrap_or(0),
        facts: BranchFacts {
            branches_from_source: from_source,
            branches_in_spec: as_u32("branches", in_spec)?,
            depth: 0,
            last_branch_from_source: last,
            consecutive_diagnostic_failures: branching::consecutive_failures(diagnostics.iter().map(Vec::as_slice)),
        },
        exact_duplicate: dup.as_ref().map(decode).transpose()?.map(|d| (d.id, d.spawned)),
        source,
    })
}

async fn record(
    tx: &mut Tx,
    report: DiscoveryReport,
    now: DateTime<Utc>,
) -> Result<(RecordOutcome, Vec<Event>), StoreError> {
    let found = find(tx, &report).await?;
    let (source, source_state) = (found.source.id, found.source.state);
    let prepared = branching::prepare(report, found, now)?;
    let requeue = prepared.requeue(source_state)?;
    let d = &prepared.discovery;
    let mut events = vec![prepared.recorded_event()];
    sqlx::query(
        "INSERT INTO discoveries (id, spec_id, source_task, kind, status, fingerprint, depth, branched, created_at, \
         updated_at, data) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10)",
    )
    .bind(d.id.as_uuid())
    .bind(d.spec_id.map(|s| s.as_uuid()))
    .bind(d.source_task.as_uuid())
    .bind(d.kind.as_str())
    .bind(d.status.as_str())
    .bind(&d.fingerprint)
    .bind(i32::try_from(d.depth).unwrap_or(i32::MAX))
    .bind(!d.spawned.is_empty())
    .bind(d.created_at)
    .bind(Json(d))
    .execute(&mut **tx)
    .await
    .map_err(|e| {
        if is_unique_violation(&e, "discoveries_pkey") {
            StoreError::AlreadyExists { kind: "discovery", id: d.id.to_string() }
        } else {
            db(e)
        }
    })?;
    let mut held = Vec::new();
    if !prepared.branch.is_empty() {
        insert_batch(tx, prepared.branch.clone(), now, &mut events).await?;
        let spawned: Vec<Uuid> = d.spawned.iter().map(|t| t.as_uuid()).collect();
        sqlx::query("INSERT INTO discovery_tasks (task_id, discovery_id) SELECT unnest($1::uuid[]), $2")
            .bind(&spawned)
            .bind(d.id.as_uuid())
            .execute(&mut **tx)
            .await
            .map_err(db)?;
    }
    if let Some(change) = &requeue {
        events.push(add_dependencies(tx, change, now).await?);
    } else if !prepared.sinks.is_empty() {
        let sinks: Vec<Uuid> = prepared.sinks.iter().map(|t| t.as_uuid()).collect();
        let spawned: Vec<Uuid> = d.spawned.iter().map(|t| t.as_uuid()).collect();
        // Only dependents that have not started wait; the row lock orders this against a
        // concurrent release of the same dependent.
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "UPDATE tasks t SET dependencies = t.dependencies || $2::uuid[], unmet = t.unmet + cardinality($2::uuid[]) \
               FROM task_edges e WHERE e.depends_on = $1 AND t.id = e.task_id \
                AND t.state IN ('waiting', 'blocked') AND NOT (t.id = ANY ($3::uuid[])) \
             RETURNING t.id",
        )
        .bind(source.as_uuid())
        .bind(&sinks)
        .bind(&spawned)
        .fetch_all(&mut **tx)
        .await
        .map_err(db)?;
        let mut ids = ids;
        ids.sort();
        sqlx::query(
            "INSERT INTO task_edges (depends_on, task_id) SELECT s, t FROM unnest($1::uuid[]) AS s, unnest($2::uuid[]) AS t",
        )
        .bind(&sinks)
        .bind(&ids)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
        held = ids.into_iter().map(TaskId::from_uuid).collect();
    }
    events.extend(prepared.decision_events());
    Ok((prepared.outcome(held), events))
}

#[async_trait]
impl DiscoveryStore for PostgresStore {
    #[instrument(level = "debug", name = "postgres.record_discovery", skip_all, fields(discovery = %report.discovery.id))]
    async fn record_discovery(&self, report: DiscoveryReport) -> Result<RecordOutcome, StoreError> {
        let now = self.now();
        let mut tx = self.begin().await?;
        let (out, events) = record(&mut tx, report, now).await?;
        emit(&mut tx, now, &events).await?;
        tx.commit().await.map_err(db)?;
        Ok(out)
    }

    async fn get_discovery(&self, id: DiscoveryId) -> Result<Discovery, StoreError> {
        let row = sqlx::query("SELECT data, status, updated_at FROM discoveries WHERE id = $1")
            .bind(id.as_uuid())
            .fetch_optional(self.pool())
            .await
            .map_err(db)?
            .ok_or_else(|| StoreError::not_found("discovery", id))?;
        decode(&row)
    }

    async fn list_discoveries(&self, filter: &DiscoveryFilter) -> Result<Vec<Discovery>, StoreError> {
        let rows = sqlx::query(
            "SELECT data, status, updated_at FROM discoveries \
             WHERE ($1::uuid IS NULL OR spec_id = $1) AND ($2::uuid IS NULL OR source_task = $2) \
             AND ($3::timestamptz IS NULL OR created_at >= $3) ORDER BY seq",
        )
        .bind(filter.spec_id.map(|s| s.as_uuid()))
        .bind(filter.source_task.map(|s| s.as_uuid()))
        .bind(filter.since)
        .fetch_all(self.pool())
        .await
        .map_err(db)?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let d = decode(r)?;
            if filter.matches(&d) {
                out.push(d);
            }
        }
        Ok(out)
    }

    async fn discovery_of_task(&self, task: TaskId) -> Result<Option<Discovery>, StoreError> {
        let row = sqlx::query(
            "SELECT d.data, d.status, d.updated_at FROM discovery_tasks dt JOIN discoveries d ON d.id = dt.discovery_id \
             WHERE dt.task_id = $1",
        )
        .bind(task.as_uuid())
        .fetch_optional(self.pool())
        .await
        .map_err(db)?;
        row.as_ref().map(decode).transpose()
    }
}
