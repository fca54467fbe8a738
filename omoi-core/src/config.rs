//! Every threshold in one typed, serde-(de)serializable config, with OmoiOS's values as
//! defaults (where OmoiOS had no value, ours is noted).
//!
//! Durations are written in humantime form (`"30s"`, `"15m"`). Every section and field has a
//! default, so a config file names only what it changes; unknown fields are rejected so a typo
//! is an error, not a silently ignored setting.
//!
//! ```
//! use std::time::Duration;
//! use omoi_core::config::OmoiConfig;
//!
//! let cfg: OmoiConfig = serde_json::from_str(r#"{"queue": {"max_attempts": 5}, "heartbeat": {"ttl_running": "20s"}}"#).unwrap();
//! assert_eq!(cfg.queue.max_attempts, 5);
//! assert_eq!(cfg.heartbeat.ttl_running, Duration::from_secs(20));
//! assert_eq!(cfg.heartbeat.ttl_idle, Duration::from_secs(30)); // default kept
//! cfg.validate().unwrap();
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::agent::AgentKind;
use crate::memory::{HybridParams, RerankWeights};
use crate::state::{AgentStatus, SpecPhase};
use crate::task::BackoffPolicy;

const fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// The whole configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct OmoiConfig {
    /// Task queue: retries, leases, polling.
    pub queue: QueueConfig,
    /// Agent heartbeats.
    pub heartbeat: HeartbeatConfig,
    /// Spec pipeline.
    pub spec: SpecConfig,
    /// Agent execution budgets.
    pub exec: ExecConfig,
    /// Discovery branching.
    pub discovery: DiscoveryConfig,
    /// Memory search.
    pub memory: MemoryConfig,
    /// Guardian, conductor, stuck detection.
    pub monitor: MonitorConfig,
    /// Sandbox sizing and cleanup. `cpus`, `memory_mib`, `pids` and `create_timeout` are what the
    /// Docker adapter applies by default (`DockerSandboxProviderBuilder::config` in
    /// `omoi-sandbox`). (No disk quota: Docker enforces one only on some storage drivers.)
    pub sandbox: SandboxConfig,
}

/// A config value that makes no sense, named by its dotted path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid config `{field}`: {reason}")]
pub struct ConfigError {
    /// Dotted path of the field, e.g. `heartbeat.missed_failed`.
    pub field: &'static str,
    /// What is wrong.
    pub reason: String,
}

impl OmoiConfig {
    /// Checks cross-field consistency and ranges.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |field, reason: &str| Err(ConfigError { field, reason: reason.to_owned() });
        let unit = |field, v: f64| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(ConfigError { field, reason: format!("{v} is not within 0..=1") })
            }
        };
        if self.queue.max_attempts == 0 {
            return err("queue.max_attempts", "must be at least 1");
        }
        self.queue.backoff.validate().map_err(|reason| ConfigError { field: "queue.backoff", reason })?;
        check_lease_renewal(self.queue.lease_ttl, self.queue.lease_renew_every)?;
        if self.queue.claim_batch == 0 {
            return err("queue.claim_batch", "must be at least 1");
        }
        if self.heartbeat.missed_degraded == 0 || self.heartbeat.missed_failed <= self.heartbeat.missed_degraded {
            return err("heartbeat.missed_failed", "must exceed heartbeat.missed_degraded, which must be at least 1");
        }
        if self.spec.max_attempts == 0 {
            return err("spec.max_attempts", "must be at least 1");
        }
        unit("spec.pass_threshold", self.spec.pass_threshold)?;
        unit("spec.dedup.spec", self.spec.dedup.spec)?;
        unit("spec.dedup.requirement", self.spec.dedup.requirement)?;
        unit("spec.dedup.task", self.spec.dedup.task)?;
        unit("discovery.dedup_similarity", self.discovery.dedup_similarity)?;
        unit("memory.similarity_threshold", self.memory.similarity_threshold)?;
        unit("memory.dedup_similarity", self.memory.dedup_similarity)?;
        unit("memory.rerank.stale_factor", self.memory.rerank.stale_factor)?;
        unit("monitor.steering.guidance_below", self.monitor.steering.guidance_below)?;
        let s = &self.monitor.steering;
        if !(s.emergency_below <= s.correction_below && s.correction_below <= s.guidance_below) {
            return err("monitor.steering", "thresholds must satisfy emergency <= correction <= guidance");
        }
        let c = &self.monitor.coherence;
        if !(c.critical_below <= c.warning_below && c.warning_below <= c.optimal_above) {
            return err("monitor.coherence", "thresholds must satisfy critical <= warning <= optimal");
        }
        if self.memory.hybrid.rrf.k < 0.0 {
            return err("memory.hybrid.rrf.k", "must not be negative");
        }
        Ok(())
    }
}

