//! The `GlobalAlloc` implementation, and nothing else.

use super::{counters, EXACT, OFF, SAMPLED, STATE};
use super::{filter_maybe, on_alloc, on_dealloc, on_realloc_begin, on_realloc_end, on_realloc_unsampled};
use super::{sampled_alloc_fast, sampled_free_fast, sampled_realloc_fast};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::Ordering::Relaxed;

/// A global allocator that forwards every call to `inner` and, while
/// tracing, records each block against the stack that allocated it.
///
/// ```
/// #[global_allocator]
/// static ALLOC: leaktrace::TrackingAllocator = leaktrace::TrackingAllocator::system();
/// # fn main() {}
/// ```
///
/// Any allocator works as the inner one, e.g.
/// `TrackingAllocator::new(mimalloc::MiMalloc)`. While tracing is off each
/// call costs one relaxed atomic load and a branch on top of the inner
/// allocator, which it tail-calls.
pub struct TrackingAllocator<A: GlobalAlloc = System> {
    inner: A,
}

impl TrackingAllocator<System> {
    /// A tracking allocator over the system allocator, usable in a `static`.
    pub const fn system() -> Self {
        TrackingAllocator { inner: System }
    }
}

impl<A: GlobalAlloc> TrackingAllocator<A> {
    /// A tracking allocator over `inner`.
    pub const fn new(inner: A) -> Self {
        TrackingAllocator { inner }
    }

    /// The allocator every call is forwarded to.
    pub const fn inner(&self) -> &A {
        &self.inner
    }
}

