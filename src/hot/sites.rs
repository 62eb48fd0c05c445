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
//!
//! The stack table's code is in `stack_table.rs`, written against the shim
//! `super::sync`, so that loom can check its insert and lookup
//! (`stack_table_loom.rs`, `cargo test --lib --features loom loom`).

use super::guard::{Guard, BUSY};
use super::sync;
use parking_lot::{Mutex, MutexGuard};
use std::hash::{BuildHasher, Hasher};
use std::ptr;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering::*};

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

/// Fixed-point unit of a stack's allocation count (`alloc_units` in its
/// totals): blocks are counted in units of 1/`COUNT_UNIT` block, so sampled
/// mode's per-sample weights add up without rounding each one.
pub(crate) const COUNT_UNIT: u64 = 1 << 16;

// ---------------------------------------------------------------- stacks

// The table's code lives in `stack_table.rs`, written against the names of
// `super::sync` (here the real shim), so that the loom model tests
// (`stack_table_loom.rs`) can compile the very same code against loom.
#[path = "stack_table.rs"]
mod stack_table;

#[cfg(test)]
use stack_table::hash_stack;
pub(crate) use stack_table::StackTable;
use stack_table::SEGMENTS;

impl StackTable {
    /// An empty table: `const`, for the allocator's static.
    pub(crate) const fn new() -> Self {
        StackTable {
            segments: [const { sync::AtomicPtr::new(ptr::null_mut()) }; SEGMENTS],
            totals: [const { sync::AtomicPtr::new(ptr::null_mut()) }; SEGMENTS],
            len: sync::AtomicU32::new(0),
            index: sync::AtomicPtr::new(ptr::null_mut()),
            insert_lock: sync::Mutex::new(()),
            overflow_bytes: sync::AtomicU64::new(0),
            overflow_units: sync::AtomicU64::new(0),
        }
    }
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
        for id in 0..(sync::FIRST_SEGMENT * 7) as StackId {
            let (k, off) = StackTable::locate(id);
            assert_eq!((k, off), expect, "id {id}");
            expect.1 += 1;
            if expect.1 == sync::FIRST_SEGMENT << expect.0 {
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
    fn the_lock_free_lookup_finds_interned_stacks_only() {
        static TABLE: StackTable = StackTable::new();
        assert_eq!(TABLE.find(&[1, 2], 0), None);
        assert_eq!(TABLE.indexed(hash_stack(&[1, 2], 0)), None);
        let id = TABLE.intern(&[1, 2], 0).unwrap();
        assert_eq!(TABLE.find(&[1, 2], 0), Some(id));
        assert_eq!(TABLE.indexed(hash_stack(&[1, 2], 0)), Some(id));
        assert_eq!(TABLE.find(&[1, 2], 3), None, "another context is another stack");
        assert_eq!(TABLE.find(&[2, 1], 0), None);
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
