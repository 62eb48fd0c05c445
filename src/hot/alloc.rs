//! The `GlobalAlloc` implementation, and nothing else.

use super::{filter_maybe, guard, on_alloc, on_dealloc, on_realloc_begin, on_realloc_end, on_realloc_unsampled};
use super::{sampled_alloc_fast, sampled_free_fast, sampled_realloc_fast};
use super::{OFF, SAMPLED, STATE};
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
        // SAFETY: as above.
        unsafe { self.alloc_traced(layout) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let state = STATE.load(Relaxed);
        if state == OFF {
            // SAFETY: as for `alloc`.
            return unsafe { self.inner.alloc_zeroed(layout) };
        }
        // SAFETY: as for `alloc`.
        unsafe { self.alloc_zeroed_traced(layout) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // The record goes first: once `inner` has the block back, another
        // thread may be handed the same address and record it.
        let state = STATE.load(Relaxed);
        if state != OFF {
            // SAFETY: the caller's promises for `dealloc`, passed on.
            return unsafe { self.dealloc_traced(ptr, layout, state) };
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
        // SAFETY: as above.
        unsafe { self.realloc_traced(ptr, layout, new_size, state) }
    }
}

impl<A: GlobalAlloc> TrackingAllocator<A> {
    /// `alloc` while tracing. `STATE` is loaded again after the inner call
    /// rather than kept in a callee-saved register across it: one load
    /// instead of a push, a pop and a move on sampled mode's fast path.
    /// Everything past sampled mode's fast path is a tail call, so the
    /// fast path keeps only the size across the inner call.
    ///
    /// # Safety
    ///
    /// The caller's duties of `GlobalAlloc::alloc` (a layout of non-zero size).
    #[inline(never)]
    unsafe fn alloc_traced(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout (this function's duty).
        let p = unsafe { self.inner.alloc(layout) };
        Self::after_alloc(p, layout.size())
    }

    /// `alloc_zeroed` while tracing, as [`Self::alloc_traced`].
    ///
    /// # Safety
    ///
    /// The caller's duties of `GlobalAlloc::alloc_zeroed`.
    #[inline(never)]
    unsafe fn alloc_zeroed_traced(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout (this function's duty).
        let p = unsafe { self.inner.alloc_zeroed(layout) };
        Self::after_alloc(p, layout.size())
    }

    /// Records (or counts) the block the inner allocator returned; returns it.
    #[inline(always)]
    fn after_alloc(p: *mut u8, size: usize) -> *mut u8 {
        if p.is_null() {
            return p;
        }
        let state = STATE.load(Relaxed);
        if state == SAMPLED && sampled_alloc_fast(size) {
            return p;
        }
        if state == OFF {
            return p;
        }
        Self::alloc_slow(p, size, state)
    }

    /// Everything [`Self::after_alloc`]'s fast path does not do.
    #[cold]
    #[inline(never)]
    fn alloc_slow(p: *mut u8, size: usize, state: u8) -> *mut u8 {
        on_alloc(p, size, state);
        p
    }

    /// `dealloc` while tracing (`state` is not `OFF`): the record first.
    ///
    /// # Safety
    ///
    /// The caller's duties of `GlobalAlloc::dealloc` for `ptr` and `layout`.
    #[inline(never)]
    unsafe fn dealloc_traced(&self, ptr: *mut u8, layout: Layout, state: u8) {
        if state == SAMPLED && sampled_free_fast(ptr, layout.size()) {
            // SAFETY: `ptr` came from `inner` with `layout` (this function's duty).
            return unsafe { self.inner.dealloc(ptr, layout) };
        }
        // SAFETY: this function's duties, passed on.
        unsafe { self.dealloc_slow(ptr, layout, state) }
    }

    /// Everything [`Self::dealloc_traced`]'s fast path does not do.
    ///
    /// # Safety
    ///
    /// As [`Self::dealloc_traced`].
    #[inline(never)]
    unsafe fn dealloc_slow(&self, ptr: *mut u8, layout: Layout, state: u8) {
        on_dealloc(ptr, layout.size(), state);
        // SAFETY: `ptr` came from `inner` with `layout` (this function's duty).
        unsafe { self.inner.dealloc(ptr, layout) }
    }

    /// `realloc` while tracing (`state` is not `OFF`).
    ///
    /// # Safety
    ///
    /// The caller's duties of `GlobalAlloc::realloc` for `ptr`, `layout`
    /// and `new_size`.
    #[inline(never)]
    unsafe fn realloc_traced(&self, ptr: *mut u8, layout: Layout, new_size: usize, state: u8) -> *mut u8 {
        if state == SAMPLED && guard::state() == 0 && !filter_maybe(ptr as usize) {
            // The common case of sampled mode: no record to move.
            // SAFETY: forwarded unchanged (this function's duty).
            let p = unsafe { self.inner.realloc(ptr, layout, new_size) };
            if p.is_null() || sampled_realloc_fast(layout.size(), new_size) {
                return p;
            }
            return Self::realloc_unsampled_slow(layout.size(), p, new_size);
        }
        // SAFETY: as above.
        unsafe { self.realloc_moving(ptr, layout, new_size, state) }
    }

    /// Everything [`Self::realloc_traced`]'s fast path does not do for a
    /// block that was not sampled.
    #[cold]
    #[inline(never)]
    fn realloc_unsampled_slow(old_size: usize, p: *mut u8, new_size: usize) -> *mut u8 {
        on_realloc_unsampled(old_size, p, new_size);
        p
    }

    /// `realloc` of a block that may have a record to move: kept out of
    /// [`Self::realloc_traced`], so that sampled mode's common case does not
    /// pay for this path's stack frame (six registers and the `Moving`
    /// record saved and restored on every realloc, in profiles).
    ///
    /// # Safety
    ///
    /// As [`Self::realloc_traced`].
    #[inline(never)]
    unsafe fn realloc_moving(&self, ptr: *mut u8, layout: Layout, new_size: usize, state: u8) -> *mut u8 {
        let moving = on_realloc_begin(ptr, layout.size(), state);
        // SAFETY: forwarded unchanged (this function's duty).
        let p = unsafe { self.inner.realloc(ptr, layout, new_size) };
        on_realloc_end(moving, ptr, layout.size(), p, new_size);
        p
    }
}
