//! Exact mode end to end: 1,000 blocks at one line and a 64 KiB block at
//! another, two labelled snapshots, a ranked diff; then dropping them.

mod common;

use common::{is_file, marker_line};
use leaktrace::{Config, GroupBy};

#[global_allocator]
static ALLOC: leaktrace::TrackingAllocator = leaktrace::TrackingAllocator::system();

const SRC: &str = include_str!("exact_sites.rs");

#[inline(never)]
fn allocate_thousand(out: &mut Vec<Vec<u8>>) {
    for i in 0..1000 {
        out.push(vec![i as u8; 1024]); // MARK: thousand
    }
}

#[inline(never)]
fn allocate_big() -> Box<[u8]> {
    vec![7u8; 64 * 1024].into_boxed_slice() // MARK: big
}

#[test]
fn diff_ranks_the_growing_line_first_and_drop_gives_it_back() {
    let thousand_line = marker_line(SRC, "MARK: thousand");
    let big_line = marker_line(SRC, "MARK: big");

    leaktrace::start(Config::default());
    let mut blocks: Vec<Vec<u8>> = Vec::with_capacity(1000);
    let before = leaktrace::take_snapshot("before");
    let current_before = leaktrace::traced_memory().current;

    allocate_thousand(&mut blocks);
    let big = allocate_big();
    let after = leaktrace::take_snapshot("after");

    let diff = after.compare_to(&before, GroupBy::Line);
    let top = &diff.sites[0];
    assert_eq!(top.rank, 1);
    assert!(is_file(&top.location.file, "exact_sites.rs"), "top site {:?}", top.location);
    assert_eq!(top.location.line, thousand_line, "top site {:?}", top.location);
    assert_eq!(top.size_diff, 1_024_000);
    assert_eq!(top.count_diff, 1_000);
    assert_eq!(top.size, 1_024_000);
    assert!(top.growth_bytes_per_sec > 0.0);

    let second = &diff.sites[1];
    assert!(is_file(&second.location.file, "exact_sites.rs"), "second {:?}", second.location);
    assert_eq!(second.location.line, big_line);
    assert_eq!(second.size_diff, 64 * 1024);
    assert_eq!(second.count_diff, 1);
    assert_eq!(diff.from.label, "before");
    assert_eq!(diff.to.label, "after");
    assert!(leaktrace::traced_memory().current >= current_before + 1_024_000 + 65_536);

    let current_full = leaktrace::traced_memory().current;
    for b in blocks.iter_mut() {
        drop(std::mem::take(b));
    }
    drop(big);
    let current_dropped = leaktrace::traced_memory().current;
    let dropped = leaktrace::take_snapshot("dropped");
    let diff2 = dropped.compare_to(&after, GroupBy::Line);
    let site = diff2
        .sites
        .iter()
        .find(|s| s.location.line == thousand_line && is_file(&s.location.file, "exact_sites.rs"))
        .expect("the thousand-block site is still listed");
    assert_eq!(site.size_diff, -1_024_000);
    assert_eq!(site.size, 0);
    assert_eq!(site.count, 0);
    assert_eq!(diff2.sites.last().unwrap().size_diff, -1_024_000, "the drop ranks last");
    assert!(current_full - current_dropped >= 1_024_000 + 65_536);
    assert!(leaktrace::traced_memory().peak >= current_full);

    // statistics: largest first, the thousand-block line gone.
    let stats = dropped.statistics(GroupBy::Line);
    assert!(stats.windows(2).all(|w| w[0].size >= w[1].size));
    assert!(!stats.iter().any(|s| s.location.line == thousand_line && s.size > 0));
    leaktrace::stop();
    assert!(!leaktrace::is_tracing());
}
