//! [`Traceback`]: the frames of one statistic, a view into a frame table
//! that every statistic of one `statistics()`, `compare_to()` or `trend()`
//! call shares, as a snapshot stores each distinct frame once.

#![forbid(unsafe_code)]

use crate::{Frame, Snapshot};
use hashbrown::HashMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::iter::FusedIterator;
use std::sync::Arc;

/// The frames of a traceback, from the call site outward: what
/// [`Statistic::traceback`](crate::Statistic::traceback),
/// [`StatisticDiff::traceback`](crate::StatisticDiff::traceback) and
/// [`TrendSite::traceback`](crate::TrendSite::traceback) hold.
///
/// It reads like a `Vec<Frame>` (`len`, `iter`, `get`, `first`, `[i]`,
/// `to_vec`, `for f in &tb`) but owns no frames: it is a list of indices
/// into a table of frames shared by every statistic of one call, built
/// once from the snapshot's [`Snapshot::frames`]. So the results of
/// `statistics(GroupBy::Traceback)` cost a few bytes per frame of each
/// traceback, not a copy of every frame, and cloning one is two reference
/// counts.
///
/// Two tracebacks are equal when their frames are, whatever tables they
/// point into; they compare, hash and print as the list of their frames,
/// and serialize as a JSON array of frames, exactly as a `Vec<Frame>`
/// does.
///
/// ```
/// use leaktrace::{Frame, Traceback};
/// let tb = Traceback::from(vec![Frame::new("app::leak", "src/leak.rs", 42), Frame::new("app::main", "src/main.rs", 3)]);
/// assert_eq!(tb.len(), 2);
/// assert_eq!(tb[0].line, 42);
/// assert_eq!(tb.last().map(|f| f.function.as_str()), Some("app::main"));
/// assert_eq!(tb, tb.to_vec());
/// assert_eq!(serde_json::to_string(&tb).unwrap(), serde_json::to_string(&tb.to_vec()).unwrap());
/// ```
#[derive(Clone, Default)]
pub struct Traceback {
    /// The shared table; every index is below its length.
    frames: Arc<[Frame]>,
    /// This traceback's frames, as indices into `frames`.
    indices: Arc<[u32]>,
}

impl Traceback {
    /// A view of `indices` into `frames`. Every index must be below
    /// `frames.len()` (the crate's builders make sure of it).
    pub(crate) fn from_parts(frames: Arc<[Frame]>, indices: Arc<[u32]>) -> Traceback {
        debug_assert!(indices.iter().all(|&i| (i as usize) < frames.len()), "frame index out of its table");
        Traceback { frames, indices }
    }

    /// The number of frames.
    pub fn len(&self) -> usize {
        self.indices.len()
    }

    /// Whether it has no frames.
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }

    /// The frames, from the call site outward.
    pub fn iter(&self) -> TracebackIter<'_> {
        TracebackIter { frames: &self.frames, indices: self.indices.iter() }
    }

    /// The frame at `i` (0 is the call site), if there is one.
    pub fn get(&self, i: usize) -> Option<&Frame> {
        self.indices.get(i).map(|&k| &self.frames[k as usize])
    }

    /// The first frame: the call site.
    pub fn first(&self) -> Option<&Frame> {
        self.get(0)
    }

    /// The last frame: the outermost kept.
    pub fn last(&self) -> Option<&Frame> {
        self.indices.last().map(|&k| &self.frames[k as usize])
    }

    /// Whether one of its frames is `frame`.
    pub fn contains(&self, frame: &Frame) -> bool {
        self.iter().any(|f| f == frame)
    }

    /// A copy of its frames.
    pub fn to_vec(&self) -> Vec<Frame> {
        self.iter().cloned().collect()
    }

    /// Whether `self` and `other` point into one frame table (what the
    /// statistics of one call do). For tests.
    #[doc(hidden)]
    pub fn shares_frames_with(&self, other: &Traceback) -> bool {
        Arc::ptr_eq(&self.frames, &other.frames)
    }

    /// The indices of its frames in its table.
    pub(crate) fn indices(&self) -> &Arc<[u32]> {
        &self.indices
    }
}

