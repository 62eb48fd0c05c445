//! Blocks allocated on another thread and freed on this one are subtracted
//! from their site, whichever thread frees them.

mod common;

use common::{is_file, marker_line};
use leaktrace::{Config, GroupBy};

#[global_allocator]
static ALLOC: leaktrace::TrackingAllocator = leaktrace::TrackingAllocator::system();

const SRC: &str = include_str!("cross_thread.rs");

#[test]
fn freed_on_another_thread() {
    let line = marker_line(SRC, "MARK: worker");
    leaktrace::start(Config::default());
    let before = leaktrace::take_snapshot("before");
    let blocks: Vec<Box<[u8]>> = std::thread::spawn(|| {
        let mut v = Vec::with_capacity(200);
        for _ in 0..200 {
            v.push(vec![1u8; 4096].into_boxed_slice()); // MARK: worker
        }
        v
    })
    .join()
    .unwrap();
    let mid = leaktrace::take_snapshot("allocated");
    let d = mid.compare_to(&before, GroupBy::Line);
    assert!(is_file(&d.sites[0].location.file, "cross_thread.rs"), "{:?}", d.sites[0].location);
    assert_eq!(d.sites[0].location.line, line);
    assert_eq!(d.sites[0].size_diff, 200 * 4096);

    let current = leaktrace::traced_memory().current;
    drop(blocks);
    let after_free = leaktrace::traced_memory().current;
    assert!(current - after_free >= 200 * 4096, "{current} -> {after_free}");
    let end = leaktrace::take_snapshot("freed");
    let d = end.compare_to(&mid, GroupBy::Line);
    let site =
        d.sites.iter().find(|s| s.location.line == line && is_file(&s.location.file, "cross_thread.rs")).unwrap();
    assert_eq!((site.size, site.count, site.size_diff), (0, 0, -(200 * 4096)));
    leaktrace::stop();
}
