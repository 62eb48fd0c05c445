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
//! 5. While not tracing, a hook costs one relaxed load of `STATE`.
//!
//! The rest of the crate reaches it only through [`control`], its door:
//! every other submodule is private, so the compiler keeps the boundary.

mod alloc;
mod blockmap;
pub(crate) mod control;
mod counters;
mod dwarf;
mod fork;
mod guard;
mod sample;
mod scope;
mod sites;
mod stack;
#[cfg(all(test, feature = "loom"))]
mod stack_table_loom;
mod sync;

pub use alloc::TrackingAllocator;

use guard::Guard;
use sites::{BlockTable, StackTable, UNKNOWN_STACK};
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering::*};

/// What hooks do: `OFF`, `EXACT` or `SAMPLED`. The one load every hook
/// pays; it carries the mode too, so the fast paths need no second load.
pub(in crate::hot) static STATE: AtomicU8 = AtomicU8::new(OFF);
pub(in crate::hot) const OFF: u8 = 0;
pub(in crate::hot) const EXACT: u8 = 1;
pub(in crate::hot) const SAMPLED: u8 = 2;
/// The mode of the last `start()` (what snapshots report; stays when off).
pub(in crate::hot) static MODE: AtomicU8 = AtomicU8::new(MODE_EXACT);
pub(in crate::hot) const MODE_EXACT: u8 = 0;
pub(in crate::hot) const MODE_SAMPLED: u8 = 1;
/// Mean bytes between samples in sampled mode.
pub(in crate::hot) static MEAN_BYTES: AtomicUsize = AtomicUsize::new(512 * 1024);
/// Return addresses captured per block.
pub(in crate::hot) static DEPTH: AtomicUsize = AtomicUsize::new(64);
/// The capture method (`stack::LIBGCC`, `FRAME_POINTERS` or `DWARF`),
/// chosen and validated at `start()`.
pub(in crate::hot) static CAPTURE: AtomicU8 = AtomicU8::new(stack::LIBGCC);

// Traced bytes live in `counters`: in exact mode the bytes of recorded
// blocks, in sampled mode every byte allocated minus every byte freed since
// start (the tables then hold only the sampled blocks).
/// Blocks that could not be recorded (tracker out of memory, table full).
pub(in crate::hot) static UNTRACKED: AtomicUsize = AtomicUsize::new(0);

/// The birth epoch new blocks are recorded with: a coarse counter that
/// snapshots and monitor ticks advance (never a clock read per allocation).
/// Blocks keep it modulo 2^16 (see `sites::BlockKey`).
pub(in crate::hot) static BIRTH_EPOCH: AtomicU64 = AtomicU64::new(0);

pub(in crate::hot) static STACKS: StackTable = StackTable::new();
pub(in crate::hot) static BLOCKS: BlockTable = BlockTable::new();

/// Sampled mode: per bucket of addresses, how many sampled blocks are live,
/// as byte counters saturating at 255 (a saturated bucket stays "maybe").
/// A free whose bucket is zero was not sampled: one load, no lock, no
/// write. 16,384 buckets in 16 KiB. Bytes rather than 2-bit counters four
/// to a byte: the bucket's shift and mask were 9 of the 16 instructions of
/// the check, which every free and realloc of sampled mode pays.
const FILTER_BUCKETS: usize = 1 << 14;
static FILTER: [AtomicU8; FILTER_BUCKETS] = [const { AtomicU8::new(0) }; FILTER_BUCKETS];

/// An address's bucket (Fibonacci hashing: one multiply, the top 14 bits,
/// which depend on every address bit below them; no shift of the alignment
/// bits first, which was one instruction more on every free and realloc).
#[inline(always)]
fn filter_pos(addr: usize) -> &'static AtomicU8 {
    &FILTER[((addr as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 50) as usize]
}

/// Whether a sampled block may be live at `addr` (false: surely not).
#[inline(always)]
pub(in crate::hot) fn filter_maybe(addr: usize) -> bool {
    filter_pos(addr).load(Relaxed) != 0
}

