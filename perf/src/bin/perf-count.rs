//! Counts what the workload asks of the allocator (calls and bytes), on
//! System, to describe the workload in the report. Not timed.

use leaktrace_perf::{params_from_env, result_line, workload};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static REALLOCS: AtomicU64 = AtomicU64::new(0);
static FREES: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments and
// returns its result unchanged; the counters touch no allocated memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(layout.size() as u64, Relaxed);
        // SAFETY: the caller's promises for `alloc` are `System`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(layout.size() as u64, Relaxed);
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        FREES.fetch_add(1, Relaxed);
        // SAFETY: `ptr` came from `System` with `layout`, as the caller promised.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        REALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(new_size.saturating_sub(layout.size()) as u64, Relaxed);
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn main() {
    let (params, rest) = params_from_env("perf-count [--threads N] [--scale F]");
    if !rest.is_empty() {
        eprintln!("error: unexpected arguments {rest:?}");
        std::process::exit(2);
    }
    let before = (ALLOCS.load(Relaxed), REALLOCS.load(Relaxed), FREES.load(Relaxed), BYTES.load(Relaxed));
    let out = workload::run(&params);
    let after = (ALLOCS.load(Relaxed), REALLOCS.load(Relaxed), FREES.load(Relaxed), BYTES.load(Relaxed));
    let blocks = out.retained.blocks();
    drop(out.retained);
    println!(
        "{}",
        result_line(
            "count",
            &params,
            out.wall,
            out.checksum,
            &[
                ("allocs", (after.0 - before.0).to_string()),
                ("reallocs", (after.1 - before.1).to_string()),
                ("frees", (after.2 - before.2).to_string()),
                ("bytes", (after.3 - before.3).to_string()),
                ("live_blocks", blocks.to_string()),
            ]
        )
    );
}
