//! The baseline for `alloc_modes`: the same alloc+free pairs, realloc growth and threads on
//! plain `System`, no tracker installed.
//!
//! `cargo bench --bench alloc_system` (or `perf-criterion`, which runs both
//! benches and writes reports/criterion.md).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::alloc::{Layout, System};
use std::time::Duration;

mod common;

use common::{pair, pairs_on_threads, realloc_growth, GROW_TO, SIZES, THREAD_SIZE};

#[global_allocator]
static ALLOC: System = System;

fn benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("pair");
    for size in SIZES {
        let layout = Layout::from_size_align(size, 8).expect("layout");
        g.throughput(Throughput::Elements(1));
        g.bench_with_input(BenchmarkId::new("system", size), &layout, |b, &l| b.iter(|| pair(l)));
    }
    g.finish();

    let mut g = c.benchmark_group("grow");
    g.throughput(Throughput::Elements(1));
    g.bench_function(BenchmarkId::new("system", GROW_TO), |b| b.iter(realloc_growth));
    g.finish();

    let mut g = c.benchmark_group("threads");
    let layout = Layout::from_size_align(THREAD_SIZE, 8).expect("layout");
    for threads in [1usize, 2] {
        g.throughput(Throughput::Elements(threads as u64));
        g.bench_with_input(BenchmarkId::new("system", threads), &threads, |b, &t| {
            b.iter_custom(|iters| pairs_on_threads(t, iters, layout))
        });
    }
    g.finish();
}

criterion_group! {
    name = system;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = benches
}
criterion_main!(system);
