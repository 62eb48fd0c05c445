//! Everything that runs inside `alloc`, `dealloc` and `realloc`.
//!
//! Invariants (each module relies on them):
//! 1. Nothing here resolves symbols, formats, does I/O or panics.
//! 2. No lock is held while a stack is captured: capture first, then intern
//!    the stack (lock-free for a known stack), then lock one block shard.
//! 3. Every hook that does any work holds the `BUSY` guard bit, and every
//!    block-shard lock is taken with it set, so an allocation or free made
//!    while in here (a table growing, the unwinder, a parked thread) goes
//!    straight to the inner allocator and can never take a lock again.
//! 4. The tracker's own memory comes from the global allocator with `BUSY`
//!    set, that is from the inner allocator, untracked; every such
//!    allocation is fallible, and a block whose record cannot be stored is
//!    counted in `UNTRACKED`, never dropped silently, never an abort.
//! 5. While not tracing, a hook costs one relaxed load of `TRACING`.
//!
//! Other modules read this one only through `crate::snapshot` and the
//! control functions at the bottom of this file.

pub(crate) mod alloc;
pub(crate) mod dwarf;
pub(crate) mod guard;
pub(crate) mod sample;
pub(crate) mod scope;
pub(crate) mod sites;
pub(crate) mod stack;

use guard::Guard;
use sites::{BlockTable, StackTable, UNKNOWN_STACK};
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicU32, AtomicU8, AtomicUsize, Ordering::*};

/// Whether hooks track anything. The one load every hook pays.
pub(crate) static TRACING: AtomicBool = AtomicBool::new(false);
/// 0 = exact, 1 = sampled.
pub(crate) static MODE: AtomicU8 = AtomicU8::new(MODE_EXACT);
pub(crate) const MODE_EXACT: u8 = 0;
pub(crate) const MODE_SAMPLED: u8 = 1;
/// Mean bytes between samples in sampled mode.
pub(crate) static MEAN_BYTES: AtomicUsize = AtomicUsize::new(512 * 1024);
/// Return addresses captured per block.
pub(crate) static DEPTH: AtomicUsize = AtomicUsize::new(64);
/// The capture method (`stack::LIBGCC`, `FRAME_POINTERS` or `DWARF`),
/// chosen and validated at `start()`.
pub(crate) static CAPTURE: AtomicU8 = AtomicU8::new(stack::LIBGCC);

/// Bytes in tracked blocks (exact mode: every block since start; sampled
/// mode: the sampled ones). Moves under the block's shard lock.
pub(crate) static CURRENT: AtomicUsize = AtomicUsize::new(0);
/// Highest `CURRENT` since start or `reset_peak`.
pub(crate) static PEAK: AtomicUsize = AtomicUsize::new(0);
/// Sampled mode: bytes allocated minus bytes freed since start, every block.
pub(crate) static NET: AtomicIsize = AtomicIsize::new(0);
/// Highest `NET` since start or `reset_peak`.
pub(crate) static NET_PEAK: AtomicIsize = AtomicIsize::new(0);
/// Blocks that could not be recorded (tracker out of memory, table full).
pub(crate) static UNTRACKED: AtomicUsize = AtomicUsize::new(0);

pub(crate) static STACKS: StackTable = StackTable::new();
pub(crate) static BLOCKS: BlockTable = BlockTable::new();

/// Sampled mode: per bucket of addresses, how many sampled blocks are live.
/// A free whose bucket is zero was not sampled: one load, no lock, no write.
const FILTER_LEN: usize = 1 << 14;
static FILTER: [AtomicU32; FILTER_LEN] = [const { AtomicU32::new(0) }; FILTER_LEN];

#[inline]
fn filter_slot(addr: usize) -> &'static AtomicU32 {
    &FILTER[(sites::mix(addr as u64) >> 20) as usize % FILTER_LEN]
}

/// Called after the inner allocator returned `ptr` (non-null) while tracing.
#[inline(never)]
pub(crate) fn on_alloc(ptr: *mut u8, size: usize) {
    let Some(_busy) = Guard::enter_hook() else {
        return;
    };
    if MODE.load(Relaxed) == MODE_SAMPLED {
        let net = NET.fetch_add(size as isize, Relaxed) + size as isize;
        if net > NET_PEAK.load(Relaxed) {
            NET_PEAK.fetch_max(net, Relaxed);
        }
        if !sample::should_sample(size, MEAN_BYTES.load(Relaxed)) {
            return;
        }
        record(ptr as usize, size, true);
    } else {
        record(ptr as usize, size, false);
    }
}

/// Captures the stack and stores the block. `BUSY` is held by the caller.
#[inline]
fn record(addr: usize, size: usize, sampled: bool) {
    let mut buf = [0usize; stack::MAX_DEPTH];
    let depth = DEPTH.load(Relaxed).min(stack::MAX_DEPTH);
    let n = stack::capture(&mut buf[..depth], CAPTURE.load(Relaxed));
    let id = STACKS.intern(&buf[..n]).unwrap_or(UNKNOWN_STACK);
    store(addr, id, size, sampled);
}

