//! # omoi-benches
//!
//! Benchmarks for omoi, kept out of the library crates' dependency graphs: criterion
//! micro-benchmarks (`cargo bench -p omoi-benches`) and, with the storage issue, the queue
//! throughput harness that prints one JSON line per run.
