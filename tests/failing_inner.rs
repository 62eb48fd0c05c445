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

/// `assert!` and `assert_eq!` for the loops that run under a failing
/// policy: back to `PASS` first, so that the panic's own allocations do not
/// fail (an allocation failing inside a panic hangs on the backtrace lock).
macro_rules! check {
    ($cond:expr, $($msg:tt)*) => {
        if !$cond {
            POLICY.store(PASS, Relaxed);
            panic!($($msg)*);
        }
    };
}
macro_rules! check_eq {
    ($a:expr, $b:expr, $($msg:tt)*) => {{
        let (a, b) = ($a, $b);
        if a != b {
            POLICY.store(PASS, Relaxed);
            assert_eq!(a, b, $($msg)*);
        }
    }};
}

/// The program's own allocation, through the global allocator.
fn program_alloc(layout: Layout) -> *mut u8 {
    PROGRAM_CALL.with(|c| c.set(true));
    // SAFETY: non-zero size; freed by the caller with the same layout.
    let p = unsafe { std::alloc::alloc(layout) };
    PROGRAM_CALL.with(|c| c.set(false));
    p
}

/// The program's own realloc, through the global allocator.
fn program_realloc(p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
    PROGRAM_CALL.with(|c| c.set(true));
    // SAFETY: `p` was allocated with `layout` by the global allocator and is
    // live; `new_size` is non-zero. On success the caller keeps the new block.
    let q = unsafe { std::alloc::realloc(p, layout, new_size) };
    PROGRAM_CALL.with(|c| c.set(false));
    q
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
            check_eq!(after, before, "a failed allocation is not counted (call {i})");
            check_eq!(untracked_after, untracked_before, "nor untracked (call {i})");
        } else {
            ok += 1;
            if mode != Mode::Full {
                // Sampled mode counts every byte the program allocates, on
                // the fast path (counted before the inner call, taken back
                // when it fails) as on the slow ones.
                check_eq!(after, before + layout.size(), "sampled: counted exactly (call {i})");
            }
            if mode == Mode::Full {
                let recorded = after == before + layout.size() && untracked_after == untracked_before;
                let untracked = after == before && untracked_after == untracked_before + 1;
                check!(
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
    POLICY.store(policy, Relaxed);
    // Then reallocs under the same policy, growing and shrinking: a failed one changes nothing, the
    // block stays as it was; a served one moves the total by exactly the
    // change in sampled mode.
    for (i, (p, layout)) in held.iter_mut().enumerate() {
        let new_size = if i % 2 == 0 { layout.size() * 3 } else { layout.size() / 2 + 1 };
        let (before, untracked_before) = (leaktrace::traced_memory().current, leaktrace::untracked_blocks());
        let q = program_realloc(*p, *layout, new_size);
        let (after, untracked_after) = (leaktrace::traced_memory().current, leaktrace::untracked_blocks());
        if q.is_null() {
            seen_nulls += 1;
            check_eq!(after, before, "a failed realloc is not counted (realloc {i})");
            check_eq!(untracked_after, untracked_before, "nor untracked (realloc {i})");
            continue;
        }
        if mode != Mode::Full {
            check_eq!(after as isize - before as isize, new_size as isize - layout.size() as isize, "realloc {i}");
        }
        *p = q;
        *layout = Layout::from_size_align(new_size, layout.align()).unwrap();
    }
    POLICY.store(PASS, Relaxed);
    assert_eq!(seen_nulls, PROGRAM_FAILURES.load(Relaxed), "and of the reallocs");
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
