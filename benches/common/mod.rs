//! What both allocator set-ups benchmark: the same pairs and threads, so
//! `alloc_modes` and its `System` baseline `alloc_system` time the same code.

use std::alloc::{alloc, dealloc, Layout};
use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// Block sizes of the pair benchmarks.
pub const SIZES: [usize; 3] = [16, 1024, 64 * 1024];
/// Block size of the thread benchmarks.
pub const THREAD_SIZE: usize = 64;

/// One allocation and its free, through the global allocator.
#[inline(always)]
pub fn pair(layout: Layout) {
    // SAFETY: `layout` has a non-zero size; the block is freed with the
    // layout it was allocated with, and only if the allocation succeeded.
    unsafe {
        let p = black_box(alloc(layout));
        if !p.is_null() {
            dealloc(p, layout);
        }
    }
}

/// `iters` pairs on each of `threads` threads at once; the time from the
/// first thread's start to the last thread's end. The threads time
/// themselves: on a machine with as many cores as threads, a timing thread
/// of its own might not run until a worker is done.
pub fn pairs_on_threads(threads: usize, iters: u64, layout: Layout) -> Duration {
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                let start = Instant::now();
                for _ in 0..iters {
                    pair(layout);
                }
                (start, Instant::now())
            })
        })
        .collect();
    let spans: Vec<(Instant, Instant)> = handles.into_iter().map(|h| h.join().expect("bench thread")).collect();
    let start = spans.iter().map(|s| s.0).min().expect("a thread");
    let end = spans.iter().map(|s| s.1).max().expect("a thread");
    end - start
}
