//! Tables of stacks and live blocks.
//!
//! - [`StackTable`] interns captured stacks. A stack already seen is found
//!   with atomic loads only (no lock, no write), so a hot call site costs a
//!   hash and a lookup. New stacks are appended under a mutex; entries never
//!   move and are never freed, so a reader holding an id can always read it.
//! - [`BlockTable`] maps each live tracked block's address to its stack and
//!   size, sharded by address so threads rarely share a lock. Per-site totals
//!   are not kept on the hot path at all: a snapshot sums the blocks of each
//!   stack, so an allocation writes one shard and nothing else shared but the
//!   byte counter.
//!
//! Every allocation made here (a new stack entry, a table growing) happens
//! with the `BUSY` guard bit set, so it goes to the inner allocator untracked,
//! and every one is fallible: when memory for the tables cannot be had the
//! block is counted as untracked instead.

use super::guard::{Guard, BUSY};
use parking_lot::{Mutex, MutexGuard};
use std::hash::{BuildHasher, Hasher};
use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering::*};

/// An interned stack's id. Ids fit in 24 bits (see [`pack`]); the top two
/// are [`OVERFLOW_STACK`] and [`UNKNOWN_STACK`].
pub(crate) type StackId = u32;

/// The id recorded when a stack could not be interned (out of memory for
/// the table); it resolves to no frames.
pub(crate) const UNKNOWN_STACK: StackId = (1 << 24) - 1;

/// The id of every stack past the table's cap ([`MAX_STACKS`]): one visible
/// stack that snapshots show as `[other stacks]`, with its own live blocks
/// and allocation totals, so a program allocating from millions of distinct
/// stacks keeps a bounded table and loses no bytes. It has no frames.
pub(crate) const OVERFLOW_STACK: StackId = UNKNOWN_STACK - 1;

/// The default cap on distinct stacks: 65,536. A stack costs its frames
/// (8 bytes each, 64 at the default depth), 40 bytes of slot and totals and two index
/// words at most: about 0.6 KiB, so the table stays under 40 MiB at the
/// default depth (typically 20 MiB: stacks are 20-40 frames deep).
pub(crate) const DEFAULT_MAX_STACKS: u32 = 1 << 16;

/// The cap on distinct stacks (see [`set_max_stacks`]); stacks past it are
/// recorded under [`OVERFLOW_STACK`].
pub(crate) static MAX_STACKS: AtomicU32 = AtomicU32::new(DEFAULT_MAX_STACKS);

/// Sets the cap on distinct stacks, clamped to `1..=OVERFLOW_STACK`. Stacks
/// already interned stay; a lower cap only stops new ones. For
/// `Config::max_stacks`, to be called by `start()` (not wired yet).
#[allow(dead_code)]
pub(crate) fn set_max_stacks(n: usize) {
    MAX_STACKS.store(n.clamp(1, OVERFLOW_STACK as usize) as u32, Relaxed);
}

/// Bytes the stack table has allocated (entries, index, segments).
pub(crate) static STACK_TABLE_BYTES: AtomicUsize = AtomicUsize::new(0);

/// Spreads an address or a stack hash over all bits: a folded multiply (the
/// high and low halves of one 64x64->128 product, xored, as foldhash and
/// wyhash do). Every output bit depends on every input bit, low bits (table
/// indexes) and high bits (hashbrown's tags) alike. One `mul` instead of the
/// murmur3 finaliser's two multiplies and three shifts: it runs several
/// times per recorded block (shard, block key, stack hash, and once per
/// frame in the DWARF unwinder's rule cache), where the finaliser was 3% of
/// exact mode's instructions.
#[inline]
pub(crate) fn mix(x: u64) -> u64 {
    let p = (x ^ 0x243f_6a88_85a3_08d3) as u128 * 0x9e37_79b9_7f4a_7c15u128;
    (p as u64) ^ ((p >> 64) as u64)
}