/// Refuses a lease renewal period that is not well inside the lease: a renewal must be able to
/// fail once and still land before the lease lapses, so `renew_every` is at most half of `ttl`
/// (and not zero).
///
/// ```
/// use std::time::Duration;
/// use omoi_core::config::check_lease_renewal;
///
/// assert!(check_lease_renewal(Duration::from_secs(60), Duration::from_secs(20)).is_ok());
/// let e = check_lease_renewal(Duration::from_secs(60), Duration::from_secs(45)).unwrap_err();
/// assert_eq!(e.field, "queue.lease_renew_every");
/// ```
pub fn check_lease_renewal(ttl: Duration, renew_every: Duration) -> Result<(), ConfigError> {
    if renew_every.is_zero() || renew_every.saturating_mul(2) > ttl {
        return Err(ConfigError {
            field: "queue.lease_renew_every",
            reason: format!(
                "{renew_every:?} is not well inside the lease of {ttl:?}: renew at least twice per lease (and not every 0 s)"
            ),
        });
    }
    Ok(())
}

/// Task queue settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct QueueConfig {
    /// Attempts per task before it is dead-lettered. OmoiOS `max_retries`: 3.
    pub max_attempts: u32,
    /// Delay between attempts. OmoiOS legacy worker: 1 s · 2ⁿ ± 25 %, capped at 60 s.
    pub backoff: BackoffPolicy,
    /// Lease length. OmoiOS reclaimed a claim after 60 s.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub lease_ttl: Duration,
    /// How often a worker renews its leases; well inside `lease_ttl` (ours: a third of it).
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub lease_renew_every: Duration,
    /// Tasks claimed per round trip (ours).
    pub claim_batch: usize,
    /// Polling backstop when no event wakes an idle worker. OmoiOS polled every 1 s.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub poll_interval: Duration,
    /// How often expired leases are swept. OmoiOS stale sweep: 15 s.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub reclaim_interval: Duration,
    /// A task waiting this long is boosted one priority level. OmoiOS: score floor after 7200 s.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "Option<String>")]
    pub aging_after: Option<Duration>,
    /// Leased tasks per project at once. OmoiOS `MAX_CONCURRENT_TASKS_PER_PROJECT`: 5.
    pub max_concurrent_per_project: u32,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            backoff: BackoffPolicy::default(),
            lease_ttl: secs(60),
            lease_renew_every: secs(20),
            claim_batch: 16,
            poll_interval: secs(1),
            reclaim_interval: secs(15),
            aging_after: Some(secs(7200)),
            max_concurrent_per_project: 5,
        }
    }
}

/// Heartbeat TTLs and miss thresholds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct HeartbeatConfig {
    /// TTL of an idle agent. OmoiOS: 30 s.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub ttl_idle: Duration,
    /// TTL of a running agent. OmoiOS: 15 s.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub ttl_running: Duration,
    /// TTL of guardian and conductor agents. OmoiOS: 60 s.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub ttl_monitor: Duration,
    /// A spawning agent must send its first heartbeat within this. OmoiOS: 60 s.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub first_heartbeat_within: Duration,
    /// Missed TTL periods that make an agent degraded. OmoiOS: 2.
    pub missed_degraded: u32,
    /// Missed TTL periods that make an agent failed (its tasks are reclaimed). OmoiOS: 3.
    pub missed_failed: u32,
    /// How often the heartbeat monitor checks. OmoiOS: 10 s.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub check_interval: Duration,
    /// Grace period for a graceful stop. OmoiOS: 10 s.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub graceful_stop: Duration,
}

impl Default for HeartbeatConfig {
    fn default() -> Self {
        Self {
            ttl_idle: secs(30),
            ttl_running: secs(15),
            ttl_monitor: secs(60),
            first_heartbeat_within: secs(60),
            missed_degraded: 2,
            missed_failed: 3,
            check_interval: secs(10),
            graceful_stop: secs(10),
        }
    }
}

