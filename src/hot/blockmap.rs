//! One shard's map from a live block's key to its packed record: open
//! addressing with linear probing and backward-shift deletion, two words a
//! slot, made for what the hooks do to it (an insert per allocation, a
//! removal per free) and nothing else.
//!
//! It replaced a `hashbrown::HashMap` there. The general map spent about 80
//! instructions per insert and as many per removal on its group probing,
//! control bytes, tombstones and generic hashing (measured under callgrind,
//! exact mode, frame-pointer build: a third of what exact mode added to the
//! allocation-heavy workload). Here an insert hashes with one multiply,
//! usually finds its slot at the first probe and writes two words; a
//! removal moves back the few entries after it, so no tombstone ever
//! lengthens a probe.
//!
//! - A key is a block key (`sites::BlockKey`): the address in the low 48
//!   bits, the birth epoch above. Keys match by address; the epoch rides
//!   along. Address 0 is never a block, so a zero key marks an empty slot.
//! - The load stays at most 1/2 (at 3/4, linear probing's longer runs cost
//!   more than the map saved): 32-64 bytes a live block, against hashbrown's
//!   20-40 at its 7/8. Growing is fallible: [`BlockMap::try_insert`]
//!   fails instead of aborting when the table cannot get memory (the block
//!   is then counted untracked). Its memory comes from the global allocator,
//!   which the caller reaches with `BUSY` set, that is from the inner one.

/// The address bits of a key (see `sites::BlockKey`).
const ADDR_MASK: u64 = (1 << 48) - 1;
/// The smallest table: 64 slots (1 KiB).
const MIN_SLOTS: usize = 64;

pub(crate) struct BlockMap {
    /// `(key, value)`; key 0 = empty. Empty, or a power of two long.
    slots: Vec<(u64, u64)>,
    len: usize,
    /// `64 - log2(slots.len())`: the home slot is the top bits of the hash.
    shift: u32,
}

impl BlockMap {
    pub(in crate::hot) const fn new() -> Self {
        BlockMap { slots: Vec::new(), len: 0, shift: 64 }
    }

    /// Live entries.
    #[cfg(test)]
    pub(in crate::hot) fn len(&self) -> usize {
        self.len
    }

    /// Bytes the slots take.
    pub(in crate::hot) fn memory(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<(u64, u64)>()
    }

    /// The home slot of `key`: Fibonacci hashing of the address without its
    /// 16-byte alignment bits (one multiply; the top bits depend on every
    /// address bit, so aligned and clustered addresses spread too).
    #[inline(always)]
    fn home(&self, key: u64) -> usize {
        (((key & ADDR_MASK) >> 4).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> self.shift) as usize
    }

    #[inline(always)]
    fn mask(&self) -> usize {
        self.slots.len().wrapping_sub(1)
    }

    /// Slot `i & mask` (the probe loops' index), without a bounds check.
    /// Only called on a non-empty table.
    #[inline(always)]
    fn at(&self, i: usize) -> (u64, u64) {
        debug_assert!(!self.slots.is_empty());
        // SAFETY: the table is not empty (callers check `len` or just grew
        // it) and its length is a power of two, so `i & mask` is below it.
        unsafe { *self.slots.get_unchecked(i & self.mask()) }
    }

    /// Writes slot `i & mask`, as [`Self::at`].
    #[inline(always)]
    fn put(&mut self, i: usize, slot: (u64, u64)) {
        debug_assert!(!self.slots.is_empty());
        let mask = self.mask();
        // SAFETY: as in `at`: a non-empty power-of-two table, `i & mask` in it.
        unsafe { *self.slots.get_unchecked_mut(i & mask) = slot };
    }

    /// Inserts `key` with `value`; when a key with the same address is
    /// there, replaces it (key and value: the new birth epoch too) and
    /// returns the old value. `Err` when the table had to grow and could
    /// not get the memory (nothing changed).
    #[inline]
    pub(in crate::hot) fn try_insert(&mut self, key: u64, value: u64) -> Result<Option<u64>, ()> {
        debug_assert!(key & ADDR_MASK != 0, "address 0 is not a block");
        if (self.len + 1) * 2 > self.slots.len() {
            self.grow()?;
        }
        let mut i = self.home(key);
        loop {
            let slot = self.at(i);
            if slot.0 == 0 {
                self.put(i, (key, value));
                self.len += 1;
                return Ok(None);
            }
            if (slot.0 ^ key) & ADDR_MASK == 0 {
                self.put(i, (key, value));
                return Ok(Some(slot.1));
            }
            i = i.wrapping_add(1);
        }
    }

