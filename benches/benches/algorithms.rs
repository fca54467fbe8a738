//! Criterion micro-benchmarks of the pure algorithms: dependency-graph cycle check,
//! topological order and ready set at 10k, 100k and 1M tasks (throughput in tasks, so the
//! per-task cost reads directly), reciprocal rank fusion, and EARS parsing.
//!
//! `cargo bench -p omoi-benches --bench algorithms`

use std::collections::HashSet;
use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use omoi_core::dag::Dag;
use omoi_core::ears::EarsRequirement;
use omoi_core::rrf::{RankedList, RrfParams, fuse};

/// `n` tasks; task i depends on i-1 and i/2 (a chain with fan-out and fan-in everywhere). The
/// dependencies are handed over as an iterator, as the queue does, so only `Dag` allocates.
fn graph(n: u32) -> Dag<u32> {
    Dag::new((0..n).map(|i| (i, (i > 0).then(|| [i - 1, i / 2]).into_iter().flatten())))
        .expect("acyclic by construction")
}

fn dag(c: &mut Criterion) {
    let mut group = c.benchmark_group("dag");
    group.sample_size(10);
    for n in [10_000u32, 100_000, 1_000_000] {
        let g = graph(n);
        let half: HashSet<u32> = (0..n / 2).collect();
        group.throughput(Throughput::Elements(u64::from(n)));
        group.bench_with_input(BenchmarkId::new("build", n), &n, |b, &n| b.iter(|| black_box(graph(n))));
        group.bench_with_input(BenchmarkId::new("cycle_check", n), &g, |b, g| b.iter(|| black_box(g.find_cycle())));
        group.bench_with_input(BenchmarkId::new("topological_order", n), &g, |b, g| {
            b.iter(|| black_box(g.topological_order()))
        });
        group.bench_with_input(BenchmarkId::new("ready_set", n), &g, |b, g| {
            b.iter(|| black_box(g.ready(&half, |_| true)))
        });
    }
    group.finish();
}

fn rrf(c: &mut Criterion) {
    let mut group = c.benchmark_group("rrf");
    for n in [100usize, 10_000] {
        let vector: Vec<u32> = (0..n as u32).collect();
        let keyword: Vec<u32> = (0..n as u32).rev().step_by(2).collect();
        let lists = [RankedList::new(1.0, vector), RankedList::new(0.5, keyword)];
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("fuse_two_lists", n), &lists, |b, l| {
            b.iter(|| black_box(fuse(l, &RrfParams::default())))
        });
    }
    group.finish();
}

fn ears(c: &mut Criterion) {
    let texts = [
        "The system shall return a slug",
        "When a user submits the form, the system shall store the entry",
        "While offline, when a save is requested, the app shall not upload",
        "If the token is expired, then the API shall respond with 401",
        "Where the export feature is enabled, the system shall offer CSV download",
        "WHEN x the system SHALL y",
    ];
    c.bench_function("ears/parse_six_requirements", |b| {
        b.iter(|| {
            for t in &texts {
                let _ = black_box(EarsRequirement::parse(t));
            }
        })
    });
}

criterion_group!(benches, dag, rrf, ears);
criterion_main!(benches);