impl HeartbeatConfig {
    /// The TTL that applies to an agent of `kind` in `status`.
    pub fn ttl_for(&self, kind: AgentKind, status: AgentStatus) -> Duration {
        match (kind, status) {
            (AgentKind::Guardian | AgentKind::Conductor, _) => self.ttl_monitor,
            (_, AgentStatus::Spawning) => self.first_heartbeat_within,
            (_, AgentStatus::Running) => self.ttl_running,
            _ => self.ttl_idle,
        }
    }
}

/// Similarity thresholds above which two items are duplicates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct DedupThresholds {
    /// Specs. OmoiOS: 0.92.
    pub spec: f64,
    /// Requirements. OmoiOS: 0.88.
    pub requirement: f64,
    /// Tasks. OmoiOS: 0.85.
    pub task: f64,
}

impl Default for DedupThresholds {
    fn default() -> Self {
        Self { spec: 0.92, requirement: 0.88, task: 0.85 }
    }
}

/// Spec pipeline settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SpecConfig {
    /// Attempts per phase. OmoiOS: 3.
    pub max_attempts: u32,
    /// Delay after the first failed attempt, doubling after each. OmoiOS: 2 s, 4 s.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub retry_base_delay: Duration,
    /// Evaluator score at which a phase passes. OmoiOS: 0.7.
    pub pass_threshold: f64,
    /// Wall time per phase. OmoiOS: 900 s.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub phase_timeout: Duration,
    /// Model turns per agentic phase. OmoiOS: 65 (the spawner raised it to 150).
    pub max_turns: u32,
    /// Cost budget per spec in USD. OmoiOS: $10 (spawner: $50).
    pub max_cost_usd: f64,
    /// Token budget per spec (ours: none by default).
    pub max_tokens: Option<u64>,
    /// Characters of earlier phases' output included in a prompt. OmoiOS ContextService: ~2000
    /// per phase; ours bounds the total.
    pub prompt_context_chars: usize,
    /// Phases that wait for human approval after passing (ours: none by default).
    pub approval_gates: Vec<SpecPhase>,
    /// Time a gate waits before timing out. OmoiOS: 1800 s.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub approval_timeout: Duration,
    /// Duplicate thresholds.
    pub dedup: DedupThresholds,
}

impl Default for SpecConfig {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            retry_base_delay: secs(2),
            pass_threshold: 0.7,
            phase_timeout: secs(900),
            max_turns: 65,
            max_cost_usd: 10.0,
            max_tokens: None,
            prompt_context_chars: 12_000,
            approval_gates: Vec::new(),
            approval_timeout: secs(1800),
            dedup: DedupThresholds::default(),
        }
    }
}

/// Budgets for one task execution by an agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ExecConfig {
    /// Model turns per execution. OmoiOS continuous mode: 10 iterations.
    pub max_turns: u32,
    /// Cost per execution in USD. OmoiOS: $20.
    pub max_cost_usd: f64,
    /// Tokens per execution (ours: none by default).
    pub max_tokens: Option<u64>,
    /// Wall time per execution. OmoiOS: 3600 s.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub max_wall_time: Duration,
    /// Consecutive tool errors before giving up. OmoiOS: 3.
    pub max_consecutive_errors: u32,
    /// Validation → revision rounds before the task fails. OmoiOS: 3.
    pub max_validation_iterations: u32,
    /// Failed reviews before a diagnostic is spawned. OmoiOS: 2.
    pub diagnostic_after_failed_reviews: u32,
    /// Timeout of one sandbox command (ours).
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub command_timeout: Duration,
    /// Bytes kept per output stream of a command (ours: 64 KiB).
    pub output_limit: usize,
}

impl Default for ExecConfig {
    fn default() -> Self {
        Self {
            max_turns: 10,
            max_cost_usd: 20.0,
            max_tokens: None,
            max_wall_time: secs(3600),
            max_consecutive_errors: 3,
            max_validation_iterations: 3,
            diagnostic_after_failed_reviews: 2,
            command_timeout: secs(120),
            output_limit: 64 * 1024,
        }
    }
}

