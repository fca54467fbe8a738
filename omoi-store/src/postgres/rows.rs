//! Decoding rows into domain types (strings become enums here, at the storage boundary).

use std::str::FromStr;

use chrono::{DateTime, Utc};
use omoi_core::{
    Agent, AgentId, Cursor, Event, FencingToken, Lease, Memory, MemoryId, Spec, SpecId, StoreError, StoredEvent, Task,
    TaskDefinition, TaskId, TaskLinks, TaskState, Ticket, TicketId, TicketStatus, Usage,
};
use sqlx::Row;
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use uuid::Uuid;

use super::error::{corrupt, db};

pub(crate) fn get<'r, T>(row: &'r PgRow, col: &str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    row.try_get(col).map_err(db)
}

pub(crate) fn parse<T: FromStr>(what: &str, s: &str) -> Result<T, StoreError>
where
    T::Err: std::fmt::Display,
{
    s.parse().map_err(|e| corrupt(what, e))
}

pub(crate) fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

pub(crate) fn usage(row: &PgRow) -> Result<Usage, StoreError> {
    Ok(Usage {
        input_tokens: count(get(row, "usage_input")?),
        output_tokens: count(get(row, "usage_output")?),
        cost_usd: get(row, "usage_cost")?,
    })
}

/// A task row (`SELECT *` from `tasks`, or a row of `omoi_claim`).
pub(crate) fn task(row: &PgRow) -> Result<Task, StoreError> {
    let state: TaskState = parse("task state", get::<&str>(row, "state")?)?;
    let Json(def): Json<TaskDefinition> = get(row, "def")?;
    let lease = match (state.is_leased(), get::<Option<Uuid>>(row, "lease_holder")?) {
        (true, Some(holder)) => Some(Lease {
            holder: AgentId::from_uuid(holder),
            token: FencingToken(count(get::<Option<i64>>(row, "lease_token")?.unwrap_or(0))),
            expires_at: get::<Option<DateTime<Utc>>>(row, "lease_expires_at")?.unwrap_or(DateTime::<Utc>::MIN_UTC),
        }),
        _ => None,
    };
    Ok(Task {
        id: TaskId::from_uuid(get(row, "id")?),
        def,
        links: TaskLinks {
            spec_id: get::<Option<Uuid>>(row, "spec_id")?.map(SpecId::from_uuid),
            ticket_id: get::<Option<Uuid>>(row, "ticket_id")?.map(TicketId::from_uuid),
            parent_id: get::<Option<Uuid>>(row, "parent_id")?.map(TaskId::from_uuid),
            local_id: get(row, "local_id")?,
        },
        dependencies: get::<Vec<Uuid>>(row, "dependencies")?.into_iter().map(TaskId::from_uuid).collect(),
        state,
        attempts: u32::try_from(get::<i32>(row, "attempts")?).unwrap_or(0),
        run_at: get(row, "run_at")?,
        lease,
        result: get(row, "result")?,
        last_error: get(row, "last_error")?,
        usage: usage(row)?,
        created_at: get(row, "created_at")?,
        updated_at: get(row, "updated_at")?,
    })
}

/// An agent row.
pub(crate) fn agent(row: &PgRow) -> Result<Agent, StoreError> {
    Ok(Agent {
        id: AgentId::from_uuid(get(row, "id")?),
        name: get(row, "name")?,
        kind: parse("agent kind", get::<&str>(row, "kind")?)?,
        capabilities: get(row, "capabilities")?,
        capacity: u32::try_from(get::<i32>(row, "capacity")?).unwrap_or(0),
        status: parse("agent status", get::<&str>(row, "status")?)?,
        last_seq: get::<Option<i64>>(row, "last_seq")?.map(count),
        last_heartbeat_at: get(row, "last_heartbeat_at")?,
        registered_at: get(row, "registered_at")?,
    })
}

/// A spec row, without checkpoints.
pub(crate) fn spec(row: &PgRow) -> Result<Spec, StoreError> {
    Ok(Spec {
        id: SpecId::from_uuid(get(row, "id")?),
        title: get(row, "title")?,
        idea: get(row, "idea")?,
        metadata: get(row, "metadata")?,
        state: parse("spec state", get::<&str>(row, "state")?)?,
        checkpoints: Default::default(),
        usage: usage(row)?,
        created_at: get(row, "created_at")?,
        updated_at: get(row, "updated_at")?,
    })
}

/// A ticket row with its derived status (`blocked` and `status` are filled by the caller).
pub(crate) fn ticket(row: &PgRow) -> Result<Ticket, StoreError> {
    Ok(Ticket {
        id: TicketId::from_uuid(get(row, "id")?),
        spec_id: get::<Option<Uuid>>(row, "spec_id")?.map(SpecId::from_uuid),
        local_id: get(row, "local_id")?,
        title: get(row, "title")?,
        description: get(row, "description")?,
        priority: parse("priority", get::<&str>(row, "priority")?)?,
        requirements: get(row, "requirements")?,
        status: TicketStatus::Backlog,
        blocked: false,
        created_at: get(row, "created_at")?,
    })
}

/// A memory row.
pub(crate) fn memory(row: &PgRow) -> Result<Memory, StoreError> {
    let embedding: pgvector::Vector = get(row, "embedding")?;
    Ok(Memory {
        id: MemoryId::from_uuid(get(row, "id")?),
        kind: parse("memory kind", get::<&str>(row, "kind")?)?,
        text: get(row, "text")?,
        embedding: embedding.to_vec(),
        metadata: get(row, "metadata")?,
        citations: get::<Json<Vec<omoi_core::memory::Citation>>>(row, "citations")?.0,
        reinforcements: count32("reinforcements", get(row, "reinforcements")?)?,
        uses: count32("uses", get(row, "uses")?)?,
        created_at: get(row, "created_at")?,
        refreshed_at: get(row, "refreshed_at")?,
        last_used_at: get(row, "last_used_at")?,
    })
}

/// A non-negative `integer` column as a count.
fn count32(col: &str, v: i32) -> Result<u32, StoreError> {
    u32::try_from(v).map_err(|_| corrupt(col, format!("negative count {v}")))
}

/// An event row.
pub(crate) fn event(row: &PgRow) -> Result<StoredEvent, StoreError> {
    let Json(event): Json<Event> = get(row, "data")?;
    Ok(StoredEvent { cursor: Cursor(count(get(row, "cursor")?)), at: get(row, "at")?, event })
}