fn filter_add(addr: usize) {
    let _ = filter_pos(addr).fetch_update(Relaxed, Relaxed, |v| (v < u8::MAX).then(|| v + 1));
}

fn filter_remove(addr: usize) {
    let _ = filter_pos(addr).fetch_update(Relaxed, Relaxed, |v| (v != 0 && v < u8::MAX).then(|| v - 1));
}

// Sampled mode's fast paths. Each checks everything first and commits
// (one store or two) only when nothing else is due, so that when it says
// no, the slow path can start over from nothing done; and none of them
// calls anything, so `TrackingAllocator`'s shims around them save no
// registers and tail-call the inner allocator or the slow path. Measured
// under callgrind: the push and pop of the slow paths' registers were a
// quarter of the sampled hook's instructions.

/// An allocation of `size` bytes in sampled mode: counted and not sampled,
/// nothing else to do (true); or not done at all (false: the caller runs
/// [`on_alloc`]).
#[inline(always)]
pub(in crate::hot) fn sampled_alloc_fast(size: usize) -> bool {
    // A set guard bit fails the counters' check (see `guard`).
    counters::try_alloc(size)
}

/// A free of `size` bytes at `ptr` in sampled mode: counted, surely not
/// sampled (true); or not done at all (false: the caller runs [`on_dealloc`]).
#[inline(always)]
pub(in crate::hot) fn sampled_free_fast(ptr: *mut u8, size: usize) -> bool {
    // A set guard bit fails the counters' check (see `guard`).
    !filter_maybe(ptr as usize) && counters::try_free(size)
}

/// After the inner realloc of a block that was surely not sampled returned
/// a non-null block: its change counted, its growth counted down without
/// crossing (true); or nothing done (false, always when a guard bit is set:
/// the caller runs [`on_realloc_unsampled`]).
#[inline(always)]
pub(in crate::hot) fn sampled_realloc_fast(old_size: usize, new_size: usize) -> bool {
    if new_size > old_size {
        counters::try_alloc(new_size - old_size)
    } else {
        counters::try_free(old_size - new_size)
    }
}

/// Called after the inner allocator returned `ptr` (non-null) while
/// tracing; `state` is the `STATE` the caller loaded.
#[inline(always)]
pub(in crate::hot) fn on_alloc(ptr: *mut u8, size: usize, state: u8) {
    if state == SAMPLED {
        // The fast path of sampled mode: a guard check, a per-thread count
        // and a per-thread countdown; no call, no lock, no shared write.
        let g = guard::state();
        if g != 0 {
            // The program's untraced bytes count (their frees will), the
            // tracker's own do not.
            if g == guard::UNTRACED {
                counters::add(size as isize);
            }
            return;
        }
        if counters::count_down(size) {
            return;
        }
        sampled_alloc(ptr as usize, size, size);
    } else {
        exact_alloc(ptr as usize, size);
    }
}

/// Inlined into `TrackingAllocator`'s one slow allocation path, so exact
/// mode pays one call between the shim and the capture, not two.
#[inline(always)]
fn exact_alloc(addr: usize, size: usize) {
    let Some(busy) = Guard::enter_hook() else {
        return;
    };
    record(addr, size, false, busy.context());
}

/// The countdown crossed on `counted` bytes (the block's size, or a
/// realloc's growth) of a block now `size` bytes long at `addr`.
#[cold]
#[inline(never)]
fn sampled_alloc(addr: usize, size: usize, counted: usize) {
    let Some(busy) = Guard::enter_hook() else {
        return;
    };
    if sample::crossed(counted, MEAN_BYTES.load(Relaxed)) {
        record(addr, size, true, busy.context());
    }
}

/// The epoch a block born now is recorded with.
#[inline]
fn birth_epoch() -> u16 {
    BIRTH_EPOCH.load(Relaxed) as u16
}

