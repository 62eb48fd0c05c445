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
//! The state is a `const`-initialised `Cell<u8>` with no destructor, so it
//! stays readable during thread exit, after other thread-locals are gone.

use std::cell::Cell;

pub(crate) const BUSY: u8 = 1;
pub(crate) const IGNORE: u8 = 2;

thread_local! {
    static STATE: Cell<u8> = const { Cell::new(0) };
}

/// The current thread's guard bits (0 when the thread may be tracked).
#[inline]
pub(crate) fn state() -> u8 {
    STATE.try_with(Cell::get).unwrap_or(BUSY)
}

/// Sets guard bits for its lifetime and restores the previous state on drop.
pub(crate) struct Guard {
    prev: u8,
}

impl Guard {
    /// Enters a hook: `None` when the thread is already busy or ignored, in
    /// which case the caller must not track anything.
    #[inline]
    pub(crate) fn enter_hook() -> Option<Guard> {
        STATE
            .try_with(|s| {
                let prev = s.get();
                if prev != 0 {
                    return None;
                }
                s.set(BUSY);
                Some(Guard { prev })
            })
            .ok()
            .flatten()
    }

    /// Sets `bits` on top of the current state (nesting is fine).
    #[inline]
    pub(crate) fn with(bits: u8) -> Guard {
        let prev = STATE
            .try_with(|s| {
                let prev = s.get();
                s.set(prev | bits);
                prev
            })
            .unwrap_or(0);
        Guard { prev }
    }
}

impl Drop for Guard {
    #[inline]
    fn drop(&mut self) {
        let prev = self.prev;
        let _ = STATE.try_with(|s| s.set(prev));
    }
}
