//! `DiscoveryStore` for the SQLite adapter. Recording a discovery and spawning its branch is
//! one `BEGIN IMMEDIATE` transaction (the file's write lock), so concurrent reports of the same
//! work from any number of threads or processes branch once.

use std::collections::HashSet;

use async_trait::async_trait;
use omoi_core::branching::{self, BranchFacts, Found};
use omoi_core::{
    Discovery, DiscoveryFilter, DiscoveryId, DiscoveryReport, DiscoveryStatus, DiscoveryStore, DiscoveryTransition,
    Event, RecordOutcome, StoreError, TaskId, TaskState,
};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};

use super::SqliteStore;
use super::codec::{get, get_parsed, get_time, json, text_array, u32_of, us};
use super::error::{db, insert};
use super::late_edges::add_dependencies;
use super::tasks::{dependents_of, get_in, insert_batch};
use super::write::Write;

const DIAGNOSTIC: &str = "('stuck', 'no_result', 'validation_loop')";

/// A stored row: the recorded JSON with the live status and update time.
fn decode(r: &SqliteRow) -> Result<Discovery, StoreError> {
    let data: String = get(r, "data")?;
    let mut d: Discovery = super::codec::from_json("discovery", &data)?;
    d.status = get_parsed(r, "status")?;
    d.updated_at = get_time(r, "updated_at")?;
    Ok(d)
}

async fn states(conn: &mut SqliteConnection, discovery: &str) -> Result<Vec<TaskState>, StoreError> {
    let rows = sqlx::query(
        "SELECT t.state FROM discovery_tasks dt JOIN tasks t ON t.id = dt.task_id WHERE dt.discovery_id = ?1",
    )
    .bind(discovery)
    .fetch_all(conn)
    .await
    .map_err(db)?;
    rows.iter().map(|r| get_parsed(r, "state")).collect()
}

async fn find(conn: &mut SqliteConnection, report: &DiscoveryReport) -> Result<Found, StoreError> {
    let source = get_in(conn, report.discovery.source_task).await?;
    let spec = source.links.spec_id.map(|s| s.to_string());
    let src = source.id.to_string();
    let row = sqlx::query(
        "SELECT count(*) AS n, max(created_at) AS last FROM discoveries WHERE source_task = ?1 AND branched = 1",
    )
    .bind(&src)
    .fetch_one(&mut *conn)
    .await
    .map_err(db)?;
    let from_source = u32_of("branches", get(&row, "n")?)?;
    let last = row.try_get::<Option<i64>, _>("last").map_err(db)?.map(super::codec::time).transpose()?;
    let in_spec: i64 = sqlx::query_scalar("SELECT count(*) FROM discoveries WHERE spec_id IS ?1 AND branched = 1")
        .bind(&spec)
        .fetch_one(&mut *conn)
        .await
        .map_err(db)?;
    let source_depth: Option<i64> = sqlx::query_scalar(
        "SELECT d.depth FROM discovery_tasks dt JOIN discoveries d ON d.id = dt.discovery_id WHERE dt.task_id = ?1",
    )
    .bind(&src)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db)?;
    let diag: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT id FROM discoveries WHERE spec_id IS ?1 AND branched = 1 AND kind IN {DIAGNOSTIC} \
         ORDER BY pos DESC LIMIT ?2"
    )))
    .bind(&spec)
    .bind(i64::from(report.limits.max_consecutive_diagnostic_failures) + 1)
    .fetch_all(&mut *conn)
    .await
    .map_err(db)?;
    let mut diagnostics = Vec::with_capacity(diag.len());
    for id in &diag {
        diagnostics.push(states(conn, id).await?);
    }
    let dup = sqlx::query(
        "SELECT data, status, updated_at FROM discoveries WHERE spec_id IS ?1 AND fingerprint = ?2 \
         AND status IN ('open', 'branched') ORDER BY pos LIMIT 1",
    )
    .bind(&spec)
    .bind(report.discovery.fingerprint())
    .fetch_optional(&mut *conn)
    .await
    .map_err(db)?;
    let exact_duplicate = dup.as_ref().map(decode).transpose()?.map(|d| (d.id, d.spawned));
    Ok(Found {
        source_depth: source_depth.map(|d| u32_of("depth", d)).transpose()?.unwrap_or(0),
        facts: BranchFacts {
            branches_from_source: from_source,
            branches_in_spec: u32_of("branches", in_spec)?,
            depth: 0,
            last_branch_from_source: last,
            consecutive_diagnostic_failures: branching::consecutive_failures(diagnostics.iter().map(Vec::as_slice)),
        },
        exact_duplicate,
        source,
    })
}

