//! # omoi-discovery
//!
//! Discovery branching: an agent that finds new work while executing a task (a bug, a missing
//! requirement, a security issue, …) records a discovery, which spawns a branch task in any
//! phase, deduplicated by hash and embedding similarity and bounded per source task, per spec and
//! by cooldown so it can never run away.
//!
//! This crate is filled by a later issue; today it holds only this description.