#[inline]
fn store(addr: usize, id: sites::StackId, size: usize, sampled: bool) {
    if BLOCKS.insert(addr, id, size) {
        if sampled {
            filter_slot(addr).fetch_add(1, Relaxed);
        }
        let scope = scope::current();
        if scope != 0 {
            scope::tag(addr, scope, id, size);
        }
    } else {
        UNTRACKED.fetch_add(1, Relaxed);
    }
}

/// Called before the inner allocator frees `ptr` while tracing.
#[inline(never)]
pub(crate) fn on_dealloc(ptr: *mut u8, size: usize) {
    let sampled = MODE.load(Relaxed) == MODE_SAMPLED;
    let state = guard::state();
    if sampled {
        // Symmetric with `on_alloc`: the tracker's own blocks (allocated
        // with a guard bit set) never entered NET.
        if state == 0 {
            NET.fetch_sub(size as isize, Relaxed);
        }
        if filter_slot(ptr as usize).load(Relaxed) == 0 {
            return;
        }
    }
    if state & guard::BUSY != 0 {
        return;
    }
    let _busy = Guard::with(guard::BUSY);
    forget(ptr as usize, sampled);
}

#[inline]
fn forget(addr: usize, sampled: bool) -> Option<(sites::StackId, usize)> {
    let found = BLOCKS.remove(addr);
    if found.is_some() {
        scope::untag(addr);
    }
    if sampled && found.is_some() {
        filter_slot(addr).fetch_sub(1, Relaxed);
    }
    found
}

/// What `on_realloc_begin` took out of the table, to put back or move.
pub(crate) struct Moving {
    old: Option<(sites::StackId, usize)>,
    busy: Option<Guard>,
}

/// Called before the inner `realloc`: the old record is taken out while
/// `ptr` still belongs to this thread (once the inner allocator has freed
/// it, another thread may get the same address and record it).
#[inline(never)]
pub(crate) fn on_realloc_begin(ptr: *mut u8, old_size: usize) -> Moving {
    let sampled = MODE.load(Relaxed) == MODE_SAMPLED;
    let Some(busy) = Guard::enter_hook() else {
        return Moving { old: None, busy: None };
    };
    if sampled {
        NET.fetch_sub(old_size as isize, Relaxed);
        if filter_slot(ptr as usize).load(Relaxed) == 0 {
            return Moving { old: None, busy: Some(busy) };
        }
    }
    let old = forget(ptr as usize, sampled);
    Moving { old, busy: Some(busy) }
}

/// Called after the inner `realloc` returned `new_ptr` (null on failure).
#[inline(never)]
pub(crate) fn on_realloc_end(m: Moving, ptr: *mut u8, old_size: usize, new_ptr: *mut u8, new_size: usize) {
    let Moving { old, busy } = m;
    if busy.is_none() {
        return;
    }
    let sampled = MODE.load(Relaxed) == MODE_SAMPLED;
    if new_ptr.is_null() {
        // The old block is still live: restore it as it was.
        if sampled {
            NET.fetch_add(old_size as isize, Relaxed);
        }
        if let Some((id, size)) = old {
            store(ptr as usize, id, size, sampled);
        }
        return;
    }
    if sampled {
        let net = NET.fetch_add(new_size as isize, Relaxed) + new_size as isize;
        if net > NET_PEAK.load(Relaxed) {
            NET_PEAK.fetch_max(net, Relaxed);
        }
    }
    match old {
        // The block keeps its call site, with its new size.
        Some((id, _)) => store(new_ptr as usize, id, new_size, sampled),
        None if !sampled => record(new_ptr as usize, new_size, false),
        None => {
            if sample::should_sample(new_size, MEAN_BYTES.load(Relaxed)) {
                record(new_ptr as usize, new_size, true);
            }
        }
    }
}

// ------------------------------------------------------------- control
// Called by the public API (lib.rs), never from a hook.

/// Clears all records and counters.
pub(crate) fn clear() {
    BLOCKS.clear();
    for f in FILTER.iter() {
        f.store(0, Relaxed);
    }
    NET.store(0, Relaxed);
    NET_PEAK.store(0, Relaxed);
    PEAK.store(CURRENT.load(Relaxed), Relaxed);
    UNTRACKED.store(0, Relaxed);
}

/// `(current, peak)` traced bytes for the active mode.
pub(crate) fn traced() -> (usize, usize) {
    if MODE.load(Relaxed) == MODE_SAMPLED {
        (NET.load(Relaxed).max(0) as usize, NET_PEAK.load(Relaxed).max(0) as usize)
    } else {
        (CURRENT.load(Relaxed), PEAK.load(Relaxed))
    }
}

pub(crate) fn reset_peak() {
    PEAK.store(CURRENT.load(Relaxed), Relaxed);
    NET_PEAK.store(NET.load(Relaxed), Relaxed);
}

/// Bytes the tracker's tables hold.
pub(crate) fn memory() -> usize {
    sites::STACK_TABLE_BYTES.load(Relaxed) + BLOCKS.memory()
}