impl From<Vec<Frame>> for Traceback {
    fn from(frames: Vec<Frame>) -> Traceback {
        let indices = (0..frames.len() as u32).collect();
        Traceback { frames: frames.into(), indices }
    }
}

impl From<&[Frame]> for Traceback {
    fn from(frames: &[Frame]) -> Traceback {
        Traceback::from(frames.to_vec())
    }
}

impl From<Traceback> for Vec<Frame> {
    fn from(tb: Traceback) -> Vec<Frame> {
        tb.to_vec()
    }
}

impl FromIterator<Frame> for Traceback {
    fn from_iter<I: IntoIterator<Item = Frame>>(iter: I) -> Traceback {
        Traceback::from(iter.into_iter().collect::<Vec<Frame>>())
    }
}

impl std::ops::Index<usize> for Traceback {
    type Output = Frame;

    /// The frame at `i`; panics past the end, as a slice does.
    fn index(&self, i: usize) -> &Frame {
        match self.get(i) {
            Some(f) => f,
            None => panic!("index out of bounds: the traceback has {} frames but the index is {i}", self.len()),
        }
    }
}

impl<'a> IntoIterator for &'a Traceback {
    type Item = &'a Frame;
    type IntoIter = TracebackIter<'a>;

    fn into_iter(self) -> TracebackIter<'a> {
        self.iter()
    }
}

impl fmt::Debug for Traceback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl PartialEq for Traceback {
    fn eq(&self, other: &Traceback) -> bool {
        if Arc::ptr_eq(&self.frames, &other.frames) && self.indices == other.indices {
            return true;
        }
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for Traceback {}

impl PartialEq<[Frame]> for Traceback {
    fn eq(&self, other: &[Frame]) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl PartialEq<&[Frame]> for Traceback {
    fn eq(&self, other: &&[Frame]) -> bool {
        *self == **other
    }
}

impl PartialEq<Vec<Frame>> for Traceback {
    fn eq(&self, other: &Vec<Frame>) -> bool {
        *self == **other
    }
}

impl PartialEq<Traceback> for Vec<Frame> {
    fn eq(&self, other: &Traceback) -> bool {
        *other == **self
    }
}

impl PartialEq<Traceback> for [Frame] {
    fn eq(&self, other: &Traceback) -> bool {
        *other == *self
    }
}

impl PartialEq<Traceback> for &[Frame] {
    fn eq(&self, other: &Traceback) -> bool {
        *other == **self
    }
}

impl Hash for Traceback {
    /// As a slice of its frames hashes.
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.len().hash(state);
        for f in self {
            f.hash(state);
        }
    }
}

impl PartialOrd for Traceback {
    fn partial_cmp(&self, other: &Traceback) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Traceback {
    /// Frame by frame, as slices of frames compare.
    fn cmp(&self, other: &Traceback) -> Ordering {
        let same_table = Arc::ptr_eq(&self.frames, &other.frames);
        for (&a, &b) in self.indices.iter().zip(other.indices.iter()) {
            // One index of one table is one frame: no strings to compare.
            if same_table && a == b {
                continue;
            }
            match self.frames[a as usize].cmp(&other.frames[b as usize]) {
                Ordering::Equal => {}
                unequal => return unequal,
            }
        }
        self.len().cmp(&other.len())
    }
}

impl Serialize for Traceback {
    /// As the JSON array of its frames, what a `Vec<Frame>` writes.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for Traceback {
    /// From an array of frames.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Traceback, D::Error> {
        Vec::<Frame>::deserialize(deserializer).map(Traceback::from)
    }
}

/// The frames of a [`Traceback`], from the call site outward
/// ([`Traceback::iter`]).
#[derive(Clone)]
pub struct TracebackIter<'a> {
    frames: &'a [Frame],
    indices: std::slice::Iter<'a, u32>,
}

impl<'a> Iterator for TracebackIter<'a> {
    type Item = &'a Frame;