/// Hashes a stack: a folded multiply per pair of frames (wyhash's step:
/// the two halves of one 64x64->128 product of the pair, each xored with
/// the running hash or a constant, xored together), so 30-odd frames cost
/// 15 multiplies in a short dependency chain instead of 30 (an Fx-style
/// multiply-rotate per frame was 36M of 286M instructions exact mode added,
/// frame-pointer build, perf-leaktrace --scale 0.02); then one
/// [`mix`] so both the index's low bits and the tag's high bits are spread.
#[inline]
fn hash_stack(ips: &[usize], context: u32) -> u64 {
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

// ---------------------------------------------------------------- stacks

/// One interned stack. Written once under the insert lock, before the index
/// slot that names it is published with `Release`, and never again: its
/// allocation totals live apart, in [`StackTotals`], so that the counters
/// every recorded block bumps do not keep taking the cache line that
/// lookups of the same stack read from another core.
struct StackSlot {
    hash: AtomicU64,
    ips: AtomicPtr<usize>,
    len: AtomicU32,
    /// The allocation context the stack was captured under: part of its
    /// identity, so the same code path under two routes is two stacks.
    context: AtomicU32,
}

/// One stack's allocation totals (relaxed statistics counters), in segments
/// parallel to the [`StackSlot`] segments.
struct StackTotals {
    /// Bytes allocated at this stack since `start()` (estimated in sampled mode).
    alloc_bytes: AtomicU64,
    /// Blocks allocated at this stack since `start()`, in units of
    /// 1/[`COUNT_UNIT`] block, so sampled mode's per-sample weights add up
    /// without rounding each one.
    alloc_units: AtomicU64,
}

/// Fixed-point unit of [`StackTotals::alloc_units`].
pub(crate) const COUNT_UNIT: u64 = 1 << 16;

const FIRST_SEGMENT: usize = 256;
/// Segment `k` holds `FIRST_SEGMENT << k` slots; 16 segments cover every id
/// below `UNKNOWN_STACK`.
const SEGMENTS: usize = 16;

/// The open-addressing index from stack hash to id. Slot layout:
///
/// | bits   | meaning                         |
/// |--------|---------------------------------|
/// | 63..32 | upper half of the stack's hash  |
/// | 31..0  | id + 1 (0 = empty slot)         |
struct Index {
    mask: usize,
    slots: *const AtomicU64,
}

pub(crate) struct StackTable {
    segments: [AtomicPtr<StackSlot>; SEGMENTS],
    /// Segment `k` of totals has as many entries as `segments[k]`.
    totals: [AtomicPtr<StackTotals>; SEGMENTS],
    len: AtomicU32,
    /// The current index. Replaced ones are leaked, never freed, because a
    /// reader may still be probing them; their total is below the final
    /// index's size.
    index: AtomicPtr<Index>,
    insert_lock: Mutex<()>,
    /// Allocation totals of [`OVERFLOW_STACK`] (it has no slot).
    overflow_bytes: AtomicU64,
    overflow_units: AtomicU64,
}

// SAFETY: all shared state is atomics or behind `insert_lock`; the raw
// pointers point to leaked, never-freed memory that is only written before
// being published.
unsafe impl Sync for StackTable {}

impl StackTable {
    pub(crate) const fn new() -> Self {
        StackTable {
            segments: [const { AtomicPtr::new(ptr::null_mut()) }; SEGMENTS],
            totals: [const { AtomicPtr::new(ptr::null_mut()) }; SEGMENTS],
            len: AtomicU32::new(0),
            index: AtomicPtr::new(ptr::null_mut()),
            insert_lock: Mutex::new(()),
            overflow_bytes: AtomicU64::new(0),
            overflow_units: AtomicU64::new(0),
        }
    }

    /// How many stacks are interned.
    pub(crate) fn len(&self) -> usize {
        self.len.load(Acquire) as usize
    }

    fn locate(id: StackId) -> (usize, usize) {
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
    fn intern_capped(&self, ips: &[usize], context: u32, cap: u32) -> Option<StackId> {
        let hash = hash_stack(ips, context);
        self.lookup(ips, context, hash).or_else(|| self.insert_slow(ips, context, hash, cap))
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
        let new_cap = (cap * 2).max(1024);
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

/// Allocates `n` zeroed `T`s through the global allocator (which, with
/// `BUSY` set, forwards straight to the inner allocator) and leaks them.
fn alloc_zeroed_slice<T>(n: usize) -> Option<*mut T> {
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

// ---------------------------------------------------------------- blocks

/// A block's stack and size in one word:
///
/// | bits   | meaning                                       |
/// |--------|-----------------------------------------------|
/// | 63..40 | stack id (24 bits)                            |
/// | 39..0  | size in bytes, saturated at 2^40 - 1 (1 TiB)  |
#[inline]
pub(crate) fn pack(stack: StackId, size: usize) -> u64 {
    ((stack as u64) << 40) | (size as u64).min((1 << 40) - 1)
}

/// The `(stack, size)` of a packed block word.
#[inline]
pub(crate) fn unpack(word: u64) -> (StackId, usize) {
    ((word >> 40) as StackId, (word & ((1 << 40) - 1)) as usize)
}

/// Hashes an address key with [`mix`] (hashbrown takes the low bits for the
/// bucket and the top 7 for its control byte, so both must be spread).
#[derive(Default, Clone, Copy)]
pub(crate) struct AddrHash;

pub(crate) struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = mix(self.0 ^ b as u64);
        }
    }
    fn write_usize(&mut self, n: usize) {
        self.0 = mix(n as u64);
    }
}

impl BuildHasher for AddrHash {
    type Hasher = AddrHasher;
    fn build_hasher(&self) -> AddrHasher {
        AddrHasher(0)
    }
}

/// A block table key: the block's address in the low 48 bits, its birth
/// epoch (see `crate::hot::EPOCH`) in the top 16. Hashing and equality look
/// at the address only, so a block is found by its address alone and its
/// epoch costs no memory.
///
/// | bits   | meaning                                      |
/// |--------|----------------------------------------------|
/// | 63..48 | birth epoch, modulo 2^16                     |
/// | 47..0  | address                                      |
///
/// User-space addresses on x86_64 and aarch64 Linux fit in 48 bits (47 on
/// x86_64, unless a program maps memory above 2^47 on purpose with 5-level
/// paging); addresses above that would share a key with their low 48 bits.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BlockKey(u64);

const ADDR_BITS: u32 = 48;
const ADDR_MASK: u64 = (1 << ADDR_BITS) - 1;

impl BlockKey {
    /// The key of the block at `addr` (for lookups: any epoch matches).
    #[inline]
    pub(crate) fn at(addr: usize) -> BlockKey {
        BlockKey(addr as u64 & ADDR_MASK)
    }

    #[inline]
    fn born(addr: usize, epoch: u16) -> BlockKey {
        BlockKey((addr as u64 & ADDR_MASK) | ((epoch as u64) << ADDR_BITS))
    }

    /// The block's address.
    #[inline]
    pub(crate) fn addr(self) -> usize {
        (self.0 & ADDR_MASK) as usize
    }

    /// The block's birth epoch, modulo 2^16.
    #[inline]
    pub(crate) fn epoch(self) -> u16 {
        (self.0 >> ADDR_BITS) as u16
    }
}

impl PartialEq for BlockKey {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        (self.0 ^ other.0) & ADDR_MASK == 0
    }
}

impl Eq for BlockKey {}

impl std::hash::Hash for BlockKey {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_usize((self.0 & ADDR_MASK) as usize);
    }
}

