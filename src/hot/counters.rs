//! The traced-bytes total without a shared cache line per allocation, and
//! the per-thread budget that sampled mode's fast paths check.
//!
//! One atomic counter bumped by every allocation of every thread is the
//! largest cost of a cheap tracker: on two threads its cache line bounces on
//! every allocation (measured: three quarters of the sampled-mode hook).
//! Instead each thread owns a slot of pending bytes, written only by it with
//! plain relaxed loads and stores, and moves them into `GLOBAL` when they
//! pass 64 KiB. The total is `GLOBAL` plus every slot: exact whenever read.
//! The peak is checked at each move and at each read, so it is exact to
//! within 128 KiB per thread.
//!
//! A slot holds three pending counts:
//!
//! - `alloc`: bytes allocated on sampled mode's fast path, which also count
//!   down the thread's sampling countdown (see `sample`). It stays below
//!   `alloc_limit`, the smaller of the countdown left and the flush
//!   threshold, so one compare decides both "not sampled" and "no flush
//!   due": the fast path is a load, an add, a compare and a store. (Before,
//!   a signed count with a two-sided range check and a separate countdown
//!   took twice the instructions: measured under callgrind, 17 against 7.)
//! - `freed`: bytes freed on the fast path, below `free_limit`.
//! - `other`: every other change (exact mode's records, slow paths), signed,
//!   within ±64 KiB.
//!
//! The fast paths reach the slot through `FAST`. A thread without a slot
//! of its own, or with a guard bit set (see `guard`), points it at `SPARE`,
//! whose limits are zero, so every fast check fails there and a slow path
//! runs, which reads the guard bits and takes a slot (or adds to `GLOBAL`
//! directly when none is free or the thread is exiting): the fast paths
//! need no "has a slot" test and no guard test. Slots are handed out on a
//! thread's first counted change and handed back, with their pending bytes
//! moved to `GLOBAL`, by a thread-local destructor.

#![forbid(unsafe_code)]

use std::cell::Cell;
use std::sync::atomic::{AtomicIsize, AtomicU64, AtomicUsize, Ordering::*};

const SLOTS: usize = 256;
const FLUSH: usize = 64 * 1024;
/// Slot index meaning "not assigned yet".
const UNASSIGNED: u16 = u16::MAX;
/// Slot index meaning "use GLOBAL" (no slot free, or the thread is exiting).
const SHARED: u16 = u16::MAX - 1;

/// One thread's pending bytes (see the module's docs). Only the owner
/// writes it; readers sum `alloc - freed + other`.
#[repr(align(128))]
struct Slot {
    alloc: AtomicUsize,
    alloc_limit: AtomicUsize,
    freed: AtomicUsize,
    free_limit: AtomicUsize,
    other: AtomicIsize,
}

impl Slot {
    const fn new() -> Slot {
        Slot {
            alloc: AtomicUsize::new(0),
            alloc_limit: AtomicUsize::new(0),
            freed: AtomicUsize::new(0),
            free_limit: AtomicUsize::new(0),
            other: AtomicIsize::new(0),
        }
    }

    /// The slot's pending bytes (read by any thread).
    fn pending(&self) -> isize {
        (self.alloc.load(Relaxed) as isize)
            .wrapping_sub(self.freed.load(Relaxed) as isize)
            .wrapping_add(self.other.load(Relaxed))
    }

    /// Takes the pending bytes out (the owner, or the owner's destructor).
    fn drain(&self) -> isize {
        let a = self.alloc.swap(0, Relaxed) as isize;
        let f = self.freed.swap(0, Relaxed) as isize;
        a.wrapping_sub(f).wrapping_add(self.other.swap(0, Relaxed))
    }
}

static PENDING: [Slot; SLOTS] = [const { Slot::new() }; SLOTS];
/// What a thread without a slot points at: never written (its limits are
/// zero, so no fast path passes; the slow paths check for it).
static SPARE: Slot = Slot::new();
/// Which slots are taken, one bit each.
static TAKEN: [AtomicU64; SLOTS / 64] = [const { AtomicU64::new(0) }; SLOTS / 64];
static GLOBAL: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);

thread_local! {
    /// This thread's slot: an index, `UNASSIGNED` or `SHARED`. `const` and
    /// without destructor, so readable during thread exit.
    static SLOT: Cell<u16> = const { Cell::new(UNASSIGNED) };
    /// This thread's slot itself, or `SPARE`: what the fast paths read (one
    /// thread-local load, no index arithmetic, no null test).
    static FAST: Cell<&'static Slot> = const { Cell::new(&SPARE) };
    /// Hands the slot back when the thread exits.
    static RELEASE: SlotRelease = const { SlotRelease };
}

struct SlotRelease;

