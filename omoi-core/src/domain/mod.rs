//! Domain types: tasks, specs, tickets, agents, discoveries, memories and events.

pub mod access;
pub mod agent;
pub mod common;
pub mod discovery;
pub mod event;
pub mod intervention;
pub mod memory;
pub mod monitoring;
pub mod spec;
pub mod task;
pub mod ticket;
