//! # omoi-monitor
//!
//! Monitoring and steering: a heartbeat monitor (missed heartbeats → degraded → failed → leased
//! tasks reclaimed), a rule-based stuck detector over agent trajectories, a guardian that scores
//! each agent's alignment and steers it by numeric thresholds, and a conductor that measures the
//! coherence of the whole system and finds duplicate agents.
//!
//! This crate is filled by a later issue; today it holds only this description.
