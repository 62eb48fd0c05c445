//! The shape of a leak in one snapshot, from the birth epochs of its live
//! blocks.
//!
//! An on-call engineer often has one heap snapshot, not a series. Every live
//! block remembers the epoch it was born in (a counter that snapshots and
//! monitor ticks advance), and a snapshot gives each trace its live bytes by
//! age, in buckets that double in length going back (see [`Birth`]):
//!
//! - blocks born all along, old and young: the site keeps what it allocates,
//!   [`BirthShape::Accumulating`];
//! - blocks all born in the latest epoch: allocated and freed within a
//!   moment, [`BirthShape::Churn`];
//! - blocks all born at one older time: a load, or a cache filled once,
//!   [`BirthShape::Load`].

#![forbid(unsafe_code)]

use crate::Birth;
use serde::{Deserialize, Serialize};

/// How the live blocks of a site are spread over their birth epochs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BirthShape {
    /// Born all along, old and young: the shape of a leak.
    Accumulating,
    /// All born in the latest epoch or the one before: buffers in flight.
    Churn,
    /// All (or nearly all) born at one time, not recently: a load.
    Load,
    /// Neither: spread over two or three times.
    Mixed,
    /// Too few epochs to tell (fewer than three since start).
    Unknown,
}

impl BirthShape {
    /// `"accumulating"`, `"churn"`, `"load"`, `"mixed"` or `"unknown"`.
    pub fn as_str(self) -> &'static str {
        match self {
            BirthShape::Accumulating => "accumulating",
            BirthShape::Churn => "churn",
            BirthShape::Load => "load",
            BirthShape::Mixed => "mixed",
            BirthShape::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for BirthShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Share of a site's bytes one age range must hold for a load.
const LOAD_SHARE: f64 = 0.8;
/// Share of a site's bytes born in the latest two epochs for churn.
const CHURN_SHARE: f64 = 0.9;
/// Share an age range must hold to count as occupied.
const OCCUPIED_SHARE: f64 = 0.02;
/// Occupied age ranges that make a site accumulating.
const ACCUMULATING_RANGES: usize = 3;

/// Judges `births` (oldest first, as in a snapshot) of a snapshot taken at
/// `epoch`.
pub fn birth_shape(births: &[Birth], epoch: u64) -> BirthShape {
    // Saturating: sizes near u64::MAX come only from a corrupt file.
    let total: u64 = births.iter().fold(0u64, |t, b| t.saturating_add(b.size));
    if total == 0 || epoch < 2 {
        return BirthShape::Unknown;
    }
    let share = |bytes: u64| bytes as f64 / total as f64;
    let recent: u64 = births
        .iter()
        .filter(|b| b.epoch_last.max(b.epoch).saturating_add(1) >= epoch)
        .fold(0u64, |t, b| t.saturating_add(b.size));
    if share(recent) >= CHURN_SHARE {
        return BirthShape::Churn;
    }
    let largest = births.iter().map(|b| b.size).max().unwrap_or(0);
    if share(largest) >= LOAD_SHARE {
        return BirthShape::Load;
    }
    let occupied = births.iter().filter(|b| share(b.size) >= OCCUPIED_SHARE).count();
    if occupied >= ACCUMULATING_RANGES {
        BirthShape::Accumulating
    } else {
        BirthShape::Mixed
    }
}

/// Adds `more` to `births`, range by range (both from one snapshot, so their
/// ranges line up), keeping them oldest first.
pub(crate) fn merge_births(births: &mut Vec<Birth>, more: &[Birth]) {
    for m in more {
        match births.iter_mut().find(|b| b.epoch == m.epoch && b.epoch_last == m.epoch_last) {
            Some(b) => {
                b.size = b.size.saturating_add(m.size);
                b.count = b.count.saturating_add(m.count);
            }
            None => births.push(*m),
        }
    }
    births.sort_by_key(|b| (b.epoch, b.epoch_last));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(epoch: u64, epoch_last: u64, size: u64) -> Birth {
        Birth { epoch, epoch_last, size, count: 1 }
    }

    #[test]
    fn shapes() {
        // A leak over epochs 1..=10, seen at epoch 10 in doubling ranges.
        let leak = [b(0, 2, 2), b(3, 6, 4), b(7, 8, 2), b(9, 9, 1), b(10, 10, 1)];
        assert_eq!(birth_shape(&leak, 10), BirthShape::Accumulating);
        assert_eq!(birth_shape(&[b(10, 10, 100)], 10), BirthShape::Churn);
        assert_eq!(birth_shape(&[b(0, 2, 1000), b(10, 10, 10)], 10), BirthShape::Load);
        assert_eq!(birth_shape(&[b(0, 2, 500), b(7, 8, 500)], 10), BirthShape::Mixed);
        assert_eq!(birth_shape(&[b(0, 0, 5)], 1), BirthShape::Unknown);
        assert_eq!(birth_shape(&[], 10), BirthShape::Unknown);
    }

    #[test]
    fn merging_adds_matching_ranges() {
        let mut v = vec![b(3, 6, 4)];
        merge_births(&mut v, &[b(3, 6, 1), b(0, 2, 7)]);
        assert_eq!(v, vec![Birth { count: 1, ..b(0, 2, 7) }, Birth { count: 2, ..b(3, 6, 5) }]);
    }
}
