//! Micro-benchmarks of `TrackingAllocator` in each mode (issue 5):
//!
//! - `pair/{off,sampled,exact}/{16,1024,65536}`: one alloc+free pair;
//! - `grow/{off,sampled,exact}/65536`: one block grown by realloc from 16 B
//!   to 64 KiB (1 alloc, 12 reallocs, 1 free);
//! - `threads/{off,sampled,exact}/{1,2}`: 1 vs 2 threads doing pairs at
//!   once (time per pair on every thread, so equal times mean no
//!   contention);
//! - `snapshot/100000-blocks-1000-stacks`: `take_snapshot` with 100,000 live
//!   blocks allocated from 1,000 distinct stacks (the cold first snapshot,
//!   which resolves symbols, is timed once and printed).
//!
//! `off` is installed and stopped, `sampled` is 512 KiB. The baseline on
//! plain System is `alloc_system`; `perf-criterion` runs both and writes
//! reports/criterion.md.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput};
use leaktrace::{Config, Mode};
use std::alloc::Layout;
use std::hint::black_box;
use std::time::{Duration, Instant};

mod common;

use common::{pair, pairs_on_threads, realloc_growth, GROW_TO, SIZES, THREAD_SIZE};

#[global_allocator]
static ALLOC: leaktrace::TrackingAllocator = leaktrace::TrackingAllocator::system();

const MODES: [&str; 3] = ["off", "sampled", "exact"];

fn set_mode(mode: &str) {
    match mode {
        "off" => leaktrace::stop(),
        "sampled" => leaktrace::start(Config::default().mode(Mode::Sampled { mean_bytes: 512 * 1024 })),
        "exact" => leaktrace::start(Config::default()),
        _ => unreachable!("unknown mode {mode}"),
    }
    // One line per mode for perf-criterion's report.
    let capture = if leaktrace::is_tracing() { leaktrace::capture_method().as_str() } else { "none" };
    println!("LEAKTRACE-BENCH mode={mode} capture={capture}");
}

type Block = Box<[u8; 24]>;

/// One level of the fan-out: a distinct function per digit `K`, so each
/// path through the levels is a distinct stack of return addresses.
#[inline(never)]
fn hop<const K: usize>(path: usize, level: u32, per: usize, out: &mut Vec<Block>) -> usize {
    let r = fan(black_box(path), level, per, out);
    // Work after the call keeps it from becoming a tail call.
    black_box(r + K)
}

/// Allocates `per` blocks at the end of a path of `level` more hops chosen
/// by the decimal digits of `path`.
#[inline(never)]
fn fan(path: usize, level: u32, per: usize, out: &mut Vec<Block>) -> usize {
    if level == 0 {
        for i in 0..per {
            out.push(Box::new([i as u8; 24]));
        }
        return per;
    }
    let (digit, rest, l) = (path % 10, path / 10, level - 1);
    match digit {
        0 => hop::<0>(rest, l, per, out),
        1 => hop::<1>(rest, l, per, out),
        2 => hop::<2>(rest, l, per, out),
        3 => hop::<3>(rest, l, per, out),
        4 => hop::<4>(rest, l, per, out),
        5 => hop::<5>(rest, l, per, out),
        6 => hop::<6>(rest, l, per, out),
        7 => hop::<7>(rest, l, per, out),
        8 => hop::<8>(rest, l, per, out),
        _ => hop::<9>(rest, l, per, out),
    }
}

const SNAP_STACKS: usize = 1_000;
const SNAP_BLOCKS: usize = 100_000;

fn bench_pairs(c: &mut Criterion) {
    let mut g = c.benchmark_group("pair");
    for mode in MODES {
        set_mode(mode);
        for size in SIZES {
            let layout = Layout::from_size_align(size, 8).expect("layout");
            g.throughput(Throughput::Elements(1));
            g.bench_with_input(BenchmarkId::new(mode, size), &layout, |b, &l| b.iter(|| pair(l)));
        }
    }
    g.finish();
    leaktrace::stop();
}

fn bench_grow(c: &mut Criterion) {
    let mut g = c.benchmark_group("grow");
    for mode in MODES {
        set_mode(mode);
        g.throughput(Throughput::Elements(1));
        g.bench_function(BenchmarkId::new(mode, GROW_TO), |b| b.iter(realloc_growth));
    }
    g.finish();
    leaktrace::stop();
}

fn bench_threads(c: &mut Criterion) {
    let mut g = c.benchmark_group("threads");
    let layout = Layout::from_size_align(THREAD_SIZE, 8).expect("layout");
    for mode in MODES {
        set_mode(mode);
        for threads in [1usize, 2] {
            g.throughput(Throughput::Elements(threads as u64));
            g.bench_with_input(BenchmarkId::new(mode, threads), &threads, |b, &t| {
                b.iter_custom(|iters| pairs_on_threads(t, iters, layout))
            });
        }
    }
    g.finish();
    leaktrace::stop();
}

fn bench_snapshot(c: &mut Criterion) {
    set_mode("exact");
    let mut blocks: Vec<Block> = Vec::with_capacity(SNAP_BLOCKS);
    for path in 0..SNAP_STACKS {
        fan(path, 3, SNAP_BLOCKS / SNAP_STACKS, &mut blocks);
    }
    let t = Instant::now();
    let cold = leaktrace::take_snapshot("cold");
    let cold_s = t.elapsed().as_secs_f64();
    let trace_count = cold.traces.len();
    let big = cold.traces.iter().filter(|t| t.count >= (SNAP_BLOCKS / SNAP_STACKS) as u64).count();
    println!(
        "LEAKTRACE-BENCH snapshot_cold_ms={:.3} traces={} traces_with_100_blocks={} blocks={}",
        cold_s * 1e3,
        trace_count,
        big,
        cold.totals.blocks
    );
    if big < SNAP_STACKS {
        eprintln!("alloc_modes: only {big} traces hold {} blocks; want {SNAP_STACKS}", SNAP_BLOCKS / SNAP_STACKS);
    }
    drop(cold);
    let mut g = c.benchmark_group("snapshot");
    g.sample_size(10).sampling_mode(SamplingMode::Flat);
    g.bench_function("100000-blocks-1000-stacks", |b| b.iter(|| black_box(leaktrace::take_snapshot("bench"))));
    g.finish();
    drop(blocks);
    leaktrace::stop();
}

criterion_group! {
    name = modes;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench_pairs, bench_grow, bench_threads, bench_snapshot
}
criterion_main!(modes);
