//! Threads that exit while tracing: thread-local destructors that allocate
//! and free during exit, and blocks that outlive their thread.

mod common;

use common::{is_file, marker_line};
use leaktrace::{Config, GroupBy};
use std::cell::RefCell;

#[global_allocator]
static ALLOC: leaktrace::TrackingAllocator = leaktrace::TrackingAllocator::system();

const SRC: &str = include_str!("thread_exit.rs");

struct AllocOnDrop(Vec<u8>);

impl Drop for AllocOnDrop {
    fn drop(&mut self) {
        // Runs during thread exit, after some thread-locals are gone.
        let scratch = vec![0u8; 1000];
        std::hint::black_box(&scratch);
        self.0.clear();
        self.0.shrink_to_fit();
    }
}

thread_local! {
    static LOCAL: RefCell<AllocOnDrop> = const { RefCell::new(AllocOnDrop(Vec::new())) };
}

#[test]
fn threads_exiting_while_tracing() {
    let line = marker_line(SRC, "MARK: survivor");
    leaktrace::start(Config::default());
    let before = leaktrace::take_snapshot("before");
    let (tx, rx) = std::sync::mpsc::channel();
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                LOCAL.with(|l| l.borrow_mut().0.extend_from_slice(&[7u8; 5000]));
                let survivor = vec![3u8; 2048]; // MARK: survivor
                tx.send(survivor).unwrap();
            })
        })
        .collect();
    drop(tx);
    for h in handles {
        h.join().unwrap();
    }
    let survivors: Vec<Vec<u8>> = rx.iter().collect();
    assert_eq!(survivors.len(), 8);
    let after = leaktrace::take_snapshot("after");
    let d = after.compare_to(&before, GroupBy::Line);
    let site = d
        .sites
        .iter()
        .find(|s| s.location.line == line && is_file(&s.location.file, "thread_exit.rs"))
        .expect("survivor site");
    assert_eq!((site.size_diff, site.count_diff), (8 * 2048, 8));
    // Thread-local buffers were freed at exit: nothing of theirs stays.
    assert_eq!(after.totals.traced_bytes, after.totals.current_bytes);
    drop(survivors);
    let end = leaktrace::take_snapshot("end");
    let s = end.statistics(GroupBy::Line);
    assert!(!s.iter().any(|x| x.location.line == line));
    assert_eq!(end.totals.traced_bytes, end.totals.current_bytes);
    leaktrace::stop();
}
