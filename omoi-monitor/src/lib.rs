//! # omoi-monitor
//!
//! Monitoring and steering: a heartbeat monitor (missed heartbeats → degraded → failed → leased
//! tasks reclaimed), a rule-based stuck detector over agent trajectories, a guardian that scores
//! each agent's alignment and steers it by numeric thresholds, and a conductor that measures the
//! coherence of the whole system and finds duplicate agents.
//!
//! Every steer goes through one [`Steerer`] (held while unacknowledged, one per cooldown,
//! escalating when ignored) and is recorded as a durable intervention that the agent loop reads
//! between turns, in whatever process it runs.

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
