//! A Vec that grows by realloc stays at its site with its new size, and
//! over-aligned and zero-size layouts work.

mod common;

use common::{is_file, marker_line};
use leaktrace::{Config, GroupBy};
use std::alloc::Layout;

#[global_allocator]
static ALLOC: leaktrace::TrackingAllocator = leaktrace::TrackingAllocator::system();

const SRC: &str = include_str!("realloc_growth.rs");

#[inline(never)]
fn grow(v: &mut Vec<u64>, n: usize) {
    for i in 0..n {
        v.push(i as u64); // MARK: push
    }
}

#[test]
fn realloc_keeps_the_site_with_the_new_size() {
    let push_line = marker_line(SRC, "MARK: push");
    let aligned_line = marker_line(SRC, "MARK: aligned");
    leaktrace::start(Config::default());
    let before = leaktrace::take_snapshot("before");
    let mut v: Vec<u64> = Vec::new();
    grow(&mut v, 100_000);
    v.shrink_to_fit();
    let after = leaktrace::take_snapshot("grown");
    let d = after.compare_to(&before, GroupBy::Line);
    let top = &d.sites[0];
    assert!(is_file(&top.location.file, "realloc_growth.rs"), "{:?}", top.location);
    assert_eq!(top.location.line, push_line);
    // One block, with the final size: every realloc moved it, none leaked a record.
    assert_eq!(top.count_diff, 1);
    assert_eq!(top.size_diff, 100_000 * 8);

    // Shrinking in place is a realloc too.
    v.truncate(10);
    v.shrink_to_fit();
    let shrunk = leaktrace::take_snapshot("shrunk");
    let s = shrunk.statistics(GroupBy::Line);
    let site = s.iter().find(|x| x.location.line == push_line).unwrap();
    assert_eq!((site.size, site.count), (80, 1));
    drop(v);

    // Over-aligned: a 4 KiB-aligned block is tracked at its line and freed.
    let layout = Layout::from_size_align(10_000, 4096).unwrap();
    // SAFETY: the layout has a non-zero size; the block is freed below with the same layout.
    let p = unsafe { std::alloc::alloc(layout) }; // MARK: aligned
    assert!(!p.is_null() && p as usize % 4096 == 0);
    let snap = leaktrace::take_snapshot("aligned");
    let s = snap.statistics(GroupBy::Line);
    assert!(s.iter().any(|x| x.location.line == aligned_line && x.size == 10_000 && x.count == 1));
    // SAFETY: `p` came from `alloc` with `layout` and is freed once.
    unsafe { std::alloc::dealloc(p, layout) };

    // Zero-size types never reach the allocator; nothing is recorded for them.
    let before_zst = leaktrace::traced_memory().current;
    let zst: Vec<()> = vec![(); 1_000_000];
    let boxed = Box::new(());
    assert_eq!(leaktrace::traced_memory().current, before_zst);
    drop((zst, boxed));
    let end = leaktrace::take_snapshot("end");
    assert!(!end.statistics(GroupBy::Line).iter().any(|x| x.location.line == aligned_line));
    leaktrace::stop();
}
