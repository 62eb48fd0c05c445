//! A failing inner allocator. One that returns null at random, and one that
//! fails every allocation the tracker makes for itself: the program sees
//! exactly the inner allocator's failures on its own calls, the tracker
//! never aborts, a failed allocation is never counted, and a block the
//! tracker could not record is counted as untracked.
//!
//! Single-threaded (`harness = false`), so every byte the tracker counts
//! comes from the calls below.

use leaktrace::{Config, Mode};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};

/// What the inner allocator does: pass everything, fail at random, or fail
/// every call that is not the program's own.
static POLICY: AtomicU8 = AtomicU8::new(PASS);
const PASS: u8 = 0;
const RANDOM: u8 = 1;
const TRACKER: u8 = 2;
/// Program calls the inner allocator failed.
static PROGRAM_FAILURES: AtomicU64 = AtomicU64::new(0);
/// Tracker calls (nested in a program call) the inner allocator failed.
static TRACKER_FAILURES: AtomicU64 = AtomicU64::new(0);
static RNG: AtomicU64 = AtomicU64::new(0x9e37_79b9_7f4a_7c15);

thread_local! {
    /// Set by the program right before its own allocation call; the first
    /// inner call after it is the program's, any other one the tracker's.
    static PROGRAM_CALL: Cell<bool> = const { Cell::new(false) };
}

struct Flaky;

impl Flaky {
    fn fails(&self) -> bool {
        let program = PROGRAM_CALL.try_with(|c| c.replace(false)).unwrap_or(false);
        let fail = match POLICY.load(Relaxed) {
            RANDOM => {
                let mut x = RNG.load(Relaxed);
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                RNG.store(x, Relaxed);
                x % 5 == 0
            }
            TRACKER => !program,
            _ => false,
        };
        if fail {
            if program { &PROGRAM_FAILURES } else { &TRACKER_FAILURES }.fetch_add(1, Relaxed);
        }
        fail
    }
}

// SAFETY: forwards to `System` or returns null, which `GlobalAlloc` allows
// for `alloc`, `alloc_zeroed` and `realloc` (realloc leaves the old block).
unsafe impl GlobalAlloc for Flaky {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if self.fails() {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's layout, forwarded.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if self.fails() {
            return std::ptr::null_mut();
        }
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if self.fails() {
            return std::ptr::null_mut();
        }
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: leaktrace::TrackingAllocator<Flaky> = leaktrace::TrackingAllocator::new(Flaky);

/// The program's own allocation, through the global allocator.
fn program_alloc(layout: Layout) -> *mut u8 {
    PROGRAM_CALL.with(|c| c.set(true));
    // SAFETY: non-zero size; freed by the caller with the same layout.
    let p = unsafe { std::alloc::alloc(layout) };
    PROGRAM_CALL.with(|c| c.set(false));
    p
}

/// Allocates 3,000 blocks of distinct sizes from many stacks under `policy`,
/// checking each call, then frees them all.
fn run(policy: u8, mode: Mode) {
    // Allocated before tracing: the only traced blocks are the calls below.
    let mut held: Vec<(*mut u8, Layout)> = Vec::with_capacity(4000);
    leaktrace::start(Config::default().mode(mode).sample_seed(3));
    let (mut seen_nulls, mut ok) = (0u64, 0u64);
    PROGRAM_FAILURES.store(0, Relaxed);
    TRACKER_FAILURES.store(0, Relaxed);
    POLICY.store(policy, Relaxed);
    for i in 0..3000usize {
        let layout = Layout::from_size_align(16 + (i * 37) % 3000, 8).unwrap();
        let (before, untracked_before) = (leaktrace::traced_memory().current, leaktrace::untracked_blocks());
        // Many distinct stacks, so the stack table has to grow too.
        let p = match i % 3 {
            0 => program_alloc(layout),
            1 => std::hint::black_box(|| program_alloc(layout))(),
            _ => deeper(layout, i % 7),
        };
        let (after, untracked_after) = (leaktrace::traced_memory().current, leaktrace::untracked_blocks());
        if p.is_null() {
            seen_nulls += 1;
            assert_eq!(after, before, "a failed allocation is not counted (call {i})");
            assert_eq!(untracked_after, untracked_before, "nor untracked (call {i})");
        } else {
            ok += 1;
            if mode == Mode::Full {
                let recorded = after == before + layout.size() && untracked_after == untracked_before;
                let untracked = after == before && untracked_after == untracked_before + 1;
                assert!(
                    recorded || untracked,
                    "call {i}: {before} -> {after}, untracked {untracked_before} -> {untracked_after}"
                );
            }
            held.push((p, layout));
        }
    }
    POLICY.store(PASS, Relaxed);
    assert_eq!(seen_nulls, PROGRAM_FAILURES.load(Relaxed), "the program sees exactly the inner allocator's failures");
    if policy == TRACKER {
        assert_eq!(seen_nulls, 0);
        assert!(TRACKER_FAILURES.load(Relaxed) > 0, "the tracker tried to allocate");
    }
    if policy == RANDOM {
        assert!(seen_nulls > 100 && ok > 100);
    }
    let snap = leaktrace::take_snapshot("after");
    if mode == Mode::Full {
        assert_eq!(snap.totals.traced_bytes, leaktrace::traced_memory().current as u64);
        assert_eq!(snap.totals.blocks + leaktrace::untracked_blocks(), held.len() as u64);
    }
    for (p, layout) in held {
        // SAFETY: allocated above with this layout, freed once.
        unsafe { std::alloc::dealloc(p, layout) };
    }
    if mode == Mode::Full {
        assert_eq!(leaktrace::take_snapshot("freed").totals.traced_bytes, leaktrace::traced_memory().current as u64);
    }
    println!(
        "policy {policy} {mode:?}: {ok} served, {seen_nulls} failed, {} tracker allocations failed, {} untracked",
        TRACKER_FAILURES.load(Relaxed),
        leaktrace::untracked_blocks()
    );
    leaktrace::stop();
}

#[inline(never)]
fn deeper(layout: Layout, depth: usize) -> *mut u8 {
    if depth == 0 {
        return program_alloc(layout);
    }
    std::hint::black_box(deeper(layout, depth - 1))
}

fn main() {
    for mode in [Mode::Full, Mode::Sampled { mean_bytes: 4096 }] {
        run(RANDOM, mode);
        run(TRACKER, mode);
    }
    println!("1 passed, 0 failed");
}