/// Captures the stack and stores the block, under the allocating thread's
/// `context`. `BUSY` is held by the caller.
#[inline]
fn record(addr: usize, size: usize, sampled: bool, context: u32) {
    let mut buf = stack::Buf::new();
    let depth = DEPTH.load(Relaxed).min(stack::MAX_DEPTH);
    let ips = buf.fill(depth, CAPTURE.load(Relaxed));
    let id = STACKS.intern(ips, context).unwrap_or(UNKNOWN_STACK);
    count_alloc(id, size, sampled);
    store(addr, id, size, sampled, birth_epoch());
}

/// Adds a new block (or a block's growth) of `size` bytes to its stack's
/// allocation totals: exactly in exact mode; in sampled mode weighted by the
/// inverse of the chance it had to be sampled, the same unbiased estimate as
/// the live sizes of a snapshot.
#[inline]
fn count_alloc(id: sites::StackId, size: usize, sampled: bool) {
    if sampled {
        let w = 1.0 / sample::probability(size, MEAN_BYTES.load(Relaxed));
        STACKS.count_alloc(id, (size as f64 * w) as u64, (w * sites::COUNT_UNIT as f64) as u64);
    } else {
        STACKS.count_alloc(id, size as u64, sites::COUNT_UNIT);
    }
}

#[inline]
fn store(addr: usize, id: sites::StackId, size: usize, sampled: bool, epoch: u16) {
    if let Ok(stale) = BLOCKS.insert(addr, id, size, epoch) {
        if sampled {
            if stale.is_none() {
                filter_add(addr);
            }
        } else {
            counters::add(size as isize - stale.unwrap_or(0) as isize);
        }
        scope::tag_if_open(addr, id, size);
    } else {
        UNTRACKED.fetch_add(1, Relaxed);
    }
}

/// Called before the inner allocator frees `ptr` while tracing.
#[inline(always)]
pub(in crate::hot) fn on_dealloc(ptr: *mut u8, size: usize, state: u8) {
    if state == SAMPLED {
        let state = guard::state();
        // Symmetric with `on_alloc`: the tracker's own blocks (allocated
        // with `BUSY` or `IGNORE` set) were never counted.
        if state == 0 || state == guard::UNTRACED {
            counters::free(size);
        }
        if !filter_maybe(ptr as usize) || state & guard::BUSY != 0 {
            return;
        }
        free_slow(ptr as usize, true);
    } else {
        free_slow(ptr as usize, false);
    }
}

#[inline(never)]
fn free_slow(addr: usize, sampled: bool) {
    if guard::state() & guard::BUSY != 0 {
        return;
    }
    let _busy = Guard::with(guard::BUSY);
    forget(addr, sampled);
}

#[inline]
fn forget(addr: usize, sampled: bool) -> Option<(sites::StackId, usize, u16)> {
    let found = BLOCKS.remove(addr);
    if let Some((_, size, _)) = found {
        scope::untag(addr);
        if sampled {
            filter_remove(addr);
        } else {
            counters::add(-(size as isize));
        }
    }
    found
}

/// What `on_realloc_begin` took out of the table, to put back or move.
pub(in crate::hot) struct Moving {
    /// The old block's record (stack, size, birth epoch), when it had one.
    old: Option<(sites::StackId, usize, u16)>,
    /// Whether this realloc is traced at all (not a tracker allocation).
    active: bool,
    /// Sampled mode (from the `STATE` the caller loaded).
    sampled: bool,
    /// `BUSY`, held across the inner realloc when a record moves.
    _busy: Option<Guard>,
    /// In the program's untraced scope: the old record goes, no new one.
    untraced: bool,
}

