//! The same flow with mimalloc as the inner allocator.

mod common;

use common::{is_file, marker_line};
use leaktrace::{Config, GroupBy, TrackingAllocator};

#[global_allocator]
static ALLOC: TrackingAllocator<mimalloc::MiMalloc> = TrackingAllocator::new(mimalloc::MiMalloc);

const SRC: &str = include_str!("mimalloc_inner.rs");

#[test]
fn tracks_over_mimalloc() {
    let line = marker_line(SRC, "MARK: mi");
    leaktrace::start(Config::default());
    let before = leaktrace::take_snapshot("before");
    let mut v = Vec::with_capacity(1000);
    for _ in 0..1000 {
        v.push(vec![0u8; 1024]); // MARK: mi
    }
    let after = leaktrace::take_snapshot("after");
    let d = after.compare_to(&before, GroupBy::Line);
    assert!(is_file(&d.sites[0].location.file, "mimalloc_inner.rs"), "{:?}", d.sites[0].location);
    assert_eq!(d.sites[0].location.line, line);
    assert_eq!((d.sites[0].size_diff, d.sites[0].count_diff), (1_024_000, 1000));
    let current = leaktrace::traced_memory().current;
    drop(v);
    assert!(current - leaktrace::traced_memory().current >= 1_024_000);
    let _ = ALLOC.inner();
    leaktrace::stop();
}
