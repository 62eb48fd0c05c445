//! Hostile stack counts: a program that keeps one 32-byte block from each of
//! 2^20 distinct call paths (20 levels of two functions, `frames(32)`). The
//! stack table stops at its cap, stacks past it go to one visible
//! `[other stacks]` site, nothing is lost, and `tracker_memory()` stays under
//! a stated bound. Before the cap this took 64-73 s to snapshot and 399 MiB
//! of tracker memory. Runs as a child under a deadline (`harness = false`);
//! times are printed, never asserted.

mod common;

use leaktrace::{Config, GroupBy, OTHER_STACKS};
use std::hint::black_box;
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
    let by_tb = snap.statistics(GroupBy::Traceback);
    let stats_took = t.elapsed();
    println!(
        "hostile_stacks: {paths} blocks in {allocated:?}; tracker {} MiB; snapshot in {snapped:?} ({} traces); statistics in {stats_took:?}",
        tracker >> 20,
        snap.traces.len()
    );
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
    drop((by_line, by_tb));
    let end = leaktrace::take_snapshot("freed");
    // The table is full: what the test allocates from new stacks since
    // (the statistics) also went under [other stacks]; the million are gone.
    let left =
        end.statistics(GroupBy::Line).iter().find(|s| s.location.function == OTHER_STACKS).map_or(0, |s| s.count);
    assert!(left < 10_000, "{left} blocks still under [other stacks]");
}
