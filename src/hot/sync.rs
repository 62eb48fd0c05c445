//! The one shim the stack table's code (`stack_table.rs`) is written
//! against, as tokio's `loom` module is: the atomics, the insert lock, its
//! allocation and its sizes.
//!
//! - At the top, the real thing: std's atomics, `parking_lot`'s mutex,
//!   zeroed memory from the global allocator with `BUSY` set, production
//!   sizes. Plain re-exports and constants, so the table built on them
//!   (`sites::StackTable`, the allocator's) compiles to what it did before
//!   there was a shim.

use super::guard::{Guard, BUSY};
use super::sites::STACK_TABLE_BYTES;
use std::sync::atomic::Ordering::Relaxed;

pub(in crate::hot) use parking_lot::Mutex;
pub(in crate::hot) use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64};

/// Slots in the first segment of stacks (segment `k` has `FIRST_SEGMENT << k`).
pub(in crate::hot) const FIRST_SEGMENT: usize = 256;
/// Slots in the first index (each rebuild doubles it).
pub(in crate::hot) const FIRST_INDEX: usize = 1024;

/// A type the table allocates in bulk with [`alloc_zeroed_slice`].
///
/// # Safety
///
/// All-zero bytes must be a valid value of the type, and [`ZeroInit::zero`]
/// must return that value: this flavour allocates zeroed memory and never
/// calls it.
pub(in crate::hot) unsafe trait ZeroInit: Sized {
    // Never called in this flavour; the table's impls serve both.
    #[allow(dead_code)]
    fn zero() -> Self;
}

// SAFETY: zero is a valid `usize`, and `zero` returns it.
unsafe impl ZeroInit for usize {
    fn zero() -> Self {
        0
    }
}

// SAFETY: std's `AtomicU64` has the layout of a `u64`, and zero is valid.
unsafe impl ZeroInit for AtomicU64 {
    fn zero() -> Self {
        AtomicU64::new(0)
    }
}

/// Allocates `n` zeroed `T`s through the global allocator (which, with
/// `BUSY` set, forwards straight to the inner allocator) and leaks them.
/// `None` when the memory cannot be had.
pub(in crate::hot) fn alloc_zeroed_slice<T: ZeroInit>(n: usize) -> Option<*mut T> {
    let layout = std::alloc::Layout::array::<T>(n).ok()?;
    let _busy = Guard::with(BUSY);
    // SAFETY: `layout` has a non-zero size (n >= 1, T is not a ZST here).
    let p = unsafe { std::alloc::alloc_zeroed(layout) } as *mut T;
    if p.is_null() {
        return None;
    }
    STACK_TABLE_BYTES.fetch_add(layout.size(), Relaxed);
    Some(p)
}