/// Sampled mode, a block that was surely not sampled: after the inner
/// realloc returned `new_ptr`, count the change, and count its growth down
/// (only the growth: a block's bytes are counted down once, so a block that
/// grew to `s` bytes by any number of reallocs was sampled with probability
/// `1 - exp(-s / mean)`, the same as one allocated at `s`, which is the
/// weight snapshots give it; counting the whole new size at each realloc
/// sampled growing blocks about twice as often as their weight assumes, and
/// made the realloc growth benchmark 3.4x System). A shrink counts nothing.
/// No record moves, so nothing needs doing before the inner call.
#[inline(always)]
pub(in crate::hot) fn on_realloc_unsampled(old_size: usize, new_ptr: *mut u8, new_size: usize) {
    if new_ptr.is_null() {
        return;
    }
    let g = guard::state();
    if g != 0 {
        // As `realloc_take_untraced` and `realloc_put_untraced` do for a
        // block without a record: the program's untraced bytes count, the
        // tracker's own do not.
        if g == guard::UNTRACED {
            counters::add(new_size as isize - old_size as isize);
        }
        return;
    }
    if new_size <= old_size {
        return counters::free(old_size - new_size);
    }
    let grown = new_size - old_size;
    if counters::count_down(grown) {
        return;
    }
    sampled_alloc(new_ptr as usize, new_size, grown);
}

/// Called before the inner `realloc`: the old record is taken out while
/// `ptr` still belongs to this thread (once the inner allocator has freed
/// it, another thread may get the same address and record it).
#[inline(always)]
pub(in crate::hot) fn on_realloc_begin(ptr: *mut u8, old_size: usize, state: u8) -> Moving {
    let sampled = state == SAMPLED;
    let inactive = Moving { old: None, active: false, sampled, _busy: None, untraced: false };
    let g = guard::state();
    if g == guard::UNTRACED {
        return realloc_take_untraced(ptr as usize, old_size, sampled);
    }
    if g != 0 {
        return inactive;
    }
    if sampled {
        // Blocks that were surely not sampled took `TrackingAllocator::realloc`'s
        // fast path; this one may have a record to move.
        counters::add(-(old_size as isize));
    }
    realloc_take(ptr as usize, sampled)
}

#[inline(never)]
fn realloc_take(addr: usize, sampled: bool) -> Moving {
    let Some(busy) = Guard::enter_hook() else {
        return Moving { old: None, active: false, sampled, _busy: None, untraced: false };
    };
    Moving { old: forget(addr, sampled), active: true, sampled, _busy: Some(busy), untraced: false }
}

/// A realloc in the program's untraced scope: the old block's free is seen
/// (its record goes, or comes back if the realloc fails), the new block is
/// not recorded; in sampled mode both sizes count in the total.
#[cold]
#[inline(never)]
fn realloc_take_untraced(addr: usize, old_size: usize, sampled: bool) -> Moving {
    let busy = Guard::with(guard::BUSY);
    if sampled {
        counters::add(-(old_size as isize));
    }
    Moving { old: forget(addr, sampled), active: true, sampled, _busy: Some(busy), untraced: true }
}

/// Called after the inner `realloc` returned `new_ptr` (null on failure).
#[inline(always)]
pub(in crate::hot) fn on_realloc_end(m: Moving, ptr: *mut u8, old_size: usize, new_ptr: *mut u8, new_size: usize) {
    if !m.active {
        return;
    }
    let sampled = m.sampled;
    if m.untraced {
        return realloc_put_untraced(m, ptr as usize, old_size, new_ptr.is_null(), new_size);
    }
    if sampled && m.old.is_none() && !new_ptr.is_null() {
        // An unsampled block moved: count it, and count its growth down
        // (see `on_realloc_unsampled`).
        let grown = new_size.saturating_sub(old_size);
        counters::add((new_size - grown) as isize);
        if grown == 0 || counters::count_down(grown) {
            return;
        }
    }
    realloc_put(m, ptr as usize, old_size, new_ptr as usize, new_size, sampled);
}

#[cold]
#[inline(never)]
fn realloc_put_untraced(m: Moving, addr: usize, old_size: usize, failed: bool, new_size: usize) {
    let Moving { old, sampled, _busy, .. } = m;
    if failed {
        // The old block is still live: restore it as it was.
        if sampled {
            counters::add(old_size as isize);
        }
        if let Some((id, size, epoch)) = old {
            store(addr, id, size, sampled, epoch);
        }
    } else if sampled {
        counters::add(new_size as isize);
    }
}