use super::blockmap::BlockMap;

const SHARDS: usize = 128;

#[repr(align(128))]
struct Shard(Mutex<BlockMap>);

/// Live tracked blocks, sharded by address.
pub(crate) struct BlockTable {
    shards: [Shard; SHARDS],
}

/// A locked shard. Holding it sets `BUSY`, so whatever the holder allocates
/// or frees never comes back here for a lock (which could be this one).
pub(crate) struct ShardGuard<'a> {
    map: MutexGuard<'a, BlockMap>,
    _busy: Guard,
}

impl std::ops::Deref for ShardGuard<'_> {
    type Target = BlockMap;
    fn deref(&self) -> &BlockMap {
        &self.map
    }
}

impl std::ops::DerefMut for ShardGuard<'_> {
    fn deref_mut(&mut self) -> &mut BlockMap {
        &mut self.map
    }
}

impl BlockTable {
    pub(crate) const fn new() -> Self {
        BlockTable { shards: [const { Shard(Mutex::new(BlockMap::new())) }; SHARDS] }
    }

    /// The shard of an address: by 64 KiB region, not by address. Each
    /// thread allocates from its own arena (glibc, mimalloc, jemalloc all
    /// keep per-thread arenas), so a thread's blocks fall in a few regions
    /// and their shards' locks and tables stay in that thread's cache;
    /// hashing whole addresses would bounce every shard between cores.
    #[inline]
    fn shard_of(addr: usize) -> usize {
        (mix((addr >> 16) as u64) >> 57) as usize % SHARDS
    }

