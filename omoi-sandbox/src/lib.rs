//! # omoi-sandbox
//!
//! Sandbox adapters implementing [`SandboxProvider`](omoi_core::SandboxProvider): a local
//! process sandbox (a workspace directory and process groups; no isolation, for trusted and
//! development use), Docker containers through the Engine API, and Daytona over REST.
//!
//! This crate is filled by the execution issue; today it holds only this description.
