//! What both allocator set-ups benchmark: the same pairs and threads, so
//! `alloc_modes` and its `System` baseline `alloc_system` time the same code.

use std::alloc::{alloc, dealloc, realloc, Layout};
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

/// The sizes a block of the realloc benchmark grows through: 16 B doubling
/// to 64 KiB, twelve reallocs (as a `Vec` or `String` growing by push).
pub const GROW_FROM: usize = 16;
/// See [`GROW_FROM`].
pub const GROW_TO: usize = 64 * 1024;

/// One block allocated at [`GROW_FROM`] bytes, grown by `realloc` doubling
/// to [`GROW_TO`], then freed: 1 alloc, 12 reallocs, 1 free.
#[inline(always)]
pub fn realloc_growth() {
    let mut layout = Layout::from_size_align(GROW_FROM, 8).expect("layout");
    // SAFETY: every layout has a non-zero size; `p` is always the live
    // block of `layout` (realloc's result replaces it only when non-null,
    // with the new size), and it is freed once with its current layout.
    unsafe {
        let mut p = black_box(alloc(layout));
        if p.is_null() {
            return;
        }
        while layout.size() < GROW_TO {
            let new_size = layout.size() * 2;
            let q = realloc(p, layout, new_size);
            if q.is_null() {
                break;
            }
            p = black_box(q);
            layout = Layout::from_size_align(new_size, 8).expect("layout");
        }
        dealloc(p, layout);
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
