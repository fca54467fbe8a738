//! Tasks: the unit of work an agent executes.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::common::{ExecutionMode, Priority, Usage, WorkPhase};
use crate::ids::{AgentId, SpecId, TaskId, TicketId};
use crate::state::TaskState;

/// Largest accepted task input or result, serialized as JSON (1 MiB).
pub const MAX_TASK_PAYLOAD_BYTES: usize = 1 << 20;

/// What a task is: everything a caller decides when creating it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct TaskDefinition {
    /// Short imperative title.
    pub title: String,
    /// What to do, for the agent.
    pub description: String,
    /// Checkable outcomes.
    pub acceptance_criteria: Vec<String>,
    /// Delivery phase.
    pub phase: WorkPhase,
    /// Execution mode, enforced as a tool policy.
    pub mode: ExecutionMode,
    /// Queue priority.
    pub priority: Priority,
    /// Capabilities a worker must have to claim the task (all of them).
    pub capabilities: Vec<String>,
    /// Globs of files this task expects to own.
    pub owned_files: Vec<String>,
    /// Free-form input for the executor.
    pub input: Value,
    /// Estimated effort in hours (critical-path computation).
    pub estimate_hours: Option<f64>,
    /// Attempts before the task is dead-lettered (`Failed`).
    pub max_attempts: u32,
    /// Delay between attempts.
    pub backoff: BackoffPolicy,
    /// Wall-clock limit for one attempt.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "Option<String>")]
    pub timeout: Option<Duration>,
    /// Time by which the task should be done (scheduling hint).
    pub deadline: Option<DateTime<Utc>>,
    /// At most one non-terminal task may hold a given key.
    pub dedup_key: Option<String>,
    /// At most `limit` tasks with the same key may be leased at once.
    pub concurrency: Option<ConcurrencyLimit>,
}

impl Default for TaskDefinition {
    fn default() -> Self {
        Self {
            title: String::new(),
            description: String::new(),
            acceptance_criteria: Vec::new(),
            phase: WorkPhase::default(),
            mode: ExecutionMode::default(),
            priority: Priority::default(),
            capabilities: Vec::new(),
            owned_files: Vec::new(),
            input: Value::Null,
            estimate_hours: None,
            max_attempts: 3,
            backoff: BackoffPolicy::default(),
            timeout: None,
            deadline: None,
            dedup_key: None,
            concurrency: None,
        }
    }
}

impl TaskDefinition {
    /// Checks the definition; the message says what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        use crate::validate::{self, MAX_DESCRIPTION_BYTES, MAX_LABEL_BYTES, MAX_TITLE_BYTES};
        if self.title.trim().is_empty() {
            return Err("title is empty".into());
        }
        validate::text("title", &self.title, MAX_TITLE_BYTES)?;
        validate::text("description", &self.description, MAX_DESCRIPTION_BYTES)?;
        validate::labels("acceptance_criteria", &self.acceptance_criteria)?;
        validate::labels("capabilities", &self.capabilities)?;
        validate::labels("owned_files", &self.owned_files)?;
        if let Some(k) = &self.dedup_key {
            validate::text("dedup_key", k, MAX_LABEL_BYTES)?;
        }
        if let Some(c) = &self.concurrency {
            validate::text("concurrency key", &c.key, MAX_LABEL_BYTES)?;
        }
        if self.max_attempts == 0 {
            return Err("max_attempts must be at least 1".into());
        }
        if self.capabilities.iter().any(|c| c.trim().is_empty()) {
            return Err("capabilities contain an empty name".into());
        }
        if self.dedup_key.as_deref().is_some_and(|k| k.is_empty()) {
            return Err("dedup_key is empty".into());
        }
        if let Some(c) = &self.concurrency
            && (c.limit == 0 || c.key.is_empty())
        {
            return Err("concurrency limit needs a non-empty key and a limit of at least 1".into());
        }
        if self.estimate_hours.is_some_and(|h| !h.is_finite() || h < 0.0) {
            return Err("estimate_hours must be a non-negative number".into());
        }
        self.backoff.validate()?;
        check_payload("input", &self.input)
    }
}

/// Rejects a JSON payload larger than [`MAX_TASK_PAYLOAD_BYTES`], nested too deep or holding a
/// NUL character ([`validate::payload`](crate::validate::payload)).
pub fn check_payload(what: &str, value: &Value) -> Result<(), String> {
    crate::validate::payload(what, value)
}

/// Where a task comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct TaskLinks {
    /// The spec whose task plan produced it.
    pub spec_id: Option<SpecId>,
    /// Its ticket.
    pub ticket_id: Option<TicketId>,
    /// The task that spawned it (discovery branches, revisions).
    pub parent_id: Option<TaskId>,
    /// Its id in the spec's task plan (`TSK-001`).
    pub local_id: Option<String>,
}