/// Discovery branching limits: every way a discovery can spawn work is bounded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct DiscoveryConfig {
    /// Embedding cosine similarity at or above which a discovery duplicates an open discovery or
    /// an unfinished task of the same spec and phase. OmoiOS diagnostics: 0.90
    /// (`TaskDeduplicationService(similarity_threshold=0.90)`; its general task dedup used 0.85).
    pub dedup_similarity: f64,
    /// Branch tasks one source task may spawn (ours: 5).
    pub max_per_source_task: u32,
    /// Branch tasks per spec (ours: 50).
    pub max_per_spec: u32,
    /// Minimum time between two branches from the same source task. OmoiOS diagnostics: 60 s.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub cooldown: Duration,
    /// Consecutive failed branches before spawning stops. OmoiOS diagnostics: 3.
    pub max_consecutive_failures: u32,
    /// Branch depth (a branch of a branch of …) allowed (ours: 3).
    pub max_depth: u32,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        Self {
            dedup_similarity: 0.90,
            max_per_source_task: 5,
            max_per_spec: 50,
            cooldown: secs(60),
            max_consecutive_failures: 3,
            max_depth: 3,
        }
    }
}

/// Memory search settings.
///
/// There is no embedding-dimension setting: the embedder declares its dimension, the memory
/// store fixes its own (its builder's `dimensions`, else the first memory stored), and
/// assembling a memory service over both (`omoi_exec::memory::MemoryService::new`) refuses a
/// mismatch with [`StoreError::DimensionMismatch`](crate::StoreError::DimensionMismatch). A
/// third copy of the number here could only disagree with them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct MemoryConfig {
    /// Memories in a task's context at most (after re-ranking). OmoiOS: 5.
    pub top_k: usize,
    /// Minimum cosine similarity to the task for a memory to enter its context, unless it also
    /// matched the task's keywords. OmoiOS: 0.7.
    pub similarity_threshold: f64,
    /// Fusion: k = 60, weights 0.6/0.4, a missing item ranked at len + 10, 2·top_k candidates.
    pub hybrid: HybridParams,
    /// How retrieved memories are re-ranked for a task's context.
    pub rerank: RerankWeights,
    /// Cosine similarity at which a new memory reinforces an existing one of the same kind
    /// instead of being stored. Hephaestus: 0.95.
    pub dedup_similarity: f64,
    /// Tokens (about 4 characters each) the memories in a task's context may take; the least
    /// relevant are left out first.
    pub context_tokens: usize,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        Self {
            top_k: 5,
            similarity_threshold: 0.7,
            hybrid: HybridParams::default(),
            rerank: RerankWeights::default(),
            dedup_similarity: 0.95,
            context_tokens: 1500,
        }
    }
}

/// Numeric steering thresholds on the guardian's alignment score (OmoiOS let the model decide;
/// ours are numbers).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SteeringThresholds {
    /// Below this, send guidance.
    pub guidance_below: f64,
    /// Below this, send a correction.
    pub correction_below: f64,
    /// Below this, intervene as an emergency (pause or stop).
    pub emergency_below: f64,
}

impl Default for SteeringThresholds {
    fn default() -> Self {
        Self { guidance_below: 0.7, correction_below: 0.5, emergency_below: 0.3 }
    }
}

/// Conductor coherence status thresholds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct CoherenceThresholds {
    /// Critical below. OmoiOS: 0.3.
    pub critical_below: f64,
    /// Warning below. OmoiOS: 0.5.
    pub warning_below: f64,
    /// Optimal above. OmoiOS: 0.8.
    pub optimal_above: f64,
    /// Duplicate agents above this fraction of all agents make the system inefficient. OmoiOS: 0.3.
    pub inefficient_duplicate_fraction: f64,
    /// Similarity at which the model confirms two agents duplicate each other. OmoiOS: 0.7.
    pub duplicate_similarity: f64,
    /// Embedding similarity that makes a pair a duplicate candidate for the model (ours).
    pub duplicate_prefilter: f64,
    /// Weights of the coherence score's terms.
    pub weights: CoherenceWeights,
}

/// Weights of the conductor's coherence score: `mean alignment − unaligned·(unaligned/n) −
/// needs_steering·(needing steering/n) + phase_diversity·(distinct phases/n) +
/// load_balance·(1 − variance/mean² of tasks per agent)`, clamped to 0–1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct CoherenceWeights {
    /// Penalty per unaligned agent (alignment below the correction threshold). OmoiOS: 0.2.
    pub unaligned: f64,
    /// Penalty per agent needing steering (below the guidance threshold). OmoiOS code: 0.3 (docs: 0.1).
    pub needs_steering: f64,
    /// Bonus for distinct phases worked on. OmoiOS: 0.1.
    pub phase_diversity: f64,
    /// Bonus for an even load across agents. OmoiOS: 0.1.
    pub load_balance: f64,
}

impl Default for CoherenceWeights {
    fn default() -> Self {
        Self { unaligned: 0.2, needs_steering: 0.3, phase_diversity: 0.1, load_balance: 0.1 }
    }
}

