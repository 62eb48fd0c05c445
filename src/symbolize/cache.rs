//! A bounded map: two generations of at most `cap` entries each.
//!
//! Lookups try the young generation, then the old one (moving a hit back to
//! the young); when the young one is full it becomes the old one and the
//! old one is dropped. So at most `2 × cap` entries are held, entries in use
//! since the last turnover survive, and there is no per-entry bookkeeping
//! (the "segmented" scheme of a CLOCK cache, without the clock hand). An
//! LRU list would cost a linked node per address for nothing the snapshots
//! need: a snapshot asks for the same few thousand addresses each time.

#![forbid(unsafe_code)]

use hashbrown::HashMap;
use std::hash::Hash;

pub(crate) struct GenCache<K, V> {
    young: HashMap<K, V>,
    old: HashMap<K, V>,
    cap: usize,
}

impl<K: Hash + Eq, V: Clone> GenCache<K, V> {
    pub(crate) fn new(cap: usize) -> Self {
        GenCache { young: HashMap::new(), old: HashMap::new(), cap: cap.max(1) }
    }

    pub(crate) fn get(&mut self, k: &K) -> Option<V> {
        if let Some(v) = self.young.get(k) {
            return Some(v.clone());
        }
        let (k, v) = self.old.remove_entry(k)?;
        self.insert(k, v.clone());
        Some(v)
    }

    /// Whether `k` is held, without counting it as used.
    pub(crate) fn contains(&self, k: &K) -> bool {
        self.young.contains_key(k) || self.old.contains_key(k)
    }

    pub(crate) fn insert(&mut self, k: K, v: V) {
        if self.young.len() >= self.cap {
            self.old = std::mem::take(&mut self.young);
        }
        self.young.insert(k, v);
    }

    pub(crate) fn clear(&mut self) {
        self.young = HashMap::new();
        self.old = HashMap::new();
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.young.len() + self.old.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_keeps_what_is_used() {
        let mut c = GenCache::new(4);
        for i in 0..100u32 {
            c.insert(i, i);
            assert!(c.len() <= 8);
            // Entry 0 is used all along: it survives every turnover.
            assert_eq!(c.get(&0), Some(0), "after {i}");
        }
        assert_eq!(c.get(&1), None);
        assert_eq!(c.get(&99), Some(99));
    }
}
