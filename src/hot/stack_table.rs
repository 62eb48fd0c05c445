//! The lock-free stack table's code, compiled twice: as
//! `sites::stack_table` against the real shim (`super::sync` is
//! `crate::hot::sync`: std atomics, `parking_lot`, production sizes) for the
//! allocator, and under `#[cfg(all(test, feature = "loom"))]` as
//! `stack_table_loom::stack_table` against `crate::hot::sync::mocked` for the
//! model tests. Everything it touches that loom must see goes through the
//! names of `super::sync`; each parent defines `StackTable::new` (`const`
//! for the real static, built at run time under loom), hence the
//! `pub(super)` fields.
//!
//! See `sites` for what the table is for and its invariants.

use super::sync::{alloc_zeroed_slice, AtomicPtr, AtomicU32, AtomicU64, Mutex, ZeroInit, FIRST_INDEX, FIRST_SEGMENT};
use crate::hot::sites::{mix, StackId, COUNT_UNIT, MAX_STACKS, OVERFLOW_STACK};
use std::ptr;
use std::sync::atomic::Ordering::*;

/// Hashes a stack: a folded multiply per pair of frames (wyhash's step:
/// the two halves of one 64x64->128 product of the pair, each xored with
/// the running hash or a constant, xored together), so 30-odd frames cost
/// 15 multiplies in a short dependency chain instead of 30 (an Fx-style
/// multiply-rotate per frame was 36M of 286M instructions exact mode added,
/// frame-pointer build, perf-leaktrace --scale 0.02); then one
/// [`mix`] so both the index's low bits and the tag's high bits are spread.
#[inline]
pub(super) fn hash_stack(ips: &[usize], context: u32) -> u64 {
    #[inline(always)]
    fn fold(a: u64, b: u64) -> u64 {
        let p = a as u128 * b as u128;
        (p as u64) ^ ((p >> 64) as u64)
    }
    const K0: u64 = 0xa076_1d64_78bd_642f;
    const K1: u64 = 0xe703_7ed1_a0b4_28db;
    let mut h = ips.len() as u64 ^ ((context as u64) << 32);
    let mut pairs = ips.chunks_exact(2);
    for p in &mut pairs {
        h = fold(p[0] as u64 ^ h ^ K0, p[1] as u64 ^ K1);
    }
    if let [last] = pairs.remainder() {
        h = fold(*last as u64 ^ h ^ K0, K1);
    }
    mix(h)
}

/// One interned stack. Written once under the insert lock, before the index
/// slot that names it is published with `Release`, and never again: its
/// allocation totals live apart, in [`StackTotals`], so that the counters
/// every recorded block bumps do not keep taking the cache line that
/// lookups of the same stack read from another core.
pub(super) struct StackSlot {
    hash: AtomicU64,
    ips: AtomicPtr<usize>,
    len: AtomicU32,
    /// The allocation context the stack was captured under: part of its
    /// identity, so the same code path under two routes is two stacks.
    context: AtomicU32,
}

/// One stack's allocation totals (relaxed statistics counters), in segments
/// parallel to the [`StackSlot`] segments.
pub(super) struct StackTotals {
    /// Bytes allocated at this stack since `start()` (estimated in sampled mode).
    alloc_bytes: AtomicU64,
    /// Blocks allocated at this stack since `start()`, in units of
    /// 1/[`COUNT_UNIT`] block, so sampled mode's per-sample weights add up
    /// without rounding each one.
    alloc_units: AtomicU64,
}

// SAFETY: all-zero is a valid slot (null `ips`, length 0), and `zero` is it.
unsafe impl ZeroInit for StackSlot {
    fn zero() -> Self {
        StackSlot {
            hash: AtomicU64::new(0),
            ips: AtomicPtr::new(ptr::null_mut()),
            len: AtomicU32::new(0),
            context: AtomicU32::new(0),
        }
    }
}

// SAFETY: all-zero is a valid pair of counters, and `zero` is it.
unsafe impl ZeroInit for StackTotals {
    fn zero() -> Self {
        StackTotals { alloc_bytes: AtomicU64::new(0), alloc_units: AtomicU64::new(0) }
    }
}

