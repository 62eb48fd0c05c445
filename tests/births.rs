//! Birth epochs: the shape of a leak in one snapshot. A leak allocated
//! across 10 epochs, churn freed within its epoch, and a load born in epoch
//! 1, larger than the leak: one snapshot tells the three apart, and
//! `statistics()` keeps tracemalloc's largest-first order.

mod common;

use common::{is_file, marker_line};
use leaktrace::{BirthShape, Config, GroupBy};

#[global_allocator]
static ALLOC: leaktrace::TrackingAllocator = leaktrace::TrackingAllocator::system();

const SRC: &str = include_str!("births.rs");

#[inline(never)]
fn load(out: &mut Vec<Vec<u8>>) {
    for _ in 0..64 {
        out.push(vec![1u8; 8192]); // MARK: load
    }
}

#[inline(never)]
fn leak(out: &mut Vec<Vec<u8>>) {
    for _ in 0..8 {
        out.push(vec![2u8; 1024]); // MARK: leak
    }
}

#[inline(never)]
fn churn() -> Vec<Vec<u8>> {
    (0..16).map(|_| vec![3u8; 2048]).collect() // MARK: churn
}

#[test]
fn one_snapshot_tells_a_leak_from_a_load_and_churn() {
    let (load_line, leak_line, churn_line) =
        (marker_line(SRC, "MARK: load"), marker_line(SRC, "MARK: leak"), marker_line(SRC, "MARK: churn"));
    leaktrace::start(Config::default());
    let (mut loaded, mut leaked) = (Vec::with_capacity(64), Vec::with_capacity(80));
    let mut in_flight = Vec::new();
    leaktrace::next_epoch();
    load(&mut loaded);
    for _ in 0..10 {
        leak(&mut leaked);
        drop(std::mem::take(&mut in_flight));
        in_flight = churn();
        leaktrace::next_epoch();
    }
    drop(std::mem::take(&mut in_flight));
    in_flight = churn();
    let snap = leaktrace::take_snapshot("one");
    let stats = snap.statistics(GroupBy::Line);
    let at = |line| {
        stats
            .iter()
            .find(|s| is_file(&s.location.file, "births.rs") && s.location.line == line)
            .unwrap_or_else(|| panic!("no site at line {line}: {stats:#?}"))
    };
    let (l, k, c) = (at(leak_line), at(load_line), at(churn_line));
    assert_eq!(l.shape, Some(BirthShape::Accumulating), "leak births {:?} at epoch {}", l.births, snap.epoch);
    assert_eq!(k.shape, Some(BirthShape::Load), "load births {:?}", k.births);
    assert_eq!(c.shape, Some(BirthShape::Churn), "churn births {:?}", c.births);
    assert!(l.births.len() >= 3, "{:?}", l.births);
    assert_eq!(l.births.iter().map(|b| b.size).sum::<u64>(), l.size);
    // The load is larger, and statistics() keeps the largest first.
    assert!(k.size > l.size);
    let pos = |line| stats.iter().position(|s| s.location.line == line && is_file(&s.location.file, "births.rs"));
    assert!(pos(load_line) < pos(leak_line));
    // The epochs survive the JSON round trip.
    let back = leaktrace::Snapshot::from_json(&snap.to_json(), "births.json").unwrap();
    assert_eq!(back, snap);
    assert!(snap.epoch >= 11);
    drop((loaded, leaked, in_flight));
}
