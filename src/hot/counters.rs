//! The traced-bytes total without a shared cache line per allocation.
//!
//! One atomic counter bumped by every allocation of every thread is the
//! largest cost of a cheap tracker: on two threads its cache line bounces on
//! every allocation (measured: three quarters of the sampled-mode hook).
//! Instead each thread owns a slot of pending bytes, written only by it with
//! a plain relaxed load and store, and moves it into `GLOBAL` when it passes
//! ±64 KiB. The total is `GLOBAL` plus every slot: exact whenever read. The
//! peak is checked at each move and at each read, so it is exact to within
//! 64 KiB per thread.
//!
//! Slots are handed out on a thread's first tracked allocation and handed
//! back, with their pending bytes moved to `GLOBAL`, by a thread-local
//! destructor. A thread without a slot (all taken, or its destructor already
//! ran) adds to `GLOBAL` directly.

#![forbid(unsafe_code)]

use std::cell::Cell;
use std::sync::atomic::{AtomicIsize, AtomicU64, Ordering::*};

const SLOTS: usize = 256;
const FLUSH: isize = 64 * 1024;
/// Slot index meaning "not assigned yet".
const UNASSIGNED: u16 = u16::MAX;
/// Slot index meaning "use GLOBAL" (no slot free, or the thread is exiting).
const SHARED: u16 = u16::MAX - 1;

#[repr(align(128))]
struct Slot(AtomicIsize);

static PENDING: [Slot; SLOTS] = [const { Slot(AtomicIsize::new(0)) }; SLOTS];
/// Which slots are taken, one bit each.
static TAKEN: [AtomicU64; SLOTS / 64] = [const { AtomicU64::new(0) }; SLOTS / 64];
static GLOBAL: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);

thread_local! {
    /// This thread's slot: an index, `UNASSIGNED` or `SHARED`. `const` and
    /// without destructor, so readable during thread exit.
    static SLOT: Cell<u16> = const { Cell::new(UNASSIGNED) };
    /// This thread's slot itself, while it has one: what the fast path
    /// reads (one thread-local load and a null test, no index arithmetic).
    /// `None` sends [`add`] to its slow path: no slot yet, or `SHARED`.
    static FAST: Cell<Option<&'static AtomicIsize>> = const { Cell::new(None) };
    /// Hands the slot back when the thread exits.
    static RELEASE: SlotRelease = const { SlotRelease };
}

struct SlotRelease;

impl Drop for SlotRelease {
    fn drop(&mut self) {
        let _ = FAST.try_with(|f| f.set(None));
        let Ok(i) = SLOT.try_with(|s| s.replace(SHARED)) else {
            return;
        };
        if (i as usize) < SLOTS {
            let p = PENDING[i as usize].0.swap(0, Relaxed);
            GLOBAL.fetch_add(p, Relaxed);
            TAKEN[i as usize / 64].fetch_and(!(1 << (i % 64)), Release);
        }
    }
}

/// Adds `delta` bytes to the total.
#[inline]
pub(crate) fn add(delta: isize) {
    if let Some(slot) = fast_slot() {
        // Only this thread writes its slot: load and store, no lock prefix.
        match fits(slot, delta) {
            Some(p) => slot.store(p, Relaxed),
            None => {
                let p = slot.load(Relaxed) + delta;
                slot.store(0, Relaxed);
                publish(p);
            }
        }
    } else {
        add_slow(delta);
    }
}

/// This thread's slot, when it has one (for fast paths that check first
/// and commit with [`fits`] and a store only when nothing else is due).
#[inline(always)]
pub(crate) fn fast_slot() -> Option<&'static AtomicIsize> {
    FAST.try_with(Cell::get).ok().flatten()
}

/// The slot's pending bytes after adding `delta`, when they stay below the
/// flush threshold (the caller then stores them); `None` when the add must
/// go through [`add`].
#[inline(always)]
pub(crate) fn fits(slot: &AtomicIsize, delta: isize) -> Option<isize> {
    let p = slot.load(Relaxed).wrapping_add(delta);
    (-FLUSH..FLUSH).contains(&p).then_some(p)
}

/// [`add`] for a thread without a slot: takes one, or adds to `GLOBAL`.
#[cold]
#[inline(never)]
fn add_slow(delta: isize) {
    let i = SLOT.try_with(Cell::get).unwrap_or(SHARED);
    if (i as usize) < SLOTS {
        let slot = &PENDING[i as usize].0;
        let p = slot.load(Relaxed) + delta;
        slot.store(0, Relaxed);
        publish(p);
    } else if i == UNASSIGNED {
        assign();
        add(delta);
    } else {
        publish(delta);
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
        let _ = FAST.try_with(|f| f.set(Some(&PENDING[got as usize].0)));
    }
}

/// The total: `GLOBAL` plus every slot's pending bytes.
pub(crate) fn total() -> isize {
    GLOBAL.load(Relaxed) + PENDING.iter().map(|s| s.0.load(Relaxed)).sum::<isize>()
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
