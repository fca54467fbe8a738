//! # omoi-benches
//!
//! Benchmarks for omoi, kept out of the library crates' dependency graphs. Each binary prints
//! one JSON line per run; `BENCHMARKS.md` holds the figures and the settings they were taken
//! with.
//!
//! - `worker_throughput`: the `Worker` end to end (claim, execute a no-op, complete) on the
//!   memory, SQLite and Postgres stores, independent tasks and a DAG.
//! - `throughput`: the store-level baseline (claim and `complete_many` called directly).
//! - `memory_search`: hybrid memory search latency and recall@10 against exact search.
//! - `cargo bench -p omoi-benches --bench algorithms`: criterion micro-benchmarks of the pure
//!   algorithms (DAG checks, ready sets, RRF fusion, EARS parsing).