impl Drop for SlotRelease {
    fn drop(&mut self) {
        let _ = FAST.try_with(|f| f.set(&SPARE));
        let Ok(i) = SLOT.try_with(|s| s.replace(SHARED)) else {
            return;
        };
        if (i as usize) < SLOTS {
            let slot = &PENDING[i as usize];
            slot.alloc_limit.store(0, Relaxed);
            slot.free_limit.store(0, Relaxed);
            GLOBAL.fetch_add(slot.drain(), Relaxed);
            TAKEN[i as usize / 64].fetch_and(!(1 << (i % 64)), Release);
        }
    }
}

/// The slot the fast paths use: this thread's, or `SPARE` (no slot, or a
/// guard bit set).
#[inline(always)]
fn fast() -> &'static Slot {
    FAST.try_with(Cell::get).unwrap_or(&SPARE)
}

/// The slot this thread owns, if any, without taking one.
#[inline]
fn own() -> Option<&'static Slot> {
    let i = SLOT.try_with(Cell::get).unwrap_or(SHARED) as usize;
    PENDING.get(i)
}

/// This thread's own slot, taking one if it has none yet; `None` when it
/// adds to `GLOBAL` directly. Slow paths use it (under a guard `FAST` is
/// `SPARE`).
#[inline]
fn owned() -> Option<&'static Slot> {
    own().or_else(owned_slow)
}

#[cold]
#[inline(never)]
fn owned_slow() -> Option<&'static Slot> {
    if SLOT.try_with(Cell::get).unwrap_or(SHARED) == UNASSIGNED {
        assign();
    }
    own()
}

/// Closes the fast paths of this thread (a guard bit was set).
#[inline]
pub(crate) fn fast_off() {
    let _ = FAST.try_with(|f| f.set(&SPARE));
}

/// Opens them again (the guard bits are clear): this thread's slot, if it
/// has one.
#[inline]
pub(crate) fn fast_on() {
    let slot = own().unwrap_or(&SPARE);
    let _ = FAST.try_with(|f| f.set(slot));
}

/// Sampled mode's fast path for `size` bytes allocated (or grown): counted
/// in and down, when that neither crosses the countdown nor needs a flush
/// (true); otherwise nothing done (false: [`count_down`] does it).
#[inline(always)]
pub(crate) fn try_alloc(size: usize) -> bool {
    let s = fast();
    // `alloc` is below 64 KiB and `size` below 2^63 (a `Layout` promises
    // it): no wrap.
    let a = s.alloc.load(Relaxed).wrapping_add(size);
    if a >= s.alloc_limit.load(Relaxed) {
        return false;
    }
    s.alloc.store(a, Relaxed);
    true
}

/// The fast path for `size` bytes freed (or shrunk): counted out when no
/// flush is due (true); otherwise nothing done (false: [`add`] does it).
#[inline(always)]
pub(crate) fn try_free(size: usize) -> bool {
    let s = fast();
    // As in `try_alloc`: no wrap.
    let f = s.freed.load(Relaxed).wrapping_add(size);
    if f >= s.free_limit.load(Relaxed) {
        return false;
    }
    s.freed.store(f, Relaxed);
    true
}

/// Takes back what [`try_alloc`] counted (`change` > 0) or [`try_free`]
/// counted (`change` < 0) before an inner call that then failed: exactly,
/// countdown included, unless the slot was flushed meanwhile (it cannot be:
/// only this thread writes it), in which case the total alone is corrected.
#[cold]
#[inline(never)]
pub(crate) fn undo_change(change: isize) {
    let size = change.unsigned_abs();
    let field = match own() {
        Some(s) if change > 0 => &s.alloc,
        Some(s) => &s.freed,
        None => return add(-change),
    };
    let v = field.load(Relaxed);
    if v >= size {
        field.store(v - size, Relaxed);
    } else {
        add(-change);
    }
}

/// As [`undo_change`], for an allocation of `size` bytes.
#[cold]
#[inline(never)]
pub(crate) fn undo_alloc(size: usize) {
    undo_change(size as isize);
}

/// Sampled mode: `size` bytes allocated (or grown) by the program, counted
/// in the total and down the thread's countdown. True when the countdown is
/// not crossed; false when this allocation crossed it (the caller then asks
/// `sample::crossed`, which draws the next distance).
#[inline]
pub(crate) fn count_down(size: usize) -> bool {
    try_alloc(size) || count_down_slow(size)
}

/// The flush behind [`count_down`]: the slot's counted bytes go to `GLOBAL`
/// and come off the countdown, and the limit is set again from what is left.
#[cold]
#[inline(never)]
fn count_down_slow(size: usize) -> bool {
    let counted = match owned() {
        Some(s) => {
            let a = s.alloc.load(Relaxed).wrapping_add(size);
            s.alloc.store(0, Relaxed);
            a
        }
        None => size,
    };
    // A block the inner allocator gave is below 2^47 bytes: no wrap.
    publish(counted as isize);
    let left = super::sample::left().saturating_sub(counted.min(i64::MAX as usize) as i64);
    super::sample::set_left(left.max(0));
    left > 0
}

