//! The per-thread re-entrancy guard.
//!
//! Two bits of per-thread state decide what the allocator hooks do:
//!
//! | bit      | set while                                  | alloc            | dealloc                 |
//! |----------|--------------------------------------------|------------------|-------------------------|
//! | `BUSY`   | this thread is inside a hook or holds a block-table shard lock | untracked | not looked up |
//! | `IGNORE` | the tracker's own cold code runs (snapshots, symbolization, the monitor) | untracked | looked up as usual |
//!
//! `BUSY` is what makes recursion impossible: any allocation or free made
//! while a hook runs (by hashbrown growing a table, by libgcc's unwinder, by
//! parking_lot parking a thread) goes straight to the inner allocator and
//! never reaches a lock. `IGNORE` only keeps the tracker's own memory out of
//! the counts; frees under it are still processed, as they may free a block
//! the program allocated.
//!
//! The same word carries the thread's current allocation context (see
//! `crate::context`), so the hook that records a block reads both with one
//! thread-local load:
//!
//! | bits  | meaning                                          |
//! |-------|--------------------------------------------------|
//! | 31..8 | context id (0 = none), set by `context::enter`   |
//! | 7..0  | guard bits (`BUSY`, `IGNORE`)                    |
//!
//! A [`Guard`] restores only the guard bits on drop, so a context changed
//! while a guard is held is kept.
//!
//! The state is a `const`-initialised `Cell<u32>` with no destructor, so it
//! stays readable during thread exit, after other thread-locals are gone.
//!
//! While any guard bit is set, the thread's fast-path counter slot is the
//! spare one (`counters::fast_off`), whose limits fail every check: so
//! sampled mode's fast paths need no guard test of their own (three
//! instructions on each of them), and a guarded allocation or free always
//! reaches a slow path that reads the bits.

#![forbid(unsafe_code)]

use std::cell::Cell;

pub(crate) const BUSY: u8 = 1;
pub(crate) const IGNORE: u8 = 2;
/// Set by the program's `leaktrace::untraced(...)`: its allocations are not
/// recorded, but in sampled mode their bytes still count in the total and
/// every free is still seen, so what the program frees inside or outside
/// never makes the total drift (`IGNORE` is the tracker's own memory, which
/// the tracker frees itself, under `IGNORE` again).
pub(crate) const UNTRACED: u8 = 4;
const GUARD_BITS: u32 = 0xff;
const CONTEXT_SHIFT: u32 = 8;
/// The largest context id the word can hold.
pub(crate) const MAX_CONTEXT: u32 = u32::MAX >> CONTEXT_SHIFT;

thread_local! {
    static STATE: Cell<u32> = const { Cell::new(0) };
}

/// The current thread's guard bits (0 when the thread may be tracked).
#[inline]
pub(crate) fn state() -> u8 {
    STATE.try_with(|s| s.get() as u8).unwrap_or(BUSY)
}

/// The current thread's context id (0 for none).
#[inline]
pub(crate) fn context() -> u32 {
    STATE.try_with(|s| s.get() >> CONTEXT_SHIFT).unwrap_or(0)
}

/// Sets the current thread's context id (at most [`MAX_CONTEXT`]); returns
/// the previous one. A thread being torn down keeps none.
#[inline]
pub(crate) fn set_context(id: u32) -> u32 {
    STATE
        .try_with(|s| {
            let w = s.get();
            s.set((w & GUARD_BITS) | (id.min(MAX_CONTEXT) << CONTEXT_SHIFT));
            w >> CONTEXT_SHIFT
        })
        .unwrap_or(0)
}

/// Sets guard bits for its lifetime and restores the previous state on drop.
pub(crate) struct Guard {
    prev: u8,
    /// The thread's context id when the guard was taken.
    context: u32,
}

impl Guard {
    /// Enters a hook: `None` when the thread is already busy or ignored, in
    /// which case the caller must not track anything.
    #[inline]
    pub(crate) fn enter_hook() -> Option<Guard> {
        STATE
            .try_with(|s| {
                let w = s.get();
                let prev = w as u8;
                if prev != 0 {
                    return None;
                }
                s.set(w | BUSY as u32);
                super::counters::fast_off();
                Some(Guard { prev, context: w >> CONTEXT_SHIFT })
            })
            .ok()
            .flatten()
    }

    /// Sets `bits` on top of the current state (nesting is fine).
    #[inline]
    pub(crate) fn with(bits: u8) -> Guard {
        let (prev, context) = STATE
            .try_with(|s| {
                let w = s.get();
                s.set(w | bits as u32);
                (w as u8, w >> CONTEXT_SHIFT)
            })
            .unwrap_or((0, 0));
        if bits != 0 {
            super::counters::fast_off();
        }
        Guard { prev, context }
    }

    /// The thread's context id when this guard was taken (read with the
    /// guard bits, no second thread-local access).
    #[inline]
    pub(crate) fn context(&self) -> u32 {
        self.context
    }
}

impl Drop for Guard {
    #[inline]
    fn drop(&mut self) {
        let prev = self.prev as u32;
        let _ = STATE.try_with(|s| s.set((s.get() & !GUARD_BITS) | prev));
        if prev == 0 {
            super::counters::fast_on();
        }
    }
}