// SAFETY: every method forwards to `inner` with the caller's arguments
// unchanged and returns its result unchanged, so the `GlobalAlloc` contract
// holds exactly as it holds for `inner`. The hooks only read the pointer
// value, never the memory behind it, and they never unwind (the hot path has
// no panicking operation) and never re-enter a lock (see `hot` invariants).
//
// Each method loads `STATE` before calling `inner`, so that while tracing is
// off the method is that load, a branch and a tail call of `inner` (no stack
// frame: measured under callgrind, "not started" went from +22 to +5
// instructions per allocation call). The traced work is in separate
// functions that the shims call only while tracing.
unsafe impl<A: GlobalAlloc> GlobalAlloc for TrackingAllocator<A> {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let state = STATE.load(Relaxed);
        if state == OFF {
            // SAFETY: forwarded with the caller's layout, as the caller
            // promised `GlobalAlloc::alloc`'s preconditions.
            return unsafe { self.inner.alloc(layout) };
        }
        if state == SAMPLED {
            // SAFETY: as above.
            return unsafe { self.alloc_sampled(layout) };
        }
        // SAFETY: as above.
        unsafe { self.alloc_slow(layout) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let state = STATE.load(Relaxed);
        if state == OFF {
            // SAFETY: as for `alloc`.
            return unsafe { self.inner.alloc_zeroed(layout) };
        }
        if state == SAMPLED {
            // SAFETY: as for `alloc`.
            return unsafe { self.alloc_zeroed_sampled(layout) };
        }
        // SAFETY: as for `alloc`.
        unsafe { self.alloc_zeroed_slow(layout) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // The record goes first: once `inner` has the block back, another
        // thread may be handed the same address and record it.
        let state = STATE.load(Relaxed);
        if state == SAMPLED {
            // SAFETY: the caller's promises for `dealloc`, passed on.
            return unsafe { self.dealloc_sampled(ptr, layout) };
        }
        if state != OFF {
            // SAFETY: as above. (The one mode left is exact: a constant,
            // so that the shim does not keep the loaded value.)
            return unsafe { self.dealloc_slow(ptr, layout, EXACT) };
        }
        // SAFETY: the caller promised `ptr` came from this allocator (so
        // from `inner`, as we return `inner`'s pointers) with `layout`.
        unsafe { self.inner.dealloc(ptr, layout) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let state = STATE.load(Relaxed);
        if state == OFF {
            // SAFETY: forwarded unchanged; the caller's promises about
            // `ptr`, `layout` and `new_size` are `inner`'s preconditions.
            return unsafe { self.inner.realloc(ptr, layout, new_size) };
        }
        if state == SAMPLED {
            // SAFETY: as above.
            return unsafe { self.realloc_sampled(ptr, layout, new_size) };
        }
        // SAFETY: as above. (Exact mode, as in `dealloc`.)
        unsafe { self.realloc_moving(ptr, layout, new_size, EXACT) }
    }
}

impl<A: GlobalAlloc> TrackingAllocator<A> {
    /// `alloc` in sampled mode (the shims branch on the mode, so that
    /// these paths do not test it again).
    ///
    /// Sampled mode's common case counts the block in (and down the
    /// countdown) before the inner call, and takes the count back in the
    /// rare case the inner allocator fails: after the call there is only
    /// the null test, with nothing kept across it but the size, and no
    /// second load of `STATE`. Everything else is a tail call.
    ///
    /// # Safety
    ///
    /// The caller's duties of `GlobalAlloc::alloc` (a layout of non-zero size).
    #[inline(never)]
    unsafe fn alloc_sampled(&self, layout: Layout) -> *mut u8 {
        if sampled_alloc_fast(layout.size()) {
            // SAFETY: forwarded with the caller's layout (this function's duty).
            let p = unsafe { self.inner.alloc(layout) };
            if p.is_null() {
                counters::undo_alloc(layout.size());
            }
            return p;
        }
        // SAFETY: this function's duties, passed on.
        unsafe { self.alloc_slow(layout) }
    }

    /// `alloc_zeroed` in sampled mode, as [`Self::alloc_sampled`].
    ///
    /// # Safety
    ///
    /// The caller's duties of `GlobalAlloc::alloc_zeroed`.
    #[inline(never)]
    unsafe fn alloc_zeroed_sampled(&self, layout: Layout) -> *mut u8 {
        if sampled_alloc_fast(layout.size()) {
            // SAFETY: forwarded with the caller's layout (this function's duty).
            let p = unsafe { self.inner.alloc_zeroed(layout) };
            if p.is_null() {
                counters::undo_alloc(layout.size());
            }
            return p;
        }
        // SAFETY: this function's duties, passed on.
        unsafe { self.alloc_zeroed_slow(layout) }
    }

    /// Everything [`Self::alloc_sampled`]'s fast path does not do, and
    /// exact mode: the inner call, then the hook, with `STATE` loaded again
    /// after the call.
    ///
    /// # Safety
    ///
    /// The caller's duties of `GlobalAlloc::alloc`.
    #[cold]
    #[inline(never)]
    unsafe fn alloc_slow(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout (this function's duty).
        let p = unsafe { self.inner.alloc(layout) };
        Self::after_alloc(p, layout.size())
    }

    /// As [`Self::alloc_slow`], for `alloc_zeroed`.
    ///
    /// # Safety
    ///
    /// The caller's duties of `GlobalAlloc::alloc_zeroed`.
    #[cold]
    #[inline(never)]
    unsafe fn alloc_zeroed_slow(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout (this function's duty).
        let p = unsafe { self.inner.alloc_zeroed(layout) };
        Self::after_alloc(p, layout.size())
    }

    /// Records (or counts) the block the inner allocator returned; returns it.
    #[inline(always)]
    fn after_alloc(p: *mut u8, size: usize) -> *mut u8 {
        if !p.is_null() {
            let state = STATE.load(Relaxed);
            if state != OFF {
                on_alloc(p, size, state);
            }
        }
        p
    }

    /// `dealloc` in sampled mode: the record first.
    ///
    /// # Safety
    ///
    /// The caller's duties of `GlobalAlloc::dealloc` for `ptr` and `layout`.
    #[inline(never)]
    unsafe fn dealloc_sampled(&self, ptr: *mut u8, layout: Layout) {
        if sampled_free_fast(ptr, layout.size()) {
            // SAFETY: `ptr` came from `inner` with `layout` (this function's duty).
            return unsafe { self.inner.dealloc(ptr, layout) };
        }
        // SAFETY: this function's duties, passed on.
        unsafe { self.dealloc_slow(ptr, layout, SAMPLED) }
    }

    /// Everything [`Self::dealloc_sampled`]'s fast path does not do, and
    /// exact mode (`state` is the mode the shim loaded).
    ///
    /// # Safety
    ///
    /// As [`Self::dealloc_sampled`].
    #[inline(never)]
    unsafe fn dealloc_slow(&self, ptr: *mut u8, layout: Layout, state: u8) {
        on_dealloc(ptr, layout.size(), state);
        // SAFETY: `ptr` came from `inner` with `layout` (this function's duty).
        unsafe { self.inner.dealloc(ptr, layout) }
    }

    /// `realloc` in sampled mode.
    ///
    /// The common case (a block surely not sampled, no flush or
    /// sample due) counts the change before the inner call, as
    /// [`Self::alloc_sampled`] does, and takes it back if the call fails: only
    /// the change is kept across the call (one register saved, where the
    /// old and new sizes took two and a third push for alignment).
    ///
    /// # Safety
    ///
    /// The caller's duties of `GlobalAlloc::realloc` for `ptr`, `layout`
    /// and `new_size`.
    #[inline(never)]
    unsafe fn realloc_sampled(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !filter_maybe(ptr as usize) {
            // No record to move. (With a guard bit set the fast commit
            // fails and the slow path reads the bits.)
            if sampled_realloc_fast(layout.size(), new_size) {
                let change = new_size as isize - layout.size() as isize;
                // SAFETY: forwarded unchanged (this function's duty).
                let p = unsafe { self.inner.realloc(ptr, layout, new_size) };
                if p.is_null() {
                    counters::undo_change(change);
                }
                return p;
            }
            // SAFETY: as above.
            return unsafe { self.realloc_unsampled(ptr, layout, new_size) };
        }
        // SAFETY: as above.
        unsafe { self.realloc_moving(ptr, layout, new_size, SAMPLED) }
    }

    /// Everything [`Self::realloc_sampled`]'s fast path does not do for a
    /// block that was not sampled.
    ///
    /// # Safety
    ///
    /// As [`Self::realloc_sampled`].
    #[cold]
    #[inline(never)]
    unsafe fn realloc_unsampled(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded unchanged (this function's duty).
        let p = unsafe { self.inner.realloc(ptr, layout, new_size) };
        on_realloc_unsampled(layout.size(), p, new_size);
        p
    }

    /// `realloc` of a block that may have a record to move: kept out of
    /// [`Self::realloc_sampled`], so that sampled mode's common case does not
    /// pay for this path's stack frame (six registers and the `Moving`
    /// record saved and restored on every realloc, in profiles).
    ///
    /// # Safety
    ///
    /// The caller's duties of `GlobalAlloc::realloc` for `ptr`, `layout`
    /// and `new_size`.
    #[inline(never)]
    unsafe fn realloc_moving(&self, ptr: *mut u8, layout: Layout, new_size: usize, state: u8) -> *mut u8 {
        let moving = on_realloc_begin(ptr, layout.size(), state);
        // SAFETY: forwarded unchanged (this function's duty).
        let p = unsafe { self.inner.realloc(ptr, layout, new_size) };
        on_realloc_end(moving, ptr, layout.size(), p, new_size);
        p
    }
}