/// `size` bytes freed (or shrunk) by the program, counted out of the total.
/// The free side's slow paths come here rather than to [`add`], so that a
/// slot whose `freed` reached its limit is flushed and its fast path opens
/// again.
#[inline]
pub(crate) fn free(size: usize) {
    if !try_free(size) {
        free_slow(size);
    }
}

#[cold]
#[inline(never)]
fn free_slow(size: usize) {
    let freed = match owned() {
        Some(s) => {
            let f = s.freed.load(Relaxed).wrapping_add(size);
            s.freed.store(0, Relaxed);
            f
        }
        None => size,
    };
    // As in `count_down_slow`: a real block's size, no wrap.
    publish((freed as isize).wrapping_neg());
}

/// Sets the fast path's allocation limit after the countdown changed to
/// `left` (the slot's `alloc` is zero then: every caller has just flushed).
#[inline]
pub(crate) fn set_alloc_limit(left: i64) {
    if let Some(s) = own() {
        s.alloc_limit.store((left.max(0) as u64).min(FLUSH as u64) as usize, Relaxed);
    }
}

/// Adds `delta` bytes to the total.
#[inline]
pub(crate) fn add(delta: isize) {
    let Some(s) = owned() else {
        return publish(delta);
    };
    // Only this thread writes its slot: load and store, no lock prefix.
    let old = s.other.load(Relaxed);
    match old.checked_add(delta) {
        Some(p) if p.unsigned_abs() < FLUSH => s.other.store(p, Relaxed),
        _ => {
            s.other.store(0, Relaxed);
            publish(old);
            publish(delta);
        }
    }
}

#[cold]
#[inline(never)]
fn publish(delta: isize) {
    let g = GLOBAL.fetch_add(delta, Relaxed) + delta;
    if g > PEAK.load(Relaxed) {
        PEAK.fetch_max(g, Relaxed);
    }
}

/// Gives this thread a free slot, or `SHARED` when none is free.
#[cold]
#[inline(never)]
fn assign() {
    // Registering the destructor below may allocate: keep that out of the count.
    let _busy = super::guard::Guard::with(super::guard::BUSY);
    let mut got = SHARED;
    'search: for (w, word) in TAKEN.iter().enumerate() {
        let mut cur = word.load(Relaxed);
        while cur != u64::MAX {
            let bit = (!cur).trailing_zeros();
            match word.compare_exchange_weak(cur, cur | (1 << bit), Acquire, Relaxed) {
                Ok(_) => {
                    got = (w * 64 + bit as usize) as u16;
                    break 'search;
                }
                Err(now) => cur = now,
            }
        }
    }
    if (got as usize) < SLOTS && RELEASE.try_with(|_| ()).is_err() {
        TAKEN[got as usize / 64].fetch_and(!(1 << (got % 64)), Release);
        got = SHARED;
    }
    let _ = SLOT.try_with(|s| s.set(got));
    if (got as usize) < SLOTS {
        // A slot handed back was drained and its limits zeroed; the free
        // side opens now, the allocation side at the next countdown flush,
        // and the fast paths when the guard taken above is dropped.
        PENDING[got as usize].free_limit.store(FLUSH, Relaxed);
    }
}

/// The total: `GLOBAL` plus every slot's pending bytes.
pub(crate) fn total() -> isize {
    GLOBAL.load(Relaxed) + PENDING.iter().map(Slot::pending).sum::<isize>()
}

/// `(current, peak)`, the peak raised to the current value if below it.
pub(crate) fn read() -> (usize, usize) {
    let current = total();
    let peak = PEAK.fetch_max(current, Relaxed).max(current);
    (current.max(0) as usize, peak.max(0) as usize)
}

/// Sets the peak to the current total.
pub(crate) fn reset_peak() {
    PEAK.store(total(), Relaxed);
}

/// Subtracts bytes that were dropped from the tables by `clear`.
pub(crate) fn forget_bytes(bytes: usize) {
    GLOBAL.fetch_sub(bytes as isize, Relaxed);
}