    fn next(&mut self) -> Option<&'a Frame> {
        self.indices.next().map(|&k| &self.frames[k as usize])
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.indices.size_hint()
    }

    fn nth(&mut self, n: usize) -> Option<&'a Frame> {
        self.indices.nth(n).map(|&k| &self.frames[k as usize])
    }
}

impl DoubleEndedIterator for TracebackIter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.indices.next_back().map(|&k| &self.frames[k as usize])
    }
}

impl ExactSizeIterator for TracebackIter<'_> {}

impl FusedIterator for TracebackIter<'_> {}

impl fmt::Debug for TracebackIter<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.clone()).finish()
    }
}

/// One frame table for the statistics of one call over `snapshots`: every
/// distinct frame of them once (frames equal by identity share a slot),
/// and per snapshot the table index of each of its frame indices.
pub(crate) struct FrameTable {
    pub(crate) frames: Arc<[Frame]>,
    /// `remaps[s][i]`: the table index of frame `i` of snapshot `s`.
    remaps: Vec<Vec<u32>>,
}

impl FrameTable {
    /// The table of `snapshots`' frames, built once. For one snapshot whose
    /// frames are distinct (every snapshot the crate takes), the table is a
    /// copy of its frames and the indices are its traces' own.
    pub(crate) fn of(snapshots: &[&Snapshot]) -> FrameTable {
        let mut frames: Vec<Frame> = Vec::new();
        let mut ids: HashMap<&Frame, u32> = HashMap::new();
        let remaps = snapshots
            .iter()
            .map(|snap| {
                snap.frames
                    .iter()
                    .map(|f| {
                        *ids.entry(f).or_insert_with(|| {
                            frames.push(f.clone());
                            frames.len() as u32 - 1
                        })
                    })
                    .collect()
            })
            .collect();
        FrameTable { frames: frames.into(), remaps }
    }

    /// The table indices of `trace_frames`, frame indices of snapshot
    /// `snap` (indices past its frames, in a hand-made file, are skipped,
    /// as [`Snapshot::traceback`] skips them).
    pub(crate) fn indices<'a>(&'a self, snap: usize, trace_frames: &'a [u32]) -> impl Iterator<Item = u32> + 'a {
        let remap = &self.remaps[snap];
        trace_frames.iter().filter_map(move |&i| remap.get(i as usize).copied())
    }

    /// The frame at table index `i`.
    pub(crate) fn frame(&self, i: u32) -> &Frame {
        &self.frames[i as usize]
    }

