//! The `GlobalAlloc` implementation, and nothing else.

use super::{filter_maybe, guard, on_alloc, on_dealloc, on_realloc_begin, on_realloc_end, on_realloc_unsampled};
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
/// call costs one relaxed atomic load on top of the inner allocator.
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
unsafe impl<A: GlobalAlloc> GlobalAlloc for TrackingAllocator<A> {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout, as the caller promised
        // `GlobalAlloc::alloc`'s preconditions.
        let p = unsafe { self.inner.alloc(layout) };
        let state = STATE.load(Relaxed);
        if state != OFF && !p.is_null() {
            on_alloc(p, layout.size(), state);
        }
        p
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { self.inner.alloc_zeroed(layout) };
        let state = STATE.load(Relaxed);
        if state != OFF && !p.is_null() {
            on_alloc(p, layout.size(), state);
        }
        p
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // The record goes first: once `inner` has the block back, another
        // thread may be handed the same address and record it.
        let state = STATE.load(Relaxed);
        if state != OFF {
            on_dealloc(ptr, layout.size(), state);
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
        if state == SAMPLED && guard::state() == 0 && !filter_maybe(ptr as usize) {
            // The common case of sampled mode: no record to move.
            // SAFETY: as above.
            let p = unsafe { self.inner.realloc(ptr, layout, new_size) };
            on_realloc_unsampled(layout.size(), p, new_size);
            return p;
        }
        let moving = on_realloc_begin(ptr, layout.size(), state);
        // SAFETY: as above.
        let p = unsafe { self.inner.realloc(ptr, layout, new_size) };
        on_realloc_end(moving, ptr, layout.size(), p, new_size);
        p
    }
}