#[inline(never)]
fn realloc_put(m: Moving, addr: usize, old_size: usize, new_addr: usize, new_size: usize, sampled: bool) {
    let Moving { old, _busy, .. } = m;
    let _busy = match _busy {
        Some(b) => b,
        None => match Guard::enter_hook() {
            Some(b) => b,
            None => return,
        },
    };
    if new_addr == 0 {
        // The old block is still live: restore it as it was.
        if sampled {
            counters::add(old_size as isize);
        }
        if let Some((id, size, epoch)) = old {
            store(addr, id, size, sampled, epoch);
        }
        return;
    }
    let context = _busy.context();
    match old {
        // The block keeps its call site and birth epoch (its oldest bytes
        // were born then), with its new size; its growth is allocated.
        Some((id, size, epoch)) => {
            if sampled {
                counters::add(new_size as isize);
            }
            if new_size > size {
                count_alloc_growth(id, new_size - size, new_size, sampled);
            }
            store(new_addr, id, new_size, sampled, epoch)
        }
        None if !sampled => record(new_addr, new_size, false, context),
        None => {
            if sample::crossed(new_size.saturating_sub(old_size).max(1), MEAN_BYTES.load(Relaxed)) {
                record(new_addr, new_size, true, context);
            }
        }
    }
}

/// A recorded block grew by `grown` bytes to `new_size`: bytes allocated,
/// no new block. In sampled mode weighted as the block now is.
fn count_alloc_growth(id: sites::StackId, grown: usize, new_size: usize, sampled: bool) {
    let w = if sampled { 1.0 / sample::probability(new_size, MEAN_BYTES.load(Relaxed)) } else { 1.0 };
    STACKS.count_alloc(id, (grown as f64 * w) as u64, 0);
}

// ------------------------------------------------------------- control
// Called through `control.rs`, never from a hook.

/// Clears all records. Exact mode: the cleared blocks' bytes leave the
/// total (frees of them are ignored from now on); sampled mode: the total
/// starts again from zero.
pub(in crate::hot) fn clear(hooks_off: bool) {
    // The free filter counts sampled records per bucket. It is zeroed only
    // while the hooks are off (`start()`, `stop()`). With tracing on
    // (`clear_traces()`) zeroing it races with the hooks either way round:
    // zeroed after the shards are cleared, a block sampled into an
    // already-cleared shard in between loses its count; zeroed before, the
    // free of a record not yet cleared takes away the count of a block
    // recorded since, in the same bucket. Either block's free then skips
    // the lookup and it stays live forever. Left as it is, the filter only
    // over-counts, for the records the clear dropped: frees in those buckets
    // take the lookup they did not need, until the next `start()`.
    if hooks_off {
        for f in FILTER.iter() {
            f.store(0, Relaxed);
        }
    }
    let bytes = BLOCKS.clear();
    STACKS.reset_alloc_totals();
    scope::clear();
    if MODE.load(Relaxed) == MODE_SAMPLED {
        counters::reset();
    } else {
        counters::forget_bytes(bytes);
        counters::reset_peak();
    }
    UNTRACKED.store(0, Relaxed);
}

/// Bytes the tracker's tables hold.
pub(in crate::hot) fn memory() -> usize {
    sites::STACK_TABLE_BYTES.load(Relaxed) + BLOCKS.memory() + dwarf::memory()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_counts_per_bucket_and_saturates() {
        // Two block addresses that share a bucket.
        let a = 0x7000_0000_1230usize;
        let b = (1..).map(|i| a + 16 * i).find(|&b| std::ptr::eq(filter_pos(a), filter_pos(b))).unwrap();
        assert!(!filter_maybe(a));
        filter_add(a);
        filter_add(b);
        assert!(filter_maybe(a));
        filter_remove(a);
        assert!(filter_maybe(b), "one still live");
        filter_remove(b);
        assert!(!filter_maybe(a), "both gone");
        // Saturated at 255: stays "maybe" for good, never wraps to zero.
        for _ in 0..300 {
            filter_add(a);
        }
        for _ in 0..300 {
            filter_remove(a);
        }
        assert!(filter_maybe(a));
        filter_pos(a).store(0, Relaxed);
    }
}