impl Default for CoherenceThresholds {
    fn default() -> Self {
        Self {
            critical_below: 0.3,
            warning_below: 0.5,
            optimal_above: 0.8,
            inefficient_duplicate_fraction: 0.3,
            duplicate_similarity: 0.7,
            duplicate_prefilter: 0.8,
            weights: CoherenceWeights::default(),
        }
    }
}

/// Rule-based stuck detection over an agent's trajectory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct StuckRules {
    /// The same action with the same result this many times in a row.
    pub same_action_repeats: u32,
    /// The same failing action this many times.
    pub same_failure_repeats: u32,
    /// The same message this many times.
    pub same_message_repeats: u32,
    /// Window (steps) in which an A/B/A/B oscillation is detected.
    pub oscillation_window: u32,
    /// No progress for this long.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub no_progress_for: Duration,
    /// Only the newest this many trajectory items (after the last steering) are examined.
    /// OpenHands SDK: 20 events.
    pub window: u32,
    /// Context-window errors within the window that count as stuck (OpenHands V0 used 10
    /// condensations; ours counts hard errors, so fewer).
    pub context_window_errors: u32,
}

impl Default for StuckRules {
    fn default() -> Self {
        Self {
            same_action_repeats: 4,
            same_failure_repeats: 3,
            same_message_repeats: 3,
            oscillation_window: 6,
            no_progress_for: secs(600),
            window: 20,
            context_window_errors: 3,
        }
    }
}

/// Monitoring loop settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct MonitorConfig {
    /// Guardian analysis interval. OmoiOS: 60 s.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub guardian_interval: Duration,
    /// Agents analysed at once. OmoiOS: 5.
    pub guardian_max_concurrent: usize,
    /// Agents younger than this are not analysed. Hephaestus: 60 s.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub guardian_min_agent_age: Duration,
    /// Past analyses given to the guardian. OmoiOS: 10.
    pub guardian_history: usize,
    /// Characters of compacted trajectory given to the guardian, newest kept (ours: 8000, about
    /// 2000 tokens; OmoiOS cut the agent output to 2000 characters).
    pub guardian_trajectory_chars: usize,
    /// Conductor interval. OmoiOS: 300 s.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub conductor_interval: Duration,
    /// The conductor alerts when the mean known alignment falls below this. OmoiOS: 0.3 (its
    /// separate 30 s health loop is the conductor's check here).
    pub alert_mean_alignment_below: f64,
    /// Send interventions (OmoiOS: off, so they were recorded but never sent; ours: on).
    pub auto_steering: bool,
    /// Steering thresholds.
    pub steering: SteeringThresholds,
    /// Coherence thresholds.
    pub coherence: CoherenceThresholds,
    /// Stuck detection rules.
    pub stuck: StuckRules,
    /// How often the stuck detector reads new trajectory events (ours: 10 s).
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub stuck_interval: Duration,
    /// At most one steer per agent per this long; a steer is also held while the previous one is
    /// unacknowledged. Hephaestus: 5 min (written, never called).
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub steer_cooldown: Duration,
    /// Steers of one severity the agent may ignore (it is steered again for the same task)
    /// before the next one escalates: guidance → correction → emergency stop (ours: 1).
    pub escalate_after_ignored: u32,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        Self {
            guardian_interval: secs(60),
            guardian_max_concurrent: 5,
            guardian_min_agent_age: secs(60),
            guardian_history: 10,
            guardian_trajectory_chars: 8000,
            conductor_interval: secs(300),
            alert_mean_alignment_below: 0.3,
            auto_steering: true,
            steering: SteeringThresholds::default(),
            coherence: CoherenceThresholds::default(),
            stuck: StuckRules::default(),
            stuck_interval: secs(10),
            steer_cooldown: secs(300),
            escalate_after_ignored: 1,
        }
    }
}