/// Exponential backoff with bounded, deterministic jitter.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct BackoffPolicy {
    /// Delay before the second attempt.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub base: Duration,
    /// Growth per attempt.
    pub factor: f64,
    /// Upper bound on any delay.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub max: Duration,
    /// Jitter as a fraction of the delay (0.25 = ±25 %).
    pub jitter: f64,
}

impl Default for BackoffPolicy {
    /// OmoiOS: 1 s · 2ⁿ ± 25 %, capped at 60 s.
    fn default() -> Self {
        Self { base: Duration::from_secs(1), factor: 2.0, max: Duration::from_secs(60), jitter: 0.25 }
    }
}

impl BackoffPolicy {
    /// A policy without jitter (tests, fixed schedules).
    pub fn fixed(base: Duration, factor: f64, max: Duration) -> Self {
        Self { base, factor, max, jitter: 0.0 }
    }

    /// Checks the numbers are usable.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.factor.is_finite() && self.factor >= 1.0) {
            return Err("backoff factor must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err("backoff jitter must be between 0 and 1".into());
        }
        if self.max < self.base {
            return Err("backoff max must not be below base".into());
        }
        Ok(())
    }

    /// The delay after failed attempt number `attempt` (1-based). `seed` picks the jitter, so
    /// the same task and attempt always get the same delay (reproducible in every adapter).
    pub fn delay(&self, attempt: u32, seed: u64) -> Duration {
        let exp = self.factor.powi(attempt.saturating_sub(1).min(64) as i32);
        let raw = (self.base.as_secs_f64() * exp).min(self.max.as_secs_f64());
        let unit = (splitmix64(seed ^ u64::from(attempt)) >> 11) as f64 / (1u64 << 53) as f64; // [0, 1)
        let jittered = raw * (1.0 + self.jitter * (2.0 * unit - 1.0));
        Duration::from_secs_f64(jittered.clamp(0.0, self.max.as_secs_f64()))
    }

    /// [`BackoffPolicy::delay`] seeded by the task id.
    pub fn delay_for(&self, task: TaskId, attempt: u32) -> Duration {
        let u = task.as_uuid().as_u128();
        self.delay(attempt, (u as u64) ^ ((u >> 64) as u64))
    }
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// At most `limit` tasks sharing `key` may be leased (`Claimed` or `Running`) at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ConcurrencyLimit {
    /// The shared key (a repository, a tenant, an external API…).
    pub key: String,
    /// How many may run at once.
    pub limit: u32,
}

/// A lease's fencing token: it grows with every claim of the task, so a holder whose lease was
/// taken over can never complete, fail or renew it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(transparent)]
pub struct FencingToken(pub u64);

impl std::fmt::Display for FencingToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// A time-limited right to work on a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Lease {
    /// The agent (worker) holding it.
    pub holder: AgentId,
    /// Its fencing token.
    pub token: FencingToken,
    /// When it lapses unless renewed.
    pub expires_at: DateTime<Utc>,
}

/// A stored task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Task {
    /// Its id.
    pub id: TaskId,
    /// What it is.
    pub def: TaskDefinition,
    /// Where it comes from.
    pub links: TaskLinks,
    /// Tasks that must complete first.
    pub dependencies: Vec<TaskId>,
    /// Current state.
    pub state: TaskState,
    /// Attempts used so far (a released claim gives its attempt back).
    pub attempts: u32,
    /// Not claimable before this time (retry backoff, scheduled work).
    pub run_at: DateTime<Utc>,
    /// The current lease while `Claimed` or `Running`.
    pub lease: Option<Lease>,
    /// The result reported on completion.
    pub result: Option<Value>,
    /// The last failure message.
    pub last_error: Option<String>,
    /// Model usage reported by attempts.
    pub usage: Usage,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last state change.
    pub updated_at: DateTime<Utc>,
}

impl Task {
    /// The task as it is first stored at `now` in `state`: no attempt, lease, result or usage
    /// yet; runnable from the task's own `run_at`, else from `now`.
    pub fn inserted(new: NewTask, state: TaskState, now: DateTime<Utc>) -> Self {
        Self {
            id: new.id,
            def: new.def,
            links: new.links,
            dependencies: new.dependencies,
            state,
            attempts: 0,
            run_at: new.run_at.unwrap_or(now),
            lease: None,
            result: None,
            last_error: None,
            usage: Usage::default(),
            created_at: now,
            updated_at: now,
        }
    }

    /// Attempts left before the task is dead-lettered.
    pub fn attempts_left(&self) -> u32 {
        self.def.max_attempts.saturating_sub(self.attempts)
    }
}