    /// A traceback of `indices` (from [`FrameTable::indices`]) in this table.
    pub(crate) fn traceback(&self, indices: Arc<[u32]>) -> Traceback {
        Traceback::from_parts(self.frames.clone(), indices)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames() -> Vec<Frame> {
        vec![
            Frame::new("app::leak", "src/leak.rs", 42),
            Frame { path_abs: "/home/ci/app/src/main.rs".into(), ..Frame::new("app::main", "src/main.rs", 3) },
            Frame { module: Some(0), offset: Some(0x1a2b3), ..Frame::new("app+0x1a2b3", "", 0) },
        ]
    }

    #[test]
    fn reads_like_a_vec_of_frames() {
        let v = frames();
        let tb = Traceback::from(v.clone());
        assert_eq!(tb.len(), 3);
        assert!(!tb.is_empty());
        assert_eq!(tb.first(), v.first());
        assert_eq!(tb.last(), v.last());
        assert_eq!(tb.get(1), v.get(1));
        assert_eq!(tb.get(3), None);
        assert_eq!(&tb[2], &v[2]);
        assert!(tb.contains(&v[1]));
        assert_eq!(tb.to_vec(), v);
        assert_eq!(Vec::from(tb.clone()), v);
        let it = tb.iter();
        assert_eq!(it.len(), 3);
        assert!(it.clone().eq(v.iter()));
        assert!(tb.iter().rev().eq(v.iter().rev()));
        assert_eq!(tb.iter().nth(1), v.get(1));
        assert_eq!((&tb).into_iter().skip(1).count(), 2);
        assert_eq!(v.iter().cloned().collect::<Traceback>(), tb);
        assert_eq!(Traceback::from(&v[..]), tb);
        assert!(Traceback::default().is_empty());
        assert_eq!(Traceback::default(), Vec::<Frame>::new());
        assert_eq!(format!("{tb:?}"), format!("{v:?}"));
        assert_eq!(format!("{:?}", tb.iter()), format!("{v:?}"));
        let slice: &[Frame] = &v;
        assert!(tb == v);
        assert!(v == tb);
        assert!(tb == *slice);
        assert!(*slice == tb);
        assert!(tb == slice);
        assert!(slice == tb);
        assert!(tb != v[..2]);
    }

    #[test]
    #[should_panic(expected = "index out of bounds")]
    fn indexing_past_the_end_panics() {
        let _ = &Traceback::from(frames())[3];
    }

    #[test]
    fn equal_by_frames_whatever_the_table() {
        let v = frames();
        // The same frames through another table, in another order.
        let table: Arc<[Frame]> = vec![v[2].clone(), Frame::new("x", "src/x.rs", 1), v[0].clone(), v[1].clone()].into();
        let other = Traceback::from_parts(table.clone(), vec![2, 3, 0].into());
        let tb = Traceback::from(v.clone());
        assert_eq!(tb, other);
        assert!(!tb.shares_frames_with(&other));
        assert_eq!(tb.cmp(&other), Ordering::Equal);
        let hash = |t: &Traceback| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            t.hash(&mut h);
            h.finish()
        };
        assert_eq!(hash(&tb), hash(&other));
        let shorter = Traceback::from_parts(table.clone(), vec![2, 3].into());
        assert_ne!(tb, shorter);
        assert!(shorter < tb);
        assert_eq!(shorter.cmp(&tb), v[..2].cmp(&v[..]));
        let x = Traceback::from_parts(table, vec![1].into());
        assert_eq!(x.cmp(&tb), [Frame::new("x", "src/x.rs", 1)][..].cmp(&v[..]));
        assert_eq!(tb.cmp(&x), v[..].cmp(&[Frame::new("x", "src/x.rs", 1)][..]));
    }

    #[test]
    fn json_is_the_array_a_vec_of_frames_writes() {
        let v = frames();
        let tb = Traceback::from(v.clone());
        let json = serde_json::to_string(&tb).unwrap();
        assert_eq!(json, serde_json::to_string(&v).unwrap());
        assert_eq!(serde_json::to_string_pretty(&tb).unwrap(), serde_json::to_string_pretty(&v).unwrap());
        let back: Traceback = serde_json::from_str(&json).unwrap();
        assert_eq!(back, tb);
        // Every key of every frame comes back, not only its identity.
        assert_eq!(serde_json::to_string(&back).unwrap(), json);
        assert_eq!(serde_json::to_string(&Traceback::default()).unwrap(), "[]");
        assert!(serde_json::from_str::<Traceback>("{}").is_err());
    }

    #[test]
    fn a_table_holds_each_frame_of_its_snapshots_once() {
        let v = frames();
        let mut a = crate::diff::tests::snap("a", 0.0, &[]);
        a.frames = vec![v[0].clone(), v[1].clone(), v[0].clone()];
        let mut b = crate::diff::tests::snap("b", 1.0, &[]);
        b.frames = vec![v[2].clone(), v[1].clone()];
        let t = FrameTable::of(&[&a, &b]);
        assert_eq!(&t.frames[..], &v[..]);
        assert_eq!(t.indices(0, &[2, 1, 7]).collect::<Vec<_>>(), [0, 1]);
        assert_eq!(t.indices(1, &[0, 1]).collect::<Vec<_>>(), [2, 1]);
        assert_eq!(t.frame(2), &v[2]);
    }
}