/// Segment `k` holds `FIRST_SEGMENT << k` slots; with the real shim's 256,
/// 16 segments cover every id below `UNKNOWN_STACK` (the model's caps stay
/// far below its smaller reach).
pub(super) const SEGMENTS: usize = 16;

/// The open-addressing index from stack hash to id. Slot layout:
///
/// | bits   | meaning                         |
/// |--------|---------------------------------|
/// | 63..32 | upper half of the stack's hash  |
/// | 31..0  | id + 1 (0 = empty slot)         |
pub(super) struct Index {
    mask: usize,
    slots: *const AtomicU64,
}

// SAFETY: all-zero is a valid `Index` (mask 0, null slots; always
// overwritten before use), and `zero` is it.
unsafe impl ZeroInit for Index {
    fn zero() -> Self {
        Index { mask: 0, slots: ptr::null() }
    }
}

pub(crate) struct StackTable {
    pub(super) segments: [AtomicPtr<StackSlot>; SEGMENTS],
    /// Segment `k` of totals has as many entries as `segments[k]`.
    pub(super) totals: [AtomicPtr<StackTotals>; SEGMENTS],
    pub(super) len: AtomicU32,
    /// The current index. Replaced ones are leaked, never freed, because a
    /// reader may still be probing them; their total is below the final
    /// index's size.
    pub(super) index: AtomicPtr<Index>,
    pub(super) insert_lock: Mutex<()>,
    /// Allocation totals of [`OVERFLOW_STACK`] (it has no slot).
    pub(super) overflow_bytes: AtomicU64,
    pub(super) overflow_units: AtomicU64,
}

// SAFETY: all shared state is atomics or behind `insert_lock`; the raw
// pointers point to leaked, never-freed memory that is only written before
// being published.
unsafe impl Sync for StackTable {}

impl StackTable {
    /// How many stacks are interned.
    pub(crate) fn len(&self) -> usize {
        self.len.load(Acquire) as usize
    }

    pub(super) fn locate(id: StackId) -> (usize, usize) {
        // Segment k starts at FIRST_SEGMENT * (2^k - 1).
        let q = id as usize / FIRST_SEGMENT + 1;
        let k = (usize::BITS - 1 - q.leading_zeros()) as usize;
        let start = FIRST_SEGMENT * ((1 << k) - 1);
        (k, id as usize - start)
    }

    fn slot(&self, id: StackId) -> Option<&StackSlot> {
        let (k, off) = Self::locate(id);
        let seg = self.segments.get(k)?.load(Acquire);
        if seg.is_null() {
            return None;
        }
        // SAFETY: segment `k` was allocated with `FIRST_SEGMENT << k` slots
        // and `off` is below that by construction of `locate`; segments are
        // never freed.
        Some(unsafe { &*seg.add(off) })
    }

    fn totals(&self, id: StackId) -> Option<&StackTotals> {
        let (k, off) = Self::locate(id);
        let seg = self.totals.get(k)?.load(Acquire);
        if seg.is_null() {
            return None;
        }
        // SAFETY: as in `slot`: totals segment `k` has `FIRST_SEGMENT << k`
        // entries, `off` is below that, and segments are never freed.
        Some(unsafe { &*seg.add(off) })
    }

    /// The context stack `id` was captured under (0 for none or unknown ids).
    pub(crate) fn context(&self, id: StackId) -> u32 {
        if id >= self.len.load(Acquire) {
            return 0;
        }
        self.slot(id).map_or(0, |s| s.context.load(Relaxed))
    }

    /// Adds an allocation of `bytes` and `units` (see [`COUNT_UNIT`]) to
    /// stack `id`'s totals.
    #[inline]
    pub(crate) fn count_alloc(&self, id: StackId, bytes: u64, units: u64) {
        if id >= OVERFLOW_STACK {
            if id == OVERFLOW_STACK {
                self.overflow_bytes.fetch_add(bytes, Relaxed);
                self.overflow_units.fetch_add(units, Relaxed);
            }
            return;
        }
        if let Some(t) = self.totals(id) {
            t.alloc_bytes.fetch_add(bytes, Relaxed);
            t.alloc_units.fetch_add(units, Relaxed);
        }
    }