/// Starts the total and the peak again from zero, while hooks may run.
///
/// Slots are written only by their owner (a load then a store, no lock
/// prefix), so zeroing them from here could be overwritten by an owner's
/// store of its stale value. Instead the sum read now is taken out of
/// `GLOBAL`: whatever an owner adds to its slot after the read stays in the
/// slot and in the new total.
pub(crate) fn reset() {
    GLOBAL.fetch_sub(total(), Relaxed);
    PEAK.store(0, Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The counters are process-wide: these tests take turns.
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn fast_paths_flushes_and_undos_keep_the_total_exact() {
        let _serial = SERIAL.lock().unwrap();
        let before = total();
        let threads: Vec<_> = (0..6u64)
            .map(|t| {
                std::thread::spawn(move || {
                    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ (t + 1);
                    let (mut net, mut fast) = (0isize, 0u32);
                    for _ in 0..40_000 {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        // Up to 20 KB: flushes at 64 KiB come every few calls.
                        let size = (x % 20_000) as usize + 1;
                        match x >> 61 {
                            0..=2 => {
                                if try_alloc(size) {
                                    fast += 1;
                                } else if !count_down(size) {
                                    // Crossed: the hook would sample and draw again.
                                    super::super::sample::set_left(1 << 20);
                                }
                                net += size as isize;
                            }
                            3 | 4 => {
                                free(size);
                                net -= size as isize;
                            }
                            5 => {
                                add(size as isize);
                                net += size as isize;
                            }
                            // Counted before an inner call that failed.
                            6 => {
                                if try_alloc(size) {
                                    undo_change(size as isize);
                                }
                            }
                            _ => {
                                if try_free(size) {
                                    undo_change(-(size as isize));
                                }
                            }
                        }
                    }
                    (net, fast)
                })
            })
            .collect();
        let mut net = 0;
        for t in threads {
            let (n, fast) = t.join().unwrap();
            assert!(fast > 1000, "the fast path opened ({fast} fast allocations)");
            net += n;
        }
        // Every thread has exited: its slot's pending bytes went to GLOBAL.
        assert_eq!(total() - before, net);
        add(-net);
    }

    #[test]
    fn a_guard_closes_the_fast_paths_until_it_is_dropped() {
        use super::super::guard::{Guard, BUSY, IGNORE};
        let _serial = SERIAL.lock().unwrap();
        std::thread::spawn(|| {
            add(1);
            add(-1);
            super::super::sample::set_left(1 << 20);
            assert!(try_alloc(8) && try_free(8), "open with a slot and a countdown");
            {
                let _busy = Guard::with(BUSY);
                assert!(!try_alloc(8) && !try_free(8), "closed under a guard");
                {
                    let _ignore = Guard::with(IGNORE);
                    assert!(!try_alloc(8));
                }
                assert!(!try_alloc(8) && !try_free(8), "still closed when a nested guard is dropped");
            }
            assert!(try_alloc(8) && try_free(8), "open again");
        })
        .join()
        .unwrap();
    }

    #[test]
    fn reset_while_others_add_keeps_exactly_what_came_after() {
        use std::sync::atomic::{AtomicBool, AtomicU8};
        let _serial = SERIAL.lock().unwrap();
        // 0: before the reset, 1: reset running, 2: reset done, 3: stop.
        static PHASE: AtomicU8 = AtomicU8::new(0);
        static GO: AtomicBool = AtomicBool::new(false);
        PHASE.store(0, Relaxed);
        let adders: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(|| {
                    let (mut since_start, mut since_done) = (0isize, 0isize);
                    GO.store(true, Relaxed);
                    loop {
                        // Read the phase before adding: an add counted as
                        // "after the reset started" may have been made before.
                        let phase = PHASE.load(std::sync::atomic::Ordering::SeqCst);
                        if phase == 3 {
                            return (since_start, since_done);
                        }
                        add(3);
                        if phase >= 1 {
                            since_start += 3;
                        }
                        if phase >= 2 {
                            since_done += 3;
                        }
                    }
                })
            })
            .collect();
        while !GO.load(Relaxed) {
            std::thread::yield_now();
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        PHASE.store(1, std::sync::atomic::Ordering::SeqCst);
        reset();
        PHASE.store(2, std::sync::atomic::Ordering::SeqCst);
        std::thread::sleep(std::time::Duration::from_millis(20));
        PHASE.store(3, std::sync::atomic::Ordering::SeqCst);
        let (mut lo, mut hi) = (0, 0);
        for h in adders {
            let (a, b) = h.join().unwrap();
            hi += a + 3;
            lo += b;
        }
        let t = total();
        // Zeroing the slots from here instead lost a reset whenever an owner
        // stored its stale pending value over the zero: `t` then exceeded `hi`.
        assert!(lo <= t && t <= hi, "total {t}, added after the reset: between {lo} and {hi}");
        GLOBAL.fetch_sub(t, Relaxed);
    }

    #[test]
    fn totals_are_exact_across_threads_and_exits() {
        let _serial = SERIAL.lock().unwrap();
        let before = total();
        let handles: Vec<_> = (0..8)
            .map(|t| {
                std::thread::spawn(move || {
                    for i in 0..10_000isize {
                        add(100 + (i % 7) * t);
                        add(-(100 + (i % 7) * t));
                    }
                    add(1000);
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(total() - before, 8 * 1000);
        add(-8000);
        assert_eq!(total(), before);
    }
}
