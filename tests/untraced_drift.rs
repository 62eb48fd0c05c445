//! `untraced()`: frees are still seen. In sampled mode, blocks allocated
//! outside and freed inside (or the other way round) leave the traced total
//! where it was (before: a free under the ignore bit was not subtracted and
//! the total drifted up); in exact mode a traced block reallocated inside
//! leaves its site.

mod common;

use common::{is_file, marker_line};
use leaktrace::{Config, GroupBy, Mode};

#[global_allocator]
static ALLOC: leaktrace::TrackingAllocator = leaktrace::TrackingAllocator::system();

const SRC: &str = include_str!("untraced_drift.rs");

#[inline(never)]
fn make(n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| vec![i as u8; 1024]).collect() // MARK: made
}

#[test]
fn frees_and_reallocs_inside_untraced_are_seen() {
    // Sampled: no drift whichever side frees.
    leaktrace::start(Config::default().mode(Mode::Sampled { mean_bytes: 4096 }).sample_seed(1));
    let base = leaktrace::traced_memory().current as i64;
    for _ in 0..5 {
        let kept = make(1000);
        leaktrace::untraced(|| drop(kept));
        let inside = leaktrace::untraced(|| make(1000));
        drop(inside);
        let mut grow = leaktrace::untraced(|| Vec::<u8>::with_capacity(16));
        grow.extend(std::iter::repeat_n(1u8, 100_000));
        leaktrace::untraced(|| grow.extend(std::iter::repeat_n(2u8, 100_000)));
        drop(grow);
    }
    let drift = leaktrace::traced_memory().current as i64 - base;
    // A few bytes of the test's own bookkeeping at most; 5 MiB before the fix.
    assert!(drift.abs() < 64 * 1024, "traced total drifted by {drift} B");

    // Exact: a traced block reallocated inside untraced() leaves its site.
    let line = marker_line(SRC, "MARK: grown");
    leaktrace::start(Config::default());
    let mut v: Vec<u8> = Vec::with_capacity(1000); // MARK: grown
    let at_line = |snap: &leaktrace::Snapshot| {
        snap.statistics(GroupBy::Line)
            .iter()
            .filter(|s| s.location.line == line && is_file(&s.location.file, "untraced_drift.rs"))
            .map(|s| s.size)
            .sum::<u64>()
    };
    assert_eq!(at_line(&leaktrace::take_snapshot("before")), 1000);
    leaktrace::untraced(|| v.reserve_exact(100_000));
    assert_eq!(at_line(&leaktrace::take_snapshot("after")), 0, "the old record went with its free");
    let current = leaktrace::traced_memory().current;
    drop(v);
    assert_eq!(leaktrace::traced_memory().current, current, "the untraced block was never counted");
    leaktrace::stop();
}