    /// Locks shard `i` (for snapshots and clearing).
    pub(crate) fn lock_shard(&self, i: usize) -> ShardGuard<'_> {
        let busy = Guard::with(BUSY);
        ShardGuard { map: self.shards[i].0.lock(), _busy: busy }
    }

    pub(crate) const fn shard_count() -> usize {
        SHARDS
    }

    /// Records a live block born in `epoch`. `Err` when the table could not
    /// grow (the block then goes untracked); `Ok(Some(size))` when a stale
    /// record of that many bytes was replaced. The caller holds `BUSY`.
    #[inline]
    pub(crate) fn insert(&self, addr: usize, stack: StackId, size: usize, epoch: u16) -> Result<Option<usize>, ()> {
        let mut map = self.shards[Self::shard_of(addr)].0.lock();
        // An address is only present already if its free was never seen
        // (freed while a hook ran on that thread): the new record replaces
        // it, key (with its epoch) and all.
        let key = BlockKey::born(addr, epoch);
        match map.try_insert(key.0, pack(stack, size))? {
            None => Ok(None),
            Some(old) => Ok(Some(unpack(old).1)),
        }
    }

    /// Forgets a block; returns its stack, size and birth epoch when it was
    /// tracked. The caller holds `BUSY`.
    #[inline]
    pub(crate) fn remove(&self, addr: usize) -> Option<(StackId, usize, u16)> {
        let mut map = self.shards[Self::shard_of(addr)].0.lock();
        let (key, word) = map.remove(BlockKey::at(addr).0)?;
        let (stack, size) = unpack(word);
        Some((stack, size, BlockKey(key).epoch()))
    }

    /// Forgets every block, shard by shard; returns the bytes they held.
    pub(crate) fn clear(&self) -> usize {
        let mut total = 0;
        for i in 0..SHARDS {
            let mut map = self.lock_shard(i);
            total += map.iter().map(|(_, w)| unpack(w).1).sum::<usize>();
            map.clear();
        }
        total
    }

    /// Bytes held by the tables' slots.
    pub(crate) fn memory(&self) -> usize {
        (0..SHARDS).map(|i| self.lock_shard(i).memory()).sum()
    }
}

