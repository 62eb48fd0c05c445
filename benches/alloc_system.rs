//! The baseline for `alloc_modes`: the same alloc+free pairs and threads on
//! plain `System`, no tracker installed.
//!
//! `cargo bench --bench alloc_system` (or `perf-criterion`, which runs both
//! benches and writes reports/criterion.md).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::alloc::{alloc, dealloc, Layout, System};
use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOC: System = System;

const SIZES: [usize; 3] = [16, 1024, 64 * 1024];
/// Block size of the thread benchmarks.
const THREAD_SIZE: usize = 64;

/// One allocation and its free, through the global allocator.
#[inline(always)]
fn pair(layout: Layout) {
    // SAFETY: `layout` has a non-zero size; the block is freed with the
    // layout it was allocated with, and only if the allocation succeeded.
    unsafe {
        let p = black_box(alloc(layout));
        if !p.is_null() {
            dealloc(p, layout);
        }
    }
}

/// `iters` pairs on each of `threads` threads at once; the time from the
/// first thread's start to the last thread's end. The threads time
/// themselves: on a machine with as many cores as threads, a timing thread
/// of its own might not run until a worker is done.
fn pairs_on_threads(threads: usize, iters: u64, layout: Layout) -> Duration {
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                let start = Instant::now();
                for _ in 0..iters {
                    pair(layout);
                }
                (start, Instant::now())
            })
        })
        .collect();
    let spans: Vec<(Instant, Instant)> = handles.into_iter().map(|h| h.join().expect("bench thread")).collect();
    let start = spans.iter().map(|s| s.0).min().expect("a thread");
    let end = spans.iter().map(|s| s.1).max().expect("a thread");
    end - start
}

fn benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("pair");
    for size in SIZES {
        let layout = Layout::from_size_align(size, 8).expect("layout");
        g.throughput(Throughput::Elements(1));
        g.bench_with_input(BenchmarkId::new("system", size), &layout, |b, &l| b.iter(|| pair(l)));
    }
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