    /// Stack `id`'s allocation totals: `(bytes, blocks)`.
    pub(crate) fn alloc_totals(&self, id: StackId) -> (u64, u64) {
        if id == OVERFLOW_STACK {
            let units = self.overflow_units.load(Relaxed);
            return (self.overflow_bytes.load(Relaxed), (units + COUNT_UNIT / 2) / COUNT_UNIT);
        }
        if id >= self.len.load(Acquire) {
            return (0, 0);
        }
        self.totals(id).map_or((0, 0), |s| {
            let units = s.alloc_units.load(Relaxed);
            (s.alloc_bytes.load(Relaxed), (units + COUNT_UNIT / 2) / COUNT_UNIT)
        })
    }

    /// Zeroes every stack's allocation totals (at `start()` and `clear_traces()`).
    pub(crate) fn reset_alloc_totals(&self) {
        for id in 0..self.len.load(Acquire) {
            if let Some(t) = self.totals(id) {
                t.alloc_bytes.store(0, Relaxed);
                t.alloc_units.store(0, Relaxed);
            }
        }
        self.overflow_bytes.store(0, Relaxed);
        self.overflow_units.store(0, Relaxed);
    }

    /// The return addresses of stack `id` (empty for unknown ids).
    pub(crate) fn get(&self, id: StackId) -> &[usize] {
        if id >= self.len.load(Acquire) {
            return &[];
        }
        let Some(slot) = self.slot(id) else {
            return &[];
        };
        let p = slot.ips.load(Acquire);
        let len = slot.len.load(Acquire) as usize;
        if p.is_null() {
            return &[];
        }
        // SAFETY: `p` points to `len` addresses written before `len` was
        // published (Release in `insert_slow`, Acquire above), leaked and
        // never written again.
        unsafe { std::slice::from_raw_parts(p, len) }
    }

    fn lookup(&self, ips: &[usize], context: u32, hash: u64) -> Option<StackId> {
        let idx = self.index.load(Acquire);
        if idx.is_null() {
            return None;
        }
        // SAFETY: index objects are leaked once published, never freed.
        let idx = unsafe { &*idx };
        let mut i = (hash as usize) & idx.mask;
        loop {
            // SAFETY: `i <= mask` and the index has `mask + 1` slots.
            let s = unsafe { &*idx.slots.add(i) }.load(Acquire);
            if s == 0 {
                return None;
            }
            if s >> 32 == hash >> 32 {
                let id = (s & 0xffff_ffff) as StackId - 1;
                if let Some(slot) = self.slot(id) {
                    if slot.hash.load(Relaxed) == hash && slot.context.load(Relaxed) == context && self.get(id) == ips {
                        return Some(id);
                    }
                }
            }
            i = (i + 1) & idx.mask;
        }
    }

    /// The id of this stack under `context`, interning it when new;
    /// [`OVERFLOW_STACK`] when the table holds [`MAX_STACKS`] stacks already.
    /// `None` when memory for it cannot be had. Must run with `BUSY` set.
    #[inline]
    pub(crate) fn intern(&self, ips: &[usize], context: u32) -> Option<StackId> {
        let hash = hash_stack(ips, context);
        if let Some(id) = self.lookup(ips, context, hash) {
            return Some(id);
        }
        self.insert_slow(ips, context, hash, MAX_STACKS.load(Relaxed))
    }

    /// [`Self::intern`] with a cap of `cap` stacks instead of [`MAX_STACKS`].
    #[cfg(test)]
    pub(super) fn intern_capped(&self, ips: &[usize], context: u32, cap: u32) -> Option<StackId> {
        let hash = hash_stack(ips, context);
        self.lookup(ips, context, hash).or_else(|| self.insert_slow(ips, context, hash, cap))
    }

    /// The lock-free half of [`Self::intern`] alone: the id of a stack
    /// already interned, or `None`.
    #[cfg(test)]
    pub(super) fn find(&self, ips: &[usize], context: u32) -> Option<StackId> {
        self.lookup(ips, context, hash_stack(ips, context))
    }