impl ShardGuard<'_> {
    /// The shard's blocks: `(key, packed record)`.
    pub(crate) fn blocks(&self) -> impl Iterator<Item = (BlockKey, u64)> + '_ {
        self.map.iter().map(|(k, w)| (BlockKey(k), w))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_round_trips_and_saturates() {
        assert_eq!(unpack(pack(7, 1024)), (7, 1024));
        assert_eq!(unpack(pack(UNKNOWN_STACK, 0)), (UNKNOWN_STACK, 0));
        assert_eq!(unpack(pack(3, usize::MAX)).1, (1 << 40) - 1);
    }

    #[test]
    fn block_keys_match_by_address_and_keep_the_epoch() {
        let table = BlockTable::new();
        let _busy = Guard::with(BUSY);
        table.insert(0x7f00_1234_5670, 3, 100, 9).unwrap();
        assert_eq!(table.remove(0x7f00_1234_5670), Some((3, 100, 9)));
        assert_eq!(table.remove(0x7f00_1234_5670), None);
        // A stale record is replaced with the new epoch.
        table.insert(0x1000, 1, 10, 1).unwrap();
        assert_eq!(table.insert(0x1000, 2, 20, 5), Ok(Some(10)));
        assert_eq!(table.remove(0x1000), Some((2, 20, 5)));
    }

    #[test]
    fn segments_cover_ids_without_gaps() {
        let mut expect = (0usize, 0usize);
        for id in 0..(FIRST_SEGMENT * 7) as StackId {
            let (k, off) = StackTable::locate(id);
            assert_eq!((k, off), expect, "id {id}");
            expect.1 += 1;
            if expect.1 == FIRST_SEGMENT << expect.0 {
                expect = (expect.0 + 1, 0);
            }
        }
    }

    #[test]
    fn interning_deduplicates_and_grows() {
        static TABLE: StackTable = StackTable::new();
        let mut ids = Vec::new();
        for i in 0..3000usize {
            let stack = [i, i + 1, 42];
            ids.push(TABLE.intern(&stack, 0).unwrap());
        }
        for (i, &id) in ids.iter().enumerate() {
            let stack = [i, i + 1, 42];
            assert_eq!(TABLE.intern(&stack, 0), Some(id));
            assert_eq!(TABLE.get(id), &stack);
        }
        assert_eq!(TABLE.len(), 3000);
        // The same addresses under another context are another stack.
        let other = TABLE.intern(&[0, 1, 42], 7).unwrap();
        assert_ne!(Some(other), TABLE.intern(&[0, 1, 42], 0));
        assert_eq!(TABLE.context(other), 7);
        assert_eq!(TABLE.get(other), &[0, 1, 42]);
        TABLE.count_alloc(other, 1024, COUNT_UNIT * 3);
        assert_eq!(TABLE.alloc_totals(other), (1024, 3));
        assert_eq!(TABLE.get(UNKNOWN_STACK), &[] as &[usize]);
    }

    #[test]
    fn stacks_past_the_cap_share_the_overflow_stack() {
        static TABLE: StackTable = StackTable::new();
        let cap = 100u32;
        let mut ids = Vec::new();
        for i in 0..cap as usize {
            ids.push(TABLE.intern_capped(&[i, 7], 0, cap).unwrap());
        }
        assert!(ids.iter().all(|&id| id < cap));
        let over = TABLE.intern_capped(&[5000, 7], 0, cap);
        let known = TABLE.intern_capped(&[3, 7], 0, cap);
        assert_eq!(over, Some(OVERFLOW_STACK));
        assert_eq!(known, Some(ids[3]), "stacks interned before the cap keep their ids");
        assert_eq!(TABLE.len(), cap as usize);
        TABLE.count_alloc(OVERFLOW_STACK, 64, COUNT_UNIT);
        TABLE.count_alloc(OVERFLOW_STACK, 36, COUNT_UNIT);
        assert_eq!(TABLE.alloc_totals(OVERFLOW_STACK), (100, 2));
        assert_eq!(TABLE.get(OVERFLOW_STACK), &[] as &[usize]);
        assert_eq!(TABLE.context(OVERFLOW_STACK), 0);
        TABLE.reset_alloc_totals();
        assert_eq!(TABLE.alloc_totals(OVERFLOW_STACK), (0, 0));
    }
}
