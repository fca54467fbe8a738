//! # omoi-monitor
//!
//! Readjustment: the monitors that watch running agents and steer them.
//!
//! | monitor | does | interval |
//! |---|---|---|
//! | [`HeartbeatMonitor`] | agents past their TTL → degraded → failed; a failed agent's tasks reclaimed at once, its sandboxes destroyed | `heartbeat.check_interval` |
//! | [`StuckMonitor`] | rule-based loop detection over each run's trajectory window ([`stuck`]) | `monitor.stuck_interval` |
//! | [`Guardian`] | a structured model analysis per run with new steps; thresholds decide the steer | `monitor.guardian_interval` |
//! | [`Conductor`] | system coherence and health; duplicate runs found and the less advanced stopped | `monitor.conductor_interval` |
//! | [`SandboxReaper`] | sandboxes whose task is no longer leased by their agent destroyed | `sandbox.cleanup_interval` |
//!
//! [`MonitoringLoop`] runs them all, each in its own task and isolated from the others. Every
//! steer goes through one [`Steerer`] (held while unacknowledged, one per cooldown, escalating
//! when ignored) and is recorded as a durable intervention that the agent loop reads between
//! turns, in whatever process it runs (`omoi_exec::agent::Mailboxes::durable`).

pub mod conductor;
pub mod guardian;
pub mod heartbeat;
pub mod monitoring_loop;
pub mod reaper;
mod steer;
pub mod stuck;
pub mod stuck_monitor;
mod text;
pub mod trajectory;

pub use conductor::{Assessment, Conductor};
pub use guardian::{Guardian, GuardianAnalysis};
pub use heartbeat::{HeartbeatMonitor, HeartbeatReport};
pub use monitoring_loop::{Check, LoopStats, MonitoringHandle, MonitoringLoop};
pub use reaper::SandboxReaper;
pub use steer::{SteerOutcome, Steerer};
pub use stuck::{StuckFinding, detect};
pub use stuck_monitor::{StuckMonitor, StuckReport};
pub use trajectory::{Trajectories, Trajectory};
