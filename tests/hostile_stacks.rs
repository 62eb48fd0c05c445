//! Hostile stack counts: a program that keeps one 32-byte block from each of
//! 2^20 distinct call paths (20 levels of two functions, `frames(32)`). The
//! stack table stops at its cap, stacks past it go to one visible
//! `[other stacks]` site, nothing is lost, and `tracker_memory()` stays under
//! a stated bound. Before the cap this took 64-73 s to snapshot and 399 MiB
//! of tracker memory. Runs as a child under a deadline (`harness = false`);
//! times are printed, never asserted.
//!
//! It also measures what `statistics(GroupBy::Traceback)` and a
//! `compare_to(.., GroupBy::Traceback)` of that snapshot add to the
//! program's traced memory (their results are allocated, and traced, here):
//! their tracebacks share one frame table, so they cost a few bytes per
//! frame index, not a copy of every frame of every traceback (which cost
//! 5.3 GB for 2^20 stacks without the cap).

mod common;

use leaktrace::{Birth, Config, Frame, GroupBy, Statistic, StatisticDiff, OTHER_STACKS};
use std::hint::black_box;
use std::mem::size_of;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOC: leaktrace::TrackingAllocator = leaktrace::TrackingAllocator::system();

const LEVELS: u32 = 20;
const CAP: usize = 50_000;
/// The bound the README states for a table at its cap, with room for the
/// block table of a million live blocks.
const TRACKER_BOUND: usize = 256 << 20;

type Out = Vec<Box<[u8; 32]>>;

#[inline(always)]
fn step(depth: u32, path: u32, out: &mut Out) {
    if depth == 0 {
        out.push(Box::new([1u8; 32]));
        return;
    }
    // Two call sites per level: every path is a distinct stack.
    if path & 1 == 0 {
        a(depth - 1, path >> 1, out);
    } else {
        b(depth - 1, path >> 1, out);
    }
    black_box(&out);
}

#[inline(never)]
fn a(depth: u32, path: u32, out: &mut Out) {
    step(depth, path, out);
    black_box(depth);
}

#[inline(never)]
fn b(depth: u32, path: u32, out: &mut Out) {
    step(depth, path, out);
    black_box(depth);
}

fn main() -> ExitCode {
    common::run_as_child("hostile_stacks", "LEAKTRACE_HOSTILE_CHILD", Duration::from_secs(600), child)
}

