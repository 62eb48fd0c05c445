//! Allocation totals per trace: one line allocates 1,000 x 1 KiB and frees
//! them all, another keeps 10 x 1 KiB. The first has `alloc_size` 1,024,000
//! and no live bytes; the second 10,240 of both.

mod common;

use common::{is_file, marker_line};
use leaktrace::{Config, GroupBy};

#[global_allocator]
static ALLOC: leaktrace::TrackingAllocator = leaktrace::TrackingAllocator::system();

const SRC: &str = include_str!("alloc_totals.rs");

#[inline(never)]
fn churn() {
    for i in 0..1000 {
        let v = std::hint::black_box(vec![i as u8; 1024]); // MARK: churn
        drop(v);
    }
}

#[inline(never)]
fn keep(out: &mut Vec<Vec<u8>>) {
    for i in 0..10 {
        out.push(vec![i as u8; 1024]); // MARK: keep
    }
}

#[test]
fn allocation_totals_count_freed_blocks_too() {
    let churn_line = marker_line(SRC, "MARK: churn");
    let keep_line = marker_line(SRC, "MARK: keep");
    leaktrace::start(Config::default());
    let mut kept = Vec::with_capacity(10);
    churn();
    keep(&mut kept);
    let snap = leaktrace::take_snapshot("after");
    let stats = snap.statistics_with_freed(GroupBy::Line);
    // statistics() lists live groups only, as tracemalloc does.
    let live = snap.statistics(GroupBy::Line);
    assert!(!live.iter().any(|s| s.location.line == churn_line && is_file(&s.location.file, "alloc_totals.rs")));
    let at = |line| {
        stats
            .iter()
            .find(|s| is_file(&s.location.file, "alloc_totals.rs") && s.location.line == line)
            .unwrap_or_else(|| panic!("no site at line {line}: {stats:#?}"))
    };
    let c = at(churn_line);
    assert_eq!((c.size, c.count), (0, 0));
    assert_eq!((c.alloc_size, c.alloc_count), (1_024_000, 1_000));
    let k = at(keep_line);
    assert_eq!((k.size, k.count), (10_240, 10));
    assert_eq!((k.alloc_size, k.alloc_count), (10_240, 10));
    // The JSON carries them on each trace.
    let back = leaktrace::Snapshot::from_json(&snap.to_json(), "snap.json").unwrap();
    assert_eq!(back, snap);
    assert!(snap.traces.iter().any(|t| t.size == 0 && t.alloc_size == 1_024_000));
    // clear_traces() starts the totals over.
    leaktrace::clear_traces();
    let cleared = leaktrace::take_snapshot("cleared");
    assert!(cleared.traces.iter().all(|t| t.alloc_size < 1_024_000), "{:?}", cleared.traces);
    drop(kept);
}