async fn record(w: &mut Write, report: DiscoveryReport) -> Result<RecordOutcome, StoreError> {
    let found = find(w.conn(), &report).await?;
    let (source, source_state) = (found.source.id, found.source.state);
    let prepared = branching::prepare(report, found, w.now)?;
    let requeue = prepared.requeue(source_state)?;
    let d = &prepared.discovery;
    w.emit(prepared.recorded_event());
    sqlx::query(
        "INSERT INTO discoveries (id, spec_id, source_task, kind, status, fingerprint, depth, branched, created_at, \
         updated_at, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9, ?10)",
    )
    .bind(d.id.to_string())
    .bind(d.spec_id.map(|s| s.to_string()))
    .bind(d.source_task.to_string())
    .bind(d.kind.as_str())
    .bind(d.status.as_str())
    .bind(&d.fingerprint)
    .bind(i64::from(d.depth))
    .bind(i64::from(!d.spawned.is_empty()))
    .bind(us(d.created_at))
    .bind(json(d)?)
    .execute(w.conn())
    .await
    .map_err(insert("discovery", d.id))?;
    let mut held = Vec::new();
    if !prepared.branch.is_empty() {
        insert_batch(w, prepared.branch.clone()).await?;
        sqlx::query(
            "INSERT INTO discovery_tasks (task_id, discovery_id) SELECT value, ?2 FROM json_each(?1) ORDER BY key",
        )
        .bind(text_array(&d.spawned))
        .bind(d.id.to_string())
        .execute(w.conn())
        .await
        .map_err(db)?;
    }
    if let Some(change) = &requeue {
        add_dependencies(w, change).await?;
    } else if !prepared.sinks.is_empty() {
        let spawned: HashSet<TaskId> = d.spawned.iter().copied().collect();
        for dep in dependents_of(&mut *w.conn(), source).await? {
            let state: TaskState = {
                let s: String = sqlx::query_scalar("SELECT state FROM tasks WHERE id = ?1")
                    .bind(dep.to_string())
                    .fetch_one(w.conn())
                    .await
                    .map_err(db)?;
                super::codec::parse("task state", &s)?
            };
            if spawned.contains(&dep) || !branching::waits_for_branch(state) {
                continue;
            }
            for sink in &prepared.sinks {
                sqlx::query("INSERT INTO task_deps (task_id, dep_id) VALUES (?1, ?2)")
                    .bind(dep.to_string())
                    .bind(sink.to_string())
                    .execute(w.conn())
                    .await
                    .map_err(db)?;
                // A fresh branch task is never completed: one more unmet dependency.
                sqlx::query("UPDATE tasks SET deps = json_insert(deps, '$[#]', ?2), unmet = unmet + 1 WHERE id = ?1")
                    .bind(dep.to_string())
                    .bind(sink.to_string())
                    .execute(w.conn())
                    .await
                    .map_err(db)?;
            }
            held.push(dep);
        }
    }
    for e in prepared.decision_events() {
        w.emit(e);
    }
    Ok(prepared.outcome(held))
}

/// Resolves every branched discovery whose last branch task is among `completed` (called in
/// the completion's transaction).
pub(super) async fn resolve_completed(w: &mut Write, completed: &[TaskId]) -> Result<(), StoreError> {
    if completed.is_empty() {
        return Ok(());
    }
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT dt.discovery_id FROM discovery_tasks dt JOIN discoveries d ON d.id = dt.discovery_id \
         WHERE dt.task_id IN (SELECT value FROM json_each(?1)) AND d.status = 'branched'",
    )
    .bind(text_array(completed))
    .fetch_all(w.conn())
    .await
    .map_err(db)?;
    for id in ids {
        if !branching::all_completed(&states(w.conn(), &id).await?) {
            continue;
        }
        let discovery: DiscoveryId = super::codec::parse("discovery id", &id)?;
        let next = DiscoveryStatus::Branched
            .apply(DiscoveryTransition::Resolve)
            .map_err(|e| StoreError::transition("discovery", discovery, e))?;
        sqlx::query("UPDATE discoveries SET status = ?2, updated_at = ?3 WHERE id = ?1")
            .bind(&id)
            .bind(next.as_str())
            .bind(us(w.now))
            .execute(w.conn())
            .await
            .map_err(db)?;
        w.emit(Event::DiscoveryResolved { discovery_id: discovery });
    }
    Ok(())
}

#[async_trait]
impl DiscoveryStore for SqliteStore {
    #[tracing::instrument(level = "debug", name = "sqlite.record_discovery", skip_all, fields(discovery = %report.discovery.id))]
    async fn record_discovery(&self, report: DiscoveryReport) -> Result<RecordOutcome, StoreError> {
        let mut w = self.begin().await?;
        let out = record(&mut w, report).await?;
        self.commit(w).await?;
        Ok(out)
    }

    async fn get_discovery(&self, id: DiscoveryId) -> Result<Discovery, StoreError> {
        let row = sqlx::query("SELECT data, status, updated_at FROM discoveries WHERE id = ?1")
            .bind(id.to_string())
            .fetch_optional(self.readers())
            .await
            .map_err(db)?
            .ok_or_else(|| StoreError::not_found("discovery", id))?;
        decode(&row)
    }

    async fn list_discoveries(&self, filter: &DiscoveryFilter) -> Result<Vec<Discovery>, StoreError> {
        let rows = sqlx::query(
            "SELECT data, status, updated_at FROM discoveries \
             WHERE (?1 IS NULL OR spec_id = ?1) AND (?2 IS NULL OR source_task = ?2) \
             AND (?3 IS NULL OR created_at >= ?3) ORDER BY pos",
        )
        .bind(filter.spec_id.map(|s| s.to_string()))
        .bind(filter.source_task.map(|s| s.to_string()))
        .bind(filter.since.map(us))
        .fetch_all(self.readers())
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
             WHERE dt.task_id = ?1",
        )
        .bind(task.to_string())
        .fetch_optional(self.readers())
        .await
        .map_err(db)?;
        row.as_ref().map(decode).transpose()
    }
}