fn child() {
    let paths = 1u32 << LEVELS;
    let mut out: Out = Vec::with_capacity(paths as usize);
    leaktrace::start(Config::default().frames(32).max_stacks(CAP));
    let early = leaktrace::take_snapshot("early");
    let t = Instant::now();
    for path in 0..paths {
        a(LEVELS, path, &mut out);
    }
    let allocated = t.elapsed();
    let tracker = leaktrace::tracker_memory();
    let t = Instant::now();
    let snap = leaktrace::take_snapshot("hostile");
    let snapped = t.elapsed();
    // Read before the statistics below: their results are the program's,
    // allocated (and traced) here.
    let current = leaktrace::traced_memory().current as u64;
    let t = Instant::now();
    let by_line = snap.statistics(GroupBy::Line);
    let stats_took = t.elapsed();
    let (by_tb, tb_took, tb_cost) = measured(|| snap.statistics(GroupBy::Traceback));
    let (diff, diff_took, diff_cost) = measured(|| snap.compare_to(&early, GroupBy::Traceback));
    println!(
        "hostile_stacks: {paths} blocks in {allocated:?}; tracker {} MiB; snapshot in {snapped:?} ({} traces); statistics in {stats_took:?}",
        tracker >> 20,
        snap.traces.len()
    );
    // The frame table of each call: the snapshot's frames (and, for the
    // diff, the older snapshot's not already in it).
    let (tb_table, diff_table) = (table_bytes(&snap.frames), table_bytes(&snap.frames) + table_bytes(&early.frames));
    let frames: usize = by_tb.iter().map(|s| s.traceback.len()).sum();
    // What the results cost with shared frames: each statistic, its
    // location's strings and births, 4 bytes per frame index (and the index
    // array's header), plus one frame table.
    let shared = |fixed: usize, location: &Frame, births: &[Birth], depth: usize| {
        fixed + frame_heap(location) + std::mem::size_of_val(births) + 4 * depth + 16
    };
    let tb_shared: usize = tb_table
        + by_tb
            .iter()
            .map(|s| shared(size_of::<Statistic>(), &s.location, &s.births, s.traceback.len()))
            .sum::<usize>();
    let diff_shared: usize = diff_table
        + diff
            .sites
            .iter()
            .map(|s| shared(size_of::<StatisticDiff>(), &s.location, &[], s.traceback.len()))
            .sum::<usize>();
    // What a copy of every frame of every traceback costs on top.
    let copied = |tb: &mut dyn Iterator<Item = &Frame>| tb.map(|f| size_of::<Frame>() + frame_heap(f)).sum::<usize>();
    let tb_copied: usize = by_tb.iter().map(|s| copied(&mut s.traceback.iter())).sum();
    let diff_copied: usize = diff.sites.iter().map(|s| copied(&mut s.traceback.iter())).sum();
    println!(
        "hostile_stacks: statistics(Traceback): {} stats, {frames} frames in {tb_took:?}: +{} KiB traced (peak +{} KiB; \
         {} KiB if shared, {} KiB more if every frame were copied)",
        by_tb.len(),
        tb_cost.0 >> 10,
        tb_cost.1 >> 10,
        tb_shared >> 10,
        tb_copied >> 10
    );
    println!(
        "hostile_stacks: compare_to(Traceback): {} sites in {diff_took:?}: +{} KiB traced (peak +{} KiB; \
         {} KiB if shared, {} KiB more if every frame were copied)",
        diff.sites.len(),
        diff_cost.0 >> 10,
        diff_cost.1 >> 10,
        diff_shared >> 10,
        diff_copied >> 10
    );
    // The bounds leave room for spare capacity (and, for the peak, the
    // grouping's hash table); a copy of the frames exceeds them many times
    // over (before the sharing: +19.3 MB kept, +38.5 MB at the peak, each).
    let (tb_bound, diff_bound) = (2 * tb_shared, 2 * diff_shared);
    assert!(tb_copied > 4 * tb_bound && diff_copied > 4 * diff_bound, "the bounds tell sharing from copying");
    assert!(tb_cost.0 < tb_bound, "statistics(Traceback) kept {} B, over {tb_bound} B", tb_cost.0);
    assert!(diff_cost.0 < diff_bound, "compare_to(Traceback) kept {} B, over {diff_bound} B", diff_cost.0);
    assert!(tb_cost.1 < 2 * tb_bound, "statistics(Traceback) peaked at +{} B, over {} B", tb_cost.1, 2 * tb_bound);
    assert!(
        diff_cost.1 < 2 * diff_bound,
        "compare_to(Traceback) peaked at +{} B, over {} B",
        diff_cost.1,
        2 * diff_bound
    );
    // The statistics of one call share one frame table.
    assert!(by_tb.iter().all(|s| s.traceback.shares_frames_with(&by_tb[0].traceback)));
    assert!(diff.sites.iter().all(|s| s.traceback.shares_frames_with(&diff.sites[0].traceback)));
    assert!(tracker < TRACKER_BOUND, "tracker memory {tracker} B");
    // Nothing is lost: every block is counted, at its site or under [other stacks].
    let blocks: u64 = snap.traces.iter().map(|t| t.count).sum();
    assert!(blocks >= paths as u64, "{blocks} blocks traced of {paths}");
    let other = by_line.iter().find(|s| s.location.function == OTHER_STACKS).expect("an [other stacks] site");
    assert!(other.count >= paths as u64 - CAP as u64, "{} blocks under [other stacks]", other.count);
    assert!(snap.traces.len() <= CAP + 1, "{} traces for a cap of {CAP}", snap.traces.len());
    assert!(by_tb.len() <= CAP + 1);
    assert_eq!(snap.totals.traced_bytes, current, "every traced byte is in the snapshot");
    drop(out);
    drop((by_line, by_tb, diff));
    let end = leaktrace::take_snapshot("freed");
    // The table is full: what the test allocates from new stacks since
    // (the statistics) also went under [other stacks]; the million are gone.
    let left =
        end.statistics(GroupBy::Line).iter().find(|s| s.location.function == OTHER_STACKS).map_or(0, |s| s.count);
    assert!(left < 10_000, "{left} blocks still under [other stacks]");
}

/// `f()`, how long it took, and what it added to traced memory: `(kept,
/// peak)` bytes.
fn measured<T>(f: impl FnOnce() -> T) -> (T, Duration, (usize, usize)) {
    let before = leaktrace::traced_memory().current;
    leaktrace::reset_peak();
    let t = Instant::now();
    let out = f();
    let took = t.elapsed();
    let after = leaktrace::traced_memory();
    (out, took, (after.current.saturating_sub(before), after.peak.saturating_sub(before)))
}

/// The heap bytes of one frame's strings.
fn frame_heap(f: &Frame) -> usize {
    f.function.len() + f.file.len() + f.path_abs.len()
}

/// The bytes of one table of frames.
fn table_bytes(frames: &[Frame]) -> usize {
    frames.iter().map(|f| size_of::<Frame>() + frame_heap(f)).sum()
}