    /// Removes the entry whose key has `key`'s address; returns its key and value.
    #[inline]
    pub(in crate::hot) fn remove(&mut self, key: u64) -> Option<(u64, u64)> {
        if self.len == 0 {
            return None;
        }
        let mask = self.mask();
        let mut i = self.home(key);
        let found = loop {
            let slot = self.at(i);
            if slot.0 == 0 {
                return None;
            }
            if (slot.0 ^ key) & ADDR_MASK == 0 {
                break slot;
            }
            i = (i + 1) & mask;
        };
        // Backward shift: move each later entry of the run whose home is
        // not in (hole, j] into the hole, so that every entry stays
        // reachable from its home without tombstones.
        let mut hole = i;
        let mut j = (i + 1) & mask;
        loop {
            let next = self.at(j);
            if next.0 == 0 {
                break;
            }
            let home = self.home(next.0);
            if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(hole) & mask) {
                self.put(hole, next);
                hole = j;
            }
            j = (j + 1) & mask;
        }
        self.put(hole, (0, 0));
        self.len -= 1;
        Some(found)
    }

    /// Doubles the table (or makes the first one), fallibly.
    #[cold]
    #[inline(never)]
    fn grow(&mut self) -> Result<(), ()> {
        let n = (self.slots.len() * 2).max(MIN_SLOTS);
        let fresh = zeroed_slots(n).ok_or(())?;
        let old = std::mem::replace(&mut self.slots, fresh);
        self.shift = 64 - n.trailing_zeros();
        let mask = self.mask();
        for (key, value) in old.into_iter().filter(|s| s.0 != 0) {
            let mut i = self.home(key);
            while self.slots[i].0 != 0 {
                i = (i + 1) & mask;
            }
            self.slots[i] = (key, value);
        }
        Ok(())
    }

    /// Every `(key, value)`, in no particular order.
    pub(in crate::hot) fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.slots.iter().copied().filter(|s| s.0 != 0)
    }

    /// Forgets every entry and gives the memory back.
    pub(in crate::hot) fn clear(&mut self) {
        *self = BlockMap::new();
    }
}

/// `n` zeroed slots, fallibly, from `alloc_zeroed` (calloc): memory the
/// allocator knows is zero (fresh pages) is not cleared again, where a
/// `resize` wrote every slot, 16 bytes each, at each doubling.
fn zeroed_slots(n: usize) -> Option<Vec<(u64, u64)>> {
    let layout = std::alloc::Layout::array::<(u64, u64)>(n).ok()?;
    if layout.size() == 0 {
        return Some(Vec::new());
    }
    // SAFETY: the layout has a non-zero size.
    let p = unsafe { std::alloc::alloc_zeroed(layout) } as *mut (u64, u64);
    if p.is_null() {
        return None;
    }
    // SAFETY: `p` was allocated by the global allocator with the layout of
    // `n` slots (what `Vec` frees it with), and all-zero bytes are `n`
    // valid `(0, 0)` slots.
    Some(unsafe { Vec::from_raw_parts(p, n, n) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn matches_a_reference_map_through_random_inserts_and_removals() {
        let mut map = BlockMap::new();
        let mut model: HashMap<u64, (u64, u64)> = HashMap::new();
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for step in 0..200_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Few distinct addresses, so removals and replacements are
            // common, probe runs long and wrap around the table's end.
            let addr = 0x7f00_0000_0000 + (x % 3000) * 16;
            let epoch = step % 65_536;
            let key = addr | (epoch << 48);
            if x & 3 == 0 {
                let got = map.remove(addr);
                let want = model.remove(&addr);
                assert_eq!(got, want, "remove {addr:#x} at step {step}");
            } else {
                let got = map.try_insert(key, step).unwrap();
                let want = model.insert(addr, (key, step)).map(|(_, v)| v);
                assert_eq!(got, want, "insert {addr:#x} at step {step}");
            }
            assert_eq!(map.len(), model.len());
        }
        let mut all: Vec<_> = map.iter().collect();
        all.sort_unstable();
        let mut want: Vec<_> = model.values().copied().collect();
        want.sort_unstable();
        assert_eq!(all, want, "the same entries, each with its latest epoch");
        for &(key, value) in &want {
            assert_eq!(map.remove(key & ADDR_MASK), Some((key, value)));
        }
        assert_eq!(map.len(), 0);
        assert_eq!(map.iter().count(), 0);
    }

    #[test]
    fn colliding_addresses_stay_reachable_after_removals() {
        // Page-aligned addresses in a small table: long probe runs, and
        // removals from the middle of them must leave the rest findable.
        let mut map = BlockMap::new();
        let addrs: Vec<u64> = (1..=40u64).map(|i| i * 0x1000).collect();
        for &a in &addrs {
            assert_eq!(map.try_insert(a, a), Ok(None));
        }
        for &a in addrs.iter().step_by(3) {
            assert_eq!(map.remove(a), Some((a, a)));
        }
        for (n, &a) in addrs.iter().enumerate() {
            let want = (n % 3 != 0).then_some((a, a));
            assert_eq!(map.remove(a), want, "address {a:#x}");
        }
        assert_eq!(map.len(), 0);
    }

    #[test]
    fn grows_keeps_load_at_most_half_and_clear_frees() {
        let mut map = BlockMap::new();
        for i in 1..=10_000u64 {
            map.try_insert(i * 48, i).unwrap();
            assert!(map.len() * 2 <= map.slots.len());
        }
        assert_eq!(map.memory(), map.slots.len() * 16);
        map.clear();
        assert_eq!((map.len(), map.memory()), (0, 0));
        assert_eq!(map.remove(48), None);
    }
}