    /// The id the index names for `hash` (its first slot with that tag),
    /// with the same loads as [`Self::lookup`] but without checking the
    /// stack: what a reader has to go on once an index slot is visible, so
    /// tests can check that the slot's contents are visible by then too.
    #[cfg(test)]
    pub(super) fn indexed(&self, hash: u64) -> Option<StackId> {
        let idx = self.index.load(Acquire);
        if idx.is_null() {
            return None;
        }
        // SAFETY: index objects are leaked once published, never freed.
        let idx = unsafe { &*idx };
        let mut i = (hash as usize) & idx.mask;
        loop {
            // SAFETY: `i <= mask` and the index has `mask + 1` slots.
            let s = unsafe { &*idx.slots.add(i) }.load(Acquire);
            if s == 0 {
                return None;
            }
            if s >> 32 == hash >> 32 {
                return Some((s & 0xffff_ffff) as StackId - 1);
            }
            i = (i + 1) & idx.mask;
        }
    }

    #[cold]
    #[inline(never)]
    fn insert_slow(&self, ips: &[usize], context: u32, hash: u64, cap: u32) -> Option<StackId> {
        let _lock = self.insert_lock.lock();
        if let Some(id) = self.lookup(ips, context, hash) {
            return Some(id);
        }
        let id = self.len.load(Relaxed);
        if id >= cap.min(OVERFLOW_STACK) {
            return Some(OVERFLOW_STACK);
        }
        self.ensure_index(id as usize + 1)?;
        let (k, _) = Self::locate(id);
        if self.segments[k].load(Relaxed).is_null() {
            let seg = alloc_zeroed_slice::<StackSlot>(FIRST_SEGMENT << k)?;
            self.segments[k].store(seg, Release);
        }
        if self.totals[k].load(Relaxed).is_null() {
            let seg = alloc_zeroed_slice::<StackTotals>(FIRST_SEGMENT << k)?;
            self.totals[k].store(seg, Release);
        }
        let copy = alloc_zeroed_slice::<usize>(ips.len().max(1))?;
        // SAFETY: `copy` has room for `ips.len()` words and does not overlap
        // the caller's buffer.
        unsafe { ptr::copy_nonoverlapping(ips.as_ptr(), copy, ips.len()) };
        let slot = self.slot(id)?;
        slot.hash.store(hash, Relaxed);
        slot.context.store(context, Relaxed);
        slot.ips.store(copy, Release);
        slot.len.store(ips.len() as u32, Release);
        self.len.store(id + 1, Release);
        // SAFETY: `ensure_index` published a non-null index with room.
        let idx = unsafe { &*self.index.load(Relaxed) };
        Self::place(idx, hash, id);
        Some(id)
    }

    fn place(idx: &Index, hash: u64, id: StackId) {
        let mut i = (hash as usize) & idx.mask;
        loop {
            // SAFETY: `i <= mask`, within the index's slots.
            let slot = unsafe { &*idx.slots.add(i) };
            if slot.load(Relaxed) == 0 {
                slot.store((hash & !0xffff_ffff) | (id as u64 + 1), Release);
                return;
            }
            i = (i + 1) & idx.mask;
        }
    }

    /// Makes sure the index can take `count` entries at a load of at most
    /// one half; rebuilds it twice as large when not. Under the insert lock.
    fn ensure_index(&self, count: usize) -> Option<()> {
        let cur = self.index.load(Relaxed);
        // SAFETY: a published index is never freed.
        let cap = if cur.is_null() { 0 } else { unsafe { (*cur).mask + 1 } };
        if count * 2 <= cap {
            return Some(());
        }
        let new_cap = (cap * 2).max(FIRST_INDEX);
        let slots = alloc_zeroed_slice::<AtomicU64>(new_cap)?;
        let idx_ptr = alloc_zeroed_slice::<Index>(1)?;
        // SAFETY: `idx_ptr` is a fresh, exclusively owned allocation for one Index.
        unsafe { idx_ptr.write(Index { mask: new_cap - 1, slots }) };
        // SAFETY: just initialised.
        let idx = unsafe { &*idx_ptr };
        for id in 0..self.len.load(Relaxed) {
            if let Some(slot) = self.slot(id) {
                Self::place(idx, slot.hash.load(Relaxed), id);
            }
        }
        self.index.store(idx_ptr, Release);
        Some(())
    }
}