/// Sandbox sizing and cleanup. `cpus`, `memory_mib`, `pids` and `create_timeout` are what the
/// Docker adapter applies by default (`DockerSandboxProviderBuilder::config` in
/// `omoi-sandbox`). (No disk quota: Docker enforces one only on some storage drivers.)
///
/// A sandbox lives only while its task is leased by its agent: the sandbox reaper destroys it
/// once the lease is gone and the heartbeat monitor once the agent fails, and a task's
/// `timeout` bounds its run. So there are no idle, dead, stuck or age limits here (OmoiOS had
/// them for long-lived sandboxes); a config naming them is refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SandboxConfig {
    /// CPUs per sandbox. OmoiOS: 2 (cap 4).
    pub cpus: f64,
    /// Memory per sandbox in MiB. OmoiOS: 4096 (cap 8192).
    pub memory_mib: u64,
    /// Processes per sandbox (ours: 512).
    pub pids: u64,
    /// Creation timeout. OmoiOS: 120 s.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub create_timeout: Duration,
    /// How often the sandbox reaper sweeps. OmoiOS: 30 s.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub cleanup_interval: Duration,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self { cpus: 2.0, memory_mib: 4096, pids: 512, create_timeout: secs(120), cleanup_interval: secs(30) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_omoios_numbers_and_valid() {
        let c = OmoiConfig::default();
        c.validate().unwrap();
        assert_eq!(c.queue.max_attempts, 3);
        assert_eq!(c.heartbeat.ttl_idle, secs(30));
        assert_eq!(c.heartbeat.ttl_running, secs(15));
        assert_eq!((c.heartbeat.missed_degraded, c.heartbeat.missed_failed), (2, 3));
        assert_eq!(c.spec.pass_threshold, 0.7);
        assert_eq!(c.memory.hybrid.rrf.k, 60.0);
        assert_eq!((c.memory.hybrid.vector_weight, c.memory.hybrid.keyword_weight), (0.6, 0.4));
        assert_eq!(c.discovery.dedup_similarity, 0.90);
        assert_eq!(c.spec.dedup.spec, 0.92);
    }

    #[test]
    fn round_trips_through_json_with_humantime_durations() {
        let c = OmoiConfig::default();
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["heartbeat"]["ttl_idle"], "30s");
        assert_eq!(serde_json::from_value::<OmoiConfig>(json).unwrap(), c);
    }

    #[test]
    fn unknown_fields_and_bad_values_are_named() {
        let err = serde_json::from_str::<OmoiConfig>(r#"{"queue": {"max_atempts": 5}}"#).unwrap_err();
        assert!(err.to_string().contains("max_atempts"), "{err}");
        // Removed: the embedder and the store own the dimension (checked when assembled).
        let err = serde_json::from_str::<OmoiConfig>(r#"{"memory": {"embedding_dimensions": 384}}"#).unwrap_err();
        assert!(err.to_string().contains("embedding_dimensions"), "{err}");
        let mut c = OmoiConfig::default();
        c.heartbeat.missed_failed = 2;
        assert_eq!(c.validate().unwrap_err().field, "heartbeat.missed_failed");
        let mut c = OmoiConfig::default();
        c.spec.pass_threshold = 1.5;
        assert_eq!(c.validate().unwrap_err().field, "spec.pass_threshold");
        let mut c = OmoiConfig::default();
        c.queue.lease_renew_every = c.queue.lease_ttl;
        assert_eq!(c.validate().unwrap_err().field, "queue.lease_renew_every");
    }

    #[test]
    fn settings_nothing_read_are_gone_and_refused_when_named() {
        for (section, field) in [
            ("monitor", "ticket_blocked_after"),
            ("monitor", "ticket_check_interval"),
            ("sandbox", "idle_after"),
            ("sandbox", "dead_after"),
            ("sandbox", "stuck_running_after"),
            ("sandbox", "stuck_between_phases_after"),
            ("sandbox", "max_age"),
            ("heartbeat", "max_restarts_per_hour"),
            ("heartbeat", "restart_cooldown"),
        ] {
            let json = format!(r#"{{"{section}": {{"{field}": "1m"}}}}"#);
            let err = serde_json::from_str::<OmoiConfig>(&json).unwrap_err();
            assert!(err.to_string().contains(field), "{section}.{field}: {err}");
        }
    }

    #[test]
    fn ttl_depends_on_kind_and_status() {
        let h = HeartbeatConfig::default();
        assert_eq!(h.ttl_for(AgentKind::Worker, AgentStatus::Running), secs(15));
        assert_eq!(h.ttl_for(AgentKind::Worker, AgentStatus::Idle), secs(30));
        assert_eq!(h.ttl_for(AgentKind::Guardian, AgentStatus::Running), secs(60));
        assert_eq!(h.ttl_for(AgentKind::Worker, AgentStatus::Spawning), secs(60));
    }

    #[test]
    fn json_schema_is_generated() {
        let schema = serde_json::to_value(schemars::schema_for!(OmoiConfig)).unwrap();
        assert!(schema["properties"]["queue"].is_object());
    }
}
