//! The one shim the stack table's code (`stack_table.rs`) is written
//! against, as tokio's `loom` module is: the atomics, the insert lock, its
//! allocation and its sizes.
//!
//! - At the top, the real thing: std's atomics, `parking_lot`'s mutex,
//!   zeroed memory from the global allocator with `BUSY` set, production
//!   sizes. Plain re-exports and constants, so the table built on them
//!   (`sites::StackTable`, the allocator's) compiles to what it did before
//!   there was a shim.
//! - [`mocked`], with the `loom` feature and only in unit tests: loom's
//!   atomics and mutex, memory built element by element (a zeroed loom
//!   atomic is not a valid one), and tiny sizes so a few inserts cross a
//!   segment boundary and rebuild the index. The model tests
//!   (`stack_table_loom.rs`) compile the same table code against it.

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
/// calls it, [`mocked`]'s calls it for every element instead.
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

/// The loom flavour of this shim, for the model tests only.
#[cfg(all(test, feature = "loom"))]
pub(in crate::hot) mod mocked {
    pub(in crate::hot) use ::loom::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64};

    /// Two slots in the first segment: the third stack opens segment 1.
    pub(in crate::hot) const FIRST_SEGMENT: usize = 2;
    /// Four slots in the first index: at a load of one half it takes two
    /// stacks, so the third rebuilds it (8 slots) and the fifth again (16).
    pub(in crate::hot) const FIRST_INDEX: usize = 4;

    /// loom's mutex with `parking_lot`'s `lock()` (no poisoning).
    pub(in crate::hot) struct Mutex<T>(::loom::sync::Mutex<T>);

    impl<T> Mutex<T> {
        pub(in crate::hot) fn new(value: T) -> Self {
            Mutex(::loom::sync::Mutex::new(value))
        }

        pub(in crate::hot) fn lock(&self) -> ::loom::sync::MutexGuard<'_, T> {
            self.0.lock().expect("a model thread panicked holding the insert lock")
        }
    }

    /// As the real [`super::ZeroInit`]; here only `zero` is used.
    ///
    /// # Safety
    ///
    /// The same contract, so that one `unsafe impl` per table type serves
    /// both flavours.
    pub(in crate::hot) unsafe trait ZeroInit: Sized {
        fn zero() -> Self;
    }

    // SAFETY: `zero` returns zero.
    unsafe impl ZeroInit for usize {
        fn zero() -> Self {
            0
        }
    }

    // SAFETY: `zero` returns a fresh loom atomic holding zero (never
    // reached through zeroed memory here).
    unsafe impl ZeroInit for AtomicU64 {
        fn zero() -> Self {
            AtomicU64::new(0)
        }
    }

    /// `n` values made with [`ZeroInit::zero`], leaked like the real
    /// table's memory (loom's atomics must each be constructed, so this
    /// cannot hand out zeroed memory). Never fails.
    pub(in crate::hot) fn alloc_zeroed_slice<T: ZeroInit>(n: usize) -> Option<*mut T> {
        let values: Box<[T]> = (0..n).map(|_| T::zero()).collect();
        Some(Box::leak(values).as_mut_ptr())
    }
}