/// A task to insert. Build with [`NewTask::new`] and the chained setters.
///
/// ```
/// use omoi_core::{NewTask, Priority, ExecutionMode};
/// let build = NewTask::new("build the parser");
/// let test = NewTask::new("test the parser")
///     .priority(Priority::High)
///     .mode(ExecutionMode::Validation)
///     .depends_on([build.id]);
/// assert_eq!(test.dependencies, vec![build.id]);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NewTask {
    /// The id to give it (chosen by the caller so a batch can reference its own tasks).
    pub id: TaskId,
    /// What it is.
    pub def: TaskDefinition,
    /// Where it comes from.
    pub links: TaskLinks,
    /// Tasks (in the same batch or already stored) that must complete first.
    pub dependencies: Vec<TaskId>,
    /// Earliest start; `None` means now.
    pub run_at: Option<DateTime<Utc>>,
}

impl NewTask {
    /// A medium-priority implementation task with default retries.
    pub fn new(title: impl Into<String>) -> Self {
        Self {
            id: TaskId::new(),
            def: TaskDefinition { title: title.into(), ..TaskDefinition::default() },
            links: TaskLinks::default(),
            dependencies: Vec::new(),
            run_at: None,
        }
    }

    /// Sets the description.
    pub fn description(mut self, d: impl Into<String>) -> Self {
        self.def.description = d.into();
        self
    }

    /// Sets the priority.
    pub fn priority(mut self, p: Priority) -> Self {
        self.def.priority = p;
        self
    }

    /// Sets the execution mode.
    pub fn mode(mut self, m: ExecutionMode) -> Self {
        self.def.mode = m;
        self
    }

    /// Sets the delivery phase.
    pub fn phase(mut self, p: WorkPhase) -> Self {
        self.def.phase = p;
        self
    }

    /// Adds dependencies.
    pub fn depends_on(mut self, ids: impl IntoIterator<Item = TaskId>) -> Self {
        self.dependencies.extend(ids);
        self
    }

    /// Requires these capabilities of the claiming worker.
    pub fn requires(mut self, caps: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.def.capabilities.extend(caps.into_iter().map(Into::into));
        self
    }

    /// Sets the input payload.
    pub fn input(mut self, v: Value) -> Self {
        self.def.input = v;
        self
    }

    /// Sets the attempt budget.
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.def.max_attempts = n;
        self
    }

    /// Sets the backoff policy.
    pub fn backoff(mut self, b: BackoffPolicy) -> Self {
        self.def.backoff = b;
        self
    }

    /// Sets the dedup key.
    pub fn dedup_key(mut self, k: impl Into<String>) -> Self {
        self.def.dedup_key = Some(k.into());
        self
    }

    /// Limits concurrent leases per key.
    pub fn concurrency(mut self, key: impl Into<String>, limit: u32) -> Self {
        self.def.concurrency = Some(ConcurrencyLimit { key: key.into(), limit });
        self
    }

    /// Delays the first claim.
    pub fn run_at(mut self, at: DateTime<Utc>) -> Self {
        self.run_at = Some(at);
        self
    }

    /// Sets the effort estimate in hours.
    pub fn estimate_hours(mut self, h: f64) -> Self {
        self.def.estimate_hours = Some(h);
        self
    }

    /// Sets the links.
    pub fn links(mut self, links: TaskLinks) -> Self {
        self.links = links;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_one_second_caps_at_sixty_and_jitters_within_a_quarter() {
        let p = BackoffPolicy::default();
        for attempt in 1..=10u32 {
            let nominal = (2f64.powi(attempt as i32 - 1)).min(60.0);
            for seed in 0..50u64 {
                let d = p.delay(attempt, seed).as_secs_f64();
                assert!(d >= nominal * 0.75 - 1e-9 && d <= (nominal * 1.25).min(60.0) + 1e-9, "attempt {attempt}: {d}");
            }
        }
        assert_eq!(p.delay(3, 7), p.delay(3, 7), "deterministic for a seed");
        let spread: std::collections::HashSet<u128> = (0..20).map(|s| p.delay(2, s).as_nanos()).collect();
        assert!(spread.len() > 10, "jitter spreads retries");
    }

    #[test]
    fn fixed_backoff_is_exact() {
        let p = BackoffPolicy::fixed(Duration::from_secs(2), 2.0, Duration::from_secs(4));
        assert_eq!(p.delay(1, 99), Duration::from_secs(2));
        assert_eq!(p.delay(2, 99), Duration::from_secs(4));
        assert_eq!(p.delay(9, 99), Duration::from_secs(4));
    }

    #[test]
    fn validation_names_the_problem() {
        assert_eq!(NewTask::new("  ").def.validate().unwrap_err(), "title is empty");
        assert!(NewTask::new("x").max_attempts(0).def.validate().unwrap_err().contains("max_attempts"));
        assert!(NewTask::new("x").concurrency("k", 0).def.validate().is_err());
        let huge = Value::String("x".repeat(MAX_TASK_PAYLOAD_BYTES + 1));
        assert!(NewTask::new("x").input(huge).def.validate().unwrap_err().contains("over the"));
        assert!(NewTask::new("ok").def.validate().is_ok());
    }
}
